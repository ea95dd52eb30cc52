//! A kube-apiserver stand-in that talks real gRPC to a KMS v2 plugin over its Unix socket.
//!
//! It does towards the plugin what kube-apiserver's KMS v2 envelope code does:
//!
//! - every call carries the apiserver's default deadline of 3 s ([`CALL_TIMEOUT`]);
//! - [`KubeApiserver::poll_status`] calls Status, requires `version == "v2"` (and the same
//!   version on every later answer) and counts the answer healthy only when `healthz == "ok"` and
//!   the key_id is non-empty and at most 1024 bytes;
//! - [`KubeApiserver::ensure_write_seed`] polls Status and, whenever a healthy Status names a
//!   key_id different from the one of the current write seed, generates a fresh 32-byte seed,
//!   encrypts it, checks the answer against every protocol limit (ciphertext, key_id,
//!   annotation keys and total annotation size) and accepts it only if the Encrypt key_id equals
//!   the Status key_id, as kube-apiserver's `rotateDEKOnKeyIDChange` does;
//! - every accepted seed is kept, as etcd would keep it, and [`KubeApiserver::decrypt_all`]
//!   decrypts all of them again (as after an apiserver restart) and compares the plaintexts.
//!
//! Every healthy Status key_id change is recorded in [`KubeApiserver::status_history`] so a test
//! can check that a rotation moved the key_id exactly once and never back. Errors carry the gRPC
//! code of the plugin's answer ([`ApiserverError::code`]).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bao_kms_core::annotations::is_fully_qualified_domain_name;
use bao_kms_core::limits::{MAX_ANNOTATIONS_BYTES, MAX_CIPHERTEXT_BYTES, MAX_KEY_ID_BYTES};
use bao_kms_proto::{
    API_VERSION, DecryptRequest, EncryptRequest, EncryptResponse, HEALTHZ_OK,
    KeyManagementServiceClient, StatusRequest, StatusResponse,
};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

/// kube-apiserver's default deadline for every KMS call (`kms.timeout` in the
/// EncryptionConfiguration defaults to 3 s).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Size of a DEK seed, what kube-apiserver sends to Encrypt.
pub const SEED_BYTES: usize = 32;

/// Distinguishes the seeds of several stand-ins in one process.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// The KMS method an error came from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Method {
    /// `Status`.
    Status,
    /// `Encrypt`.
    Encrypt,
    /// `Decrypt`.
    Decrypt,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Status => "Status",
            Self::Encrypt => "Encrypt",
            Self::Decrypt => "Decrypt",
        })
    }
}

/// Why a call or a check failed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ApiserverError {
    /// The socket could not be reached.
    Connect(String),
    /// The plugin answered with a gRPC error, or the deadline passed (`DeadlineExceeded`).
    Rpc {
        /// The method called.
        method: Method,
        /// The gRPC code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// An answer breaks the KMS v2 protocol (a limit, the API version).
    Protocol(String),
    /// Encrypt answered with a key_id different from the Status key_id.
    KeyIdMismatch {
        /// The key_id Status reported.
        status_key_id: String,
        /// The key_id Encrypt answered with.
        encrypt_key_id: String,
    },
    /// Decrypt gave back something other than the stored seed.
    PlaintextMismatch {
        /// The index of the seed in [`KubeApiserver::stored`].
        index: usize,
    },
}

impl ApiserverError {
    /// The gRPC code, when the plugin answered with an error (or the deadline passed).
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            Self::Connect(_)
            | Self::Protocol(_)
            | Self::KeyIdMismatch { .. }
            | Self::PlaintextMismatch { .. } => None,
        }
    }
}

impl fmt::Display for ApiserverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "cannot connect to the plugin: {error}"),
            Self::Rpc {
                method,
                code,
                message,
            } => write!(f, "{method} failed with {code:?}: {message}"),
            Self::Protocol(what) => write!(f, "protocol violation: {what}"),
            Self::KeyIdMismatch {
                status_key_id,
                encrypt_key_id,
            } => write!(
                f,
                "Encrypt key_id {encrypt_key_id} differs from Status key_id {status_key_id}"
            ),
            Self::PlaintextMismatch { index } => {
                write!(
                    f,
                    "Decrypt of stored seed {index} returned a different seed"
                )
            }
        }
    }
}

