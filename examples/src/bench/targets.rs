//! Issue 9's targets and the ratios to raw Transit, computed from one run's cells. Nothing here
//! is tuned: a target is PASS or FAIL on the numbers as measured.

use std::time::Duration;

use super::procfs::Memory;
use super::report::Cell;

/// Cell ids (see `kms_bench`), shared by the run and this evaluation.
pub(crate) const STATUS_C1: &str = "status-c1";
pub(crate) const STATUS_C8: &str = "status-c8";
pub(crate) const ENCRYPT_C1: &str = "encrypt-c1";
pub(crate) const DECRYPT_C1: &str = "decrypt-c1";
pub(crate) const DECRYPT_C8: &str = "decrypt-c8";
pub(crate) const DECRYPT_ONE_C8: &str = "decrypt-one-c8";
pub(crate) const STORM_C64: &str = "storm-c64";
pub(crate) const RAW_ENCRYPT_C1: &str = "raw-encrypt-c1";
pub(crate) const RAW_DECRYPT_C1: &str = "raw-decrypt-c1";
pub(crate) const RAW_DECRYPT_C1_PACED: &str = "raw-decrypt-c1-paced";
pub(crate) const RAW_DECRYPT_C8: &str = "raw-decrypt-c8";
pub(crate) const RAW_DECRYPT_C64: &str = "raw-decrypt-c64";
pub(crate) const RAW_BATCH_C4: &str = "raw-batch64-c4";

/// Decrypt c=1 may add at most this to raw Transit p50 + Status p50.
const DECRYPT_SLACK: Duration = Duration::from_micros(70);
/// Status p99 must stay below this.
const STATUS_P99: Duration = Duration::from_micros(200);
/// Idle RSS limit, KiB.
const IDLE_RSS_KIB: u64 = 8 * 1024;
/// Storm peak RSS limit, KiB.
const STORM_RSS_KIB: u64 = 16 * 1024;

/// A plugin cell's throughput divided by a raw one's.
#[derive(Clone, Debug)]
pub(crate) struct Ratio {
    pub(crate) plugin: String,
    pub(crate) plugin_rate: f64,
    pub(crate) baseline: String,
    /// Requests per second, or items per second for the batch baseline.
    pub(crate) baseline_rate: f64,
}

impl Ratio {
    pub(crate) fn value(&self) -> f64 {
        if self.baseline_rate > 0.0 {
            self.plugin_rate / self.baseline_rate
        } else {
            0.0
        }
    }
}

/// One target and how the run did against it; `pass` is `None` when a cell is missing.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) measured: String,
    pub(crate) limit: String,
    pub(crate) pass: Option<bool>,
}

fn find<'a>(cells: &'a [Cell], id: &str) -> Option<&'a Cell> {
    cells.iter().find(|cell| cell.id == id)
}

