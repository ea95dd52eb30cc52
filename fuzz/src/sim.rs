//! Checks that drive the provider through the deterministic simulation of `bao-kms-testkit`.
//!
//! - [`decrypt_request`]: one Decrypt with fuzzed key_id, annotations and ciphertext against a
//!   started node; every refusal of an invalid request happens before any Transit decrypt.
//! - [`provider_ops`]: a model-based check; a fuzzed sequence of [`Op`]s over one to three
//!   nodes, each with its own emulated kube-apiserver, with the invariants checked after every
//!   operation.

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bao_kms_core::registry::admit_loaded;
use bao_kms_core::transit::TransitOperation;
use bao_kms_core::{
    Checkpoint, FailureClass, KmsRequest, KmsResponse, Plaintext, Refusal, StateFile,
};
use bao_kms_testkit::apiserver::{ApiServer, Rejection, StoredSeed};
use bao_kms_testkit::sim::Sim;
use sha2::{Digest as _, Sha256};

use crate::wire::{self, Bytes, reference};

/// `status.probeInterval` of simulated nodes: the discovery rate limit.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Most operations run per input; keeps one execution in the millisecond range.
const MAX_OPS: usize = 40;
/// Most seeds kept for the decrypt checks.
const MAX_SEEDS: usize = 8;
/// Most Transit versions the model rotates to.
const MAX_VERSIONS: u64 = 24;

/// A started single node and the seed it encrypted: the starting point of [`decrypt_request`].
struct Encrypted {
    sim: Sim,
    seed: Vec<u8>,
    ciphertext: Vec<u8>,
    key_id: String,
    annotations: BTreeMap<String, Vec<u8>>,
}

fn started_node_with_a_seed() -> Encrypted {
    let mut sim = Sim::new(1);
    if let Err(error) = sim.start(0) {
        panic!("a fresh node must start: {error:?}");
    }
    sim.advance(Duration::from_secs(1));
    let seed = vec![0x5e; 32];
    let answer = sim.call(
        0,
        KmsRequest::Encrypt {
            plaintext: Plaintext::new(seed.clone()),
        },
    );
    let Ok(KmsResponse::Encrypted {
        ciphertext,
        key_id,
        annotations,
    }) = answer
    else {
        panic!("a settled node must encrypt: {answer:?}");
    };
    Encrypted {
        sim,
        seed,
        ciphertext,
        key_id: key_id.to_string(),
        annotations,
    }
}

/// One fuzzed Decrypt on a started node.
///
/// Input: a flags byte, the key_id (one length byte), the ciphertext (two length bytes,
/// little-endian) and the annotations in the [`wire::decode_annotation_map`] layout. Flag bit 0
/// replaces the key_id with the node's real one; bit 1 starts from the real ciphertext and reads
/// the given bytes as (position, xor) edits; bit 2 starts from the real annotations and lets
/// the given ones replace or add entries. The flags let the fuzzer reach valid requests without
/// guessing digests.
///
/// Checks: an answer always arrives; a Transit decrypt is made only for a request that is valid
/// by the written rules; a success returns the seed, and only for the real ciphertext; a valid
/// request with the real ciphertext succeeds.
pub fn decrypt_request(data: &[u8]) {
    let _ = decrypt_request_outcome(data);
}

/// What one [`decrypt_request`] input did, for the tests of the seeds.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct DecryptOutcome {
    /// Whether the request was valid by the written rules.
    pub valid: bool,
    /// Transit decrypt calls it caused.
    pub transit_decrypts: usize,
    /// Whether it returned the seed.
    pub decrypted: bool,
}

