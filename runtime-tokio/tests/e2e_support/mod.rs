//! Harness for the end-to-end tests: a real OpenBao 2.7.2 dev server (TLS, transit with
//! `disable_upsert`, the `kms-plugin` policy, AppRole) started through the repository scripts,
//! the real `bao-kms-provider serve` binary as a child process, and the kube-apiserver stand-in
//! of the test kit talking gRPC to it over the Unix socket.
//!
//! Every test gets its own OpenBao server and its own temporary directory, because tests seal
//! OpenBao, revoke tokens and rotate the key. Everything started here is stopped on `Drop`
//! (the plugin with SIGTERM, then SIGKILL after a bound), also when a test panics; a watchdog
//! shell per process stops it if the test process dies without unwinding. On a panic the tail of
//! every plugin log is printed. Every wait is bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

// The kube-apiserver stand-in, the OpenBao servers, the port picking and the watchdog shells
// live in the test kit (`bao-kms-testkit`, a dev-dependency): one copy, shared with its
// control-plane tests.
pub(crate) use bao_kms_testkit::kube_apiserver;
pub(crate) use bao_kms_testkit::openbao_dev;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use self::kube_apiserver::KubeApiserver;
pub(crate) use self::openbao_dev::{Bao, KEY_NAME, free_port, spawn_watchdog};

/// How long the plugin may take from spawn to a connectable socket (bootstrap grace is 20 s).
const PLUGIN_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the plugin may take to exit after SIGTERM before it is killed.
const PLUGIN_STOP_TIMEOUT: Duration = Duration::from_secs(10);

// The configured intervals, so tests can derive their bounds from them.
/// `status.probeInterval`.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// `status.statusMaxStaleness`.
pub(crate) const STATUS_MAX_STALENESS: Duration = Duration::from_secs(5);
/// `rotation.activationDelay`.
pub(crate) const ACTIVATION_DELAY: Duration = Duration::from_secs(2);
/// The provider's probe circuit breaker cooldown (fixed in this release, not configurable).
pub(crate) const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// The test clock (the workspace forbids `Instant::now` in product code).
#[allow(
    clippy::disallowed_methods,
    reason = "tests need a clock for their timeouts"
)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The plugin binary built by cargo for this test.
pub(crate) fn plugin_binary() -> &'static str {
    env!("CARGO_BIN_EXE_bao-kms-provider")
}

/// base64url(SHA-256(key_id)): the `key-id-hash` annotation and the `hash` label of
/// `openbao_kms_status_key_id_hash`.
pub(crate) fn key_id_digest(key_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(key_id.as_bytes()))
}

