//! Observed rotation: what a metadata probe means for the registry.
//!
//! The provider never rotates keys; it watches Transit. A newer `latest_version` becomes a
//! *pending* candidate, is counted on every probe until it is *stable*, waits out the activation
//! delay (a process-local timer owned by the provider), and is only then *promoted*. Versions
//! skipped between probes and superseded candidates are kept for decryption, because another
//! node may have encrypted with them.
//!
//! These are pure functions from (registry, metadata, wall-clock seconds) to a verdict; the
//! provider decides when to call them and what to do with the result.

use crate::health::NotReadyReason;
use crate::identity::IdentityScope;
use crate::profile;
use crate::registry::{Observation, SnapshotState, StateError, StateFile, StateRecord, transition};
use crate::transit::KeyMetadata;
use crate::version::KeyVersion;

/// The rotation policy knobs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RotationPolicy {
    /// Consecutive probes that must see the same candidate before it is stable.
    pub require_stable_observation_count: u32,
    /// Whether `latest_version` below the active version is an error.
    pub reject_version_rollback: bool,
}

/// Why the probe runs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ObserveMode {
    /// A scheduled metadata probe: counts observations toward stability.
    Probe,
    /// Discovery for a Decrypt of an unknown key_id: records new versions for decryption but
    /// never advances a candidate toward promotion.
    Discover,
}

/// What a metadata read means for the registry.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Verdict {
    /// A changed registry to save before anything in it is used; `None` when nothing changed.
    pub next: Option<StateFile>,
    /// Problems that make Status unhealthy while observation goes on.
    pub blocking: Vec<NotReadyReason>,
    /// A candidate that was already stable in the saved registry and is still Transit's
    /// latest version: the activation delay may run for it.
    pub stable_candidate: Option<KeyVersion>,
}

/// Why metadata could not be accepted at all (fail closed: Status unhealthy, nothing changes).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// The key profile has findings.
    #[error("transit key profile is invalid")]
    ProfileInvalid,
    /// A retained version's creation time differs from the registry.
    #[error("creation time of a retained Transit version changed")]
    CreationTimeChanged,
    /// A retained or skipped version has no creation time in the metadata.
    #[error("creation time of a Transit version is missing")]
    CreationTimeMissing,
    /// The registry transition could not be built.
    #[error("registry transition refused")]
    Transition,
}

impl ObserveError {
    /// The `/ready` reason this error reports under.
    pub fn reason(self) -> NotReadyReason {
        match self {
            Self::ProfileInvalid | Self::CreationTimeChanged | Self::CreationTimeMissing => {
                NotReadyReason::ProfileInvalid
            }
            Self::Transition => NotReadyReason::StatePublishFailed,
        }
    }
}

/// Interprets one metadata read against the saved registry.
///
/// # Errors
/// [`ObserveError`] when the metadata cannot be trusted; nothing is changed then.
pub fn observe(
    current: &StateFile,
    metadata: &KeyMetadata,
    now_unix: i64,
    policy: RotationPolicy,
    mode: ObserveMode,
) -> Result<Verdict, ObserveError> {
    if !profile::findings(metadata).is_empty() {
        return Err(ObserveError::ProfileInvalid);
    }
    let active = current.active().version();
    let Ok(latest) = KeyVersion::new(metadata.latest_version) else {
        return Err(ObserveError::ProfileInvalid);
    };
    // A Transit key restored to an older state no longer lists the newer versions; that is a
    // rollback to report as such, not a missing creation time.
    if latest < active && policy.reject_version_rollback {
        return Ok(Verdict {
            next: None,
            blocking: vec![NotReadyReason::VersionRollback],
            stable_candidate: None,
        });
    }
    // Without rollback rejection, a rollback that loses a retained version still fails closed
    // here (its creation time is missing).
    let mut blocking = retained_version_problems(current, metadata)?;
    if u64::from(active.get()) < metadata.min_encryption_version {
        blocking.push(NotReadyReason::EncryptionBlocked);
    }
    if latest < active {
        return Ok(Verdict {
            next: None,
            blocking,
            stable_candidate: None,
        });
    }
    let stable_candidate = current
        .record_by_version(latest)
        .filter(|record| is_stable_candidate(record, latest, policy))
        .map(StateRecord::version);
    let records = observed_records(current, metadata, latest, now_unix, policy, mode)?;
    let next = if records.as_slice() == current.records() {
        None
    } else {
        let next = current
            .successor(current.active_key_id().clone(), records)
            .map_err(|_| ObserveError::Transition)?;
        transition::check_progress(current, &next).map_err(|_| ObserveError::Transition)?;
        Some(next)
    };
    Ok(Verdict {
        next,
        blocking,
        stable_candidate,
    })
}

