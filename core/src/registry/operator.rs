//! The operator requests `retire-versions` and `restore-versions`.
//!
//! Retirement is the only sanctioned way to take decrypt eligibility away from a version; the
//! operator runs it on every node before raising Transit's `min_decryption_version`. Restore
//! undoes it for versions below the active one. Both write a new generation chained on the
//! previous hash and never touch the active or pending records.

use std::collections::BTreeSet;

use crate::registry::error::StateError;
use crate::registry::record::SnapshotState;
use crate::registry::state_file::StateFile;
use crate::registry::transition::{
    check_operator_restore, check_operator_retirement, check_retirement_boundary,
};
use crate::version::KeyVersion;

/// Marks every retired version below `before` as removed.
///
/// Returns `Ok(None)` when no record is affected, so that repeating a request is a no-op that
/// writes nothing.
///
/// # Errors
/// [`StateError::InvalidOperatorRequest`] unless `1 < before <= active version`; errors of
/// [`StateFile::successor`] and [`check_operator_retirement`].
pub fn retire_versions(
    previous: &StateFile,
    before: KeyVersion,
) -> Result<Option<StateFile>, StateError> {
    check_retirement_boundary(previous, before)?;
    let mut changed = false;
    let records = previous
        .records()
        .iter()
        .map(|record| {
            if record.state() == SnapshotState::Retired && record.version() < before {
                changed = true;
                record.clone().with_state(SnapshotState::Removed)
            } else {
                record.clone()
            }
        })
        .collect();
    if !changed {
        return Ok(None);
    }
    let next = previous.successor(previous.active_key_id().clone(), records)?;
    check_operator_retirement(previous, &next, before)?;
    Ok(Some(next))
}

/// Makes removed versions decryptable again, as retired records.
///
/// # Errors
/// [`StateError::InvalidOperatorRequest`] when the list is empty, names a version twice, names a
/// version that is not below the active one, has no record, or is not removed; errors of
/// [`StateFile::successor`] and [`check_operator_restore`].
pub fn restore_versions(
    previous: &StateFile,
    versions: &[KeyVersion],
) -> Result<StateFile, StateError> {
    if versions.is_empty() {
        return Err(StateError::operator("no versions to restore"));
    }
    let active = previous.active().version();
    let mut requested = BTreeSet::new();
    for &version in versions {
        if !requested.insert(version) {
            return Err(StateError::operator_version(
                version,
                "the version is named twice",
            ));
        }
        if version >= active {
            return Err(StateError::operator_version(
                version,
                "only versions below the active version can be restored",
            ));
        }
        let record = previous.record_by_version(version).ok_or_else(|| {
            StateError::operator_version(version, "the registry has no record of it")
        })?;
        if record.state() != SnapshotState::Removed {
            return Err(StateError::operator_version(
                version,
                "the version is not removed",
            ));
        }
    }
    let records = previous
        .records()
        .iter()
        .map(|record| {
            if requested.contains(&record.version()) {
                record.clone().with_state(SnapshotState::Retired)
            } else {
                record.clone()
            }
        })
        .collect();
    let next = previous.successor(previous.active_key_id().clone(), records)?;
    check_operator_restore(previous, &next)?;
    Ok(next)
}
