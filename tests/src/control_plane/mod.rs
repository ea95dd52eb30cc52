//! A real Kubernetes control plane around the real plugin, for integration tests.
//!
//! [`ControlPlane::start`] starts, on loopback ports and in a temporary directory of its own:
//!
//! - one **etcd** (built by `scripts/install-kube.sh`);
//! - one real **OpenBao** dev server with transit and AppRole ([`crate::openbao_dev::Bao`]);
//! - per node, one **`bao-kms-provider serve`** with its own socket and state directory, and one
//!   **kube-apiserver** (built by `scripts/install-kube.sh`) whose `EncryptionConfiguration`
//!   sends Secrets through that plugin (`kms` apiVersion v2, [`PROVIDER_NAME`], timeout 3 s),
//!   with a self-made serving certificate, service-account keys and a static admin token
//!   ([`pki::Pki`]).
//!
//! Every process is stopped when the value is dropped (also on a panic; a watchdog shell kills
//! it when the test process dies without unwinding), and every wait has a deadline. On a panic
//! the tail of every log is printed.
//!
//! The binaries: kube-apiserver and etcd from the paths `scripts/install-kube.sh` prints (or
//! `KUBE_APISERVER_BIN` and `ETCD_BIN`), the plugin from `BAO_KMS_PROVIDER_BIN` or else built
//! with `cargo build -p bao-kms-runtime-tokio --bin bao-kms-provider`.

pub mod api;
pub mod pki;
pub mod process;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::openbao_dev::{Bao, KEY_NAME, free_port};

pub use self::api::{ApiClient, EncryptedObject, Sample, etcd_get, samples};
use self::pki::Pki;
use self::process::Process;

/// The KMS provider name in the `EncryptionConfiguration`: etcd values start with
/// `k8s:enc:kms:v2:<name>:`.
pub const PROVIDER_NAME: &str = "bao-kms";
/// The `timeout` of the KMS provider in the `EncryptionConfiguration`.
pub const KMS_TIMEOUT: &str = "3s";
/// How long etcd may take to answer its health check.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the plugin may take from spawn to a connectable socket.
const PLUGIN_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long kube-apiserver may take to become ready (2 busy cores: usually 10 to 20 s).
pub const APISERVER_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a process may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the control plane could not be set up or a step failed.
#[derive(Debug)]
pub enum Error {
    /// A binary is missing or could not be built.
    Missing(String),
    /// A set-up step failed.
    Setup(String),
    /// A system call failed.
    Io {
        /// What was being done.
        action: String,
        /// The error.
        error: std::io::Error,
    },
    /// A process exited when it should be running.
    Exited {
        /// Its name.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// A wait ran out.
    Timeout(String),
    /// An HTTP call failed (transport).
    Http(String),
}

impl Error {
    fn io(action: impl Into<String>, error: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            error,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(what) => write!(f, "missing: {what}"),
            Self::Setup(what) => write!(f, "set-up failed: {what}"),
            Self::Io { action, error } => write!(f, "{action}: {error}"),
            Self::Exited {
                name,
                status,
                log_tail,
            } => write!(f, "{name} exited with {status}; its log ends:\n{log_tail}"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Self::Http(what) => write!(f, "HTTP: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// The test clock (the workspace forbids `Instant::now` in product code).
#[allow(
    clippy::disallowed_methods,
    reason = "tests need a clock for their deadlines"
)]
pub fn now() -> Instant {
    Instant::now()
}

/// A point in time a wait must not pass.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self(now() + timeout)
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        now() >= self.0
    }
}

/// Polls `check` every `every` until it returns `Some`, or fails with `what` at the deadline.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let deadline = Deadline::after(timeout);
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if deadline.passed() {
            return Err(Error::Timeout(format!("{what} (within {timeout:?})")));
        }
        std::thread::sleep(every);
    }
}

/// Whether a missing tool fails a test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The three binaries a control plane runs besides OpenBao.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
    /// bao-kms-provider.
    pub plugin: PathBuf,
}

/// The binaries, found or built once per test process.
pub fn binaries() -> Result<&'static Binaries, Error> {
    static FOUND: OnceLock<Result<Binaries, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| find_binaries().map_err(|error| error.to_string()))
        .as_ref()
        .map_err(|error| Error::Missing(error.clone()))
}

