//! `upgrade-check`: may this node move to another release (an upgrade or a rollback)?
//!
//! The answer comes from [`check_move`] alone: this module only gathers its three inputs and
//! renders its verdict.
//!
//! - the target's compatibility manifest, from the other binary (`version --output json`, run
//!   with a time limit) or from a manifest file (TOML, or that JSON);
//! - this release's manifest ([`Manifest::this_release`]);
//! - the formats in use on this node: the local registry state ([`FormatsInUse::from_state`]),
//!   the configuration keys only newer releases accept ([`Config::additions_used`]), and, when
//!   OpenBao answers, whether Transit already has a version newer than the local active one (a
//!   rotation this node has not promoted yet counts as pending).
//!
//! Checks: `upgrade.target`, `upgrade.direction`, `upgrade.state`, `upgrade.transit`,
//! `upgrade.rotation`, `upgrade.formats`, `upgrade.config`, `upgrade.reverse`. The report fails
//! (exit 4) when the move is unsafe or when the inputs could not be read.

use std::cmp::Ordering;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bao_kms_core::compat::{Blocker, FormatsInUse, Manifest, MoveVerdict, check_move};
use bao_kms_core::registry::{SnapshotState, StateFile};
use bao_kms_core::transit::KeyMetadata;
use bao_kms_core::{TransitRequest, TransitResponse};

use super::report::{CheckStatus, Report};
use super::session::load_config;
use super::{Cli, ExitCode, Output};
use crate::adapters::client_settings;
use crate::config::{Config, ConfigError, Problem};
use crate::files::{RegistryPaths, read_stored};
use crate::openbao::OpenBaoClient;

/// How long the target binary may take to print its version.
const TARGET_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest manifest file or binary output read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

pub(super) fn run(
    cli: &Cli,
    target_binary: Option<&Path>,
    target_manifest: Option<&Path>,
    output: Output,
) -> ExitCode {
    let source = match (target_binary, target_manifest) {
        (Some(binary), None) => Target::Binary(binary),
        (None, Some(manifest)) => Target::Manifest(manifest),
        (None, None) | (Some(_), Some(_)) => {
            eprintln!("upgrade-check needs exactly one of --target-binary or --target-manifest");
            return ExitCode::Usage;
        }
    };
    let config = match load_config(cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let paths = match RegistryPaths::new(&config.state_path) {
        Ok(paths) => paths,
        Err(error) => {
            eprintln!(
                "{}",
                ConfigError::new(vec![Problem::new("state.path", error.to_string())])
            );
            return ExitCode::Config;
        }
    };
    let target = source.read();
    let state = local_state(&paths);
    // Transit is asked only when there is a local active version to compare with.
    let live = match &state {
        Ok(Some(_)) => Some(live_metadata(&config)),
        Ok(None) | Err(_) => None,
    };
    let inputs = Inputs {
        local: Manifest::this_release(),
        target,
        source_name: source.describe(),
        state,
        live,
        additions: config
            .additions_used()
            .iter()
            .map(|key| (*key).to_owned())
            .collect(),
    };
    evaluate(&inputs).emit(output)
}

/// Where the target manifest comes from.
enum Target<'a> {
    Binary(&'a Path),
    Manifest(&'a Path),
}

impl Target<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Binary(path) => format!("binary {}", path.display()),
            Self::Manifest(path) => format!("manifest {}", path.display()),
        }
    }

    fn read(&self) -> Result<Manifest, String> {
        match self {
            Self::Binary(path) => manifest_from_binary(path),
            Self::Manifest(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                let mut text = String::new();
                file.take(MAX_MANIFEST_BYTES)
                    .read_to_string(&mut text)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                parse_manifest(&text)
            }
        }
    }
}

