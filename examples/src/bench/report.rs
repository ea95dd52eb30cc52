//! The results: one row per cell, memory and restart tables, as Markdown or JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::procfs::{Machine, Memory, TICKS_PER_SECOND};
use super::startup::Restart;
use super::targets::{Ratio, Target};

/// Latency percentiles of the successful requests of one cell.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Latency {
    /// Median.
    pub(crate) p50: Duration,
    /// 90th percentile.
    pub(crate) p90: Duration,
    /// 99th percentile.
    pub(crate) p99: Duration,
    /// Slowest.
    pub(crate) max: Duration,
}

impl Latency {
    /// Nearest-rank percentiles.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let rank = |percent: usize| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let index = (samples.len() * percent).div_ceil(100).saturating_sub(1);
            samples.get(index).copied().unwrap_or_default()
        };
        Self {
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// CPU time (in `/proc` ticks) spent during one cell by each process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuTicks {
    /// The plugin.
    pub(crate) plugin: Option<u64>,
    /// The OpenBao server.
    pub(crate) openbao: Option<u64>,
    /// The load generator: `kms_bench` itself and the `wrk` runs it waited for.
    pub(crate) bench: Option<u64>,
    /// The whole machine (every process, and steal).
    pub(crate) machine: Option<u64>,
}

impl CpuTicks {
    /// `self - before`, per process.
    pub(crate) fn since(self, before: Self) -> Self {
        let delta = |after: Option<u64>, before: Option<u64>| Some(after?.saturating_sub(before?));
        Self {
            plugin: delta(self.plugin, before.plugin),
            openbao: delta(self.openbao, before.openbao),
            bench: delta(self.bench, before.bench),
            machine: delta(self.machine, before.machine),
        }
    }
}

/// Who served a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// The plugin, over its socket (tonic client in `kms_bench`).
    Plugin,
    /// OpenBao Transit directly (`wrk`).
    Raw,
}

impl Path {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Raw => "raw Transit (wrk)",
        }
    }
}

/// One measured cell.
#[derive(Clone, Debug)]
pub(crate) struct Cell {
    /// Stable name used by the ratios, the targets and the JSON (`decrypt-c8`, ...).
    pub(crate) id: &'static str,
    /// What was sent, for people.
    pub(crate) operation: &'static str,
    /// Who answered.
    pub(crate) path: Path,
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// Successful requests.
    pub(crate) ok: u64,
    /// Failed requests (error answers, wrong answers, timeouts).
    pub(crate) errors: u64,
    /// Wall time of the cell.
    pub(crate) wall: Duration,
    /// Latency (plugin: successful requests; wrk: every answer).
    pub(crate) latency: Latency,
    /// HTTP calls to Transit that carried the cell's requests: for the plugin its
    /// encrypt/decrypt/batch counters (background probes excluded), for raw one per request.
    pub(crate) transit_calls: Option<u64>,
    /// Of those, `batch_input` calls.
    pub(crate) batch_calls: Option<u64>,
    /// Retries the plugin made during the cell.
    pub(crate) retries: Option<u64>,
    /// Ciphertexts per request (64 for the raw batch cell, else 1).
    pub(crate) items_per_request: u64,
    /// CPU spent during the cell.
    pub(crate) cpu: CpuTicks,
}

impl Cell {
    fn answered(&self) -> u64 {
        self.ok + self.errors
    }