/// [`decrypt_request`], returning what happened.
pub fn decrypt_request_outcome(data: &[u8]) -> DecryptOutcome {
    let mut bytes = Bytes::new(data);
    let flags = bytes.byte();
    let key_id_len = usize::from(bytes.byte());
    let given_key_id = String::from_utf8_lossy(bytes.take(key_id_len)).into_owned();
    let ciphertext_len = usize::from(bytes.u16());
    let given_ciphertext = bytes.take(ciphertext_len).to_vec();
    let given_annotations = wire::decode_annotation_map(&mut bytes);

    let Encrypted {
        mut sim,
        seed,
        ciphertext: real_ciphertext,
        key_id: real_key_id,
        annotations: real_annotations,
    } = started_node_with_a_seed();

    let key_id = if flags & 1 == 1 {
        real_key_id.clone()
    } else {
        given_key_id
    };
    let ciphertext = if flags & 2 == 2 {
        let mut edited = real_ciphertext.clone();
        for pair in given_ciphertext.chunks(2) {
            if let [position, xor] = pair {
                let index = usize::from(*position) % edited.len();
                edited[index] ^= xor;
            }
        }
        edited
    } else {
        given_ciphertext
    };
    let annotations = if flags & 4 == 4 {
        let mut merged = real_annotations.clone();
        merged.extend(given_annotations);
        merged
    } else {
        given_annotations
    };

    let valid = valid_by_rules(
        &key_id,
        &real_key_id,
        &annotations,
        &real_annotations,
        &ciphertext,
    );
    let decrypts_before = transit_decrypts(&sim, 0);
    let answer = request_and_wait(
        &mut sim,
        0,
        KmsRequest::Decrypt {
            ciphertext: ciphertext.clone(),
            key_id,
            annotations,
        },
    );
    let decrypts = transit_decrypts(&sim, 0) - decrypts_before;
    assert!(
        decrypts == 0 || valid,
        "an invalid Decrypt reached Transit ({answer:?})"
    );
    let decrypted = match answer {
        Ok(KmsResponse::Decrypted { plaintext }) => {
            assert!(valid, "an invalid Decrypt succeeded");
            assert_eq!(
                ciphertext, real_ciphertext,
                "a tampered ciphertext decrypted"
            );
            assert_eq!(
                plaintext.expose(),
                seed.as_slice(),
                "Decrypt returned another seed"
            );
            true
        }
        Ok(other) => panic!("Decrypt answered with {other:?}"),
        Err(refusal) => {
            assert!(
                !(valid && ciphertext == real_ciphertext),
                "a valid Decrypt of the real ciphertext was refused: {refusal:?}"
            );
            false
        }
    };
    DecryptOutcome {
        valid,
        transit_decrypts: decrypts,
        decrypted,
    }
}

/// Whether a Decrypt is valid by the written rules, for a node whose only key is the real one:
/// the real key_id; annotations with FQDN keys and UTF-8 values, the required entries equal to
/// the ones Encrypt returned (a plugin version of any non-empty text), no namespace hash; a
/// well-formed ciphertext of the same version; every KMS v2 size limit respected.
fn valid_by_rules(
    key_id: &str,
    real_key_id: &str,
    annotations: &BTreeMap<String, Vec<u8>>,
    real_annotations: &BTreeMap<String, Vec<u8>>,
    ciphertext: &[u8],
) -> bool {
    use bao_kms_core::annotations as names;
    let annotation_bytes: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    let within_limits = !ciphertext.is_empty()
        && ciphertext.len() <= bao_kms_core::limits::MAX_CIPHERTEXT_BYTES
        && key_id.len() <= bao_kms_core::limits::MAX_KEY_ID_BYTES
        && annotation_bytes <= bao_kms_core::limits::MAX_ANNOTATIONS_BYTES;
    let well_formed_map = annotations
        .iter()
        .all(|(key, value)| reference::is_fqdn(key) && std::str::from_utf8(value).is_ok());
    let required_equal = [
        names::PROVIDER,
        names::AAD_VERSION,
        names::KEY_ID_HASH,
        names::TRANSIT_KEY_VERSION,
        names::TRANSIT_MOUNT_HASH,
        names::TRANSIT_KEY_HASH,
    ]
    .iter()
    .all(|name| annotations.get(*name) == real_annotations.get(*name));
    let plugin_version = annotations
        .get(names::PLUGIN_VERSION)
        .is_some_and(|value| !value.is_empty());
    let no_namespace = !annotations.contains_key(names::NAMESPACE_HASH);
    within_limits
        && key_id == real_key_id
        && well_formed_map
        && required_equal
        && plugin_version
        && no_namespace
        && reference::ciphertext_version(ciphertext) == Some(1)
}

