//! Compatibility manifests: which formats a release reads and writes, and whether a node may
//! move from one release to another given the state on disk and the formats already issued.
//!
//! The upgrade runbook says: move one node at a time, never during a rotation, and roll back
//! only to a release that reads every format in use. [`check_move`] is that sentence as a pure
//! function, so the CLI, the tests and the fuzzers ask the same question the same way.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::registry::{CHECKPOINT_SCHEMA, STATE_SCHEMA, SnapshotState, StateFile};

/// The manifest of this release, as compiled in.
pub const RELEASE_MANIFEST_TOML: &str = include_str!("release.toml");

/// What one release reads and writes.
/// Unknown fields are tolerated on purpose: a newer release may describe more kinds of format,
/// and what this release must check is only what it knows is in use.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Manifest {
    /// Version of the manifest format itself.
    pub manifest_version: u32,
    /// The release this manifest describes.
    pub release: String,
    /// Formats the release can read.
    pub reads: Reads,
    /// Formats the release writes.
    pub writes: Writes,
}

/// Formats a release can read.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Reads {
    /// key_id prefixes, without the dot (`obk2`).
    pub key_id_formats: BTreeSet<String>,
    /// Annotation schema versions (`aad-version` values).
    pub annotation_schemas: BTreeSet<String>,
    /// AAD versions.
    pub aad_versions: BTreeSet<String>,
    /// Registry state schemas.
    pub state_schemas: BTreeSet<String>,
    /// Checkpoint schemas.
    pub checkpoint_schemas: BTreeSet<String>,
    /// Registry record states.
    pub record_states: BTreeSet<String>,
    /// `configVersion` values.
    pub config_versions: BTreeSet<String>,
    /// Configuration keys beyond the preview releases' schema that the release accepts.
    #[serde(default)]
    pub config_additions: BTreeSet<String>,
}

/// Formats a release writes.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Writes {
    /// key_id prefix.
    pub key_id_format: String,
    /// Annotation schema version.
    pub annotation_schema: String,
    /// AAD version.
    pub aad_version: String,
    /// Registry state schema.
    pub state_schema: String,
    /// Checkpoint schema.
    pub checkpoint_schema: String,
    /// Record states written without an operator command.
    pub record_states: BTreeSet<String>,
}

impl Manifest {
    /// Parses a manifest from TOML.
    ///
    /// # Errors
    /// The TOML error (no secrets can be in a manifest).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The manifest of this release.
    ///
    /// # Panics
    /// Never in a released binary: the embedded manifest is checked by a unit test.
    pub fn this_release() -> Self {
        match Self::from_toml(RELEASE_MANIFEST_TOML) {
            Ok(manifest) => manifest,
            Err(error) => panic!("the embedded release manifest is invalid: {error}"),
        }
    }
}

/// Formats present in a fleet: in the registry state and in ciphertext already issued.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct FormatsInUse {
    /// key_id prefixes issued.
    pub key_id_formats: BTreeSet<String>,
    /// Annotation schemas issued.
    pub annotation_schemas: BTreeSet<String>,
    /// AAD versions issued.
    pub aad_versions: BTreeSet<String>,
    /// State schema on disk, when there is a state.
    pub state_schema: Option<String>,
    /// Checkpoint schema on disk, when there is a checkpoint.
    pub checkpoint_schema: Option<String>,
    /// Record states present in the state.
    pub record_states: BTreeSet<String>,
    /// Whether a rotation candidate is pending.
    pub rotation_pending: bool,
    /// Configuration additions the node's config uses.
    pub config_additions: BTreeSet<String>,
    /// The node's `configVersion`, when a configuration is known.
    pub config_version: Option<String>,
}

impl FormatsInUse {
    /// The formats evidenced by a state file: every record was issued with this release
    /// family's key_id, annotation and AAD formats, which wire format v1 fixes.
    pub fn from_state(state: &StateFile) -> Self {
        let record_states = state
            .records()
            .iter()
            .map(|record| record.state().as_str().to_owned())
            .collect();
        let rotation_pending = state
            .records()
            .iter()
            .any(|record| record.state() == SnapshotState::Pending);
        Self {
            key_id_formats: BTreeSet::from(["obk2".to_owned()]),
            annotation_schemas: BTreeSet::from(["v1".to_owned()]),
            aad_versions: BTreeSet::from(["v1".to_owned()]),
            state_schema: Some(STATE_SCHEMA.to_owned()),
            checkpoint_schema: Some(CHECKPOINT_SCHEMA.to_owned()),
            record_states,
            rotation_pending,
            config_additions: BTreeSet::new(),
            config_version: None,
        }
    }
}

/// One reason a move is unsafe.
#[derive(Clone, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub enum Blocker {
    /// A rotation is pending: finish it before changing releases.
    RotationPending,
    /// The target cannot read a format in use.
    UnreadableFormat {
        /// Which kind of format.
        kind: &'static str,
        /// The format value.
        format: String,
    },
    /// The target writes a format the current release cannot read (matters for coming back).
    WrittenFormatUnreadable {
        /// Which kind of format.
        kind: &'static str,
        /// The format value.
        format: String,
    },
    /// The target rejects configuration keys in use.
    UnsupportedConfig {
        /// The key.
        key: String,
    },
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RotationPending => {
                f.write_str("a rotation is pending; wait until it is promoted on every node")
            }
            Self::UnreadableFormat { kind, format } => {
                write!(
                    f,
                    "the target release cannot read {kind} {format:?} which is in use"
                )
            }
            Self::WrittenFormatUnreadable { kind, format } => write!(
                f,
                "the target release writes {kind} {format:?} which this release cannot read"
            ),
            Self::UnsupportedConfig { key } => {
                write!(f, "the target release rejects configuration key {key}")
            }
        }
    }
}

