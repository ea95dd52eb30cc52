//! Which successor states are allowed.
//!
//! Every save goes through one of these checks before it is written. The normal path
//! ([`check_progress`]) can add records and move them forward but never takes decrypt
//! eligibility away from a version; only the two explicit operator requests may change that, each
//! through its own entry point so that the rotation code cannot reach them by accident.
//!
//! ```text
//!   new ───────► pending ──── promote ────► active
//!    │              │                         │ next promotion
//!    │              ▼                         ▼
//!    └─────────► retired ◄────────────────────┘
//!                 │   ▲
//!        operator │   │ operator
//!          retire ▼   │ restore
//!                removed
//!
//!   rejected: legacy state of older releases, frozen
//! ```

use crate::registry::error::StateError;
use crate::registry::record::{SnapshotState, StateRecord};
use crate::registry::state_file::StateFile;
use crate::version::KeyVersion;

/// Checks a rotation step: observation, discovery or promotion.
///
/// Allowed: generation + 1 chained on the previous hash, same fingerprint, the active version
/// never decreasing, previous records kept with the same version and creation time, active →
/// active or retired, pending → pending, active or retired, retired → retired, rejected and
/// removed records unchanged in every field, new records only as pending or retired.
///
/// # Errors
/// [`StateError::InvalidTransition`] naming the first rule broken.
pub fn check_progress(previous: &StateFile, next: &StateFile) -> Result<(), StateError> {
    check_chain(previous, next)?;
    if next.active().version() < previous.active().version() {
        return Err(StateError::InvalidTransition(
            "the active version decreased",
        ));
    }
    for old in previous.records() {
        let new = counterpart(old, next)?;
        let allowed = match old.state() {
            SnapshotState::Active => {
                matches!(new.state(), SnapshotState::Active | SnapshotState::Retired)
            }
            SnapshotState::Pending => matches!(
                new.state(),
                SnapshotState::Pending | SnapshotState::Active | SnapshotState::Retired
            ),
            SnapshotState::Retired => new.state() == SnapshotState::Retired,
            // Bookkeeping included: these records are frozen in the Go provider too.
            SnapshotState::Rejected | SnapshotState::Removed => new == old,
        };
        if !allowed {
            return Err(StateError::InvalidTransition(match old.state() {
                SnapshotState::Active => "the active record may only stay active or be retired",
                SnapshotState::Pending => {
                    "a pending record may only stay pending, become active or be retired"
                }
                SnapshotState::Retired => {
                    "a retired record must stay retired outside an operator retirement"
                }
                SnapshotState::Rejected | SnapshotState::Removed => {
                    "rejected and removed records never change"
                }
            }));
        }
    }
    let added_wrongly = next.records().iter().any(|new| {
        previous.record_by_key_id(new.key_id()).is_none()
            && !matches!(new.state(), SnapshotState::Pending | SnapshotState::Retired)
    });
    if added_wrongly {
        return Err(StateError::InvalidTransition(
            "a new record must enter as pending or retired",
        ));
    }
    Ok(())
}

/// Checks an operator retirement below `before`: retired records with a lower version may
/// become removed; nothing else changes.
///
/// # Errors
/// [`StateError::InvalidOperatorRequest`] when `before` is not in `2..=active version`,
/// [`StateError::InvalidTransition`] for any other difference, or when nothing changed.
pub fn check_operator_retirement(
    previous: &StateFile,
    next: &StateFile,
    before: KeyVersion,
) -> Result<(), StateError> {
    check_retirement_boundary(previous, before)?;
    check_only_state_changes(previous, next, |old, new_state| {
        old.state() == SnapshotState::Retired
            && new_state == SnapshotState::Removed
            && old.version() < before
    })
}

/// Checks an operator restore: removed records below the active version may become retired;
/// nothing else changes.
///
/// # Errors
/// [`StateError::InvalidTransition`] for any other difference, or when nothing changed.
pub fn check_operator_restore(previous: &StateFile, next: &StateFile) -> Result<(), StateError> {
    let active = previous.active().version();
    check_only_state_changes(previous, next, |old, new_state| {
        old.state() == SnapshotState::Removed
            && new_state == SnapshotState::Retired
            && old.version() < active
    })
}

