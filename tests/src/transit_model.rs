//! A sans-IO model of one OpenBao Transit key.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bao_kms_core::transit::{BatchDecryptItem, TransitOperation};
use bao_kms_core::{
    FailureClass, KeyMetadata, Plaintext, TransitFailure, TransitRequest, TransitResponse,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// One Transit key and its mount, modelled closely enough to exercise every provider path.
#[derive(Clone, Debug)]
pub struct TransitModel {
    seed: u64,
    /// Version to creation time (Unix seconds).
    versions: BTreeMap<u64, i64>,
    /// Newest version.
    pub latest_version: u64,
    /// Versions below this cannot decrypt (and are not listed in metadata).
    pub min_decryption_version: u64,
    /// Versions below this cannot encrypt; 0 means no restriction.
    pub min_encryption_version: u64,
    /// Versions below this are trimmed.
    pub min_available_version: u64,
    /// The mount refuses to create keys on encrypt.
    pub disable_upsert: bool,
    /// The key is soft-deleted.
    pub soft_deleted: bool,
    /// The key is exportable (a profile finding).
    pub exportable: bool,
    /// While set, every call fails with this class (an outage).
    pub outage: Option<FailureClass>,
    /// Failures for the next calls, in order.
    pub injected: VecDeque<FailureClass>,
    nonces: u64,
    calls: BTreeMap<TransitOperation, u64>,
}

impl TransitModel {
    /// A fresh key: version 1 created at `created_unix`.
    pub fn new(seed: u64, created_unix: i64) -> Self {
        Self {
            seed,
            versions: BTreeMap::from([(1, created_unix)]),
            latest_version: 1,
            min_decryption_version: 1,
            min_encryption_version: 0,
            min_available_version: 0,
            disable_upsert: true,
            soft_deleted: false,
            exportable: false,
            outage: None,
            injected: VecDeque::new(),
            nonces: 0,
            calls: BTreeMap::new(),
        }
    }

    /// Rotates the key: a new latest version created at `now_unix`.
    pub fn rotate(&mut self, now_unix: i64) -> u64 {
        self.latest_version += 1;
        self.versions.insert(self.latest_version, now_unix);
        self.latest_version
    }

    /// Simulates a restore of an older key state: `latest_version` goes back.
    pub fn roll_back_to(&mut self, version: u64) {
        self.versions.retain(|v, _| *v <= version);
        self.latest_version = version;
    }

    /// How many calls of each kind were served (or failed).
    pub fn calls(&self, operation: TransitOperation) -> u64 {
        self.calls.get(&operation).copied().unwrap_or(0)
    }

    /// Total calls of every kind.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Serves one request.
    ///
    /// # Errors
    /// The classified failure OpenBao would return.
    pub fn execute(&mut self, request: &TransitRequest) -> Result<TransitResponse, TransitFailure> {
        *self.calls.entry(request.operation()).or_insert(0) += 1;
        if let Some(class) = self.outage.or_else(|| self.injected.pop_front()) {
            return Err(TransitFailure::new(class));
        }
        match request {
            TransitRequest::ReadKeyMetadata => Ok(TransitResponse::KeyMetadata(self.metadata())),
            TransitRequest::ReadKeysConfig => Ok(TransitResponse::KeysConfig {
                disable_upsert: self.disable_upsert,
            }),
            TransitRequest::Encrypt {
                plaintext,
                key_version,
                associated_data,
            } => {
                let version = u64::from(key_version.get());
                let ciphertext = self.encrypt(plaintext, version, associated_data)?;
                Ok(TransitResponse::Encrypted {
                    ciphertext,
                    key_version: version,
                })
            }
            TransitRequest::Decrypt {
                ciphertext,
                associated_data,
            } => {
                let plaintext = self.decrypt(ciphertext.as_str(), associated_data)?;
                Ok(TransitResponse::Decrypted { plaintext })
            }
            TransitRequest::BatchDecrypt { items } => {
                let results = items
                    .iter()
                    .map(
                        |BatchDecryptItem {
                             ciphertext,
                             associated_data,
                         }| {
                            self.decrypt(ciphertext.as_str(), associated_data)
                        },
                    )
                    .collect();
                Ok(TransitResponse::BatchDecrypted { results })
            }
            TransitRequest::CapabilitiesSelf { paths } => Ok(TransitResponse::Capabilities {
                paths: paths
                    .iter()
                    .map(|path| (path.clone(), vec!["update".into()]))
                    .collect(),
            }),
        }
    }

    /// The metadata OpenBao reports: versions below `min_decryption_version` are not listed.
    pub fn metadata(&self) -> KeyMetadata {
        let listed = self
            .versions
            .iter()
            .filter(|(version, _)| **version >= self.min_decryption_version)
            .map(|(version, created)| (*version, *created))
            .collect();
        KeyMetadata {
            key_type: "aes256-gcm96".into(),
            latest_version: self.latest_version,
            min_available_version: self.min_available_version,
            min_decryption_version: self.min_decryption_version,
            min_encryption_version: self.min_encryption_version,
            versions: listed,
            exportable: self.exportable,
            soft_deleted: self.soft_deleted,
            supports_encryption: true,
            supports_decryption: true,
            auto_rotate_period: Duration::ZERO,
            ..KeyMetadata::default()
        }
    }

    fn encrypt(
        &mut self,
        plaintext: &Plaintext,
        version: u64,
        associated_data: &str,
    ) -> Result<String, TransitFailure> {
        let allowed = version <= self.latest_version
            && version >= self.min_encryption_version
            && version >= self.min_decryption_version;
        if !allowed {
            return Err(TransitFailure::new(FailureClass::InvalidRequest));
        }
        let aad = STANDARD
            .decode(associated_data)
            .map_err(|_| TransitFailure::new(FailureClass::Unavailable))?;
        self.nonces += 1;
        let nonce_bytes = self.derive(b"nonce", self.nonces);
        let nonce = Nonce::from_slice(&nonce_bytes[..12]);
        let sealed = self
            .cipher(version)
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext.expose(),
                    aad: &aad,
                },
            )
            .map_err(|_| TransitFailure::new(FailureClass::Unavailable))?;
        let mut payload = nonce_bytes[..12].to_vec();
        payload.extend_from_slice(&sealed);
        Ok(format!("vault:v{version}:{}", STANDARD.encode(payload)))
    }

    fn decrypt(
        &self,
        ciphertext: &str,
        associated_data: &str,
    ) -> Result<Plaintext, TransitFailure> {
        let invalid = || TransitFailure::new(FailureClass::InvalidRequest);
        let rest = ciphertext.strip_prefix("vault:v").ok_or_else(invalid)?;
        let (digits, body) = rest.split_once(':').ok_or_else(invalid)?;
        let version: u64 = digits.parse().map_err(|_| invalid())?;
        if version > self.latest_version {
            return Err(invalid());
        }
        if version < self.min_decryption_version || version < self.min_available_version {
            return Err(TransitFailure::new(FailureClass::VersionDisallowed));
        }
        let payload = STANDARD.decode(body).map_err(|_| invalid())?;
        if payload.len() < 28 {
            return Err(invalid());
        }
        let aad = STANDARD.decode(associated_data).map_err(|_| invalid())?;
        let (nonce, sealed) = payload.split_at(12);
        let opened = self
            .cipher(version)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| TransitFailure::new(FailureClass::DecryptFailed))?;
        Ok(Plaintext::new(opened))
    }

    fn cipher(&self, version: u64) -> Aes256Gcm {
        let key = self.derive(b"key", version);
        // A 32-byte key always fits AES-256.
        Aes256Gcm::new_from_slice(&key).unwrap_or_else(|_| unreachable!("32-byte key"))
    }

    fn derive(&self, label: &[u8], counter: u64) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.seed.to_le_bytes());
        hasher.update(label);
        hasher.update(counter.to_le_bytes());
        hasher.finalize().into()
    }
}
