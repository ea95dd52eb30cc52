//! Property tests of rotation, rollback and mixed-release safety: random event sequences on
//! 1–5 simulated nodes sharing one Transit key, with every invariant of
//! `docs/rotation-safety.md` checked after every step.
//!
//! The case count defaults to a value that keeps `cargo test` short; set
//! `BAO_KMS_PROPTEST_CASES` (for example to 5000) for long runs.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use bao_kms_core::compat::{FormatsInUse, Manifest, check_move};
use bao_kms_core::registry::operator::{restore_versions, retire_versions};
use bao_kms_core::registry::{Checkpoint, SnapshotState, StateFile};
use bao_kms_core::{FailureClass, KeyVersion};
use bao_kms_testkit::invariants::{Checker, Violation};
use bao_kms_testkit::sim::Sim;
use proptest::prelude::*;

/// One thing that can happen to the fleet.
#[derive(Clone, Debug)]
enum Op {
    /// kube-apiserver on a node polls Status (and encrypts a new seed on a key change).
    Poll(usize),
    /// Time passes.
    Advance(u64),
    /// An administrator rotates the Transit key.
    Rotate,
    /// A node restarts (stop, start with the same disk).
    Restart(usize),
    /// A node crashes and stays down until a later restart or upgrade.
    Crash(usize),
    /// The next saves of a node fail.
    FailSaves(usize, u32),
    /// OpenBao becomes unreachable, or reachable again.
    Outage(bool),
    /// The wall clock jumps (seconds, may be negative).
    WallClockJump(i32),
    /// `min_encryption_version` is raised to the latest version.
    RaiseMinEncryption,
    /// The runbook retirement: retire old versions on every node, then raise
    /// `min_decryption_version`.
    RetireEverywhere,
    /// The runbook restore: lower `min_decryption_version`, restore on every node.
    RestoreEverywhere,
    /// A node moves to the preview release manifest (a rollback) if the check allows it.
    RollBack(usize),
    /// A node moves to this release.
    Upgrade(usize),
}

