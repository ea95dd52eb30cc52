//! No secret leaks: runs of the real plugin against a real OpenBao 2.7.2 with token and AppRole
//! auth, through the failures the plugin must survive (a revoked token, a SIGHUP reload with a
//! broken secret id, a refused login at bootstrap, a bad ciphertext), then scans everything the
//! plugin emitted (its logs on stderr and stdout, `/metrics`, `/ready`, every gRPC error text)
//! for every secret the runs used: the token, the role and secret ids, the root token, and the
//! plaintext in raw, hex and base64 form.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bao_kms_proto::DecryptRequest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use e2e_support::kube_apiserver::KubeApiserver;
use e2e_support::{Deadline, E2e, PluginProcess};

/// The test configuration with `auth` replaced, written as `etc/<name>.yaml`.
fn config_with_auth(e2e: &E2e, name: &str, auth: &str, grace: &str) -> PathBuf {
    let text = std::fs::read_to_string(e2e.config_path()).unwrap();
    let start = text.find("auth:\n").unwrap();
    let end = text.find("transit:\n").unwrap();
    let text = format!("{}{auth}{}", &text[..start], &text[end..])
        .replace("graceTimeout: 20s", &format!("graceTimeout: {grace}"));
    let path = e2e.dir().join("etc").join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    path
}

