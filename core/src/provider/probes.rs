//! The metadata and deep probes, what their results mean for health, and the activation delay.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Provider;
use super::io::{Event, ProbeKind};
use super::kms::CallPurpose;
use super::persist::SaveKind;
use crate::ciphertext::TransitCiphertext;
use crate::config::ProviderConfig;
use crate::digest::sha256;
use crate::health::{Breaker, HealthReport, NotReadyReason};
use crate::key_id::KeyId;
use crate::limits;
use crate::plaintext::Plaintext;
use crate::registry::{SnapshotState, StateFile};
use crate::rotation::{self, ObserveMode};
use crate::transit::{FailureClass, KeyMetadata, TransitFailure, TransitRequest, TransitResponse};
use crate::version::KeyVersion;

/// AAD of the deep probe; distinct from every Kubernetes AAD, so a probe ciphertext can never be
/// passed off as a stored DEK seed.
const STATUS_PROBE_AAD: &str = "openbao-kubernetes-kms/status-probe/v1";
/// Size of the deep probe plaintext, the size of a DEK seed.
const PROBE_PLAINTEXT_BYTES: usize = 32;

/// One step of a probe waiting for Transit.
#[derive(Debug)]
pub(super) enum ProbeCall {
    KeysConfig {
        mode: ObserveMode,
    },
    KeyMetadata {
        mode: ObserveMode,
    },
    DeepEncrypt {
        key_id: KeyId,
        version: KeyVersion,
        plaintext: Plaintext,
    },
    DeepDecrypt {
        key_id: KeyId,
        plaintext: Plaintext,
    },
}

/// Probe scheduling and the health facts the probes established.
#[derive(Debug)]
pub(super) struct Probes {
    started: Instant,
    next_metadata_at: Instant,
    metadata_in_flight: bool,
    /// When the last metadata probe ended; a delay deadline triggers one probe after it.
    metadata_finished_at: Option<Instant>,
    next_deep_at: Instant,
    deep_in_flight: bool,
    /// The key whose round trip last succeeded.
    deep_ok_for: Option<KeyId>,
    /// The stable candidate whose round trip succeeded during its activation delay, so it can
    /// serve Encrypt the moment it is promoted.
    candidate_proven: Option<KeyId>,
    deep_failure: Option<(NotReadyReason, &'static str)>,
    last_metadata_ok: Option<Instant>,
    metadata_failure: Option<(NotReadyReason, &'static str)>,
    upsert_allowed: bool,
    /// Metadata that cannot be accepted at all.
    fatal: Option<NotReadyReason>,
    /// Problems that make Status unhealthy while observation continues.
    blocking: Vec<NotReadyReason>,
    metadata_breaker: Breaker,
    deep_breaker: Breaker,
    /// The stable candidate and when its activation delay ends. Process-local and monotonic
    /// on purpose: a restart, or a wall clock that jumps, never shortens the delay.
    delay: Option<(KeyVersion, Instant)>,
    probe_plaintexts: u64,
}

impl Probes {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            started: now,
            next_metadata_at: now,
            metadata_in_flight: false,
            metadata_finished_at: None,
            next_deep_at: now,
            deep_in_flight: false,
            deep_ok_for: None,
            candidate_proven: None,
            deep_failure: None,
            last_metadata_ok: None,
            metadata_failure: None,
            upsert_allowed: false,
            fatal: None,
            blocking: Vec::new(),
            metadata_breaker: Breaker::default(),
            deep_breaker: Breaker::default(),
            delay: None,
            probe_plaintexts: 0,
        }
    }

    /// The end of the activation delay, while no probe has run since it passed: that one
    /// probe may promote; if it cannot (a save is pending, a rollback is seen), later attempts
    /// follow the normal probe schedule.
    fn pending_delay_end(&self) -> Option<Instant> {
        let (_, deadline) = self.delay?;
        let probed_since = self
            .metadata_finished_at
            .is_some_and(|finished| finished >= deadline);
        (!probed_since).then_some(deadline)
    }

    pub(super) fn metadata_due(&self, now: Instant) -> bool {
        let delay_over = self
            .pending_delay_end()
            .is_some_and(|deadline| deadline <= now);
        !self.metadata_in_flight
            && !self.metadata_breaker.is_open(now)
            && (self.next_metadata_at <= now || delay_over)
    }

