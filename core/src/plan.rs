//! Rotation reports and operator plans: what `rotation-plan`, `verify-rotation`,
//! `retire-versions` and `restore-versions` decide, as pure functions.
//!
//! The CLI gathers the inputs (the registry files as read from disk, one live Transit metadata
//! read, the configuration and the wall clock) and renders the result; every decision is made
//! here, with the same registry rules the provider applies ([`admit_loaded`],
//! [`StateFile::check_scope`], [`rotation::bootstrap`], [`rotation::observe`] and the
//! [`operator`] constructors), so an operator report can never disagree with what a running
//! provider would do with the same files and metadata.
//!
//! Reports never carry a raw key_id or any identity value: keys are named by their Transit
//! version and the digest of their key_id (the `key-id-hash` annotation value).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::compat::FormatsInUse;
use crate::health::{NotReadyReason, RotationState};
use crate::identity::IdentityScope;
use crate::profile;
use crate::provider::StoredState;
use crate::registry::transition::check_retirement_boundary;
use crate::registry::{
    Checkpoint, LoadVerdict, SnapshotState, StateError, StateFile, StateHash, StateRecord,
    admit_loaded, operator,
};
use crate::rotation::{self, DecryptionBlock, ObserveError, ObserveMode, RotationPolicy};
use crate::transit::{FailureClass, KeyMetadata};
use crate::version::KeyVersion;

/// What `verify-rotation` cannot prove, whatever the files and metadata say.
pub const VERIFY_LIMITATIONS: &str = "local registry and Transit metadata cannot prove every \
                                      Kubernetes object or retained backup has been rewritten";

/// What a `rotation-plan` without readable Transit metadata cannot tell.
pub const METADATA_UNAVAILABLE_LIMITATIONS: &str =
    "Transit metadata could not be read; only the local registry is reported";

/// What `retire-versions` cannot prove and what it changes for other releases.
pub const RETIRE_LIMITATIONS: &str = "removed versions can no longer be decrypted by this node; \
     local registry and Transit metadata cannot prove every Kubernetes object or retained \
     backup has been rewritten; run the same retirement on every control-plane node";

/// Added to [`RETIRE_LIMITATIONS`] when the retirement writes the first `removed` record.
pub const REMOVED_RECORD_ONE_WAY: &str = "this is the first removed record of the registry: \
     releases that cannot read record state \"removed\" refuse the state (check upgrade-check \
     before a rollback)";

/// What `restore-versions` does not do.
pub const RESTORE_LIMITATIONS: &str = "restored versions become decryptable again on this node \
     only; run the same restore on every control-plane node; the registry is never rolled back \
     and OpenBao is not changed";

/// The local registry files as the CLI found them: read (each file may be absent), or not
/// readable at all (unsafe mode, wrong type, IO error), with a message that names no secret.
pub type LocalFiles<'a> = Result<&'a StoredState, &'a str>;

/// The live Transit key metadata, or the class of the failure that prevented reading it.
pub type LiveMetadata<'a> = Result<&'a KeyMetadata, FailureClass>;

/// Everything a rotation report is computed from.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// The registry state and checkpoint bytes.
    pub local: LocalFiles<'a>,
    /// One Transit metadata read.
    pub metadata: LiveMetadata<'a>,
    /// The configured identity values.
    pub scope: &'a IdentityScope,
    /// The configured rotation policy.
    pub policy: RotationPolicy,
    /// `rotation.activationDelay`.
    pub activation_delay: Duration,
    /// Wall-clock now in Unix seconds (only used where the provider would use it too: the
    /// bootstrap record and discovery bookkeeping, neither of which is saved by a report).
    pub now_unix: i64,
}

/// A `pass` or `fail` outcome.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    /// It worked.
    Pass,
    /// It did not.
    Fail,
}

impl CheckResult {
    /// `pass` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
        }
    }
}

/// How the checkpoint relates to the state.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointState {
    /// The checkpoint vouches for exactly this state.
    Current,
    /// The state is the checkpoint's direct successor (a save stopped between the two files);
    /// the provider rewrites the checkpoint on start.
    Behind,
    /// A state without a checkpoint: accepted, rollback detection is not anchored yet.
    Missing,
    /// Neither file exists.
    Absent,
    /// The provider refuses these files: a checkpoint without its state, a rolled-back or
    /// forked state, or a file that does not decode. `stateError` says which.
    Rejected,
}

impl CheckpointState {
    /// The report spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Behind => "behind",
            Self::Missing => "missing",
            Self::Absent => "absent",
            Self::Rejected => "rejected",
        }
    }
}

/// How much a report can vouch for.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// The local registry was checked against live Transit metadata.
    Full,
    /// Something could not be checked; `limitations` says what.
    Limited,
}

impl Confidence {
    /// The report spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Limited => "limited",
        }
    }
}

