//! `probe` against a running plugin (the e2e harness: real OpenBao, real `serve`), against
//! broken socket paths, with bad options, and through `scripts/probe-apiserver` with the ids of
//! a (stand-in) kube-apiserver process that is not root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_support/mod.rs"]
mod e2e_support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use e2e_support::{Deadline, E2e, plugin_binary, repo_root};

/// One run of the binary or the script.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}\n{}", self.stdout, self.stderr))
    }

    /// `(status, message)` of every check, in order.
    fn checks(&self) -> Vec<(String, String, String)> {
        let report = self.json();
        assert_eq!(report["name"], "probe");
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|check| {
                // The documented shape: id, title, status, and message when there is one.
                let keys: Vec<&str> = check
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert!(
                    keys.iter()
                        .all(|key| ["id", "title", "status", "message"].contains(key)),
                    "{check}"
                );
                assert!(check["title"].as_str().is_some_and(|t| !t.is_empty()));
                (
                    check["id"].as_str().unwrap().to_owned(),
                    check["status"].as_str().unwrap().to_owned(),
                    check["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn check(&self, id: &str) -> (String, String) {
        self.checks()
            .into_iter()
            .find(|(check, _, _)| check == id)
            .map(|(_, status, message)| (status, message))
            .unwrap_or_else(|| panic!("no check {id}: {}", self.stdout))
    }
}

fn run(mut command: Command) -> Run {
    let output = command.stdin(Stdio::null()).output().expect("run");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn probe(socket: &Path, extra: &[&str]) -> Run {
    let mut command = Command::new(plugin_binary());
    command
        .args([
            "probe",
            "--socket",
            socket.to_str().unwrap(),
            "--output",
            "json",
        ])
        .args(extra);
    run(command)
}

const IDS: [&str; 8] = [
    "client.identity",
    "socket.path",
    "socket.access_scope",
    "socket.connect",
    "kms.status",
    "kms.key_id",
    "kms.encrypt",
    "kms.decrypt",
];

#[test]
fn probe_passes_against_a_running_plugin_and_fails_on_a_key_id_mismatch() {
    let e2e = E2e::running();
    let socket = e2e.socket();
    let ok = probe(socket, &["--timeout", "20s"]);
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    let checks = ok.checks();
    let ids: Vec<&str> = checks.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, IDS);
    for (id, status, message) in &checks {
        assert!(
            ["pass", "warn"].contains(&status.as_str()),
            "{id}: {status} {message}"
        );
    }
    // The tests run as root: root proves nothing about the apiserver's access.
    if rustix::process::geteuid().is_root() {
        let (status, message) = ok.check("client.identity");
        assert_eq!(status, "warn");
        assert!(message.contains("root does not prove non-root socket access"));
        assert_eq!(ok.check("socket.access_scope").0, "warn");
    }
    let (_, message) = ok.check("kms.key_id");
    let key_id = message.split_whitespace().next().unwrap().to_owned();
    assert!(
        key_id.starts_with("obk2.") && key_id.len() == 48,
        "{message}"
    );

    let agreed = probe(socket, &["--expected-key-id", &key_id]);
    assert_eq!(agreed.code, Some(0), "{}", agreed.stdout);
    assert!(
        agreed
            .check("kms.key_id")
            .1
            .contains("equal to --expected-key-id")
    );

    let other = "obk2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_ne!(other, key_id);
    let mismatch = probe(socket, &["--expected-key-id", other]);
    assert_eq!(mismatch.code, Some(4), "{}", mismatch.stdout);
    let (status, message) = mismatch.check("kms.key_id");
    assert_eq!(status, "fail");
    assert!(message.contains("--expected-key-id"), "{message}");
    // Encrypt and Decrypt still run and pass: the provider itself is fine.
    assert_eq!(mismatch.check("kms.decrypt").0, "pass");

    let mut text = Command::new(plugin_binary());
    text.args(["probe", "--socket", socket.to_str().unwrap()]);
    let text = run(text);
    assert_eq!(text.code, Some(0));
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines[0], "probe");
    assert_eq!(lines.len(), 2 + IDS.len());
    assert!(
        lines[lines.len() - 1].starts_with("verdict: "),
        "{}",
        text.stdout
    );
    for (line, id) in lines[1..].iter().zip(IDS) {
        assert!(
            line.starts_with("[pass] ") || line.starts_with("[warn] "),
            "{line}"
        );
        assert!(line.contains(&format!("] {id}: ")), "{line}");
    }
}

#[test]
fn probe_fails_socket_path_for_a_missing_or_wrong_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("kms.sock");
    let run = probe(&missing, &[]);
    assert_eq!(run.code, Some(4), "{}", run.stdout);
    let checks = run.checks();
    assert_eq!(checks[0].0, "client.identity");
    assert_eq!(checks[1].1, "fail");
    assert!(checks[1].2.contains("does not exist"), "{}", checks[1].2);
    assert!(checks[2..].iter().all(|(_, status, _)| status == "skip"));
    assert_eq!(checks.len(), IDS.len());

    let file = dir.path().join("file.sock");
    fs::write(&file, b"").unwrap();
    let (status, message) = probe(&file, &[]).check("socket.path");
    assert_eq!(status, "fail");
    assert!(message.contains("regular file, not a socket"), "{message}");

    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let (status, message) = probe(&link, &[]).check("socket.path");
    assert_eq!(status, "fail");
    assert!(message.contains("symbolic link"), "{message}");

    // A socket nobody listens on: the path is fine, the connection is refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let run = probe(&stale, &[]);
    assert_eq!(run.code, Some(4));
    assert_eq!(run.check("socket.path").0, "pass");
    let (status, message) = run.check("socket.connect");
    assert_eq!(status, "fail");
    assert!(message.contains("connection refused"), "{message}");
    // Nothing written beside the sockets: the file, the link and the stale socket.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn probe_is_bounded_by_its_timeout_when_the_peer_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // The kernel accepts connections into the backlog; nobody ever reads or answers.
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let started = e2e_support::now();
    let run = probe(&socket, &["--timeout", "1s"]);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    assert_eq!(run.code, Some(4), "{}\n{}", run.stdout, run.stderr);
    let checks = run.checks();
    assert_eq!(checks.len(), IDS.len());
    let failed: Vec<&(String, String, String)> = checks
        .iter()
        .filter(|(_, status, _)| status == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    assert!(failed[0].2.contains("timed out"), "{checks:?}");
    let after = checks.iter().position(|check| check.1 == "fail").unwrap() + 1;
    assert!(
        checks[after..]
            .iter()
            .all(|(_, status, _)| status == "skip")
    );
}

#[test]
fn probe_rejects_bad_options_with_exit_code_2() {
    let socket = Path::new("/run/openbao-kms/kms.sock");
    for timeout in ["10", "ten seconds", "-1s", "0s"] {
        let run = probe(socket, &["--timeout", timeout]);
        assert_eq!(run.code, Some(2), "--timeout {timeout}: {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
    for key_id in [
        "k8s-key-1",
        "obk2.short",
        "obk1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let run = probe(socket, &["--expected-key-id", key_id]);
        assert_eq!(
            run.code,
            Some(2),
            "--expected-key-id {key_id}: {}",
            run.stderr
        );
    }
}

/// A stand-in kube-apiserver process (a copy of `sleep` named `kube-apiserver`) running as
/// nobody:nogroup; killed on drop.
struct FakeApiserver {
    child: Child,
    _dir: tempfile::TempDir,
}

impl FakeApiserver {
    fn start(uid: u32, gid: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let binary = dir.path().join("kube-apiserver");
        fs::copy("/bin/sleep", &binary).unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        let child = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg(format!("--groups={gid}"))
            .arg(&binary)
            .arg("120")
            .stdin(Stdio::null())
            .spawn()
            .expect("start the stand-in kube-apiserver");
        // Wait until setpriv has exec'd into it, so pgrep finds exactly one process.
        let deadline = Deadline::after(Duration::from_secs(10), "the stand-in kube-apiserver");
        loop {
            let comm = fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap_or_default();
            if comm.trim() == "kube-apiserver" {
                break;
            }
            deadline.check();
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, _dir: dir }
    }
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn probe_apiserver_runs_probe_with_the_ids_of_the_apiserver_process() {
    let tools = ["setpriv", "pgrep", "awk"];
    if !rustix::process::geteuid().is_root()
        || tools.iter().any(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
    {
        eprintln!("skipped: needs root, setpriv, pgrep and awk");
        return;
    }
    let e2e = E2e::new();
    // The socket group is nogroup, and the socket directory lets that group in.
    let (nobody, nogroup) = (65_534_u32, 65_534_u32);
    let run_dir = e2e.socket().parent().unwrap().to_path_buf();
    std::os::unix::fs::chown(&run_dir, None, Some(nogroup)).unwrap();
    // The test directory is private (0700): let others traverse it to reach run/.
    fs::set_permissions(e2e.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    let config = {
        let text = fs::read_to_string(e2e.config_path()).unwrap().replace(
            "  socketMode: \"0660\"\n",
            &format!("  socketMode: \"0660\"\n  socketGroup: \"{nogroup}\"\n"),
        );
        let path = e2e.dir().join("etc/group.yaml");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        path
    };
    let mut plugin = e2e.spawn_plugin(&config, "group");
    let deadline = Deadline::after(Duration::from_secs(30), "the plugin socket");
    while std::os::unix::net::UnixStream::connect(e2e.socket()).is_err() {
        assert!(plugin.try_exit().is_none(), "{}", plugin.log_tail(40));
        deadline.check();
        std::thread::sleep(Duration::from_millis(50));
    }

    let script = repo_root().join("scripts/probe-apiserver");
    let mut command = Command::new(&script);
    command
        .args([
            "--socket",
            e2e.socket().to_str().unwrap(),
            "--output",
            "json",
        ])
        .env("BAO_KMS_PROVIDER_BIN", plugin_binary());
    // Without a kube-apiserver the script refuses.
    let none = run(command);
    assert_eq!(none.code, Some(1), "{}\n{}", none.stdout, none.stderr);
    assert!(none.stderr.contains("kube-apiserver"), "{}", none.stderr);

    let apiserver = FakeApiserver::start(nobody, nogroup);
    let mut command = Command::new(&script);
    command
        .args([
            "--socket",
            e2e.socket().to_str().unwrap(),
            "--output",
            "json",
        ])
        .env("BAO_KMS_PROVIDER_BIN", plugin_binary());
    let probed = run(command);
    drop(apiserver);
    assert_eq!(probed.code, Some(0), "{}\n{}", probed.stdout, probed.stderr);
    let (status, message) = probed.check("client.identity");
    assert_eq!(status, "pass", "{message}");
    assert!(message.contains("uid=65534 gid=65534"), "{message}");
    let (status, message) = probed.check("socket.access_scope");
    assert_eq!(status, "pass", "{message}");
    assert!(message.contains("socket group gid 65534"), "{message}");
    for (id, status, message) in probed.checks() {
        assert_eq!(status, "pass", "{id}: {message}");
    }
    drop(plugin);
}