/// Everything the verdict is computed from.
struct Inputs {
    local: Manifest,
    target: Result<Manifest, String>,
    source_name: String,
    /// The decoded local state; `None` when there is none.
    state: Result<Option<StateFile>, String>,
    /// Live key metadata; `None` when not asked.
    live: Option<Result<KeyMetadata, String>>,
    additions: Vec<String>,
}

/// A manifest from a manifest file: TOML, or the JSON of `version --output json` (or the bare
/// manifest as JSON).
fn parse_manifest(text: &str) -> Result<Manifest, String> {
    if text.trim_start().starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| format!("invalid JSON: {error}"))?;
        let manifest = value.get("compatibility").cloned().unwrap_or(value);
        serde_json::from_value(manifest).map_err(|error| {
            format!("not a compatibility manifest this release understands: {error}")
        })
    } else {
        Manifest::from_toml(text).map_err(|error| {
            format!(
                "not a compatibility manifest this release understands: {}",
                error.to_string().trim()
            )
        })
    }
}

/// Runs `<binary> version --output json` with a time limit and takes its `compatibility`.
fn manifest_from_binary(path: &Path) -> Result<Manifest, String> {
    let mut child = Command::new(path)
        .args(["version", "--output", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", path.display()))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(MAX_MANIFEST_BYTES).read_to_end(&mut out);
        }
        if let Some(stderr) = stderr {
            let _ = stderr.take(MAX_MANIFEST_BYTES).read_to_end(&mut err);
        }
        let _ = sender.send((out, err));
    });
    let deadline = crate::clock::now() + TARGET_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if crate::clock::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not print its version within {}s",
                    path.display(),
                    TARGET_TIMEOUT.as_secs()
                ));
            }
        }
    };
    let (out, err) = receiver
        .recv_timeout(Duration::from_secs(1))
        .map_err(|_| format!("{} kept its output open after exiting", path.display()))?;
    let _ = reader.join();
    if !status.success() {
        let first = String::from_utf8_lossy(&err)
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>();
        return Err(format!(
            "`{} version --output json` failed ({status}): {first}; releases without a \
             compatibility manifest cannot be checked, pass --target-manifest instead",
            path.display()
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&out).map_err(|_| {
        format!(
            "{} printed no JSON for `version --output json`; releases without a compatibility \
             manifest cannot be checked, pass --target-manifest instead",
            path.display()
        )
    })?;
    let manifest = value.get("compatibility").cloned().ok_or_else(|| {
        format!(
            "{} printed no compatibility manifest; pass --target-manifest instead",
            path.display()
        )
    })?;
    serde_json::from_value(manifest)
        .map_err(|error| format!("not a compatibility manifest this release understands: {error}"))
}

/// The decoded local state, `Ok(None)` when this node has none yet.
fn local_state(paths: &RegistryPaths) -> Result<Option<StateFile>, String> {
    if std::fs::symlink_metadata(paths.dir())
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(None);
    }
    let stored = read_stored(paths).map_err(|error| error.to_string())?;
    match (stored.state, stored.checkpoint) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!(
            "{} exists without its state file (restored or deleted by hand?)",
            paths.checkpoint().display()
        )),
        (Some(bytes), _) => StateFile::decode(&bytes)
            .map(Some)
            .map_err(|error| format!("{}: {error}", paths.state().display())),
    }
}

/// `GET <mount>/keys/<key>` through the configured client.
fn live_metadata(config: &Config) -> Result<KeyMetadata, String> {
    let client = OpenBaoClient::new(client_settings(config))
        .map_err(|error| format!("no OpenBao client: {error}"))?;
    match client.execute(&TransitRequest::ReadKeyMetadata) {
        Ok(TransitResponse::KeyMetadata(metadata)) => Ok(metadata),
        Ok(_) => Err("OpenBao answered with something other than key metadata".to_owned()),
        Err(failure) => Err(match failure.http_status {
            Some(status) => format!(
                "{} (HTTP {status}) from OpenBao at {}",
                failure.class, config.openbao.address
            ),
            None => format!(
                "{} from OpenBao at {}",
                failure.class, config.openbao.address
            ),
        }),
    }
}

