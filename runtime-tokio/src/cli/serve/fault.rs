//! Fault injection for the crash tests, compiled only with the cargo feature `fault-injection`
//! (never in a release build; without the feature every function here is a no-op).
//!
//! `BAO_KMS_PROVIDER_FAULT=<task>-<kind>` arms one fault; it fires when the process receives
//! SIGUSR2 after `serve.ready`, so a test decides the moment. `<task>` is `driver`, `grpc`,
//! `health` or `metrics`; `<kind>` is `panic` (the task panics), `exit` (the task's future
//! returns as if its work were done) or `stall` (the task blocks its thread for 120 s; driver
//! only). The driver's fault fires inside the driver task, at the next event it reports.

use std::future::Future;
use std::sync::Arc;

use crate::driver::EventSink;

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::OnceLock;
    use std::time::Duration;

    use tokio::sync::watch;

    /// The environment variable that arms a fault.
    pub(super) const VARIABLE: &str = "BAO_KMS_PROVIDER_FAULT";
    /// How long a stalled task blocks its thread: bounded, so nothing hangs forever.
    pub(super) const STALL: Duration = Duration::from_secs(120);

    #[derive(Clone, Copy, Debug, Eq, PartialEq)]
    pub(super) enum Kind {
        Panic,
        Exit,
        Stall,
    }

    pub(super) struct Fault {
        pub(super) task: String,
        pub(super) kind: Kind,
        pub(super) fired: watch::Sender<bool>,
    }

    /// The armed fault, parsed once from the environment.
    pub(super) fn fault() -> Option<&'static Fault> {
        static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
        FAULT
            .get_or_init(|| {
                let value = std::env::var(VARIABLE).ok()?;
                let (task, kind) = value.rsplit_once('-')?;
                let kind = match kind {
                    "panic" => Kind::Panic,
                    "exit" => Kind::Exit,
                    "stall" => Kind::Stall,
                    _ => return None,
                };
                Some(Fault {
                    task: task.to_owned(),
                    kind,
                    fired: watch::channel(false).0,
                })
            })
            .as_ref()
    }

    /// The armed fault for `task`, once it has fired.
    pub(super) fn fired_for(task: &str) -> Option<Kind> {
        fault()
            .filter(|fault| fault.task == task && *fault.fired.borrow())
            .map(|fault| fault.kind)
    }

    /// Resolves when the fault for `task` fires; pending forever for any other task.
    pub(super) async fn fires_for(task: &str) -> Kind {
        let Some(fault) = fault().filter(|fault| fault.task == task) else {
            return std::future::pending().await;
        };
        let mut fired = fault.fired.subscribe();
        if fired.wait_for(|fired| *fired).await.is_err() {
            return std::future::pending().await;
        }
        fault.kind
    }

    /// Carries out the fault inside the task's own thread.
    pub(super) fn strike(task: &str, kind: Kind) {
        tracing::warn!(message = "fault.injected", task, kind = ?kind);
        match kind {
            Kind::Panic => panic!("injected fault: the {task} task panics"),
            Kind::Stall => std::thread::sleep(STALL),
            Kind::Exit => {}
        }
    }
}

/// Waits for SIGUSR2 and fires the armed fault (nothing without the feature or a fault).
pub(crate) fn arm_on_sigusr2() {
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = armed::fault() {
        let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
        else {
            return;
        };
        tracing::warn!(
            message = "fault.armed",
            variable = armed::VARIABLE,
            task = fault.task.as_str()
        );
        tokio::spawn(async move {
            if signal.recv().await.is_some() {
                fault.fired.send_replace(true);
            }
        });
    }
}

/// `task` as is, or, with an armed fault for `name`, raced against that fault.
pub(crate) async fn wrap<F>(name: &'static str, task: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    #[cfg(feature = "fault-injection")]
    {
        tokio::select! {
            result = task => result,
            kind = armed::fires_for(name) => {
                armed::strike(name, kind);
                Ok(())
            }
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = name;
        task.await
    }
}

/// The driver's event sink, through which a driver fault strikes inside the driver task.
pub(crate) fn driver_events(events: Arc<dyn EventSink>) -> Arc<dyn EventSink> {
    #[cfg(feature = "fault-injection")]
    {
        Arc::new(FaultyEvents { inner: events })
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        events
    }
}

#[cfg(feature = "fault-injection")]
struct FaultyEvents {
    inner: Arc<dyn EventSink>,
}

#[cfg(feature = "fault-injection")]
impl EventSink for FaultyEvents {
    fn event(&self, event: &bao_kms_core::provider::Event) {
        if let Some(kind) = armed::fired_for("driver") {
            armed::strike("driver", kind);
        }
        self.inner.event(event);
    }

    fn transit_call(&self, operation: &'static str, status: &'static str, seconds: f64) {
        self.inner.transit_call(operation, status, seconds);
    }

    fn transit_latest_version(&self, version: u64) {
        self.inner.transit_latest_version(version);
    }
}
