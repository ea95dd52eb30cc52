//! The `.checkpoint` file: the last generation and hash this node saved, kept beside the state.
//!
//! The checkpoint is written after the state, so a crash between the two leaves a state exactly
//! one generation ahead that chains onto the checkpoint's hash. Anything else (an older state, a
//! state several generations ahead, a different state of the same generation) means the state
//! file was replaced by an older copy or a fork, and loading fails closed. An administrator who
//! replaces both files consistently is not detected; that is a documented limit.

use crate::gojson::GoValue;
use crate::registry::error::{Document, StateError};
use crate::registry::hash::StateHash;
use crate::registry::state_file::StateFile;
use crate::registry::wire::RawCheckpoint;

/// The checkpoint schema this release reads and writes.
pub const CHECKPOINT_SCHEMA: &str = "keyregistry.openbao-kms/checkpoint/v1alpha1";

/// The generation and hash of the last state this node saved.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Checkpoint {
    generation: u64,
    current_hash: StateHash,
}

/// How a state relates to a checkpoint that admits it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CheckpointStatus {
    /// Same generation and hash.
    Current,
    /// The state is the direct successor of the checkpoint: the process stopped after renaming
    /// the state and before writing the checkpoint. The caller rewrites the checkpoint.
    Behind,
}

/// What the files found at start-up allow.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LoadVerdict {
    /// Neither state nor checkpoint: bootstrap may be allowed (for an unrotated key only).
    Fresh,
    /// State and checkpoint agree.
    Current,
    /// The state is one generation past the checkpoint; the caller rewrites the checkpoint.
    CheckpointBehind,
    /// A state without a checkpoint (first start of an older layout, or a lost checkpoint):
    /// accepted, and the caller writes a checkpoint for it.
    CheckpointMissing,
}

impl Checkpoint {
    /// The checkpoint that vouches for `state`.
    pub fn for_state(state: &StateFile) -> Self {
        Self {
            generation: state.generation(),
            current_hash: state.current_hash().clone(),
        }
    }

    /// The generation of the state it vouches for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The hash of the state it vouches for.
    pub fn current_hash(&self) -> &StateHash {
        &self.current_hash
    }

    /// The file bytes, in the same layout as the state file (two-space indent, final newline).
    pub fn encode(&self) -> String {
        GoValue::Object(vec![
            ("schemaVersion", GoValue::str(CHECKPOINT_SCHEMA)),
            ("generation", GoValue::Unsigned(self.generation)),
            ("currentHash", GoValue::str(self.current_hash.as_str())),
        ])
        .to_indented()
    }

    /// Reads a checkpoint, refusing anything but the canonical encoding.
    ///
    /// # Errors
    /// [`StateError::Malformed`], [`StateError::UnsupportedSchema`],
    /// [`StateError::CorruptCheckpoint`] or [`StateError::NotCanonical`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let raw: RawCheckpoint = serde_json::from_slice(bytes)
            .map_err(|error| StateError::malformed(Document::Checkpoint, &error))?;
        if raw.schema_version != CHECKPOINT_SCHEMA {
            return Err(StateError::UnsupportedSchema(
                "unsupported registry checkpoint schema; this release reads \
                 keyregistry.openbao-kms/checkpoint/v1alpha1",
            ));
        }
        if raw.generation == 0 {
            return Err(StateError::CorruptCheckpoint(
                "generation must be at least 1",
            ));
        }
        let current_hash = StateHash::parse(&raw.current_hash)
            .map_err(|_| StateError::CorruptCheckpoint("currentHash is not a krs1. state hash"))?;
        let checkpoint = Self {
            generation: raw.generation,
            current_hash,
        };
        if checkpoint.encode().as_bytes() != bytes {
            return Err(StateError::NotCanonical(Document::Checkpoint));
        }
        Ok(checkpoint)
    }

    /// Decides whether `state` may be loaded under this checkpoint.
    ///
    /// # Errors
    /// [`StateError::Rollback`] for an older state, a state more than one generation ahead, a
    /// state of the same generation with another hash, or a successor that does not chain onto
    /// the checkpoint's hash.
    pub fn admit(&self, state: &StateFile) -> Result<CheckpointStatus, StateError> {
        let generation = state.generation();
        if generation < self.generation {
            return Err(StateError::Rollback("state is older than its checkpoint"));
        }
        if generation == self.generation {
            return if state.current_hash() == &self.current_hash {
                Ok(CheckpointStatus::Current)
            } else {
                Err(StateError::Rollback(
                    "state and checkpoint have the same generation but different hashes",
                ))
            };
        }
        // `generation > self.generation >= 1` here, so the subtraction cannot underflow.
        if generation - 1 != self.generation {
            return Err(StateError::Rollback(
                "state skips generations past its checkpoint",
            ));
        }
        if state.previous_hash() != Some(&self.current_hash) {
            return Err(StateError::Rollback(
                "state does not chain onto its checkpoint",
            ));
        }
        Ok(CheckpointStatus::Behind)
    }
}

