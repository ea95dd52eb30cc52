//! The registry state file, schema `keyregistry.openbao-kms/v1alpha2`.
//!
//! A [`StateFile`] can only exist in a valid, canonical shape: exactly one active record named
//! by `activeKeyId`, unique key_ids and versions, records in the Go provider's order, and a
//! `currentHash` computed over the content. [`StateFile::encode`] writes the exact bytes the Go
//! provider writes, and [`StateFile::decode`] accepts nothing else: the hash protects the
//! content, the final re-encode comparison protects the layout, so any edit of a valid file is
//! refused.

use std::collections::BTreeSet;

use crate::gojson::GoValue;
use crate::identity::{Fingerprint, IdentityScope};
use crate::key_id::KeyId;
use crate::registry::error::{Document, StateError};
use crate::registry::hash::StateHash;
use crate::registry::record::{SnapshotState, StateRecord};
use crate::registry::wire;
use crate::version::KeyVersion;

/// The state schema this release reads and writes.
pub const STATE_SCHEMA: &str = "keyregistry.openbao-kms/v1alpha2";

/// A validated registry state: one generation of the hash chain.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StateFile {
    fingerprint: Fingerprint,
    generation: u64,
    previous_hash: Option<StateHash>,
    current_hash: StateHash,
    active_key_id: KeyId,
    records: Vec<StateRecord>,
    // Position of the active record, found once by validation; it is always in bounds.
    active_index: usize,
}

impl StateFile {
    /// Builds a state from its parts: sorts the records canonically and computes the hash.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when the parts break a registry invariant (generation zero, no
    /// or several active records, `active_key_id` naming a record that is not active, duplicate
    /// key_ids or versions).
    pub fn build(
        fingerprint: Fingerprint,
        generation: u64,
        previous_hash: Option<StateHash>,
        active_key_id: KeyId,
        mut records: Vec<StateRecord>,
    ) -> Result<Self, StateError> {
        records.sort_by(StateRecord::canonical_cmp);
        let active_index = check_invariants(generation, &active_key_id, &records)?;
        let current_hash = StateHash::of(&content(
            &fingerprint,
            generation,
            previous_hash.as_ref(),
            None,
            &active_key_id,
            &records,
        ));
        Ok(Self {
            fingerprint,
            generation,
            previous_hash,
            current_hash,
            active_key_id,
            records,
            active_index,
        })
    }

    /// The next generation of this state, chained on its hash, with the given records.
    ///
    /// # Errors
    /// [`StateError::InvalidTransition`] when the generation counter is exhausted, or the
    /// errors of [`StateFile::build`]. Whether the change itself is allowed is checked by
    /// the functions of [`crate::registry::transition`].
    pub fn successor(
        &self,
        active_key_id: KeyId,
        records: Vec<StateRecord>,
    ) -> Result<Self, StateError> {
        let generation = self
            .generation
            .checked_add(1)
            .ok_or(StateError::InvalidTransition(
                "generation cannot advance past its maximum",
            ))?;
        Self::build(
            self.fingerprint.clone(),
            generation,
            Some(self.current_hash.clone()),
            active_key_id,
            records,
        )
    }

    /// The file bytes: Go's `json.Encoder` output with a two-space indent and a final newline.
    pub fn encode(&self) -> String {
        content(
            &self.fingerprint,
            self.generation,
            self.previous_hash.as_ref(),
            Some(&self.current_hash),
            &self.active_key_id,
            &self.records,
        )
        .to_indented()
    }

