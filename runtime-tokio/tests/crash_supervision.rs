//! Crash-only supervision of the real `bao-kms-provider serve` against a real OpenBao 2.7.2:
//! SIGHUP reloads credentials and never kills, the process is not dumpable and has no core
//! limit, systemd gets `STATUS=` lines and `WATCHDOG=1` only while the driver turns, and every
//! supervised task that ends (panic or early return) ends the process within a second.
//!
//! The injected faults need the cargo feature `fault-injection` (the binary then honours
//! `BAO_KMS_PROVIDER_FAULT`, fired by SIGUSR2; see `src/cli/serve/fault.rs`):
//! `cargo test -p bao-kms-runtime-tokio --features fault-injection --test crash_supervision`.
//! Without the feature those tests are not compiled, and under `CI=true` a test fails so that
//! CI cannot pass without running them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_support::{Deadline, E2e, now, plugin_binary};

/// How long a start may take (bootstrap grace is 20 s in the test configuration).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One plugin process started with extra environment variables; killed on drop.
struct Plugin {
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Plugin {
    fn start(e2e: &E2e, name: &str, env: &[(&str, &str)]) -> Self {
        let log = e2e.dir().join(format!("{name}.log"));
        let mut command = Command::new(plugin_binary());
        command
            .args(["serve", "--config", e2e.config_path().to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("BAO_KMS_PROVIDER_FAULT");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut plugin = Self {
            child: command.spawn().unwrap(),
            log,
            exit: None,
        };
        plugin.wait_until_serving(e2e.socket());
        plugin
    }

    fn wait_until_serving(&mut self, socket: &Path) {
        let deadline = Deadline::after(START_TIMEOUT, "the plugin socket");
        loop {
            assert!(
                self.try_exit().is_none(),
                "the plugin exited during start-up: {}",
                self.log()
            );
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return;
            }
            deadline.check();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The JSON log lines whose `message` is `message`.
    fn lines(&self, message: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["message"] == message)
            .collect()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap();
        }
        self.exit
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).unwrap();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- plugin log ----\n{}", self.log());
        }
    }
}