fn transit_decrypts(sim: &Sim, node: usize) -> usize {
    sim.nodes[node]
        .transit_log
        .iter()
        .filter(|operation| {
            matches!(
                operation,
                TransitOperation::Decrypt | TransitOperation::BatchDecrypt
            )
        })
        .count()
}

/// Sends a request and lets simulated time pass until it is answered; every request carries
/// the apiserver's 3 s deadline, so an answer within 4 s is a liveness requirement.
fn request_and_wait(
    sim: &mut Sim,
    node: usize,
    request: KmsRequest,
) -> Result<KmsResponse, Refusal> {
    let id = sim.request(node, request);
    for _ in 0..40 {
        if let Some(answer) = sim.nodes[node].responses.remove(&id) {
            return answer;
        }
        sim.advance(Duration::from_millis(100));
    }
    panic!("node {node} never answered request {id:?}, not even after its deadline");
}

/// One step of [`provider_ops`]. Node numbers and seed indexes are taken modulo the number of
/// nodes and stored seeds.
#[derive(Arbitrary, Clone, Copy, Debug, Eq, PartialEq)]
pub enum Op {
    /// The node's apiserver polls Status (and encrypts a fresh seed when the key_id changed).
    Status(u8),
    /// Status, then an Encrypt of a fresh seed on the same node.
    Encrypt(u8),
    /// Decrypt a stored seed on a node.
    DecryptStored(u8, u8),
    /// Decrypt a stored seed with its ciphertext, key_id or annotations tampered with.
    DecryptTampered(u8, u8, u8),
    /// Transit rotates the key.
    Rotate,
    /// Simulated time passes, in seconds; then every running node's apiserver polls Status.
    Advance(u8),
    /// The node crashes and starts again from its disk.
    Restart(u8),
    /// The node's next registry save fails.
    FailNextSave(u8),
    /// Transit becomes unreachable (true) or reachable again (false).
    Outage(bool),
    /// The wall clock jumps, in seconds, without monotonic time moving.
    WallClockJump(i16),
    /// The node crashes and stays down until a `Restart` of it; operations on it are skipped.
    Stop(u8),
}

/// A whole [`provider_ops`] input.
#[derive(Arbitrary, Clone, Debug, Eq, PartialEq)]
pub struct Scenario {
    /// One to three nodes: `1 + nodes % 3`.
    pub nodes: u8,
    /// The operations, in order (at most [`MAX_OPS`] are run).
    pub ops: Vec<Op>,
}

impl Scenario {
    /// Decodes fuzz input; every input is some scenario.
    pub fn decode(data: &[u8]) -> Self {
        Self::arbitrary_take_rest(Unstructured::new(data)).unwrap_or(Self {
            nodes: 0,
            ops: Vec::new(),
        })
    }

    /// The bytes that [`Scenario::decode`] turns back into this scenario (for seeds).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.nodes];
        for op in &self.ops {
            out.push(1);
            op.encode(&mut out);
        }
        out
    }
}

impl Op {
    const VARIANTS: u64 = 11;

    fn encode(&self, out: &mut Vec<u8>) {
        let (index, fields): (u64, Vec<u8>) = match *self {
            Self::Status(node) => (0, vec![node]),
            Self::Encrypt(node) => (1, vec![node]),
            Self::DecryptStored(node, index) => (2, vec![node, index]),
            Self::DecryptTampered(node, index, byte) => (3, vec![node, index, byte]),
            Self::Rotate => (4, vec![]),
            Self::Advance(seconds) => (5, vec![seconds]),
            Self::Restart(node) => (6, vec![node]),
            Self::FailNextSave(node) => (7, vec![node]),
            Self::Outage(on) => (8, vec![u8::from(on)]),
            Self::WallClockJump(seconds) => (9, seconds.to_le_bytes().to_vec()),
            Self::Stop(node) => (10, vec![node]),
        };
        // `derive(Arbitrary)` picks variant `(u32 * VARIANTS) >> 32`.
        let selector = u32::try_from((index << 32).div_ceil(Self::VARIANTS)).unwrap_or(u32::MAX);
        out.extend_from_slice(&selector.to_le_bytes());
        out.extend_from_slice(&fields);
    }
}