/// One reason the registry cannot be served as it is (Status unhealthy), or a requested change
/// cannot be applied.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    /// The stable reason code, the `/ready` reason where there is one (`decryption_blocked`,
    /// `encryption_blocked`, `version_rollback`, `profile_invalid`, ...).
    pub reason: &'static str,
    /// The Transit version concerned, when the reason is about one version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transit_version: Option<u32>,
    /// The digest of that version's key_id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id_hash: Option<String>,
    /// What is wrong and what may be done about it; never suggests raising
    /// `min_decryption_version`.
    pub message: String,
}

impl Blocker {
    fn general(reason: &'static str, message: String) -> Self {
        Self {
            reason,
            transit_version: None,
            key_id_hash: None,
            message,
        }
    }

    fn for_record(reason: &'static str, record: &StateRecord, message: String) -> Self {
        Self {
            reason,
            transit_version: Some(record.version().get()),
            key_id_hash: Some(record.key_id().digest().to_string()),
            message,
        }
    }
}

/// The `rotation-plan` / `verify-rotation` report.
///
/// Optional fields are left out of the JSON when they are unknown, so a partial report (no
/// metadata, no state) never shows a made-up zero.
///
/// There is deliberately no `pendingPromotesAfter` timestamp. Promotion waits for the
/// activation delay as a *process-local monotonic deadline*: it starts only when a running
/// provider has durably saved a stable candidate and sees it again, persisted wall-clock times
/// never satisfy it, and every restart (or recovery of an unconfirmed save) starts the full
/// delay again. `stableAt + activationDelay` would therefore be a guess that is wrong after any
/// restart and can never be checked from outside the process. The report gives the facts
/// instead: [`RotationPlan::pending_stable_since`] (persisted) and
/// [`RotationPlan::pending_promotion`], the condition still to be met.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationPlan {
    /// `rotation-plan` or `verify-rotation`.
    pub name: &'static str,
    /// Whether live Transit metadata was read.
    pub transit_metadata_status: CheckResult,
    /// Why it was not (a failure class, no backend text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transit_metadata_error: Option<String>,
    /// Whether the provider would load this state: it decodes, its checkpoint admits it, and
    /// it belongs to this configuration.
    pub state_loaded: bool,
    /// Why the local registry cannot be used, when it cannot (fail closed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    /// The state's generation, whenever the state file decodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_generation: Option<u64>,
    /// The state's `krs1.` hash, whenever the state file decodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
    /// Whether a checkpoint file decoded.
    pub state_checkpoint_loaded: bool,
    /// How the checkpoint relates to the state; absent when the files could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_checkpoint_status: Option<CheckpointState>,
    /// The checkpoint's generation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_checkpoint_generation: Option<u64>,
    /// The checkpoint's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_checkpoint_hash: Option<String>,
    /// Without a state: whether the provider may bootstrap one (only for an unrotated key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_bootstrap_eligible: Option<bool>,
    /// Why (not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_bootstrap_reason: Option<String>,
    /// Observed rotation.
    pub rotation_state: RotationStateLabel,
    /// Digest of the active key_id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_key_id_hash: Option<String>,
    /// The active Transit version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_transit_version: Option<u32>,
    /// Transit's `latest_version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_transit_version: Option<u64>,
    /// Digest of the candidate's key_id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_key_id_hash: Option<String>,
    /// The candidate Transit version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_transit_version: Option<u32>,
    /// Consecutive observations saved for the candidate (0: not recorded by a provider yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_stable_observation_count: Option<u32>,
    /// When the candidate became stable (RFC 3339, UTC), as persisted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_stable_since: Option<String>,
    /// What must still happen before the candidate is promoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_promotion: Option<String>,
    /// Everything that keeps this registry from being served as it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// `full` or `limited`.
    pub confidence: Confidence,
    /// What the report cannot prove.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limitations: Option<String>,
}

/// [`RotationState`] as it is serialized.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RotationStateLabel(pub RotationState);

impl Serialize for RotationStateLabel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl RotationPlan {
    /// Whether the command fails (exit 4): metadata unreadable, local registry unusable,
    /// bootstrap refused, or anything blocking.
    pub fn failed(&self) -> bool {
        self.transit_metadata_status == CheckResult::Fail
            || self.state_error.is_some()
            || self.state_bootstrap_eligible == Some(false)
            || !self.blockers.is_empty()
    }
}

