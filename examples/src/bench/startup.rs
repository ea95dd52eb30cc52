//! Stopping and restarting the plugin: time from spawn to a connectable socket and to a healthy
//! Status, and from SIGTERM to exit.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use rustix::process::{Pid, Signal, kill_process};

use super::procfs::{self, Memory};
use super::{now, plugin};

/// Longest wait for a spawned plugin to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a plugin to exit after SIGTERM (its drain grace is 15 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval while waiting for the socket, health or exit.
const POLL: Duration = Duration::from_millis(1);

/// One restart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Restart {
    /// Spawn to the first successful connect on the socket.
    pub(crate) socket: Duration,
    /// Spawn to the first Status with `healthz=ok`.
    pub(crate) healthy: Duration,
    /// Memory one second after becoming healthy, before any KMS request but Status.
    pub(crate) idle_memory: Option<Memory>,
    /// SIGTERM to exit.
    pub(crate) stop: Duration,
}

/// Sends SIGTERM to `pid` (not our child) and waits until it is gone; returns how long it took.
pub(crate) async fn stop_external(pid: u32) -> anyhow::Result<Duration> {
    let raw = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .context("invalid pid")?;
    let sent = now();
    kill_process(raw, Signal::TERM).context("SIGTERM")?;
    while procfs::is_running(pid) {
        if now().saturating_duration_since(sent) > STOP_TIMEOUT {
            bail!(
                "pid {pid} still running {} s after SIGTERM",
                STOP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(now().saturating_duration_since(sent))
}

/// A spawned plugin, killed if it is still running when dropped (on errors).
struct Spawned(Option<Child>);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the plugin writes its log during restarts.
#[derive(Clone, Debug)]
pub(crate) struct RestartSetup {
    /// The plugin binary.
    pub(crate) binary: PathBuf,
    /// Its configuration.
    pub(crate) config: PathBuf,
    /// The socket it binds.
    pub(crate) socket: PathBuf,
    /// Its stdout and stderr (appended); `None` discards them.
    pub(crate) log: Option<PathBuf>,
}

/// Starts the plugin, times socket and health, reads its idle memory, then stops it.
pub(crate) async fn restart_once(setup: &RestartSetup) -> anyhow::Result<Restart> {
    let (stdout, stderr) = match &setup.log {
        Some(path) => {
            let file = File::options()
                .create(true)
                .append(true)
                .open(path)
                .context("plugin log")?;
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let started = now();
    let child = Command::new(&setup.binary)
        .arg("serve")
        .arg("--config")
        .arg(&setup.config)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("spawn the plugin")?;
    let mut spawned = Spawned(Some(child));
    let elapsed = || now().saturating_duration_since(started);

    // The plugin binds its socket only after the bootstrap probes passed; a stale socket file
    // from the previous run refuses connections until then.
    while UnixStream::connect(&setup.socket).is_err() {
        check_alive(&mut spawned)?;
        if elapsed() > START_TIMEOUT {
            bail!("socket not connectable after {} s", START_TIMEOUT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
    let socket = elapsed();
    let client = bao_kms_examples::connect(setup.socket.clone())
        .await
        .context("connect")?;
    while plugin::status(client.clone()).await.is_err() {
        check_alive(&mut spawned)?;
        if elapsed() > START_TIMEOUT {
            bail!("no healthy Status after {} s", START_TIMEOUT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
    let healthy = elapsed();
    // Close the connection first: the stop time should not include draining it.
    drop(client);

    let child = spawned.0.as_mut().context("child gone")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_memory = procfs::memory(child.id());
    let stop_sent = now();
    kill_process(Pid::from_child(child), Signal::TERM).context("SIGTERM")?;
    loop {
        if child.try_wait().context("wait for the plugin")?.is_some() {
            break;
        }
        if now().saturating_duration_since(stop_sent) > STOP_TIMEOUT {
            bail!(
                "plugin still running {} s after SIGTERM",
                STOP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let stop = now().saturating_duration_since(stop_sent);
    spawned.0 = None;
    Ok(Restart {
        socket,
        healthy,
        idle_memory,
        stop,
    })
}

fn check_alive(spawned: &mut Spawned) -> anyhow::Result<()> {
    if let Some(child) = spawned.0.as_mut()
        && let Some(status) = child.try_wait().context("wait for the plugin")?
    {
        spawned.0 = None;
        bail!("the plugin exited during startup ({status})");
    }
    Ok(())
}