/// The model-based check of the provider over the simulation.
///
/// Invariants, checked after every operation:
/// - I1: an Encrypt answers with the key_id Status reported on the same node just before, and
///   is refused when that Status was unhealthy;
/// - I2: a node's Status key_id never goes back to one it left (A→B→A);
/// - I3: every stored seed decrypts on every running node, or fails only in a retryable way
///   while Transit is out, a save fails or the node is unhealthy; an unknown key_id is
///   tolerated only until the discovery interval has passed; never a Transit decrypt failure,
///   annotation mismatch or malformed-request refusal; tampered requests never succeed;
/// - I4: a node's active version never exceeds Transit's latest and never decreases;
/// - I6: a node's registry generation never decreases, its disk holds exactly the registry in
///   use, the files decode and the checkpoint admits the state; a restart always succeeds.
///
/// Stopped nodes are skipped by every check and by the operations addressed to them.
pub fn provider_ops(data: &[u8]) {
    let _ = provider_ops_outcome(data);
}

/// What one [`provider_ops`] input reached, for the tests of the seeds.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct OpsOutcome {
    /// Highest active version of each node.
    pub active_versions: Vec<u32>,
    /// Seeds stored (and checked after every later operation).
    pub seeds: usize,
    /// Seeds that decrypted in the I3 checks.
    pub decrypted: usize,
}

/// [`provider_ops`], returning what the scenario reached.
pub fn provider_ops_outcome(data: &[u8]) -> OpsOutcome {
    let scenario = Scenario::decode(data);
    let mut model = Model::new(1 + usize::from(scenario.nodes % 3));
    model.check_all();
    for op in scenario.ops.iter().take(MAX_OPS) {
        model.apply(*op);
        model.check_all();
    }
    OpsOutcome {
        active_versions: model.active_version.clone(),
        seeds: model.seeds().len(),
        decrypted: model.decrypted,
    }
}

/// The simulation plus what the checks remember.
struct Model {
    sim: Sim,
    apiservers: Vec<ApiServer>,
    /// Highest active version seen per node.
    active_version: Vec<u32>,
    /// Highest registry generation seen per node.
    generation: Vec<u64>,
    outage: bool,
    seeds_made: u64,
    decrypted: usize,
    /// The files of each node's disk as last checked, and the state they decode to.
    disk: Vec<Option<DiskCache>>,
}

/// A node's registry files that passed the I6 checks.
struct DiskCache {
    state_bytes: Vec<u8>,
    checkpoint_bytes: Vec<u8>,
    state: StateFile,
}

impl Model {
    fn new(nodes: usize) -> Self {
        let mut sim = Sim::new(nodes);
        for node in 0..nodes {
            if let Err(error) = sim.start(node) {
                panic!("node {node} must start on a fresh key: {error:?}");
            }
        }
        sim.advance(Duration::from_secs(1));
        Self {
            sim,
            apiservers: (0..nodes).map(|_| ApiServer::default()).collect(),
            active_version: vec![0; nodes],
            generation: vec![0; nodes],
            outage: false,
            seeds_made: 0,
            decrypted: 0,
            disk: (0..nodes).map(|_| None).collect(),
        }
    }

    fn nodes(&self) -> usize {
        self.sim.nodes.len()
    }

    fn node(&self, raw: u8) -> usize {
        usize::from(raw) % self.nodes()
    }

    fn seeds(&self) -> Vec<StoredSeed> {
        self.apiservers
            .iter()
            .flat_map(|apiserver| apiserver.stored.iter().cloned())
            .collect()
    }

    fn running(&self, node: usize) -> bool {
        self.sim.nodes[node].provider.is_some()
    }

