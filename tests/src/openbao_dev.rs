//! A real OpenBao 2.7.2 dev server (TLS, transit with `disable_upsert`, the `kms-plugin`
//! policy, AppRole) started through the repository scripts, loopback port picking, and the
//! watchdog shells that stop a test's processes when the test process dies without unwinding.
//!
//! Shared by the plugin's end-to-end tests (`runtime-tokio/tests/e2e_support`, through the test
//! kit as a dev-dependency) and the control-plane tests of this kit: one copy of the code
//! that starts OpenBao. Every test gets its own server, because tests seal OpenBao, revoke
//! tokens and rotate the key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failure here is a test failure with its message"
)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Attempts at starting an OpenBao server (a port may be taken in between).
const BAO_START_ATTEMPTS: usize = 4;
/// The Transit key the setup script creates.
pub const KEY_NAME: &str = "kms-key";

/// The repository root (both packages that compile this file sit one level below it).
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the package directory has a parent")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Ports

/// Serialises port picking and OpenBao start-up inside this test binary.
static PORT_LOCK: Mutex<()> = Mutex::new(());
static PORT_SEQ: AtomicU32 = AtomicU32::new(0);

fn lock_ports() -> std::sync::MutexGuard<'static, ()> {
    PORT_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A port P on 127.0.0.1 in `[base, base + 2 * span)` such that P and P+1 are free right now.