/// `sha256:<hex>`: how kube-apiserver hashes key_ids in its metrics and logs.
pub(crate) fn apiserver_key_id_hash(key_id: &str) -> String {
    let hex: String = Sha256::digest(key_id.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A bounded wait: `check` panics once the deadline has passed.
#[derive(Debug)]
pub(crate) struct Deadline {
    start: Instant,
    end: Instant,
    what: String,
}

impl Deadline {
    pub(crate) fn after(timeout: Duration, what: impl Into<String>) -> Self {
        let start = now();
        Self {
            start,
            end: start + timeout,
            what: what.into(),
        }
    }

    pub(crate) fn passed(&self) -> bool {
        now() >= self.end
    }

    /// Panics when the deadline has passed.
    pub(crate) fn check(&self) {
        assert!(
            !self.passed(),
            "timed out after {:?} waiting for {}",
            self.end - self.start,
            self.what
        );
    }

    pub(crate) fn elapsed(&self) -> Duration {
        now() - self.start
    }
}

// ---------------------------------------------------------------------------------------------
// The plugin process

/// One `bao-kms-provider` child process; stderr (its log) and stdout go to files.
pub(crate) struct PluginProcess {
    child: Child,
    stderr: PathBuf,
    stdout: PathBuf,
    exit: Option<ExitStatus>,
    watchdog: Option<Child>,
}

impl PluginProcess {
    /// Starts `bao-kms-provider <args>`, writing `<dir>/<name>.log` (stderr) and
    /// `<dir>/<name>.stdout`.
    pub(crate) fn spawn(args: &[&str], dir: &Path, name: &str) -> Self {
        let stderr = dir.join(format!("{name}.log"));
        let stdout = dir.join(format!("{name}.stdout"));
        let mut command = Command::new(plugin_binary());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap());
        for variable in [
            "BAO_KMS_PROVIDER_CONFIG",
            "BAO_KMS_PROVIDER_CONFIG_PATH",
            "BAO_KMS_PROVIDER_LOG_LEVEL",
            "BAO_KMS_PROVIDER_LOGGING_LEVEL",
            "BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS",
            "BAO_KMS_PROVIDER_SERVER_METRICSADDRESS",
            "BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS",
            "BAO_KMS_PROVIDER_SERVER_HEALTHADDRESS",
            "NOTIFY_SOCKET",
        ] {
            command.env_remove(variable);
        }
        let child = command.spawn().expect("spawn bao-kms-provider");
        let watchdog = spawn_watchdog(&format!("kill -KILL {} 2>/dev/null", child.id()));
        Self {
            child,
            stderr,
            stdout,
            exit: None,
            watchdog: Some(watchdog),
        }
    }

    /// `serve --config <config>`.
    pub(crate) fn serve(config: &Path, dir: &Path, name: &str) -> Self {
        Self::spawn(&["serve", "--config", config.to_str().unwrap()], dir, name)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub(crate) fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap();
        }
        self.exit
    }

    /// Waits at most `timeout` for the process to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Deadline::after(timeout, "the plugin to exit");
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if deadline.passed() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `timeout` for the exit that must come; panics with the log otherwise.
    pub(crate) fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "the plugin did not exit within {timeout:?}; its log:\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`PLUGIN_STOP_TIMEOUT`].
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        if let Some(status) = self.wait_exit(PLUGIN_STOP_TIMEOUT) {
            return status;
        }
        eprintln!(
            "the plugin (pid {}) ignored SIGTERM for {PLUGIN_STOP_TIMEOUT:?}; killing it",
            self.pid()
        );
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        self.exit = Some(status);
        status
    }

    /// The whole log (stderr).
    pub(crate) fn log(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// Everything written to stdout.
    pub(crate) fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Waits (bounded) until `socket` accepts connections; fails when the process exits first.
    fn wait_for_socket(&mut self, socket: &Path, timeout: Duration) -> Result<(), String> {
        let deadline = Deadline::after(timeout, "the plugin socket");
        loop {
            if let Some(status) = self.try_exit() {
                return Err(format!("the plugin exited during start-up with {status}"));
            }
            let is_socket =
                fs::symlink_metadata(socket).is_ok_and(|metadata| metadata.file_type().is_socket());
            if is_socket && std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Ok(());
            }
            if deadline.passed() {
                return Err(format!("no connectable socket within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        self.terminate();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// What differs between the plugin configurations of one test.
#[derive(Clone, Debug)]
pub(crate) struct PluginConfig {
    pub(crate) socket: PathBuf,
    pub(crate) state_path: PathBuf,
    pub(crate) metrics_port: u16,
    pub(crate) health_port: u16,
    pub(crate) openbao_address: String,
    /// Every node of an HA cluster; written as `openbao.addresses` when there is more than one.
    pub(crate) openbao_addresses: Vec<String>,
}

/// Creates `path` as a directory with mode `0750`.
pub(crate) fn private_dir(path: &Path) -> PathBuf {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o750)).unwrap();
    path.to_path_buf()
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0_u8; bytes];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buffer)
        .unwrap();
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// One test's world

/// One test's world: an OpenBao server, a directory (`run/` for the socket, `state/`, `etc/`,
/// the logs) and at most one main plugin process.
pub(crate) struct E2e {
    /// The main plugin; declared first so it is stopped before OpenBao.
    plugin: Option<PluginProcess>,
    bao: Bao,
    dir: tempfile::TempDir,
    config: PluginConfig,
    config_path: PathBuf,
    lineage: String,
    starts: u32,
    http: ureq::Agent,
}

impl E2e {
    /// OpenBao running and set up, the configuration written, the plugin not started.
    pub(crate) fn new() -> Self {
        Self::with_bao(Bao::start())
    }

    /// [`E2e::new`] against a dev server with a file audit device ([`Bao::audit_log`]).
    pub(crate) fn new_audited() -> Self {
        Self::with_bao(Bao::start_audited())
    }

    /// [`E2e::new`] against a 3-node raft cluster, the plugin configured with every node.
    pub(crate) fn new_raft() -> Self {
        Self::with_bao(Bao::start_raft())
    }

    fn with_bao(bao: Bao) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bao-kms-e2e-")
            .tempdir()
            .unwrap();
        let run = private_dir(&dir.path().join("run"));
        let state = private_dir(&dir.path().join("state"));
        private_dir(&dir.path().join("etc"));
        let config = PluginConfig {
            socket: run.join("kms.sock"),
            state_path: state.join("key-registry.json"),
            metrics_port: free_port(),
            health_port: free_port(),
            openbao_address: bao.address(),
            openbao_addresses: bao.addresses(),
        };
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut e2e = Self {
            plugin: None,
            bao,
            dir,
            config_path: PathBuf::new(),
            config,
            lineage: random_hex(16),
            starts: 0,
            http,
        };
        e2e.config_path = e2e.write_config("config", &e2e.config.clone());
        e2e
    }

    /// [`E2e::new`] with the plugin started and serving.
    pub(crate) fn running() -> Self {
        let mut e2e = Self::new();
        e2e.start_plugin();
        e2e
    }

    pub(crate) fn bao(&self) -> &Bao {
        &self.bao
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn config(&self) -> &PluginConfig {
        &self.config
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.config.socket
    }

    pub(crate) fn plugin(&mut self) -> &mut PluginProcess {
        self.plugin.as_mut().expect("the plugin is running")
    }

    /// Writes `etc/<name>.yaml` (mode 0640) for `config`; returns its path.
    ///
    /// Short intervals so a test sees probes, staleness and rotations within seconds.
    pub(crate) fn write_config(&self, name: &str, config: &PluginConfig) -> PathBuf {
        let dir = self.dir.path();
        let path = dir.join("etc").join(format!("{name}.yaml"));
        let socket_dir = config.socket.parent().unwrap();
        let text = format!(
            r#"configVersion: v1alpha1
server:
  socketPath: {socket}
  socketDirectories: ["{socket_dir}"]
  socketMode: "0660"
  metricsAddress: 127.0.0.1:{metrics}
  healthAddress: 127.0.0.1:{health}
openbao:
  address: {address}{addresses}
  caCertFile: {ca}
  tlsServerName: 127.0.0.1
  instanceId: bao-e2e
  timeout: 2s
auth:
  method: approle
  approle:
    mountPath: auth/approle
    roleIdFile: {role_id}
    secretIdFile: {secret_id}
transit:
  mountPath: transit
  keyName: {KEY_NAME}
  keyIdScope:
    providerName: e2e-kms
    clusterId: e2e-cluster
    transitMountId: transit-e2e
    keyLineageId: "{lineage}"
state:
  path: {state}
bootstrap:
  graceTimeout: 20s
  retryInterval: 1s
status:
  probeInterval: 1s
  deepProbeInterval: 30s
  statusMaxStaleness: 5s
rotation:
  activationDelay: 2s
  requireStableObservationCount: 2
logging:
  level: info
  format: json
"#,
            socket = config.socket.display(),
            socket_dir = socket_dir.display(),
            metrics = config.metrics_port,
            health = config.health_port,
            address = config.openbao_address,
            addresses = if config.openbao_addresses.len() > 1 {
                format!("\n  addresses: [{}]", config.openbao_addresses.join(", "))
            } else {
                String::new()
            },
            ca = self.bao.file("ca.pem").display(),
            role_id = self.bao.file("role-id").display(),
            secret_id = self.bao.file("secret-id").display(),
            lineage = self.lineage,
            state = config.state_path.display(),
        );
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        path
    }

    /// Starts the main plugin and waits (bounded) until its socket accepts connections. A
    /// listener port taken in between (the only start-up race) is retried with new ports.
    pub(crate) fn start_plugin(&mut self) {
        assert!(self.plugin.is_none(), "the plugin is already running");
        for attempt in 0..3 {
            self.starts += 1;
            let name = format!("plugin-{}", self.starts);
            let mut plugin = PluginProcess::serve(&self.config_path, self.dir.path(), &name);
            match plugin.wait_for_socket(&self.config.socket, PLUGIN_START_TIMEOUT) {
                Ok(()) => {
                    self.plugin = Some(plugin);
                    return;
                }
                Err(_) if attempt < 2 && plugin.log().contains(" listener: ") => {
                    drop(plugin);
                    self.config.metrics_port = free_port();
                    self.config.health_port = free_port();
                    self.config_path = self.write_config("config", &self.config.clone());
                }
                Err(error) => panic!("{error}; the plugin log:\n{}", plugin.log_tail(40)),
            }
        }
    }

    /// Stops the main plugin with SIGTERM (SIGKILL after a bound) and returns its exit status.
    pub(crate) fn stop_plugin(&mut self) -> ExitStatus {
        let mut plugin = self.plugin.take().expect("the plugin is running");
        plugin.terminate()
    }

    /// Stops the main plugin with SIGTERM and starts it again with the same configuration.
    pub(crate) fn restart_plugin(&mut self) -> ExitStatus {
        let status = self.stop_plugin();
        self.start_plugin();
        status
    }

    /// Starts another plugin process with the configuration at `config`.
    pub(crate) fn spawn_plugin(&self, config: &Path, name: &str) -> PluginProcess {
        PluginProcess::serve(config, self.dir.path(), name)
    }

    /// A kube-apiserver stand-in connected to the plugin's socket.
    pub(crate) async fn apiserver(&self) -> KubeApiserver {
        KubeApiserver::connect(self.socket())
            .await
            .expect("connect to the plugin socket")
    }

    /// One scrape of `/metrics`.
    pub(crate) fn metrics(&self) -> Metrics {
        let (status, body) = self.get(self.config.metrics_port, "/metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Metrics::parse(&body)
    }

    /// `/ready`: the HTTP status and the JSON body.
    pub(crate) fn ready(&self) -> (u16, serde_json::Value) {
        let (status, body) = self.get(self.config.health_port, "/ready");
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("/ready body is not JSON ({error}): {body}"));
        (status, json)
    }

    fn get(&self, port: u16, path: &str) -> (u16, String) {
        let mut response = self
            .http
            .get(&format!("http://127.0.0.1:{port}{path}"))
            .call()
            .unwrap_or_else(|error| panic!("GET {path} on port {port}: {error}"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, body)
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Print every plugin log of this test; libtest shows it with the failure.
        let Ok(entries) = fs::read_dir(self.dir.path()) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        logs.sort();
        for log in logs {
            eprintln!(
                "---- last lines of {} ----\n{}",
                log.display(),
                tail(&read_lossy(&log), 40)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// One sample of the Prometheus text format.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A parsed `/metrics` scrape.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text exposition format (enough of it for this provider's output).
    pub(crate) fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| {
                panic!("sample value is not a number: {line}");
            });
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        Self { samples }
    }

    /// Every sample of `name`.
    pub(crate) fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .collect()
    }

    /// The sum of the samples of `name` carrying every label in `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
            })
            .map(|sample| sample.value)
            .sum()
    }

    /// The value of the unlabelled sample `name`.
    pub(crate) fn value(&self, name: &str) -> Option<f64> {
        self.series(name)
            .into_iter()
            .find(|sample| sample.labels.is_empty())
            .map(|sample| sample.value)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

// ---------------------------------------------------------------------------------------------
// Fault injection on OpenBao and stored seeds, shared by the call-path and failover tests

/// Stored seeds: `count` distinct Decrypt requests as kube-apiserver would send them.
pub(crate) async fn stored_seeds(
    e2e: &E2e,
    count: u8,
) -> Vec<(Vec<u8>, bao_kms_proto::DecryptRequest)> {
    let mut api = e2e.apiserver().await;
    let mut seeds = Vec::new();
    for n in 0..count {
        let seed = vec![n; 32];
        let answer = api.encrypt(seed.clone()).await.expect("encrypt");
        let request = bao_kms_proto::DecryptRequest {
            ciphertext: answer.ciphertext,
            uid: format!("uid-{n}"),
            key_id: answer.key_id,
            annotations: answer.annotations,
        };
        seeds.push((seed, request));
    }
    seeds
}

pub(crate) fn signal(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// SIGCONT on drop, so a failing test never leaves OpenBao frozen for the clean-up.
pub(crate) struct Frozen(pub(crate) i32);

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}
