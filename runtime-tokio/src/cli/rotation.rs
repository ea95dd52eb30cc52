//! `rotation-plan`, `verify-rotation`, `retire-versions`, `restore-versions`.
//!
//! These commands only gather inputs (the registry files, one live Transit metadata read, the
//! configuration, the wall clock) and render; every decision is made by
//! [`bao_kms_core::plan`]. Text output is one `key: value` line per field in report order;
//! JSON output is the camelCase report with two-space indentation.

use std::fmt::Display;
use std::path::Path;

use bao_kms_core::plan::{
    self, Blocker, LiveMetadata, OperatorInput, OperatorPlan, OperatorRefusal, OperatorRequest,
    PlanInput, RotationPlan, VersionEntry,
};
use bao_kms_core::rotation::RotationPolicy;
use bao_kms_core::{FailureClass, TransitFailure};
use bao_kms_core::{KeyMetadata, StoredState, TransitRequest, TransitResponse};
use serde::Serialize;

use super::session::Session;
use super::storage_scan::gate::{self, StorageReferences};
use super::{Cli, ExitCode, Output, out};
use crate::clock::wall_clock_unix;
use crate::files::{self, FileError, RegistryLock};

/// Why `--apply` cannot take the registry lock while a provider holds it.
const LOCKED_MESSAGE: &str =
    "the provider must be stopped: key registry state is locked by another process";

/// `rotation-plan`, or `verify-rotation` when `verify`.
pub(super) fn plan(cli: &Cli, output: Output, verify: bool) -> ExitCode {
    let session = match Session::open(cli) {
        Ok(session) => session,
        Err(code) => return code,
    };
    let stored = read_files(&session);
    let metadata = read_metadata(&session);
    let input = PlanInput {
        local: stored.as_ref().map_err(String::as_str),
        metadata: live(&metadata),
        scope: session.config.identity(),
        policy: policy(&session),
        activation_delay: session.config.rotation.activation_delay,
        now_unix: wall_clock_unix(),
    };
    let report = plan::rotation_plan(&input, verify);
    if emit(&report, output, rotation_text).is_err() {
        return ExitCode::Failure;
    }
    if report.failed() {
        ExitCode::CheckFailed
    } else {
        ExitCode::Success
    }
}

/// What `retire-versions` knows about storage: a scan report, and whether the operator chose
/// to retire versions it still shows referenced.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct StorageGate<'a> {
    /// `--storage-report FILE`.
    pub(super) report: Option<&'a Path>,
    /// `--ignore-storage-references`.
    pub(super) ignore: bool,
}

/// `retire-versions`.
pub(super) fn retire(
    cli: &Cli,
    before: u32,
    apply: bool,
    expected: Option<&str>,
    storage: StorageGate<'_>,
    output: Output,
) -> ExitCode {
    if let Err(refusal) = plan::check_retire_flag(before) {
        return refuse(&refusal);
    }
    let summary = match storage.report.map(gate::load).transpose() {
        Ok(summary) => summary,
        Err(message) => {
            eprintln!("--storage-report: {message}");
            return ExitCode::Usage;
        }
    };
    // Retiring is the one runbook step that can make stored Secrets unreadable: without a scan
    // saying etcd no longer references the versions, it needs an explicit, logged override.
    // (An --apply without --expected-state-hash is a usage error, reported by `change` first.)
    if apply && expected.is_some() && summary.is_none() {
        if !storage.ignore {
            eprintln!(
                "refusing --apply without --storage-report: nothing confirms that etcd no \
                 longer references the versions being retired; run storage-scan \
                 --write-report FILE and pass --storage-report FILE (or \
                 --ignore-storage-references to retire without one)"
            );
            return ExitCode::CheckFailed;
        }
        eprintln!(
            "warning: --ignore-storage-references: retiring without a storage report; nothing \
             confirms that etcd no longer references the versions being retired"
        );
        tracing::warn!(
            message = "retire.storage_gate_overridden",
            before_version = before,
            report = false
        );
    }
    change(
        cli,
        OperatorRequest::Retire { before },
        apply,
        expected,
        output,
        summary.as_ref().map(|summary| (summary, storage.ignore)),
    )
}

/// `restore-versions`.
pub(super) fn restore(
    cli: &Cli,
    versions: &[u32],
    apply: bool,
    expected: Option<&str>,
    output: Output,
) -> ExitCode {
    if let Err(refusal) = plan::check_restore_flag(versions) {
        return refuse(&refusal);
    }
    change(
        cli,
        OperatorRequest::Restore { versions },
        apply,
        expected,
        output,
        None,
    )
}