/// Builds the report from the inputs.
fn evaluate(inputs: &Inputs) -> Report {
    let mut report = Report::new("upgrade-check");
    let target = match &inputs.target {
        Ok(target) => target,
        Err(reason) => {
            report.push(
                "upgrade.target",
                "the target release's compatibility manifest is read",
                CheckStatus::Fail,
                reason.clone(),
            );
            // The same check ids in the same order as a full report, so scripts read one shape.
            for (id, title) in [
                ("upgrade.direction", "direction of the move"),
                ("upgrade.state", "the local registry state is read"),
                ("upgrade.transit", "live Transit key metadata is read"),
                ("upgrade.rotation", "no rotation is pending"),
                ("upgrade.formats", "the target reads every format in use"),
                ("upgrade.config", "the target accepts the configuration"),
                (
                    "upgrade.reverse",
                    "this release reads what the target writes",
                ),
            ] {
                report.push(id, title, CheckStatus::Skip, "no target manifest");
            }
            return report;
        }
    };
    let local = &inputs.local;
    let newer_format = target.manifest_version > local.manifest_version;
    report.push(
        "upgrade.target",
        "the target release's compatibility manifest is read",
        if newer_format {
            CheckStatus::Warn
        } else {
            CheckStatus::Pass
        },
        if newer_format {
            format!(
                "release {} from {}; its manifest format {} is newer than this release's ({}): \
                 run the check with the newer binary too",
                target.release, inputs.source_name, target.manifest_version, local.manifest_version
            )
        } else {
            format!("release {} from {}", target.release, inputs.source_name)
        },
    );
    report.push(
        "upgrade.direction",
        "direction of the move",
        CheckStatus::Pass,
        direction(&local.release, &target.release),
    );

    // The formats in use.
    let mut in_use = match &inputs.state {
        Ok(Some(state)) => {
            let active = state.active();
            report.push(
                "upgrade.state",
                "the local registry state is read",
                CheckStatus::Pass,
                format!(
                    "generation {}, active Transit version {}, record states: {}",
                    state.generation(),
                    active.version().get(),
                    record_states(state)
                ),
            );
            FormatsInUse::from_state(state)
        }
        Ok(None) => {
            report.push(
                "upgrade.state",
                "the local registry state is read",
                CheckStatus::Pass,
                "no state yet: this node has issued nothing",
            );
            FormatsInUse::default()
        }
        Err(reason) => {
            report.push(
                "upgrade.state",
                "the local registry state is read",
                CheckStatus::Fail,
                format!("{reason}; the formats in use are unknown, so no move is shown safe"),
            );
            FormatsInUse::default()
        }
    };
    in_use.config_additions = inputs.additions.iter().cloned().collect();
    in_use.config_version = Some(crate::config::CONFIG_VERSION.to_owned());

    let local_active = match &inputs.state {
        Ok(Some(state)) => Some(u64::from(state.active().version().get())),
        Ok(None) | Err(_) => None,
    };
    let mut rotation_reasons = Vec::new();
    if let Ok(Some(state)) = &inputs.state {
        for record in state.records() {
            if record.state() == SnapshotState::Pending {
                rotation_reasons.push(format!(
                    "the local registry has a pending record for Transit version {}",
                    record.version().get()
                ));
            }
        }
    }
    let mut live_known = false;
    match (&inputs.live, local_active) {
        (Some(Ok(metadata)), Some(active)) => {
            live_known = true;
            let ahead = metadata.latest_version > active;
            report.push(
                "upgrade.transit",
                "live Transit key metadata is read",
                CheckStatus::Pass,
                format!(
                    "latest_version={}, local active version {active}",
                    metadata.latest_version
                ),
            );
            if ahead {
                in_use.rotation_pending = true;
                rotation_reasons.push(format!(
                    "Transit latest_version {} is above the local active version {active}: a \
                     rotation is in progress",
                    metadata.latest_version
                ));
            }
        }
        (Some(Err(reason)), _) => report.push(
            "upgrade.transit",
            "live Transit key metadata is read",
            CheckStatus::Warn,
            format!(
                "unavailable ({reason}); a rotation this node has not observed yet cannot be \
                 ruled out"
            ),
        ),
        (Some(Ok(_)), None) | (None, _) => report.push(
            "upgrade.transit",
            "live Transit key metadata is read",
            CheckStatus::Skip,
            "no local active version to compare with",
        ),
    }

    let verdict = check_move(local, target, &in_use);
    render_verdict(
        &mut report,
        &verdict,
        &in_use,
        &rotation_reasons,
        live_known,
        local,
        target,
    );
    report
}