    /// Successful requests per second.
    pub(crate) fn rate(&self) -> f64 {
        let seconds = self.wall.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// Transit calls per successful request.
    pub(crate) fn calls_per_request(&self) -> Option<f64> {
        let calls = self.transit_calls?;
        (self.ok > 0).then(|| calls as f64 / self.ok as f64)
    }

    /// Share of the machine's CPU time used by everything else (other processes, steal) during
    /// the cell, in percent of all CPUs.
    fn other_percent(&self, cpus: usize) -> Option<f64> {
        let cpu = self.cpu;
        let ours = cpu.plugin? + cpu.openbao.unwrap_or(0) + cpu.bench?;
        let other = cpu.machine?.saturating_sub(ours) as f64;
        let available = self.wall.as_secs_f64() * TICKS_PER_SECOND as f64 * cpus as f64;
        (available > 0.0).then(|| (other / available * 100.0).min(100.0))
    }

    /// CPU microseconds per answered request.
    fn cpu_per_request(&self, ticks: Option<u64>) -> Option<f64> {
        let ticks = ticks?;
        let answered = self.answered();
        (answered > 0).then(|| ticks as f64 * 1e6 / TICKS_PER_SECOND as f64 / answered as f64)
    }
}

/// Memory of the plugin at one moment.
#[derive(Clone, Debug)]
pub(crate) struct MemoryRow {
    /// When.
    pub(crate) label: String,
    /// The reading.
    pub(crate) memory: Option<Memory>,
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    /// The machine.
    pub(crate) machine: Machine,
    /// OpenBao's version.
    pub(crate) openbao_version: Option<String>,
    /// Load averages when the run started and ended.
    pub(crate) load: (Option<String>, Option<String>),
    /// How the cells were run, for people.
    pub(crate) plan: String,
    /// The cells, in run order.
    pub(crate) cells: Vec<Cell>,
    /// Memory readings.
    pub(crate) memory: Vec<MemoryRow>,
    /// The plugin's memory right after the storm, with `VmHWM` reset just before it (when
    /// `peak_reset`), so `hwm_kib` is the storm's peak. Also one of the `memory` rows.
    pub(crate) storm_peak: Option<Memory>,
    /// Whether `VmHWM` could be reset before the storm; if not, it is the peak since start.
    pub(crate) peak_reset: bool,
    /// Ratios of plugin throughput to raw Transit.
    pub(crate) ratios: Vec<Ratio>,
    /// Issue 9's targets.
    pub(crate) targets: Vec<Target>,
    /// SIGTERM to exit of the plugin started by the caller, before the restarts.
    pub(crate) first_stop: Option<Duration>,
    /// The restarts.
    pub(crate) restarts: Vec<Restart>,
    /// Total run time.
    pub(crate) total: Duration,
}

fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1e3)
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.decimals$}"))
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "**FAIL**",
        None => "not measured",
    }
}