/// Promotes the stable candidate at `version` to active; the old active version is retired.
///
/// # Errors
/// [`StateError`] when `version` is not a pending record or the transition is not allowed.
pub fn promote(
    current: &StateFile,
    version: KeyVersion,
    now_unix: i64,
) -> Result<StateFile, StateError> {
    let mut new_active = None;
    let mut records = Vec::with_capacity(current.records().len());
    for record in current.records() {
        let record = if record.version() == version && record.state() == SnapshotState::Pending {
            // Recorded times keep their order even if the wall clock went backwards meanwhile.
            let before = record.observation();
            let promoted_at = now_unix
                .max(before.observed_at_unix)
                .max(before.stable_at_unix)
                .max(1);
            let observation = Observation {
                promoted_at_unix: promoted_at,
                ..before
            };
            let promoted = record.clone().with_state(SnapshotState::Active);
            let promoted = promoted.with_observation(observation)?;
            new_active = Some(promoted.key_id().clone());
            promoted
        } else if record.state() == SnapshotState::Active {
            record.clone().with_state(SnapshotState::Retired)
        } else {
            record.clone()
        };
        records.push(record);
    }
    let Some(active_key_id) = new_active else {
        return Err(StateError::InvalidTransition(
            "only a pending version can be promoted",
        ));
    };
    let next = current.successor(active_key_id, records)?;
    transition::check_progress(current, &next)?;
    Ok(next)
}

/// Why a registry cannot be bootstrapped from Transit metadata alone.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapRefusal {
    /// The key has been rotated: older ciphertext may exist that a fresh registry would not
    /// know, so the state must come from a backup or a healthy peer.
    #[error("Transit latest_version={0} is not initial version 1")]
    KeyRotated(u64),
    /// Version 1 is trimmed.
    #[error("Transit min_available_version={0} excludes initial version 1")]
    MinAvailableExcludesFirst(u64),
    /// Version 1 cannot decrypt.
    #[error("Transit min_decryption_version={0} excludes initial version 1")]
    MinDecryptionExcludesFirst(u64),
    /// The key profile has findings.
    #[error("transit key profile is invalid")]
    ProfileInvalid,
    /// Version 1 has no creation time.
    #[error("Transit version 1 has no creation time")]
    CreationTimeMissing,
}

/// Builds generation 1 of a registry for a never-rotated key, with version 1 active.
///
/// # Errors
/// [`BootstrapRefusal`] for any key that is not a fresh, valid, unrotated key.
pub fn bootstrap(
    scope: &IdentityScope,
    metadata: &KeyMetadata,
    now_unix: i64,
) -> Result<StateFile, BootstrapRefusal> {
    if !profile::findings(metadata).is_empty() {
        return Err(BootstrapRefusal::ProfileInvalid);
    }
    if metadata.latest_version != 1 {
        return Err(BootstrapRefusal::KeyRotated(metadata.latest_version));
    }
    if metadata.min_available_version > 1 {
        return Err(BootstrapRefusal::MinAvailableExcludesFirst(
            metadata.min_available_version,
        ));
    }
    if metadata.min_decryption_version > 1 {
        return Err(BootstrapRefusal::MinDecryptionExcludesFirst(
            metadata.min_decryption_version,
        ));
    }
    let created = *metadata
        .versions
        .get(&1)
        .ok_or(BootstrapRefusal::CreationTimeMissing)?;
    let record = StateRecord::new(
        scope.key_scope().clone(),
        KeyVersion::FIRST,
        created,
        SnapshotState::Active,
    )
    .and_then(|record| {
        record.with_observation(Observation {
            promoted_at_unix: now_unix,
            ..Observation::NONE
        })
    })
    .map_err(|_| BootstrapRefusal::CreationTimeMissing)?;
    let key_id = record.key_id().clone();
    StateFile::build(scope.fingerprint(), 1, None, key_id, vec![record])
        .map_err(|_| BootstrapRefusal::CreationTimeMissing)
}

fn is_stable_candidate(record: &StateRecord, latest: KeyVersion, policy: RotationPolicy) -> bool {
    let observation = record.observation();
    record.state() == SnapshotState::Pending
        && record.version() == latest
        && observation.stable_at_unix > 0
        && observation.stable_observation_count >= policy.require_stable_observation_count
}

