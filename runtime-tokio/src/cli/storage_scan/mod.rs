//! `storage-scan`: which key every value in etcd is stored under, read-only.
//!
//! Reads every key under the apiserver's storage prefix through etcd's v3 JSON gateway
//! ([`etcd`]), one page at a time at one store revision, paced by a rate limit, and counts each
//! value with [`bao_kms_core::storage_scan`]. It never writes to etcd and never decrypts. The
//! report is the project's check format plus a `scan` object (counts and per-version verdicts),
//! which `retire-versions --storage-report FILE` reads back ([`gate`]).

mod encryption;
mod etcd;
pub(super) mod gate;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use bao_kms_core::StateFile;
use bao_kms_core::storage_scan::{ScanSummary, Tally, ValueKind, Verdict};
use clap::Args;
use serde::Serialize;

use self::etcd::{EtcdError, EtcdSettings, Gateway, after, prefix_end};
use super::report::{CheckStatus, Report};
use super::session::Session;
use super::{Cli, ExitCode, Output};
use crate::clock::{now, wall_clock_unix};
use crate::files;

/// The arguments of `storage-scan`.
#[derive(Clone, Debug, Args)]
pub struct StorageScanArgs {
    /// etcd client URL (https:// with the control plane's etcd client certificate).
    #[arg(long, value_name = "URL", default_value = "https://127.0.0.1:2379")]
    pub etcd_endpoint: String,
    /// CA bundle of etcd's serving certificate (PEM).
    #[arg(long, value_name = "PATH")]
    pub etcd_ca: Option<PathBuf>,
    /// etcd client certificate (PEM), e.g. /etc/kubernetes/pki/apiserver-etcd-client.crt.
    #[arg(long, value_name = "PATH")]
    pub etcd_cert: Option<PathBuf>,
    /// etcd client key (PEM).
    #[arg(long, value_name = "PATH")]
    pub etcd_key: Option<PathBuf>,
    /// The apiserver's storage prefix (its --etcd-prefix, with a trailing slash).
    #[arg(long, value_name = "PREFIX", default_value = "/registry/")]
    pub prefix: String,
    /// Keys per range request.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub page_size: u64,
    /// At most this many objects read per second; 0 removes the limit.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub rate_limit: u64,
    /// The KMS provider name in the EncryptionConfiguration (default: transit.keyIdScope.providerName).
    #[arg(long, value_name = "NAME")]
    pub provider_name: Option<String>,
    /// The apiserver's EncryptionConfiguration: flags plaintext objects of encrypted resources.
    #[arg(long, value_name = "PATH")]
    pub encryption_config: Option<PathBuf>,
    /// Also write the JSON report to this file (for `retire-versions --storage-report`).
    #[arg(long, value_name = "PATH")]
    pub write_report: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// The deadline of one range request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest page accepted.
const MAX_PAGE_SIZE: u64 = 10_000;

/// The report: checks in the project's format, plus the counts.
#[derive(Debug, Serialize)]
pub(super) struct ScanReport {
    #[serde(flatten)]
    report: Report,
    scan: ScanSummary,
}

/// `storage-scan`.
pub(super) fn run(cli: &Cli, args: &StorageScanArgs) -> ExitCode {
    if args.page_size == 0 || args.page_size > MAX_PAGE_SIZE {
        eprintln!("--page-size must be between 1 and {MAX_PAGE_SIZE}");
        return ExitCode::Usage;
    }
    if !args.prefix.starts_with('/') {
        eprintln!("--prefix must start with /");
        return ExitCode::Usage;
    }
    let session = match Session::open(cli) {
        Ok(session) => session,
        Err(code) => return code,
    };
    let provider_name = args.provider_name.clone().unwrap_or_else(|| {
        session
            .config
            .identity()
            .key_scope()
            .provider_name()
            .to_owned()
    });
    let encrypted = match &args.encryption_config {
        Some(path) => match encryption::encrypted_resources(path) {
            Ok(resources) => Some(resources),
            Err(reason) => {
                eprintln!("--encryption-config: the file {reason}");
                return ExitCode::Usage;
            }
        },
        None => None,
    };
    let gateway = match Gateway::new(&EtcdSettings {
        endpoint: args.etcd_endpoint.clone(),
        ca: args.etcd_ca.clone(),
        cert: args.etcd_cert.clone(),
        key: args.etcd_key.clone(),
        timeout: REQUEST_TIMEOUT,
    }) {
        Ok(gateway) => gateway,
        Err(EtcdError::Usage(message)) => {
            eprintln!("{message}");
            return ExitCode::Usage;
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::Config;
        }
    };
    let mut report = Report::new("storage-scan");
    let registry = match files::read_stored(&session.paths) {
        Ok(stored) => match stored.state.as_deref().map(StateFile::decode) {
            Some(Ok(state)) => {
                report.push(
                    "registry.load",
                    "key registry loads",
                    CheckStatus::Pass,
                    format!("generation {}", state.generation()),
                );
                Some(state)
            }
            Some(Err(error)) => {
                report.push(
                    "registry.load",
                    "key registry loads",
                    CheckStatus::Fail,
                    error.to_string(),
                );
                None
            }
            None => {
                report.push(
                    "registry.load",
                    "key registry loads",
                    CheckStatus::Warn,
                    "no registry yet: every key_id is reported as unknown",
                );
                None
            }
        },
        Err(error) => {
            report.push(
                "registry.load",
                "key registry loads",
                CheckStatus::Fail,
                error.to_string(),
            );
            None
        }
    };
    let mut tally = Tally::new(&args.prefix, &provider_name);
    let pacing = Pacing {
        page_size: args.page_size,
        rate_limit: args.rate_limit,
        progress: std::io::stderr().is_terminal(),
    };
    let scanned = scan(&gateway, args.prefix.as_bytes(), &pacing, &mut tally);
    let summary = ScanSummary::build(
        &tally,
        registry.as_ref(),
        wall_clock_unix(),
        scanned.is_ok(),
    );
    match scanned {
        Ok(stats) => report.push(
            "etcd.scan",
            "every value under the prefix is read",
            CheckStatus::Pass,
            format!(
                "{} objects, {} bytes at revision {} in {:.1} s ({:.0} objects/s)",
                summary.objects,
                summary.bytes,
                stats.revision,
                stats.seconds,
                stats.rate()
            ),
        ),
        Err(error) => report.push(
            "etcd.scan",
            "every value under the prefix is read",
            CheckStatus::Fail,
            format!(
                "{error} (after {} objects; the counts are incomplete)",
                tally.objects()
            ),
        ),
    }
    verdict_checks(&mut report, &summary, encrypted.as_deref());
    let scan_report = ScanReport {
        report,
        scan: summary,
    };
    if let Some(path) = &args.write_report {
        let written = serde_json::to_string_pretty(&scan_report)
            .map_err(|error| error.to_string())
            .and_then(|json| std::fs::write(path, json + "\n").map_err(|error| error.to_string()));
        if let Err(error) = written {
            eprintln!("cannot write {}: {error}", path.display());
            return ExitCode::Failure;
        }
    }
    emit(&scan_report, args.output)
}

/// How fast and in what steps to read.
#[derive(Clone, Copy, Debug)]
struct Pacing {
    page_size: u64,
    /// Objects per second; 0 is unlimited.
    rate_limit: u64,
    /// Print progress on stderr.
    progress: bool,
}

/// What a completed scan measured.
#[derive(Clone, Copy, Debug)]
struct ScanStats {
    objects: u64,
    revision: i64,
    seconds: f64,
}

impl ScanStats {
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.objects as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Streams every key under `prefix` into `tally`, page by page, all at the revision of the
/// first page (so the counts are one consistent snapshot). Memory holds one page at a time.
fn scan(
    gateway: &Gateway,
    prefix: &[u8],
    pacing: &Pacing,
    tally: &mut Tally,
) -> Result<ScanStats, EtcdError> {
    let started = now();
    let end = prefix_end(prefix);
    let mut start = prefix.to_vec();
    let mut revision = 0;
    let mut objects = 0u64;
    loop {
        let page = gateway.range(&start, &end, pacing.page_size, revision)?;
        if revision == 0 {
            revision = page.revision;
        }
        let Some((last, _)) = page.kvs.last() else {
            break;
        };
        start = after(last);
        for (key, value) in &page.kvs {
            tally.add(key, value);
        }
        objects += page.kvs.len() as u64;
        if pacing.progress {
            let elapsed = now().duration_since(started).as_secs_f64();
            eprint!("\rstorage-scan: {objects} objects read ({elapsed:.0} s)");
            let _ = std::io::stderr().flush();
        }
        if !page.more {
            break;
        }
        if pacing.rate_limit > 0 {
            // Sleep until the average rate is back under the limit.
            let due = Duration::from_secs_f64(objects as f64 / pacing.rate_limit as f64);
            let elapsed = now().duration_since(started);
            if let Some(wait) = due.checked_sub(elapsed) {
                std::thread::sleep(wait);
            }
        }
    }
    if pacing.progress {
        eprintln!();
    }
    Ok(ScanStats {
        objects,
        revision,
        seconds: now().duration_since(started).as_secs_f64(),
    })
}

/// One check per finding: malformed and unreadable objects fail, unknown key_ids and versions
/// still referenced warn, plaintext in encrypted resources warns.
fn verdict_checks(report: &mut Report, summary: &ScanSummary, encrypted: Option<&[String]>) {
    let malformed = summary.count_of(ValueKind::KmsV2OursMalformed);
    report.push(
        "storage.malformed",
        "every value under this provider's name decodes",
        if malformed == 0 {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        format!("{malformed} malformed"),
    );
    for entry in &summary.versions {
        let version = entry
            .transit_version
            .map_or_else(|| "?".to_owned(), |version| version.to_string());
        let status = match entry.verdict {
            Verdict::Current | Verdict::SafeToRetire => CheckStatus::Pass,
            Verdict::StillReferenced | Verdict::UnknownKeyId => CheckStatus::Warn,
            Verdict::Unreadable => CheckStatus::Fail,
        };
        report.push(
            format!("storage.version.{version}"),
            format!("Transit version {version} ({})", entry.registry_state),
            status,
            format!(
                "{}: {} objects, keyIdHash={}",
                entry.verdict.as_str(),
                entry.objects,
                entry.key_id_hash
            ),
        );
    }
    if let Some(encrypted) = encrypted {
        let plaintext: Vec<String> = summary
            .resources
            .iter()
            .filter(|entry| encryption::covers(encrypted, &entry.resource))
            .filter_map(|entry| {
                let count = entry
                    .kinds
                    .get(ValueKind::Identity.as_str())
                    .copied()
                    .unwrap_or(0);
                (count > 0).then(|| format!("{}={count}", entry.resource))
            })
            .collect();
        report.push(
            "storage.plaintext",
            "resources the EncryptionConfiguration encrypts hold no plaintext",
            if plaintext.is_empty() {
                CheckStatus::Pass
            } else {
                CheckStatus::Warn
            },
            if plaintext.is_empty() {
                "none".to_owned()
            } else {
                format!("rewrite them: {}", plaintext.join(", "))
            },
        );
    }
}

fn emit(scan_report: &ScanReport, output: Output) -> ExitCode {
    match output {
        Output::Text => print!("{}", to_text(scan_report)),
        Output::Json => match serde_json::to_string_pretty(scan_report) {
            Ok(json) => println!("{json}"),
            Err(_) => return ExitCode::Failure,
        },
    }
    if scan_report.report.failed() {
        ExitCode::CheckFailed
    } else {
        ExitCode::Success
    }
}

/// The checks, then one line per resource type and per version.
fn to_text(scan_report: &ScanReport) -> String {
    let mut out = scan_report.report.to_text();
    for entry in &scan_report.scan.resources {
        let kinds: Vec<String> = entry
            .kinds
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect();
        out.push_str(&format!(
            "resource: {} objects={} {}\n",
            entry.resource,
            entry.objects,
            kinds.join(" ")
        ));
    }
    for entry in &scan_report.scan.versions {
        let version = entry
            .transit_version
            .map_or_else(|| "?".to_owned(), |version| version.to_string());
        out.push_str(&format!(
            "version: transitVersion={version} keyIdHash={} registryState={} objects={} verdict={}\n",
            entry.key_id_hash,
            entry.registry_state,
            entry.objects,
            entry.verdict.as_str()
        ));
    }
    out
}

#[cfg(test)]
mod tests;