fn label(cell: &Cell) -> String {
    format!("{} c={}", cell.operation, cell.concurrency)
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

/// The plugin's throughput against raw Transit, for every pair both sides measured.
pub(crate) fn ratios(cells: &[Cell]) -> Vec<Ratio> {
    let pairs = [
        (ENCRYPT_C1, RAW_ENCRYPT_C1),
        (DECRYPT_C1, RAW_DECRYPT_C1),
        (DECRYPT_C8, RAW_DECRYPT_C8),
        (DECRYPT_ONE_C8, RAW_DECRYPT_C8),
        (STORM_C64, RAW_DECRYPT_C8),
        (STORM_C64, RAW_DECRYPT_C64),
        (STORM_C64, RAW_BATCH_C4),
    ];
    pairs
        .into_iter()
        .filter_map(|(plugin, raw)| {
            let plugin = find(cells, plugin)?;
            let raw = find(cells, raw)?;
            let per_item = raw.items_per_request > 1;
            Some(Ratio {
                plugin: label(plugin),
                plugin_rate: plugin.rate(),
                baseline: if per_item {
                    format!("{} c={} (items/s)", raw.operation, raw.concurrency)
                } else {
                    label(raw)
                },
                baseline_rate: raw.rate() * raw.items_per_request as f64,
            })
        })
        .collect()
}

/// A target over cells that must all be error-free: errors make it FAIL whatever the numbers.
fn judged(
    name: &'static str,
    cells: &[Option<&Cell>],
    measured: impl FnOnce() -> (String, String, bool),
) -> Target {
    if cells.iter().any(Option::is_none) {
        return Target {
            name,
            measured: "not measured".to_owned(),
            limit: String::new(),
            pass: None,
        };
    }
    let errors: u64 = cells.iter().flatten().map(|cell| cell.errors).sum();
    let (mut text, limit, pass) = measured();
    if errors > 0 {
        text.push_str(&format!(" ({errors} errors)"));
    }
    Target {
        name,
        measured: text,
        limit,
        pass: Some(pass && errors == 0),
    }
}

/// Issue 9's targets.
pub(crate) fn targets(
    cells: &[Cell],
    idle: Option<Memory>,
    storm_peak: Option<Memory>,
) -> Vec<Target> {
    let status1 = find(cells, STATUS_C1);
    let status8 = find(cells, STATUS_C8);
    let decrypt1 = find(cells, DECRYPT_C1);
    let decrypt8 = find(cells, DECRYPT_C8);
    let storm = find(cells, STORM_C64);
    let raw1 = find(cells, RAW_DECRYPT_C1);
    let raw8 = find(cells, RAW_DECRYPT_C8);
    let mut out = Vec::new();
    out.push(judged(
        "Decrypt c=1 p50 ≤ raw Transit p50 + Status p50 + 0.07 ms",
        &[decrypt1, raw1, status1],
        || {
            let (decrypt, raw, status) = (
                decrypt1.map_or(Duration::ZERO, |cell| cell.latency.p50),
                raw1.map_or(Duration::ZERO, |cell| cell.latency.p50),
                status1.map_or(Duration::ZERO, |cell| cell.latency.p50),
            );
            let limit = raw + status + DECRYPT_SLACK;
            (
                ms(decrypt),
                format!("≤ {} ({} + {} + 0.070)", ms(limit), ms(raw), ms(status)),
                decrypt <= limit,
            )
        },
    ));
    let rate_target = |name, plugin: Option<&Cell>, factor: f64| {
        judged(name, &[plugin, raw8], || {
            let rate = plugin.map_or(0.0, Cell::rate);
            let raw = raw8.map_or(0.0, Cell::rate);
            let ratio = if raw > 0.0 { rate / raw } else { 0.0 };
            (
                format!("{rate:.0} req/s = {ratio:.2}×"),
                format!("≥ {factor:.1}× {raw:.0} = {:.0} req/s", raw * factor),
                ratio >= factor,
            )
        })
    };
    out.push(rate_target(
        "Decrypt c=8 distinct ≥ 1.0× raw single-call c=8",
        decrypt8,
        1.0,
    ));
    out.push(rate_target(
        "Storm c=64 (256 distinct) ≥ 5× raw single-call c=8",
        storm,
        5.0,
    ));
    for (name, cell) in [
        ("Status c=1 p99 < 0.2 ms", status1),
        ("Status c=8 p99 < 0.2 ms", status8),
    ] {
        out.push(judged(name, &[cell], || {
            let p99 = cell.map_or(Duration::ZERO, |cell| cell.latency.p99);
            (ms(p99), format!("< {}", ms(STATUS_P99)), p99 < STATUS_P99)
        }));
    }
    for (name, memory, field, limit) in [
        (
            "RSS idle ≤ 8 MiB",
            idle,
            (|memory: Memory| memory.rss_kib) as fn(Memory) -> u64,
            IDLE_RSS_KIB,
        ),
        (
            "RSS peak during the storm ≤ 16 MiB",
            storm_peak,
            |memory: Memory| memory.hwm_kib,
            STORM_RSS_KIB,
        ),
    ] {
        out.push(match memory {
            Some(memory) => {
                let kib = field(memory);
                Target {
                    name,
                    measured: format!("{:.1} MiB", kib as f64 / 1024.0),
                    limit: format!("≤ {} MiB", limit / 1024),
                    pass: Some(kib <= limit),
                }
            }
            None => Target {
                name,
                measured: "not measured".to_owned(),
                limit: String::new(),
                pass: None,
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{CpuTicks, Latency, Path};

    fn cell(id: &'static str, ok: u64, errors: u64, p50_us: u64, p99_us: u64) -> Cell {
        Cell {
            id,
            operation: "op",
            path: Path::Plugin,
            concurrency: 1,
            ok,
            errors,
            wall: Duration::from_secs(1),
            latency: Latency {
                p50: Duration::from_micros(p50_us),
                p90: Duration::from_micros(p99_us),
                p99: Duration::from_micros(p99_us),
                max: Duration::from_micros(p99_us),
            },
            transit_calls: None,
            batch_calls: None,
            retries: None,
            items_per_request: 1,
            cpu: CpuTicks::default(),
        }
    }

    fn verdicts(cells: &[Cell], idle_kib: u64, peak_kib: u64) -> Vec<Option<bool>> {
        let memory = |rss_kib, hwm_kib| Memory {
            rss_kib,
            hwm_kib,
            threads: 1,
        };
        targets(
            cells,
            Some(memory(idle_kib, idle_kib)),
            Some(memory(peak_kib, peak_kib)),
        )
        .into_iter()
        .map(|target| target.pass)
        .collect()
    }

    #[test]
    fn targets_pass_at_their_limits_and_fail_past_them() {
        // Decrypt p50 exactly raw + status + 70 µs; storm exactly 5×; Status p99 199 µs.
        let passing = [
            cell(STATUS_C1, 100, 0, 50, 199),
            cell(STATUS_C8, 100, 0, 50, 199),
            cell(DECRYPT_C1, 100, 0, 620, 900),
            cell(RAW_DECRYPT_C1, 100, 0, 500, 900),
            cell(DECRYPT_C8, 1000, 0, 1, 1),
            cell(RAW_DECRYPT_C8, 1000, 0, 1, 1),
            cell(STORM_C64, 5000, 0, 1, 1),
        ];
        assert_eq!(verdicts(&passing, 8 * 1024, 16 * 1024), vec![Some(true); 7]);
        let failing = [
            cell(STATUS_C1, 100, 0, 50, 200),
            cell(STATUS_C8, 100, 0, 50, 199),
            cell(DECRYPT_C1, 100, 0, 621, 900),
            cell(RAW_DECRYPT_C1, 100, 0, 500, 900),
            cell(DECRYPT_C8, 999, 0, 1, 1),
            cell(RAW_DECRYPT_C8, 1000, 0, 1, 1),
            // Enough throughput, but errors fail it.
            cell(STORM_C64, 6000, 1, 1, 1),
        ];
        assert_eq!(
            verdicts(&failing, 8 * 1024 + 1, 16 * 1024 + 1),
            vec![
                Some(false),
                Some(false),
                Some(false),
                Some(false),
                Some(true),
                Some(false),
                Some(false)
            ]
        );
        // A missing cell is not judged.
        assert_eq!(verdicts(&[], 1, 1)[0], None);
    }

    #[test]
    fn the_batch_baseline_counts_items() {
        let mut batch = cell(RAW_BATCH_C4, 100, 0, 1, 1);
        batch.items_per_request = 64;
        let ratios = ratios(&[cell(STORM_C64, 3200, 0, 1, 1), batch]);
        assert_eq!(ratios.len(), 1);
        assert!((ratios[0].baseline_rate - 6400.0).abs() < 1e-9);
        assert!((ratios[0].value() - 0.5).abs() < 1e-9);
    }
}