/// The load-time decision over what was found on disk.
///
/// # Errors
/// [`StateError::Rollback`] when a checkpoint exists without a state (fail closed: the state
/// was deleted or never restored with it), or when [`Checkpoint::admit`] refuses the state.
pub fn admit_loaded(
    state: Option<&StateFile>,
    checkpoint: Option<&Checkpoint>,
) -> Result<LoadVerdict, StateError> {
    match (state, checkpoint) {
        (None, None) => Ok(LoadVerdict::Fresh),
        (Some(_), None) => Ok(LoadVerdict::CheckpointMissing),
        (None, Some(_)) => Err(StateError::Rollback(
            "a checkpoint exists but the state is missing",
        )),
        (Some(state), Some(checkpoint)) => match checkpoint.admit(state)? {
            CheckpointStatus::Current => Ok(LoadVerdict::Current),
            CheckpointStatus::Behind => Ok(LoadVerdict::CheckpointBehind),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::test_support::golden_state;

    #[test]
    fn checkpoint_layout_is_pinned() {
        let state = golden_state();
        let expected = format!(
            "{{\n  \"schemaVersion\": \"keyregistry.openbao-kms/checkpoint/v1alpha1\",\n  \
             \"generation\": 1,\n  \"currentHash\": \"{}\"\n}}\n",
            state.current_hash()
        );
        let checkpoint = Checkpoint::for_state(&state);
        assert_eq!(checkpoint.encode(), expected);
        assert_eq!(Checkpoint::decode(expected.as_bytes()).unwrap(), checkpoint);
    }

    #[test]
    fn compact_or_padded_checkpoints_are_not_canonical() {
        let checkpoint = Checkpoint::for_state(&golden_state());
        let compact = GoValue::Object(vec![
            ("schemaVersion", GoValue::str(CHECKPOINT_SCHEMA)),
            ("generation", GoValue::Unsigned(1)),
            (
                "currentHash",
                GoValue::str(checkpoint.current_hash().as_str()),
            ),
        ])
        .to_compact();
        for text in [compact, checkpoint.encode().trim_end().to_owned()] {
            assert_eq!(
                Checkpoint::decode(text.as_bytes()),
                Err(StateError::NotCanonical(Document::Checkpoint))
            );
        }
    }

    #[test]
    fn zero_generation_and_other_schemas_are_refused() {
        let checkpoint = Checkpoint::for_state(&golden_state());
        let zero = checkpoint
            .encode()
            .replace("\"generation\": 1", "\"generation\": 0");
        assert!(matches!(
            Checkpoint::decode(zero.as_bytes()),
            Err(StateError::CorruptCheckpoint(_))
        ));
        let other = checkpoint
            .encode()
            .replace("checkpoint/v1alpha1", "checkpoint/v1alpha2");
        assert!(matches!(
            Checkpoint::decode(other.as_bytes()),
            Err(StateError::UnsupportedSchema(_))
        ));
    }
}