fn approle_auth(role_id: &Path, secret_id: &Path) -> String {
    format!(
        "auth:\n  method: approle\n  approle:\n    mountPath: auth/approle\n    \
         roleIdFile: {}\n    secretIdFile: {}\n",
        role_id.display(),
        secret_id.display()
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn start(e2e: &E2e, config: &Path, name: &str) -> PluginProcess {
    let mut plugin = PluginProcess::serve(config, e2e.dir(), name);
    let deadline = Deadline::after(Duration::from_secs(30), "the plugin socket");
    while std::os::unix::net::UnixStream::connect(e2e.socket()).is_err() {
        assert!(plugin.try_exit().is_none(), "{}", plugin.log());
        deadline.check();
        std::thread::sleep(Duration::from_millis(50));
    }
    plugin
}

/// Everything observable a run produced.
#[derive(Default)]
struct Emitted(Vec<(String, String)>);

impl Emitted {
    fn add(&mut self, source: impl Into<String>, text: impl Into<String>) {
        self.0.push((source.into(), text.into()));
    }

    fn add_http(&mut self, e2e: &E2e) {
        self.add("/metrics", format!("{:?}", e2e.metrics()));
        let (code, ready) = e2e.ready();
        self.add("/ready", format!("{code} {ready}"));
    }
}

/// One round trip of `plaintext`, and a Decrypt of a tampered ciphertext whose error text is
/// recorded.
async fn round_trip(api: &mut KubeApiserver, plaintext: &[u8], emitted: &mut Emitted) {
    let encrypted = api.encrypt(plaintext.to_vec()).await.unwrap();
    let request = DecryptRequest {
        ciphertext: encrypted.ciphertext.clone(),
        uid: api.next_uid(),
        key_id: encrypted.key_id.clone(),
        annotations: encrypted.annotations.clone(),
    };
    assert_eq!(api.decrypt(request.clone()).await.unwrap(), plaintext);
    let mut tampered = request;
    if let Some(last) = tampered.ciphertext.last_mut() {
        *last ^= 0x55;
    }
    tampered.uid = api.next_uid();
    let error = api.decrypt(tampered).await.unwrap_err();
    emitted.add("decrypt error", error.to_string());
}

fn forms(secret: &str) -> Vec<String> {
    vec![
        secret.to_owned(),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_used_in_a_run_appears_in_logs_metrics_health_or_errors() {
    let e2e = E2e::new();
    let bao = e2e.bao();
    let role_id = bao.file("role-id");
    let secret_id = bao.file("secret-id");
    let token_file = bao.file("token");
    let token = read(&token_file);
    let plaintext = b"plaintext-that-must-never-be-logged-7f3a9c".to_vec();
    let mut emitted = Emitted::default();

    // AppRole: a round trip, a SIGHUP reload, one with a broken secret id, a revoked token.
    let config = config_with_auth(&e2e, "approle", &approle_auth(&role_id, &secret_id), "20s");
    let plugin = start(&e2e, &config, "approle");
    let mut api = e2e.apiserver().await;
    round_trip(&mut api, &plaintext, &mut emitted).await;
    let hup = |plugin: &PluginProcess| {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(i32::try_from(plugin.pid()).unwrap()).unwrap(),
            rustix::process::Signal::HUP,
        )
        .unwrap();
    };
    hup(&plugin);
    let saved = std::fs::read(&secret_id).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&secret_id, "not-the-secret-id").unwrap();
    hup(&plugin);
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&secret_id, &saved).unwrap();
    bao.revoke_approle_tokens();
    round_trip(&mut api, &plaintext, &mut emitted).await;
    emitted.add_http(&e2e);
    drop(api);
    drop(plugin);
    let plugin_log = |name: &str| {
        (
            std::fs::read_to_string(e2e.dir().join(format!("{name}.log"))).unwrap(),
            std::fs::read_to_string(e2e.dir().join(format!("{name}.stdout"))).unwrap(),
        )
    };
    let (stderr, stdout) = plugin_log("approle");
    assert!(stderr.contains("serve.reloaded"), "{stderr}");
    emitted.add("approle stderr", stderr);
    emitted.add("approle stdout", stdout);

    // Token auth: a round trip, then the token is revoked under the running plugin.
    let auth = format!(
        "auth:\n  method: token\n  token:\n    tokenFile: {}\n",
        token_file.display()
    );
    let config = config_with_auth(&e2e, "token", &auth, "20s");
    let plugin = start(&e2e, &config, "token");
    let mut api = e2e.apiserver().await;
    round_trip(&mut api, &plaintext, &mut emitted).await;
    bao.cli(&["token", "revoke", &token]);
    let error = api.encrypt(plaintext.clone()).await.unwrap_err();
    emitted.add("token encrypt error", error.to_string());
    emitted.add_http(&e2e);
    drop(api);
    drop(plugin);
    let (stderr, stdout) = plugin_log("token");
    assert!(stderr.contains("openbao login failed"), "{stderr}");
    emitted.add("token stderr", stderr);
    emitted.add("token stdout", stdout);

    // A login refused at bootstrap.
    let wrong = e2e.dir().join("etc").join("wrong-secret-id");
    std::fs::write(&wrong, "11111111-2222-3333-4444-555555555555").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = config_with_auth(&e2e, "refused", &approle_auth(&role_id, &wrong), "0s");
    let mut plugin = PluginProcess::serve(&config, e2e.dir(), "refused");
    assert_eq!(plugin.expect_exit(Duration::from_secs(30)).code(), Some(5));
    drop(plugin);
    let (stderr, stdout) = plugin_log("refused");
    emitted.add("refused stderr", stderr);
    emitted.add("refused stdout", stdout);

    let mut secrets = vec![
        ("token", token),
        ("role id", read(&role_id)),
        ("secret id", read(&secret_id)),
        ("wrong secret id", read(&wrong)),
        ("root token", read(&bao.file("root-token"))),
    ];
    let text = String::from_utf8(plaintext.clone()).unwrap();
    secrets.push(("plaintext", text));
    let hex: String = plaintext.iter().map(|byte| format!("{byte:02x}")).collect();
    secrets.push(("plaintext hex", hex));
    assert!(emitted.0.len() >= 10, "every source was collected");
    for (what, secret) in &secrets {
        assert!(
            secret.len() >= 16,
            "{what} is long enough to be searched for"
        );
        for form in forms(secret) {
            for (source, text) in &emitted.0 {
                assert!(
                    !text.contains(&form),
                    "the {what} appears in {source}: {}",
                    &text[text.find(&form).unwrap().saturating_sub(80)..]
                );
            }
        }
    }
}