/// Whether a node may move to the target release, and if not, why.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MoveVerdict {
    /// Every reason the move is unsafe; empty when it is safe.
    pub blockers: Vec<Blocker>,
    /// Whether the target writes formats the current release cannot read (relevant when the
    /// fleet may roll back to the current release later).
    pub target_writes_unknown_formats: Vec<Blocker>,
}

impl MoveVerdict {
    /// Whether the move is safe.
    pub fn is_safe(&self) -> bool {
        self.blockers.is_empty()
    }
}

/// May a node move from `current` to `target`, given the formats in use?
///
/// The same function answers upgrades and rollbacks: a rollback is a move to an older
/// manifest. It is unsafe when a rotation is pending, when the target cannot read any format
/// present in the state or in issued ciphertext (including one-way changes such as `removed`
/// retirement records), or when the configuration uses keys the target rejects.
pub fn check_move(current: &Manifest, target: &Manifest, in_use: &FormatsInUse) -> MoveVerdict {
    let mut blockers = Vec::new();
    if in_use.rotation_pending {
        blockers.push(Blocker::RotationPending);
    }
    let reads = &target.reads;
    let mut need = |kind: &'static str, have: &BTreeSet<String>, format: &String| {
        if !have.contains(format) {
            blockers.push(Blocker::UnreadableFormat {
                kind,
                format: format.clone(),
            });
        }
    };
    for format in &in_use.key_id_formats {
        need("key_id format", &reads.key_id_formats, format);
    }
    for format in &in_use.annotation_schemas {
        need("annotation schema", &reads.annotation_schemas, format);
    }
    for format in &in_use.aad_versions {
        need("AAD version", &reads.aad_versions, format);
    }
    if let Some(format) = &in_use.state_schema {
        need("state schema", &reads.state_schemas, format);
    }
    if let Some(format) = &in_use.checkpoint_schema {
        need("checkpoint schema", &reads.checkpoint_schemas, format);
    }
    for format in &in_use.record_states {
        need("record state", &reads.record_states, format);
    }
    if let Some(format) = &in_use.config_version {
        need("configVersion", &reads.config_versions, format);
    }
    for key in &in_use.config_additions {
        if !reads.config_additions.contains(key) {
            blockers.push(Blocker::UnsupportedConfig { key: key.clone() });
        }
    }
    let mut target_writes_unknown_formats = Vec::new();
    let writes = &target.writes;
    let mine = &current.reads;
    let pairs = [
        ("key_id format", &mine.key_id_formats, &writes.key_id_format),
        (
            "annotation schema",
            &mine.annotation_schemas,
            &writes.annotation_schema,
        ),
        ("AAD version", &mine.aad_versions, &writes.aad_version),
        ("state schema", &mine.state_schemas, &writes.state_schema),
        (
            "checkpoint schema",
            &mine.checkpoint_schemas,
            &writes.checkpoint_schema,
        ),
    ];
    for (kind, have, format) in pairs {
        if !have.contains(format) {
            target_writes_unknown_formats.push(Blocker::WrittenFormatUnreadable {
                kind,
                format: format.clone(),
            });
        }
    }
    for state in &writes.record_states {
        if !mine.record_states.contains(state) {
            target_writes_unknown_formats.push(Blocker::WrittenFormatUnreadable {
                kind: "record state",
                format: state.clone(),
            });
        }
    }
    blockers.sort();
    blockers.dedup();
    MoveVerdict {
        blockers,
        target_writes_unknown_formats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_manifest_parses_and_reads_what_it_writes() {
        let manifest = Manifest::this_release();
        let verdict = check_move(&manifest, &manifest, &FormatsInUse::default());
        assert!(verdict.is_safe());
        assert!(verdict.target_writes_unknown_formats.is_empty());
        assert!(manifest.reads.state_schemas.contains(STATE_SCHEMA));
        assert!(
            manifest
                .reads
                .checkpoint_schemas
                .contains(CHECKPOINT_SCHEMA)
        );
        for state in SnapshotState::ALL {
            assert!(
                manifest.reads.record_states.contains(state.as_str()),
                "{state:?}"
            );
        }
    }
}

#[cfg(test)]
mod move_tests {
    use super::*;

    #[test]
    fn a_target_that_cannot_read_the_config_version_is_unsafe() {
        let current = Manifest::this_release();
        let mut target = current.clone();
        target.reads.config_versions = BTreeSet::from(["v2".to_owned()]);
        let in_use = FormatsInUse {
            config_version: Some("v1alpha1".into()),
            ..FormatsInUse::default()
        };
        let verdict = check_move(&current, &target, &in_use);
        assert!(!verdict.is_safe());
    }

    #[test]
    fn a_newer_manifest_with_unknown_fields_still_parses() {
        let text = format!("{RELEASE_MANIFEST_TOML}\n[future]\nsomething = 1\n");
        let text = text.replace("[reads]", "[reads]\nnew_format_kind = [\"x\"]");
        assert!(Manifest::from_toml(&text).is_ok());
    }

    #[test]
    fn formats_the_target_writes_are_reported_in_their_own_words() {
        let current = Manifest::this_release();
        let mut target = current.clone();
        target.writes.aad_version = "v2".into();
        let verdict = check_move(&current, &target, &FormatsInUse::default());
        assert!(verdict.is_safe());
        let reverse = verdict.target_writes_unknown_formats[0].to_string();
        assert!(reverse.contains("writes AAD version"), "{reverse}");
    }
}
