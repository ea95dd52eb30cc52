//! `init`: the installation files generated from one values file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bao_kms_runtime_tokio::config::{self, Overrides};
use serde_json::Value;
use support::bao::{BaoServer, bao_binary};

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const LINEAGE: &str = "01HXEXAMPLEKEYLINEAGEID";

/// A values file for JWT auth; `lineage` adds `keyLineageId`.
fn jwt_values(lineage: Option<&str>) -> String {
    let lineage = lineage
        .map(|id| format!("    keyLineageId: {id}\n"))
        .unwrap_or_default();
    format!(
        "configVersion: v1alpha1
server:
  socketMode: \"0660\"
openbao:
  address: https://openbao.example.internal:8200
  tlsServerName: openbao.example.internal
  instanceId: bao-prod-a
auth:
  method: jwt
  jwt:
    mountPath: auth/k8s-workload-a-jwt
    role: kms-provider-workload-a
    expectedIssuer: https://issuer.example.internal
    expectedAudience: [\"openbao\"]
    expectedSubject: \"system:node-kms:workload-a\"
transit:
  mountPath: transit
  keyName: kms-workload-a
  keyIdScope:
    providerName: openbao-kms-workload-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
{lineage}"
    )
}

/// A values file for token auth whose token file holds `secret` (init must never read it).
fn token_values(token_file: &Path) -> String {
    format!(
        "configVersion: v1alpha1
openbao:
  address: https://127.0.0.1:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: localhost
  instanceId: bao-dev
auth:
  method: token
  token:
    tokenFile: {}
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: openbao-kms
    clusterId: dev
    transitMountId: transit-dev
    keyLineageId: {LINEAGE}
",
        token_file.display()
    )
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn values(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("values.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn init(&self, values: &Path, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"))
            .arg("init")
            .arg("--values")
            .arg(values)
            .arg("--out")
            .arg(self.out())
            .args(extra)
            // Environment overrides are ignored by init.
            .env("BAO_KMS_PROVIDER_LOG_LEVEL", "trace")
            .output()
            .unwrap()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.out().join(name)).unwrap()
    }

    fn mode(&self, name: &str) -> u32 {
        std::fs::metadata(self.out().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.out())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn installation(&self) -> Value {
        serde_json::from_str(&self.read("installation.json")).unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn policy_for(config: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"))
        .args(["policy", "openbao", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    text(&output.stdout)
}

fn static_pod_args() -> Vec<String> {
    vec![
        "--model".into(),
        "static-pod".into(),
        "--image".into(),
        format!("registry.example/bao-kms-provider@sha256:{DIGEST}"),
        "--socket-gid".into(),
        "996".into(),
    ]
}

#[test]
fn systemd_init_writes_every_file_with_its_mode_and_prints_the_fingerprint() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    let output = ws.init(&values, &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        ws.names(),
        [
            "bao-kms-provider.service",
            "config.yaml",
            "encryption-config-readers.yaml",
            "encryption-config.yaml",
            "installation.json",
            "node-setup.sh",
            "openbao-policy.hcl",
            "openbao-setup.sh",
        ]
    );
    for (name, mode) in [
        ("config.yaml", 0o640),
        ("encryption-config-readers.yaml", 0o640),
        ("encryption-config.yaml", 0o640),
        ("openbao-policy.hcl", 0o640),
        ("bao-kms-provider.service", 0o640),
        ("installation.json", 0o640),
        ("openbao-setup.sh", 0o750),
        ("node-setup.sh", 0o750),
    ] {
        assert_eq!(ws.mode(name), mode, "{name}");
    }
    assert_eq!(
        std::fs::metadata(ws.out()).unwrap().permissions().mode() & 0o7777,
        0o750
    );

    let stdout = text(&output.stdout);
    let installation = ws.installation();
    let fingerprint = installation["identityFingerprint"].as_str().unwrap();
    assert!(fingerprint.starts_with("cfg1."));
    assert!(
        stdout.contains(&format!("identity fingerprint: {fingerprint}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("key lineage id: {LINEAGE} (from the values file)")));
    assert_eq!(installation["model"], "systemd");
    assert_eq!(installation["keyLineageId"], LINEAGE);
    assert_eq!(installation["newKey"], false);
    assert_eq!(installation["policyName"], "openbao-kms-workload-a");
    assert_eq!(installation["image"], Value::Null);
    assert_eq!(
        installation["hostPaths"]["config"],
        "/etc/openbao-kms/config.yaml"
    );
    assert_eq!(
        installation["defaultsFilled"],
        serde_json::json!([
            "openbao.caCertFile",
            "auth.jwt.jwtFile",
            "server.socketGroup"
        ])
    );
    assert_eq!(installation["files"].as_array().unwrap().len(), 8);
    assert!(
        !installation["remainingActions"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let unit = ws.read("bao-kms-provider.service");
    for line in [
        "Type=notify",
        "User=openbao-kms",
        "SupplementaryGroups=openbao-kms-socket",
        "ExecStart=/usr/local/bin/bao-kms-provider serve --config /etc/openbao-kms/config.yaml",
        "SystemCallFilter=@system-service",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "ReadWritePaths=/run/openbao-kms /var/lib/openbao-kms/state",
        "AssertPathIsDirectory=/run/openbao-kms",
        "AssertPathExists=/etc/openbao-kms/config.yaml",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
}

#[test]
fn the_generated_config_loads_as_serve_would_and_matches_the_printed_fingerprint() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    let output = ws.init(&values, &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let yaml = ws.read("config.yaml");
    let config = config::parse_str(&yaml, &Overrides::default(), &|_| None).unwrap();
    assert_eq!(
        config.identity_fingerprint().as_str(),
        ws.installation()["identityFingerprint"]
    );
    // The default host paths were filled in.
    assert_eq!(
        config.openbao.ca_cert_file,
        Path::new("/etc/openbao-kms/tls/ca.crt")
    );
    assert_eq!(
        config.server.socket_group.as_deref(),
        Some("openbao-kms-socket")
    );
    assert_eq!(config.server.socket_mode, 0o660);
    assert_eq!(
        config.auth.method.credential_files()[0].1,
        Path::new("/var/lib/openbao-kms/identity.jwt")
    );
}

#[test]
fn the_generated_policy_equals_policy_openbao_for_the_generated_config() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    assert_eq!(ws.init(&values, &[]).status.code(), Some(0));
    let policy = ws.read("openbao-policy.hcl");
    assert_eq!(policy, policy_for(&ws.out().join("config.yaml")));
    assert!(policy.contains("path \"transit/encrypt/kms-workload-a\""));
}

#[test]
fn the_encryption_configurations_put_identity_first_for_readers_and_kms_first_for_writers() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    assert_eq!(ws.init(&values, &[]).status.code(), Some(0));
    for (name, kms_index) in [
        ("encryption-config-readers.yaml", 1),
        ("encryption-config.yaml", 0),
    ] {
        let document: serde_norway::Value = serde_norway::from_str(&ws.read(name)).unwrap();
        assert_eq!(document["kind"].as_str(), Some("EncryptionConfiguration"));
        let providers = document["resources"][0]["providers"].as_sequence().unwrap();
        assert_eq!(providers.len(), 2, "{name}");
        let kms = &providers[kms_index]["kms"];
        assert_eq!(kms["apiVersion"].as_str(), Some("v2"));
        assert_eq!(kms["name"].as_str(), Some("openbao-kms-workload-a"));
        assert_eq!(
            kms["endpoint"].as_str(),
            Some("unix:///run/openbao-kms/kms.sock")
        );
        assert_eq!(kms["timeout"].as_str(), Some("3s"));
        assert!(providers[1 - kms_index].get("identity").is_some(), "{name}");
    }
}

#[test]
fn static_pod_init_pins_the_image_and_the_socket_gid() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    let args = static_pod_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ws.init(&values, &args);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let names = ws.names();
    assert!(names.contains(&"bao-kms-provider.yaml".to_owned()));
    assert!(!names.contains(&"bao-kms-provider.service".to_owned()));
    assert_eq!(ws.mode("bao-kms-provider.yaml"), 0o640);

    let pod: serde_norway::Value =
        serde_norway::from_str(&ws.read("bao-kms-provider.yaml")).unwrap();
    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
    assert_eq!(spec["securityContext"]["runAsUser"].as_u64(), Some(65532));
    assert_eq!(
        spec["securityContext"]["supplementalGroups"][0].as_u64(),
        Some(996)
    );
    let container = &spec["containers"][0];
    assert_eq!(
        container["image"].as_str().unwrap(),
        format!("registry.example/bao-kms-provider@sha256:{DIGEST}")
    );
    assert_eq!(
        container["command"][0].as_str(),
        Some("/usr/local/bin/bao-kms-provider")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"].as_u64(),
        Some(8082)
    );
    let mounts: Vec<(&str, bool)> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|mount| {
            (
                mount["mountPath"].as_str().unwrap(),
                mount["readOnly"].as_bool().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("/etc/openbao-kms/config.yaml", true),
        ("/etc/openbao-kms/tls", true),
        ("/var/lib/openbao-kms/credentials", true),
        ("/run/openbao-kms", false),
        ("/var/lib/openbao-kms/state", false),
    ] {
        assert!(mounts.contains(&expected), "{expected:?} not in {mounts:?}");
    }

    let config =
        config::parse_str(&ws.read("config.yaml"), &Overrides::default(), &|_| None).unwrap();
    assert_eq!(config.server.socket_group.as_deref(), Some("996"));
    let installation = ws.installation();
    assert_eq!(installation["model"], "static-pod");
    assert_eq!(installation["runtimeIdentity"]["socketGid"], 996);
    assert!(installation["image"].as_str().unwrap().ends_with(DIGEST));
}

#[test]
fn static_pod_init_refuses_an_image_not_pinned_by_sha256_and_a_missing_socket_gid() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    for args in [
        vec!["--model", "static-pod", "--socket-gid", "996"],
        vec![
            "--model",
            "static-pod",
            "--socket-gid",
            "996",
            "--image",
            "registry.example/bao-kms-provider:0.1.0",
        ],
        vec![
            "--model",
            "static-pod",
            "--socket-gid",
            "996",
            "--image",
            "registry.example/bao-kms-provider@sha256:abc",
        ],
    ] {
        let output = ws.init(&values, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains("@sha256"), "{output:?}");
        assert!(!ws.out().exists());
    }
    let image = format!("registry.example/bao-kms-provider@sha256:{DIGEST}");
    let output = ws.init(&values, &["--model", "static-pod", "--image", &image]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--socket-gid"));
    // And the static-pod flags are refused for systemd.
    let output = ws.init(&values, &["--image", &image]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!ws.out().exists());
}

#[test]
fn init_refuses_a_non_empty_out_directory_and_touches_nothing_in_it() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    std::fs::create_dir(ws.out()).unwrap();
    std::fs::write(ws.out().join("config.yaml"), "keep me").unwrap();
    let output = ws.init(&values, &[]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("not empty"));
    assert_eq!(ws.names(), ["config.yaml"]);
    assert_eq!(ws.read("config.yaml"), "keep me");
    // An empty existing directory is fine.
    std::fs::remove_file(ws.out().join("config.yaml")).unwrap();
    assert_eq!(ws.init(&values, &[]).status.code(), Some(0));
}

#[test]
fn new_key_writes_a_32_hex_lineage_id_and_is_refused_when_one_is_set() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(None));
    let output = ws.init(&values, &["--new-key"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let installation = ws.installation();
    let lineage = installation["keyLineageId"].as_str().unwrap().to_owned();
    assert_eq!(lineage.len(), 32);
    assert!(
        lineage
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(installation["newKey"], true);
    assert!(text(&output.stdout).contains(&format!("new key lineage id: {lineage}")));
    let config =
        config::parse_str(&ws.read("config.yaml"), &Overrides::default(), &|_| None).unwrap();
    assert_eq!(config.identity().key_scope().key_lineage_id(), lineage);
    // The setup script refuses to reuse an existing key for a new lineage.
    assert!(
        ws.read("openbao-setup.sh")
            .contains("--new-key generated a new key lineage id")
    );

    // A second run gets a different id.
    std::fs::remove_dir_all(ws.out()).unwrap();
    assert_eq!(ws.init(&values, &["--new-key"]).status.code(), Some(0));
    assert_ne!(ws.installation()["keyLineageId"], lineage.as_str());

    // Refused when the values already carry one.
    std::fs::remove_dir_all(ws.out()).unwrap();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    let output = ws.init(&values, &["--new-key"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("keyLineageId"));
    assert!(!ws.out().exists());
}

#[test]
fn invalid_values_exit_with_code_3_and_write_nothing() {
    let ws = Workspace::new();
    // Without --new-key the lineage id is missing.
    let values = ws.values(&jwt_values(None));
    let output = ws.init(&values, &[]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(text(&output.stderr).contains("transit.keyIdScope.keyLineageId"));
    assert!(!ws.out().exists());

    // init adds rules of its own: the generated JWT role binds issuer, audience and subject.
    let values = ws.values(
        &jwt_values(Some(LINEAGE))
            .replace("    expectedSubject: \"system:node-kms:workload-a\"\n", ""),
    );
    let output = ws.init(&values, &[]);
    assert_eq!(output.status.code(), Some(3));
    assert!(text(&output.stderr).contains("auth.jwt.expectedSubject"));

    // Unknown keys are refused as serve refuses them.
    let values = ws.values(&format!("{}bogus: 1\n", jwt_values(Some(LINEAGE))));
    assert_eq!(ws.init(&values, &[]).status.code(), Some(3));

    // An unreadable values file is a configuration error too.
    let output = ws.init(&ws.dir.path().join("missing.yaml"), &[]);
    assert_eq!(output.status.code(), Some(3));
    assert!(!ws.out().exists());
}

#[test]
fn a_write_failure_exits_with_code_1() {
    let ws = Workspace::new();
    let values = ws.values(&jwt_values(Some(LINEAGE)));
    // The parent of --out does not exist: init creates only --out itself.
    let out = ws.dir.path().join("no/such/parent");
    let output = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"))
        .arg("init")
        .arg("--values")
        .arg(&values)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(!ws.dir.path().join("no").exists());
}

#[test]
fn init_never_reads_credentials_and_its_files_hold_none() {
    let ws = Workspace::new();
    let token_file = ws.dir.path().join("token");
    let secret = "s.bao-kms-init-test-never-copied";
    std::fs::write(&token_file, secret).unwrap();
    let values = ws.values(&token_values(&token_file));
    let output = ws.init(&values, &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(!text(&output.stdout).contains(secret));
    assert!(!text(&output.stderr).contains(secret));
    for name in ws.names() {
        assert!(!ws.read(&name).contains(secret), "{name}");
    }
    // Token auth: the policy lets the provider look its token up, and the setup script only
    // describes how to create the token.
    assert!(
        ws.read("openbao-policy.hcl")
            .contains("auth/token/lookup-self")
    );
    let setup = ws.read("openbao-setup.sh");
    assert!(setup.contains("#   bao token create"));
    assert!(
        !setup
            .lines()
            .any(|line| line.starts_with("bao token create"))
    );
}

#[test]
fn the_generated_scripts_are_valid_shell_and_quote_every_value() {
    for model in ["systemd", "static-pod"] {
        let ws = Workspace::new();
        // A provider name and a lineage id with shell metacharacters stay inert.
        let values = ws.values(&jwt_values(Some("lineage'$(touch /tmp/pwned)")).replace(
            "role: kms-provider-workload-a",
            "role: \"kms role'; rm -rf /\"",
        ));
        let mut args = vec![];
        let pod = static_pod_args();
        if model == "static-pod" {
            args = pod.iter().map(String::as_str).collect();
        }
        let output = ws.init(&values, &args);
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        for script in ["openbao-setup.sh", "node-setup.sh"] {
            let path = ws.out().join(script);
            let status = Command::new("sh").arg("-n").arg(&path).status().unwrap();
            assert!(status.success(), "{model} {script}:\n{}", ws.read(script));
            assert!(ws.read(script).starts_with("#!/bin/sh\n"));
        }
        let setup = ws.read("openbao-setup.sh");
        assert!(setup.contains("bao write \"$MOUNT/config/keys\" disable_upsert=true"));
        assert!(setup.contains("type=aes256-gcm96"));
        assert!(setup.contains("bao policy write \"$POLICY\" openbao-policy.hcl"));
        assert!(setup.contains("'kms role'\\''; rm -rf /'"), "{setup}");
        assert!(!setup.contains("$(touch"));
    }
}

/// Runs a generated `openbao-setup.sh` as an administrator of `server`.
fn run_setup(server: &BaoServer, script: &Path) -> Output {
    let root_token = std::fs::read_to_string(server.dir().join("root-token")).unwrap();
    let bao_dir = bao_binary().parent().unwrap();
    let path = format!(
        "{}:{}",
        bao_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .arg(script)
        .env("BAO_ADDR", server.address())
        .env("BAO_CACERT", server.dir().join("ca.pem"))
        .env("BAO_TOKEN", root_token.trim())
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn the_generated_openbao_setup_script_configures_a_real_openbao_and_can_run_twice() {
    let server = BaoServer::shared();
    for method in ["jwt", "approle"] {
        let ws = Workspace::new();
        let mount = server.unique("init-transit");
        let key = server.unique("init-key");
        let cluster = server.unique("cluster");
        let approle_mount = format!("auth/{}", server.unique("init-approle"));
        let mut values = jwt_values(Some(LINEAGE))
            .replace("  mountPath: transit\n", &format!("  mountPath: {mount}\n"))
            .replace("keyName: kms-workload-a", &format!("keyName: {key}"))
            .replace("clusterId: workload-a", &format!("clusterId: {cluster}"));
        if method == "approle" {
            let start = values.find("auth:\n").unwrap();
            let end = values.find("transit:\n").unwrap();
            values.replace_range(
                start..end,
                &format!("auth:\n  method: approle\n  approle:\n    mountPath: {approle_mount}\n"),
            );
        }
        let values = ws.values(&values);
        let output = ws.init(&values, &[]);
        assert_eq!(output.status.code(), Some(0), "{method}: {output:?}");
        let script = ws.out().join("openbao-setup.sh");
        for attempt in 0..2 {
            let run = run_setup(&server, &script);
            assert!(
                run.status.success(),
                "{method} run {attempt}: {}\n{}",
                text(&run.stdout),
                text(&run.stderr)
            );
        }

        let keys_config = server.root_ok("GET", &format!("{mount}/config/keys"), None);
        assert_eq!(keys_config["data"]["disable_upsert"], true, "{keys_config}");
        let metadata = server.root_ok("GET", &format!("{mount}/keys/{key}"), None);
        assert_eq!(metadata["data"]["type"], "aes256-gcm96");
        assert_eq!(metadata["data"]["exportable"], false);
        assert_eq!(metadata["data"]["deletion_allowed"], false);
        let policy_name = format!("openbao-kms-{cluster}");
        let policy = server.root_ok("GET", &format!("sys/policies/acl/{policy_name}"), None);
        assert_eq!(policy["data"]["policy"], ws.read("openbao-policy.hcl"));
        let role = match method {
            "jwt" => server.root_ok(
                "GET",
                "auth/k8s-workload-a-jwt/role/kms-provider-workload-a",
                None,
            ),
            _ => server.root_ok("GET", &format!("{approle_mount}/role/{policy_name}"), None),
        };
        assert_eq!(
            role["data"]["token_policies"],
            serde_json::json!([policy_name])
        );
        assert_eq!(role["data"]["token_ttl"], 1800, "{role}");
        if method == "jwt" {
            assert_eq!(role["data"]["bound_subject"], "system:node-kms:workload-a");
            assert_eq!(
                role["data"]["bound_audiences"],
                serde_json::json!(["openbao"])
            );
        }

        // A new lineage for an existing key is refused by the script.
        let fresh = Workspace::new();
        let values = std::fs::read_to_string(&values)
            .unwrap()
            .replace(&format!("    keyLineageId: {LINEAGE}\n"), "");
        let values = fresh.values(&values);
        assert_eq!(fresh.init(&values, &["--new-key"]).status.code(), Some(0));
        let run = run_setup(&server, &fresh.out().join("openbao-setup.sh"));
        assert_eq!(run.status.code(), Some(1), "{run:?}");
        assert!(text(&run.stderr).contains("--new-key"));
    }
}

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy")
            .join(path),
    )
    .unwrap()
}

/// The text from the first line equal to `from` on.
fn from_line<'a>(text: &'a str, from: &str) -> &'a str {
    let at = text
        .find(&format!("\n{from}\n"))
        .unwrap_or_else(|| panic!("no {from:?} in\n{text}"));
    &text[at + 1..]
}

#[test]
fn init_renders_the_deploy_unit_unchanged_for_the_deploy_example_values() {
    let ws = Workspace::new();
    let values =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/provider-systemd.yaml");
    let output = ws.init(&values, &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let generated = ws.read("bao-kms-provider.service");
    let documented = deploy_file("systemd/bao-kms-provider.service");
    assert_eq!(
        from_line(&generated, "[Unit]"),
        from_line(&documented, "[Unit]")
    );
    assert!(generated.contains("from\n# deploy/systemd/bao-kms-provider.service"));
    for name in ["encryption-config.yaml", "encryption-config-readers.yaml"] {
        let generated = ws.read(name);
        let documented = deploy_file(&format!("kubernetes/{name}"));
        let body = |text: &str| text[text.find("apiVersion: ").unwrap()..].to_owned();
        assert_eq!(body(&generated), body(&documented), "{name}");
    }
}

#[test]
fn init_renders_the_deploy_static_pod_unchanged_for_the_deploy_example_values() {
    let ws = Workspace::new();
    let values =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/provider-static-pod.yaml");
    let image = format!(
        "registry.example.internal/bao-kms-provider@sha256:{}",
        "0".repeat(64)
    );
    let output = ws.init(
        &values,
        &[
            "--model",
            "static-pod",
            "--image",
            &image,
            "--socket-gid",
            "65533",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let generated = ws.read("bao-kms-provider.yaml");
    let documented = deploy_file("static-pod/bao-kms-provider.yaml");
    assert_eq!(
        from_line(&generated, "apiVersion: v1"),
        from_line(&documented, "apiVersion: v1")
    );
    // What the issue asked to keep: the container's resources.
    let pod: serde_norway::Value = serde_norway::from_str(&generated).unwrap();
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["memory"], "64Mi");
    assert_eq!(resources["limits"]["memory"], "256Mi");
}
