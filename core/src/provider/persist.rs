//! Registry saves: one write in flight, published only once durable, retried with the same
//! bytes after a failure.
//!
//! Retrying the identical transition is what keeps a failed save safe: whether the failed
//! attempt left the old or the new generation on disk, writing the same bytes again converges
//! on the new one, and the hash chain never forks.
//!
//! A save that has not completed within [`SAVE_DEADLINE`] (a hung disk, a frozen filesystem)
//! counts as failed: persistence is degraded, the published registry keeps serving, and the
//! same bytes are retried later. Its late completion is ignored: whatever it left on disk, the
//! retry converges on the same generation.

use std::time::{Duration, Instant};

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

/// How long a save may take before it counts as failed.
pub(crate) const SAVE_DEADLINE: Duration = Duration::from_secs(10);

/// The save in flight.
#[derive(Debug)]
struct InFlight {
    write: WriteId,
    state: StateFile,
    kind: SaveKind,
    /// When it counts as failed if it has not completed.
    deadline: Instant,
}

/// The single save slot.
#[derive(Debug, Default)]
pub(super) struct SaveSlot {
    in_flight: Option<InFlight>,
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

    /// When the slot needs attention next: the retry of a failed save, or the deadline of the
    /// save in flight.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry
            .as_ref()
            .map(|(_, _, at)| *at)
            .or_else(|| self.in_flight.as_ref().map(|flight| flight.deadline))
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
        let deadline = self
            .last_now
            .checked_add(SAVE_DEADLINE)
            .unwrap_or(self.last_now);
        self.saves.in_flight = Some(InFlight {
            write,
            state,
            kind,
            deadline,
        });
    }

    pub(super) fn handle_saved(
        &mut self,
        now: Instant,
        write: WriteId,
        result: Result<(), SaveFailure>,
    ) {
        // A completion for a save that already counted as failed (overdue) finds another
        // write in flight, or none: it is ignored.
        let Some(flight) = self.saves.in_flight.take() else {
            return;
        };
        if flight.write != write {
            self.saves.in_flight = Some(flight);
            return;
        }
        if result.is_err() {
            self.save_failed(now, flight.state, flight.kind);
            return;
        }
        self.publish(now, flight.state, flight.kind);
    }

    fn save_failed(&mut self, now: Instant, state: StateFile, kind: SaveKind) {
        self.event(Event::StateSaveFailed);
        let retry_at = now + self.config.bootstrap_retry_interval;
        self.saves.retry = Some((state, kind, retry_at));
        self.finish_discovery(now, true);
    }

    /// Counts the save in flight as failed once its deadline has passed.
    fn expire_overdue_save(&mut self, now: Instant) {
        let overdue = self
            .saves
            .in_flight
            .as_ref()
            .is_some_and(|flight| flight.deadline <= now);
        if !overdue {
            return;
        }
        if let Some(flight) = self.saves.in_flight.take() {
            self.save_failed(now, flight.state, flight.kind);
        }
    }

    pub(super) fn retry_save_if_due(&mut self, now: Instant) {
        self.expire_overdue_save(now);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::config::ProviderConfig;
    use crate::health::NotReadyReason;
    use crate::identity::{IdentityScope, IdentityValues};
    use crate::provider::{Input, StoredState};
    use crate::transit::KeyMetadata;

    fn scope() -> IdentityScope {
        IdentityScope::new(IdentityValues {
            provider_name: "kms".into(),
            cluster_id: "c".into(),
            openbao_instance_id: "bao".into(),
            transit_mount_id: "m".into(),
            key_lineage_id: "l".into(),
            transit_mount_path: "transit".into(),
            transit_key_name: "k".into(),
            ..IdentityValues::default()
        })
        .unwrap()
    }

    /// A provider whose stored state lacks its checkpoint, so it starts with a save.
    fn provider_saving(now: Instant) -> Provider {
        let metadata = KeyMetadata {
            key_type: "aes256-gcm96".into(),
            latest_version: 1,
            min_decryption_version: 1,
            versions: [(1, 1_700_000_001)].into_iter().collect(),
            supports_encryption: true,
            supports_decryption: true,
            ..KeyMetadata::default()
        };
        let state = crate::rotation::bootstrap(&scope(), &metadata, 1_800_000_000).unwrap();
        let stored = StoredState {
            state: Some(state.encode().into_bytes()),
            checkpoint: None,
        };
        Provider::new(ProviderConfig::with_defaults(scope(), "test"), now, &stored).unwrap()
    }

    /// The writes the provider asks for until it waits for time.
    fn saves(provider: &mut Provider) -> Vec<WriteId> {
        let mut writes = Vec::new();
        loop {
            match provider.poll_output() {
                Output::SaveState { write, .. } => writes.push(write),
                Output::Timeout(_) => return writes,
                Output::CallTransit { .. } | Output::Respond { .. } | Output::Event(_) => {}
            }
        }
    }

    fn degraded(provider: &Provider, now: Instant) -> bool {
        let report = provider.health(now);
        assert_eq!(
            report.persistence_degraded,
            report.reasons.contains(&NotReadyReason::StateSaveFailed)
        );
        report.persistence_degraded
    }

    #[test]
    fn a_save_past_its_deadline_degrades_persistence_and_is_retried_and_its_late_answer_ignored() {
        let start = crate::test_support::epoch();
        let mut provider = provider_saving(start);
        let first = saves(&mut provider);
        assert_eq!(first.len(), 1);
        assert_eq!(provider.saves.retry_at(), Some(start + SAVE_DEADLINE));

        let just_before = start + SAVE_DEADLINE - Duration::from_millis(1);
        provider.handle_input(just_before, Input::Timeout);
        assert!(!degraded(&provider, just_before));

        let overdue = start + SAVE_DEADLINE;
        provider.handle_input(overdue, Input::Timeout);
        assert!(
            degraded(&provider, overdue),
            "the hung save counts as failed"
        );
        assert!(
            saves(&mut provider).is_empty(),
            "retried only after the interval"
        );

        let retry = overdue + provider.config.bootstrap_retry_interval;
        provider.handle_input(retry, Input::Timeout);
        let second = saves(&mut provider);
        assert_eq!(second.len(), 1, "the same state is written again");
        assert_ne!(second[0], first[0]);

        // The hung write finally returns: ignored, the retry is still the one in flight.
        let late = Input::StateSaved {
            write: first[0],
            result: Ok(()),
        };
        provider.handle_input(retry, late);
        assert!(provider.saves.in_flight.is_some());

        let done = Input::StateSaved {
            write: second[0],
            result: Ok(()),
        };
        provider.handle_input(retry, done);
        assert!(
            !degraded(&provider, retry),
            "a successful retry ends the degradation"
        );
        assert!(!provider.saves.busy());
    }
}
