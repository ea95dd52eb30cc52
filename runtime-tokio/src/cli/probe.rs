//! `probe`: talks to a running provider through its socket, as kube-apiserver does, with the
//! identity of this process.
//!
//! No credential or state is read and OpenBao is not contacted; nothing is written. The socket
//! is `--socket`, else `server.socketPath` of the file given with `--config` (only an explicit
//! flag: the caller usually runs as kube-apiserver's user, which cannot read the configuration),
//! else `/run/openbao-kms/kms.sock`. The whole probe is bounded by `--timeout`. Checks (ids are stable):
//!
//! | id | what |
//! |---|---|
//! | `client.identity` | uid, gid and groups of this process; root warns (it bypasses permissions) |
//! | `socket.path` | absolute, exists, a socket and not a symbolic link |
//! | `socket.access_scope` | how this process reaches the socket (owner: group access untested) |
//! | `socket.connect` | a connection is accepted |
//! | `kms.status` | Status answers version `v2` and healthz `ok` |
//! | `kms.key_id` | a wire-format-v1 key_id, equal to `--expected-key-id`, stable across Encrypt |
//! | `kms.encrypt` | 32 fresh random bytes encrypt |
//! | `kms.decrypt` | they decrypt back to the same bytes |
//!
//! Bad options (`--timeout`, `--expected-key-id`) exit 2; a failed check exits 4.
//! `scripts/probe-apiserver` runs this command with the ids of the running kube-apiserver.

use std::fs::{File, Metadata};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bao_kms_core::KeyId;
use bao_kms_core::limits::MAX_GRPC_MESSAGE_BYTES;
use bao_kms_proto::{
    API_VERSION, DecryptRequest, EncryptRequest, HEALTHZ_OK, KeyManagementServiceClient,
    StatusRequest, StatusResponse,
};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::report::{CheckStatus, Report};
use super::session::load_config;
use super::{Cli, ExitCode, Output};
use crate::{clock, config};

/// Bytes of the probe plaintext, as kube-apiserver's DEK seeds.
const SEED_BYTES: usize = 32;

/// Reads `n` bytes from the operating system's random source.
pub(super) fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0_u8; n];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The socket probed when neither `--socket` nor `--config` names one.
const DEFAULT_SOCKET: &str = "/run/openbao-kms/kms.sock";

pub(super) fn run(
    cli: &Cli,
    socket: Option<&Path>,
    timeout: &str,
    expected_key_id: Option<&str>,
    output: Output,
) -> ExitCode {
    let socket = match (socket, &cli.config) {
        (Some(socket), _) => socket.to_path_buf(),
        (None, Some(_)) => match load_config(cli) {
            Ok(config) => config.server.socket_path,
            Err(code) => return code,
        },
        (None, None) => PathBuf::from(DEFAULT_SOCKET),
    };
    let socket = socket.as_path();
    let timeout = match config::parse_duration(timeout) {
        Ok(timeout) if !timeout.is_zero() => timeout,
        Ok(_) => {
            eprintln!("--timeout must be greater than zero");
            return ExitCode::Usage;
        }
        Err(error) => {
            eprintln!("--timeout {error}");
            return ExitCode::Usage;
        }
    };
    let Ok(expected) = expected_key_id.map(KeyId::parse).transpose() else {
        eprintln!("--expected-key-id must be a key_id of the form obk2.<43 base64url characters>");
        return ExitCode::Usage;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            return ExitCode::Failure;
        }
    };
    let report = runtime.block_on(probe(socket, timeout, expected.as_ref()));
    report.emit(output)
}

/// The report under construction, with the checks still to come (skipped when it stops).
struct Probe {
    report: Report,
}

const CHECKS: [(&str, &str); 8] = [
    ("client.identity", "identity of this process"),
    ("socket.path", "socket path is a socket"),
    ("socket.access_scope", "how this process reaches the socket"),
    ("socket.connect", "socket accepts a connection"),
    ("kms.status", "Status answers v2 and healthz ok"),
    ("kms.key_id", "key_id is valid and agreed"),
    ("kms.encrypt", "Encrypt of 32 random bytes"),
    ("kms.decrypt", "Decrypt round trip"),
];