fn op(nodes: usize) -> impl Strategy<Value = Op> {
    let node = 0..nodes;
    prop_oneof![
        6 => node.clone().prop_map(Op::Poll),
        6 => (1_u64..40).prop_map(Op::Advance),
        2 => Just(Op::Rotate),
        1 => node.clone().prop_map(Op::Restart),
        1 => node.clone().prop_map(Op::Crash),
        1 => (node.clone(), 1_u32..3).prop_map(|(n, c)| Op::FailSaves(n, c)),
        1 => any::<bool>().prop_map(Op::Outage),
        1 => (-7200_i32..7200).prop_map(Op::WallClockJump),
        1 => Just(Op::RaiseMinEncryption),
        1 => Just(Op::RetireEverywhere),
        1 => Just(Op::RestoreEverywhere),
        1 => node.clone().prop_map(Op::RollBack),
        1 => node.prop_map(Op::Upgrade),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (1_usize..=5).prop_flat_map(|nodes| (Just(nodes), prop::collection::vec(op(nodes), 1..80)))
}

/// A release older than this one: it reads everything but retirement records.
fn preview_manifest() -> Manifest {
    let mut manifest = Manifest::this_release();
    manifest.release = "0.1.0-preview.3".into();
    manifest.reads.record_states.remove("removed");
    manifest.reads.config_additions.clear();
    manifest
}

struct Fleet {
    sim: Sim,
    checker: Checker,
    outage: bool,
}

impl Fleet {
    fn new(nodes: usize) -> Self {
        let mut sim = Sim::new(nodes);
        for index in 0..nodes {
            sim.start(index).unwrap();
        }
        sim.advance(Duration::from_secs(1));
        Self {
            sim,
            checker: Checker::new(nodes),
            outage: false,
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), Violation> {
        match *op {
            Op::Poll(node) => self.checker.poll(&mut self.sim, node)?,
            Op::Advance(seconds) => self.sim.advance(Duration::from_secs(seconds)),
            Op::Rotate => {
                self.sim.transit.rotate(self.sim.wall_unix);
            }
            Op::Restart(node) => {
                self.sim.stop(node);
                self.start(node)?;
            }
            Op::Crash(node) => self.sim.stop(node),
            Op::FailSaves(node, count) => self.sim.nodes[node].failing_saves = count,
            Op::Outage(down) => {
                self.outage = down;
                self.sim.transit.outage = down.then_some(FailureClass::ConnectionFailed);
            }
            Op::WallClockJump(seconds) => {
                self.sim.wall_unix = (self.sim.wall_unix + i64::from(seconds)).max(1);
            }
            Op::RaiseMinEncryption => {
                self.sim.transit.min_encryption_version = self.sim.transit.latest_version;
            }
            Op::RetireEverywhere => self.retire_everywhere()?,
            Op::RestoreEverywhere => self.restore_everywhere()?,
            Op::RollBack(node) => self.change_release(node, preview_manifest())?,
            Op::Upgrade(node) => self.change_release(node, Manifest::this_release())?,
        }
        self.checker.check(&mut self.sim, self.outage)
    }

    fn start(&mut self, node: usize) -> Result<(), Violation> {
        self.sim.start(node).map_err(|error| Violation {
            invariant: "I7",
            detail: format!("node {node} could not restart from its own disk: {error:?}"),
        })
    }

    fn disk_state(&self, node: usize) -> Option<StateFile> {
        self.sim.nodes[node]
            .disk
            .state
            .as_ref()
            .map(|bytes| StateFile::decode(bytes).unwrap())
    }

    fn write_disk(&mut self, node: usize, state: &StateFile) {
        self.sim.nodes[node]
            .disk_history
            .push(state.encode().into_bytes());
        let disk = &mut self.sim.nodes[node].disk;
        disk.state = Some(state.encode().into_bytes());
        disk.checkpoint = Some(Checkpoint::for_state(state).encode().into_bytes());
    }

    /// The runbook: retire below the smallest active version of the fleet on every node
    /// (each node stopped while its state changes), then raise `min_decryption_version`.
    fn retire_everywhere(&mut self) -> Result<(), Violation> {
        let nodes = self.sim.nodes.len();
        let all_current = self
            .sim
            .nodes
            .iter()
            .all(|n| n.manifest == Manifest::this_release());
        let states: Vec<Option<StateFile>> = (0..nodes).map(|n| self.disk_state(n)).collect();
        let Some(before) = states
            .iter()
            .map(|s| s.as_ref().map(|s| s.active().version()))
            .min()
            .flatten()
        else {
            return Ok(());
        };
        if !all_current || before.get() <= 1 || states.iter().any(Option::is_none) {
            return Ok(());
        }
        for node in 0..nodes {
            let was_running = self.sim.nodes[node].provider.is_some();
            self.sim.stop(node);
            let state = self.disk_state(node).unwrap();
            if let Some(next) = retire_versions(&state, before).unwrap() {
                for record in next
                    .records()
                    .iter()
                    .filter(|r| r.state() == SnapshotState::Removed)
                {
                    self.checker
                        .retired_key_ids
                        .insert(record.key_id().to_string());
                    self.checker
                        .restored_key_ids
                        .remove(record.key_id().as_str());
                }
                self.write_disk(node, &next);
            }
            if was_running {
                self.start(node)?;
            }
        }
        let transit = &mut self.sim.transit;
        transit.min_decryption_version =
            transit.min_decryption_version.max(u64::from(before.get()));
        Ok(())
    }

    fn restore_everywhere(&mut self) -> Result<(), Violation> {
        if self.checker.retired_key_ids.is_empty() {
            return Ok(());
        }
        self.sim.transit.min_decryption_version = 1;
        for node in 0..self.sim.nodes.len() {
            let Some(state) = self.disk_state(node) else {
                continue;
            };
            let removed: Vec<KeyVersion> = state
                .records()
                .iter()
                .filter(|r| r.state() == SnapshotState::Removed)
                .map(|r| r.version())
                .collect();
            if removed.is_empty() {
                continue;
            }
            let was_running = self.sim.nodes[node].provider.is_some();
            self.sim.stop(node);
            let next = restore_versions(&state, &removed).unwrap();
            for record in state
                .records()
                .iter()
                .filter(|r| r.state() == SnapshotState::Removed)
            {
                self.checker
                    .restored_key_ids
                    .insert(record.key_id().to_string());
                self.checker
                    .retired_key_ids
                    .remove(record.key_id().as_str());
            }
            self.write_disk(node, &next);
            if was_running {
                self.start(node)?;
            }
        }
        Ok(())
    }

    /// I9: a move is made only when the manifest check allows it, and then the node starts;
    /// a move the check refuses names a real reason (rotation pending or an unreadable format).
    fn change_release(&mut self, node: usize, target: Manifest) -> Result<(), Violation> {
        let current = self.sim.nodes[node].manifest.clone();
        let in_use = self
            .disk_state(node)
            .map(|s| FormatsInUse::from_state(&s))
            .unwrap_or_default();
        let verdict = check_move(&current, &target, &in_use);
        let has_removed = in_use.record_states.contains("removed");
        if has_removed && !target.reads.record_states.contains("removed") && verdict.is_safe() {
            return Err(Violation {
                invariant: "I9",
                detail: format!(
                    "moving node {node} to a release that cannot read retirement records was allowed"
                ),
            });
        }
        if !verdict.is_safe() {
            return Ok(());
        }
        self.sim.stop(node);
        self.sim.nodes[node].manifest = target;
        self.start(node).map_err(|violation| Violation {
            invariant: "I9",
            detail: format!(
                "a move the manifests allowed failed to start: {}",
                violation.detail
            ),
        })
    }
}

fn cases() -> u32 {
    std::env::var("BAO_KMS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_invariant_holds_after_every_step_of_any_fleet_history((nodes, ops) in scenario()) {
        let mut fleet = Fleet::new(nodes);
        for (step, op) in ops.iter().enumerate() {
            if let Err(violation) = fleet.apply(op) {
                prop_assert!(false, "step {step} {op:?}: {} {}", violation.invariant, violation.detail);
            }
        }
        // Quiesce: OpenBao back, every node up and on this release, time for discovery and
        // probes; then every seed must decrypt on every node.
        fleet.apply(&Op::Outage(false)).map_err(|v| TestCaseError::fail(format!("{v:?}")))?;
        for node in 0..nodes {
            if fleet.sim.nodes[node].provider.is_none() {
                fleet.sim.nodes[node].manifest = Manifest::this_release();
                fleet.start(node).map_err(|v| TestCaseError::fail(format!("{v:?}")))?;
            }
        }
        fleet.apply(&Op::Advance(60)).map_err(|v| TestCaseError::fail(format!("{v:?}")))?;
        fleet.apply(&Op::Advance(60)).map_err(|v| TestCaseError::fail(format!("{v:?}")))?;
    }
}
