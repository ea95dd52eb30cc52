//! The provider state machine.
//!
//! # Run-loop contract
//!
//! - Build it with [`Provider::new`] from the configuration and the bytes of the state files.
//! - Feed every fact with [`Provider::handle_input`], passing the current monotonic time; `now`
//!   never goes backwards.
//! - After each input, drain [`Provider::poll_output`] until it returns [`Output::Timeout`], and
//!   carry out every effect. Feed [`Input::Timeout`] when that instant passes.
//!
//! The provider never blocks and never performs IO. Getters such as [`Provider::health`] read
//! the current state for metrics and `/ready`.

mod batch;
mod calls;
mod io;
mod kms;
mod persist;
mod probes;
mod retry;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

pub use io::{
    CallId, Event, Input, KmsMethod, KmsRequest, KmsResponse, Output, ProbeKind, RequestId,
    SaveFailure, WriteId,
};

use crate::config::ProviderConfig;
use crate::health::{HealthReport, RotationState};
use crate::key_id::KeyId;
use crate::registry::{
    Checkpoint, LoadVerdict, SnapshotState, StateError, StateFile, admit_loaded,
};
use crate::rotation::RotationPolicy;
use crate::version::KeyVersion;

use batch::{CoalesceKey, DecryptQueue};
use calls::Call;
use kms::Discovery;
use persist::SaveSlot;
use probes::Probes;
use retry::{Jitter, RetryPolicy};

/// Status as of one instant, for answering without the driver (see [`Provider::status_view`]).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StatusView {
    /// The active key_id when healthy; `None` when Status is unhealthy.
    pub key_id: Option<KeyId>,
    /// The view holds while the monotonic clock is strictly before this instant.
    pub valid_until: Instant,
}

/// The bytes of the registry files as the runtime found them on disk.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct StoredState {
    /// The state file, if it exists.
    pub state: Option<Vec<u8>>,
    /// The checkpoint file, if it exists.
    pub checkpoint: Option<Vec<u8>>,
}

/// Why the provider refuses to start.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum StartupError {
    /// The state or checkpoint is invalid, rolled back, or belongs to another configuration.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The KMS provider: every decision, no IO.
#[derive(Debug)]
pub struct Provider {
    config: ProviderConfig,
    policy: RotationPolicy,
    /// The registry in use: saved to disk before it was published.
    published: Option<StateFile>,
    saves: SaveSlot,
    probes: Probes,
    calls: BTreeMap<CallId, Call>,
    /// In-flight Decrypt items by (ciphertext, AAD), so identical requests share one item.
    in_flight_decrypts: BTreeMap<CoalesceKey, CallId>,
    /// Decrypts waiting for a call slot; they leave as batches.
    decrypts: DecryptQueue,
    retry: RetryPolicy,
    jitter: Jitter,
    discovery: Discovery,
    requests: BTreeMap<RequestId, PendingRequest>,
    outputs: VecDeque<Output>,
    next_id: u64,
    /// Largest wall-clock second seen, so recorded timestamps never go backwards.
    wall_clock_unix: i64,
    was_healthy: bool,
    shutting_down: bool,
    /// The `now` of the latest input; every deadline handed out lies after it.
    last_now: Instant,
}

/// A request waiting for Transit.
#[derive(Clone, Copy, Debug)]
struct PendingRequest {
    deadline: Instant,
    method: KmsMethod,
}

/// The latest wall-clock second recorded in a registry: a restarted provider never records
/// an earlier one, whatever the wall clock says.
fn latest_recorded_unix(state: &StateFile) -> i64 {
    let times = state.records().iter().flat_map(|record| {
        let observation = record.observation();
        [
            observation.observed_at_unix,
            observation.stable_at_unix,
            observation.promoted_at_unix,
        ]
    });
    times.max().unwrap_or(0)
}

impl Provider {
    /// Builds a provider from its configuration and the stored registry files.
    ///
    /// With neither file present the provider bootstraps from the first metadata probe (only
    /// for a never-rotated key). A checkpoint that lags one generation or is missing is
    /// rewritten first.
    ///
    /// # Errors
    /// [`StartupError`] when the stored state is corrupt, rolled back, or bound to another
    /// configuration: the provider fails closed rather than guess.
    pub fn new(
        config: ProviderConfig,
        now: Instant,
        stored: &StoredState,
    ) -> Result<Self, StartupError> {
        let state = stored.state.as_deref().map(StateFile::decode).transpose()?;
        let checkpoint = stored
            .checkpoint
            .as_deref()
            .map(Checkpoint::decode)
            .transpose()?;
        let verdict = admit_loaded(state.as_ref(), checkpoint.as_ref())?;
        if let Some(state) = &state {
            state.check_scope(&config.identity)?;
        }
        let recorded_unix = state.as_ref().map_or(0, latest_recorded_unix);
        let policy = RotationPolicy {
            require_stable_observation_count: config.require_stable_observation_count,
            reject_version_rollback: config.reject_version_rollback,
        };
        let decrypts = DecryptQueue::new(config.batching.max_items, config.batching.max_calls);
        let jitter = Jitter::new(&config.rng_seed);
        let mut provider = Self {
            probes: Probes::new(now),
            config,
            policy,
            published: state,
            saves: SaveSlot::default(),
            calls: BTreeMap::new(),
            in_flight_decrypts: BTreeMap::new(),
            decrypts,
            retry: RetryPolicy::default(),
            jitter,
            discovery: Discovery::default(),
            requests: BTreeMap::new(),
            outputs: VecDeque::new(),
            next_id: 0,
            wall_clock_unix: recorded_unix,
            was_healthy: false,
            shutting_down: false,
            last_now: now,
        };
        let rewrite_checkpoint = matches!(
            verdict,
            LoadVerdict::CheckpointBehind | LoadVerdict::CheckpointMissing
        );
        if let (true, Some(state)) = (rewrite_checkpoint, provider.published.clone()) {
            provider.save(state, persist::SaveKind::Checkpoint);
        }
        provider.start_metadata_probe(now, crate::rotation::ObserveMode::Probe);
        Ok(provider)
    }

