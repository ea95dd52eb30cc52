//! The driver: the one task that owns the core `Provider` and carries out its effects.
//!
//! gRPC handlers send commands here and await a oneshot; Transit calls run on the blocking
//! pool (bounded by a semaphore) and come back as inputs; registry writes run one at a time
//! because the core never asks for two. The driver publishes a snapshot of the provider's
//! health after every input for `/ready` and the metrics.
//!
//! The loop turns at least every [`HEARTBEAT_INTERVAL`], also when idle, and records each turn
//! in a [`Progress`] heartbeat: `/live` and the systemd watchdog read it to tell a stalled
//! driver from an idle one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bao_kms_core::health::HealthReport;
use bao_kms_core::provider::{Event, SaveFailure, StatusView};
use bao_kms_core::{
    Input, KeyId, KeyVersion, KmsRequest, KmsResponse, Output, Provider, Refusal, RequestId,
    TransitFailure, TransitRequest, TransitResponse,
};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::clock;

/// Executes Transit calls; blocking, run on tokio's blocking pool.
pub trait TransitExecutor: Send + Sync + 'static {
    /// Makes one call that must finish within `budget`, the time left before its deadline.
    ///
    /// # Errors
    /// The classified failure.
    fn execute(
        &self,
        request: &TransitRequest,
        budget: Duration,
    ) -> Result<TransitResponse, TransitFailure>;
}

/// Persists registry files; blocking, run on tokio's blocking pool.
pub trait RegistryWriter: Send + Sync + 'static {
    /// Writes the state file, then the checkpoint, each durably.
    ///
    /// # Errors
    /// A description of the failure for the log (never sent to a client).
    fn write(&self, state: &str, checkpoint: &str) -> Result<(), String>;
}

/// Something the driver reports: a core event, for logs and metrics.
pub trait EventSink: Send + Sync + 'static {
    /// Called for every core event, in order.
    fn event(&self, event: &Event);
    /// Called when a Transit call finished, with its duration.
    fn transit_call(&self, operation: &'static str, status: &'static str, seconds: f64);
    /// Called with the `latest_version` of every successful key metadata read. No default: a
    /// wrapper that forgot to forward it would silently freeze the gauge.
    fn transit_latest_version(&self, version: u64);
}

/// The driver's view of the provider after the latest input.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The health report.
    pub report: HealthReport,
    /// The active key and version.
    pub active: Option<(KeyId, KeyVersion)>,
    /// Status as the core answers it, and until when that answer holds.
    pub status: StatusView,
}

/// A command to the driver.
#[derive(Debug)]
enum Command {
    Kms {
        id: RequestId,
        request: KmsRequest,
        deadline: Instant,
        reply: oneshot::Sender<Result<KmsResponse, Refusal>>,
    },
    /// The caller of `id` went away (its RPC was cancelled or timed out in the transport).
    Cancel(RequestId),
    Shutdown,
}

/// The longest the driver loop waits before it turns again, even with nothing to do.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// When the driver loop last turned: written by the driver, read by `/live` and the watchdog.
#[derive(Debug)]
pub struct Progress {
    base: Instant,
    /// Milliseconds after `base` of the latest turn.
    last: AtomicU64,
}

impl Progress {
    fn new(now: Instant) -> Self {
        Self {
            base: now,
            last: AtomicU64::new(0),
        }
    }

    fn beat(&self, now: Instant) {
        let millis = now.saturating_duration_since(self.base).as_millis();
        self.last
            .store(u64::try_from(millis).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long ago the driver loop last turned, seen at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        let last = self
            .base
            .checked_add(Duration::from_millis(self.last.load(Ordering::Relaxed)))
            .unwrap_or(self.base);
        now.saturating_duration_since(last)
    }
}

/// A cloneable handle to the running driver.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Snapshot>,
    next_request: Arc<AtomicU64>,
    progress: Arc<Progress>,
}

/// Tells the driver when a submitted request's caller stops waiting before the answer came, so
/// the core frees the request's place (and its Transit call, if nobody else waits for it) at
/// once instead of at the deadline.
struct CancelOnDrop<'a> {
    commands: &'a mpsc::Sender<Command>,
    id: RequestId,
    answered: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.answered {
            // Best effort and never blocking: with a full queue the deadline frees it instead.
            let _ = self.commands.try_send(Command::Cancel(self.id));
        }
    }
}

