//! Shared fixtures for the registry unit tests: the golden identity of wire format v1.

#![allow(clippy::unwrap_used)]

use crate::identity::{IdentityScope, IdentityValues};
use crate::registry::record::{SnapshotState, StateRecord};
use crate::registry::state_file::StateFile;
use crate::version::KeyVersion;

/// The identity of the golden vector (`vectors/wire-v1.json`), mount `transit`, key `kms-key`.
pub(crate) fn golden_scope() -> IdentityScope {
    IdentityScope::new(IdentityValues {
        provider_name: "openbao-kms-workload-a".into(),
        cluster_id: "workload-a".into(),
        openbao_instance_id: "bao-prod-a".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-prod-primary".into(),
        key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "kms-key".into(),
    })
    .unwrap()
}

pub(crate) fn version(value: u64) -> KeyVersion {
    KeyVersion::new(value).unwrap()
}

/// Golden creation times: v3 is the vector's, v1 and v2 are picked for these tests.
pub(crate) fn created(value: u64) -> i64 {
    match value {
        1 => 1_714_000_000,
        2 => 1_715_000_000,
        3 => 1_715_803_200,
        other => 1_715_803_200 + i64::try_from(other).unwrap() * 1000,
    }
}

pub(crate) fn record(value: u64, state: SnapshotState) -> StateRecord {
    StateRecord::new(
        golden_scope().key_scope().clone(),
        version(value),
        created(value),
        state,
    )
    .unwrap()
}

/// A state whose records are given as (version, state); the active one names activeKeyId.
pub(crate) fn state_of(generation: u64, records: &[(u64, SnapshotState)]) -> StateFile {
    let records: Vec<_> = records.iter().map(|&(v, state)| record(v, state)).collect();
    let active = records
        .iter()
        .find(|r| r.state() == SnapshotState::Active)
        .map(|r| r.key_id().clone())
        .unwrap();
    StateFile::build(
        golden_scope().fingerprint(),
        generation,
        None,
        active,
        records,
    )
    .unwrap()
}

/// Active v3, retired v2 and v1, generation 1.
pub(crate) fn golden_state() -> StateFile {
    state_of(
        1,
        &[
            (3, SnapshotState::Active),
            (2, SnapshotState::Retired),
            (1, SnapshotState::Retired),
        ],
    )
}