impl Probe {
    fn push(&mut self, id: &str, status: CheckStatus, message: impl Into<String>) -> bool {
        let title = CHECKS
            .iter()
            .find(|(check, _)| *check == id)
            .map_or("", |(_, title)| title);
        self.report.push(id, title, status, message);
        status != CheckStatus::Fail
    }

    /// Skips every check not reported yet.
    fn skip_rest(&mut self, reason: &str) {
        let done = self.report.checks.len();
        for (id, title) in CHECKS.iter().skip(done) {
            self.report.push(*id, *title, CheckStatus::Skip, reason);
        }
    }
}

async fn probe(socket: &Path, timeout: Duration, expected: Option<&KeyId>) -> Report {
    let mut probe = Probe {
        report: Report::new("probe"),
    };
    let deadline = tokio::time::Instant::from_std(clock::now() + timeout);
    let bounded = tokio::time::timeout_at(deadline, checks(&mut probe, socket, expected)).await;
    if bounded.is_err() {
        let at = probe.report.checks.len();
        if let Some((id, _)) = CHECKS.get(at) {
            probe.push(
                id,
                CheckStatus::Fail,
                format!(
                    "timed out: the probe did not finish within {}",
                    config::format_duration(timeout)
                ),
            );
        }
        probe.skip_rest("the probe timed out");
    }
    probe.report
}

async fn checks(probe: &mut Probe, socket: &Path, expected: Option<&KeyId>) {
    let identity = Identity::current();
    let (status, message) = identity.describe();
    probe.push("client.identity", status, message);

    let metadata = match socket_path(socket) {
        Ok(metadata) => {
            probe.push(
                "socket.path",
                CheckStatus::Pass,
                format!(
                    "socket owned by uid {} gid {}, mode {:04o}",
                    metadata.uid(),
                    metadata.gid(),
                    metadata.mode() & 0o7777
                ),
            );
            metadata
        }
        Err(message) => {
            probe.push("socket.path", CheckStatus::Fail, message);
            probe.skip_rest("socket.path failed");
            return;
        }
    };
    let (status, message) = identity.access_scope(&metadata);
    probe.push("socket.access_scope", status, message);

    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(error) => {
            probe.push("socket.connect", CheckStatus::Fail, connect_error(&error));
            probe.skip_rest("socket.connect failed");
            return;
        }
    };
    let mut client = match client(socket.to_path_buf(), stream).await {
        Ok(client) => {
            probe.push("socket.connect", CheckStatus::Pass, "connected");
            client
        }
        Err(error) => {
            probe.push(
                "socket.connect",
                CheckStatus::Fail,
                format!("gRPC connection failed: {error}"),
            );
            probe.skip_rest("socket.connect failed");
            return;
        }
    };
    kms(probe, &mut client, expected).await;
}

/// `socket.path`: the final component must be a socket, not a symbolic link.
fn socket_path(socket: &Path) -> Result<Metadata, String> {
    if !socket.is_absolute() {
        return Err(format!("{} is not an absolute path", socket.display()));
    }
    let metadata = match std::fs::symlink_metadata(socket) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{} does not exist (is the provider running?)",
                socket.display()
            ));
        }
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "{}: permission denied (this process cannot search its directory)",
                socket.display()
            ));
        }
        Err(error) => return Err(format!("{}: {error}", socket.display())),
    };
    let kind = metadata.file_type();
    if kind.is_symlink() {
        return Err(format!(
            "{} is a symbolic link; pass the socket itself",
            socket.display()
        ));
    }
    if !kind.is_socket() {
        let found = if kind.is_dir() {
            "directory"
        } else if kind.is_file() {
            "regular file"
        } else if kind.is_fifo() {
            "FIFO"
        } else {
            "special file"
        };
        return Err(format!("{} is a {found}, not a socket", socket.display()));
    }
    Ok(metadata)
}