    /// Reads a state file, refusing anything the provider would not have written itself.
    ///
    /// # Errors
    /// [`StateError::Malformed`] for JSON that does not fit the schema (unknown fields, trailing
    /// content, wrong types), [`StateError::UnsupportedSchema`] for another schema version,
    /// [`StateError::Corrupt`] or [`StateError::CorruptRecord`] for broken invariants or a hash
    /// mismatch, and [`StateError::NotCanonical`] when valid content is laid out differently
    /// from the canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let parts = wire::parse_state(bytes)?;
        let active_index =
            check_invariants(parts.generation, &parts.active_key_id, &parts.records)?;
        let ordered = parts
            .records
            .windows(2)
            .all(|pair| matches!(pair, [first, second] if first.canonical_cmp(second).is_lt()));
        if !ordered {
            return Err(StateError::Corrupt("snapshots are not in canonical order"));
        }
        let expected = StateHash::of(&content(
            &parts.fingerprint,
            parts.generation,
            parts.previous_hash.as_ref(),
            None,
            &parts.active_key_id,
            &parts.records,
        ));
        if expected != parts.current_hash {
            return Err(StateError::Corrupt(
                "currentHash does not match the content",
            ));
        }
        let state = Self {
            fingerprint: parts.fingerprint,
            generation: parts.generation,
            previous_hash: parts.previous_hash,
            current_hash: parts.current_hash,
            active_key_id: parts.active_key_id,
            records: parts.records,
            active_index,
        };
        if state.encode().as_bytes() != bytes {
            return Err(StateError::NotCanonical(Document::State));
        }
        Ok(state)
    }

    /// Checks that the state belongs to the configured identity.
    ///
    /// # Errors
    /// [`StateError::ScopeMismatch`] naming the first identity value that differs (never its
    /// content), or the fingerprint when only the mount path or key name changed.
    pub fn check_scope(&self, scope: &IdentityScope) -> Result<(), StateError> {
        let expected = scope.key_scope();
        for record in &self.records {
            let actual = record.scope();
            let mismatch = if actual.provider_name() != expected.provider_name() {
                Some("a record's providerName does not match the configuration")
            } else if actual.cluster_id() != expected.cluster_id() {
                Some("a record's clusterId does not match the configuration")
            } else if actual.openbao_instance_id() != expected.openbao_instance_id() {
                Some("a record's openbaoInstanceId does not match the configuration")
            } else if actual.openbao_namespace() != expected.openbao_namespace() {
                Some("a record's openbaoNamespace does not match the configuration")
            } else if actual.transit_mount_id() != expected.transit_mount_id() {
                Some("a record's transitMountId does not match the configuration")
            } else if actual.key_lineage_id() != expected.key_lineage_id() {
                Some("a record's transitKeyLineageId does not match the configuration")
            } else {
                None
            };
            if let Some(reason) = mismatch {
                return Err(StateError::ScopeMismatch(reason));
            }
        }
        if self.fingerprint != scope.fingerprint() {
            return Err(StateError::ScopeMismatch(
                "state identity fingerprint does not match the configuration",
            ));
        }
        Ok(())
    }

    /// The `cfg1.` identity fingerprint the state is bound to.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The generation, at least 1, advancing by one on every save.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The hash of the previous generation, absent for a bootstrap state.
    pub fn previous_hash(&self) -> Option<&StateHash> {
        self.previous_hash.as_ref()
    }

    /// The hash of this generation.
    pub fn current_hash(&self) -> &StateHash {
        &self.current_hash
    }

    /// The key_id Status advertises and Encrypt uses.
    pub fn active_key_id(&self) -> &KeyId {
        &self.active_key_id
    }

    /// Every record, in canonical order (active first).
    pub fn records(&self) -> &[StateRecord] {
        &self.records
    }

    /// The active record.
    pub fn active(&self) -> &StateRecord {
        &self.records[self.active_index]
    }

    /// The record of a key_id, whatever its state.
    pub fn record_by_key_id(&self, key_id: &KeyId) -> Option<&StateRecord> {
        self.records.iter().find(|record| record.key_id() == key_id)
    }

    /// The record of a Transit version, whatever its state.
    pub fn record_by_version(&self, version: KeyVersion) -> Option<&StateRecord> {
        self.records
            .iter()
            .find(|record| record.version() == version)
    }
}

/// The registry invariants shared by `build` and `decode`; returns the active record's index.
fn check_invariants(
    generation: u64,
    active_key_id: &KeyId,
    records: &[StateRecord],
) -> Result<usize, StateError> {
    if generation == 0 {
        return Err(StateError::Corrupt("generation must be at least 1"));
    }
    let active_index = records
        .iter()
        .position(|record| record.key_id() == active_key_id)
        .ok_or(StateError::Corrupt("activeKeyId names no snapshot"))?;
    let mut key_ids = BTreeSet::new();
    let mut versions = BTreeSet::new();
    let named_is_active = records
        .get(active_index)
        .is_some_and(|record| record.state() == SnapshotState::Active);
    if !named_is_active {
        return Err(StateError::Corrupt(
            "the snapshot named by activeKeyId is not active",
        ));
    }
    for (index, record) in records.iter().enumerate() {
        if index != active_index && record.state() == SnapshotState::Active {
            return Err(StateError::Corrupt("more than one snapshot is active"));
        }
        if !key_ids.insert(record.key_id()) {
            return Err(StateError::Corrupt(
                "two snapshots share one kubernetesKeyId",
            ));
        }
        if !versions.insert(record.version()) {
            return Err(StateError::Corrupt(
                "two snapshots share one transitVersion",
            ));
        }
    }
    Ok(active_index)
}