/// Plans an operator change and, with `--apply`, writes it under the registry lock; `storage`
/// is a scan report and the override flag (retire only).
fn change(
    cli: &Cli,
    request: OperatorRequest<'_>,
    apply: bool,
    expected: Option<&str>,
    output: Output,
    storage: Option<(&bao_kms_core::storage_scan::ScanSummary, bool)>,
) -> ExitCode {
    let expected = if apply {
        match plan::check_expected_hash_flag(expected) {
            Ok(hash) => Some(hash),
            Err(refusal) => return refuse(&refusal),
        }
    } else {
        None
    };
    let session = match Session::open(cli) {
        Ok(session) => session,
        Err(code) => return code,
    };
    // Held until the end of the command: no provider may save in between.
    let _lock = if apply {
        match RegistryLock::acquire(&session.paths) {
            Ok(lock) => Some(lock),
            Err(FileError::Locked { .. }) => {
                eprintln!("{LOCKED_MESSAGE}");
                return ExitCode::CheckFailed;
            }
            Err(error) => {
                eprintln!("cannot lock the key registry: {error}");
                return ExitCode::CheckFailed;
            }
        }
    } else {
        None
    };
    let stored = read_files(&session);
    let metadata = read_metadata(&session);
    let input = OperatorInput {
        local: stored.as_ref().map_err(String::as_str),
        metadata: live(&metadata),
        scope: session.config.identity(),
        policy: policy(&session),
        now_unix: wall_clock_unix(),
    };
    let mut report = match plan::operator_plan(&input, request) {
        Ok(report) => report,
        Err(refusal) => return refuse(&refusal),
    };
    let references = storage.map(|(summary, _)| {
        let removed = report.removed_versions.as_deref().unwrap_or_default();
        gate::references(summary, removed, wall_clock_unix())
    });
    let emit_plan = |report: &OperatorPlan| emit_operator(report, references.as_ref(), output);
    if let (Some(_), Some(references)) = (&expected, &references)
        && references.blocked
    {
        if storage.is_some_and(|(_, ignore)| ignore) {
            eprintln!("{}", gate::override_warning(references));
        } else {
            let _ = emit_plan(&report);
            eprintln!("{}", gate::refusal(references));
            return ExitCode::CheckFailed;
        }
    }
    if let Some(expected) = expected {
        let writes = match report.authorize_apply(&expected) {
            Ok(writes) => writes,
            Err(refusal) => {
                let _ = emit_plan(&report);
                return refuse(&refusal);
            }
        };
        for write in &writes {
            if let Err(error) =
                files::write_registry(&session.paths, &write.state, &write.checkpoint)
            {
                let _ = emit_plan(&report);
                eprintln!("saving the key registry failed: {error}");
                return ExitCode::CheckFailed;
            }
        }
        report.applied = report.changed;
    }
    if emit_plan(&report).is_err() {
        return ExitCode::Failure;
    }
    if report.failed() {
        ExitCode::CheckFailed
    } else {
        ExitCode::Success
    }
}

/// The operator plan, with what a storage report says about the versions it removes.
fn emit_operator(
    report: &OperatorPlan,
    storage: Option<&StorageReferences>,
    output: Output,
) -> Result<(), ()> {
    #[derive(Serialize)]
    struct WithStorage<'a> {
        #[serde(flatten)]
        plan: &'a OperatorPlan,
        #[serde(rename = "storageReferences")]
        storage: &'a StorageReferences,
    }
    let Some(storage) = storage else {
        return emit(report, output, operator_text);
    };
    match output {
        Output::Text => {
            print!("{}{}", operator_text(report), gate::text(storage));
            Ok(())
        }
        Output::Json => emit(
            &WithStorage {
                plan: report,
                storage,
            },
            output,
            |_| String::new(),
        ),
    }
}

fn refuse(refusal: &OperatorRefusal) -> ExitCode {
    eprintln!("{refusal}");
    match refusal {
        OperatorRefusal::Usage(_) => ExitCode::Usage,
        OperatorRefusal::Check(_) => ExitCode::CheckFailed,
    }
}

fn policy(session: &Session) -> RotationPolicy {
    RotationPolicy {
        require_stable_observation_count: session.config.rotation.require_stable_observation_count,
        reject_version_rollback: session.config.rotation.reject_version_rollback,
    }
}

/// The registry files; a failure keeps its message (paths, never contents).
fn read_files(session: &Session) -> Result<StoredState, String> {
    files::read_stored(&session.paths).map_err(|error| error.to_string())
}

/// One metadata read (logging in first if needed); the failure keeps only its class, and the
/// server that failed is named on stderr (the report's shape has no place for it).
fn read_metadata(session: &Session) -> Result<KeyMetadata, FailureClass> {
    let result = match session.client.execute(&TransitRequest::ReadKeyMetadata) {
        Ok(TransitResponse::KeyMetadata(metadata)) => Ok(metadata),
        Ok(_) => Err(FailureClass::Unavailable),
        Err(TransitFailure { class, .. }) => Err(class),
    };
    if let Err(class) = &result {
        eprintln!(
            "Transit key metadata read from OpenBao at {} failed ({class})",
            session.config.openbao.address
        );
    }
    result
}

fn live(metadata: &Result<KeyMetadata, FailureClass>) -> LiveMetadata<'_> {
    metadata.as_ref().map_err(|class| *class)
}

