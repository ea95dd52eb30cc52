//! Report defects an operator meets in the first hour: `init` line numbers, one JSON shape
//! for `upgrade-check`, `fleet-check` with no reachable node, OpenBao errors that name the
//! server, and the EncryptionConfiguration timeout `doctor` checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"));
    command
        .env_remove("BAO_KMS_PROVIDER_CONFIG")
        .env_remove("BAO_KMS_PROVIDER_CONFIG_PATH")
        .stdin(Stdio::null());
    command
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{error}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
}

/// A configuration whose OpenBao listens nowhere (port 1 on loopback) with a real CA file.
fn offline_config(dir: &Path, extra_openbao: &str) -> PathBuf {
    let ca = dir.join("ca.crt");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success());
    let token = dir.join("token");
    std::fs::write(&token, "s.not-a-real-token").unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "configVersion: v1alpha1
openbao:
  address: https://127.0.0.1:1
  caCertFile: {ca}
  tlsServerName: localhost
  instanceId: bao-prod-a
{extra_openbao}auth:
  method: token
  token:
    tokenFile: {token}
state:
  path: {state}
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: openbao-kms-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
    keyLineageId: 01HXEXAMPLEKEYLINEAGEID
",
            ca = ca.display(),
            token = token.display(),
            state = dir.join("state/registry.json").display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn init_reports_the_line_of_the_values_file_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    // Comments and blank lines move the bad key down; a re-serialised copy has neither.
    std::fs::write(
        &values,
        "# values for workload-a\n\n# OpenBao\nconfigVersion: v1alpha1\n\nopenbao:\n  \
         address: https://127.0.0.1:8200\n\n  # typo on line 9\n  adress: x\n",
    )
    .unwrap();
    let output = binary()
        .args(["init", "--values"])
        .arg(&values)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("adress"), "{stderr}");
    assert!(stderr.contains("line 10"), "{stderr}");
}

#[test]
fn upgrade_check_keeps_its_check_list_when_the_target_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "");
    let ok_manifest = dir.path().join("this.json");
    let version = binary()
        .args(["version", "--output", "json"])
        .output()
        .unwrap();
    std::fs::write(&ok_manifest, &version.stdout).unwrap();
    let ids = |manifest: &Path| -> (Option<i32>, Vec<String>, serde_json::Value) {
        let output = binary()
            .args(["upgrade-check", "--output", "json", "--config"])
            .arg(&config)
            .arg("--target-manifest")
            .arg(manifest)
            .output()
            .unwrap();
        let report = json(&output);
        let ids = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|check| check["id"].as_str().unwrap().to_owned())
            .collect();
        (output.status.code(), ids, report)
    };
    let (code, good, report) = ids(&ok_manifest);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["verdict"], "pass");
    let (code, bad, report) = ids(&dir.path().join("missing.toml"));
    assert_eq!(code, Some(4));
    assert_eq!(bad, good);
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["summary"]["fail"], 1);
    assert_eq!(check(&report, "upgrade.target")["status"], "fail");
}

#[test]
fn fleet_check_with_no_reachable_node_skips_rotation_and_reports_nulls() {
    let output = binary()
        .args(["fleet-check", "--output", "json"])
        .args(["--metrics-url", "http://127.0.0.1:1/metrics"])
        .args(["--metrics-url", "http://127.0.0.1:9/metrics"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let report = json(&output);
    assert_eq!(check(&report, "fleet.rotation")["status"], "skip");
    assert_eq!(check(&report, "fleet.key_id_hash")["status"], "fail");
    let node = &check(&report, "node.2")["details"];
    assert_eq!(node["url"], "http://127.0.0.1:9/metrics");
    assert_eq!(node["reachable"], false);
    assert!(node["keyIdHash"].is_null() && node["ready"].is_null());
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["summary"]["skip"], 1);
}

#[test]
fn doctor_names_the_openbao_address_when_openbao_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "  timeout: 1s\n");
    let output = binary()
        .args(["doctor", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let report = json(&output);
    let health = check(&report, "openbao.health");
    assert_eq!(health["status"], "fail");
    assert!(
        health["message"]
            .as_str()
            .unwrap()
            .contains("https://127.0.0.1:1"),
        "{health}"
    );
}

#[test]
fn doctor_fails_an_encryption_config_timeout_not_above_openbao_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path(), "  timeout: 5s\n");
    let encryption = |name: &str, timeout: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
                 resources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          \
                 apiVersion: v2\n          name: openbao-kms-a\n          \
                 endpoint: unix:///run/openbao-kms/kms.sock\n{timeout}"
            ),
        )
        .unwrap();
        path
    };
    let cases = [
        (encryption("short.yaml", "          timeout: 3s\n"), "fail"),
        (encryption("unset.yaml", ""), "fail"),
        (encryption("long.yaml", "          timeout: 10s\n"), "pass"),
    ];
    for (path, status) in cases {
        let output = binary()
            .args(["doctor", "--output", "json", "--config"])
            .arg(&config)
            .arg("--encryption-config")
            .arg(&path)
            .output()
            .unwrap();
        let report = json(&output);
        let found = check(&report, "kubernetes.encryption_config");
        assert_eq!(found["status"], status, "{}: {found}", path.display());
        if status == "fail" {
            assert!(
                found["message"]
                    .as_str()
                    .unwrap()
                    .contains("openbao.timeout 5s"),
                "{found}"
            );
        }
    }
}

/// A JWT configuration (no key this project added) whose node has no state yet.
fn jwt_config(dir: &Path) -> PathBuf {
    let path = dir.join("jwt.yaml");
    std::fs::write(
        &path,
        format!(
            "configVersion: v1alpha1
openbao:
  address: https://127.0.0.1:1
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: localhost
  instanceId: bao-prod-a
auth:
  method: jwt
  jwt:
    mountPath: auth/jwt
    role: kms
    jwtFile: /var/lib/openbao-kms/identity.jwt
state:
  path: {}
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: openbao-kms-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
    keyLineageId: 01HXEXAMPLEKEYLINEAGEID
",
            dir.join("state/registry.json").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_shipped_preview_manifests_are_read_and_judged_by_upgrade_check() {
    let dir = tempfile::tempdir().unwrap();
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compat");
    let jwt = jwt_config(dir.path());
    let token = offline_config(dir.path(), "");
    for preview in 1..=3 {
        let manifest = compat.join(format!("0.1.0-preview.{preview}.toml"));
        let run = |config: &Path| {
            let output = binary()
                .args(["upgrade-check", "--output", "json", "--config"])
                .arg(config)
                .arg("--target-manifest")
                .arg(&manifest)
                .output()
                .unwrap();
            (output.status.code(), json(&output))
        };
        // No state and no added configuration key: nothing the preview cannot read.
        let (code, report) = run(&jwt);
        assert_eq!(code, Some(0), "{report}");
        assert_eq!(
            check(&report, "upgrade.direction")["message"],
            format!("rollback from 0.1.0 to 0.1.0-preview.{preview}")
        );
        // auth.token is this project's addition: every preview release refuses it.
        let (code, report) = run(&token);
        assert_eq!(code, Some(4), "{report}");
        let config = check(&report, "upgrade.config");
        assert_eq!(config["status"], "fail");
        assert!(config["message"].as_str().unwrap().contains("auth.token"));
    }
}