/// Checks every decryptable record against Transit: creation times must match and no minimum
/// may block it. Returns the non-fatal problems.
fn retained_version_problems(
    current: &StateFile,
    metadata: &KeyMetadata,
) -> Result<Vec<NotReadyReason>, ObserveError> {
    let mut blocking = Vec::new();
    for record in current.records().iter().filter(|record| record.decrypts()) {
        let version = u64::from(record.version().get());
        if decryption_block(version, metadata).is_some() {
            if !blocking.contains(&NotReadyReason::DecryptionBlocked) {
                blocking.push(NotReadyReason::DecryptionBlocked);
            }
            continue;
        }
        match metadata.versions.get(&version) {
            Some(&created) if created == record.created_at_unix() => {}
            Some(_) => return Err(ObserveError::CreationTimeChanged),
            None => return Err(ObserveError::CreationTimeMissing),
        }
    }
    Ok(blocking)
}

/// Which Transit minimum keeps `version` from decrypting, if any.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum DecryptionBlock {
    /// `min_available_version` (the key material is trimmed).
    MinAvailable(u64),
    /// `min_decryption_version`.
    MinDecryption(u64),
}

/// The one rule for "Transit refuses to decrypt this version", shared by observation and the
/// rotation plan.
pub(crate) fn decryption_block(version: u64, metadata: &KeyMetadata) -> Option<DecryptionBlock> {
    if version < metadata.min_available_version {
        Some(DecryptionBlock::MinAvailable(
            metadata.min_available_version,
        ))
    } else if version < metadata.min_decryption_version {
        Some(DecryptionBlock::MinDecryption(
            metadata.min_decryption_version,
        ))
    } else {
        None
    }
}

/// The registry records after observing `latest` (which is at least the active version).
fn observed_records(
    current: &StateFile,
    metadata: &KeyMetadata,
    latest: KeyVersion,
    now_unix: i64,
    policy: RotationPolicy,
    mode: ObserveMode,
) -> Result<Vec<StateRecord>, ObserveError> {
    let scope = current.active().scope().clone();
    let active = current.active().version();
    let mut records = Vec::with_capacity(current.records().len() + 1);
    for record in current.records() {
        // A candidate that is no longer Transit's latest stays decryptable as a retired record.
        let superseded = record.state() == SnapshotState::Pending && record.version() < latest;
        records.push(if superseded {
            record.clone().with_state(SnapshotState::Retired)
        } else {
            record.clone()
        });
    }
    let mut version = active.next();
    while let Some(candidate) = version.filter(|candidate| *candidate <= latest) {
        version = candidate.next();
        if let Some(index) = records
            .iter()
            .position(|record| record.version() == candidate)
        {
            if candidate == latest && mode == ObserveMode::Probe {
                let counted = count_observation(&records[index], now_unix, policy)?;
                records[index] = counted;
            }
            continue;
        }
        let created = *metadata
            .versions
            .get(&u64::from(candidate.get()))
            .ok_or(ObserveError::CreationTimeMissing)?;
        let state = if candidate == latest {
            SnapshotState::Pending
        } else {
            SnapshotState::Retired
        };
        let mut record = StateRecord::new(scope.clone(), candidate, created, state)
            .map_err(|_| ObserveError::CreationTimeMissing)?;
        if candidate == latest {
            // Discovery records the candidate for decryption but never counts toward its
            // promotion: only scheduled probes do.
            let counted = u32::from(mode == ObserveMode::Probe);
            let stable = counted >= 1 && policy.require_stable_observation_count <= counted;
            let first = Observation {
                observed_at_unix: now_unix.max(1),
                stable_observation_count: counted,
                stable_at_unix: if stable { now_unix.max(1) } else { 0 },
                promoted_at_unix: 0,
            };
            record = record
                .with_observation(first)
                .map_err(|_| ObserveError::Transition)?;
        }
        records.push(record);
    }
    Ok(records)
}

/// One more observation of the pending candidate; stops counting once it is stable.
fn count_observation(
    record: &StateRecord,
    now_unix: i64,
    policy: RotationPolicy,
) -> Result<StateRecord, ObserveError> {
    let observation = record.observation();
    if record.state() != SnapshotState::Pending || observation.stable_at_unix > 0 {
        return Ok(record.clone());
    }
    let count = observation.stable_observation_count.saturating_add(1);
    let observed_at = if observation.observed_at_unix > 0 {
        observation.observed_at_unix
    } else {
        now_unix.max(1)
    };
    let stable_at = if count >= policy.require_stable_observation_count {
        now_unix.max(observed_at)
    } else {
        0
    };
    let next = Observation {
        observed_at_unix: observed_at,
        stable_observation_count: count,
        stable_at_unix: stable_at,
        promoted_at_unix: 0,
    };
    record
        .clone()
        .with_observation(next)
        .map_err(|_| ObserveError::Transition)
}
