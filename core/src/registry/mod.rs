//! The key registry as persisted: wire-format-v1 state file and checkpoint, and the rules for
//! moving from one generation to the next.
//!
//! The state file (`keyregistry.openbao-kms/v1alpha2`) lists every Transit version the provider
//! knows with its key_id and lifecycle state ([`SnapshotState`]). Each save is a new generation
//! whose `previousHash` names the one before, and a separate [`Checkpoint`] remembers the last
//! saved generation so that a restored older copy of the state is detected ([`admit_loaded`]).
//!
//! Both files are byte-compatible with the Go provider: [`StateFile::encode`] reproduces Go's
//! `json.Encoder` output (two-space indent, final newline, Go string escaping) and the `krs1.`
//! hash is taken over Go's compact `json.Marshal` form. Decoding is stricter than Go's: the bytes
//! must be exactly the canonical encoding of their content.
//!
//! Nothing here reads files or clocks. [`transition`] says which successor states are allowed,
//! [`operator`] builds the states of the retire and restore commands.

mod checkpoint;
mod error;
mod hash;
pub mod operator;
mod record;
mod state_file;
pub mod transition;
mod wire;

#[cfg(test)]
mod test_support;

pub use checkpoint::{CHECKPOINT_SCHEMA, Checkpoint, CheckpointStatus, LoadVerdict, admit_loaded};
pub use error::{Document, StateError};
pub use hash::{StateHash, StateHashError};
pub use record::{AadMode, Observation, SnapshotState, StateRecord};
pub use state_file::{STATE_SCHEMA, StateFile};
