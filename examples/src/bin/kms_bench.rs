//! `kms_bench`: numbers for the plugin against a real OpenBao, in one bounded run.
//!
//! Against a plugin that is already serving (started by `scripts/bench.sh`), it measures:
//!
//! - over the socket: Status, Encrypt of 32-byte seeds and Decrypt (distinct ciphertexts,
//!   sequentially, at c=8 and as a c=32 "storm" like an apiserver restart; and one ciphertext
//!   decrypted concurrently), each with count, errors, req/s and p50/p90/p99/max latency;
//! - raw Transit in the same run against the same OpenBao, with the plugin's own OpenBao client
//!   and configuration (AppRole, TLS, same AAD, explicit key version), side by side;
//! - the plugin's VmRSS/VmHWM idle and after the load, and CPU per request of the plugin,
//!   OpenBao and this load generator;
//! - with `--plugin-bin`: the benchmarked plugin is stopped (SIGTERM), then started and stopped
//!   `--restarts` times, timing spawn → socket connectable → Status healthy, and SIGTERM → exit.
//!
//! Every cell is bounded by a request count and a time budget; the run stops by itself and
//! leaves no process behind. It is not a test and is never run by `cargo test`.

#[path = "../bench/mod.rs"]
mod bench;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bao_kms_runtime_tokio::config::{self, Config, Overrides};
use clap::Parser;

use crate::bench::load::{Outcome, Plan, run_async, run_blocking};
use crate::bench::plugin::{self, Client, Sealed};
use crate::bench::procfs::{self, Memory};
use crate::bench::raw::{RawSealed, RawTransit};
use crate::bench::report::{Cell, CpuTicks, Latency, MemoryRow, Report};
use crate::bench::startup::{self, RestartSetup};
use crate::bench::{now, seed};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Benchmark the plugin over its socket against raw OpenBao Transit")]
struct Args {
    /// The configuration of the running plugin: its socket, metrics address, OpenBao address,
    /// CA, AppRole files and identity (for raw Transit with the same AAD).
    #[arg(long)]
    config: PathBuf,
    /// The plugin's socket; defaults to `server.socketPath` of `--config`.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// PID of the running plugin (memory and CPU readings; stopped before the restarts).
    #[arg(long)]
    pid: u32,
    /// Directory of the OpenBao dev server (`server.pid` inside it, for its CPU time).
    #[arg(long)]
    bao_dir: Option<PathBuf>,
    /// The plugin binary; enables the restart measurements.
    #[arg(long)]
    plugin_bin: Option<PathBuf>,
    /// Where restarted plugins write stdout and stderr (appended); discarded when absent.
    #[arg(long)]
    plugin_log: Option<PathBuf>,
    /// Number of restarts.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Requests per sequential cell.
    #[arg(long, default_value_t = 2000)]
    sequential: usize,
    /// Requests per concurrent cell.
    #[arg(long, default_value_t = 4000)]
    concurrent: usize,
    /// Unmeasured requests before each cell, at the cell's concurrency.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Longest a cell may run, in seconds; the count is cut short when reached.
    #[arg(long, default_value_t = 15)]
    cell_budget: u64,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

/// What every cell needs.
struct Bench {
    raw: RawTransit,
    plugin_pid: String,
    bao_pid: Option<String>,
    metrics_address: Option<String>,
    warmup: usize,
    budget: Duration,
    cells: Vec<Cell>,
}

/// How one cell is labelled.
struct Label {
    operation: &'static str,
    path: &'static str,
    concurrency: usize,
    count: usize,
}

const PLUGIN: &str = "plugin";
const RAW: &str = "raw Transit";

impl Bench {
    fn cpu(&self) -> CpuTicks {
        CpuTicks {
            plugin: procfs::cpu_ticks(&self.plugin_pid),
            openbao: self.bao_pid.as_deref().and_then(procfs::cpu_ticks),
            bench: procfs::cpu_ticks("self"),
            machine: procfs::machine_busy_ticks(),
        }
    }