fn render_verdict(
    report: &mut Report,
    verdict: &MoveVerdict,
    in_use: &FormatsInUse,
    rotation_reasons: &[String],
    live_known: bool,
    local: &Manifest,
    target: &Manifest,
) {
    let mut rotation = false;
    let mut formats = Vec::new();
    let mut config = Vec::new();
    for blocker in &verdict.blockers {
        match blocker {
            Blocker::RotationPending => rotation = true,
            Blocker::UnreadableFormat { kind, format } => {
                let mut message = blocker.to_string();
                if *kind == "record state" && format == "removed" {
                    message.push_str(
                        " (retire-versions made this one-way for releases that do not read it; \
                         restore-versions turns removed records back into retired ones)",
                    );
                }
                formats.push(message);
            }
            Blocker::UnsupportedConfig { key } => config.push(format!(
                "{blocker}: remove {key} from the configuration before the move"
            )),
            // Only reported for the way back, below.
            Blocker::WrittenFormatUnreadable { .. } => {}
        }
    }

    let title = "no rotation is pending";
    if rotation {
        let mut reasons = rotation_reasons.to_vec();
        if reasons.is_empty() {
            reasons.push(Blocker::RotationPending.to_string());
        }
        report.push(
            "upgrade.rotation",
            title,
            CheckStatus::Fail,
            format!(
                "{}; wait until every node has promoted it (rotation-plan, fleet-check)",
                reasons.join("; ")
            ),
        );
    } else if live_known || in_use.state_schema.is_none() {
        report.push("upgrade.rotation", title, CheckStatus::Pass, "");
    } else {
        report.push(
            "upgrade.rotation",
            title,
            CheckStatus::Warn,
            "no pending record in the local registry, but Transit was not consulted",
        );
    }

    let title = "the target reads every format in use";
    if formats.is_empty() {
        let message = if in_use.state_schema.is_some() {
            format!(
                "key_id {}, annotations {}, AAD {}, state {}, checkpoint {}, record states {}",
                joined(&in_use.key_id_formats),
                joined(&in_use.annotation_schemas),
                joined(&in_use.aad_versions),
                in_use.state_schema.as_deref().unwrap_or("none"),
                in_use.checkpoint_schema.as_deref().unwrap_or("none"),
                joined(&in_use.record_states),
            )
        } else {
            "no local state: no format in use on this node".to_owned()
        };
        report.push("upgrade.formats", title, CheckStatus::Pass, message);
    } else {
        report.push(
            "upgrade.formats",
            title,
            CheckStatus::Fail,
            formats.join("; "),
        );
    }

    let title = "the target accepts the configuration";
    if config.is_empty() {
        let message = if in_use.config_additions.is_empty() {
            "no configuration additions in use".to_owned()
        } else {
            format!(
                "additions in use, all accepted: {}",
                joined(&in_use.config_additions)
            )
        };
        report.push("upgrade.config", title, CheckStatus::Pass, message);
    } else {
        report.push(
            "upgrade.config",
            title,
            CheckStatus::Fail,
            config.join("; "),
        );
    }

    let title = "this release reads what the target writes";
    let reverse: Vec<String> = verdict
        .target_writes_unknown_formats
        .iter()
        .map(|blocker| match blocker {
            Blocker::UnreadableFormat { kind, format }
            | Blocker::WrittenFormatUnreadable { kind, format } => format!("{kind} {format:?}"),
            Blocker::RotationPending | Blocker::UnsupportedConfig { .. } => blocker.to_string(),
        })
        .collect();
    if reverse.is_empty() {
        report.push("upgrade.reverse", title, CheckStatus::Pass, "");
    } else {
        report.push(
            "upgrade.reverse",
            title,
            CheckStatus::Warn,
            format!(
                "release {} writes {} which release {} cannot read: once the target has \
                 written it, moving back to {} is unsafe",
                target.release,
                reverse.join(", "),
                local.release,
                local.release
            ),
        );
    }
}

