//! The simple commands of the binary: version, usage errors and the resolved configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use bao_kms_core::compat::Manifest;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"))
}

#[test]
fn version_json_carries_the_build_facts_and_the_compiled_in_compatibility_manifest() {
    let output = binary()
        .args(["version", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["version"], concat!("v", env!("CARGO_PKG_VERSION")));
    let manifest: Manifest = serde_json::from_value(report["compatibility"].clone()).unwrap();
    assert_eq!(manifest, Manifest::this_release());
}

#[test]
fn version_text_lists_version_commit_date_and_dirty() {
    let output = binary().arg("version").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    for key in ["version:", "commit:", "buildDate:", "dirty:"] {
        assert!(text.contains(key), "{text}");
    }
}

#[test]
fn an_unknown_command_or_flag_is_a_usage_error_with_exit_code_2() {
    assert_eq!(
        binary()
            .arg("no-such-command")
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        binary()
            .args(["version", "--bogus"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        binary()
            .args(["version", "--output", "xml"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn serve_and_config_without_a_config_file_exit_with_code_3() {
    for command in ["serve", "config"] {
        let output = binary()
            .arg(command)
            .env_remove("BAO_KMS_PROVIDER_CONFIG")
            .env_remove("BAO_KMS_PROVIDER_CONFIG_PATH")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{command}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.starts_with("config invalid;"), "{stderr}");
    }
}

#[test]
fn config_prints_the_identity_fingerprint_of_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let yaml = r#"configVersion: v1alpha1
openbao:
  address: https://127.0.0.1:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: localhost
  instanceId: bao-prod-a
auth:
  method: token
  token:
    tokenFile: /var/lib/openbao-kms/token
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: openbao-kms-workload-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
    keyLineageId: 01HXEXAMPLEKEYLINEAGEID
"#;
    std::fs::write(&path, yaml).unwrap();
    let output = binary()
        .args(["config", "--output", "json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let fingerprint = summary.to_string();
    assert!(fingerprint.contains("cfg1."), "{summary}");
}

#[test]
fn completion_prints_a_script_for_each_supported_shell() {
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let output = binary().args(["completion", shell]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(
            script.contains("bao-kms-provider") && script.contains(marker),
            "{shell}"
        );
    }
    assert_eq!(
        binary()
            .args(["completion", "tcsh"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}