/// Below the ephemeral range, so outgoing connections do not take it in between.
fn free_ports(base: u32, span: u32, pair: bool) -> u16 {
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..2000 {
        let n = PORT_SEQ.fetch_add(1, Ordering::Relaxed);
        let offset = seed.wrapping_add(n.wrapping_mul(37)) % span;
        let port = u16::try_from(base + offset * 2).unwrap();
        let first = TcpListener::bind(("127.0.0.1", port));
        let second = if pair {
            TcpListener::bind(("127.0.0.1", port + 1)).map(Some)
        } else {
            Ok(None)
        };
        if first.is_ok() && second.is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// A base port P on 127.0.0.1 such that P..P+6 (three nodes' API and cluster ports) are free.
fn free_raft_ports() -> u16 {
    for _ in 0..200 {
        let base = free_ports(26_000, 1500, true);
        let rest = (2..6).all(|offset| TcpListener::bind(("127.0.0.1", base + offset)).is_ok());
        if rest && base.is_multiple_of(2) {
            return base;
        }
    }
    panic!("no six free ports in a row on 127.0.0.1");
}

/// A free port for a plugin listener (metrics, health).
pub fn free_port() -> u16 {
    let _ports = lock_ports();
    free_ports(30_001, 1300, false)
}

// ---------------------------------------------------------------------------------------------
// OpenBao

/// The `bao` binary, installed once per test binary.
pub fn bao_binary() -> &'static Path {
    static BAO: OnceLock<PathBuf> = OnceLock::new();
    BAO.get_or_init(|| {
        let output = Command::new(repo_root().join("scripts/install-bao.sh"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/install-bao.sh");
        assert!(output.status.success(), "scripts/install-bao.sh failed");
        let path = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        assert!(!path.is_empty(), "install-bao.sh printed no path");
        PathBuf::from(path)
    })
}

/// A running OpenBao dev server (in memory, TLS) with transit, the `kms-plugin` policy and an
/// AppRole, set up by `scripts/openbao-setup-transit.sh`. Dropping it stops the server.
#[derive(Debug)]
pub struct Bao {
    dir: tempfile::TempDir,
    port: u16,
    watchdog: Option<Child>,
    /// The API ports of a raft cluster's nodes (node 1 is `port`); empty for a dev server.
    raft_ports: Vec<u16>,
}

/// The script that starts and stops a kind of OpenBao server.
fn server_script(raft: bool) -> PathBuf {
    let name = if raft {
        "openbao-raft.sh"
    } else {
        "openbao-dev.sh"
    };
    repo_root().join("scripts").join(name)
}

impl Bao {
    /// Starts a server of its own (retrying on a port taken in between) and sets it up.
    pub fn start() -> Self {
        Self::start_dev(false)
    }

    /// [`Bao::start`] with a file audit device writing to [`Bao::audit_log`], so a test can
    /// count what the server really received.
    pub fn start_audited() -> Self {
        Self::start_dev(true)
    }

    fn start_dev(audited: bool) -> Self {
        let mut last_error = String::new();
        for _ in 0..BAO_START_ATTEMPTS {
            match Self::try_start(audited) {
                Ok(bao) => return bao,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start an OpenBao dev server: {last_error}");
    }

    fn try_start(audited: bool) -> Result<Self, String> {
        let bao = bao_binary();
        let scripts = repo_root().join("scripts");
        let dir = tempfile::Builder::new()
            .prefix("bao-kms-e2e-bao-")
            .tempdir()
            .map_err(|error| error.to_string())?;
        let (port, status) = {
            let _ports = lock_ports();
            let port = free_ports(21_000, 4500, true);
            let mut command = Command::new(scripts.join("openbao-dev.sh"));
            if audited {
                command.env("BAO_DEV_AUDIT_LOG", dir.path().join("audit.log"));
            }
            let status = command
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .env("BAO_BIN", bao)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|error| error.to_string())?;
            (port, status)
        };
        // From here on the server may be running: the value stops it on any early return.
        let watchdog = spawn_watchdog(&format!(
            "\"$0\" stop '{dir}' >/dev/null 2>&1; rm -rf -- '{dir}'",
            dir = dir.path().display()
        ));
        let server = Self {
            dir,
            port,
            watchdog: Some(watchdog),
            raft_ports: Vec::new(),
        };
        if !status.success() {
            return Err(format!("openbao-dev.sh start exited with {status}"));
        }
        server.set_up_transit()
    }

    /// Starts a 3-node HA cluster (integrated raft storage, TLS) through
    /// `scripts/openbao-raft.sh` and sets it up like a dev server.
    pub fn start_raft() -> Self {
        let mut last_error = String::new();
        for _ in 0..BAO_START_ATTEMPTS {
            match Self::try_start_raft() {
                Ok(bao) => return bao,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start an OpenBao raft cluster: {last_error}");
    }

    fn try_start_raft() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("bao-kms-e2e-raft-")
            .tempdir()
            .map_err(|error| error.to_string())?;
        let (port, output) = {
            let _ports = lock_ports();
            let port = free_raft_ports();
            let output = Command::new(server_script(true))
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .env("BAO_BIN", bao_binary())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(|error| error.to_string())?;
            (port, output)
        };
        let watchdog = spawn_watchdog(&format!(
            "'{script}' stop '{dir}' >/dev/null 2>&1; rm -rf -- '{dir}'",
            script = server_script(true).display(),
            dir = dir.path().display()
        ));
        let server = Self {
            dir,
            port,
            watchdog: Some(watchdog),
            raft_ports: vec![port, port + 2, port + 4],
        };
        if !output.status.success() {
            return Err(format!(
                "openbao-raft.sh start exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        server.set_up_transit()
    }

    /// Transit, the key, the policy and the AppRole, through the setup script.
    fn set_up_transit(self) -> Result<Self, String> {
        let bao = bao_binary();
        let scripts = repo_root().join("scripts");
        let setup = Command::new(scripts.join("openbao-setup-transit.sh"))
            .arg(self.dir.path())
            .arg("transit")
            .arg(KEY_NAME)
            .env("BAO_BIN", bao)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|error| error.to_string())?;
        if !setup.status.success() {
            return Err(format!(
                "openbao-setup-transit.sh exited with {}: {}",
                setup.status,
                String::from_utf8_lossy(&setup.stderr)
            ));
        }
        Ok(self)
    }

    /// The file audit log of a server started with [`Bao::start_audited`].
    pub fn audit_log(&self) -> PathBuf {
        self.file("audit.log")
    }

    /// Every node's address, node 1 first (one for a dev server).
    pub fn addresses(&self) -> Vec<String> {
        if self.raft_ports.is_empty() {
            return vec![self.address()];
        }
        self.raft_ports
            .iter()
            .map(|port| format!("https://127.0.0.1:{port}"))
            .collect()
    }

    /// The PID of raft node `node` (1-based).
    pub fn node_pid(&self, node: usize) -> i32 {
        let pid = self.file(&format!("node{node}/server.pid"));
        let text = fs::read_to_string(pid).expect("the node's server.pid is readable");
        text.trim().parse().expect("server.pid holds a PID")
    }

    /// The 1-based raft node whose `sys/health` says active, if any.
    pub fn active_node(&self) -> Option<usize> {
        (1..=self.raft_ports.len()).find(|node| self.health_code(*node) == Some(200))
    }

    fn health_code(&self, node: usize) -> Option<u16> {
        let port = self.raft_ports.get(node - 1)?;
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "1",
            ])
            .arg("--cacert")
            .arg(self.file("ca.pem"))
            .arg(format!("https://127.0.0.1:{port}/v1/sys/health"))
            .stdin(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    }

    /// The HTTPS address of the server (node 1 of a cluster).
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The PID of the `bao server` process (for SIGSTOP/SIGCONT fault injection).
    pub fn pid(&self) -> i32 {
        let text = fs::read_to_string(self.file("server.pid")).expect("server.pid is readable");
        text.trim().parse().expect("server.pid holds a PID")
    }

    /// A file of the server's directory (`ca.pem`, `role-id`, `secret-id`, `server.log`, ...).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root_token(&self) -> String {
        fs::read_to_string(self.file("root-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A `bao` CLI command with the root token (the client side bounded by 10 s).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bao_binary());
        command
            .args(args)
            .env("BAO_ADDR", self.cli_address())
            .env("BAO_CACERT", self.file("ca.pem"))
            .env("BAO_TOKEN", self.root_token())
            .env("BAO_CLIENT_TIMEOUT", "10s")
            .env_remove("BAO_NAMESPACE")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_NAMESPACE")
            .stdin(Stdio::null());
        command
    }

    /// Where CLI commands go: node 1, or for a cluster the first node still running (a
    /// standby forwards writes to the active node).
    fn cli_address(&self) -> String {
        let alive = |node: usize| {
            Path::new(&format!("/proc/{}", self.node_pid(node))).exists()
                && self.health_code(node).is_some_and(|code| code != 0)
        };
        match (1..=self.raft_ports.len()).find(|node| alive(*node)) {
            Some(node) => format!("https://127.0.0.1:{}", self.raft_ports[node - 1]),
            None => self.address(),
        }
    }

    /// Runs a root-token `bao` CLI command that must succeed; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("run bao");
        check_cli(args, &output);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Rotates the Transit key; returns the new latest version.
    pub fn rotate_key(&self) -> u64 {
        self.cli(&["write", "-f", &format!("transit/keys/{KEY_NAME}/rotate")]);
        self.latest_version()
    }

    /// The Transit key's `latest_version`.
    pub fn latest_version(&self) -> u64 {
        self.cli(&[
            "read",
            "-field=latest_version",
            &format!("transit/keys/{KEY_NAME}"),
        ])
        .parse()
        .unwrap()
    }

    /// Sets the Transit key's `min_decryption_version`.
    pub fn set_min_decryption_version(&self, version: u64) {
        self.cli(&[
            "write",
            &format!("transit/keys/{KEY_NAME}/config"),
            &format!("min_decryption_version={version}"),
        ]);
    }

    /// Revokes every token issued by AppRole logins (the plugin's included).
    pub fn revoke_approle_tokens(&self) {
        self.cli(&["write", "-f", "sys/leases/revoke-prefix/auth/approle/login"]);
    }

    /// Seals the server: every request then fails with 503 "Vault is sealed".
    ///
    /// This is how the tests take OpenBao away and bring it back. A dev server keeps its
    /// storage in memory, so stopping the process and starting it again would come back with
    /// no transit key at all; sealing keeps the process and its storage and makes every call
    /// fail, as a real outage (or a restarted, still sealed production server) does.
    pub fn seal(&self) {
        self.cli(&["operator", "seal"]);
    }

    /// Unseals with the key the dev server printed in its log (passed on stdin, not argv).
    pub fn unseal(&self) {
        let log = fs::read_to_string(self.file("server.log")).unwrap();
        let key = log
            .lines()
            .find_map(|line| line.strip_prefix("Unseal Key: "))
            .expect("the dev server log names its unseal key")
            .trim()
            .to_owned();
        let args = ["write", "sys/unseal", "key=-"];
        let mut child = self
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bao");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(key.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        check_cli(&args, &output);
        let sealed = self.cli(&["status", "-format=json"]);
        assert!(
            sealed.contains("\"sealed\": false"),
            "still sealed: {sealed}"
        );
    }
}

fn check_cli(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "bao {} failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for Bao {
    fn drop(&mut self) {
        let status = Command::new(server_script(!self.raft_ports.is_empty()))
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("warning: stopping the OpenBao dev server failed: {status:?}");
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A shell that waits for this test process to end and then runs `action` (with `$0` set to
/// `scripts/openbao-dev.sh`): the clean-up when the process dies without unwinding. Killed on
/// the normal path.
pub fn spawn_watchdog(action: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {action}",
            pid = std::process::id()
        ))
        .arg(repo_root().join("scripts/openbao-dev.sh"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the watchdog shell")
}
