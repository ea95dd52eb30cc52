//! `kms_bench`: issue 9's benchmark of the plugin against raw OpenBao Transit, in one run.
//!
//! Against a plugin that is already serving (started by `scripts/bench.sh`), for 5 s per cell:
//!
//! - over the socket, with a tonic client on one HTTP/2 connection: Status c=1 and c=8, Encrypt
//!   c=1, Decrypt of distinct ciphertexts at c=1 and c=8, one ciphertext at c=8 (coalescing),
//!   and the storm: 256 distinct ciphertexts at c=64;
//! - raw Transit in the same run against the same OpenBao with `wrk` and
//!   `scripts/bench/transit.lua` (an independent HTTP client): Encrypt c=1, Decrypt c=1 (also
//!   paced with 1 ms think time), c=8 and c=64 (single calls) and `batch_input` of 64 at c=4,
//!   on the plugin's own ciphertexts and AAD;
//! - the plugin's VmRSS idle and its peak during the storm, Transit calls per request from its
//!   `/metrics`, CPU per request of the plugin, OpenBao and the load generator;
//! - ratios to raw Transit and issue 9's targets, PASS or FAIL;
//! - with `--plugin-bin`: restart timing (spawn → socket → healthy Status, SIGTERM → exit).
//!
//! Every cell is bounded in time; the run leaves no process behind. Never run by `cargo test`.

#[path = "../bench/mod.rs"]
mod bench;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bao_kms_runtime_tokio::config::{self, Config, Overrides};
use clap::Parser;

use crate::bench::load::{Outcome, Plan, run_async};
use crate::bench::plugin::{self, Client, Counters, Sealed};
use crate::bench::procfs::{self, Memory};
use crate::bench::report::{Cell, CpuTicks, Latency, MemoryRow, Path as CellPath, Report};
use crate::bench::startup::{self, RestartSetup};
use crate::bench::targets::{self as ids, ratios, targets};
use crate::bench::wrk::{self, Mode, WrkSetup};
use crate::bench::{corpus, now, seed};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Benchmark the plugin over its socket against raw OpenBao Transit (wrk)")]
struct Args {
    /// The configuration of the running plugin: its socket, metrics address, OpenBao address,
    /// Transit mount and key, and identity (for the AAD of the raw requests).
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
    /// OpenBao's version, for the report.
    #[arg(long)]
    openbao_version: Option<String>,
    /// A file with an OpenBao token that carries the plugin's policy, for `wrk`.
    #[arg(long)]
    token_file: PathBuf,
    /// The `wrk` binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// The wrk script (`scripts/bench/transit.lua`).
    #[arg(long, default_value = "scripts/bench/transit.lua")]
    wrk_script: PathBuf,
    /// A private directory for the corpus files `wrk` reads.
    #[arg(long)]
    work_dir: PathBuf,
    /// The plugin binary; enables the restart measurements.
    #[arg(long)]
    plugin_bin: Option<PathBuf>,
    /// Where restarted plugins write stdout and stderr (appended); discarded when absent.
    #[arg(long)]
    plugin_log: Option<PathBuf>,
    /// Number of restarts.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Length of every measured cell, in seconds.
    #[arg(long, default_value_t = 5)]
    cell_seconds: u64,
    /// Unmeasured requests before each plugin cell, at the cell's concurrency.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

/// Distinct ciphertexts in the storm.
const STORM_DISTINCT: usize = 256;

/// What every cell needs.
struct Bench {
    plugin_pid: String,
    bao_pid: Option<String>,
    metrics_address: Option<String>,
    warmup: usize,
    seconds: u64,
    wrk: WrkSetup,
    cells: Vec<Cell>,
}

/// How one cell is labelled.
struct Label {
    id: &'static str,
    operation: &'static str,
    concurrency: usize,
}

impl Bench {
    fn cpu(&self) -> CpuTicks {
        let bench = procfs::cpu_ticks("self")
            .zip(procfs::children_ticks())
            .map(|(own, children)| own + children);
        CpuTicks {
            plugin: procfs::cpu_ticks(&self.plugin_pid),
            openbao: self.bao_pid.as_deref().and_then(procfs::cpu_ticks),
            bench,
            machine: procfs::machine_busy_ticks(),
        }
    }

    fn counters(&self) -> Option<Counters> {
        plugin::counters(self.metrics_address.as_deref())
    }

    fn log(cell: &Cell, first_error: Option<&str>) {
        if let Some(error) = first_error {
            eprintln!(
                "{} {} c={}: {} errors, first: {error}",
                cell.path.as_str(),
                cell.operation,
                cell.concurrency,
                cell.errors
            );
        }
        eprintln!(
            "done: {} {} c={}: {} ok in {:.2} s",
            cell.path.as_str(),
            cell.operation,
            cell.concurrency,
            cell.ok,
            cell.wall.as_secs_f64()
        );
    }