/// Computes the `rotation-plan` report, or the `verify-rotation` report when `verify`.
pub fn rotation_plan(input: &PlanInput<'_>, verify: bool) -> RotationPlan {
    let mut plan = RotationPlan {
        name: if verify {
            "verify-rotation"
        } else {
            "rotation-plan"
        },
        transit_metadata_status: CheckResult::Pass,
        transit_metadata_error: None,
        state_loaded: false,
        state_error: None,
        state_generation: None,
        state_hash: None,
        state_checkpoint_loaded: false,
        state_checkpoint_status: None,
        state_checkpoint_generation: None,
        state_checkpoint_hash: None,
        state_bootstrap_eligible: None,
        state_bootstrap_reason: None,
        rotation_state: RotationStateLabel(RotationState::Unknown),
        active_key_id_hash: None,
        active_transit_version: None,
        latest_transit_version: None,
        pending_key_id_hash: None,
        pending_transit_version: None,
        pending_stable_observation_count: None,
        pending_stable_since: None,
        pending_promotion: None,
        blockers: Vec::new(),
        confidence: Confidence::Full,
        limitations: None,
    };
    let metadata = match input.metadata {
        Ok(metadata) => {
            plan.latest_transit_version = Some(metadata.latest_version);
            Some(metadata)
        }
        Err(class) => {
            plan.transit_metadata_status = CheckResult::Fail;
            plan.transit_metadata_error = Some(metadata_error(class));
            None
        }
    };
    let local = load_local(input.local);
    plan.state_error = local.error.clone();
    if let Some(state) = &local.state {
        plan.state_generation = Some(state.generation());
        plan.state_hash = Some(state.current_hash().to_string());
    }
    if let Some(checkpoint) = &local.checkpoint {
        plan.state_checkpoint_loaded = true;
        plan.state_checkpoint_generation = Some(checkpoint.generation());
        plan.state_checkpoint_hash = Some(checkpoint.current_hash().to_string());
    }
    plan.state_checkpoint_status = local.checkpoint_state;
    match local.usable_state(input.scope) {
        Usable::State(state) => {
            plan.state_loaded = true;
            describe_state(&mut plan, state, metadata, input);
        }
        Usable::Fresh => describe_fresh(&mut plan, metadata, input),
        Usable::Refused(error) => {
            plan.state_error = Some(error);
            if local.state.is_none() && local.checkpoint.is_some() {
                plan.state_bootstrap_eligible = Some(false);
                plan.state_bootstrap_reason = Some(
                    "a checkpoint exists without its state file; restore both files from a \
                     backup or a healthy peer with identical identity values"
                        .to_owned(),
                );
            }
            if let Some(state) = &local.state {
                describe_active(&mut plan, state);
            }
        }
    }
    if verify {
        plan.confidence = Confidence::Limited;
        plan.limitations = Some(VERIFY_LIMITATIONS.to_owned());
    } else if metadata.is_none() {
        plan.confidence = Confidence::Limited;
        plan.limitations = Some(METADATA_UNAVAILABLE_LIMITATIONS.to_owned());
    }
    plan
}

fn metadata_error(class: FailureClass) -> String {
    format!("Transit key metadata could not be read: {class}")
}

/// The state and checkpoint as decoded, with the load verdict.
struct Local {
    state: Option<StateFile>,
    checkpoint: Option<Checkpoint>,
    verdict: Option<LoadVerdict>,
    checkpoint_state: Option<CheckpointState>,
    error: Option<String>,
}

enum Usable<'a> {
    State(&'a StateFile),
    Fresh,
    Refused(String),
}

impl Local {
    fn usable_state(&self, scope: &IdentityScope) -> Usable<'_> {
        if let Some(error) = &self.error {
            return Usable::Refused(error.clone());
        }
        match (self.verdict, &self.state) {
            (Some(LoadVerdict::Fresh), _) => Usable::Fresh,
            (Some(_), Some(state)) => match state.check_scope(scope) {
                Ok(()) => Usable::State(state),
                Err(error) => Usable::Refused(error.to_string()),
            },
            (Some(_) | None, _) => Usable::Refused("registry state is unavailable".to_owned()),
        }
    }
}

fn load_local(files: LocalFiles<'_>) -> Local {
    let stored = match files {
        Ok(stored) => stored,
        Err(reason) => {
            return Local {
                state: None,
                checkpoint: None,
                verdict: None,
                checkpoint_state: None,
                error: Some(format!("registry files could not be read: {reason}")),
            };
        }
    };
    let state = stored.state.as_deref().map(StateFile::decode).transpose();
    let checkpoint = stored
        .checkpoint
        .as_deref()
        .map(Checkpoint::decode)
        .transpose();
    let (state, checkpoint, decode_error) = match (state, checkpoint) {
        (Ok(state), Ok(checkpoint)) => (state, checkpoint, None),
        (Err(error), checkpoint) => (None, checkpoint.ok().flatten(), Some(error)),
        (Ok(state), Err(error)) => (state, None, Some(error)),
    };
    if let Some(error) = decode_error {
        return Local {
            state,
            checkpoint,
            verdict: None,
            checkpoint_state: Some(CheckpointState::Rejected),
            error: Some(error.to_string()),
        };
    }
    match admit_loaded(state.as_ref(), checkpoint.as_ref()) {
        Ok(verdict) => Local {
            checkpoint_state: Some(match verdict {
                LoadVerdict::Fresh => CheckpointState::Absent,
                LoadVerdict::Current => CheckpointState::Current,
                LoadVerdict::CheckpointBehind => CheckpointState::Behind,
                LoadVerdict::CheckpointMissing => CheckpointState::Missing,
            }),
            verdict: Some(verdict),
            state,
            checkpoint,
            error: None,
        },
        Err(error) => Local {
            state,
            checkpoint,
            verdict: None,
            checkpoint_state: Some(CheckpointState::Rejected),
            error: Some(error.to_string()),
        },
    }
}