impl Report {
    /// The Markdown tables.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let machine = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {} logical CPUs ({}), Linux {}; OpenBao {}; load average {} at the start, \
             {} at the end; {}; run took {:.1} s.\n",
            machine.cpus,
            machine.cpu_model,
            machine.kernel,
            self.openbao_version.as_deref().unwrap_or("unknown"),
            self.load.0.as_deref().unwrap_or("unknown"),
            self.load.1.as_deref().unwrap_or("unknown"),
            self.plan,
            self.total.as_secs_f64(),
        );
        out.push_str(
            "| Cell | Path | c | ok | errors | req/s | p50 ms | p90 ms | p99 ms | max ms \
             | Transit calls | calls/req | batch calls | retries | CPU µs/req plugin \
             | CPU µs/req OpenBao | CPU µs/req load gen | other CPU % |\n",
        );
        out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        let count = |value: Option<u64>| value.map_or_else(|| "–".to_owned(), |n| n.to_string());
        for cell in &self.cells {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell.operation,
                cell.path.as_str(),
                cell.concurrency,
                cell.ok,
                cell.errors,
                cell.rate(),
                ms(cell.latency.p50),
                ms(cell.latency.p90),
                ms(cell.latency.p99),
                ms(cell.latency.max),
                count(cell.transit_calls),
                optional(cell.calls_per_request(), 3),
                count(cell.batch_calls),
                count(cell.retries),
                optional(cell.cpu_per_request(cell.cpu.plugin), 0),
                optional(cell.cpu_per_request(cell.cpu.openbao), 0),
                optional(cell.cpu_per_request(cell.cpu.bench), 0),
                optional(cell.other_percent(machine.cpus), 0),
            );
        }
        out.push_str("\n| Plugin | req/s | raw Transit baseline | raw req/s | ratio |\n");
        out.push_str("|---|--:|---|--:|--:|\n");
        for ratio in &self.ratios {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {:.0} | {:.2}× |",
                ratio.plugin,
                ratio.plugin_rate,
                ratio.baseline,
                ratio.baseline_rate,
                ratio.value()
            );
        }
        out.push_str("\n| Target (issue 9) | measured | limit | result |\n|---|--:|---|---|\n");
        for target in &self.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                target.name,
                target.measured,
                target.limit,
                verdict(target.pass)
            );
        }
        out.push_str("\n| Plugin memory | VmRSS MiB | VmHWM MiB | threads |\n|---|--:|--:|--:|\n");
        for row in &self.memory {
            let (label, memory) = (&row.label, row.memory);
            let (rss, hwm, threads) = memory.map_or_else(
                || ("–".to_owned(), "–".to_owned(), "–".to_owned()),
                |memory| {
                    (
                        mib(memory.rss_kib),
                        mib(memory.hwm_kib),
                        memory.threads.to_string(),
                    )
                },
            );
            let _ = writeln!(out, "| {label} | {rss} | {hwm} | {threads} |");
        }
        if !self.restarts.is_empty() {
            out.push_str(
                "\n| Restart | spawn → socket connectable ms | spawn → Status healthy ms \
                 | SIGTERM → exit ms |\n|---|--:|--:|--:|\n",
            );
            if let Some(stop) = self.first_stop {
                let _ = writeln!(
                    out,
                    "| (stop of the benchmarked plugin) | | | {} |",
                    ms(stop)
                );
            }
            for (number, restart) in self.restarts.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    number + 1,
                    ms(restart.socket),
                    ms(restart.healthy),
                    ms(restart.stop),
                );
            }
        }
        out
    }

    /// The same data as JSON.
    pub(crate) fn json(&self) -> Value {
        let duration_ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        let memory_json = |memory: Option<Memory>| {
            json!({
                "vm_rss_kib": memory.map(|memory| memory.rss_kib),
                "vm_hwm_kib": memory.map(|memory| memory.hwm_kib),
                "threads": memory.map(|memory| memory.threads),
            })
        };
        let cells: Vec<Value> = self
            .cells
            .iter()
            .map(|cell| {
                json!({
                    "id": cell.id,
                    "operation": cell.operation,
                    "path": cell.path.as_str(),
                    "concurrency": cell.concurrency,
                    "ok": cell.ok,
                    "errors": cell.errors,
                    "wall_ms": duration_ms(cell.wall),
                    "requests_per_second": cell.rate(),
                    "items_per_request": cell.items_per_request,
                    "p50_ms": duration_ms(cell.latency.p50),
                    "p90_ms": duration_ms(cell.latency.p90),
                    "p99_ms": duration_ms(cell.latency.p99),
                    "max_ms": duration_ms(cell.latency.max),
                    "transit_calls": cell.transit_calls,
                    "transit_calls_per_request": cell.calls_per_request(),
                    "batch_calls": cell.batch_calls,
                    "retries": cell.retries,
                    "cpu_us_per_request": {
                        "plugin": cell.cpu_per_request(cell.cpu.plugin),
                        "openbao": cell.cpu_per_request(cell.cpu.openbao),
                        "load_generator": cell.cpu_per_request(cell.cpu.bench),
                    },
                    "other_cpu_percent": cell.other_percent(self.machine.cpus),
                })
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratios
            .iter()
            .map(|ratio| {
                json!({
                    "plugin": ratio.plugin,
                    "plugin_rate": ratio.plugin_rate,
                    "baseline": ratio.baseline,
                    "baseline_rate": ratio.baseline_rate,
                    "ratio": ratio.value(),
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|target| {
                json!({
                    "target": target.name,
                    "measured": target.measured,
                    "limit": target.limit,
                    "pass": target.pass,
                })
            })
            .collect();
        let memory: Vec<Value> = self
            .memory
            .iter()
            .map(|row| {
                let mut value = memory_json(row.memory);
                value["label"] = json!(row.label);
                value
            })
            .collect();
        let restarts: Vec<Value> = self
            .restarts
            .iter()
            .map(|restart| {
                json!({
                    "socket_connectable_ms": duration_ms(restart.socket),
                    "status_healthy_ms": duration_ms(restart.healthy),
                    "stop_ms": duration_ms(restart.stop),
                })
            })
            .collect();
        json!({
            "machine": {
                "cpus": self.machine.cpus,
                "cpu_model": self.machine.cpu_model,
                "kernel": self.machine.kernel,
            },
            "openbao_version": self.openbao_version,
            "load_average": { "start": self.load.0, "end": self.load.1 },
            "plan": self.plan,
            "total_ms": duration_ms(self.total),
            "cells": cells,
            "ratios": ratios,
            "targets": targets,
            "memory": memory,
            "storm_peak": memory_json(self.storm_peak),
            "storm_peak_is_storm_only": self.peak_reset,
            "first_stop_ms": self.first_stop.map(duration_ms),
            "restarts": restarts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let latency = Latency::of(samples);
        assert_eq!(latency.p50, Duration::from_millis(50));
        assert_eq!(latency.p90, Duration::from_millis(90));
        assert_eq!(latency.p99, Duration::from_millis(99));
        assert_eq!(latency.max, Duration::from_millis(100));
        assert_eq!(Latency::of(Vec::new()).max, Duration::ZERO);
    }
}
