//! The rotation-safety invariants of `docs/rotation-safety.md`, checked against a running
//! simulation after every step. Property tests and the fuzzer share this checker.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bao_kms_core::provider::Event;
use bao_kms_core::registry::{SnapshotState, StateFile};
use bao_kms_core::transit::FailureClass;
use bao_kms_core::{KeyId, Refusal};

use crate::apiserver::{self, ApiServer, Rejection, StoredSeed};
use crate::sim::Sim;

/// One broken invariant.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Violation {
    /// The invariant, as numbered in `docs/rotation-safety.md`.
    pub invariant: &'static str,
    /// What happened.
    pub detail: String,
}

/// History the invariants need, per node.
#[derive(Debug, Default)]
struct NodeHistory {
    /// Distinct Status key_ids in the order they appeared.
    status_key_ids: Vec<String>,
    /// Last disk state seen.
    disk: Option<StateFile>,
    /// Key_ids first found unknown on this node, and when.
    unknown_since: BTreeMap<String, Instant>,
    /// Events already checked.
    events_seen: usize,
    /// Saves already checked.
    saves_seen: usize,
}

/// Checks every invariant after each step of a simulation.
#[derive(Debug)]
pub struct Checker {
    nodes: Vec<NodeHistory>,
    /// One emulated apiserver per node.
    pub apiservers: Vec<ApiServer>,
    /// Key_ids whose versions the operator retired on every node (excluded from I3).
    pub retired_key_ids: BTreeSet<String>,
    /// Key_ids the operator restored after a retirement (removed may become retired again).
    pub restored_key_ids: BTreeSet<String>,
}