impl std::error::Error for ApiserverError {}

/// One Status answer as kube-apiserver judges it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StatusObservation {
    /// `version`.
    pub version: String,
    /// `healthz`.
    pub healthz: String,
    /// `key_id`.
    pub key_id: String,
    /// Whether kube-apiserver counts the answer as healthy.
    pub healthy: bool,
}

/// One encrypted seed as etcd would hold it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StoredSeed {
    /// The seed itself (what Decrypt must give back).
    pub seed: Vec<u8>,
    /// The plugin's ciphertext.
    pub ciphertext: Vec<u8>,
    /// The key_id from Encrypt.
    pub key_id: String,
    /// The annotations from Encrypt.
    pub annotations: BTreeMap<String, Vec<u8>>,
}

impl StoredSeed {
    /// The Decrypt request kube-apiserver would send for this seed.
    pub fn decrypt_request(&self, uid: impl Into<String>) -> DecryptRequest {
        DecryptRequest {
            ciphertext: self.ciphertext.clone(),
            uid: uid.into(),
            key_id: self.key_id.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// What one [`KubeApiserver::ensure_write_seed`] did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum WriteSeed {
    /// Status was unhealthy: the current seed (if any) is kept, as kube-apiserver does.
    Unhealthy(StatusObservation),
    /// The current seed already belongs to the Status key_id.
    Current,
    /// A new seed was encrypted under the Status key_id and stored at this index.
    Written(usize),
}

/// The stand-in: one gRPC channel to the plugin plus the seeds written through it.
#[derive(Debug)]
pub struct KubeApiserver {
    socket: PathBuf,
    client: KeyManagementServiceClient<Channel>,
    instance: u64,
    seeds: u64,
    requests: u64,
    first_version: Option<String>,
    current: Option<usize>,
    stored: Vec<StoredSeed>,
    status_history: Vec<String>,
}

impl KubeApiserver {
    /// Connects to the plugin's Unix socket.
    ///
    /// # Errors
    /// [`ApiserverError::Connect`] when the socket cannot be reached.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, ApiserverError> {
        let socket = socket.as_ref().to_path_buf();
        let client = dial(&socket).await?;
        Ok(Self {
            socket,
            client,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            seeds: 0,
            requests: 0,
            first_version: None,
            current: None,
            stored: Vec::new(),
            status_history: Vec::new(),
        })
    }

    /// Opens a new connection to the same socket, keeping every stored seed (a plugin restart
    /// seen from an apiserver that keeps running).
    ///
    /// # Errors
    /// [`ApiserverError::Connect`] when the socket cannot be reached.
    pub async fn reconnect(&mut self) -> Result<(), ApiserverError> {
        self.client = dial(&self.socket).await?;
        Ok(())
    }

    /// Every seed written so far, oldest first.
    pub fn stored(&self) -> &[StoredSeed] {
        &self.stored
    }

    /// The current write seed.
    pub fn current_seed(&self) -> Option<&StoredSeed> {
        self.current.and_then(|index| self.stored.get(index))
    }

    /// Every healthy Status key_id, in order, recorded whenever it differed from the previous
    /// one. A rotation adds exactly one entry; a flip-flop adds more.
    pub fn status_history(&self) -> &[String] {
        &self.status_history
    }

    /// One Status call, judged as kube-apiserver judges it.
    ///
    /// # Errors
    /// The plugin's gRPC error, or [`ApiserverError::Protocol`] when `version` is not `v2` or
    /// changed since the first answer.
    pub async fn poll_status(&mut self) -> Result<StatusObservation, ApiserverError> {
        let answer = self.status().await?;
        if answer.version != API_VERSION {
            return Err(ApiserverError::Protocol(format!(
                "Status version {:?} is not {API_VERSION:?}",
                answer.version
            )));
        }
        match &self.first_version {
            Some(first) if *first != answer.version => {
                return Err(ApiserverError::Protocol(format!(
                    "Status version changed from {first:?} to {:?}",
                    answer.version
                )));
            }
            Some(_) => {}
            None => self.first_version = Some(answer.version.clone()),
        }
        let healthy = answer.healthz == HEALTHZ_OK
            && !answer.key_id.is_empty()
            && answer.key_id.len() <= MAX_KEY_ID_BYTES;
        if healthy && self.status_history.last() != Some(&answer.key_id) {
            self.status_history.push(answer.key_id.clone());
        }
        Ok(StatusObservation {
            version: answer.version,
            healthz: answer.healthz,
            key_id: answer.key_id,
            healthy,
        })
    }

    /// One Status poll and, when a healthy Status names a key_id other than the current
    /// seed's, a fresh seed encrypted under it (kube-apiserver's DEK seed rotation).
    ///
    /// # Errors
    /// The plugin's gRPC error, a protocol violation of the Encrypt answer, or
    /// [`ApiserverError::KeyIdMismatch`]. On any error the current seed is kept.
    pub async fn ensure_write_seed(&mut self) -> Result<WriteSeed, ApiserverError> {
        let status = self.poll_status().await?;
        if !status.healthy {
            return Ok(WriteSeed::Unhealthy(status));
        }
        if self
            .current_seed()
            .is_some_and(|seed| seed.key_id == status.key_id)
        {
            return Ok(WriteSeed::Current);
        }
        let seed = self.next_seed();
        let answer = self.encrypt(seed.clone()).await?;
        check_encrypt_limits(&answer)?;
        if answer.key_id != status.key_id {
            return Err(ApiserverError::KeyIdMismatch {
                status_key_id: status.key_id,
                encrypt_key_id: answer.key_id,
            });
        }
        self.stored.push(StoredSeed {
            seed,
            ciphertext: answer.ciphertext,
            key_id: answer.key_id,
            annotations: answer.annotations,
        });
        let index = self.stored.len() - 1;
        self.current = Some(index);
        Ok(WriteSeed::Written(index))
    }

    /// Decrypts every stored seed and compares it with the original; returns how many.
    ///
    /// # Errors
    /// The first failure: the plugin's gRPC error or [`ApiserverError::PlaintextMismatch`].
    pub async fn decrypt_all(&mut self) -> Result<usize, ApiserverError> {
        for index in 0..self.stored.len() {
            let seed = self.stored[index].clone();
            let uid = self.next_uid();
            let plaintext = self.decrypt(seed.decrypt_request(uid)).await?;
            if plaintext != seed.seed {
                return Err(ApiserverError::PlaintextMismatch { index });
            }
        }
        Ok(self.stored.len())
    }

    /// A raw Status call (no judgement, no history).
    ///
    /// # Errors
    /// The plugin's gRPC error.
    pub async fn status(&self) -> Result<StatusResponse, ApiserverError> {
        let mut client = self.client.clone();
        call(Method::Status, client.status(request(StatusRequest {}))).await
    }

    /// A raw Encrypt call (no limit checks, nothing stored).
    ///
    /// # Errors
    /// The plugin's gRPC error.
    pub async fn encrypt(&mut self, plaintext: Vec<u8>) -> Result<EncryptResponse, ApiserverError> {
        let uid = self.next_uid();
        let mut client = self.client.clone();
        call(
            Method::Encrypt,
            client.encrypt(request(EncryptRequest { plaintext, uid })),
        )
        .await
    }

    /// A raw Decrypt call; returns the plaintext.
    ///
    /// # Errors
    /// The plugin's gRPC error.
    pub async fn decrypt(&self, decrypt: DecryptRequest) -> Result<Vec<u8>, ApiserverError> {
        let mut client = self.client.clone();
        call(Method::Decrypt, client.decrypt(request(decrypt)))
            .await
            .map(|answer| answer.plaintext)
    }

    /// A request uid, unique within this stand-in (kube-apiserver sends a random UUID).
    pub fn next_uid(&mut self) -> String {
        self.requests += 1;
        format!("kube-apiserver-{}-{}", self.instance, self.requests)
    }

    /// A fresh, random-looking 32-byte seed, derived from a counter.
    fn next_seed(&mut self) -> Vec<u8> {
        self.seeds += 1;
        let label = format!(
            "dek-seed/{}/{}/{}",
            std::process::id(),
            self.instance,
            self.seeds
        );
        let seed = Sha256::digest(label.as_bytes()).to_vec();
        debug_assert_eq!(seed.len(), SEED_BYTES);
        seed
    }
}

/// Checks an Encrypt answer against every limit kube-apiserver enforces
/// (`ValidateEncryptedObject`): ciphertext and key_id non-empty and at most 1024 bytes, every
/// annotation key a fully qualified domain name, keys and values together at most 32 KiB.
///
/// # Errors
/// [`ApiserverError::Protocol`] naming the broken limit.
pub fn check_encrypt_limits(answer: &EncryptResponse) -> Result<(), ApiserverError> {
    let violation = |what: String| Err(ApiserverError::Protocol(what));
    if answer.ciphertext.is_empty() {
        return violation("Encrypt ciphertext is empty".into());
    }
    if answer.ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return violation(format!(
            "Encrypt ciphertext has {} bytes, more than {MAX_CIPHERTEXT_BYTES}",
            answer.ciphertext.len()
        ));
    }
    if answer.key_id.is_empty() {
        return violation("Encrypt key_id is empty".into());
    }
    if answer.key_id.len() > MAX_KEY_ID_BYTES {
        return violation(format!(
            "Encrypt key_id has {} bytes, more than {MAX_KEY_ID_BYTES}",
            answer.key_id.len()
        ));
    }
    if let Some(key) = answer
        .annotations
        .keys()
        .find(|key| !is_fully_qualified_domain_name(key))
    {
        return violation(format!(
            "annotation key {key:?} is not a fully qualified domain name"
        ));
    }
    let total: usize = answer
        .annotations
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if total > MAX_ANNOTATIONS_BYTES {
        return violation(format!(
            "annotations have {total} bytes, more than {MAX_ANNOTATIONS_BYTES}"
        ));
    }
    Ok(())
}

