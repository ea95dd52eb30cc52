//! Strict serde shapes of the state and checkpoint files, and their conversion to typed parts.
//!
//! Only this module sees raw JSON. Every struct denies unknown fields and serde_json refuses
//! trailing content; integers decode into unsigned types where the value can never be negative,
//! so `-1` or `1.0` fail here rather than later. Optional fields are `Option` or default to
//! zero; writing an explicit zero or `null` is then caught by the canonical-bytes comparison.

use serde::Deserialize;

use crate::identity::{Fingerprint, KeyScope};
use crate::key_id::KeyId;
use crate::registry::error::{Document, StateError};
use crate::registry::hash::StateHash;
use crate::registry::record::{AadMode, Observation, RecordProblem, SnapshotState, StateRecord};
use crate::registry::state_file::STATE_SCHEMA;
use crate::version::KeyVersion;

/// The schema of older releases, refused with a message of its own.
const LEGACY_STATE_SCHEMA: &str = "keyregistry.openbao-kms/v1alpha1";

/// Reads only `schemaVersion`, so that a file of another schema is named as such instead of
/// failing on fields this release does not know.
#[derive(Deserialize)]
struct SchemaProbe {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawState {
    schema_version: String,
    identity_fingerprint: String,
    generation: u64,
    #[serde(default)]
    previous_hash: Option<String>,
    current_hash: String,
    active_key_id: String,
    snapshots: Vec<RawRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRecord {
    provider_name: String,
    cluster_id: String,
    openbao_instance_id: String,
    #[serde(default)]
    openbao_namespace: Option<String>,
    transit_mount_id: String,
    transit_key_lineage_id: String,
    transit_version: u64,
    transit_version_created_at_unix: i64,
    kubernetes_key_id: String,
    state: String,
    aad_mode: String,
    #[serde(default)]
    observed_at_unix: i64,
    #[serde(default)]
    stable_observation_count: u32,
    #[serde(default)]
    stable_at_unix: i64,
    #[serde(default)]
    promoted_at_unix: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCheckpoint {
    pub(crate) schema_version: String,
    pub(crate) generation: u64,
    pub(crate) current_hash: String,
}

/// The typed content of a state file, before the whole-file checks.
pub(crate) struct StateParts {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) generation: u64,
    pub(crate) previous_hash: Option<StateHash>,
    pub(crate) current_hash: StateHash,
    pub(crate) active_key_id: KeyId,
    pub(crate) records: Vec<StateRecord>,
}

/// Parses a state file and validates each value on its own.
pub(crate) fn parse_state(bytes: &[u8]) -> Result<StateParts, StateError> {
    let malformed = |error: serde_json::Error| StateError::malformed(Document::State, &error);
    let probe: SchemaProbe = serde_json::from_slice(bytes).map_err(malformed)?;
    match probe.schema_version.as_deref() {
        // A missing schemaVersion is reported by the strict parse below as a missing field.
        Some(STATE_SCHEMA) | None => {}
        Some(LEGACY_STATE_SCHEMA) => {
            return Err(StateError::UnsupportedSchema(
                "unsupported registry schema v1alpha1; this release requires fresh bound state \
                 (v1alpha2)",
            ));
        }
        Some(_) => {
            return Err(StateError::UnsupportedSchema(
                "unsupported registry schema; this release reads keyregistry.openbao-kms/v1alpha2",
            ));
        }
    }
    let raw: RawState = serde_json::from_slice(bytes).map_err(malformed)?;
    if raw.schema_version != STATE_SCHEMA {
        // Unreachable after the probe, kept so the strict parse never relies on it.
        return Err(StateError::UnsupportedSchema("unsupported registry schema"));
    }
    let fingerprint = Fingerprint::parse(&raw.identity_fingerprint).map_err(|_| {
        StateError::Corrupt("identityFingerprint is not cfg1. followed by 43 base64url characters")
    })?;
    let previous_hash = raw
        .previous_hash
        .map(|text| StateHash::parse(&text))
        .transpose()
        .map_err(|_| StateError::Corrupt("previousHash is not a krs1. state hash"))?;
    let current_hash = StateHash::parse(&raw.current_hash)
        .map_err(|_| StateError::Corrupt("currentHash is not a krs1. state hash"))?;
    let active_key_id = KeyId::parse(&raw.active_key_id)
        .map_err(|_| StateError::Corrupt("activeKeyId is not a wire-format-v1 key_id"))?;
    let records = raw
        .snapshots
        .into_iter()
        .enumerate()
        .map(|(index, record)| parse_record(record).map_err(|problem| problem.at(index)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StateParts {
        fingerprint,
        generation: raw.generation,
        previous_hash,
        current_hash,
        active_key_id,
        records,
    })
}

fn parse_record(raw: RawRecord) -> Result<StateRecord, RecordProblem> {
    let scope = KeyScope::from_parts(
        raw.provider_name,
        raw.cluster_id,
        raw.openbao_instance_id,
        raw.openbao_namespace,
        raw.transit_mount_id,
        raw.transit_key_lineage_id,
    )
    .map_err(|error| RecordProblem {
        field: error.field,
        reason: error.reason,
    })?;
    let version = KeyVersion::new(raw.transit_version).map_err(|_| RecordProblem {
        field: "transitVersion",
        reason: "must be a positive 32-bit integer",
    })?;
    let key_id = KeyId::parse(&raw.kubernetes_key_id).map_err(|_| RecordProblem {
        field: "kubernetesKeyId",
        reason: "is not a wire-format-v1 key_id",
    })?;
    let state = SnapshotState::parse(&raw.state).ok_or(RecordProblem {
        field: "state",
        reason: "is not a known snapshot state",
    })?;
    // The mode has one value today; parsing it still refuses a file from a future release.
    AadMode::parse(&raw.aad_mode).ok_or(RecordProblem {
        field: "aadMode",
        reason: "must be aad.required",
    })?;
    let observation = Observation {
        observed_at_unix: raw.observed_at_unix,
        stable_observation_count: raw.stable_observation_count,
        stable_at_unix: raw.stable_at_unix,
        promoted_at_unix: raw.promoted_at_unix,
    };
    StateRecord::assemble(
        scope,
        version,
        raw.transit_version_created_at_unix,
        &key_id,
        state,
        observation,
    )
}