    fn apply(&mut self, op: Op) {
        let skipped = match op {
            Op::Status(node)
            | Op::Encrypt(node)
            | Op::DecryptStored(node, _)
            | Op::DecryptTampered(node, _, _) => !self.running(self.node(node)),
            Op::Rotate
            | Op::Advance(_)
            | Op::Restart(_)
            | Op::FailNextSave(_)
            | Op::Outage(_)
            | Op::WallClockJump(_)
            | Op::Stop(_) => false,
        };
        if skipped {
            return;
        }
        match op {
            Op::Status(node) => self.poll(self.node(node)),
            Op::Encrypt(node) => self.encrypt(self.node(node)),
            Op::DecryptStored(node, index) => {
                let seeds = self.seeds();
                if !seeds.is_empty() {
                    let seed = &seeds[usize::from(index) % seeds.len()];
                    self.check_decrypts(self.node(node), seed);
                }
            }
            Op::DecryptTampered(node, index, byte) => {
                let seeds = self.seeds();
                if !seeds.is_empty() {
                    let seed = &seeds[usize::from(index) % seeds.len()];
                    self.tampered(self.node(node), seed, &seeds, byte);
                }
            }
            Op::Rotate => {
                if self.sim.transit.latest_version < MAX_VERSIONS {
                    self.sim.transit.rotate(self.sim.wall_unix);
                }
            }
            Op::Advance(seconds) => {
                self.sim.advance(Duration::from_secs(u64::from(seconds)));
                // kube-apiserver polls Status periodically: every running node's apiserver
                // polls once time has passed.
                for node in 0..self.nodes() {
                    if self.running(node) {
                        self.poll(node);
                    }
                }
            }
            Op::Restart(node) => {
                let node = self.node(node);
                self.sim.stop(node);
                if let Err(error) = self.sim.start(node) {
                    panic!("I6: node {node} cannot restart from its own disk: {error:?}");
                }
            }
            Op::FailNextSave(node) => {
                let node = self.node(node);
                let failing = &mut self.sim.nodes[node].failing_saves;
                *failing = (*failing + 1).min(3);
            }
            Op::Outage(on) => {
                self.outage = on;
                self.sim.transit.outage = on.then_some(FailureClass::ConnectionFailed);
            }
            Op::WallClockJump(seconds) => self.sim.wall_unix += i64::from(seconds),
            Op::Stop(node) => self.sim.stop(self.node(node)),
        }
    }

    /// Status through the node's apiserver emulator (I1 and I2).
    fn poll(&mut self, node: usize) {
        let stored = self.apiservers[node].stored.len();
        let result = self.apiservers[node].poll(&mut self.sim, node);
        match result {
            Ok(()) => {}
            Err(Rejection::KeyIdMismatch) => {
                panic!("I1: node {node} encrypted under another key_id than its Status");
            }
            Err(Rejection::Limit(limit)) => panic!("node {node} broke a KMS limit: {limit}"),
            Err(Rejection::Refused(refusal)) => assert!(
                self.retryable_transit(&refusal),
                "I1: node {node} refused Encrypt right after a healthy Status: {refusal:?}"
            ),
        }
        if self.seeds().len() > MAX_SEEDS {
            self.apiservers[node].stored.truncate(stored);
        }
        self.check_no_flip_flop(node);
    }

    /// Status, then Encrypt of a fresh seed (I1).
    fn encrypt(&mut self, node: usize) {
        let status = self.sim.status_key_id(node);
        if let Some(key_id) = &status {
            let history = &mut self.apiservers[node].status_history;
            if history.last() != Some(key_id) {
                history.push(key_id.clone());
            }
        }
        self.check_no_flip_flop(node);
        self.seeds_made += 1;
        let seed = Sha256::digest(format!("fuzz-seed-{}", self.seeds_made)).to_vec();
        let answer = self.sim.call(
            node,
            KmsRequest::Encrypt {
                plaintext: Plaintext::new(seed.clone()),
            },
        );
        match (status, answer) {
            (
                Some(status),
                Ok(KmsResponse::Encrypted {
                    ciphertext,
                    key_id,
                    annotations,
                }),
            ) => {
                assert_eq!(
                    key_id.to_string(),
                    status,
                    "I1: Encrypt key_id differs from the Status key_id just before"
                );
                if self.seeds().len() < MAX_SEEDS {
                    self.apiservers[node].stored.push(StoredSeed {
                        seed,
                        ciphertext,
                        key_id: status,
                        annotations,
                        node,
                    });
                }
            }
            (Some(_), Err(refusal)) => assert!(
                self.retryable_transit(&refusal),
                "I1: Encrypt refused right after a healthy Status: {refusal:?}"
            ),
            (None, Ok(_)) => panic!("I1: Encrypt served while Status was unhealthy"),
            (None, Err(refusal)) => assert!(
                matches!(
                    refusal,
                    Refusal::StatusUnhealthy | Refusal::ActiveKeyUnavailable
                ),
                "Encrypt on an unhealthy node refused with {refusal:?}"
            ),
            (Some(_), Ok(other)) => panic!("Encrypt answered with {other:?}"),
        }
    }

