//! A deterministic simulation of control-plane nodes sharing one Transit key.
//!
//! Time only moves through [`Sim::advance`]; Transit calls are answered by the shared
//! [`TransitModel`] as soon as a node asks (or held back on request), and every node has its own
//! simulated disk for the registry files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bao_kms_core::compat::{Blocker, FormatsInUse, Manifest};
use bao_kms_core::provider::{CallId, Event, SaveFailure, StartupError};
use bao_kms_core::registry::StateFile;
use bao_kms_core::transit::TransitOperation;
use bao_kms_core::{
    IdentityScope, IdentityValues, Input, KmsRequest, KmsResponse, Output, Provider,
    ProviderConfig, Refusal, RequestId, StoredState, TransitFailure, TransitRequest,
    TransitResponse,
};

use crate::transit_model::TransitModel;

/// Wall-clock start of every simulation (Unix seconds).
pub const START_UNIX: i64 = 1_800_000_000;

/// One simulated control-plane node.
#[derive(Debug)]
pub struct Node {
    /// The running provider; `None` while stopped.
    pub provider: Option<Provider>,
    /// Its configuration.
    pub config: ProviderConfig,
    /// The registry files on this node's disk.
    pub disk: StoredState,
    /// Saves that will fail before one succeeds.
    pub failing_saves: u32,
    /// Answers by request id.
    pub responses: BTreeMap<RequestId, Result<KmsResponse, Refusal>>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Transit calls this node made, in order.
    pub transit_log: Vec<TransitOperation>,
    /// Every state file written to this node's disk, in order (operator tools append theirs).
    pub disk_history: Vec<Vec<u8>>,
    /// Every event with the monotonic time it happened.
    pub timed_events: Vec<(Instant, Event)>,
    /// The release this node runs, as its compatibility manifest.
    pub manifest: Manifest,
    /// When the node was last started.
    pub started_at: Option<Instant>,
    next_timeout: Option<Instant>,
    next_request: u64,
}

/// Why a simulated node did not start.
#[derive(Debug)]
pub enum StartFailure {
    /// The provider refused its stored state.
    Provider(StartupError),
    /// The node's release cannot read formats on its disk.
    Unreadable(Vec<Blocker>),
}

impl From<StartupError> for StartFailure {
    fn from(error: StartupError) -> Self {
        Self::Provider(error)
    }
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    /// Monotonic time.
    pub now: Instant,
    /// Wall-clock time, Unix seconds (may be moved independently to simulate clock jumps).
    pub wall_unix: i64,
    /// The shared Transit key.
    pub transit: TransitModel,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// While set, Encrypt and Decrypt calls (single and batch) are not answered at once but
    /// kept in [`Sim::held`], so a test can watch calls pile up and answer them itself.
    pub hold_kms_calls: bool,
    /// KMS calls waiting for [`Sim::answer_held`], oldest first.
    pub held: Vec<HeldCall>,
}

/// A Transit call held back by [`Sim::hold_kms_calls`].
#[derive(Debug)]
pub struct HeldCall {
    /// The node that made it.
    pub node: usize,
    /// Its id.
    pub call: CallId,
    /// What was asked.
    pub request: TransitRequest,
    /// The deadline the core gave it.
    pub deadline: Instant,
}

/// The identity every simulated node shares.
pub fn identity() -> IdentityScope {
    let values = IdentityValues {
        provider_name: "kms-sim".into(),
        cluster_id: "sim-cluster".into(),
        openbao_instance_id: "bao-sim".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-sim".into(),
        key_lineage_id: "lineage-sim".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "kms-key".into(),
    };
    match IdentityScope::new(values) {
        Ok(scope) => scope,
        Err(problems) => panic!("simulation identity is invalid: {problems:?}"),
    }
}

/// The configuration of simulated nodes: defaults with short, round intervals.
pub fn config(node: usize) -> ProviderConfig {
    let mut config = ProviderConfig::with_defaults(identity(), "v0.1.0-sim");
    config.probe_interval = Duration::from_secs(10);
    config.deep_probe_interval = Duration::from_secs(60);
    config.status_max_staleness = Duration::from_secs(40);
    config.activation_delay = Duration::from_secs(30);
    config.require_stable_observation_count = 3;
    config.bootstrap_retry_interval = Duration::from_secs(2);
    config.rng_seed = [u8::try_from(node).unwrap_or(u8::MAX); 32];
    config
}