    fn openbao_requests(&self, path: &str) -> Option<u64> {
        if path == RAW {
            Some(self.raw.requests_sent())
        } else {
            plugin::openbao_requests(self.metrics_address.as_deref())
        }
    }

    fn plan(&self, label: &Label) -> (Plan, Plan) {
        let warmup = Plan {
            concurrency: label.concurrency,
            count: self.warmup,
            budget: self.budget,
        };
        let measured = Plan {
            concurrency: label.concurrency,
            count: label.count,
            budget: self.budget,
        };
        (warmup, measured)
    }

    fn record<T>(
        &mut self,
        label: &Label,
        before: (CpuTicks, Option<u64>),
        outcome: Outcome<T>,
    ) -> Vec<T> {
        let cpu = self.cpu().since(before.0);
        let requests = self
            .openbao_requests(label.path)
            .zip(before.1)
            .map(|(after, before)| after.saturating_sub(before));
        if let Some(error) = &outcome.first_error {
            eprintln!(
                "{} {} c={}: {} errors, first: {error}",
                label.path, label.operation, label.concurrency, outcome.errors
            );
        }
        eprintln!(
            "done: {} {} c={} ({} requests in {:.2} s)",
            label.path,
            label.operation,
            label.concurrency,
            outcome.attempted(),
            outcome.wall.as_secs_f64()
        );
        let count = outcome.attempted();
        self.cells.push(Cell {
            operation: label.operation.to_owned(),
            path: label.path,
            concurrency: label.concurrency,
            count,
            errors: outcome.errors,
            wall: outcome.wall,
            latency: Latency::of(outcome.latencies),
            openbao_requests: requests,
            cpu,
        });
        outcome.outputs
    }

    /// Runs one plugin cell: warm-up, then the measured requests.
    async fn plugin_cell<T, F, Fut>(&mut self, label: Label, op: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(usize) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let (warmup, measured) = self.plan(&label);
        drop(run_async(warmup, op.clone()).await);
        let before = (self.cpu(), self.openbao_requests(label.path));
        let outcome = run_async(measured, op).await;
        self.record(&label, before, outcome)
    }

    /// Runs one raw Transit cell on OS threads (off the runtime's thread).
    async fn raw_cell<T, F>(&mut self, label: Label, op: F) -> anyhow::Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&RawTransit, usize) -> Result<T, String> + Send + Sync + 'static,
    {
        let (warmup, measured) = self.plan(&label);
        let raw = self.raw.clone();
        let op = Arc::new(op);
        let warm_op = Arc::clone(&op);
        let warm_raw = raw.clone();
        tokio::task::spawn_blocking(move || {
            drop(run_blocking(warmup, |index| warm_op(&warm_raw, index)));
        })
        .await
        .context("raw warm-up")?;
        let before = (self.cpu(), self.openbao_requests(label.path));
        let outcome =
            tokio::task::spawn_blocking(move || run_blocking(measured, |index| op(&raw, index)))
                .await
                .context("raw cell")?;
        Ok(self.record(&label, before, outcome))
    }
}

fn encrypt_op(client: &Client, salt: u64) -> impl Fn(usize) -> EncryptFuture + Clone + use<> {
    let client = client.clone();
    move |index| {
        let client = client.clone();
        Box::pin(async move {
            plugin::encrypt(client, seed(salt, index), format!("bench-{salt}-{index}")).await
        })
    }
}

type EncryptFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Sealed, String>> + Send + 'static>>;
type UnitFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

fn decrypt_op(client: &Client, pool: Vec<Sealed>) -> impl Fn(usize) -> UnitFuture + Clone + use<> {
    let client = client.clone();
    let pool = Arc::new(pool);
    move |index| {
        let client = client.clone();
        let pool = Arc::clone(&pool);
        Box::pin(async move {
            let item = pool
                .get(index % pool.len().max(1))
                .ok_or_else(|| "no ciphertext to decrypt".to_owned())?;
            plugin::decrypt(client, item, format!("bench-decrypt-{index}")).await
        })
    }
}

