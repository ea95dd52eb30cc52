//! The IO-free decision core of bao-kms-provider.
//!
//! Everything the provider decides lives here: the wire format v1 (key_id, annotations, AAD,
//! Transit ciphertext prefix, registry state file and checkpoint), the key registry and its
//! allowed transitions, the observed-rotation state machine, health, and the answers to Status,
//! Encrypt and Decrypt. The crate never touches a socket, a file, a clock or an entropy source:
//! time and randomness arrive as inputs, and IO leaves as effects the runtime executes.
//!
//! In scope: validation of everything kube-apiserver, OpenBao or the disk hands us; every policy
//! (promotion, health, refusals, limits, concurrency); the compatibility manifests.
//! Out of scope: gRPC, HTTP, TLS, tokens and authentication, file IO, process lifecycle — all in
//! `bao-kms-runtime-tokio`.
//!
//! # The run loop
//!
//! Build a [`Provider`], feed it facts with [`Provider::handle_input`], and after every input
//! drain [`Provider::poll_output`] until it returns [`Output::Timeout`]:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bao_kms_core::{IdentityScope, IdentityValues, Input, Output, Provider, ProviderConfig,
//!     StoredState, TransitRequest, TransitResponse};
//!
//! let identity = IdentityScope::new(IdentityValues {
//!     provider_name: "kms".into(), cluster_id: "c1".into(), openbao_instance_id: "bao".into(),
//!     transit_mount_id: "transit-1".into(), key_lineage_id: "lineage-1".into(),
//!     transit_mount_path: "transit".into(), transit_key_name: "kms-key".into(),
//!     ..IdentityValues::default()
//! }).expect("valid identity");
//! # #[allow(clippy::disallowed_methods)]
//! let now = Instant::now(); // the runtime's clock; the core only receives it
//! let config = ProviderConfig::with_defaults(identity, "v0.1.0");
//! // No state on disk yet: the provider will bootstrap from the first metadata probe.
//! let mut provider = Provider::new(config, now, &StoredState::default()).expect("starts");
//!
//! // The first effect is the metadata probe: read the mount's `config/keys`.
//! let Output::CallTransit { call, request, .. } = provider.poll_output() else { panic!() };
//! assert_eq!(request, TransitRequest::ReadKeysConfig);
//! provider.handle_input(now, Input::TransitCompleted {
//!     call,
//!     result: Ok(TransitResponse::KeysConfig { disable_upsert: true }),
//!     wall_clock_unix: 1_800_000_000,
//! });
//! // Next it reads the key metadata; a runtime would now make that HTTPS call.
//! let Output::CallTransit { request, .. } = provider.poll_output() else { panic!() };
//! assert_eq!(request, TransitRequest::ReadKeyMetadata);
//! ```
//!
//! # Key-version states
//!
//! ```text
//!   observed (latest > active) ──> PENDING ──(stable count + activation delay, saved)──> ACTIVE
//!   skipped or superseded versions ─────────────> RETIRED <──(next promotion)────────────┘
//!   RETIRED ──(operator retire-versions)──> REMOVED ──(operator restore-versions)──> RETIRED
//! ```
//!
//! ACTIVE serves Status and Encrypt; ACTIVE, PENDING and RETIRED decrypt; REMOVED never does.

pub mod aad;
pub mod annotations;
pub mod auth;
pub mod capabilities;
pub mod ciphertext;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod digest;
mod gojson;
pub mod grpc_timeout;
pub mod health;
pub mod identity;
pub mod key_id;
pub mod limits;
pub mod plaintext;
pub mod plan;
pub mod profile;
pub mod provider;
pub mod refusal;
pub mod registry;
pub mod rotation;
pub mod storage_scan;
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