/// Waits (bounded) until `condition` holds.
fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Deadline::after(timeout, what);
    while !condition() {
        deadline.check();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A datagram socket standing in for systemd's notification socket; a thread receives every
/// message with the instant it arrived, until dropped.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let received = Arc::clone(&received);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(length) = socket.recv(&mut buffer) {
                        let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                        received.lock().unwrap().push((now(), text));
                    }
                }
            })
        };
        Self {
            _dir: dir,
            path,
            received,
            stop,
            reader: Some(reader),
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Messages received from `since` on.
    fn since(&self, since: Instant) -> Vec<(Instant, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= since)
            .cloned()
            .collect()
    }

    /// Arrival instants (from `since` on) of messages containing the line `line`.
    fn arrivals(&self, since: Instant, line: &str) -> Vec<Instant> {
        self.since(since)
            .into_iter()
            .filter(|(_, text)| text.lines().any(|candidate| candidate == line))
            .map(|(at, _)| at)
            .collect()
    }

    /// `STATUS=` values received from `since` on.
    fn status_lines(&self, since: Instant) -> Vec<String> {
        self.since(since)
            .iter()
            .flat_map(|(_, text)| text.lines())
            .filter_map(|line| line.strip_prefix("STATUS="))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[test]
fn sighup_re_reads_the_credential_files_logs_in_again_and_keeps_serving() {
    let e2e = E2e::new();
    let plugin = Plugin::start(&e2e, "sighup", &[]);
    let logins = || plugin.lines("openbao login succeeded").len();
    let before = logins();
    assert!(before >= 1, "{}", plugin.log());

    plugin.signal(rustix::process::Signal::HUP);
    wait_until(Duration::from_secs(10), "the reload to finish", || {
        !plugin.lines("serve.reloaded").is_empty()
    });
    let reloaded = plugin.lines("serve.reloaded");
    assert_eq!(reloaded[0]["outcome"], "ok", "{}", plugin.log());
    assert_eq!(plugin.lines("serve.reload")[0]["reason"], "sighup");
    assert_eq!(logins(), before + 1, "one fresh login per SIGHUP");

    // A second SIGHUP with the secret id file unreadable: the login fails, the old token stays,
    // the process stays.
    let secret_id = e2e.bao().file("secret-id");
    let saved = std::fs::read(&secret_id).unwrap();
    std::fs::write(&secret_id, "").unwrap();
    plugin.signal(rustix::process::Signal::HUP);
    wait_until(Duration::from_secs(10), "the second reload", || {
        plugin.lines("serve.reloaded").len() == 2
    });
    std::fs::write(&secret_id, saved).unwrap();
    assert_eq!(
        plugin.lines("serve.reloaded")[1]["outcome"],
        "failed",
        "{}",
        plugin.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut plugin = plugin;
    assert!(
        plugin.try_exit().is_none(),
        "SIGHUP must never stop the plugin"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let api = e2e.apiserver().await;
        api.status().await.unwrap()
    });
    assert_eq!(status.healthz, "ok", "still serving with the old token");
}

#[test]
fn serve_makes_itself_non_dumpable_and_drops_the_core_limit() {
    let e2e = E2e::new();
    let plugin = Plugin::start(&e2e, "hardening", &[]);
    let start = &plugin.lines("serve.start")[0];
    assert_eq!(start["dumpable"], false, "{start}");
    assert_eq!(start["core_limit_zero"], true, "{start}");
    // The kernel's view of the running process.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", plugin.pid())).unwrap();
    let core = limits
        .lines()
        .find(|line| line.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

#[test]
fn systemd_gets_status_lines_and_a_watchdog_fed_at_half_the_period() {
    let e2e = E2e::new();
    let notify = NotifySocket::new();
    let started = now();
    let period = Duration::from_millis(400);
    let _plugin = Plugin::start(
        &e2e,
        "watchdog",
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", &period.as_micros().to_string()),
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let statuses = notify.status_lines(started);
    assert!(
        statuses
            .iter()
            .any(|status| status.starts_with("bootstrap: ")),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|status| status == "serving"),
        "{statuses:?}"
    );
    assert_eq!(notify.arrivals(started, "READY=1").len(), 1);
    let pings = notify.arrivals(started, "WATCHDOG=1");
    assert!(pings.len() >= 5, "{pings:?}");
    let longest = pings
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap();
    assert!(longest < period, "longest gap between pings {longest:?}");
}

#[test]
fn ci_runs_the_fault_injection_tests() {
    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    assert!(
        cfg!(feature = "fault-injection") || !in_ci,
        "CI must run this test file with --features fault-injection"
    );
}

#[cfg(feature = "fault-injection")]
mod faults {
    use super::*;

    /// `GET http://127.0.0.1:<port><path>`: the status code.
    fn http_status(port: u16, path: &str) -> u16 {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        agent
            .get(&format!("http://127.0.0.1:{port}{path}"))
            .call()
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    }

    /// How long the process may take to exit after a supervised task ended.
    const EXIT_BOUND: Duration = Duration::from_secs(1);

    /// Injects `fault`, then measures from the moment the fault struck (its log line seen) to
    /// the process exit. Returns the measured time and the plugin.
    fn strike(e2e: &E2e, fault: &str, env: &[(&str, &str)]) -> (Duration, ExitStatus, Plugin) {
        let mut all = vec![("BAO_KMS_PROVIDER_FAULT", fault)];
        all.extend_from_slice(env);
        let mut plugin = Plugin::start(e2e, fault, &all);
        assert_eq!(plugin.lines("fault.armed").len(), 1, "{}", plugin.log());
        plugin.signal(rustix::process::Signal::USR2);
        let deadline = Deadline::after(Duration::from_secs(10), "the fault to strike");
        let struck = loop {
            if !plugin.lines("fault.injected").is_empty() {
                break now();
            }
            deadline.check();
            std::thread::sleep(Duration::from_millis(5));
        };
        let deadline = Deadline::after(Duration::from_secs(10), "the plugin to exit");
        let status = loop {
            if let Some(status) = plugin.try_exit() {
                break status;
            }
            deadline.check();
            std::thread::sleep(Duration::from_millis(5));
        };
        (now() - struck, status, plugin)
    }

    #[test]
    fn each_supervised_task_that_ends_ends_the_process_within_a_second() {
        let e2e = E2e::new();
        for (fault, task, how) in [
            ("driver-panic", "driver", "panicked"),
            ("grpc-panic", "grpc", "panicked"),
            ("grpc-exit", "grpc", "returned"),
            ("health-exit", "health", "returned"),
            ("metrics-panic", "metrics", "panicked"),
        ] {
            let (took, status, plugin) = strike(&e2e, fault, &[]);
            assert_eq!(status.code(), Some(5), "{fault}: {status}");
            assert!(
                took < EXIT_BOUND,
                "{fault}: exited {took:?} after the fault"
            );
            let shutdown = plugin.lines("serve.shutdown");
            let last = shutdown.last().unwrap();
            assert_eq!(last["reason"], "task_ended", "{fault}: {last}");
            assert_eq!(last["task"], task, "{fault}: {last}");
            assert_eq!(last["how"], how, "{fault}: {last}");
            if how == "panicked" {
                assert_eq!(plugin.lines("serve.panic").len(), 1, "{fault}");
            }
            assert!(
                !e2e.socket().exists(),
                "{fault}: the socket is removed on the way out"
            );
            eprintln!("{fault}: exit status 5, {took:?} after the fault struck");
        }
    }

    #[test]
    fn a_stalled_driver_fails_live_and_starves_the_watchdog() {
        let e2e = E2e::new();
        let notify = NotifySocket::new();
        let health = e2e.config().health_port;
        let period = Duration::from_millis(400);
        let usec = period.as_micros().to_string();
        let plugin = Plugin::start(
            &e2e,
            "driver-stall",
            &[
                ("BAO_KMS_PROVIDER_FAULT", "driver-stall"),
                ("NOTIFY_SOCKET", notify.path()),
                ("WATCHDOG_USEC", &usec),
            ],
        );
        assert_eq!(http_status(health, "/live"), 200);
        plugin.signal(rustix::process::Signal::USR2);
        wait_until(Duration::from_secs(10), "the stall", || {
            !plugin.lines("fault.injected").is_empty()
        });
        let struck = now();
        wait_until(Duration::from_secs(10), "/live to fail", || {
            http_status(health, "/live") == 503
        });
        let live_failed_after = now() - struck;
        wait_until(
            Duration::from_secs(10),
            "the watchdog to be withheld",
            || !plugin.lines("serve.watchdog_withheld").is_empty(),
        );
        let withheld = now();
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            notify.arrivals(withheld, "WATCHDOG=1").is_empty(),
            "no WATCHDOG=1 while the driver is stalled: {:?}",
            notify.since(withheld)
        );
        let statuses = notify.status_lines(struck);
        assert!(
            statuses
                .last()
                .is_some_and(|status| status.starts_with("driver stalled for ")),
            "{statuses:?}"
        );
        assert!(
            live_failed_after < Duration::from_secs(7),
            "/live failed {live_failed_after:?} after the stall"
        );
        eprintln!("driver-stall: /live 503 after {live_failed_after:?}; watchdog withheld");
    }
}