    pub(super) fn deep_due(&self, now: Instant, published: bool) -> bool {
        published
            && !self.deep_in_flight
            && !self.deep_breaker.is_open(now)
            && self.last_metadata_ok.is_some()
            && self.next_deep_at <= now
    }

    /// A KMS call just succeeded: close open breakers and probe at once instead of waiting out
    /// the cooldown, so recovery after an outage is not delayed by up to 30 s.
    pub(super) fn backend_answered(&mut self, now: Instant) {
        if self.metadata_breaker.is_open(now) || self.deep_breaker.is_open(now) {
            self.metadata_breaker = Breaker::default();
            self.deep_breaker = Breaker::default();
            self.next_metadata_at = self.next_metadata_at.min(now);
            self.next_deep_at = self.next_deep_at.min(now);
        }
    }

    /// After a promotion: the new active key keeps the proof it earned as a candidate, so
    /// Status never turns unhealthy at a rotation; without one it must prove itself first.
    pub(super) fn adopt_promoted_key(&mut self, now: Instant, active: &KeyId, interval: Duration) {
        if self.candidate_proven.take().as_ref() == Some(active) {
            self.deep_ok_for = Some(active.clone());
            self.deep_failure = None;
            self.next_deep_at = now + interval;
        } else {
            self.reset_deep_probe(now);
        }
    }

    pub(super) fn reset_deep_probe(&mut self, now: Instant) {
        self.deep_ok_for = None;
        self.deep_failure = None;
        self.next_deep_at = now;
    }

    pub(super) fn activation_deadline(&self) -> Option<Instant> {
        self.delay.map(|(_, deadline)| deadline)
    }

    /// Every instant at which something becomes due.
    pub(super) fn deadlines(&self, published: bool, config: &ProviderConfig) -> Vec<Instant> {
        let mut out = Vec::new();
        // While a breaker is open, its probe waits for the cooldown, not for its schedule.
        if !self.metadata_in_flight {
            let delay_end = self.pending_delay_end();
            let due = delay_end.map_or(self.next_metadata_at, |end| end.min(self.next_metadata_at));
            out.push(self.metadata_breaker.open_until(due).unwrap_or(due));
        }
        if published && !self.deep_in_flight && self.last_metadata_ok.is_some() {
            let due = self.next_deep_at;
            out.push(self.deep_breaker.open_until(due).unwrap_or(due));
        }
        // Wake up when the cache turns stale, so the health change is reported on time.
        out.extend(
            self.last_metadata_ok
                .map(|ok| ok + config.status_max_staleness + TICK),
        );
        out
    }

