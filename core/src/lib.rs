//! The IO-free decision core of bao-kms-provider.
//!
//! Everything the provider decides lives here: the wire format v1 (key_id, annotations, AAD,
//! Transit ciphertext prefix, registry state file and checkpoint), the key registry and its
//! allowed transitions, the observed-rotation state machine, health, and the answers to Status,
//! Encrypt and Decrypt. The crate never touches a socket, a file, a clock or an entropy source:
//! time and randomness arrive as inputs, and IO leaves as effects the runtime executes.

pub mod aad;
pub mod annotations;
pub mod ciphertext;
pub mod compat;
pub mod config;
pub mod digest;
mod gojson;
pub mod health;
pub mod identity;
pub mod key_id;
pub mod limits;
pub mod plaintext;
pub mod profile;
pub mod provider;
pub mod refusal;
pub mod registry;
pub mod rotation;
pub mod transit;
pub mod version;

pub use aad::Aad;
pub use annotations::Annotations;
pub use ciphertext::TransitCiphertext;
pub use config::ProviderConfig;
pub use digest::IdentityDigest;
pub use identity::{Fingerprint, IdentityScope, IdentityValues, KeyScope};
pub use key_id::KeyId;
pub use plaintext::Plaintext;
pub use provider::{Input, KmsRequest, KmsResponse, Output, Provider, RequestId, StoredState};
pub use refusal::Refusal;
pub use registry::{Checkpoint, SnapshotState, StateError, StateFile, StateRecord};
pub use transit::{FailureClass, KeyMetadata, TransitFailure, TransitRequest, TransitResponse};
pub use version::KeyVersion;

#[cfg(test)]
mod test_support {
    use std::time::Instant;

    /// A starting instant for unit tests; the core itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn epoch() -> Instant {
        Instant::now()
    }
}