/// Prints the report as JSON or as text (rendered by `text`).
fn emit<T: Serialize>(report: &T, output: Output, text: fn(&T) -> String) -> Result<(), ()> {
    match output {
        Output::Text => out::write(&text(report)).map_err(|_| ()),
        Output::Json => match serde_json::to_string_pretty(report) {
            Ok(json) => out::write(&format!("{json}\n")).map_err(|_| ()),
            Err(_) => Err(()),
        },
    }
}

/// `key: value` lines.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn field(&mut self, key: &str, value: impl Display) {
        self.0.push_str(&format!("{key}: {value}\n"));
    }

    fn optional(&mut self, key: &str, value: Option<impl Display>) {
        if let Some(value) = value {
            self.field(key, value);
        }
    }

    fn blockers(&mut self, blockers: &[Blocker]) {
        for blocker in blockers {
            let mut line = format!("blocker: reason={}", blocker.reason);
            if let Some(version) = blocker.transit_version {
                line.push_str(&format!(" transitVersion={version}"));
            }
            if let Some(hash) = &blocker.key_id_hash {
                line.push_str(&format!(" keyIdHash={hash}"));
            }
            line.push_str(&format!(" - {}", blocker.message));
            self.field_line(&line);
        }
    }

    fn versions(&mut self, key: &str, versions: &[VersionEntry]) {
        for entry in versions {
            self.field_line(&format!(
                "{key}: transitVersion={} keyIdHash={}",
                entry.transit_version, entry.key_id_hash
            ));
        }
    }

    fn field_line(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }
}

fn rotation_text(report: &RotationPlan) -> String {
    let mut lines = Lines::default();
    lines.field_line(report.name);
    lines.field(
        "transitMetadataStatus",
        report.transit_metadata_status.as_str(),
    );
    lines.optional(
        "transitMetadataError",
        report.transit_metadata_error.as_ref(),
    );
    lines.field("stateLoaded", report.state_loaded);
    lines.optional("stateError", report.state_error.as_ref());
    lines.optional("stateGeneration", report.state_generation);
    lines.optional("stateHash", report.state_hash.as_ref());
    lines.field("stateCheckpointLoaded", report.state_checkpoint_loaded);
    lines.optional(
        "stateCheckpointStatus",
        report.state_checkpoint_status.map(|status| status.as_str()),
    );
    lines.optional(
        "stateCheckpointGeneration",
        report.state_checkpoint_generation,
    );
    lines.optional("stateCheckpointHash", report.state_checkpoint_hash.as_ref());
    lines.optional("stateBootstrapEligible", report.state_bootstrap_eligible);
    lines.optional(
        "stateBootstrapReason",
        report.state_bootstrap_reason.as_ref(),
    );
    lines.field("rotationState", report.rotation_state.0.as_str());
    lines.optional("activeKeyIdHash", report.active_key_id_hash.as_ref());
    lines.optional("activeTransitVersion", report.active_transit_version);
    lines.optional("latestTransitVersion", report.latest_transit_version);
    lines.optional("pendingKeyIdHash", report.pending_key_id_hash.as_ref());
    lines.optional("pendingTransitVersion", report.pending_transit_version);
    lines.optional(
        "pendingStableObservationCount",
        report.pending_stable_observation_count,
    );
    lines.optional("pendingStableSince", report.pending_stable_since.as_ref());
    lines.optional("pendingPromotion", report.pending_promotion.as_ref());
    lines.blockers(&report.blockers);
    lines.field("confidence", report.confidence.as_str());
    lines.optional("limitations", report.limitations.as_ref());
    lines.0
}

fn operator_text(report: &OperatorPlan) -> String {
    let mut lines = Lines::default();
    lines.field_line(report.name);
    lines.field("operation", report.operation);
    lines.field("applied", report.applied);
    lines.optional("beforeVersion", report.before_version);
    lines.field("stateGeneration", report.state_generation);
    lines.field("stateHash", &report.state_hash);
    lines.field(
        "stateCheckpointStatus",
        report.state_checkpoint_status.as_str(),
    );
    lines.field("changed", report.changed);
    lines.optional("nextStateHash", report.next_state_hash.as_ref());
    lines.optional("nextGeneration", report.next_generation);
    lines.field("activeKeyIdHash", &report.active_key_id_hash);
    lines.field("activeTransitVersion", report.active_transit_version);
    lines.field(
        "transitMetadataStatus",
        report.transit_metadata_status.as_str(),
    );
    lines.optional(
        "transitMetadataError",
        report.transit_metadata_error.as_ref(),
    );
    lines.optional("latestTransitVersion", report.latest_transit_version);
    if let Some(removed) = &report.removed_versions {
        lines.versions("remove", removed);
    }
    if let Some(restored) = &report.restored_versions {
        lines.versions("restore", restored);
    }
    lines.blockers(&report.blockers);
    lines.field("limitations", &report.limitations);
    lines.0
}