    /// The earliest instant at which the passing of time alone can change the health report:
    /// the cache turning stale or an open breaker closing.
    pub(super) fn health_changes_by_time(
        &self,
        now: Instant,
        config: &ProviderConfig,
    ) -> Option<Instant> {
        // Once stale, the cache stays stale until an input (a probe answer) changes it.
        let stale_at = self
            .last_metadata_ok
            .map(|ok| ok + config.status_max_staleness)
            .filter(|at| *at >= now);
        [
            stale_at,
            self.metadata_breaker.open_until(now),
            self.deep_breaker.open_until(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn far_future(&self) -> Instant {
        self.started + Duration::from_secs(365 * 24 * 3600)
    }

    pub(super) fn report(
        &self,
        now: Instant,
        config: &ProviderConfig,
        published: Option<&StateFile>,
        persistence_degraded: bool,
    ) -> HealthReport {
        let mut reasons = Vec::new();
        let cache_age = self
            .last_metadata_ok
            .map(|ok| now.saturating_duration_since(ok));
        let stale = cache_age.is_some_and(|age| age > config.status_max_staleness);
        match (published, cache_age) {
            (None, _) => reasons.push(NotReadyReason::StateUnavailable),
            (Some(_), None) => reasons.push(NotReadyReason::MetadataUnverified),
            (Some(_), Some(_)) if stale => reasons.push(NotReadyReason::StatusStale),
            (Some(_), Some(_)) => {}
        }
        reasons.extend(self.metadata_failure.map(|(reason, _)| reason));
        if self.upsert_allowed {
            reasons.push(NotReadyReason::UpsertAllowed);
        }
        reasons.extend(self.fatal);
        reasons.extend(self.blocking.iter().copied());
        if let Some(state) = published {
            let proven = self.deep_ok_for.as_ref() == Some(state.active_key_id());
            match (proven, self.deep_failure) {
                (false, Some((reason, _))) => {
                    reasons.push(reason);
                    reasons.push(NotReadyReason::DeepProbePending);
                }
                (false, None) => reasons.push(NotReadyReason::DeepProbePending),
                (true, Some((reason, _))) => reasons.push(reason),
                (true, None) => {}
            }
        }
        let breaker_open = self.metadata_breaker.is_open(now) || self.deep_breaker.is_open(now);
        if breaker_open {
            reasons.push(NotReadyReason::CircuitBreakerOpen);
        }
        if persistence_degraded {
            reasons.push(NotReadyReason::StateSaveFailed);
        }
        reasons.sort();
        reasons.dedup();
        let healthy = reasons.iter().all(|reason| !reason.blocks_status());
        let rotation_state = match published {
            None => crate::health::RotationState::Unknown,
            Some(state)
                if state
                    .records()
                    .iter()
                    .any(|r| r.state() == SnapshotState::Pending) =>
            {
                crate::health::RotationState::Pending
            }
            Some(_) => crate::health::RotationState::Active,
        };
        HealthReport {
            healthy,
            reasons,
            cache_age,
            stale,
            rotation_state,
            persistence_degraded,
            breaker_open,
            metadata_error_class: self.metadata_failure.map(|(_, class)| class),
            deep_error_class: self.deep_failure.map(|(_, class)| class),
        }
    }

    /// Whether the only thing keeping Status unhealthy is the pending deep probe of a newly
    /// active key (Encrypt then says "active key unavailable").
    pub(super) fn only_deep_probe_missing(
        &self,
        now: Instant,
        config: &ProviderConfig,
        published: Option<&StateFile>,
    ) -> bool {
        let report = self.report(now, config, published, false);
        report
            .reasons
            .iter()
            .filter(|reason| reason.blocks_status())
            .all(|reason| *reason == NotReadyReason::DeepProbePending)
    }
}

/// Smallest step past a deadline, so a wake-up lands strictly after it.
const TICK: Duration = Duration::from_millis(1);

impl Provider {
    pub(super) fn start_metadata_probe(&mut self, now: Instant, mode: ObserveMode) {
        if self.probes.metadata_in_flight {
            // Discovery simply waits for the probe already running.
            return;
        }
        if self.probes.metadata_breaker.is_open(now) {
            if mode == ObserveMode::Discover {
                self.finish_discovery(now, true);
            }
            return;
        }
        self.probes.metadata_in_flight = true;
        let deadline = now + self.config.request_timeout;
        let purpose = CallPurpose::Probe(ProbeCall::KeysConfig { mode });
        self.call(deadline, TransitRequest::ReadKeysConfig, purpose);
    }

    pub(super) fn start_deep_probe(&mut self, now: Instant) {
        let Some(state) = self.published.as_ref() else {
            return;
        };
        // During an activation delay the candidate is proven first, with its own version.
        let candidate = self.probes.delay.and_then(|(version, _)| {
            let record = state.record_by_version(version)?;
            let unproven = self.probes.candidate_proven.as_ref() != Some(record.key_id());
            (record.state() == SnapshotState::Pending && unproven)
                .then(|| (record.key_id().clone(), version))
        });
        let (key_id, version) =
            candidate.unwrap_or_else(|| (state.active_key_id().clone(), state.active().version()));
        self.probes.deep_in_flight = true;
        let plaintext = self.next_probe_plaintext();
        let request = TransitRequest::Encrypt {
            plaintext: plaintext.clone(),
            key_version: version,
            associated_data: STANDARD.encode(STATUS_PROBE_AAD),
        };
        let deadline = now + self.config.request_timeout;
        let purpose = CallPurpose::Probe(ProbeCall::DeepEncrypt {
            key_id,
            version,
            plaintext,
        });
        self.call(deadline, request, purpose);
    }

    /// Routes a finished Transit call to whoever waits for it.
    pub(super) fn continue_probe(
        &mut self,
        now: Instant,
        step: ProbeCall,
        result: Result<TransitResponse, TransitFailure>,
        unix: i64,
    ) {
        match (step, result) {
            (
                ProbeCall::KeysConfig { mode },
                Ok(TransitResponse::KeysConfig { disable_upsert }),
            ) => {
                self.probes.upsert_allowed = !disable_upsert;
                let deadline = now + self.config.request_timeout;
                let purpose = CallPurpose::Probe(ProbeCall::KeyMetadata { mode });
                self.call(deadline, TransitRequest::ReadKeyMetadata, purpose);
            }
            (ProbeCall::KeysConfig { .. }, other) => {
                let class = failure_class(&other);
                self.metadata_probe_failed(now, NotReadyReason::UpsertCheckFailed, class);
            }
            (ProbeCall::KeyMetadata { mode }, Ok(TransitResponse::KeyMetadata(metadata))) => {
                self.metadata_probe_succeeded(now, unix, &metadata, mode);
            }
            (ProbeCall::KeyMetadata { .. }, other) => {
                let class = failure_class(&other);
                self.metadata_probe_failed(now, NotReadyReason::MetadataReadFailed, class);
            }
            (
                ProbeCall::DeepEncrypt {
                    key_id,
                    version,
                    plaintext,
                },
                result,
            ) => {
                self.deep_encrypted(now, key_id, version, plaintext, result);
            }
            (ProbeCall::DeepDecrypt { key_id, plaintext }, result) => {
                let outcome = match result {
                    Ok(TransitResponse::Decrypted { plaintext: answer }) if answer == plaintext => {
                        Ok(())
                    }
                    Ok(_) => Err((NotReadyReason::DeepProbeInvalid, "invalid_response")),
                    Err(failure) => Err((NotReadyReason::DeepProbeFailed, failure.class.as_str())),
                };
                self.deep_probe_finished(now, &key_id, outcome);
            }
        }
    }

    fn deep_encrypted(
        &mut self,
        now: Instant,
        key_id: KeyId,
        version: KeyVersion,
        plaintext: Plaintext,
        result: Result<TransitResponse, TransitFailure>,
    ) {
        let ciphertext = match result {
            Ok(TransitResponse::Encrypted {
                ciphertext,
                key_version,
            }) => {
                let parsed =
                    TransitCiphertext::parse(ciphertext.as_bytes())
                        .ok()
                        .filter(|parsed| {
                            parsed.version() == version
                                && key_version == u64::from(version.get())
                                && parsed.len() <= limits::MAX_CIPHERTEXT_BYTES
                        });
                let Some(parsed) = parsed else {
                    let invalid = (NotReadyReason::DeepProbeInvalid, "invalid_response");
                    return self.deep_probe_finished(now, &key_id, Err(invalid));
                };
                parsed
            }
            Ok(_) => {
                let invalid = (NotReadyReason::DeepProbeInvalid, "invalid_response");
                return self.deep_probe_finished(now, &key_id, Err(invalid));
            }
            Err(failure) => {
                let failed = (NotReadyReason::DeepProbeFailed, failure.class.as_str());
                return self.deep_probe_finished(now, &key_id, Err(failed));
            }
        };
        let request = TransitRequest::Decrypt {
            ciphertext,
            associated_data: STANDARD.encode(STATUS_PROBE_AAD),
        };
        let deadline = now + self.config.request_timeout;
        let purpose = CallPurpose::Probe(ProbeCall::DeepDecrypt { key_id, plaintext });
        self.call(deadline, request, purpose);
    }

    fn deep_probe_finished(
        &mut self,
        now: Instant,
        key_id: &KeyId,
        outcome: Result<(), (NotReadyReason, &'static str)>,
    ) {
        self.probes.deep_in_flight = false;
        let still_active = self.published.as_ref().map(StateFile::active_key_id) == Some(key_id);
        let breaker = self.config.breaker;
        self.probes
            .deep_breaker
            .record(now, outcome.is_ok(), &breaker);
        self.event(Event::ProbeFinished {
            kind: ProbeKind::Deep,
            failure: outcome.err().map(|(_, class)| class),
        });
        if !still_active {
            self.candidate_probe_finished(now, key_id, outcome.is_ok());
            return;
        }
        match outcome {
            Ok(()) => {
                self.probes.deep_ok_for = Some(key_id.clone());
                self.probes.deep_failure = None;
                self.probes.next_deep_at = now + self.config.deep_probe_interval;
            }
            Err(failure) => {
                if failure.0 == NotReadyReason::DeepProbeInvalid {
                    self.probes.deep_ok_for = None;
                }
                self.probes.deep_failure = Some(failure);
                self.probes.next_deep_at = now + self.config.bootstrap_retry_interval;
            }
        }
    }

    /// A deep probe of a key that is not the active one: the pending candidate (remember the
    /// proof) or a key that was active when the probe started (probe the new one now).
    fn candidate_probe_finished(&mut self, now: Instant, key_id: &KeyId, success: bool) {
        let is_candidate = self
            .published
            .as_ref()
            .and_then(|state| state.record_by_key_id(key_id))
            .is_some_and(|record| record.state() == SnapshotState::Pending);
        if !is_candidate {
            self.probes.next_deep_at = now;
            return;
        }
        if !success {
            self.probes.candidate_proven = None;
            self.probes.next_deep_at = now + self.config.bootstrap_retry_interval;
            return;
        }
        self.probes.candidate_proven = Some(key_id.clone());
        let active_proven = self.published.as_ref().is_some_and(|state| {
            self.probes.deep_ok_for.as_ref() == Some(state.active_key_id())
                && self.probes.deep_failure.is_none()
        });
        if active_proven {
            self.probes.next_deep_at = now + self.config.deep_probe_interval;
        }
        // A delay that ended while the proof was missing promotes at the next probe, now.
        if self
            .probes
            .delay
            .is_some_and(|(_, deadline)| deadline <= now)
        {
            self.probes.next_metadata_at = self.probes.next_metadata_at.min(now);
        }
    }

    fn metadata_probe_failed(&mut self, now: Instant, reason: NotReadyReason, class: &'static str) {
        self.probes.metadata_failure = Some((reason, class));
        self.end_metadata_probe(now, false);
        self.finish_discovery(now, true);
    }

    fn metadata_probe_succeeded(
        &mut self,
        now: Instant,
        unix: i64,
        metadata: &KeyMetadata,
        mode: ObserveMode,
    ) {
        self.probes.last_metadata_ok = Some(now);
        self.probes.metadata_failure = None;
        let saving = self.evaluate_metadata(now, unix, metadata, mode);
        self.end_metadata_probe(now, true);
        let deep_unproven = self.published.as_ref().is_some_and(|state| {
            self.probes.deep_ok_for.as_ref() != Some(state.active_key_id())
                || self.probes.deep_failure.is_some()
        });
        if deep_unproven {
            self.probes.next_deep_at = self.probes.next_deep_at.min(now);
        }
        if !saving {
            // Discovery that needs no save is answered now; otherwise once the save lands.
            self.finish_discovery(now, false);
        }
    }

    fn end_metadata_probe(&mut self, now: Instant, success: bool) {
        self.probes.metadata_in_flight = false;
        self.probes.metadata_finished_at = Some(now);
        let breaker = self.config.breaker;
        self.probes.metadata_breaker.record(now, success, &breaker);
        let settled = success && self.published.is_some() && self.probes.fatal.is_none();
        let interval = if settled {
            self.config.probe_interval
        } else {
            self.config.bootstrap_retry_interval
        };
        self.probes.next_metadata_at = now + interval;
        let failure = self
            .probes
            .metadata_failure
            .filter(|_| !success)
            .map(|(_, class)| class);
        self.event(Event::ProbeFinished {
            kind: ProbeKind::Metadata,
            failure,
        });
    }

    /// Applies a metadata read; returns whether a save was started.
    fn evaluate_metadata(
        &mut self,
        now: Instant,
        unix: i64,
        metadata: &KeyMetadata,
        mode: ObserveMode,
    ) -> bool {
        let Some(current) = self.published.clone() else {
            if self.saves.busy() {
                return true;
            }
            return match rotation::bootstrap(&self.config.identity, metadata, unix) {
                Ok(first) => {
                    self.probes.fatal = None;
                    self.save(first, SaveKind::Bootstrap);
                    true
                }
                Err(refusal) => {
                    self.probes.fatal = Some(NotReadyReason::StatePublishFailed);
                    self.event(Event::BootstrapRefused(refusal));
                    false
                }
            };
        };
        let verdict = match rotation::observe(&current, metadata, unix, self.policy, mode) {
            Ok(verdict) => verdict,
            Err(error) => {
                self.probes.fatal = Some(error.reason());
                self.probes.blocking.clear();
                self.probes.delay = None;
                return false;
            }
        };
        self.probes.fatal = None;
        self.probes.blocking = verdict.blocking;
        let mut saving = false;
        if let Some(next) = verdict.next {
            if self.saves.busy() {
                // The new identities wait for the pending save; a parked Decrypt must then
                // hear "retry", not "unknown key".
                self.discovery.save_deferred = true;
            } else {
                self.save(next, SaveKind::Observation);
            }
            saving = true;
        }
        if mode == ObserveMode::Probe {
            saving |= self.advance_activation(now, unix, &current, verdict.stable_candidate);
        }
        saving
    }

    /// Runs the activation delay for a stable candidate and promotes it once the delay is over.
    fn advance_activation(
        &mut self,
        now: Instant,
        unix: i64,
        current: &StateFile,
        candidate: Option<KeyVersion>,
    ) -> bool {
        let Some(candidate) = candidate else {
            self.probes.delay = None;
            return false;
        };
        let deadline = match self.probes.delay {
            Some((version, deadline)) if version == candidate => deadline,
            Some(_) | None => {
                self.probes.delay = Some((candidate, now + self.config.activation_delay));
                self.probes.next_deep_at = self.probes.next_deep_at.min(now);
                return false;
            }
        };
        let rolled_back = self
            .probes
            .blocking
            .contains(&NotReadyReason::VersionRollback);
        if now < deadline || self.saves.busy() || rolled_back {
            return false;
        }
        let candidate_key = current
            .record_by_version(candidate)
            .map(|record| record.key_id());
        if candidate_key.is_none() || self.probes.candidate_proven.as_ref() != candidate_key {
            // Promote only a key whose round trip already succeeded, so Encrypt never pauses.
            self.probes.next_deep_at = self.probes.next_deep_at.min(now);
            return false;
        }
        match rotation::promote(current, candidate, unix) {
            Ok(next) => {
                self.probes.delay = None;
                self.save(next, SaveKind::Promotion);
                true
            }
            Err(_) => {
                self.probes.fatal = Some(NotReadyReason::StatePublishFailed);
                false
            }
        }
    }

    /// Starts the activation delay as soon as a stable candidate is durable: the saved
    /// registry is the proof of stability, and the timer is local to this process.
    pub(super) fn start_delay_if_stable(&mut self, now: Instant) {
        let Some(state) = self.published.as_ref() else {
            return;
        };
        let threshold = self.policy.require_stable_observation_count;
        let stable = state.records().iter().find(|record| {
            let observation = record.observation();
            record.state() == SnapshotState::Pending
                && observation.stable_at_unix > 0
                && observation.stable_observation_count >= threshold
        });
        let Some(candidate) = stable.map(crate::registry::StateRecord::version) else {
            return;
        };
        if self
            .probes
            .delay
            .is_none_or(|(version, _)| version != candidate)
        {
            self.probes.delay = Some((candidate, now + self.config.activation_delay));
            self.probes.next_deep_at = self.probes.next_deep_at.min(now);
        }
    }

    /// Deep-probe plaintexts come from the configured seed: no entropy source in the core.
    fn next_probe_plaintext(&mut self) -> Plaintext {
        self.probes.probe_plaintexts += 1;
        let mut input = self.config.rng_seed.to_vec();
        input.extend_from_slice(&self.probes.probe_plaintexts.to_le_bytes());
        Plaintext::new(sha256(&input)[..PROBE_PLAINTEXT_BYTES].to_vec())
    }
}

fn failure_class(result: &Result<TransitResponse, TransitFailure>) -> &'static str {
    match result {
        Ok(_) => FailureClass::Unavailable.as_str(),
        Err(failure) => failure.class.as_str(),
    }
}