    fn check_no_flip_flop(&self, node: usize) {
        let history = &self.apiservers[node].status_history;
        if let Some((last, earlier)) = history.split_last() {
            assert!(
                !earlier.contains(last),
                "I2: node {node} Status key_id went back to one it had left: {history:?}"
            );
        }
    }

    /// A Transit failure that is expected while Transit is out.
    fn retryable_transit(&self, refusal: &Refusal) -> bool {
        self.outage
            && matches!(
                refusal,
                Refusal::Transit { failure, .. } if failure.class == FailureClass::ConnectionFailed
            )
    }

    /// Whether a retryable refusal is excused on `node` right now.
    /// That is while Transit is out, a save is set to fail, or the node reports any not-ready
    /// reason (unhealthy, an open breaker, a failed probe or save).
    fn excused(&self, node: usize) -> bool {
        let troubled = self.sim.nodes[node]
            .provider
            .as_ref()
            .is_none_or(|provider| !provider.health(self.sim.now).reasons.is_empty());
        self.outage || self.sim.nodes[node].failing_saves > 0 || troubled
    }

    /// I3 for one seed on one node.
    fn check_decrypts(&mut self, node: usize, seed: &StoredSeed) {
        let mut waited = false;
        loop {
            // Trouble counts when the request arrived as well as when it was answered: a
            // Decrypt that waits for a save retry may end at its deadline after the save worked.
            let excused_on_arrival = self.excused(node);
            let answer = request_and_wait(&mut self.sim, node, decrypt_request_of(seed));
            let refusal = match answer {
                Ok(KmsResponse::Decrypted { plaintext }) => {
                    assert_eq!(
                        plaintext.expose(),
                        seed.seed.as_slice(),
                        "I3: node {node} decrypted a stored seed to other bytes"
                    );
                    self.decrypted += 1;
                    return;
                }
                Ok(other) => panic!("Decrypt answered with {other:?}"),
                Err(refusal) => refusal,
            };
            let retryable = match &refusal {
                Refusal::Transit { failure, .. } => !matches!(
                    failure.class,
                    FailureClass::DecryptFailed
                        | FailureClass::VersionDisallowed
                        | FailureClass::InvalidRequest
                        | FailureClass::NotFound
                        | FailureClass::PermissionDenied
                ),
                Refusal::KeyMetadataRefreshFailed
                | Refusal::DeadlineExceeded
                | Refusal::StatusUnhealthy => true,
                Refusal::UnknownKeyId if !waited => {
                    // Discovery runs at most once per probe interval: wait it out once.
                    waited = true;
                    self.sim.advance(PROBE_INTERVAL + Duration::from_secs(1));
                    continue;
                }
                Refusal::UnknownKeyId => true,
                Refusal::ShuttingDown
                | Refusal::PlaintextRequired
                | Refusal::PlaintextTooLarge
                | Refusal::CiphertextRequired
                | Refusal::RequestLimitExceeded
                | Refusal::KeyIdMalformed
                | Refusal::AnnotationsInvalid
                | Refusal::AnnotationMismatch
                | Refusal::CiphertextMalformed
                | Refusal::ResponseLimitExceeded
                | Refusal::ConcurrencyLimit
                | Refusal::ActiveKeyUnavailable
                | Refusal::TransitResponseInvalid => false,
            };
            assert!(
                retryable,
                "I3: node {node} refused a stored seed (from node {}) with {refusal:?}",
                seed.node
            );
            assert!(
                excused_on_arrival || self.excused(node),
                "I3: node {node} is healthy, Transit is up and saves work, yet a stored seed \
                 (from node {}) was refused with {refusal:?}",
                seed.node
            );
            return;
        }
    }

