//! Registry saves: one write in flight, published only once durable, retried with the same
//! bytes after a failure.
//!
//! Retrying the identical transition is what keeps a failed save safe: whether the failed
//! attempt left the old or the new generation on disk, writing the same bytes again converges
//! on the new one, and the hash chain never forks.

use std::time::Instant;

use super::Provider;
use super::io::{Event, Output, SaveFailure, WriteId};
use crate::registry::{Checkpoint, SnapshotState, StateFile};

/// Why a state is being saved: decides what happens once it is durable.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum SaveKind {
    /// Generation 1 of a new registry.
    Bootstrap,
    /// The checkpoint lagged or was missing; the state itself is unchanged.
    Checkpoint,
    /// New identities or observation counts.
    Observation,
    /// A candidate becomes active.
    Promotion,
}

/// The single save slot.
#[derive(Debug, Default)]
pub(super) struct SaveSlot {
    in_flight: Option<(WriteId, StateFile, SaveKind)>,
    /// A failed save and when to retry it.
    retry: Option<(StateFile, SaveKind, Instant)>,
}

impl SaveSlot {
    /// Whether a save is in flight or waiting for a retry; no new transition is computed then.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.is_some() || self.retry.is_some()
    }

    /// Whether saves are failing.
    pub(super) fn degraded(&self) -> bool {
        self.retry.is_some()
    }

    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry.as_ref().map(|(_, _, at)| *at)
    }
}

impl Provider {
    /// Asks the runtime to write `state` and its checkpoint.
    pub(super) fn save(&mut self, state: StateFile, kind: SaveKind) {
        let write = self.next_write_id();
        let checkpoint = Checkpoint::for_state(&state).encode();
        self.outputs.push_back(Output::SaveState {
            write,
            state: state.encode(),
            checkpoint,
        });
        self.saves.in_flight = Some((write, state, kind));
    }

    pub(super) fn handle_saved(
        &mut self,
        now: Instant,
        write: WriteId,
        result: Result<(), SaveFailure>,
    ) {
        let Some((expected, state, kind)) = self.saves.in_flight.take() else {
            return;
        };
        if expected != write {
            self.saves.in_flight = Some((expected, state, kind));
            return;
        }
        if result.is_err() {
            self.event(Event::StateSaveFailed);
            let retry_at = now + self.config.bootstrap_retry_interval;
            self.saves.retry = Some((state, kind, retry_at));
            self.finish_discovery(now, true);
            return;
        }
        self.publish(now, state, kind);
    }

    pub(super) fn retry_save_if_due(&mut self, now: Instant) {
        let due = self
            .saves
            .retry
            .as_ref()
            .is_some_and(|(_, _, at)| *at <= now);
        if !due || self.saves.in_flight.is_some() {
            return;
        }
        if let Some((state, kind, _)) = self.saves.retry.take() {
            self.save(state, kind);
        }
    }

    /// Makes a durable state the registry in use.
    fn publish(&mut self, now: Instant, state: StateFile, kind: SaveKind) {
        let previous = self.published.replace(state);
        let Some(current) = self.published.clone() else {
            return;
        };
        if kind != SaveKind::Checkpoint {
            self.event(Event::RegistryPublished {
                generation: current.generation(),
            });
        }
        for record in current.records() {
            let is_new = previous
                .as_ref()
                .is_none_or(|old| old.record_by_key_id(record.key_id()).is_none());
            if is_new && record.state() == SnapshotState::Pending {
                self.event(Event::KeyObserved {
                    version: record.version(),
                    key_id: record.key_id().clone(),
                });
            }
        }
        if let (SaveKind::Promotion, Some(old)) = (kind, previous) {
            self.event(Event::KeyPromoted {
                previous_key_id: old.active_key_id().clone(),
                previous_version: old.active().version(),
                key_id: current.active_key_id().clone(),
                version: current.active().version(),
            });
        }
        if kind == SaveKind::Observation {
            self.start_delay_if_stable(now);
        }
        // A newly active key serves Encrypt only after its own round trip succeeded: during the
        // delay for a promotion, right now for a bootstrap.
        match kind {
            SaveKind::Promotion => {
                let interval = self.config.deep_probe_interval;
                self.probes
                    .adopt_promoted_key(now, current.active_key_id(), interval);
            }
            SaveKind::Bootstrap => self.probes.reset_deep_probe(now),
            SaveKind::Checkpoint | SaveKind::Observation => {}
        }
        self.finish_discovery(now, false);
    }
}