impl DriverHandle {
    /// Submits a KMS request and waits for the core's answer. Dropping the returned future
    /// before it completes cancels the request in the core.
    pub async fn submit(
        &self,
        request: KmsRequest,
        deadline: Instant,
    ) -> Result<KmsResponse, Refusal> {
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed) + 1);
        let (reply, answer) = oneshot::channel();
        let command = Command::Kms {
            id,
            request,
            deadline,
            reply,
        };
        // Waiting for room in the queue is bounded by the request's own deadline.
        let sent = tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline),
            self.commands.send(command),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Refusal::ShuttingDown),
            Err(_) => return Err(Refusal::DeadlineExceeded),
        }
        let mut guard = CancelOnDrop {
            commands: &self.commands,
            id,
            answered: false,
        };
        let answer = answer.await.unwrap_or(Err(Refusal::ShuttingDown));
        guard.answered = true;
        answer
    }

    /// Status from the latest snapshot when the core says it still holds at `now`; `None`
    /// when the request must go through the driver.
    pub fn status_from_snapshot(&self, now: Instant) -> Option<Option<KeyId>> {
        let snapshot = self.snapshot.borrow();
        (now < snapshot.status.valid_until).then(|| snapshot.status.key_id.clone())
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that changes whenever the snapshot does.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    /// The driver's heartbeat.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Asks the driver to stop: waiting requests are answered, then the task ends.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

/// Most Transit calls in flight at once; the core's own limits (decrypt call slots, the
/// per-method concurrency limits) keep the real number well below it.
const MAX_TRANSIT_CALLS: usize = crate::openbao::http::MAX_CALLS_IN_FLIGHT;

/// Makes one Transit call on the current (blocking) thread with the time left before
/// `deadline`, and reports its duration: a call never outlives the requests it serves.
fn run_call(
    transit: &dyn TransitExecutor,
    events: &dyn EventSink,
    call: bao_kms_core::provider::CallId,
    request: &TransitRequest,
    deadline: Instant,
) -> Completion {
    let operation = request.operation().as_str();
    let started = clock::now();
    let budget = deadline.saturating_duration_since(started);
    let result = transit.execute(request, budget);
    let status = match &result {
        Ok(_) => "ok",
        Err(failure) => failure.class.as_str(),
    };
    let seconds = clock::now()
        .saturating_duration_since(started)
        .as_secs_f64();
    events.transit_call(operation, status, seconds);
    if let Ok(TransitResponse::KeyMetadata(metadata)) = &result {
        events.transit_latest_version(metadata.latest_version);
    }
    Completion::Transit { call, result }
}

/// What came back from the blocking pool.
enum Completion {
    Transit {
        call: bao_kms_core::provider::CallId,
        result: Result<TransitResponse, TransitFailure>,
    },
    Saved {
        write: bao_kms_core::provider::WriteId,
        result: Result<(), SaveFailure>,
    },
}

/// Starts the driver task.
pub fn spawn(
    provider: Provider,
    transit: Arc<dyn TransitExecutor>,
    registry: Arc<dyn RegistryWriter>,
    events: Arc<dyn EventSink>,
) -> (DriverHandle, tokio::task::JoinHandle<()>) {
    let now = clock::now();
    let initial = Snapshot {
        report: provider.health(now),
        active: provider
            .active_key()
            .map(|(key_id, version)| (key_id.clone(), version)),
        status: provider.status_view(now),
    };
    let (commands, receiver) = mpsc::channel(1024);
    let (publisher, snapshot) = watch::channel(initial);
    let progress = Arc::new(Progress::new(now));
    let driver = Driver {
        provider,
        transit,
        registry,
        events,
        permits: Arc::new(Semaphore::new(MAX_TRANSIT_CALLS)),
        waiting: BTreeMap::new(),
        publisher,
        tasks: JoinSet::new(),
        progress: Arc::clone(&progress),
    };
    let task = tokio::spawn(driver.run(receiver));
    let handle = DriverHandle {
        commands,
        snapshot,
        next_request: Arc::new(AtomicU64::new(0)),
        progress,
    };
    (handle, task)
}

struct Driver {
    provider: Provider,
    transit: Arc<dyn TransitExecutor>,
    registry: Arc<dyn RegistryWriter>,
    events: Arc<dyn EventSink>,
    permits: Arc<Semaphore>,
    waiting: BTreeMap<RequestId, oneshot::Sender<Result<KmsResponse, Refusal>>>,
    publisher: watch::Sender<Snapshot>,
    tasks: JoinSet<Completion>,
    progress: Arc<Progress>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut stopping = false;
        loop {
            let wake = self.carry_out_effects();
            self.publish();
            let now = clock::now();
            self.progress.beat(now);
            if stopping && self.tasks.is_empty() {
                return;
            }
            // An early Timeout input is harmless (the core checks its own deadlines); it keeps
            // the heartbeat going while idle.
            let wake = wake.min(now.checked_add(HEARTBEAT_INTERVAL).unwrap_or(wake));
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
            tokio::select! {
                command = commands.recv(), if !stopping => match command {
                    Some(Command::Kms { id, request, deadline, reply }) => {
                        self.waiting.insert(id, reply);
                        let input = Input::Request { id, deadline, request };
                        self.provider.handle_input(clock::now(), input);
                    }
                    Some(Command::Cancel(id)) => {
                        if self.waiting.remove(&id).is_some() {
                            let input = Input::RequestCancelled { id };
                            self.provider.handle_input(clock::now(), input);
                        }
                    }
                    Some(Command::Shutdown) | None => {
                        stopping = true;
                        self.provider.handle_input(clock::now(), Input::Shutdown);
                    }
                },
                Some(done) = self.tasks.join_next() => {
                    let input = match done {
                        Ok(Completion::Transit { call, result }) => Input::TransitCompleted {
                            call,
                            result,
                            wall_clock_unix: clock::wall_clock_unix(),
                        },
                        Ok(Completion::Saved { write, result }) => {
                            Input::StateSaved { write, result }
                        }
                        // A panicked blocking task: its call times out in the core.
                        Err(_) => continue,
                    };
                    self.provider.handle_input(clock::now(), input);
                }
                () = sleep => self.provider.handle_input(clock::now(), Input::Timeout),
            }
        }
    }

    /// Drains the core's outputs; returns when to wake up next.
    fn carry_out_effects(&mut self) -> Instant {
        loop {
            match self.provider.poll_output() {
                Output::CallTransit {
                    call,
                    request,
                    deadline,
                } => self.start_call(call, request, deadline),
                Output::SaveState {
                    write,
                    state,
                    checkpoint,
                } => {
                    let registry = Arc::clone(&self.registry);
                    self.tasks.spawn_blocking(move || {
                        let result = registry.write(&state, &checkpoint).map_err(|reason| {
                            tracing::error!(message = "state.save_failed", reason = %reason);
                            SaveFailure
                        });
                        Completion::Saved { write, result }
                    });
                }
                Output::Respond { id, response } => {
                    if let Some(reply) = self.waiting.remove(&id) {
                        // The caller may have gone away; nothing to do then.
                        let _ = reply.send(response);
                    }
                }
                Output::Event(event) => self.events.event(&event),
                Output::Timeout(at) => return at,
            }
        }
    }

    fn start_call(
        &mut self,
        call: bao_kms_core::provider::CallId,
        request: TransitRequest,
        deadline: Instant,
    ) {
        let transit = Arc::clone(&self.transit);
        let events = Arc::clone(&self.events);
        // The permit bounds blocking threads. The core's own limits keep calls well below it,
        // so a permit is normally free and the call goes straight to a blocking thread (one
        // hand-off less); otherwise a task waits for one, no longer than the call's deadline.
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            self.tasks.spawn_blocking(move || {
                let _permit = permit;
                run_call(&*transit, &*events, call, &request, deadline)
            });
            return;
        }
        let permits = Arc::clone(&self.permits);
        self.tasks.spawn(async move {
            let permit = tokio::time::timeout_at(
                tokio::time::Instant::from_std(deadline),
                permits.acquire_owned(),
            )
            .await;
            let Ok(Ok(permit)) = permit else {
                let timeout = TransitFailure::new(bao_kms_core::FailureClass::Timeout);
                return Completion::Transit {
                    call,
                    result: Err(timeout),
                };
            };
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                run_call(&*transit, &*events, call, &request, deadline)
            })
            .await
            .unwrap_or_else(|_| Completion::Transit {
                call,
                result: Err(TransitFailure::new(bao_kms_core::FailureClass::Unavailable)),
            })
        });
    }

    fn publish(&self) {
        let now = clock::now();
        let snapshot = Snapshot {
            report: self.provider.health(now),
            active: self
                .provider
                .active_key()
                .map(|(key_id, version)| (key_id.clone(), version)),
            status: self.provider.status_view(now),
        };
        self.publisher.send_replace(snapshot);
    }
}