/// A gRPC client over the plugin's Unix socket, as kube-apiserver dials it (the URI is required
/// by tonic but unused). Tests that need their own deadlines use it directly.
///
/// # Errors
/// [`ApiserverError::Connect`] when the socket cannot be reached within the call timeout.
pub async fn dial(socket: &Path) -> Result<KeyManagementServiceClient<Channel>, ApiserverError> {
    let socket = socket.to_path_buf();
    let endpoint = Endpoint::try_from("http://[::]:50051")
        .map_err(|error| ApiserverError::Connect(error.to_string()))?
        .connect_timeout(CALL_TIMEOUT);
    let channel = tokio::time::timeout(
        CALL_TIMEOUT,
        endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        })),
    )
    .await
    .map_err(|_| ApiserverError::Connect("timed out".into()))?
    .map_err(|error| ApiserverError::Connect(format!("{error:?}")))?;
    Ok(KeyManagementServiceClient::new(channel))
}

/// A request carrying the apiserver's deadline (sent as `grpc-timeout`).
fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// Runs one call under the deadline, also enforced on this side.
async fn call<T>(
    method: Method,
    future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ApiserverError> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(ApiserverError::Rpc {
            method,
            code: status.code(),
            message: status.message().to_owned(),
        }),
        Err(_) => Err(ApiserverError::Rpc {
            method,
            code: Code::DeadlineExceeded,
            message: format!("no answer within {CALL_TIMEOUT:?}"),
        }),
    }
}
