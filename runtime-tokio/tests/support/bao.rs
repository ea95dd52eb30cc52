//! A real OpenBao dev server for one test binary, started through the repository scripts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bao_kms_runtime_tokio::openbao::{AuthSettings, ClientSettings};
use serde_json::{Value, json};

use super::{client_settings, free_port_pair, lock_ports, repo_root};

/// Attempts at starting a server before giving up (a port may be taken in between).
const START_ATTEMPTS: usize = 4;

/// The `bao` binary, installed once per test binary.
pub(crate) fn bao_binary() -> &'static Path {
    static BAO: OnceLock<PathBuf> = OnceLock::new();
    BAO.get_or_init(|| {
        let output = Command::new(repo_root().join("scripts/install-bao.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/install-bao.sh");
        assert!(output.status.success(), "scripts/install-bao.sh failed");
        let path = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        assert!(!path.is_empty(), "install-bao.sh printed no path");
        PathBuf::from(path)
    })
}

/// A running dev server with transit, the `kms-plugin` policy, an AppRole and a token.
/// Dropping it stops the server.
pub(crate) struct BaoServer {
    dir: tempfile::TempDir,
    port: u16,
    root_token: String,
    ca_pem: Vec<u8>,
    watchdog: Option<Child>,
    admin: ureq::Agent,
    unique: AtomicU32,
}