fn describe_active(plan: &mut RotationPlan, state: &StateFile) {
    let active = state.active();
    plan.active_key_id_hash = Some(active.key_id().digest().to_string());
    plan.active_transit_version = Some(active.version().get());
}

/// No state and no checkpoint: the provider would bootstrap, but only an unrotated key.
fn describe_fresh(plan: &mut RotationPlan, metadata: Option<&KeyMetadata>, input: &PlanInput<'_>) {
    let Some(metadata) = metadata else {
        plan.state_bootstrap_reason =
            Some("Transit metadata is needed to decide whether bootstrap is allowed".to_owned());
        return;
    };
    match rotation::bootstrap(input.scope, metadata, input.now_unix) {
        Ok(state) => {
            plan.state_bootstrap_eligible = Some(true);
            plan.state_bootstrap_reason = Some(
                "Transit key is unrotated: the provider creates generation 1 with version 1 \
                 active on its first metadata probe"
                    .to_owned(),
            );
            plan.rotation_state = RotationStateLabel(RotationState::Active);
            describe_active(plan, &state);
        }
        Err(refusal) => {
            plan.state_bootstrap_eligible = Some(false);
            plan.state_bootstrap_reason = Some(refusal.to_string());
        }
    }
}

/// A usable state: rotation progress from the registry, blockers from the metadata.
fn describe_state(
    plan: &mut RotationPlan,
    state: &StateFile,
    metadata: Option<&KeyMetadata>,
    input: &PlanInput<'_>,
) {
    describe_active(plan, state);
    let active = state.active().version();
    let evaluation =
        metadata.map(|metadata| evaluate(state, metadata, input.now_unix, input.policy));
    if let Some(evaluation) = &evaluation {
        plan.blockers.clone_from(&evaluation.blockers);
    }
    let latest = metadata
        .and_then(|metadata| KeyVersion::new(metadata.latest_version).ok())
        .filter(|latest| *latest > active);
    // The candidate is Transit's latest version when it is newer than the active one;
    // without metadata, the newest pending record says what the provider last saw.
    let (version, recorded, discovered) = match latest {
        Some(latest) => {
            let recorded = state
                .record_by_version(latest)
                .filter(|record| record.state() == SnapshotState::Pending);
            let discovered = evaluation
                .as_ref()
                .and_then(|evaluation| evaluation.next.as_ref())
                .and_then(|next| next.record_by_version(latest))
                .filter(|record| record.state() == SnapshotState::Pending);
            (Some(latest), recorded, discovered)
        }
        None => {
            let recorded = newest_pending(state);
            (recorded.map(StateRecord::version), recorded, None)
        }
    };
    let Some(version) = version else {
        plan.rotation_state = RotationStateLabel(RotationState::Active);
        return;
    };
    plan.rotation_state = RotationStateLabel(RotationState::Pending);
    plan.pending_transit_version = Some(version.get());
    let required = input.policy.require_stable_observation_count.max(1);
    let delay = format_duration(input.activation_delay);
    if let Some(record) = recorded {
        let observation = record.observation();
        plan.pending_key_id_hash = Some(record.key_id().digest().to_string());
        plan.pending_stable_observation_count = Some(observation.stable_observation_count);
        let stable = observation.stable_at_unix > 0
            && observation.stable_observation_count
                >= input.policy.require_stable_observation_count;
        if stable {
            plan.pending_stable_since = Some(rfc3339(observation.stable_at_unix));
            plan.pending_promotion = Some(format!(
                "after {delay} of continuous observation by a running provider"
            ));
        } else {
            let remaining = required.saturating_sub(observation.stable_observation_count);
            plan.pending_promotion = Some(format!(
                "after {remaining} more consecutive observation(s) by a running provider \
                 ({}/{required}), then {delay} of continuous observation",
                observation.stable_observation_count
            ));
        }
    } else {
        if let Some(record) = discovered {
            plan.pending_key_id_hash = Some(record.key_id().digest().to_string());
        }
        plan.pending_stable_observation_count = Some(0);
        plan.pending_promotion = Some(format!(
            "not yet recorded: after {required} consecutive observation(s) by a running \
             provider, then {delay} of continuous observation"
        ));
    }
}

fn newest_pending(state: &StateFile) -> Option<&StateRecord> {
    state
        .records()
        .iter()
        .filter(|record| record.state() == SnapshotState::Pending)
        .max_by_key(|record| record.version())
}

/// What the provider's metadata probe would make of this state, as blockers.
struct Evaluation {
    blockers: Vec<Blocker>,
    /// The registry discovery would save (new pending or skipped versions), if any.
    next: Option<StateFile>,
}