fn find_binaries() -> Result<Binaries, Error> {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/install-kube.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| Error::io("run scripts/install-kube.sh", error))?;
    if !output.status.success() {
        return Err(Error::Missing(format!(
            "scripts/install-kube.sh exited with {}",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let (Some(kube_apiserver), Some(etcd)) = (lines.next(), lines.next()) else {
        return Err(Error::Missing(format!(
            "scripts/install-kube.sh printed no two paths: {stdout}"
        )));
    };
    Ok(Binaries {
        kube_apiserver: PathBuf::from(kube_apiserver),
        etcd: PathBuf::from(etcd),
        plugin: plugin_binary()?,
    })
}

/// `BAO_KMS_PROVIDER_BIN`, or the binary `cargo build` leaves in this target directory (a
/// no-op when it is up to date, so a test never runs a stale plugin).
fn plugin_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("BAO_KMS_PROVIDER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "bao-kms-runtime-tokio",
            "--bin",
            "bao-kms-provider",
        ])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .status()
        .map_err(|error| Error::io("run cargo build", error))?;
    if !status.success() {
        return Err(Error::Missing(format!(
            "cargo build of bao-kms-provider exited with {status}"
        )));
    }
    // The test binary is <target>/debug/deps/<name>; the plugin is <target>/debug/.
    let exe = std::env::current_exe().map_err(|error| Error::io("current_exe", error))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::Missing("no target directory above the test binary".into()))?;
    let plugin = profile_dir.join("bao-kms-provider");
    if plugin.is_file() {
        Ok(plugin)
    } else {
        Err(Error::Missing(format!(
            "{} after cargo build",
            plugin.display()
        )))
    }
}

/// Creates `path` as a directory with mode `0750` (what the plugin requires of its
/// directories).
fn private_dir(path: &Path) -> Result<PathBuf, Error> {
    fs::create_dir_all(path)
        .map_err(|error| Error::io(format!("mkdir {}", path.display()), error))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o750))
        .map_err(|error| Error::io(format!("chmod {}", path.display()), error))?;
    Ok(path.to_path_buf())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    fs::write(path, text).map_err(|error| Error::io(format!("write {}", path.display()), error))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|error| Error::io(format!("chmod {}", path.display()), error))
}

/// One control-plane node: a plugin and the kube-apiserver that uses it.
#[derive(Debug)]
pub struct Node {
    /// The node's index (0, 1, ...).
    pub index: usize,
    /// Its directory.
    pub dir: PathBuf,
    /// The plugin's socket.
    pub socket: PathBuf,
    /// The plugin's metrics port.
    pub metrics_port: u16,
    /// The plugin's health port.
    pub health_port: u16,
    /// kube-apiserver's secure port.
    pub apiserver_port: u16,
    plugin_config: PathBuf,
    encryption_config: PathBuf,
    plugin: Option<Process>,
    apiserver: Option<Process>,
    plugin_starts: u32,
    apiserver_starts: u32,
}

impl Node {
    /// The plugin's configuration file.
    pub fn plugin_config(&self) -> &Path {
        &self.plugin_config
    }

    /// The plugin's metrics URL.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }
}

/// A running control plane; see the module documentation.
#[derive(Debug)]
pub struct ControlPlane {
    // Declared first: dropped (stopped) before etcd and OpenBao.
    nodes: Vec<Node>,
    etcd: Process,
    etcd_port: u16,
    bao: Bao,
    pki: Pki,
    binaries: &'static Binaries,
    lineage: String,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd, OpenBao and `nodes` nodes (plugin, then kube-apiserver), and waits until
    /// every kube-apiserver is ready.
    pub fn start(nodes: usize) -> Result<Self, Error> {
        let binaries = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("bao-kms-cp-")
            .tempdir()
            .map_err(|error| Error::io("create a temporary directory", error))?;
        let pki_dir = private_dir(&dir.path().join("pki"))?;
        let pki = Pki::create(&pki_dir)?;
        let bao = Bao::start();
        let (etcd, etcd_port) = start_etcd(binaries, dir.path())?;
        let lineage = pki.admin_token[..32].to_owned();
        let mut plane = Self {
            nodes: Vec::new(),
            etcd,
            etcd_port,
            bao,
            pki,
            binaries,
            lineage,
            dir,
        };
        if let Err(error) = plane.bring_up(nodes) {
            plane.print_logs();
            return Err(error);
        }
        Ok(plane)
    }

    fn bring_up(&mut self, nodes: usize) -> Result<(), Error> {
        for index in 0..nodes {
            let node = self.new_node(index)?;
            self.nodes.push(node);
            self.start_plugin(index)?;
        }
        for index in 0..nodes {
            self.start_apiserver(index)?;
        }
        for index in 0..nodes {
            self.wait_apiserver_ready(index)?;
        }
        Ok(())
    }

    /// The OpenBao server.
    pub fn bao(&self) -> &Bao {
        &self.bao
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// The control plane's directory (logs, configuration, state).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An admin client of node `index`'s kube-apiserver.
    pub fn api(&self, index: usize) -> Result<ApiClient, Error> {
        ApiClient::new(
            self.nodes[index].apiserver_port,
            &self.pki.ca_cert,
            &self.pki.admin_token,
        )
    }

    /// The raw value etcd stores under `key`, read with etcd's v3 JSON API.
    pub fn etcd_value(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        etcd_get(self.etcd_port, key)
    }

    /// etcd's client port (plain HTTP on loopback; its v3 JSON gateway answers there too).
    pub fn etcd_port(&self) -> u16 {
        self.etcd_port
    }

    /// The binaries the control plane runs.
    pub fn binaries(&self) -> &'static Binaries {
        self.binaries
    }

