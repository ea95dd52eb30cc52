//! `doctor` against a real OpenBao 2.7.2 dev server (the e2e harness): the exit codes, the JSON
//! report, each failing check the brief names, and that no secret (root token, AppRole secret
//! id, a token) or credential file path ever reaches stdout or stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_support/mod.rs"]
mod e2e_support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use e2e_support::{Deadline, E2e, KEY_NAME, plugin_binary};

/// One `doctor` run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }

    /// `(status, message)` of check `id`.
    fn check(&self, id: &str) -> (String, String) {
        let report = self.json();
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|check| check["id"] == id)
            .unwrap_or_else(|| panic!("no check {id} in {}", self.stdout));
        (
            check["status"].as_str().unwrap().to_owned(),
            check["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    fn status(&self, id: &str) -> String {
        self.check(id).0
    }

    /// Panics when any of `secrets` appears in stdout or stderr.
    fn assert_no_secrets(&self, secrets: &[String]) {
        for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
            assert!(
                !self.stdout.contains(secret.as_str()) && !self.stderr.contains(secret.as_str()),
                "a secret leaked into the output:\n{}\n{}",
                self.stdout,
                self.stderr
            );
        }
    }
}

fn doctor(config: &Path, extra: &[&str]) -> Run {
    let mut command = Command::new(plugin_binary());
    command
        .args(["doctor", "--config", config.to_str().unwrap()])
        .args(extra);
    for variable in [
        "BAO_KMS_PROVIDER_CONFIG",
        "BAO_KMS_PROVIDER_CONFIG_PATH",
        "BAO_KMS_PROVIDER_LOG_LEVEL",
        "BAO_KMS_PROVIDER_LOGGING_LEVEL",
        "BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS",
        "BAO_KMS_PROVIDER_SERVER_METRICSADDRESS",
        "BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS",
        "BAO_KMS_PROVIDER_SERVER_HEALTHADDRESS",
    ] {
        command.env_remove(variable);
    }
    let output = command.output().expect("run doctor");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn doctor_json(config: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["--output", "json"];
    args.extend_from_slice(extra);
    doctor(config, &args)
}

/// Every secret of the test's OpenBao, plus the paths of the credential files.
fn secrets(e2e: &E2e, extra: &[String]) -> Vec<String> {
    let bao = e2e.bao();
    let mut secrets: Vec<String> = ["root-token", "secret-id", "token"]
        .into_iter()
        .map(|name| {
            fs::read_to_string(bao.file(name))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    secrets.push(bao.file("secret-id").display().to_string());
    secrets.push(bao.file("token").display().to_string());
    secrets.extend_from_slice(extra);
    secrets
}

/// Writes `etc/<name>.yaml` (mode 0640): the harness configuration changed by `edit`.
fn variant(e2e: &E2e, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = edit(fs::read_to_string(e2e.config_path()).unwrap());
    let path = e2e.dir().join("etc").join(format!("{name}.yaml"));
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    path
}

/// Replaces the `auth:` section with token auth reading `token_file`.
fn with_token_auth(text: &str, token_file: &Path) -> String {
    let start = text.find("\nauth:\n").unwrap() + 1;
    let end = text.find("\ntransit:\n").unwrap() + 1;
    format!(
        "{}auth:\n  method: token\n  token:\n    tokenFile: {}\n{}",
        &text[..start],
        token_file.display(),
        &text[end..]
    )
}

/// Writes a policy rendered from the repository template for `mount`/`key` (without the rule
/// `drop`, when given), creates a token carrying only it, stores the token in a 0600 file and returns
/// the file and the token.
fn policy_token(
    e2e: &E2e,
    name: &str,
    mount: &str,
    key: &str,
    drop: Option<&str>,
) -> (PathBuf, String) {
    let template =
        fs::read_to_string(e2e_support::repo_root().join("scripts/policy/kms-plugin.hcl.tmpl"))
            .unwrap();
    let mut policy = template.replace("{{MOUNT}}", mount).replace("{{KEY}}", key);
    if let Some(rule) = drop {
        assert!(policy.contains(rule), "the template has no rule {rule}");
        policy = policy.replace(rule, "");
    }
    let policy_file = e2e.dir().join(format!("{name}.hcl"));
    fs::write(&policy_file, policy).unwrap();
    let bao = e2e.bao();
    bao.cli(&["policy", "write", name, policy_file.to_str().unwrap()]);
    let token = bao.cli(&[
        "token",
        "create",
        &format!("-policy={name}"),
        "-no-default-policy",
        "-orphan",
        "-period=1h",
        "-field=token",
    ]);
    let token_file = e2e.dir().join("etc").join(format!("{name}.token"));
    fs::write(&token_file, format!("{token}\n")).unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
    (token_file, token)
}

#[test]
fn doctor_passes_on_a_correctly_set_up_key_and_writes_nothing() {
    let e2e = E2e::new();
    let run = doctor_json(e2e.config_path(), &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["name"], "doctor");
    let checks = report["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "config.load",
            "config.validate",
            "config.compatibility",
            "socket.group",
            "auth.credentials",
            "kubernetes.encryption_config",
            "openbao.tls",
            "openbao.health",
            "openbao.auth",
            "transit.capabilities",
            "transit.metadata",
            "transit.profile",
            "transit.disable_upsert",
            "rotation.in_progress",
            "transit.probe",
            "key_id.deterministic",
            "kms.status_encrypt",
        ]
    );
    for check in checks {
        let status = check["status"].as_str().unwrap();
        let expected: &[&str] = if check["id"] == "kubernetes.encryption_config" {
            &["skip"]
        } else {
            &["pass", "warn"]
        };
        assert!(expected.contains(&status), "{check}");
        assert!(check["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
    // The harness configuration uses approle and socketDirectories, which older releases
    // reject.
    assert_eq!(run.status("config.compatibility"), "warn");
    run.assert_no_secrets(&secrets(&e2e, &[]));
    // Read-only: no state, checkpoint, lock or temporary file, and no socket.
    let state_dir = e2e.config().state_path.parent().unwrap();
    assert_eq!(fs::read_dir(state_dir).unwrap().count(), 0);
    assert!(!e2e.socket().exists());

    let text = doctor(e2e.config_path(), &[]);
    assert_eq!(text.code, Some(0), "{}", text.stdout);
    let mut lines = text.stdout.lines();
    assert_eq!(lines.next(), Some("doctor"));
    assert!(
        lines.all(|line| line.starts_with("[pass] ")
            || line.starts_with("[warn] ")
            || line.starts_with("[skip] kubernetes.encryption_config: ")
            || line.starts_with("verdict: ")),
        "{}",
        text.stdout
    );
    text.assert_no_secrets(&secrets(&e2e, &[]));
}

#[test]
fn doctor_fails_transit_capabilities_for_a_token_without_decrypt() {
    let e2e = E2e::new();
    let decrypt_rule =
        format!("path \"transit/decrypt/{KEY_NAME}\" {{\n  capabilities = [\"update\"]\n}}");
    let (token_file, token) =
        policy_token(&e2e, "kms-narrow", "transit", KEY_NAME, Some(&decrypt_rule));
    let config = variant(&e2e, "narrow", |text| with_token_auth(&text, &token_file));
    let run = doctor_json(&config, &[]);
    assert_eq!(run.code, Some(4), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status("openbao.auth"), "pass");
    let (status, message) = run.check("transit.capabilities");
    assert_eq!(status, "fail");
    assert!(
        message.contains("missing: <mount>/decrypt/<key> update"),
        "{message}"
    );
    assert!(!message.contains(KEY_NAME), "{message}");
    run.assert_no_secrets(&secrets(&e2e, &[token, token_file.display().to_string()]));
}

#[test]
fn doctor_fails_transit_profile_for_an_exportable_key() {
    let e2e = E2e::new();
    let key = "kms-exportable";
    e2e.bao().cli(&[
        "write",
        &format!("transit/keys/{key}"),
        "type=aes256-gcm96",
        "exportable=true",
    ]);
    let (token_file, token) = policy_token(&e2e, "kms-exportable", "transit", key, None);
    let config = variant(&e2e, "exportable", |text| {
        with_token_auth(&text, &token_file)
            .replace(&format!("keyName: {KEY_NAME}"), &format!("keyName: {key}"))
    });
    let run = doctor_json(&config, &[]);
    assert_eq!(run.code, Some(4), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status("transit.metadata"), "pass");
    assert_eq!(run.status("transit.capabilities"), "pass");
    let (status, message) = run.check("transit.profile");
    assert_eq!(status, "fail");
    assert!(
        message.contains("exportable (cryptographic_safety)"),
        "{message}"
    );
    // No probe and no in-process provider on a key the provider refuses.
    assert_eq!(run.status("transit.probe"), "skip");
    assert_eq!(run.status("kms.status_encrypt"), "skip");
    run.assert_no_secrets(&secrets(&e2e, &[token]));
}

#[test]
fn doctor_fails_disable_upsert_on_a_mount_that_allows_upsert() {
    let e2e = E2e::new();
    let bao = e2e.bao();
    bao.cli(&["secrets", "enable", "-path=transit-upsert", "transit"]);
    bao.cli(&[
        "write",
        &format!("transit-upsert/keys/{KEY_NAME}"),
        "type=aes256-gcm96",
    ]);
    let (token_file, token) = policy_token(&e2e, "kms-upsert", "transit-upsert", KEY_NAME, None);
    let config = variant(&e2e, "upsert", |text| {
        with_token_auth(&text, &token_file)
            .replace("  mountPath: transit\n", "  mountPath: transit-upsert\n")
    });
    let run = doctor_json(&config, &[]);
    assert_eq!(run.code, Some(4), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status("transit.profile"), "pass");
    let (status, message) = run.check("transit.disable_upsert");
    assert_eq!(status, "fail");
    assert!(message.contains("disable_upsert=false"), "{message}");
    assert_eq!(run.status("kms.status_encrypt"), "skip");
    run.assert_no_secrets(&secrets(&e2e, &[token]));
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn doctor_warns_about_a_pending_rotation_and_leaves_the_state_untouched() {
    let e2e = E2e::new();
    // A plugin that observes a new version as pending but never promotes it.
    let config = variant(&e2e, "slow", |text| {
        text.replace(
            "requireStableObservationCount: 2",
            "requireStableObservationCount: 1000",
        )
    });
    let state = e2e.config().state_path.clone();
    {
        let mut plugin = e2e.spawn_plugin(&config, "slow");
        let deadline = Deadline::after(Duration::from_secs(30), "the bootstrapped state");
        while !state.exists() {
            assert!(plugin.try_exit().is_none(), "{}", plugin.log_tail(40));
            deadline.check();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(e2e.bao().rotate_key(), 2);
        let deadline = Deadline::after(Duration::from_secs(30), "a pending record");
        while !fs::read_to_string(&state)
            .unwrap_or_default()
            .contains("\"pending\"")
        {
            assert!(plugin.try_exit().is_none(), "{}", plugin.log_tail(40));
            deadline.check();
            std::thread::sleep(Duration::from_millis(50));
        }
        plugin.terminate();
    }
    let before = snapshot(state.parent().unwrap());

    let run = doctor_json(&config, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let (status, message) = run.check("rotation.in_progress");
    assert_eq!(status, "warn");
    assert!(message.contains("do not upgrade now"), "{message}");
    assert!(message.contains("version 2"), "{message}");
    // The stored record of the latest version agrees with a fresh derivation.
    let (status, message) = run.check("key_id.deterministic");
    assert_eq!(status, "pass");
    assert!(message.contains("as in the local registry"), "{message}");
    // The in-process provider loads the pending state and still serves version 1.
    assert_eq!(run.status("kms.status_encrypt"), "pass");
    assert_eq!(
        snapshot(state.parent().unwrap()),
        before,
        "doctor changed the state"
    );
    run.assert_no_secrets(&secrets(&e2e, &[]));
}

#[test]
fn doctor_checks_the_kubernetes_encryption_configuration() {
    let e2e = E2e::new();
    // A real-looking aescbc secret that must never be echoed.
    let secret = "dGhpcy1pcy1hLXRlc3Qtb25seS1hZXNjYmMta2V5ISE=";
    let socket = e2e.socket().display().to_string();
    let write = |name: &str, provider: &str, endpoint: &str, fallback: &str| -> PathBuf {
        let path = e2e.dir().join(format!("{name}-encryption-config.yaml"));
        fs::write(
            &path,
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
                 resources:\n  - resources:\n      - secrets\n    providers:\n      - kms:\n          \
                 apiVersion: v2\n          name: {provider}\n          endpoint: {endpoint}\n          \
                 timeout: 3s\n      - aescbc:\n          keys:\n            - name: key1\n              \
                 secret: {secret}\n{fallback}"
            ),
        )
        .unwrap();
        path
    };
    let unix = format!("unix://{socket}");
    let identity = "      - identity: {}\n";
    let cases = [
        (
            write("name", "another-kms", &unix, ""),
            "no kms provider named e2e-kms",
        ),
        (
            write("endpoint", "e2e-kms", "unix:///run/elsewhere/kms.sock", ""),
            "endpoint is unix:///run/elsewhere/kms.sock",
        ),
    ];
    let mut leaks = secrets(&e2e, &[]);
    leaks.push(secret.to_owned());
    for (path, expected) in &cases {
        let run = doctor_json(
            e2e.config_path(),
            &["--encryption-config", path.to_str().unwrap()],
        );
        assert_eq!(run.code, Some(4), "{}\n{}", run.stdout, run.stderr);
        let (status, message) = run.check("kubernetes.encryption_config");
        assert_eq!(status, "fail");
        assert!(message.contains(expected), "{message}");
        run.assert_no_secrets(&leaks);
        assert!(!run.stdout.contains(path.to_str().unwrap()));
    }
    let fallback = write("fallback", "e2e-kms", &unix, identity);
    let run = doctor_json(
        e2e.config_path(),
        &["--encryption-config", fallback.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let (status, message) = run.check("kubernetes.encryption_config");
    assert_eq!(status, "warn");
    assert!(message.contains("identity"), "{message}");
    run.assert_no_secrets(&leaks);
}

#[test]
fn doctor_exits_3_with_a_report_when_the_configuration_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let malformed = dir.path().join("malformed.yaml");
    fs::write(&malformed, "configVersion: v1alpha1\nunknownKey: 1\n").unwrap();
    for config in [missing, malformed] {
        let run = doctor_json(&config, &[]);
        assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
        let report = run.json();
        let checks = report["checks"].as_array().unwrap();
        assert_eq!(checks[0]["id"], "config.load");
        assert_eq!(checks[0]["status"], "fail");
        assert!(checks.len() > 1);
        assert!(checks[1..].iter().all(|check| check["status"] == "skip"));
    }
}