impl BaoServer {
    /// One server shared by the tests of this binary that run at the same time; it stops
    /// when the last of them drops its handle.
    pub(crate) fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<BaoServer>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(server) = slot.upgrade() {
            return server;
        }
        let server = Arc::new(Self::start());
        *slot = Arc::downgrade(&server);
        server
    }

    /// A server of its own.
    pub(crate) fn start() -> Self {
        let _ports = lock_ports();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start() {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start an OpenBao dev server: {last_error}");
    }

    fn try_start() -> Result<Self, String> {
        let bao = bao_binary();
        let dir = tempfile::Builder::new()
            .prefix("bao-kms-test-")
            .tempdir()
            .unwrap();
        let port = free_port_pair();
        let scripts = repo_root().join("scripts");
        let status = Command::new(scripts.join("openbao-dev.sh"))
            .args(["start"])
            .arg(dir.path())
            .arg(port.to_string())
            .env("BAO_BIN", bao)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|error| error.to_string())?;
        // From here on the server may be running: the guard stops it on any early return.
        let watchdog = spawn_watchdog(&scripts, dir.path());
        let admin = admin_agent(&dir.path().join("ca.pem"));
        let mut server = Self {
            port,
            root_token: String::new(),
            ca_pem: Vec::new(),
            watchdog: Some(watchdog),
            admin,
            unique: AtomicU32::new(0),
            dir,
        };
        if !status.success() {
            return Err(format!("openbao-dev.sh start exited with {status}"));
        }
        let setup = Command::new(scripts.join("openbao-setup-transit.sh"))
            .arg(server.dir.path())
            .env("BAO_BIN", bao)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|error| error.to_string())?;
        if !setup.success() {
            return Err(format!("openbao-setup-transit.sh exited with {setup}"));
        }
        server.root_token = std::fs::read_to_string(server.dir.path().join("root-token"))
            .map_err(|error| error.to_string())?
            .trim()
            .to_owned();
        server.ca_pem =
            std::fs::read(server.dir.path().join("ca.pem")).map_err(|error| error.to_string())?;
        Ok(server)
    }

    pub(crate) fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn ca_pem(&self) -> Vec<u8> {
        self.ca_pem.clone()
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The content of a one-line secret file written by the setup script.
    pub(crate) fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A name unique within this server (for keys, mounts, files).
    pub(crate) fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.unique.fetch_add(1, Ordering::Relaxed))
    }

    /// The AppRole written by the setup script (`auth/approle`, policy `kms-plugin`).
    pub(crate) fn approle(&self) -> AuthSettings {
        AuthSettings::AppRole {
            mount_path: "approle".to_owned(),
            role_id_file: self.file("role-id"),
            secret_id_file: self.file("secret-id"),
        }
    }

    /// Token-file auth with the given file.
    pub(crate) fn token_auth(&self, file: &str) -> AuthSettings {
        AuthSettings::Token {
            token_file: self.file(file),
        }
    }

    /// Client settings for `key_name` on mount `transit`.
    pub(crate) fn settings(&self, key_name: &str, auth: AuthSettings) -> ClientSettings {
        client_settings(self.address(), self.ca_pem(), key_name, auth)
    }

    /// A call with the root token: `(status, body)`.
    pub(crate) fn root(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.address());
        let token = self.root_token.as_str();
        let result = match (method, body) {
            ("GET", _) => self.admin.get(&url).header("X-Vault-Token", token).call(),
            ("POST", Some(body)) => self
                .admin
                .post(&url)
                .header("X-Vault-Token", token)
                .send_json(body),
            ("POST", None) => self
                .admin
                .post(&url)
                .header("X-Vault-Token", token)
                .send_empty(),
            ("PUT", Some(body)) => self
                .admin
                .put(&url)
                .header("X-Vault-Token", token)
                .send_json(body),
            ("PUT", None) => self
                .admin
                .put(&url)
                .header("X-Vault-Token", token)
                .send_empty(),
            _ => panic!("unsupported method {method}"),
        };
        let mut response = result.expect("root call reached OpenBao");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body)
    }

    /// A root call that must succeed (2xx).
    pub(crate) fn root_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.root(method, path, body);
        assert!(
            (200..300).contains(&status),
            "root {method} {path} -> {status}: {body}"
        );
        body
    }

    /// Creates an aes256-gcm96 key (the setup mount refuses upsert, so this is explicit).
    pub(crate) fn create_key(&self, name: &str) {
        self.root_ok(
            "POST",
            &format!("transit/keys/{name}"),
            Some(json!({"type": "aes256-gcm96"})),
        );
    }

    /// Enables a separate AppRole mount with one role carrying `policy`, writes its role id
    /// and secret id to files and returns the auth settings.
    pub(crate) fn new_approle(&self, policy: &str) -> AuthSettings {
        let mount = self.unique("approle");
        self.root_ok(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({"type": "approle"})),
        );
        self.root_ok(
            "POST",
            &format!("auth/{mount}/role/plugin"),
            Some(json!({
                "token_policies": [policy],
                "token_no_default_policy": true,
                "token_ttl": "1h",
                "token_max_ttl": "24h",
                "token_type": "service",
            })),
        );
        let role_id = self.root_ok("GET", &format!("auth/{mount}/role/plugin/role-id"), None)
            ["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let secret_id = self.root_ok("POST", &format!("auth/{mount}/role/plugin/secret-id"), None)
            ["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let role_id_file = self.file(&format!("{mount}.role-id"));
        let secret_id_file = self.file(&format!("{mount}.secret-id"));
        std::fs::write(&role_id_file, format!("{role_id}\n")).unwrap();
        std::fs::write(&secret_id_file, format!("{secret_id}\n")).unwrap();
        AuthSettings::AppRole {
            mount_path: format!("auth/{mount}"),
            role_id_file,
            secret_id_file,
        }
    }

    /// Revokes every token issued by logins on the AppRole mount of `auth`.
    pub(crate) fn revoke_approle_tokens(&self, auth: &AuthSettings) {
        let AuthSettings::AppRole { mount_path, .. } = auth else {
            panic!("not an AppRole");
        };
        self.root_ok(
            "PUT",
            &format!("sys/leases/revoke-prefix/{mount_path}/login"),
            None,
        );
    }
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        let status = Command::new(repo_root().join("scripts/openbao-dev.sh"))
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

/// Stops the server and removes its directory if this test process dies without unwinding.
fn spawn_watchdog(scripts: &Path, dir: &Path) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(
            r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
"$2" stop "$3" >/dev/null 2>&1
rm -rf -- "$3""#,
        )
        .arg("bao-kms-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(scripts.join("openbao-dev.sh"))
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the watchdog shell")
}

/// An agent for root calls that trusts the dev CA.
fn admin_agent(ca: &Path) -> ureq::Agent {
    let pem = std::fs::read(ca).unwrap_or_default();
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls)
        .build()
        .into()
}