fn connect_error(error: &io::Error) -> String {
    let kind = error.kind();
    if kind == io::ErrorKind::PermissionDenied {
        "permission denied: this process may not write to the socket".to_owned()
    } else if kind == io::ErrorKind::ConnectionRefused {
        "connection refused: nothing listens on the socket (a stale socket?)".to_owned()
    } else {
        format!("connect failed: {error}")
    }
}

/// The identity of this process.
struct Identity {
    uid: u32,
    euid: u32,
    gid: u32,
    egid: u32,
    groups: Vec<u32>,
}

impl Identity {
    fn current() -> Self {
        use rustix::process;
        let groups = process::getgroups()
            .map(|groups| groups.into_iter().map(|gid| gid.as_raw()).collect())
            .unwrap_or_default();
        Self {
            uid: process::getuid().as_raw(),
            euid: process::geteuid().as_raw(),
            gid: process::getgid().as_raw(),
            egid: process::getegid().as_raw(),
            groups,
        }
    }

    fn describe(&self) -> (CheckStatus, String) {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        let mut text = format!("uid={} gid={}", self.uid, self.gid);
        if self.euid != self.uid {
            text.push_str(&format!(" euid={}", self.euid));
        }
        if self.egid != self.gid {
            text.push_str(&format!(" egid={}", self.egid));
        }
        text.push_str(&format!(" groups=[{}]", groups.join(",")));
        if self.euid == 0 {
            (
                CheckStatus::Warn,
                format!("{text}; root does not prove non-root socket access"),
            )
        } else {
            (CheckStatus::Pass, text)
        }
    }

    fn in_group(&self, gid: u32) -> bool {
        self.egid == gid || self.groups.contains(&gid)
    }

    /// `socket.access_scope`: which permission bits let this process in.
    fn access_scope(&self, socket: &Metadata) -> (CheckStatus, String) {
        let mode = socket.mode() & 0o777;
        let (owner, group) = (socket.uid(), socket.gid());
        if self.euid == owner {
            return (
                CheckStatus::Warn,
                format!("this process owns the socket (uid {owner}): group access is untested"),
            );
        }
        if self.euid == 0 {
            return (
                CheckStatus::Warn,
                "root bypasses the socket permissions: access of the apiserver identity is \
                 untested"
                    .to_owned(),
            );
        }
        if self.in_group(group) {
            return if mode & 0o020 != 0 {
                (
                    CheckStatus::Pass,
                    format!("through the socket group gid {group} (mode {mode:04o})"),
                )
            } else {
                (
                    CheckStatus::Fail,
                    format!(
                        "member of the socket group gid {group}, but mode {mode:04o} gives the group no write access"
                    ),
                )
            };
        }
        if mode & 0o002 != 0 {
            return (
                CheckStatus::Warn,
                format!(
                    "only through the permission bits for others (mode {mode:04o}): every local user can connect"
                ),
            );
        }
        (
            CheckStatus::Fail,
            format!(
                "neither the owner (uid {owner}) nor in the socket group (gid {group}), mode \
                 {mode:04o}: access will be denied"
            ),
        )
    }
}

/// A KMS client on `first`, the connection already made (later reconnects dial `socket`).
async fn client(
    socket: PathBuf,
    first: UnixStream,
) -> Result<KeyManagementServiceClient<Channel>, tonic::transport::Error> {
    let first = Arc::new(Mutex::new(Some(first)));
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let first = Arc::clone(&first);
            let socket = socket.clone();
            async move {
                let ready = first.lock().unwrap_or_else(PoisonError::into_inner).take();
                let stream = match ready {
                    Some(stream) => stream,
                    None => UnixStream::connect(socket).await?,
                };
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(KeyManagementServiceClient::new(channel)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES))
}