/// The boundary rule of `retire-versions`: `1 < before <= active version`.
pub(crate) fn check_retirement_boundary(
    previous: &StateFile,
    before: KeyVersion,
) -> Result<(), StateError> {
    if before <= KeyVersion::FIRST {
        return Err(StateError::operator_version(
            before,
            "the retirement boundary must be greater than 1",
        ));
    }
    if before > previous.active().version() {
        return Err(StateError::operator_version(
            before,
            "the retirement boundary must not exceed the active version",
        ));
    }
    Ok(())
}

/// Generation + 1, chained on the previous hash, same identity.
fn check_chain(previous: &StateFile, next: &StateFile) -> Result<(), StateError> {
    if previous.generation().checked_add(1) != Some(next.generation()) {
        return Err(StateError::InvalidTransition(
            "generation must advance by exactly one",
        ));
    }
    if next.previous_hash() != Some(previous.current_hash()) {
        return Err(StateError::InvalidTransition(
            "previousHash does not name the previous state",
        ));
    }
    if next.fingerprint() != previous.fingerprint() {
        return Err(StateError::InvalidTransition(
            "the identity fingerprint changed",
        ));
    }
    Ok(())
}

/// The record of `old`'s key_id in `next`, which must describe the same Transit version.
fn counterpart<'a>(old: &StateRecord, next: &'a StateFile) -> Result<&'a StateRecord, StateError> {
    let new = next
        .record_by_key_id(old.key_id())
        .ok_or(StateError::InvalidTransition("a record was dropped"))?;
    // The key_id is derived from these values, so this only fails on a hash collision; it is
    // checked anyway because the rule is what matters, not how it happens to be enforced.
    if new.version() != old.version()
        || new.created_at_unix() != old.created_at_unix()
        || new.scope() != old.scope()
    {
        return Err(StateError::InvalidTransition(
            "a key_id changed its version or creation time",
        ));
    }
    Ok(new)
}

/// The shared shape of both operator checks: same records, same active key, at least one state
/// change, and every state change accepted by `allowed`.
fn check_only_state_changes(
    previous: &StateFile,
    next: &StateFile,
    allowed: impl Fn(&StateRecord, SnapshotState) -> bool,
) -> Result<(), StateError> {
    check_chain(previous, next)?;
    if next.active_key_id() != previous.active_key_id() {
        return Err(StateError::InvalidTransition(
            "an operator request changed the active key",
        ));
    }
    if next.records().len() != previous.records().len() {
        return Err(StateError::InvalidTransition(
            "an operator request added records",
        ));
    }
    let mut changes = 0_usize;
    for old in previous.records() {
        let new = counterpart(old, next)?;
        if new.clone().with_state(old.state()) != *old {
            return Err(StateError::InvalidTransition(
                "an operator request changed more than a record state",
            ));
        }
        if new.state() != old.state() {
            if !allowed(old, new.state()) {
                return Err(StateError::InvalidTransition(
                    "an operator request made a state change it does not allow",
                ));
            }
            changes += 1;
        }
    }
    if changes == 0 {
        return Err(StateError::InvalidTransition(
            "an operator request changed nothing",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::test_support::{golden_state, record};

    #[test]
    fn an_unchanged_successor_is_allowed_progress() {
        let state = golden_state();
        let next = state
            .successor(state.active_key_id().clone(), state.records().to_vec())
            .unwrap();
        check_progress(&state, &next).unwrap();
    }

    #[test]
    fn a_new_active_record_without_a_pending_stage_is_refused() {
        let state = golden_state();
        let mut records: Vec<_> = state
            .records()
            .iter()
            .map(|r| r.clone().with_state(SnapshotState::Retired))
            .collect();
        let fresh = record(4, SnapshotState::Active);
        records.push(fresh.clone());
        let next = state.successor(fresh.key_id().clone(), records).unwrap();
        assert_eq!(
            check_progress(&state, &next),
            Err(StateError::InvalidTransition(
                "a new record must enter as pending or retired"
            ))
        );
    }

    #[test]
    fn a_retired_record_cannot_become_pending_again() {
        let state = golden_state();
        let records: Vec<_> = state
            .records()
            .iter()
            .map(|r| {
                if r.version().get() == 1 {
                    r.clone().with_state(SnapshotState::Pending)
                } else {
                    r.clone()
                }
            })
            .collect();
        let next = state
            .successor(state.active_key_id().clone(), records)
            .unwrap();
        assert!(matches!(
            check_progress(&state, &next),
            Err(StateError::InvalidTransition(_))
        ));
    }
}
