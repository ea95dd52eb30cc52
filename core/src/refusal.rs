//! Refusals: the policy outcomes a KMS request can end in, each with its stable error class.
//!
//! A refusal is an ordinary answer, not a bug. The runtime maps it to a gRPC status in exactly one
//! function; the messages here are what the caller sees and never contain secrets, paths, key
//! names or raw backend text.

use std::fmt;

use crate::transit::{FailureClass, TransitFailure};

/// Why a KMS request was not served.
///
/// Deliberately exhaustive: the runtime's single mapping to gRPC codes must be revisited
/// whenever a refusal is added.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Refusal {
    /// The request's deadline passed before it could be answered.
    DeadlineExceeded,
    /// The process is shutting down.
    ShuttingDown,
    /// Encrypt with an empty plaintext.
    PlaintextRequired,
    /// Encrypt with a plaintext whose ciphertext could not fit the protocol limit.
    PlaintextTooLarge,
    /// Decrypt with an empty ciphertext.
    CiphertextRequired,
    /// A request field exceeds a KMS v2 protocol limit.
    RequestLimitExceeded,
    /// The key_id is not a wire-format-v1 key_id.
    KeyIdMalformed,
    /// The annotations are malformed.
    AnnotationsInvalid,
    /// The annotations or the ciphertext prefix disagree with the key named by the key_id.
    AnnotationMismatch,
    /// The ciphertext is not a well-formed Transit ciphertext.
    CiphertextMalformed,
    /// The response would exceed a protocol limit.
    ResponseLimitExceeded,
    /// Too many requests of this method are in flight.
    ConcurrencyLimit,
    /// The key_id is well formed but not known, even after discovery.
    UnknownKeyId,
    /// Discovery of an unknown key_id failed.
    KeyMetadataRefreshFailed,
    /// Encrypt while the cached status is not healthy.
    StatusUnhealthy,
    /// Encrypt while no active key is usable (for example just after promotion, before the
    /// deep probe of the new key passed).
    ActiveKeyUnavailable,
    /// Transit answered with something that breaks its own contract.
    TransitResponseInvalid,
    /// The Transit call failed.
    Transit {
        /// The classified failure.
        failure: TransitFailure,
        /// Whether the call was an encrypt (messages differ).
        during: TransitStep,
    },
}

/// Which KMS step a Transit failure happened in.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TransitStep {
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
}

impl Refusal {
    /// The stable `error_class` for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::DeadlineExceeded => "timeout",
            Self::ShuttingDown => "shutting_down",
            Self::PlaintextRequired | Self::CiphertextRequired | Self::TransitResponseInvalid => {
                "unknown"
            }
            Self::PlaintextTooLarge | Self::RequestLimitExceeded | Self::ResponseLimitExceeded => {
                "protocol_limit"
            }
            Self::KeyIdMalformed => "key_id_malformed",
            Self::AnnotationsInvalid => "annotation_invalid",
            Self::AnnotationMismatch => "aad_mismatch",
            Self::CiphertextMalformed => "ciphertext_malformed",
            Self::ConcurrencyLimit => "concurrency_limit",
            Self::UnknownKeyId => "key_id_unknown",
            Self::KeyMetadataRefreshFailed => "key_metadata_refresh_failed",
            Self::StatusUnhealthy | Self::ActiveKeyUnavailable => "status_stale",
            Self::Transit { failure, .. } => transit_class(failure.class),
        }
    }

    /// The message the caller sees.
    pub fn message(&self) -> &'static str {
        match self {
            Self::DeadlineExceeded => "request timed out",
            Self::ShuttingDown => "provider shutting down",
            Self::PlaintextRequired => "plaintext is required",
            Self::PlaintextTooLarge | Self::RequestLimitExceeded => {
                "kms request exceeds protocol limits"
            }
            Self::CiphertextRequired => "ciphertext is required",
            Self::KeyIdMalformed => "key_id malformed",
            Self::AnnotationsInvalid => "annotations invalid",
            Self::AnnotationMismatch => "annotations do not match key snapshot",
            Self::CiphertextMalformed => "ciphertext malformed",
            Self::ResponseLimitExceeded => "kms response exceeds protocol limits",
            Self::ConcurrencyLimit => "kms request concurrency limit reached",
            Self::UnknownKeyId => "key_id unknown",
            Self::KeyMetadataRefreshFailed => "key metadata refresh failed",
            Self::StatusUnhealthy => "status unhealthy",
            Self::ActiveKeyUnavailable => "active key unavailable",
            Self::TransitResponseInvalid => "kms request failed",
            Self::Transit { failure, during } => transit_message(failure.class, *during),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

fn transit_class(class: FailureClass) -> &'static str {
    match class {
        FailureClass::Unauthenticated | FailureClass::AuthFailed => "auth_failed",
        FailureClass::PermissionDenied => "transit_policy_denied",
        FailureClass::NotFound => "transit_key_missing",
        FailureClass::InvalidRequest => "unknown",
        FailureClass::DecryptFailed => "aad_mismatch",
        FailureClass::VersionDisallowed => "transit_version_disallowed",
        FailureClass::RateLimited => "openbao_rate_limited",
        FailureClass::Sealed => "openbao_sealed",
        FailureClass::Unavailable => "openbao_unavailable",
        FailureClass::TlsFailed => "openbao_tls_failed",
        FailureClass::DnsFailed => "openbao_dns_failed",
        FailureClass::ConnectionFailed => "openbao_connection_failed",
        FailureClass::Timeout => "timeout",
    }
}

fn transit_message(class: FailureClass, during: TransitStep) -> &'static str {
    match class {
        FailureClass::Unauthenticated | FailureClass::AuthFailed => "transit authentication failed",
        FailureClass::PermissionDenied => "transit permission denied",
        FailureClass::NotFound => "transit key not found",
        FailureClass::InvalidRequest
        | FailureClass::DecryptFailed
        | FailureClass::VersionDisallowed => match during {
            TransitStep::Encrypt => "transit encrypt failed",
            TransitStep::Decrypt => "transit decrypt failed",
        },
        FailureClass::RateLimited => "transit rate limited",
        FailureClass::Timeout => "request timed out",
        FailureClass::Sealed
        | FailureClass::Unavailable
        | FailureClass::TlsFailed
        | FailureClass::DnsFailed
        | FailureClass::ConnectionFailed => "transit unavailable",
    }
}