/// Runs the provider's own observation (in discovery mode, so no candidate is counted) and
/// turns its verdict into blockers.
fn evaluate(
    state: &StateFile,
    metadata: &KeyMetadata,
    now_unix: i64,
    policy: RotationPolicy,
) -> Evaluation {
    let active = state.active();
    match rotation::observe(state, metadata, now_unix, policy, ObserveMode::Discover) {
        Ok(verdict) => {
            let mut blockers = Vec::new();
            for reason in &verdict.blocking {
                match reason {
                    NotReadyReason::DecryptionBlocked => {
                        blockers.extend(decryption_blockers(state, metadata));
                    }
                    NotReadyReason::EncryptionBlocked => blockers.push(Blocker::for_record(
                        reason.as_str(),
                        active,
                        format!(
                            "Transit min_encryption_version={} blocks the active version {}: \
                             Status and Encrypt stay unhealthy until a newer version is \
                             promoted or min_encryption_version is lowered",
                            metadata.min_encryption_version,
                            active.version()
                        ),
                    )),
                    NotReadyReason::VersionRollback => blockers.push(Blocker::general(
                        reason.as_str(),
                        format!(
                            "Transit latest_version={} is below the active version {}: the key \
                             was replaced or restored from an older backup",
                            metadata.latest_version,
                            active.version()
                        ),
                    )),
                    NotReadyReason::StateUnavailable
                    | NotReadyReason::StatusStale
                    | NotReadyReason::MetadataUnverified
                    | NotReadyReason::UpsertCheckFailed
                    | NotReadyReason::MetadataReadFailed
                    | NotReadyReason::UpsertAllowed
                    | NotReadyReason::ProfileInvalid
                    | NotReadyReason::StateSaveFailed
                    | NotReadyReason::StatePublishFailed
                    | NotReadyReason::DeepProbePending
                    | NotReadyReason::DeepProbeFailed
                    | NotReadyReason::DeepProbeInvalid
                    | NotReadyReason::CircuitBreakerOpen => blockers.push(Blocker::general(
                        reason.as_str(),
                        format!("the provider reports {reason} for this registry"),
                    )),
                }
            }
            Evaluation {
                blockers,
                next: verdict.next,
            }
        }
        Err(error) => Evaluation {
            blockers: vec![observe_blocker(error, metadata)],
            next: None,
        },
    }
}

fn observe_blocker(error: ObserveError, metadata: &KeyMetadata) -> Blocker {
    let message = match error {
        ObserveError::ProfileInvalid => {
            let codes: Vec<&str> = profile::findings(metadata)
                .into_iter()
                .map(profile::ProfileFinding::code)
                .collect();
            if codes.is_empty() {
                "transit key profile is invalid".to_owned()
            } else {
                format!("transit key profile is invalid: {}", codes.join(", "))
            }
        }
        ObserveError::CreationTimeChanged => "the creation time of a retained Transit version \
             differs from the registry: the key was replaced; restore the original key or the \
             registry of this key lineage"
            .to_owned(),
        ObserveError::CreationTimeMissing => "Transit metadata has no creation time for a \
             retained or skipped version"
            .to_owned(),
        ObserveError::Transition => "the registry change this metadata implies is refused by \
             the registry transition rules"
            .to_owned(),
    };
    Blocker::general(error.reason().as_str(), message)
}

/// The retained versions Transit refuses to decrypt, one blocker each. Only called when the
/// provider's observation reported `decryption_blocked`, which is the decision; this names the
/// versions behind it.
fn decryption_blockers(state: &StateFile, metadata: &KeyMetadata) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    for record in state.records().iter().filter(|record| record.decrypts()) {
        let version = u64::from(record.version().get());
        let message = match rotation::decryption_block(version, metadata) {
            Some(DecryptionBlock::MinAvailable(minimum)) => format!(
                "Transit min_available_version={minimum} excludes retained version {version}: its \
                 key material is trimmed and ciphertext under it cannot be decrypted; if nothing \
                 uses it any more, retire it with retire-versions --before-version {minimum} on \
                 every node"
            ),
            Some(DecryptionBlock::MinDecryption(minimum)) => format!(
                "Transit min_decryption_version={minimum} blocks retained version {version}: \
                 lower min_decryption_version again, or, once every object encrypted under it \
                 has been rewritten, retire it with retire-versions --before-version {minimum} \
                 on every node"
            ),
            None => continue,
        };
        blockers.push(Blocker::for_record(
            NotReadyReason::DecryptionBlocked.as_str(),
            record,
            message,
        ));
    }
    if blockers.is_empty() {
        blockers.push(Blocker::general(
            NotReadyReason::DecryptionBlocked.as_str(),
            "Transit refuses to decrypt a retained version".to_owned(),
        ));
    }
    blockers
}

// ---------------------------------------------------------------------------------------------
// retire-versions and restore-versions

/// An operator request.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum OperatorRequest<'a> {
    /// `retire-versions --before-version N`.
    Retire {
        /// Retired versions strictly below this one become removed.
        before: u32,
    },
    /// `restore-versions --versions a,b`.
    Restore {
        /// Removed versions to make retired again.
        versions: &'a [u32],
    },
}

