//! Closed-loop load: `concurrency` workers take the next request index from a shared counter
//! until `count` requests were sent or the time budget is spent, timing each request. Measured
//! cells are bounded by time only (`count` is `usize::MAX`); warm-ups by a count.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::now;

/// The client gives up on one plugin request after this long (the plugin's own deadline is
/// `openbao.timeout`, much shorter).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How much load one cell applies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Requests in flight at once (workers).
    pub(crate) concurrency: usize,
    /// Requests to send in total.
    pub(crate) count: usize,
    /// No new request starts after this much time.
    pub(crate) budget: Duration,
}

/// What one cell produced.
#[derive(Debug)]
pub(crate) struct Outcome<T> {
    /// Latency of every successful request.
    pub(crate) latencies: Vec<Duration>,
    /// Failed requests (error answers, wrong answers, client timeouts).
    pub(crate) errors: u64,
    /// The first failure, for the log.
    pub(crate) first_error: Option<String>,
    /// The value of every successful request, in completion order per worker.
    pub(crate) outputs: Vec<T>,
    /// From the first request sent to the last answer received.
    pub(crate) wall: Duration,
}

impl<T> Outcome<T> {
    fn empty() -> Self {
        Self {
            latencies: Vec::new(),
            errors: 0,
            first_error: None,
            outputs: Vec::new(),
            wall: Duration::ZERO,
        }
    }

    fn record(&mut self, started: Instant, result: Result<T, String>) {
        let elapsed = now().saturating_duration_since(started);
        match result {
            Ok(value) => {
                self.latencies.push(elapsed);
                self.outputs.push(value);
            }
            Err(error) => self.fail(error),
        }
    }

    fn fail(&mut self, error: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }

    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.outputs.extend(other.outputs);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `op(index)` for every index on `plan.concurrency` tasks of the current runtime.
pub(crate) async fn run_async<T, F, Fut>(plan: Plan, op: F) -> Outcome<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = now();
    let stop_at = started + plan.budget;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let next = Arc::clone(&next);
        let op = op.clone();
        workers.spawn(async move {
            let mut part = Outcome::empty();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= plan.count || now() >= stop_at {
                    break;
                }
                let sent = now();
                let result = match tokio::time::timeout(REQUEST_TIMEOUT, op(index)).await {
                    Ok(result) => result,
                    Err(_) => Err("client timeout".to_owned()),
                };
                part.record(sent, result);
            }
            part
        });
    }
    let mut total = Outcome::empty();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(part) => total.merge(part),
            Err(error) => total.fail(format!("worker failed: {error}")),
        }
    }
    total.wall = now().saturating_duration_since(started);
    total
}
