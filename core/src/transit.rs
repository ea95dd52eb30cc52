//! Transit calls as plain data: what the core asks for and what comes back.
//!
//! No URLs, JSON or tokens live here; the runtime's HTTP client turns a [`TransitRequest`] into an
//! OpenBao call and the answer (or the failure, classified) into a [`TransitResponse`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::ciphertext::TransitCiphertext;
use crate::plaintext::Plaintext;
use crate::version::KeyVersion;

/// One call the core asks the runtime to make.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum TransitRequest {
    /// `GET <mount>/keys/<key>`.
    ReadKeyMetadata,
    /// `GET <mount>/config/keys`, for `disable_upsert`.
    ReadKeysConfig,
    /// `POST <mount>/encrypt/<key>` with an explicit version and AAD.
    Encrypt {
        /// The secret to encrypt.
        plaintext: Plaintext,
        /// The version to encrypt with; never left to Transit's "latest".
        key_version: KeyVersion,
        /// Padded standard base64 of the canonical AAD.
        associated_data: String,
    },
    /// `POST <mount>/decrypt/<key>` for one ciphertext.
    Decrypt {
        /// The ciphertext as Transit wrote it.
        ciphertext: TransitCiphertext,
        /// Padded standard base64 of the canonical AAD.
        associated_data: String,
    },
    /// `POST <mount>/decrypt/<key>` with `batch_input`: every item has its own AAD, and the
    /// results come back in order, each with its own outcome.
    BatchDecrypt {
        /// The items, in order.
        items: Vec<BatchDecryptItem>,
    },
    /// `POST sys/capabilities-self` for the given paths.
    CapabilitiesSelf {
        /// Paths relative to the OpenBao API root.
        paths: Vec<String>,
    },
}

impl TransitRequest {
    /// The operation name used in metrics and logs.
    pub fn operation(&self) -> TransitOperation {
        match self {
            Self::ReadKeyMetadata => TransitOperation::MetadataRead,
            Self::ReadKeysConfig => TransitOperation::DisableUpsertRead,
            Self::Encrypt { .. } => TransitOperation::Encrypt,
            Self::Decrypt { .. } => TransitOperation::Decrypt,
            Self::BatchDecrypt { .. } => TransitOperation::BatchDecrypt,
            Self::CapabilitiesSelf { .. } => TransitOperation::CapabilitiesSelf,
        }
    }
}

/// One item of a batch decrypt.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BatchDecryptItem {
    /// The ciphertext.
    pub ciphertext: TransitCiphertext,
    /// Padded standard base64 of the canonical AAD.
    pub associated_data: String,
}

/// The kinds of Transit call, named as in metrics (`transit_encrypt`, ...).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum TransitOperation {
    /// Key metadata read.
    MetadataRead,
    /// `config/keys` read.
    DisableUpsertRead,
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
    /// Batch decrypt.
    BatchDecrypt,
    /// Capabilities check.
    CapabilitiesSelf,
}

impl TransitOperation {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MetadataRead => "transit_metadata_read",
            Self::DisableUpsertRead => "transit_disable_upsert_read",
            Self::Encrypt => "transit_encrypt",
            Self::Decrypt => "transit_decrypt",
            Self::BatchDecrypt => "transit_batch_decrypt",
            Self::CapabilitiesSelf => "capabilities_self",
        }
    }
}

/// A successful Transit answer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum TransitResponse {
    /// Key metadata.
    KeyMetadata(KeyMetadata),
    /// The mount's `config/keys`.
    KeysConfig {
        /// Whether encrypt to a missing key is refused instead of creating it.
        disable_upsert: bool,
    },
    /// An encrypt result.
    Encrypted {
        /// The ciphertext text Transit returned.
        ciphertext: String,
        /// The version Transit says it used.
        key_version: u64,
    },
    /// A decrypt result.
    Decrypted {
        /// The recovered secret.
        plaintext: Plaintext,
    },
    /// Batch decrypt results, one per item and in item order.
    BatchDecrypted {
        /// Each item's outcome.
        results: Vec<Result<Plaintext, TransitFailure>>,
    },
    /// Capabilities per path.
    Capabilities {
        /// Path to the capabilities OpenBao reports for it.
        paths: BTreeMap<String, Vec<String>>,
    },
}

/// The key metadata fields the provider relies on (`GET <mount>/keys/<key>`).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct KeyMetadata {
    /// Key type; only `aes256-gcm96` is accepted.
    pub key_type: String,
    /// Newest version.
    pub latest_version: u64,
    /// Versions below this are trimmed.
    pub min_available_version: u64,
    /// Versions below this cannot decrypt.
    pub min_decryption_version: u64,
    /// Versions below this cannot encrypt; 0 means no restriction.
    pub min_encryption_version: u64,
    /// Version to creation time in whole Unix seconds.
    pub versions: BTreeMap<u64, i64>,
    /// Key derivation enabled.
    pub derived: bool,
    /// Convergent encryption enabled.
    pub convergent_encryption: bool,
    /// Key material can be exported.
    pub exportable: bool,
    /// Plaintext backup allowed.
    pub allow_plaintext_backup: bool,
    /// Key can be deleted.
    pub deletion_allowed: bool,
    /// Key was imported.
    pub imported_key: bool,
    /// Key is soft-deleted (OpenBao).
    pub soft_deleted: bool,
    /// Key supports encryption.
    pub supports_encryption: bool,
    /// Key supports decryption.
    pub supports_decryption: bool,
    /// Automatic rotation period; zero when off.
    pub auto_rotate_period: Duration,
}

/// A failed Transit call, classified; never carries secrets or raw backend text.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("{class}")]
pub struct TransitFailure {
    /// What kind of failure it was.
    pub class: FailureClass,
    /// The HTTP status, when there was one.
    pub http_status: Option<u16>,
    /// How long the server asked us to wait (429 `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl TransitFailure {
    /// A failure of the given class with no HTTP details.
    pub fn new(class: FailureClass) -> Self {
        Self {
            class,
            http_status: None,
            retry_after: None,
        }
    }
}

/// Failure classes of OpenBao calls; the names are the stable metric and log values.
///
/// Exhaustive on purpose: every mapping (gRPC code, metric label) must handle a new class.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum FailureClass {
    /// 400 other than an authentication failure of the ciphertext.
    InvalidRequest,
    /// 401.
    Unauthenticated,
    /// 403 after the one recovery retry.
    PermissionDenied,
    /// 404.
    NotFound,
    /// `cipher: message authentication failed` (wrong AAD or tampered ciphertext).
    DecryptFailed,
    /// A ciphertext version below `min_decryption_version`.
    VersionDisallowed,
    /// 429.
    RateLimited,
    /// OpenBao is sealed.
    Sealed,
    /// 5xx, redirect, oversize body, unexpected transport failure, malformed response.
    Unavailable,
    /// TLS handshake or verification failed.
    TlsFailed,
    /// Name resolution failed.
    DnsFailed,
    /// Connection refused or reset.
    ConnectionFailed,
    /// The per-request timeout elapsed.
    Timeout,
    /// Login or token acquisition failed.
    AuthFailed,
}

impl FailureClass {
    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::DecryptFailed => "decrypt_failed",
            Self::VersionDisallowed => "version_disallowed",
            Self::RateLimited => "rate_limited",
            Self::Sealed => "sealed",
            Self::Unavailable => "unavailable",
            Self::TlsFailed => "tls_failed",
            Self::DnsFailed => "dns_failed",
            Self::ConnectionFailed => "connection_failed",
            Self::Timeout => "timeout",
            Self::AuthFailed => "auth_failed",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