/// Everything an operator plan is computed from.
#[derive(Clone, Copy, Debug)]
pub struct OperatorInput<'a> {
    /// The registry state and checkpoint bytes.
    pub local: LocalFiles<'a>,
    /// One Transit metadata read.
    pub metadata: LiveMetadata<'a>,
    /// The configured identity values.
    pub scope: &'a IdentityScope,
    /// The configured rotation policy.
    pub policy: RotationPolicy,
    /// Wall-clock now in Unix seconds.
    pub now_unix: i64,
}

/// Why an operator request is refused, with the exit code class it maps to.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum OperatorRefusal {
    /// The request itself is invalid (exit 2): a bad boundary, a version named twice, a
    /// version not below the active one, `--apply` without or with a malformed hash.
    #[error("{0}")]
    Usage(String),
    /// A check failed (exit 4): the registry is missing or refused, a named version is not
    /// removed, the expected hash does not match, or the change is blocked.
    #[error("{0}")]
    Check(String),
}

/// One version named in an operator plan.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionEntry {
    /// The Transit version.
    pub transit_version: u32,
    /// Digest of its key_id.
    pub key_id_hash: String,
}

impl VersionEntry {
    fn of(record: &StateRecord) -> Self {
        Self {
            transit_version: record.version().get(),
            key_id_hash: record.key_id().digest().to_string(),
        }
    }
}

/// The plan of a `retire-versions` or `restore-versions` request.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorPlan {
    /// `retire-versions` or `restore-versions`.
    pub name: &'static str,
    /// `retire` or `restore`.
    pub operation: &'static str,
    /// Whether the change was written (set by the caller after a successful write).
    pub applied: bool,
    /// The retirement boundary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_version: Option<u32>,
    /// The generation of the current state.
    pub state_generation: u64,
    /// The hash of the current state: the value `--expected-state-hash` must repeat.
    pub state_hash: String,
    /// How the checkpoint relates to the current state.
    pub state_checkpoint_status: CheckpointState,
    /// Whether the request changes anything (repeating a request is a no-op).
    pub changed: bool,
    /// The hash of the state the change writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_state_hash: Option<String>,
    /// The generation the change writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_generation: Option<u64>,
    /// Digest of the active key_id (never changed by these requests).
    pub active_key_id_hash: String,
    /// The active Transit version.
    pub active_transit_version: u32,
    /// Whether live Transit metadata was read.
    pub transit_metadata_status: CheckResult,
    /// Why it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transit_metadata_error: Option<String>,
    /// Transit's `latest_version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_transit_version: Option<u64>,
    /// The versions a retirement removes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_versions: Option<Vec<VersionEntry>>,
    /// The versions a restore makes decryptable again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_versions: Option<Vec<VersionEntry>>,
    /// Why the change cannot be applied; empty when it can.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// What the change cannot prove or changes for other releases.
    pub limitations: String,
    #[serde(skip)]
    current: StateFile,
    #[serde(skip)]
    next: Option<StateFile>,
}

/// The files to write for an applied operator change, in order; each entry is a state and its
/// checkpoint, written state first.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RegistryWrite {
    /// The state file bytes.
    pub state: String,
    /// The checkpoint bytes.
    pub checkpoint: String,
}

/// Checks the `--before-version` flag on its own (exit 2 before anything is loaded).
///
/// # Errors
/// [`OperatorRefusal::Usage`] unless the boundary is greater than 1.
pub fn check_retire_flag(before: u32) -> Result<KeyVersion, OperatorRefusal> {
    match KeyVersion::new(u64::from(before)) {
        Ok(version) if version > KeyVersion::FIRST => Ok(version),
        Ok(_) | Err(_) => Err(OperatorRefusal::Usage(format!(
            "--before-version must be greater than 1, got {before}"
        ))),
    }
}

