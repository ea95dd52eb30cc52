//! Crash-only supervision of `serve`: the tasks the plugin cannot serve without are watched,
//! and the first one that ends outside a shutdown ends the process (exit 5) instead of leaving
//! it up and useless. Also the systemd notifications that follow the driver's heartbeat
//! (`WATCHDOG=1`, `STATUS=`), the panic log line, and the process hardening done at start.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};

use crate::driver::DriverHandle;
use crate::{clock, socket};

/// A driver whose loop has not turned for longer than this is stalled: `/live` fails and the
/// watchdog is no longer fed. The loop turns at least every [`HEARTBEAT_INTERVAL`].
pub(crate) const DRIVER_STALL_AFTER: Duration = Duration::from_secs(5);

/// How often `STATUS=` is refreshed when systemd asks for no watchdog.
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// How a supervised task ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Its future completed normally.
    Returned,
    /// Its future completed with an error.
    Failed(String),
    /// It panicked.
    Panicked,
    /// It was cancelled.
    Cancelled,
}

impl Ended {
    /// A stable label for the log.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Returned => "returned",
            Self::Failed(_) => "failed",
            Self::Panicked => "panicked",
            Self::Cancelled => "cancelled",
        }
    }

    fn from_join(result: Result<Result<(), String>, JoinError>) -> Self {
        match result {
            Ok(Ok(())) => Self::Returned,
            Ok(Err(error)) => Self::Failed(error),
            Err(error) if error.is_panic() => Self::Panicked,
            Err(_) => Self::Cancelled,
        }
    }
}

/// The tasks `serve` cannot do without.
#[derive(Default)]
pub(crate) struct Supervisor {
    tasks: JoinSet<(&'static str, Ended)>,
    /// Tasks whose normal return only follows the end of another supervised task (the
    /// telemetry follower returns when the driver's snapshots end): not a cause of their own.
    followers: Vec<&'static str>,
}

impl Supervisor {
    /// Spawns `task` under supervision as `name`.
    pub(crate) fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        // The task runs in a task of its own so that a panic is caught by its JoinHandle.
        let handle = tokio::spawn(super::fault::wrap(name, task));
        self.tasks
            .spawn(async move { (name, Ended::from_join(handle.await)) });
    }

    /// Spawns `task` as `name`; its normal return is not a cause, because it only follows the
    /// end of another supervised task (a panic or an error still is).
    pub(crate) fn spawn_follower<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.followers.push(name);
        self.spawn(name, task);
    }

    /// The next task that ends on its own: the cause to report and exit for.
    pub(crate) async fn next_cause(&mut self) -> (&'static str, Ended) {
        loop {
            let (name, ended) = self.next_end().await;
            if matches!(ended, Ended::Returned) && self.followers.contains(&name) {
                continue;
            }
            return (name, ended);
        }
    }

    /// Supervises a task spawned elsewhere (the driver).
    pub(crate) fn watch(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.tasks
            .spawn(async move { (name, Ended::from_join(handle.await.map(Ok))) });
    }

    /// The next task that ends; pending forever when none is supervised.
    pub(crate) async fn next_end(&mut self) -> (&'static str, Ended) {
        match self.tasks.join_next().await {
            Some(Ok(ended)) => ended,
            // The watcher itself only awaits a handle; it ends only when cancelled.
            Some(Err(_)) => ("supervisor", Ended::Cancelled),
            None => std::future::pending().await,
        }
    }

    /// Waits at most `timeout` for the task `name` during a shutdown; other tasks that end
    /// meanwhile are logged. `None` on timeout.
    pub(crate) async fn wait_for(&mut self, name: &str, timeout: Duration) -> Option<Ended> {
        let wait = async {
            loop {
                let (ended_name, ended) = self.next_end().await;
                if ended_name == name {
                    return ended;
                }
                tracing::debug!(
                    message = "serve.task_ended",
                    task = ended_name,
                    how = ended.as_str(),
                    during = "shutdown"
                );
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

/// Logs a task that ended while the plugin served; the caller then exits.
pub(crate) fn log_unexpected_end(name: &'static str, ended: &Ended) {
    match ended {
        Ended::Failed(error) => tracing::error!(
            message = "serve.shutdown",
            reason = "task_ended",
            task = name,
            how = ended.as_str(),
            error = %error
        ),
        Ended::Returned | Ended::Panicked | Ended::Cancelled => tracing::error!(
            message = "serve.shutdown",
            reason = "task_ended",
            task = name,
            how = ended.as_str()
        ),
    }
}

/// What the plugin is doing, for `STATUS=`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Phase {
    /// Waiting for the first healthy Status.
    Bootstrap,
    /// The socket is bound.
    Serving,
    /// Draining after a signal.
    Stopping,
}

/// Whether the driver loop turned recently enough.
pub(crate) fn driver_progressing(driver: &DriverHandle) -> bool {
    driver.progress().age(clock::now()) <= DRIVER_STALL_AFTER
}

/// The `STATUS=` text: what the plugin is doing or waiting for.
pub(crate) fn status_line(phase: Phase, driver: &DriverHandle) -> String {
    let age = driver.progress().age(clock::now());
    if age > DRIVER_STALL_AFTER && phase != Phase::Stopping {
        return format!("driver stalled for {}s; watchdog withheld", age.as_secs());
    }
    let report = driver.snapshot().report;
    let reasons: Vec<&str> = report
        .reasons
        .iter()
        .map(|reason| reason.as_str())
        .collect();
    match phase {
        Phase::Bootstrap if reasons.is_empty() => {
            "bootstrap: waiting for the first healthy Status".to_owned()
        }
        Phase::Bootstrap => format!(
            "bootstrap: waiting for OpenBao (reasons: {})",
            reasons.join(", ")
        ),
        Phase::Serving if report.healthy => "serving".to_owned(),
        Phase::Serving => format!(
            "serving; Status unhealthy (reasons: {})",
            reasons.join(", ")
        ),
        Phase::Stopping => "stopping: draining requests".to_owned(),
    }
}

/// Sends `STATUS=` when it changes and, when systemd asked for a watchdog, `WATCHDOG=1` every
/// half period while the driver makes progress. Runs until the process ends; does nothing
/// without `NOTIFY_SOCKET`.
pub(crate) async fn notify_systemd(driver: DriverHandle, phase: watch::Receiver<Phase>) {
    let watchdog = socket::watchdog_period();
    let period = watchdog.map_or(STATUS_REFRESH, |period| {
        (period / 2).max(Duration::from_millis(10))
    });
    if let Some(period) = watchdog {
        tracing::info!(
            message = "serve.watchdog",
            period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX)
        );
    }
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    let mut withheld = false;
    let mut failing = false;
    loop {
        tick.tick().await;
        let status = status_line(*phase.borrow(), &driver);
        let mut message = String::new();
        let status_changed = status != last_status;
        if status_changed {
            message.push_str("STATUS=");
            message.push_str(&status);
        }
        if watchdog.is_some() {
            if driver_progressing(&driver) {
                if withheld {
                    tracing::info!(message = "serve.watchdog_resumed");
                    withheld = false;
                }
                if !message.is_empty() {
                    message.push('\n');
                }
                message.push_str("WATCHDOG=1");
            } else if !withheld {
                withheld = true;
                tracing::error!(
                    message = "serve.watchdog_withheld",
                    reason = "driver_stalled",
                    stalled_ms = u64::try_from(driver.progress().age(clock::now()).as_millis())
                        .unwrap_or(u64::MAX)
                );
            }
        }
        if message.is_empty() {
            continue;
        }
        match socket::notify(&message) {
            Ok(_) => {
                failing = false;
                if status_changed {
                    last_status = status;
                }
            }
            // A status that was not delivered is sent again at the next tick; the failure is
            // logged once per streak.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(message = "serve.notify_failed", error = %error);
            }
            Err(_) => {}
        }
    }
}