    /// Runs one plugin cell: a counted warm-up, then `seconds` of load.
    async fn plugin_cell<T, F, Fut>(&mut self, label: Label, op: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(usize) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let budget = Duration::from_secs(self.seconds);
        let warmup = Plan {
            concurrency: label.concurrency,
            count: self.warmup,
            budget,
        };
        drop(run_async(warmup, op.clone()).await);
        let measured = Plan {
            concurrency: label.concurrency,
            count: usize::MAX,
            budget,
        };
        let (cpu, counters) = (self.cpu(), self.counters());
        let outcome: Outcome<T> = run_async(measured, op).await;
        let cpu = self.cpu().since(cpu);
        let counters = self
            .counters()
            .zip(counters)
            .map(|(after, before)| after.since(before));
        let cell = Cell {
            id: label.id,
            operation: label.operation,
            path: CellPath::Plugin,
            concurrency: label.concurrency,
            ok: outcome.latencies.len() as u64,
            errors: outcome.errors,
            wall: outcome.wall,
            latency: Latency::of(outcome.latencies),
            transit_calls: counters.map(Counters::kms_calls),
            batch_calls: counters.map(|counters| counters.batch_calls),
            retries: counters.map(|counters| counters.retries),
            items_per_request: 1,
            cpu,
        };
        Self::log(&cell, outcome.first_error.as_deref());
        self.cells.push(cell);
        outcome.outputs
    }