/// The state object in Go field order. Without `current_hash` it is exactly the hashed object.
fn content(
    fingerprint: &Fingerprint,
    generation: u64,
    previous_hash: Option<&StateHash>,
    current_hash: Option<&StateHash>,
    active_key_id: &KeyId,
    records: &[StateRecord],
) -> GoValue {
    let mut fields = vec![
        ("schemaVersion", GoValue::str(STATE_SCHEMA)),
        ("identityFingerprint", GoValue::str(fingerprint.as_str())),
        ("generation", GoValue::Unsigned(generation)),
    ];
    if let Some(previous) = previous_hash {
        fields.push(("previousHash", GoValue::str(previous.as_str())));
    }
    if let Some(current) = current_hash {
        fields.push(("currentHash", GoValue::str(current.as_str())));
    }
    fields.push(("activeKeyId", GoValue::str(active_key_id.as_str())));
    fields.push((
        "snapshots",
        GoValue::Array(records.iter().map(StateRecord::to_go_value).collect()),
    ));
    GoValue::Object(fields)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::test_support::{golden_scope, golden_state, record, state_of};

    #[test]
    fn build_sorts_records_active_first_then_newest() {
        let state = golden_state();
        let versions: Vec<_> = state.records().iter().map(|r| r.version().get()).collect();
        assert_eq!(versions, [3, 2, 1]);
        let mixed = state_of(
            1,
            &[
                (1, SnapshotState::Removed),
                (2, SnapshotState::Retired),
                (5, SnapshotState::Pending),
                (3, SnapshotState::Rejected),
                (4, SnapshotState::Active),
                (6, SnapshotState::Pending),
            ],
        );
        let order: Vec<_> = mixed
            .records()
            .iter()
            .map(|r| (r.state(), r.version().get()))
            .collect();
        assert_eq!(
            order,
            [
                (SnapshotState::Active, 4),
                (SnapshotState::Pending, 6),
                (SnapshotState::Pending, 5),
                (SnapshotState::Retired, 2),
                (SnapshotState::Rejected, 3),
                (SnapshotState::Removed, 1),
            ]
        );
    }

    #[test]
    fn hash_is_taken_over_the_compact_object_without_current_hash() {
        let state = golden_state();
        let without_current = state.encode().replace(
            &format!("  \"currentHash\": \"{}\",\n", state.current_hash()),
            "",
        );
        // The golden identity has no spaces, so minifying by hand gives Go's compact form.
        let compact: String = without_current
            .lines()
            .map(str::trim_start)
            .collect::<String>()
            .replace("\": ", "\":");
        assert!(compact.starts_with(r#"{"schemaVersion":"keyregistry.openbao-kms/v1alpha2","#));
        let digest = crate::digest::encode_url(&crate::digest::sha256(compact.as_bytes()));
        assert_eq!(state.current_hash().as_str(), format!("krs1.{digest}"));
    }

    #[test]
    fn build_refuses_broken_invariants() {
        let fingerprint = golden_scope().fingerprint();
        let active = record(3, SnapshotState::Active);
        let cases: Vec<(u64, KeyId, Vec<StateRecord>, &str)> = vec![
            (
                0,
                active.key_id().clone(),
                vec![active.clone()],
                "generation must be at least 1",
            ),
            (
                1,
                record(2, SnapshotState::Active).key_id().clone(),
                vec![active.clone()],
                "activeKeyId names no snapshot",
            ),
            (
                1,
                active.key_id().clone(),
                vec![active.clone(), record(2, SnapshotState::Active)],
                "more than one snapshot is active",
            ),
            (
                1,
                record(2, SnapshotState::Retired).key_id().clone(),
                vec![active.clone(), record(2, SnapshotState::Retired)],
                "the snapshot named by activeKeyId is not active",
            ),
            (
                1,
                active.key_id().clone(),
                vec![
                    active.clone(),
                    active.clone().with_state(SnapshotState::Retired),
                ],
                "two snapshots share one kubernetesKeyId",
            ),
        ];
        for (generation, active_key_id, records, reason) in cases {
            let error = StateFile::build(
                fingerprint.clone(),
                generation,
                None,
                active_key_id,
                records,
            )
            .unwrap_err();
            assert_eq!(error, StateError::Corrupt(reason));
        }
    }

    #[test]
    fn two_records_of_one_version_are_refused() {
        let scope = golden_scope().key_scope().clone();
        let active = record(3, SnapshotState::Active);
        let other_time =
            StateRecord::new(scope, active.version(), 42, SnapshotState::Retired).unwrap();
        let error = StateFile::build(
            golden_scope().fingerprint(),
            1,
            None,
            active.key_id().clone(),
            vec![active, other_time],
        )
        .unwrap_err();
        assert_eq!(
            error,
            StateError::Corrupt("two snapshots share one transitVersion")
        );
    }

    #[test]
    fn accessors_find_records_by_key_id_and_version() {
        let state = golden_state();
        assert_eq!(state.active().version().get(), 3);
        let v2 = state
            .record_by_version(KeyVersion::new(2).unwrap())
            .unwrap();
        assert_eq!(state.record_by_key_id(v2.key_id()), Some(v2));
        assert!(
            state
                .record_by_version(KeyVersion::new(9).unwrap())
                .is_none()
        );
    }

    #[test]
    fn successor_chains_on_the_current_hash() {
        let state = golden_state();
        let next = state
            .successor(state.active_key_id().clone(), state.records().to_vec())
            .unwrap();
        assert_eq!(next.generation(), 2);
        assert_eq!(next.previous_hash(), Some(state.current_hash()));
        assert_ne!(next.current_hash(), state.current_hash());
    }
}
