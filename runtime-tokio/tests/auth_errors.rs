//! Login failures against a real OpenBao 2.7.2 name the auth method, the request and OpenBao's
//! answer; `http_status` is logged as a number; a bootstrap that fails on authentication says
//! so first (`auth_failed` and the denied request), not only the Status reasons that follow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use e2e_support::{E2e, PluginProcess};

/// How long a failing bootstrap may take: one probe cycle is 4 × `openbao.timeout` (2 s).
const BOOTSTRAP_BOUND: Duration = Duration::from_secs(30);

/// The test configuration with `graceTimeout: 0s` (one probe cycle) and `auth` replaced.
fn config_with_auth(e2e: &E2e, name: &str, auth: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(e2e.config_path()).unwrap();
    let start = text.find("auth:\n").unwrap();
    let end = text.find("transit:\n").unwrap();
    let text = format!("{}{auth}{}", &text[..start], &text[end..])
        .replace("graceTimeout: 20s", "graceTimeout: 0s");
    let path = e2e.dir().join("etc").join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    path
}

fn secret_file(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join("etc").join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The JSON log lines whose `message` is `message`.
fn lines(log: &str, message: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

/// Runs `serve` with `config` until it gives up; returns its log.
fn failed_bootstrap(e2e: &E2e, config: &Path, name: &str) -> String {
    let mut plugin = PluginProcess::serve(config, e2e.dir(), name);
    let status = plugin.expect_exit(BOOTSTRAP_BOUND);
    assert_eq!(status.code(), Some(5), "{}", plugin.log());
    plugin.log()
}

#[test]
fn a_denied_token_lookup_is_named_with_its_path_and_status_and_ends_bootstrap_as_auth_failed() {
    let e2e = E2e::new();
    let token = secret_file(e2e.dir(), "token", "s.not-a-token-this-server-issued\n");
    let auth = format!(
        "auth:\n  method: token\n  token:\n    tokenFile: {}\n",
        token.display()
    );
    let config = config_with_auth(&e2e, "token-denied", &auth);
    let log = failed_bootstrap(&e2e, &config, "token-denied");

    let failed = lines(&log, "openbao login failed");
    let first = failed.first().unwrap_or_else(|| panic!("{log}"));
    assert_eq!(first["auth_method"], "token", "{first}");
    assert_eq!(first["path"], "auth/token/lookup-self", "{first}");
    assert_eq!(first["error_class"], "auth_failed", "{first}");
    assert_eq!(first["openbao_answer"], "permission_denied", "{first}");
    assert_eq!(
        first["http_status"], 403,
        "a number, not Some(403): {first}"
    );

    let shutdown = lines(&log, "serve.shutdown");
    let error = shutdown.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.starts_with(
            "bootstrap did not reach a healthy status within the grace timeout: auth_failed: \
             token login GET auth/token/lookup-self answered permission_denied (HTTP 403)"
        ),
        "{error}"
    );
    assert!(!log.contains("s.not-a-token-this-server-issued"), "{log}");
}

#[test]
fn a_refused_approle_login_is_named_and_a_missing_secret_file_says_nothing_was_sent() {
    let e2e = E2e::new();
    let role_id = e2e.bao().file("role-id");
    let wrong = secret_file(
        e2e.dir(),
        "wrong-secret-id",
        "00000000-0000-0000-0000-000000000000",
    );
    let auth = |secret: &Path| {
        format!(
            "auth:\n  method: approle\n  approle:\n    mountPath: auth/approle\n    \
             roleIdFile: {}\n    secretIdFile: {}\n",
            role_id.display(),
            secret.display()
        )
    };
    let config = config_with_auth(&e2e, "approle-refused", &auth(&wrong));
    let log = failed_bootstrap(&e2e, &config, "approle-refused");
    let first = lines(&log, "openbao login failed").remove(0);
    assert_eq!(first["path"], "auth/approle/login", "{first}");
    assert!(first["http_status"].is_u64(), "{first}");
    let error = lines(&log, "serve.shutdown").last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = format!(
        "grace timeout: auth_failed: approle login POST auth/approle/login answered {} (HTTP {})",
        first["openbao_answer"].as_str().unwrap(),
        first["http_status"]
    );
    assert!(error.contains(&expected), "{error}\nexpected: {expected}");

    // The secret id file disappears after the start-up checks: nothing is sent.
    let vanishing = secret_file(e2e.dir(), "vanishing-secret-id", "x");
    let config = config_with_auth(&e2e, "approle-missing", &auth(&vanishing));
    let mut plugin = PluginProcess::serve(&config, e2e.dir(), "approle-missing");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&vanishing).unwrap();
    let status = plugin.expect_exit(BOOTSTRAP_BOUND);
    assert_eq!(status.code(), Some(5));
    let log = plugin.log();
    let error = lines(&log, "serve.shutdown").last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains(
            "auth_failed: approle login: a credential file was refused (file_missing); \
             nothing was sent to auth/approle/login"
        ),
        "{error}"
    );
}