/// Logs every panic as one structured line (thread, location, message) before the default
/// unwinding; supervision then decides whether the process must end.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()));
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned());
        tracing::error!(
            message = "serve.panic",
            thread = thread.name().unwrap_or("unnamed"),
            location = location.as_deref().unwrap_or("unknown"),
            panic = payload.as_deref().unwrap_or("non-string payload")
        );
    }));
}

/// What [`harden`] achieved, read back from the kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hardening {
    /// `PR_GET_DUMPABLE` is 0: no core dump, no ptrace or `/proc/<pid>/mem` by the same user.
    pub(crate) dumpable: bool,
    /// `RLIMIT_CORE` is 0 (soft and hard).
    pub(crate) core_limit_zero: bool,
}

/// Keeps DEK seeds, tokens and plaintext out of core dumps and away from other processes of
/// the same user: `PR_SET_DUMPABLE=0` and `RLIMIT_CORE=0`. Failures are reported, not fatal
/// (a sandbox may forbid `prctl`); the unit also sets `LimitCORE=0`.
pub(crate) fn harden() -> Hardening {
    use rustix::process::{
        DumpableBehavior, Resource, Rlimit, dumpable_behavior, getrlimit, set_dumpable_behavior,
        setrlimit,
    };
    let _ = set_dumpable_behavior(DumpableBehavior::NotDumpable);
    let _ = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    let core = getrlimit(Resource::Core);
    Hardening {
        dumpable: !matches!(dumpable_behavior(), Ok(DumpableBehavior::NotDumpable)),
        core_limit_zero: core.current == Some(0) && core.maximum == Some(0),
    }
}

/// A flag that `/live` reads: set while the listeners are up and the plugin is not stopping.
pub(crate) type LiveFlag = Arc<std::sync::atomic::AtomicBool>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::HEARTBEAT_INTERVAL;

    #[test]
    fn hardening_makes_the_process_non_dumpable_with_no_core_limit() {
        let hardening = harden();
        assert!(!hardening.dumpable, "{hardening:?}");
        assert!(hardening.core_limit_zero, "{hardening:?}");
    }

    #[test]
    fn the_driver_stall_bound_leaves_room_for_several_heartbeats() {
        assert!(DRIVER_STALL_AFTER >= HEARTBEAT_INTERVAL * 3);
    }
}
