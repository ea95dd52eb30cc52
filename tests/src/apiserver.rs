//! A kube-apiserver emulator for the simulation.
//!
//! It behaves as kube-apiserver does towards a KMS v2 plugin: it polls Status, and whenever a
//! healthy Status reports a key_id different from the one of its current seed, it generates a
//! fresh 32-byte seed, encrypts it, checks the answer against every protocol limit and accepts
//! it only if the Encrypt key_id equals the Status key_id. It keeps every seed it wrote so that
//! all of them can be decrypted again later (as after an apiserver restart).

use std::collections::BTreeMap;

use bao_kms_core::annotations::is_fully_qualified_domain_name;
use bao_kms_core::limits::{MAX_ANNOTATIONS_BYTES, MAX_CIPHERTEXT_BYTES, MAX_KEY_ID_BYTES};
use bao_kms_core::{KmsRequest, KmsResponse, Plaintext, Refusal};
use sha2::{Digest, Sha256};

use crate::sim::Sim;

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
    /// Which node encrypted it.
    pub node: usize,
}

/// The emulated apiserver of one node.
#[derive(Debug, Default)]
pub struct ApiServer {
    /// The key_id of the current write seed.
    pub current_key_id: Option<String>,
    /// Every seed written.
    pub stored: Vec<StoredSeed>,
    /// Status key_ids seen, in order (for flip-flop checks).
    pub status_history: Vec<String>,
    seeds: u64,
}

/// Why an Encrypt answer would be rejected by kube-apiserver.
#[derive(Debug, Eq, PartialEq)]
pub enum Rejection {
    /// A protocol limit is broken.
    Limit(&'static str),
    /// Encrypt key_id differs from the Status key_id.
    KeyIdMismatch,
    /// The plugin refused.
    Refused(Refusal),
}

impl ApiServer {
    /// One Status poll of `node`; encrypts a fresh seed when the key_id changed.
    ///
    /// # Errors
    /// What kube-apiserver would reject about the Encrypt answer.
    pub fn poll(&mut self, sim: &mut Sim, node: usize) -> Result<(), Rejection> {
        let Some(key_id) = sim.status_key_id(node) else {
            return Ok(());
        };
        if key_id.is_empty() || key_id.len() > MAX_KEY_ID_BYTES {
            return Err(Rejection::Limit("status key_id"));
        }
        if self.status_history.last() != Some(&key_id) {
            self.status_history.push(key_id.clone());
        }
        if self.current_key_id.as_ref() == Some(&key_id) {
            return Ok(());
        }
        self.seeds += 1;
        let seed: Vec<u8> = Sha256::digest(format!("seed-{node}-{}", self.seeds)).to_vec();
        let answer = sim.call(
            node,
            KmsRequest::Encrypt {
                plaintext: Plaintext::new(seed.clone()),
            },
        );
        let (ciphertext, encrypt_key_id, annotations) = match answer {
            Ok(KmsResponse::Encrypted {
                ciphertext,
                key_id,
                annotations,
            }) => (ciphertext, key_id.to_string(), annotations),
            Ok(other) => panic!("Encrypt answered with {other:?}"),
            Err(refusal) => return Err(Rejection::Refused(refusal)),
        };
        check_limits(&ciphertext, &encrypt_key_id, &annotations)?;
        if encrypt_key_id != key_id {
            return Err(Rejection::KeyIdMismatch);
        }
        self.current_key_id = Some(key_id.clone());
        self.stored.push(StoredSeed {
            seed,
            ciphertext,
            key_id,
            annotations,
            node,
        });
        Ok(())
    }
}

/// Decrypts `seed` through `node` and checks the seed comes back.
///
/// # Errors
/// The plugin's refusal, or `None` inside when the plaintext differs.
pub fn decrypt(sim: &mut Sim, node: usize, seed: &StoredSeed) -> Result<(), Option<Refusal>> {
    let request = KmsRequest::Decrypt {
        ciphertext: seed.ciphertext.clone(),
        key_id: seed.key_id.clone(),
        annotations: seed.annotations.clone(),
    };
    match sim.call_waiting(node, request) {
        Ok(KmsResponse::Decrypted { plaintext }) if plaintext.expose() == seed.seed => Ok(()),
        Ok(_) => Err(None),
        Err(refusal) => Err(Some(refusal)),
    }
}

fn check_limits(
    ciphertext: &[u8],
    key_id: &str,
    annotations: &BTreeMap<String, Vec<u8>>,
) -> Result<(), Rejection> {
    if ciphertext.is_empty() || ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(Rejection::Limit("ciphertext"));
    }
    if key_id.is_empty() || key_id.len() > MAX_KEY_ID_BYTES {
        return Err(Rejection::Limit("key_id"));
    }
    let total: usize = annotations
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if total > MAX_ANNOTATIONS_BYTES {
        return Err(Rejection::Limit("annotations size"));
    }
    if !annotations
        .keys()
        .all(|key| is_fully_qualified_domain_name(key))
    {
        return Err(Rejection::Limit("annotation key"));
    }
    Ok(())
}