    /// Runs one raw Transit cell with `wrk` for `seconds`.
    async fn raw_cell(&mut self, label: Label, mode: Mode, corpus: &Path) -> anyhow::Result<()> {
        let cpu = self.cpu();
        let setup = self.wrk.clone();
        let corpus = corpus.to_owned();
        let (seconds, connections) = (self.seconds, label.concurrency);
        let run = tokio::task::spawn_blocking(move || {
            wrk::run(&setup, mode, &corpus, connections, seconds)
        })
        .await
        .context("wrk task")??;
        let cpu = self.cpu().since(cpu);
        let calls = run.good + run.errors;
        let batch = matches!(mode, Mode::Batch(_));
        let cell = Cell {
            id: label.id,
            operation: label.operation,
            path: CellPath::Raw,
            concurrency: label.concurrency,
            ok: run.good,
            errors: run.errors,
            wall: run.wall,
            latency: run.latency,
            transit_calls: Some(calls),
            batch_calls: Some(if batch { calls } else { 0 }),
            retries: None,
            items_per_request: match mode {
                Mode::Batch(items) => items as u64,
                Mode::Encrypt | Mode::Decrypt | Mode::DecryptPaced(_) => 1,
            },
            cpu,
        };
        Self::log(&cell, run.first_error.as_deref());
        self.cells.push(cell);
        Ok(())
    }
}

type BoxedFuture<T> = std::pin::Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

fn encrypt_op(client: &Client) -> impl Fn(usize) -> BoxedFuture<Sealed> + Clone + use<> {
    let client = client.clone();
    move |index| {
        let client = client.clone();
        Box::pin(
            async move { plugin::encrypt(client, seed(1, index), format!("bench-{index}")).await },
        )
    }
}

fn decrypt_op(
    client: &Client,
    pool: &[Sealed],
) -> impl Fn(usize) -> BoxedFuture<()> + Clone + use<> {
    let client = client.clone();
    let pool = Arc::new(pool.to_vec());
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

fn memory_row(label: &str, memory: Option<Memory>) -> MemoryRow {
    MemoryRow {
        label: label.to_owned(),
        memory,
    }
}

fn label(id: &'static str, operation: &'static str, concurrency: usize) -> Label {
    Label {
        id,
        operation,
        concurrency,
    }
}

fn wrk_setup(args: &Args, config: &Config) -> WrkSetup {
    let identity = config.identity();
    WrkSetup {
        binary: args.wrk.clone(),
        script: args.wrk_script.clone(),
        url: config.openbao.address.trim_end_matches('/').to_owned(),
        token_file: args.token_file.clone(),
        mount: identity.transit_mount_path().trim_matches('/').to_owned(),
        key: identity.transit_key_name().to_owned(),
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
    wait_healthy(&client).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = procfs::memory(args.pid);
    let mut memory = vec![memory_row("idle 1 s after healthy", idle)];

    let mut bench = Bench {
        plugin_pid: args.pid.to_string(),
        bao_pid: args
            .bao_dir
            .as_ref()
            .and_then(|dir| procfs::read_pid_file(&dir.join("server.pid")))
            .map(|pid| pid.to_string()),
        metrics_address: config.server.metrics_address.clone(),
        warmup: args.warmup,
        seconds: args.cell_seconds,
        wrk: wrk_setup(&args, &config),
        cells: Vec::new(),
    };

    // Status: answered from the core's snapshot, no OpenBao call.
    let status = {
        let client = client.clone();
        move |_: usize| plugin::status(client.clone())
    };
    bench
        .plugin_cell(label(ids::STATUS_C1, "Status", 1), status.clone())
        .await;
    bench
        .plugin_cell(label(ids::STATUS_C8, "Status", 8), status)
        .await;

    // Encrypt c=1; its ciphertexts are every Decrypt cell's input, the plugin's and wrk's.
    let sealed = bench
        .plugin_cell(label(ids::ENCRYPT_C1, "Encrypt", 1), encrypt_op(&client))
        .await;
    if sealed.len() < STORM_DISTINCT {
        bail!(
            "Encrypt produced {} ciphertexts, fewer than the storm's {STORM_DISTINCT}",
            sealed.len()
        );
    }
    let storm: Vec<Sealed> = sealed.iter().take(STORM_DISTINCT).cloned().collect();
    let all_corpus = args.work_dir.join("corpus-all.txt");
    let storm_corpus = args.work_dir.join("corpus-storm.txt");
    let lines = corpus::lines(&config, &sealed)?;
    corpus::write(&all_corpus, &lines)?;
    corpus::write(&storm_corpus, lines.get(..STORM_DISTINCT).unwrap_or(&lines))?;
    eprintln!(
        "corpus: {} ciphertexts with the plugin's AAD ({} for the storm)",
        lines.len(),
        STORM_DISTINCT
    );
    bench
        .raw_cell(
            label(ids::RAW_ENCRYPT_C1, "Encrypt", 1),
            Mode::Encrypt,
            &all_corpus,
        )
        .await?;

    // Decrypt of distinct ciphertexts: consecutive requests take consecutive items.
    bench
        .plugin_cell(
            label(ids::DECRYPT_C1, "Decrypt distinct", 1),
            decrypt_op(&client, &sealed),
        )
        .await;
    bench
        .raw_cell(
            label(ids::RAW_DECRYPT_C1, "Decrypt", 1),
            Mode::Decrypt,
            &all_corpus,
        )
        .await?;
    // The plugin's own hops space its Transit calls out; this shows what OpenBao's latency
    // is for a request that finds it idle (informational, in no ratio or target).
    bench
        .raw_cell(
            label(ids::RAW_DECRYPT_C1_PACED, "Decrypt, 1 ms think time", 1),
            Mode::DecryptPaced(1),
            &all_corpus,
        )
        .await?;
    bench
        .plugin_cell(
            label(ids::DECRYPT_C8, "Decrypt distinct", 8),
            decrypt_op(&client, &sealed),
        )
        .await;
    bench
        .raw_cell(
            label(ids::RAW_DECRYPT_C8, "Decrypt", 8),
            Mode::Decrypt,
            &all_corpus,
        )
        .await?;
    // One ciphertext decrypted by every worker: identical requests share a Transit item.
    bench
        .plugin_cell(
            label(ids::DECRYPT_ONE_C8, "Decrypt one ciphertext", 8),
            decrypt_op(&client, sealed.get(..1).unwrap_or_default()),
        )
        .await;

    // The storm: 256 distinct ciphertexts at c=64, like an apiserver restart reading its DEKs.
    let peak_reset = procfs::reset_peak(args.pid);
    bench
        .plugin_cell(
            label(ids::STORM_C64, "Decrypt storm, 256 distinct", 64),
            decrypt_op(&client, &storm),
        )
        .await;
    let storm_peak = procfs::memory(args.pid);
    memory.push(memory_row(
        if peak_reset {
            "end of the storm (VmHWM: the storm's peak)"
        } else {
            "end of the storm (VmHWM: peak since start, reset refused)"
        },
        storm_peak,
    ));
    bench
        .raw_cell(
            label(ids::RAW_DECRYPT_C64, "Decrypt, 256 distinct", 64),
            Mode::Decrypt,
            &storm_corpus,
        )
        .await?;
    bench
        .raw_cell(
            label(
                ids::RAW_BATCH_C4,
                "Decrypt batch_input ×64, 256 distinct",
                4,
            ),
            Mode::Batch(64),
            &storm_corpus,
        )
        .await?;

    memory.push(memory_row(
        "right after the last cell",
        procfs::memory(args.pid),
    ));
    // Idle blocking-pool threads exit after tokio's 10 s keep-alive.
    tokio::time::sleep(Duration::from_secs(12)).await;
    memory.push(memory_row(
        "12 s after the last cell",
        procfs::memory(args.pid),
    ));
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
            memory.push(memory_row(
                &format!("restart {number}, idle 1 s after healthy"),
                restart.idle_memory,
            ));
            restarts.push(restart);
        }
    }

    let report = Report {
        machine: procfs::machine(),
        openbao_version: args.openbao_version.clone(),
        load: (load_at_start, procfs::load_average()),
        plan: format!(
            "{} s per cell; plugin cells after {} warm-up requests, over one HTTP/2 connection \
             from a one-thread tokio client; raw cells by wrk (one thread, keep-alive, no \
             warm-up)",
            args.cell_seconds, args.warmup
        ),
        ratios: ratios(&cells),
        targets: targets(&cells, idle, storm_peak),
        cells,
        memory,
        storm_peak,
        peak_reset,
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