fn record_states(state: &StateFile) -> String {
    let states: std::collections::BTreeSet<&str> = state
        .records()
        .iter()
        .map(|record| record.state().as_str())
        .collect();
    states.into_iter().collect::<Vec<_>>().join(", ")
}

fn joined(set: &std::collections::BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// `upgrade from A to B`, `rollback from A to B`, `same release A`, or `move from A to B` when
/// the versions do not compare as semantic versions.
fn direction(local: &str, target: &str) -> String {
    match compare_versions(target, local) {
        Some(Ordering::Greater) => format!("upgrade from {local} to {target}"),
        Some(Ordering::Less) => format!("rollback from {local} to {target}"),
        Some(Ordering::Equal) => format!("same release {local}"),
        None => format!("move from {local} to {target} (the versions do not compare)"),
    }
}

/// Semantic-version order, loosely: an optional `v`, `MAJOR.MINOR.PATCH`, an optional
/// `-prerelease` (lower than the release) and an ignored `+build`.
fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    let (a_core, a_pre) = split_version(a)?;
    let (b_core, b_pre) = split_version(b)?;
    Some(a_core.cmp(&b_core).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => compare_prerelease(a, b),
    }))
}

fn split_version(text: &str) -> Option<([u64; 3], Option<&str>)> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let text = text.split_once('+').map_or(text, |(version, _)| version);
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let version = [parts.next()??, parts.next()??, parts.next()??];
    if parts.next().is_some() {
        return None;
    }
    Some((version, pre))
}

fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_semantic_versions_with_prereleases_below_releases() {
        assert_eq!(direction("0.1.0", "0.2.0"), "upgrade from 0.1.0 to 0.2.0");
        assert_eq!(
            direction("v0.2.0", "0.1.0"),
            "rollback from v0.2.0 to 0.1.0"
        );
        assert_eq!(direction("0.1.0", "0.1.0"), "same release 0.1.0");
        assert_eq!(
            compare_versions("0.1.0-preview.3", "0.1.0"),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_versions("0.1.0-preview.10", "0.1.0-preview.3"),
            Some(Ordering::Greater)
        );
        assert!(direction("0.1.0", "nightly").starts_with("move from"));
    }

    #[test]
    fn a_manifest_file_may_be_toml_the_version_json_or_the_bare_manifest_json() {
        let manifest = Manifest::this_release();
        let toml = bao_kms_core::compat::RELEASE_MANIFEST_TOML;
        assert_eq!(parse_manifest(toml).as_ref(), Ok(&manifest));
        let bare = serde_json::to_string(&manifest).unwrap_or_default();
        assert_eq!(parse_manifest(&bare).as_ref(), Ok(&manifest));
        let wrapped = format!("{{\"version\": \"v0\", \"compatibility\": {bare}}}");
        assert_eq!(parse_manifest(&wrapped).as_ref(), Ok(&manifest));
        assert!(parse_manifest("manifest_version = 1").is_err());
    }
}