fn raw_decrypt_op(pool: Vec<RawSealed>) -> impl Fn(&RawTransit, usize) -> Result<(), String> {
    move |raw, index| {
        let item = pool
            .get(index % pool.len().max(1))
            .ok_or_else(|| "no ciphertext to decrypt".to_owned())?;
        raw.decrypt(item)
    }
}

async fn wait_healthy(client: &Client) -> anyhow::Result<String> {
    let started = now();
    loop {
        match plugin::status(client.clone()).await {
            Ok(key_id) => return Ok(key_id),
            Err(error) if now().saturating_duration_since(started) > Duration::from_secs(30) => {
                bail!("the plugin is not healthy after 30 s: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A raw Transit ciphertext, decrypted by the plugin with the key_id and annotations of one of
/// its own Encrypts: proves that the raw rows use byte-identical AAD.
async fn cross_check(client: &Client, raw: &RawSealed, plugin_item: &Sealed) -> anyhow::Result<()> {
    let item = Sealed {
        seed: raw.seed.clone(),
        ciphertext: raw.ciphertext.as_str().as_bytes().to_vec(),
        key_id: plugin_item.key_id.clone(),
        annotations: plugin_item.annotations.clone(),
    };
    plugin::decrypt(client.clone(), &item, "bench-cross-check".to_owned())
        .await
        .map_err(|error| {
            anyhow::anyhow!("the plugin cannot decrypt a raw Transit ciphertext: {error}")
        })
}

fn memory_row(label: &str, memory: Option<Memory>) -> MemoryRow {
    MemoryRow {
        label: label.to_owned(),
        memory,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = now();
    let load_at_start = procfs::load_average();
    let overrides = Overrides {
        config_path: Some(args.config.clone()),
        ..Overrides::default()
    };
    let config: Config = config::load(&overrides, &|_| None).context("plugin configuration")?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| config.server.socket_path.clone());

    let client = bao_kms_examples::connect(socket.clone())
        .await
        .context("connect to the plugin socket")?;
    let key_id = wait_healthy(&client).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut memory = vec![memory_row("idle after start", procfs::memory(args.pid))];

    let raw_config = config.clone();
    let raw_key_id = key_id.clone();
    let raw = tokio::task::spawn_blocking(move || RawTransit::connect(&raw_config, &raw_key_id))
        .await
        .context("raw transit")??;
    let openbao_version = {
        let raw = raw.clone();
        tokio::task::spawn_blocking(move || raw.server_version())
            .await
            .ok()
            .flatten()
    };

    let mut bench = Bench {
        raw,
        plugin_pid: args.pid.to_string(),
        bao_pid: args
            .bao_dir
            .as_ref()
            .and_then(|dir| procfs::read_pid_file(&dir.join("server.pid")))
            .map(|pid| pid.to_string()),
        metrics_address: config.server.metrics_address.clone(),
        warmup: args.warmup,
        budget: Duration::from_secs(args.cell_budget),
        cells: Vec::new(),
    };
    let (seq, conc) = (args.sequential, args.concurrent);
    let label = |operation, path, concurrency, count| Label {
        operation,
        path,
        concurrency,
        count,
    };

    // Status: answered from the plugin's cached health, no OpenBao call.
    let status = {
        let client = client.clone();
        move |_: usize| plugin::status(client.clone())
    };
    bench
        .plugin_cell(label("Status", PLUGIN, 1, seq), status.clone())
        .await;
    bench
        .plugin_cell(label("Status", PLUGIN, 8, conc), status)
        .await;

    // Encrypt: plugin and raw Transit, sequential then c=8.
    let sealed_seq = bench
        .plugin_cell(label("Encrypt", PLUGIN, 1, seq), encrypt_op(&client, 1))
        .await;
    let raw_seq = bench
        .raw_cell(label("Encrypt", RAW, 1, seq), |raw, index| {
            raw.encrypt(seed(11, index))
        })
        .await?;
    let sealed_conc = bench
        .plugin_cell(label("Encrypt", PLUGIN, 8, conc), encrypt_op(&client, 2))
        .await;
    let raw_conc = bench
        .raw_cell(label("Encrypt", RAW, 8, conc), |raw, index| {
            raw.encrypt(seed(12, index))
        })
        .await?;

    if let (Some(raw_item), Some(plugin_item)) = (raw_seq.first(), sealed_seq.first()) {
        cross_check(&client, raw_item, plugin_item).await?;
        eprintln!("cross-check ok: the plugin decrypts a raw Transit ciphertext (same AAD)");
    }

    // Decrypt of distinct ciphertexts: sequential, c=8, and a c=32 storm.
    bench
        .plugin_cell(
            label("Decrypt", PLUGIN, 1, seq),
            decrypt_op(&client, sealed_seq.clone()),
        )
        .await;
    bench
        .raw_cell(label("Decrypt", RAW, 1, seq), raw_decrypt_op(raw_seq))
        .await?;
    bench
        .plugin_cell(
            label("Decrypt", PLUGIN, 8, conc),
            decrypt_op(&client, sealed_conc.clone()),
        )
        .await;
    bench
        .raw_cell(
            label("Decrypt", RAW, 8, conc),
            raw_decrypt_op(raw_conc.clone()),
        )
        .await?;
    bench
        .plugin_cell(
            label("Decrypt storm (distinct)", PLUGIN, 32, conc),
            decrypt_op(&client, sealed_conc),
        )
        .await;
    bench
        .raw_cell(
            label("Decrypt storm (distinct)", RAW, 32, conc),
            raw_decrypt_op(raw_conc),
        )
        .await?;
    // One ciphertext decrypted by every worker: concurrent identical requests share a call.
    let one: Vec<Sealed> = sealed_seq.into_iter().take(1).collect();
    bench
        .plugin_cell(
            label("Decrypt identical", PLUGIN, 32, conc),
            decrypt_op(&client, one),
        )
        .await;

    memory.push(memory_row("right after the load", procfs::memory(args.pid)));
    // Idle blocking-pool threads exit after tokio's 10 s keep-alive.
    tokio::time::sleep(Duration::from_secs(12)).await;
    memory.push(memory_row("12 s after the load", procfs::memory(args.pid)));
    let cells = std::mem::take(&mut bench.cells);
    drop(bench);
    drop(client);

    let mut first_stop = None;
    let mut restarts = Vec::new();
    if let Some(binary) = args.plugin_bin.clone() {
        eprintln!("stopping the benchmarked plugin (pid {})", args.pid);
        first_stop = Some(startup::stop_external(args.pid).await?);
        let setup = RestartSetup {
            binary,
            config: args.config.clone(),
            socket: socket.clone(),
            log: args.plugin_log.clone(),
        };
        for number in 1..=args.restarts {
            let restart = startup::restart_once(&setup).await?;
            eprintln!(
                "restart {number}: socket {:.1} ms, healthy {:.1} ms",
                restart.socket.as_secs_f64() * 1e3,
                restart.healthy.as_secs_f64() * 1e3
            );
            memory.push(memory_row(
                &format!("restart {number}, idle 1 s after healthy"),
                restart.idle_memory,
            ));
            restarts.push(restart);
        }
    }

    let report = Report {
        machine: procfs::machine(),
        openbao_version,
        load: (load_at_start, procfs::load_average()),
        plan: format!(
            "{seq} requests per sequential cell, {conc} per concurrent cell, {} warm-up requests \
             before each, at most {} s per cell",
            args.warmup, args.cell_budget
        ),
        cells,
        memory,
        first_stop,
        restarts,
        total: now().saturating_duration_since(started),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}