/// Checks the `--versions` flag on its own: at least one, each positive, none twice.
///
/// # Errors
/// [`OperatorRefusal::Usage`] naming the first problem.
pub fn check_restore_flag(versions: &[u32]) -> Result<Vec<KeyVersion>, OperatorRefusal> {
    if versions.is_empty() {
        return Err(OperatorRefusal::Usage(
            "--versions needs at least one version".to_owned(),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut parsed = Vec::with_capacity(versions.len());
    for &value in versions {
        let version = KeyVersion::new(u64::from(value)).map_err(|_| {
            OperatorRefusal::Usage(format!("--versions: {value} is not a positive version"))
        })?;
        if !seen.insert(version) {
            return Err(OperatorRefusal::Usage(format!(
                "--versions: version {value} is named twice"
            )));
        }
        parsed.push(version);
    }
    Ok(parsed)
}

/// Checks the `--expected-state-hash` flag of `--apply` (exit 2 when absent or malformed).
///
/// # Errors
/// [`OperatorRefusal::Usage`] when the hash is missing or is not a `krs1.` state hash.
pub fn check_expected_hash_flag(expected: Option<&str>) -> Result<StateHash, OperatorRefusal> {
    let Some(expected) = expected else {
        return Err(OperatorRefusal::Usage(
            "--apply requires --expected-state-hash (the stateHash printed by the plan)".to_owned(),
        ));
    };
    StateHash::parse(expected).map_err(|_| {
        OperatorRefusal::Usage(
            "--expected-state-hash must be a krs1. state hash as printed by the plan".to_owned(),
        )
    })
}

/// Plans a retirement or a restore against the local registry and live Transit metadata.
///
/// The plan is computed even when the change is blocked, so the operator sees why; the
/// blockers are the ones a running provider would report for the resulting registry: a
/// remaining decryptable version blocked by `min_decryption_version` or
/// `min_available_version`, creation-time mismatches, an invalid key profile, and Transit's
/// `latest_version` below the local active version. Retiring versions that Transit already
/// blocks (OpenBao's minimum raised first) is allowed: it is how the registry catches up.
///
/// # Errors
/// [`OperatorRefusal::Usage`] for a request that is invalid for this registry (boundary above
/// the active version, a version not below it); [`OperatorRefusal::Check`] when the registry
/// is missing, unreadable, refused, or a named version is not removed.
pub fn operator_plan(
    input: &OperatorInput<'_>,
    request: OperatorRequest<'_>,
) -> Result<OperatorPlan, OperatorRefusal> {
    let local = load_local(input.local);
    let state = match local.usable_state(input.scope) {
        Usable::State(state) => state,
        Usable::Fresh => {
            return Err(OperatorRefusal::Check(
                "no registry state exists: there is nothing to retire or restore".to_owned(),
            ));
        }
        Usable::Refused(error) => return Err(OperatorRefusal::Check(error)),
    };
    let checkpoint_state = local.checkpoint_state.unwrap_or(CheckpointState::Rejected);
    let active = state.active();
    let (name, operation, before_version, next) = match request {
        OperatorRequest::Retire { before } => {
            let before = check_retire_flag(before)?;
            check_retirement_boundary(state, before).map_err(|_| {
                OperatorRefusal::Usage(format!(
                    "--before-version {before} exceeds the active version {}",
                    active.version()
                ))
            })?;
            let next = operator::retire_versions(state, before).map_err(refused)?;
            ("retire-versions", "retire", Some(before.get()), next)
        }
        OperatorRequest::Restore { versions } => {
            let versions = check_restore_flag(versions)?;
            if let Some(version) = versions.iter().find(|v| **v >= active.version()) {
                return Err(OperatorRefusal::Usage(format!(
                    "--versions: version {version} is not below the active version {}",
                    active.version()
                )));
            }
            let next = operator::restore_versions(state, &versions).map_err(refused)?;
            ("restore-versions", "restore", None, Some(next))
        }
    };
    let changes = |from: SnapshotState, to: SnapshotState| -> Vec<VersionEntry> {
        let Some(next) = &next else {
            return Vec::new();
        };
        state
            .records()
            .iter()
            .filter(|old| old.state() == from)
            .filter(|old| {
                next.record_by_key_id(old.key_id())
                    .is_some_and(|new| new.state() == to)
            })
            .map(VersionEntry::of)
            .collect()
    };
    let (removed_versions, restored_versions) = match request {
        OperatorRequest::Retire { .. } => (
            Some(changes(SnapshotState::Retired, SnapshotState::Removed)),
            None,
        ),
        OperatorRequest::Restore { .. } => (
            None,
            Some(changes(SnapshotState::Removed, SnapshotState::Retired)),
        ),
    };
    let mut limitations = match request {
        OperatorRequest::Retire { .. } => RETIRE_LIMITATIONS.to_owned(),
        OperatorRequest::Restore { .. } => RESTORE_LIMITATIONS.to_owned(),
    };
    if let Some(next) = &next {
        let removed = SnapshotState::Removed.as_str();
        let before = FormatsInUse::from_state(state);
        let after = FormatsInUse::from_state(next);
        if after.record_states.contains(removed) && !before.record_states.contains(removed) {
            limitations.push_str("; ");
            limitations.push_str(REMOVED_RECORD_ONE_WAY);
        }
    }
    let resulting = next.as_ref().unwrap_or(state);
    let mut blockers = Vec::new();
    let (metadata_status, metadata_error, latest) = match input.metadata {
        Ok(metadata) => {
            blockers = operator_blockers(state, resulting, metadata, input);
            (CheckResult::Pass, None, Some(metadata.latest_version))
        }
        Err(class) => {
            let message = metadata_error(class);
            blockers.push(Blocker::general(
                NotReadyReason::MetadataReadFailed.as_str(),
                format!("{message}; the change is only applied against live metadata"),
            ));
            (CheckResult::Fail, Some(message), None)
        }
    };
    Ok(OperatorPlan {
        name,
        operation,
        applied: false,
        before_version,
        state_generation: state.generation(),
        state_hash: state.current_hash().to_string(),
        state_checkpoint_status: checkpoint_state,
        changed: next.is_some(),
        next_state_hash: next.as_ref().map(|next| next.current_hash().to_string()),
        next_generation: next.as_ref().map(StateFile::generation),
        active_key_id_hash: active.key_id().digest().to_string(),
        active_transit_version: active.version().get(),
        transit_metadata_status: metadata_status,
        transit_metadata_error: metadata_error,
        latest_transit_version: latest,
        removed_versions,
        restored_versions,
        blockers,
        limitations,
        current: state.clone(),
        next,
    })
}

/// The operator functions' refusals left after the usage checks are about the registry's
/// content (no record of a version, a version that is not removed): check failures.
fn refused(error: StateError) -> OperatorRefusal {
    OperatorRefusal::Check(error.to_string())
}

/// Blockers of an operator change: the resulting registry must be one the provider can serve
/// for decryption, and Transit must not be behind the local active version.
fn operator_blockers(
    current: &StateFile,
    resulting: &StateFile,
    metadata: &KeyMetadata,
    input: &OperatorInput<'_>,
) -> Vec<Blocker> {
    let mut blockers = Vec::new();
    let active = current.active().version();
    if metadata.latest_version < u64::from(active.get()) {
        blockers.push(Blocker::general(
            NotReadyReason::VersionRollback.as_str(),
            format!(
                "Transit latest_version={} is below the local active version {active}",
                metadata.latest_version
            ),
        ));
    }
    // Only what threatens decryption blocks an operator change; an encryption restriction of
    // the active version or a rollback (reported above) are not about the records it touches.
    let reported_above = NotReadyReason::VersionRollback.as_str();
    let encryption = NotReadyReason::EncryptionBlocked.as_str();
    blockers.extend(
        evaluate(resulting, metadata, input.now_unix, input.policy)
            .blockers
            .into_iter()
            .filter(|blocker| blocker.reason != reported_above && blocker.reason != encryption),
    );
    blockers
}

impl OperatorPlan {
    /// The state this plan was computed from.
    pub fn current(&self) -> &StateFile {
        &self.current
    }

    /// The state the change writes, `None` when the request changes nothing.
    pub fn next(&self) -> Option<&StateFile> {
        self.next.as_ref()
    }

    /// Whether the command fails (exit 4) even without `--apply`: the change is blocked.
    pub fn failed(&self) -> bool {
        !self.blockers.is_empty()
    }

    /// Decides an `--apply` against the state re-read under the registry lock: the state hash
    /// must be `expected` and nothing may block the change. Returns the writes in order: when
    /// the checkpoint lags or is missing, it is first brought to the current state, so that a
    /// crash between the new state and its checkpoint still leaves a loadable pair; then the
    /// new state and its checkpoint. An unchanged request writes nothing.
    ///
    /// # Errors
    /// [`OperatorRefusal::Check`] when the hash differs or a blocker exists.
    pub fn authorize_apply(
        &self,
        expected: &StateHash,
    ) -> Result<Vec<RegistryWrite>, OperatorRefusal> {
        if self.current.current_hash() != expected {
            return Err(OperatorRefusal::Check(format!(
                "the registry state changed: its hash is {}, not the expected {expected}; \
                 plan again",
                self.current.current_hash()
            )));
        }
        if let Some(blocker) = self.blockers.first() {
            return Err(OperatorRefusal::Check(format!(
                "the change is blocked: {}",
                blocker.message
            )));
        }
        let Some(next) = &self.next else {
            return Ok(Vec::new());
        };
        let mut writes = Vec::with_capacity(2);
        if self.state_checkpoint_status != CheckpointState::Current {
            writes.push(RegistryWrite {
                state: self.current.encode(),
                checkpoint: Checkpoint::for_state(&self.current).encode(),
            });
        }
        writes.push(RegistryWrite {
            state: next.encode(),
            checkpoint: Checkpoint::for_state(next).encode(),
        });
        Ok(writes)
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// Unix seconds as RFC 3339 UTC, e.g. `2026-05-14T08:00:00Z`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        (seconds % 3600) / 60,
        seconds % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A duration as the configuration writes it: `500ms`, `2s`, `1m30s`, `1h0m0s`.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let millis = duration.subsec_millis();
    if total == 0 {
        return format!("{millis}ms");
    }
    let mut out = String::new();
    let (hours, minutes, seconds) = (total / 3600, (total % 3600) / 60, total % 60);
    if hours > 0 {
        let _ = write!(out, "{hours}h{minutes}m");
    } else if minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    if millis == 0 {
        let _ = write!(out, "{seconds}s");
    } else {
        let fraction = format!("{millis:03}");
        let _ = write!(out, "{seconds}.{}s", fraction.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_715_803_200), "2024-05-15T20:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn durations_are_written_as_in_the_configuration() {
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