    /// Runs `bao-kms-provider <args>` (an operator command) to completion, bounded by
    /// `timeout(1)`; returns the exit code and stdout.
    pub fn plugin_command(&self, args: &[&str]) -> Result<(i32, String), Error> {
        let output = Command::new("timeout")
            .arg("60")
            .arg(&self.binaries.plugin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| Error::io("run bao-kms-provider", error))?;
        if !output.stderr.is_empty() {
            eprintln!(
                "bao-kms-provider {}: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok((
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ))
    }

    /// A plain HTTP GET of the plugin of node `index` on its metrics port.
    pub fn plugin_metrics(&self, index: usize) -> Result<String, Error> {
        api::plain_get(self.nodes[index].metrics_port, "/metrics")
    }

    fn new_node(&self, index: usize) -> Result<Node, Error> {
        let dir = private_dir(&self.dir.path().join(format!("node-{index}")))?;
        let run = private_dir(&dir.join("run"))?;
        private_dir(&dir.join("state"))?;
        let node = Node {
            index,
            socket: run.join("kms.sock"),
            metrics_port: free_port(),
            health_port: free_port(),
            apiserver_port: free_port(),
            plugin_config: dir.join("plugin.yaml"),
            encryption_config: dir.join("encryption-config.yaml"),
            dir,
            plugin: None,
            apiserver: None,
            plugin_starts: 0,
            apiserver_starts: 0,
        };
        self.write_plugin_config(&node)?;
        write_file(
            &node.encryption_config,
            &format!(
                "apiVersion: apiserver.config.k8s.io/v1\n\
                 kind: EncryptionConfiguration\n\
                 resources:\n\
                 \x20 - resources: [\"secrets\"]\n\
                 \x20   providers:\n\
                 \x20     - kms:\n\
                 \x20         apiVersion: v2\n\
                 \x20         name: {PROVIDER_NAME}\n\
                 \x20         endpoint: unix://{socket}\n\
                 \x20         timeout: {KMS_TIMEOUT}\n\
                 \x20     - identity: {{}}\n",
                socket = node.socket.display()
            ),
            0o600,
        )?;
        Ok(node)
    }

    /// The plugin configuration of `node`: short intervals, so rotations and outages play out
    /// within seconds; every node shares the key lineage (one cluster, one key).
    fn write_plugin_config(&self, node: &Node) -> Result<(), Error> {
        let text = format!(
            r#"configVersion: v1alpha1
server:
  socketPath: {socket}
  socketDirectories: ["{socket_dir}"]
  socketMode: "0660"
  metricsAddress: 127.0.0.1:{metrics}
  healthAddress: 127.0.0.1:{health}
openbao:
  address: {address}
  caCertFile: {ca}
  tlsServerName: 127.0.0.1
  instanceId: bao-kube-tests
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
    providerName: {PROVIDER_NAME}
    clusterId: kube-tests
    transitMountId: transit-kube-tests
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
            socket = node.socket.display(),
            socket_dir = node.dir.join("run").display(),
            metrics = node.metrics_port,
            health = node.health_port,
            address = self.bao.address(),
            ca = self.bao.file("ca.pem").display(),
            role_id = self.bao.file("role-id").display(),
            secret_id = self.bao.file("secret-id").display(),
            lineage = self.lineage,
            state = node.dir.join("state/key-registry.json").display(),
        );
        write_file(&node.plugin_config, &text, 0o640)
    }

    /// Starts node `index`'s plugin and waits (bounded) until its socket accepts connections.
    pub fn start_plugin(&mut self, index: usize) -> Result<(), Error> {
        let binary = self.binaries.plugin.clone();
        let node = &mut self.nodes[index];
        if node.plugin.is_some() {
            return Err(Error::Setup(format!("plugin {index} is already running")));
        }
        node.plugin_starts += 1;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(&node.plugin_config);
        for variable in [
            "BAO_KMS_PROVIDER_CONFIG",
            "BAO_KMS_PROVIDER_LOG_LEVEL",
            "NOTIFY_SOCKET",
        ] {
            command.env_remove(variable);
        }
        let mut plugin = Process::spawn(command, &node.dir, "plugin", STOP_TIMEOUT)?;
        let socket = node.socket.clone();
        wait_for(
            PLUGIN_START_TIMEOUT,
            Duration::from_millis(50),
            "the plugin socket",
            || {
                plugin.check_running()?;
                Ok(std::os::unix::net::UnixStream::connect(&socket)
                    .is_ok()
                    .then_some(()))
            },
        )?;
        node.plugin = Some(plugin);
        Ok(())
    }