    /// A tampered request must never succeed.
    fn tampered(&mut self, node: usize, seed: &StoredSeed, seeds: &[StoredSeed], byte: u8) {
        let mut request = seed.clone();
        match byte % 3 {
            0 => {
                let index = usize::from(byte) * 7 % request.ciphertext.len();
                request.ciphertext[index] ^= 1 | (byte & 0x3e);
            }
            1 => {
                let other = seeds.iter().find(|other| other.key_id != seed.key_id);
                match other {
                    Some(other) => request.key_id.clone_from(&other.key_id),
                    None => {
                        // Change one digest character to another base64url character.
                        let mut chars: Vec<char> = request.key_id.chars().collect();
                        let index = 5 + usize::from(byte) % 43;
                        chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
                        request.key_id = chars.into_iter().collect();
                    }
                }
            }
            _ => {
                let name = bao_kms_core::annotations::TRANSIT_KEY_VERSION;
                let version = request
                    .annotations
                    .get(name)
                    .and_then(|value| std::str::from_utf8(value).ok()?.parse::<u32>().ok())
                    .unwrap_or(1);
                let other = version % 50 + 1 + u32::from(byte % 3);
                request
                    .annotations
                    .insert(name.into(), other.to_string().into_bytes());
            }
        }
        let answer = request_and_wait(&mut self.sim, node, decrypt_request_of(&request));
        assert!(
            answer.is_err(),
            "a tampered Decrypt succeeded on node {node}: {request:?}"
        );
    }

    /// Every invariant, after every operation.
    fn check_all(&mut self) {
        for node in 0..self.nodes() {
            self.check_registry(node);
        }
        for seed in self.seeds() {
            for node in 0..self.nodes() {
                if self.running(node) {
                    self.check_decrypts(node, &seed);
                }
            }
        }
    }

    /// I4 and I6 for one node.
    fn check_registry(&mut self, node: usize) {
        let latest = self.sim.transit.latest_version;
        let Some(provider) = self.sim.nodes[node].provider.as_ref() else {
            return;
        };
        let Some(registry) = provider.registry() else {
            panic!("node {node} has no registry after bootstrap");
        };
        let version = registry.active().version().get();
        assert!(
            u64::from(version) <= latest,
            "I4: node {node} active version {version} exceeds Transit's latest {latest}"
        );
        assert!(
            version >= self.active_version[node],
            "I4: node {node} active version went from {} to {version}",
            self.active_version[node]
        );
        self.active_version[node] = version;
        assert!(
            registry.generation() >= self.generation[node],
            "I6: node {node} registry generation went from {} to {}",
            self.generation[node],
            registry.generation()
        );
        self.generation[node] = registry.generation();
        let disk = &self.sim.nodes[node].disk;
        let state_bytes = disk
            .state
            .as_deref()
            .expect("I6: a published registry is on disk");
        let checkpoint_bytes = disk.checkpoint.as_deref().expect("I6: a checkpoint exists");
        // Decoding is the costliest step of a check; files unchanged since the last check
        // decoded then, so their decoded state is reused.
        let cached = self.disk[node]
            .as_ref()
            .filter(|cached| cached.state_bytes == state_bytes)
            .filter(|cached| cached.checkpoint_bytes == checkpoint_bytes);
        let on_disk = match cached {
            Some(cached) => cached.state.clone(),
            None => {
                let on_disk = match StateFile::decode(state_bytes) {
                    Ok(state) => state,
                    Err(error) => panic!("I6: node {node} state file does not decode: {error:?}"),
                };
                let checkpoint = match Checkpoint::decode(checkpoint_bytes) {
                    Ok(checkpoint) => checkpoint,
                    Err(error) => panic!("I6: node {node} checkpoint does not decode: {error:?}"),
                };
                if let Err(error) = admit_loaded(Some(&on_disk), Some(&checkpoint)) {
                    panic!("I6: node {node} checkpoint refuses its state: {error:?}");
                }
                self.disk[node] = Some(DiskCache {
                    state_bytes: state_bytes.to_vec(),
                    checkpoint_bytes: checkpoint_bytes.to_vec(),
                    state: on_disk.clone(),
                });
                on_disk
            }
        };
        assert_eq!(
            &on_disk, registry,
            "I6: node {node} disk differs from the registry in use"
        );
    }
}

