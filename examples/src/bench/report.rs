//! The results: one row per cell, memory and restart tables, as Markdown or JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::procfs::{Machine, Memory, TICKS_PER_SECOND};
use super::startup::Restart;

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
    /// This load generator (with the raw Transit client).
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

/// One measured cell.
#[derive(Clone, Debug)]
pub(crate) struct Cell {
    /// `Status`, `Encrypt`, ...
    pub(crate) operation: String,
    /// `plugin` or `raw Transit`.
    pub(crate) path: &'static str,
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// Requests answered.
    pub(crate) count: usize,
    /// Requests that failed.
    pub(crate) errors: u64,
    /// Wall time of the cell.
    pub(crate) wall: Duration,
    /// Successful requests only.
    pub(crate) latency: Latency,
    /// HTTP requests to OpenBao during the cell (the plugin's own counter, or the raw client's).
    pub(crate) openbao_requests: Option<u64>,
    /// CPU spent during the cell.
    pub(crate) cpu: CpuTicks,
}

impl Cell {
    fn ok(&self) -> usize {
        self.count
            .saturating_sub(usize::try_from(self.errors).unwrap_or(usize::MAX))
    }

    /// Successful requests per second.
    fn rate(&self) -> f64 {
        let seconds = self.wall.as_secs_f64();
        if seconds > 0.0 {
            self.ok() as f64 / seconds
        } else {
            0.0
        }
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
        (self.count > 0).then(|| ticks as f64 * 1e6 / TICKS_PER_SECOND as f64 / self.count as f64)
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
    /// Requests per cell as configured.
    pub(crate) plan: String,
    /// The cells, in run order.
    pub(crate) cells: Vec<Cell>,
    /// Memory readings.
    pub(crate) memory: Vec<MemoryRow>,
    /// SIGTERM to exit of the plugin started by the caller, before the restarts.
    pub(crate) first_stop: Option<Duration>,
    /// The restarts.
    pub(crate) restarts: Vec<Restart>,
    /// Total run time.
    pub(crate) total: Duration,
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1e3)
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.decimals$}"))
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
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
            "| Operation | Path | c | count | errors | req/s | p50 ms | p90 ms | p99 ms | max ms \
             | OpenBao reqs | CPU µs/req plugin | CPU µs/req OpenBao | CPU µs/req bench \
             | other CPU % |\n",
        );
        out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for cell in &self.cells {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell.operation,
                cell.path,
                cell.concurrency,
                cell.count,
                cell.errors,
                cell.rate(),
                ms(cell.latency.p50),
                ms(cell.latency.p90),
                ms(cell.latency.p99),
                ms(cell.latency.max),
                cell.openbao_requests
                    .map_or_else(|| "–".to_owned(), |count| count.to_string()),
                optional(cell.cpu_per_request(cell.cpu.plugin), 0),
                optional(cell.cpu_per_request(cell.cpu.openbao), 0),
                optional(cell.cpu_per_request(cell.cpu.bench), 0),
                optional(cell.other_percent(machine.cpus), 0),
            );
        }
        out.push_str("\n| Plugin memory | VmRSS MiB | VmHWM MiB | threads |\n|---|--:|--:|--:|\n");
        for row in &self.memory {
            let (rss, hwm, threads) = row.memory.map_or_else(
                || ("–".to_owned(), "–".to_owned(), "–".to_owned()),
                |memory| {
                    (
                        mib(memory.rss_kib),
                        mib(memory.hwm_kib),
                        memory.threads.to_string(),
                    )
                },
            );
            let _ = writeln!(out, "| {} | {rss} | {hwm} | {threads} |", row.label);
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
        let cells: Vec<Value> = self
            .cells
            .iter()
            .map(|cell| {
                json!({
                    "operation": cell.operation,
                    "path": cell.path,
                    "concurrency": cell.concurrency,
                    "count": cell.count,
                    "errors": cell.errors,
                    "wall_ms": duration_ms(cell.wall),
                    "requests_per_second": cell.rate(),
                    "p50_ms": duration_ms(cell.latency.p50),
                    "p90_ms": duration_ms(cell.latency.p90),
                    "p99_ms": duration_ms(cell.latency.p99),
                    "max_ms": duration_ms(cell.latency.max),
                    "openbao_requests": cell.openbao_requests,
                    "cpu_us_per_request": {
                        "plugin": cell.cpu_per_request(cell.cpu.plugin),
                        "openbao": cell.cpu_per_request(cell.cpu.openbao),
                        "bench": cell.cpu_per_request(cell.cpu.bench),
                    },
                    "other_cpu_percent": cell.other_percent(self.machine.cpus),
                })
            })
            .collect();
        let memory: Vec<Value> = self
            .memory
            .iter()
            .map(|row| {
                json!({
                    "label": row.label,
                    "vm_rss_kib": row.memory.map(|memory| memory.rss_kib),
                    "vm_hwm_kib": row.memory.map(|memory| memory.hwm_kib),
                    "threads": row.memory.map(|memory| memory.threads),
                })
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
            "memory": memory,
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