/// A gRPC error as a short, printable message (the provider's messages are fixed texts).
fn rpc_error(status: &tonic::Status) -> String {
    let message: String = status
        .message()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    format!("{:?}: {message}", status.code())
}

/// A value the provider sent, made safe to print.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// The KMS checks: Status, then Encrypt and Decrypt of a fresh seed.
async fn kms(
    probe: &mut Probe,
    client: &mut KeyManagementServiceClient<Channel>,
    expected: Option<&KeyId>,
) {
    let status = match client.status(StatusRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(error) => {
            probe.push("kms.status", CheckStatus::Fail, rpc_error(&error));
            probe.skip_rest("kms.status failed");
            return;
        }
    };
    let (healthy, message) = judge_status(&status);
    probe.push(
        "kms.status",
        if healthy {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        message,
    );

    let (random, uid) = match (random_bytes(SEED_BYTES), random_bytes(16)) {
        (Ok(seed), Ok(uid)) => (seed, hex(&uid)),
        (Err(error), _) | (_, Err(error)) => {
            probe.push(
                "kms.key_id",
                CheckStatus::Fail,
                format!("no randomness for the probe: {error}"),
            );
            probe.skip_rest("no randomness");
            return;
        }
    };
    let encrypted = client
        .encrypt(EncryptRequest {
            plaintext: random.clone(),
            uid: format!("{uid}-encrypt"),
        })
        .await
        .map(tonic::Response::into_inner);
    // When the key_ids differ, ask again: a changed Status means a rotation landed in between.
    let status_after = match &encrypted {
        Ok(response) if response.key_id != status.key_id => client
            .status(StatusRequest {})
            .await
            .ok()
            .map(|response| response.into_inner().key_id),
        Ok(_) | Err(_) => None,
    };
    let encrypt_key_id = encrypted
        .as_ref()
        .ok()
        .map(|response| response.key_id.as_str());
    let (status_ok, message) = judge_key_id(
        &status.key_id,
        encrypt_key_id,
        status_after.as_deref(),
        expected,
    );
    probe.push(
        "kms.key_id",
        if status_ok {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        message,
    );

    let encrypted = match encrypted {
        Ok(response) if !response.ciphertext.is_empty() => {
            probe.push(
                "kms.encrypt",
                CheckStatus::Pass,
                format!(
                    "{SEED_BYTES} random bytes encrypted: ciphertext {} bytes, {} annotation(s)",
                    response.ciphertext.len(),
                    response.annotations.len()
                ),
            );
            response
        }
        Ok(_) => {
            probe.push("kms.encrypt", CheckStatus::Fail, "empty ciphertext");
            probe.skip_rest("kms.encrypt failed");
            return;
        }
        Err(error) => {
            probe.push("kms.encrypt", CheckStatus::Fail, rpc_error(&error));
            probe.skip_rest("kms.encrypt failed");
            return;
        }
    };
    let decrypted = client
        .decrypt(DecryptRequest {
            ciphertext: encrypted.ciphertext,
            uid: format!("{uid}-decrypt"),
            key_id: encrypted.key_id,
            annotations: encrypted.annotations,
        })
        .await;
    match decrypted {
        Ok(response) if response.get_ref().plaintext == random => {
            probe.push(
                "kms.decrypt",
                CheckStatus::Pass,
                "round trip returned the same bytes",
            );
        }
        Ok(_) => {
            probe.push(
                "kms.decrypt",
                CheckStatus::Fail,
                "decrypt returned different bytes",
            );
        }
        Err(error) => {
            probe.push("kms.decrypt", CheckStatus::Fail, rpc_error(&error));
        }
    }
}

/// `kms.status`: version `v2` and healthz `ok`.
fn judge_status(status: &StatusResponse) -> (bool, String) {
    if status.version != API_VERSION {
        return (
            false,
            format!(
                "version is {:?}, kube-apiserver requires {API_VERSION:?}",
                printable(&status.version)
            ),
        );
    }
    if status.healthz != HEALTHZ_OK {
        return (
            false,
            format!(
                "healthz is {:?}: the provider is not ready (see its /ready)",
                printable(&status.healthz)
            ),
        );
    }
    (true, format!("version {API_VERSION}, healthz {HEALTHZ_OK}"))
}

/// `kms.key_id`: the Status key_id is a wire-format-v1 key_id, equals the expected one, and
/// Encrypt used it.
fn judge_key_id(
    status_key_id: &str,
    encrypt_key_id: Option<&str>,
    status_after: Option<&str>,
    expected: Option<&KeyId>,
) -> (bool, String) {
    let Ok(key_id) = KeyId::parse(status_key_id) else {
        return if status_key_id.is_empty() {
            (false, "Status carries no key_id".to_owned())
        } else {
            (
                false,
                "the Status key_id is not a wire-format-v1 (obk2.) key_id".to_owned(),
            )
        };
    };
    let shown = format!("{key_id} ({})", key_id.apiserver_hash());
    if let Some(expected) = expected
        && expected != &key_id
    {
        return (
            false,
            format!(
                "Status key_id {shown} differs from --expected-key-id {expected}: the nodes do \
                 not agree"
            ),
        );
    }
    match encrypt_key_id {
        Some(encrypt) if encrypt != status_key_id => {
            if status_after.is_some_and(|after| after != status_key_id) {
                (
                    false,
                    "the key_id changed between Status and Encrypt: wait for rotation \
                     convergence and probe again"
                        .to_owned(),
                )
            } else {
                (
                    false,
                    format!(
                        "Encrypt used a key_id other than the Status key_id {shown}; \
                         kube-apiserver rejects that"
                    ),
                )
            }
        }
        Some(_) | None => {
            let agreed = if expected.is_some() {
                ", equal to --expected-key-id"
            } else {
                ""
            };
            (true, format!("{shown}{agreed}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "obk2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY_B: &str = "obk2.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA";

    #[test]
    fn key_id_agreement_rules() {
        let a = KeyId::parse(KEY_A).unwrap();
        let b = KeyId::parse(KEY_B).unwrap();
        assert!(judge_key_id(KEY_A, Some(KEY_A), None, Some(&a)).0);
        let (ok, message) = judge_key_id(KEY_A, Some(KEY_A), None, Some(&b));
        assert!(!ok && message.contains("--expected-key-id"), "{message}");
        let (ok, message) = judge_key_id(KEY_A, Some(KEY_B), Some(KEY_B), None);
        assert!(!ok && message.contains("rotation convergence"), "{message}");
        let (ok, message) = judge_key_id(KEY_A, Some(KEY_B), Some(KEY_A), None);
        assert!(
            !ok && message.contains("kube-apiserver rejects"),
            "{message}"
        );
        assert!(!judge_key_id("", None, None, None).0);
        assert!(!judge_key_id("k8s-key-1", None, None, None).0);
    }

    #[test]
    fn status_needs_v2_and_ok() {
        let mut status = StatusResponse {
            version: "v2".into(),
            healthz: "ok".into(),
            key_id: KEY_A.into(),
        };
        assert!(judge_status(&status).0);
        status.healthz = "unhealthy".into();
        assert!(!judge_status(&status).0);
        status.version = "v1beta1".into();
        assert!(!judge_status(&status).0);
    }

    #[test]
    fn a_missing_socket_and_a_regular_file_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("kms.sock");
        assert!(
            socket_path(&missing)
                .unwrap_err()
                .contains("does not exist")
        );
        std::fs::write(&missing, b"").unwrap();
        assert!(socket_path(&missing).unwrap_err().contains("regular file"));
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&missing, &link).unwrap();
        assert!(socket_path(&link).unwrap_err().contains("symbolic link"));
        assert!(
            socket_path(Path::new("kms.sock"))
                .unwrap_err()
                .contains("absolute")
        );
    }
}