fn decrypt_request_of(seed: &StoredSeed) -> KmsRequest {
    KmsRequest::Decrypt {
        ciphertext: seed.ciphertext.clone(),
        key_id: seed.key_id.clone(),
        annotations: seed.annotations.clone(),
    }
}

/// Seeds for the `decrypt_request` corpus: the real request, and a few near it.
pub fn decrypt_request_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let real = started_node_with_a_seed();
    let encode =
        |flags: u8, key_id: &str, ciphertext: &[u8], annotations: &BTreeMap<String, Vec<u8>>| {
            let mut out = vec![flags, u8::try_from(key_id.len()).unwrap_or(u8::MAX)];
            out.extend_from_slice(key_id.as_bytes());
            let len = u16::try_from(ciphertext.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(ciphertext);
            out.extend_from_slice(&wire::encode_annotation_map(annotations));
            out
        };
    let mut tampered_version = BTreeMap::new();
    tampered_version.insert(
        bao_kms_core::annotations::TRANSIT_KEY_VERSION.to_owned(),
        b"2".to_vec(),
    );
    vec![
        (
            "real-request-spelled-out",
            encode(0, &real.key_id, &real.ciphertext, &real.annotations),
        ),
        (
            "real-request-by-flags",
            encode(7, "", &[], &BTreeMap::new()),
        ),
        (
            "real-with-ciphertext-edit",
            encode(7, "", &[20, 1], &BTreeMap::new()),
        ),
        (
            "real-with-version-annotation-2",
            encode(7, "", &[], &tampered_version),
        ),
        (
            "unknown-key-id",
            encode(
                6,
                "obk2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                &[],
                &BTreeMap::new(),
            ),
        ),
        ("garbage", b"\x00\x05hello\x04\x00abcd".to_vec()),
    ]
}

/// Seeds for the `provider_ops` corpus: short scenarios that reach rotation, restarts,
/// failed saves, outages and clock jumps.
pub fn provider_ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use Op::{
        Advance, DecryptStored, DecryptTampered, Encrypt, FailNextSave, Outage, Restart, Rotate,
        Status, Stop, WallClockJump,
    };
    let scenarios = [
        (
            "one-node-encrypt-decrypt",
            0,
            vec![Status(0), Encrypt(0), DecryptStored(0, 0)],
        ),
        (
            "one-node-rotation",
            0,
            vec![
                Status(0),
                Rotate,
                Advance(25),
                Advance(40),
                Status(0),
                Encrypt(0),
                DecryptStored(0, 1),
            ],
        ),
        (
            "two-nodes-one-restarts-during-rotation",
            1,
            vec![
                Status(0),
                Status(1),
                Rotate,
                Advance(25),
                Restart(1),
                Advance(60),
                Status(0),
                Status(1),
                DecryptTampered(1, 0, 0),
                DecryptTampered(0, 1, 1),
                DecryptTampered(0, 1, 2),
            ],
        ),
        (
            "three-nodes-outage-and-failed-saves",
            2,
            vec![
                Status(0),
                Status(1),
                Status(2),
                Rotate,
                FailNextSave(1),
                Advance(12),
                Outage(true),
                Advance(50),
                Encrypt(2),
                Outage(false),
                Advance(60),
                Status(0),
                Status(1),
                Status(2),
            ],
        ),
        (
            "node-down-while-another-promotes-twice",
            1,
            vec![
                Status(0),
                Status(1),
                Stop(1),
                Rotate,
                Advance(70),
                Status(0),
                Rotate,
                Advance(70),
                Status(0),
                Restart(1),
                DecryptStored(1, 1),
                DecryptStored(1, 2),
                Status(1),
            ],
        ),
        (
            "clock-jumps-around-a-promotion",
            1,
            vec![
                Status(0),
                Rotate,
                WallClockJump(-3600),
                Advance(30),
                WallClockJump(7200),
                Advance(40),
                Encrypt(1),
                Restart(0),
                Encrypt(0),
            ],
        ),
    ];
    scenarios
        .into_iter()
        .map(|(name, nodes, ops)| (name, Scenario { nodes, ops }.encode()))
        .collect()
}
