//! The provider's inputs and outputs: facts in, effects out.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::key_id::KeyId;
use crate::plaintext::Plaintext;
use crate::refusal::Refusal;
use crate::rotation::BootstrapRefusal;
use crate::transit::{
    FailureClass, TransitFailure, TransitOperation, TransitRequest, TransitResponse,
};
use crate::version::KeyVersion;

/// Identifies one KMS request; chosen by the runtime, unique among requests in flight.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct RequestId(pub u64);

/// Identifies one Transit call the core asked for.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct CallId(pub(crate) u64);

/// Identifies one state write the core asked for.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct WriteId(pub(crate) u64);

/// A KMS v2 request, as plain data taken from the gRPC message.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum KmsRequest {
    /// `Status`.
    Status,
    /// `Encrypt`.
    Encrypt {
        /// The DEK seed to encrypt.
        plaintext: Plaintext,
    },
    /// `Decrypt`, unvalidated: the core checks every field before it calls Transit.
    Decrypt {
        /// The stored ciphertext.
        ciphertext: Vec<u8>,
        /// The stored key_id.
        key_id: String,
        /// The stored annotations.
        annotations: BTreeMap<String, Vec<u8>>,
    },
}

impl KmsRequest {
    /// The KMS method.
    pub fn method(&self) -> KmsMethod {
        match self {
            Self::Status => KmsMethod::Status,
            Self::Encrypt { .. } => KmsMethod::Encrypt,
            Self::Decrypt { .. } => KmsMethod::Decrypt,
        }
    }
}

/// The three KMS methods.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum KmsMethod {
    /// Status.
    Status,
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
}

impl KmsMethod {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
        }
    }
}

/// A successful KMS answer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum KmsResponse {
    /// The cached status: `key_id` is present exactly when healthy.
    Status {
        /// The active key_id when healthy.
        key_id: Option<KeyId>,
    },
    /// An encrypted seed.
    Encrypted {
        /// Transit's ciphertext bytes.
        ciphertext: Vec<u8>,
        /// The key_id the seed was encrypted under.
        key_id: KeyId,
        /// The annotations kube-apiserver must store and return on Decrypt.
        annotations: BTreeMap<String, Vec<u8>>,
    },
    /// A decrypted seed.
    Decrypted {
        /// The seed.
        plaintext: Plaintext,
    },
}

/// Facts the runtime reports to the core.
#[derive(Debug)]
pub enum Input {
    /// A KMS request arrived; it must be answered by `deadline`.
    Request {
        /// The runtime's id for it.
        id: RequestId,
        /// When the caller stops waiting.
        deadline: Instant,
        /// The request.
        request: KmsRequest,
    },
    /// The caller went away; no answer is needed any more.
    RequestCancelled {
        /// The request.
        id: RequestId,
    },
    /// A Transit call finished.
    TransitCompleted {
        /// The call.
        call: CallId,
        /// Its outcome.
        result: Result<TransitResponse, TransitFailure>,
        /// Wall-clock time (Unix seconds) when the answer arrived; recorded in the registry,
        /// never used to measure durations.
        wall_clock_unix: i64,
    },
    /// A state write finished.
    StateSaved {
        /// The write.
        write: WriteId,
        /// Whether both files are durably on disk.
        result: Result<(), SaveFailure>,
    },
    /// Stop: refuse new requests and answer waiting ones.
    Shutdown,
    /// A deadline the core asked for has passed.
    Timeout,
}

/// A failed state write; the cause is logged by the runtime, the core only needs the fact.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("registry state write failed")]
pub struct SaveFailure;

/// Effects the core asks the runtime to carry out.
#[derive(Debug)]
pub enum Output {
    /// Make a Transit call and report it back with [`Input::TransitCompleted`].
    CallTransit {
        /// The call's id.
        call: CallId,
        /// When the core stops waiting for it.
        deadline: Instant,
        /// The call.
        request: TransitRequest,
    },
    /// Write the state file, then the checkpoint (each atomically and durably), and report
    /// back with [`Input::StateSaved`].
    SaveState {
        /// The write's id.
        write: WriteId,
        /// Bytes of the state file.
        state: String,
        /// Bytes of the checkpoint file.
        checkpoint: String,
    },
    /// Answer a KMS request.
    Respond {
        /// The request.
        id: RequestId,
        /// The answer.
        response: Result<KmsResponse, Refusal>,
    },
    /// Something worth a log line or a metric happened.
    Event(Event),
    /// Call [`Input::Timeout`] at this instant (or earlier, on any other input).
    Timeout(Instant),
}

/// Things that happened, for logs and metrics.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A new Transit version was recorded as a candidate.
    KeyObserved {
        /// Its version.
        version: KeyVersion,
        /// Its key_id.
        key_id: KeyId,
    },
    /// A candidate became the active key.
    KeyPromoted {
        /// The previous active key_id.
        previous_key_id: KeyId,
        /// The previous active version.
        previous_version: KeyVersion,
        /// The new active key_id.
        key_id: KeyId,
        /// The new active version.
        version: KeyVersion,
    },
    /// A registry generation was saved and is now in use.
    RegistryPublished {
        /// Its generation.
        generation: u64,
    },
    /// Status changed between healthy and unhealthy.
    HealthChanged {
        /// Whether Status is healthy now.
        healthy: bool,
    },
    /// A probe finished.
    ProbeFinished {
        /// Which probe.
        kind: ProbeKind,
        /// `None` on success, else the failure class.
        failure: Option<&'static str>,
    },
    /// A state write failed; it is retried with the same bytes.
    StateSaveFailed,
    /// No registry exists and Transit's key cannot seed one.
    BootstrapRefused(BootstrapRefusal),
    /// The wall clock went backwards; recorded timestamps keep their order.
    ClockRegressed {
        /// By how many seconds.
        seconds: i64,
    },
    /// A Decrypt named an unknown key_id and discovery started.
    DiscoveryStarted,
    /// A Transit call failed transiently and will be sent again after a backoff.
    TransitRetried {
        /// The call's operation.
        operation: TransitOperation,
        /// The failure that is retried.
        class: FailureClass,
    },
    /// A Transit call failed transiently, but no retry fits in its deadline or attempts.
    TransitRetriesExhausted {
        /// The call's operation.
        operation: TransitOperation,
        /// The last failure.
        class: FailureClass,
    },
}

/// The two probes.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum ProbeKind {
    /// `config/keys` plus key metadata.
    Metadata,
    /// An encrypt/decrypt round trip with the active version.
    Deep,
}

impl ProbeKind {
    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metadata => "metadata",
            Self::Deep => "deep",
        }
    }
}