impl Checker {
    /// A checker for `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes: (0..nodes).map(|_| NodeHistory::default()).collect(),
            apiservers: (0..nodes).map(|_| ApiServer::default()).collect(),
            retired_key_ids: BTreeSet::new(),
            restored_key_ids: BTreeSet::new(),
        }
    }

    /// Lets node `index`'s apiserver poll Status and encrypt a seed when the key_id changed.
    ///
    /// # Errors
    /// A violation of I1 (Encrypt key_id differs from Status key_id) or a protocol limit.
    pub fn poll(&mut self, sim: &mut Sim, index: usize) -> Result<(), Violation> {
        if sim.nodes[index].provider.is_none() {
            return Ok(());
        }
        match self.apiservers[index].poll(sim, index) {
            Ok(()) | Err(Rejection::Refused(_)) => Ok(()),
            Err(Rejection::KeyIdMismatch) => {
                Err(violation("I1", "Encrypt key_id differs from Status key_id"))
            }
            Err(Rejection::Limit(what)) => {
                Err(violation("I1", format!("protocol limit broken: {what}")))
            }
        }
    }

    /// Checks every invariant; `outage` says whether Transit is currently failing.
    ///
    /// # Errors
    /// The first violation found.
    pub fn check(&mut self, sim: &mut Sim, outage: bool) -> Result<(), Violation> {
        for index in 0..sim.nodes.len() {
            self.check_status_history(sim, index)?;
            self.check_disk(sim, index)?;
            self.check_promotions(sim, index)?;
        }
        self.check_decryptable(sim, outage)?;
        Ok(())
    }

    /// I2: a node's Status key_id never goes back to an earlier one.
    fn check_status_history(&mut self, sim: &mut Sim, index: usize) -> Result<(), Violation> {
        if sim.nodes[index].provider.is_none() {
            return Ok(());
        }
        let Some(key_id) = sim.status_key_id(index) else {
            return Ok(());
        };
        let history = &mut self.nodes[index].status_key_ids;
        if history.last() == Some(&key_id) {
            return Ok(());
        }
        if history.contains(&key_id) {
            return Err(violation(
                "I2",
                format!("node {index} Status key_id flip-flopped back to an earlier key"),
            ));
        }
        history.push(key_id);
        Ok(())
    }

    /// I6 and I7: generations grow by one along the hash chain, removed records never change,
    /// the active version never decreases and no decryptable version is lost except by an
    /// operator retirement (checked by the caller through `retired_key_ids`).
    fn check_disk(&mut self, sim: &Sim, index: usize) -> Result<(), Violation> {
        let node = &sim.nodes[index];
        let mut states: Vec<&[u8]> = node.disk_history[self.nodes[index].saves_seen..]
            .iter()
            .map(Vec::as_slice)
            .collect();
        self.nodes[index].saves_seen = node.disk_history.len();
        // Operator edits (retire, restore) reach the disk without a save of the provider.
        if let Some(current) = node.disk.state.as_deref()
            && states.last() != Some(&current)
        {
            states.push(current);
        }
        for bytes in states {
            let state = StateFile::decode(bytes).map_err(|error| {
                violation(
                    "I6",
                    format!("node {index} disk state does not decode: {error}"),
                )
            })?;
            self.check_successor(index, state)?;
        }
        Ok(())
    }

    fn check_successor(&mut self, index: usize, state: StateFile) -> Result<(), Violation> {
        let history = &mut self.nodes[index];
        let Some(previous) = history
            .disk
            .as_ref()
            .filter(|p| p.current_hash() != state.current_hash())
        else {
            history.disk = Some(state);
            return Ok(());
        };
        let chained = state.generation() == previous.generation() + 1
            && state.previous_hash() == Some(previous.current_hash());
        if !chained {
            return Err(violation(
                "I6",
                format!("node {index} registry generation or hash chain broke"),
            ));
        }
        if state.active().version() < previous.active().version() {
            return Err(violation(
                "I7",
                format!("node {index} active version went backwards"),
            ));
        }
        for record in previous.records() {
            let Some(after) = state.record_by_key_id(record.key_id()) else {
                return Err(violation(
                    "I7",
                    format!("node {index} lost a registry record"),
                ));
            };
            let key_id = record.key_id().as_str();
            let restored =
                after.state() == SnapshotState::Retired && self.restored_key_ids.contains(key_id);
            if record.state() == SnapshotState::Removed && after != record && !restored {
                return Err(violation(
                    "I6",
                    format!("node {index} changed a removed record"),
                ));
            }
            if record.decrypts() && !after.decrypts() && !self.retired_key_ids.contains(key_id) {
                return Err(violation(
                    "I7",
                    format!("node {index} lost decryptability of a version"),
                ));
            }
        }
        history.disk = Some(state);
        Ok(())
    }

    /// I4: a promoted record was stable, and the node had been running for at least the
    /// activation delay when it promoted (the delay restarts with the process).
    fn check_promotions(&mut self, sim: &Sim, index: usize) -> Result<(), Violation> {
        let node = &sim.nodes[index];
        let threshold = node.config.require_stable_observation_count;
        let delay = node.config.activation_delay;
        let events = &node.timed_events[self.nodes[index].events_seen..];
        for (at, event) in events {
            let Event::KeyPromoted { key_id, .. } = event else {
                continue;
            };
            let Some(state) = node.provider.as_ref().and_then(|p| p.registry()) else {
                continue;
            };
            if let Some(record) = state.record_by_key_id(key_id) {
                let observation = record.observation();
                if observation.stable_observation_count < threshold
                    || observation.stable_at_unix == 0
                {
                    return Err(violation(
                        "I4",
                        format!("node {index} promoted a version that was not stable"),
                    ));
                }
            }
            let started = node.started_at.unwrap_or(*at);
            if at.saturating_duration_since(started) < delay {
                return Err(violation(
                    "I4",
                    format!("node {index} promoted before a full activation delay since its start"),
                ));
            }
        }
        self.nodes[index].events_seen = node.timed_events.len();
        Ok(())
    }

    /// I3 and I5: every seed any node stored decrypts on every running node, unless its
    /// version was retired by the operator, Transit is down, or the node learned of the key
    /// less than one discovery interval ago.
    fn check_decryptable(&mut self, sim: &mut Sim, outage: bool) -> Result<(), Violation> {
        let seeds: Vec<StoredSeed> = self
            .apiservers
            .iter()
            .flat_map(|api| api.stored.clone())
            .collect();
        for index in 0..sim.nodes.len() {
            if sim.nodes[index].provider.is_none() {
                continue;
            }
            let interval = sim.nodes[index].config.probe_interval;
            for seed in &seeds {
                if self.retired_key_ids.contains(&seed.key_id) {
                    continue;
                }
                // A node that cannot write its disk cannot record (and so cannot use) a key it
                // has never seen; that is the one accepted exception, and it is transient. It
                // counts when the request arrived as well as when it was answered: a Decrypt
                // that waits for a save retry may end at its deadline after the save succeeded.
                let degraded = |sim: &Sim| {
                    sim.nodes[index].failing_saves > 0
                        || sim.nodes[index]
                            .provider
                            .as_ref()
                            .is_some_and(|provider| provider.health(sim.now).persistence_degraded)
                };
                let degraded_before = degraded(sim);
                let outcome = apiserver::decrypt(sim, index, seed);
                let impaired = outage || degraded_before || degraded(sim);
                self.judge(sim.now, index, interval, seed, outcome, impaired)?;
            }
        }
        Ok(())
    }

    fn judge(
        &mut self,
        now: Instant,
        index: usize,
        interval: Duration,
        seed: &StoredSeed,
        outcome: Result<(), Option<Refusal>>,
        impaired: bool,
    ) -> Result<(), Violation> {
        let unknown_since = &mut self.nodes[index].unknown_since;
        let refusal = match outcome {
            Ok(()) => {
                unknown_since.remove(&seed.key_id);
                return Ok(());
            }
            Err(None) => {
                return Err(violation(
                    "I3",
                    format!("node {index} decrypted a seed to the wrong bytes"),
                ));
            }
            Err(Some(refusal)) => refusal,
        };
        let transient = matches!(
            &refusal,
            Refusal::KeyMetadataRefreshFailed
                | Refusal::StatusUnhealthy
                | Refusal::DeadlineExceeded
        ) || matches!(&refusal, Refusal::Transit { failure, .. } if is_transient(failure.class));
        if transient && impaired {
            return Ok(());
        }
        if refusal == Refusal::UnknownKeyId && impaired {
            unknown_since.remove(&seed.key_id);
            return Ok(());
        }
        if refusal == Refusal::UnknownKeyId {
            let first = *unknown_since.entry(seed.key_id.clone()).or_insert(now);
            // Discovery runs at most once per probe interval; give it two to be safe.
            if now.saturating_duration_since(first) <= interval * 2 + Duration::from_secs(1) {
                return Ok(());
            }
            return Err(violation(
                "I5",
                format!(
                    "node {index} still does not know a key_id another node issued after a discovery interval"
                ),
            ));
        }
        let known = KeyId::parse(&seed.key_id).is_ok();
        Err(violation(
            "I3",
            format!("node {index} refused a stored seed (known key_id: {known}): {refusal:?}"),
        ))
    }
}

fn is_transient(class: FailureClass) -> bool {
    matches!(
        class,
        FailureClass::Unavailable
            | FailureClass::Sealed
            | FailureClass::ConnectionFailed
            | FailureClass::TlsFailed
            | FailureClass::DnsFailed
            | FailureClass::Timeout
            | FailureClass::RateLimited
    )
}

fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        invariant,
        detail: detail.into(),
    }
}