    /// Feeds one fact at monotonic time `now`.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.last_now = now;
        match input {
            Input::Request {
                id,
                deadline,
                request,
            } => self.handle_request(now, id, deadline, request),
            Input::RequestCancelled { id } => self.forget_request(id),
            Input::TransitCompleted {
                call,
                result,
                wall_clock_unix,
            } => {
                let unix = self.observe_wall_clock(wall_clock_unix);
                self.handle_transit(now, call, result, unix);
            }
            Input::StateSaved { write, result } => self.handle_saved(now, write, result),
            Input::Shutdown => self.shut_down(),
            Input::Timeout => {}
        }
        // Expiry runs on every input, so a deadline that passed is handled whatever woke us.
        self.expire_requests(now);
        self.expire_calls(now);
        self.drop_abandoned();
        self.resend_due_retries(now);
        self.dispatch_decrypts(now);
        self.run_due_work(now);
        self.emit_health_change(now);
    }

    /// The next effect to carry out; ends with [`Output::Timeout`].
    #[must_use]
    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        Output::Timeout(self.next_deadline())
    }

    /// The health view behind Status, `/ready` and the health metrics.
    pub fn health(&self, now: Instant) -> HealthReport {
        self.probes.report(
            now,
            &self.config,
            self.published.as_ref(),
            self.saves.degraded(),
        )
    }

    /// Status as the core would answer it at `now`, and the instant until which that answer
    /// holds if no input arrives: the runtime may answer Status from this view without a round
    /// trip through the driver while `now < valid_until`. The bound is the earliest of the
    /// core's next timer and every instant at which time alone changes health (staleness, a
    /// breaker closing); any input may change the view, so the runtime republishes it after
    /// each one. During shutdown the view is never valid.
    pub fn status_view(&self, now: Instant) -> StatusView {
        let key_id = self.healthy_key(now).map(|(key_id, _)| key_id);
        let valid_until = if self.shutting_down {
            now
        } else {
            let next_timer = self.next_deadline();
            let by_time = self.probes.health_changes_by_time(now, &self.config);
            by_time.map_or(next_timer, |at| at.min(next_timer))
        };
        StatusView {
            key_id,
            valid_until,
        }
    }

    /// The active key and its version, whether or not Status is healthy.
    pub fn active_key(&self) -> Option<(&KeyId, KeyVersion)> {
        self.published
            .as_ref()
            .map(|state| (state.active_key_id(), state.active().version()))
    }

    /// The registry in use.
    pub fn registry(&self) -> Option<&StateFile> {
        self.published.as_ref()
    }

    /// The pending rotation candidate, if any.
    pub fn pending_candidate(&self) -> Option<(&KeyId, KeyVersion)> {
        let state = self.published.as_ref()?;
        let latest = state
            .records()
            .iter()
            .filter(|record| record.state() == SnapshotState::Pending)
            .max_by_key(|record| record.version())?;
        Some((latest.key_id(), latest.version()))
    }

    /// Observed rotation state.
    pub fn rotation_state(&self) -> RotationState {
        match (&self.published, self.pending_candidate()) {
            (None, _) => RotationState::Unknown,
            (Some(_), Some(_)) => RotationState::Pending,
            (Some(_), None) => RotationState::Active,
        }
    }

    /// When the activation delay of the pending candidate ends, if it is running.
    pub fn activation_deadline(&self) -> Option<Instant> {
        self.probes.activation_deadline()
    }

    fn next_call_id(&mut self) -> CallId {
        self.next_id += 1;
        CallId(self.next_id)
    }

    fn next_write_id(&mut self) -> WriteId {
        self.next_id += 1;
        WriteId(self.next_id)
    }

    fn event(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    fn observe_wall_clock(&mut self, unix: i64) -> i64 {
        if unix < self.wall_clock_unix {
            let seconds = self.wall_clock_unix - unix;
            self.event(Event::ClockRegressed { seconds });
            return self.wall_clock_unix;
        }
        self.wall_clock_unix = unix;
        unix
    }

    fn emit_health_change(&mut self, now: Instant) {
        let healthy = self.health(now).healthy;
        if healthy != self.was_healthy {
            self.was_healthy = healthy;
            self.event(Event::HealthChanged { healthy });
        }
    }

    /// Starts whatever is due at `now`: probes, save retries.
    fn run_due_work(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.retry_save_if_due(now);
        if self.probes.metadata_due(now) {
            self.start_metadata_probe(now, crate::rotation::ObserveMode::Probe);
        }
        if self.probes.deep_due(now, self.published.is_some()) {
            self.start_deep_probe(now);
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut deadlines = Vec::new();
        deadlines.extend(self.requests.values().map(|request| request.deadline));
        deadlines.extend(
            self.probes
                .deadlines(self.published.is_some(), &self.config),
        );
        deadlines.extend(self.saves.retry_at());
        deadlines.extend(self.calls.values().map(|call| call.deadline));
        deadlines.extend(self.retry_deadlines());
        deadlines
            .into_iter()
            .filter(|deadline| *deadline > self.last_now)
            .min()
            .unwrap_or_else(|| self.probes.far_future())
    }
}