impl Sim {
    /// `nodes` stopped nodes with the default simulation config and a fresh key.
    pub fn new(nodes: usize) -> Self {
        #[expect(
            clippy::disallowed_methods,
            reason = "the simulation's single clock read"
        )]
        let now = Instant::now();
        Self {
            now,
            wall_unix: START_UNIX,
            transit: TransitModel::new(7, START_UNIX - 3600),
            nodes: (0..nodes).map(|index| Node::new(config(index))).collect(),
            hold_kms_calls: false,
            held: Vec::new(),
        }
    }

    /// Starts (or restarts) node `index` from its disk.
    ///
    /// A node whose release (manifest) cannot read a format on its disk refuses to start, as an
    /// older binary would.
    ///
    /// # Errors
    /// The provider's startup refusal or the formats the node's release cannot read.
    pub fn start(&mut self, index: usize) -> Result<(), StartFailure> {
        let node = &mut self.nodes[index];
        if let Some(bytes) = &node.disk.state {
            let state = StateFile::decode(bytes).map_err(StartupError::from)?;
            let verdict = bao_kms_core::compat::check_move(
                &node.manifest,
                &node.manifest,
                &FormatsInUse {
                    rotation_pending: false,
                    ..FormatsInUse::from_state(&state)
                },
            );
            if !verdict.is_safe() {
                return Err(StartFailure::Unreadable(verdict.blockers));
            }
        }
        let provider = Provider::new(node.config.clone(), self.now, &node.disk)?;
        node.provider = Some(provider);
        node.started_at = Some(self.now);
        node.next_timeout = None;
        self.drain(index);
        Ok(())
    }

    /// Stops node `index` (a crash: nothing is flushed beyond what was saved).
    pub fn stop(&mut self, index: usize) {
        self.nodes[index].provider = None;
        self.nodes[index].next_timeout = None;
    }

    /// Sends a KMS request with the apiserver's 3 s deadline; returns its id.
    pub fn request(&mut self, index: usize, request: KmsRequest) -> RequestId {
        self.request_with_timeout(index, request, Duration::from_secs(3))
    }

    /// Sends a KMS request whose caller waits `timeout`; returns its id.
    pub fn request_with_timeout(
        &mut self,
        index: usize,
        request: KmsRequest,
        timeout: Duration,
    ) -> RequestId {
        let node = &mut self.nodes[index];
        node.next_request += 1;
        let id = RequestId(node.next_request);
        let deadline = self.now + timeout;
        if let Some(provider) = node.provider.as_mut() {
            provider.handle_input(
                self.now,
                Input::Request {
                    id,
                    deadline,
                    request,
                },
            );
        }
        self.drain(index);
        id
    }

    /// The caller of request `id` on node `index` went away (a cancelled RPC).
    pub fn cancel(&mut self, index: usize, id: RequestId) {
        if let Some(provider) = self.nodes[index].provider.as_mut() {
            provider.handle_input(self.now, Input::RequestCancelled { id });
        }
        self.drain(index);
    }

    /// Answers the held call at `position` with `result` (the model's own answer when `None`).
    ///
    /// # Panics
    /// When no call is held at that position.
    pub fn answer_held(
        &mut self,
        position: usize,
        result: Option<Result<TransitResponse, TransitFailure>>,
    ) {
        let held = self.held.remove(position);
        let result = result.unwrap_or_else(|| self.transit.execute(&held.request));
        if let Some(provider) = self.nodes[held.node].provider.as_mut() {
            let input = Input::TransitCompleted {
                call: held.call,
                result,
                wall_clock_unix: self.wall_unix,
            };
            provider.handle_input(self.now, input);
        }
        self.drain(held.node);
    }

    /// Sends a request and returns its answer. Transit answers at once in the simulation, so the
    /// answer is immediate unless a call failed transiently and waits for a retry; then time
    /// moves in 5 ms steps until the answer arrives (by the request's 3 s deadline at the latest).
    ///
    /// # Panics
    /// When the node gave no answer by the deadline (it is stopped or a request was lost).
    pub fn call(&mut self, index: usize, request: KmsRequest) -> Result<KmsResponse, Refusal> {
        let id = self.request(index, request);
        for _ in 0..=600 {
            if let Some(answer) = self.nodes[index].responses.remove(&id) {
                return answer;
            }
            if self.nodes[index].provider.is_none() {
                break;
            }
            self.advance(Duration::from_millis(5));
        }
        panic!("node {index} did not answer request {id:?}")
    }

    /// Sends a request and lets time pass (in 100 ms steps) until it is answered; the
    /// provider answers every request by its 3 s deadline at the latest.
    ///
    /// # Panics
    /// When the node gave no answer by the deadline (it is stopped, or a request was lost).
    pub fn call_waiting(
        &mut self,
        index: usize,
        request: KmsRequest,
    ) -> Result<KmsResponse, Refusal> {
        let id = self.request(index, request);
        for _ in 0..40 {
            if let Some(answer) = self.nodes[index].responses.remove(&id) {
                return answer;
            }
            self.advance(Duration::from_millis(100));
        }
        panic!("node {index} did not answer request {id:?} by its deadline")
    }

    /// Moves time forward by `step`, firing every timer on the way in order.
    pub fn advance(&mut self, step: Duration) {
        let target = self.now + step;
        let mut guard = 0_u32;
        loop {
            guard += 1;
            assert!(guard < 100_000, "simulation livelock while advancing time");
            let due = self
                .nodes
                .iter()
                .filter_map(|node| node.next_timeout.filter(|_| node.provider.is_some()))
                .filter(|at| *at <= target)
                .min();
            let Some(at) = due else { break };
            self.move_clock_to(at.max(self.now));
            for index in 0..self.nodes.len() {
                let fire = self.nodes[index]
                    .next_timeout
                    .is_some_and(|t| t <= self.now);
                if fire && let Some(provider) = self.nodes[index].provider.as_mut() {
                    provider.handle_input(self.now, Input::Timeout);
                    self.drain(index);
                }
            }
        }
        self.move_clock_to(target);
    }

    fn move_clock_to(&mut self, at: Instant) {
        let elapsed = at.saturating_duration_since(self.now);
        self.wall_unix += i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX);
        self.now = at;
    }

    /// Executes everything node `index` asked for until it only waits for time.
    fn drain(&mut self, index: usize) {
        // Every input leads to finitely many effects; a drain that never reaches the timeout
        // is a livelock in the core (each synchronous answer triggering another call).
        let mut budget = 100_000_u32;
        loop {
            budget = budget.checked_sub(1).unwrap_or_else(|| {
                panic!("node {index} never stopped producing outputs: livelock in the core")
            });
            let node = &mut self.nodes[index];
            let Some(provider) = node.provider.as_mut() else {
                return;
            };
            match provider.poll_output() {
                Output::CallTransit {
                    call,
                    request,
                    deadline,
                } => {
                    node.transit_log.push(request.operation());
                    let kms_call = matches!(
                        request,
                        TransitRequest::Encrypt { .. }
                            | TransitRequest::Decrypt { .. }
                            | TransitRequest::BatchDecrypt { .. }
                    );
                    if self.hold_kms_calls && kms_call {
                        self.held.push(HeldCall {
                            node: index,
                            call,
                            request,
                            deadline,
                        });
                        continue;
                    }
                    let result = self.transit.execute(&request);
                    let input = Input::TransitCompleted {
                        call,
                        result,
                        wall_clock_unix: self.wall_unix,
                    };
                    provider.handle_input(self.now, input);
                }
                Output::SaveState {
                    write,
                    state,
                    checkpoint,
                } => {
                    let result = if node.failing_saves > 0 {
                        node.failing_saves -= 1;
                        Err(SaveFailure)
                    } else {
                        node.disk_history.push(state.clone().into_bytes());
                        node.disk.state = Some(state.into_bytes());
                        node.disk.checkpoint = Some(checkpoint.into_bytes());
                        Ok(())
                    };
                    provider.handle_input(self.now, Input::StateSaved { write, result });
                }
                Output::Respond { id, response } => {
                    node.responses.insert(id, response);
                }
                Output::Event(event) => {
                    node.timed_events.push((self.now, event.clone()));
                    node.events.push(event);
                }
                Output::Timeout(at) => {
                    node.next_timeout = Some(at);
                    return;
                }
            }
        }
    }

    /// The Status key_id node `index` reports now, `None` when unhealthy.
    pub fn status_key_id(&mut self, index: usize) -> Option<String> {
        match self.call(index, KmsRequest::Status) {
            Ok(KmsResponse::Status { key_id }) => key_id.map(|key_id| key_id.to_string()),
            other => panic!("Status must always answer, got {other:?}"),
        }
    }

    /// The provider of node `index`.
    ///
    /// # Panics
    /// When the node is stopped.
    pub fn provider(&self, index: usize) -> &Provider {
        match &self.nodes[index].provider {
            Some(provider) => provider,
            None => panic!("node {index} is stopped"),
        }
    }
}

impl Node {
    fn new(config: ProviderConfig) -> Self {
        Self {
            provider: None,
            config,
            disk: StoredState::default(),
            failing_saves: 0,
            responses: BTreeMap::new(),
            events: Vec::new(),
            transit_log: Vec::new(),
            disk_history: Vec::new(),
            timed_events: Vec::new(),
            manifest: Manifest::this_release(),
            started_at: None,
            next_timeout: None,
            next_request: 0,
        }
    }
}