    /// Stops node `index`'s plugin with SIGTERM (SIGKILL after a bound).
    pub fn stop_plugin(&mut self, index: usize) {
        if let Some(mut plugin) = self.nodes[index].plugin.take() {
            plugin.stop();
        }
    }

    /// Starts node `index`'s kube-apiserver (does not wait for it to be ready).
    pub fn start_apiserver(&mut self, index: usize) -> Result<(), Error> {
        let etcd = format!("http://127.0.0.1:{}", self.etcd_port);
        let pki = self.pki.clone();
        let binary = self.binaries.kube_apiserver.clone();
        let node = &mut self.nodes[index];
        if node.apiserver.is_some() {
            return Err(Error::Setup(format!(
                "apiserver {index} is already running"
            )));
        }
        node.apiserver_starts += 1;
        let cert_dir = private_dir(&node.dir.join("apiserver-certs"))?;
        let arg = |name: &str, value: &Path| format!("--{name}={}", value.display());
        let mut command = Command::new(binary);
        command.args([
            format!("--etcd-servers={etcd}"),
            format!("--secure-port={}", node.apiserver_port),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            // No Endpoints object for a loopback address; nothing here routes to it.
            "--endpoint-reconciler-type=none".to_owned(),
            arg("cert-dir", &cert_dir),
            arg("tls-cert-file", &pki.serving_cert),
            arg("tls-private-key-file", &pki.serving_key),
            arg("token-auth-file", &pki.token_file),
            arg("service-account-key-file", &pki.service_account_pub),
            arg("service-account-signing-key-file", &pki.service_account_key),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            arg("encryption-provider-config", &node.encryption_config),
            "--enable-priority-and-fairness=false".to_owned(),
            "--profiling=false".to_owned(),
            "--v=1".to_owned(),
        ]);
        let apiserver = Process::spawn(command, &node.dir, "kube-apiserver", STOP_TIMEOUT)?;
        node.apiserver = Some(apiserver);
        Ok(())
    }

    /// Waits (bounded) until node `index`'s kube-apiserver answers `/readyz` with 200.
    pub fn wait_apiserver_ready(&mut self, index: usize) -> Result<(), Error> {
        let api = self.api(index)?;
        let node = &mut self.nodes[index];
        let apiserver = node
            .apiserver
            .as_mut()
            .ok_or_else(|| Error::Setup(format!("apiserver {index} is not running")))?;
        wait_for(
            APISERVER_START_TIMEOUT,
            Duration::from_millis(250),
            "kube-apiserver /readyz",
            || {
                apiserver.check_running()?;
                Ok(matches!(api.get("/readyz"), Ok((200, _))).then_some(()))
            },
        )
    }

    /// Stops node `index`'s kube-apiserver with SIGTERM (SIGKILL after a bound).
    pub fn stop_apiserver(&mut self, index: usize) {
        if let Some(mut apiserver) = self.nodes[index].apiserver.take() {
            apiserver.stop();
        }
    }

    /// Prints the end of every log (for a failing test).
    pub fn print_logs(&self) {
        let mut processes: Vec<&Process> = vec![&self.etcd];
        for node in &self.nodes {
            processes.extend(node.plugin.iter());
            processes.extend(node.apiserver.iter());
        }
        for process in processes {
            eprintln!(
                "---- last lines of {} ----\n{}",
                process.name(),
                process.log_tail(25)
            );
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        // kube-apiservers before their plugins, so they do not log a storm of KMS errors.
        for node in &mut self.nodes {
            if let Some(mut apiserver) = node.apiserver.take() {
                apiserver.stop();
            }
        }
        for node in &mut self.nodes {
            if let Some(mut plugin) = node.plugin.take() {
                plugin.stop();
            }
        }
        self.etcd.stop();
    }
}

/// Starts etcd on two free loopback ports and waits (bounded) until it is healthy.
fn start_etcd(binaries: &Binaries, dir: &Path) -> Result<(Process, u16), Error> {
    let client = free_port();
    let peer = free_port();
    let data = private_dir(&dir.join("etcd-data"))?;
    let mut command = Command::new(&binaries.etcd);
    command.args([
        "--name=default".to_owned(),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
        // A test's data lives as long as the test: no need to wait for the disk.
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ]);
    let mut etcd = Process::spawn(command, dir, "etcd", STOP_TIMEOUT)?;
    wait_for(
        ETCD_START_TIMEOUT,
        Duration::from_millis(100),
        "etcd /health",
        || {
            etcd.check_running()?;
            Ok(api::plain_get(client, "/health")
                .is_ok_and(|body| body.contains("\"health\":\"true\""))
                .then_some(()))
        },
    )?;
    Ok((etcd, client))
}
