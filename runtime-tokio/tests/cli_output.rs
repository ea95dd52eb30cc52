//! Command-line behaviour every command shares: stdout closed by the reader, usage errors for
//! bad or ignored global flags, the effective configuration, `probe --config` and shell
//! completion run in a real bash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"));
    command
        .env_remove("BAO_KMS_PROVIDER_CONFIG")
        .env_remove("BAO_KMS_PROVIDER_CONFIG_PATH")
        .env_remove("BAO_KMS_PROVIDER_LOG_LEVEL")
        .stdin(Stdio::null());
    command
}

const CONFIG: &str = r#"configVersion: v1alpha1
server:
  socketPath: /run/test-kms/probe.sock
  socketDirectories: [/run/test-kms]
openbao:
  address: https://127.0.0.1:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: localhost
  instanceId: bao-prod-a
  timeout: 4s
auth:
  method: approle
  approle:
    mountPath: auth/approle
    roleIdFile: /var/lib/openbao-kms/role-id
    secretIdFile: /var/lib/openbao-kms/secret-id
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: openbao-kms-workload-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
    keyLineageId: 01HXEXAMPLEKEYLINEAGEID
"#;

fn config_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    path
}

/// Runs `args` with stdout connected to a pipe whose reading end is already closed, so every
/// write fails with EPIPE from the first byte on.
fn run_with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    binary()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_never_panics_and_keeps_each_commands_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let config = config.to_str().unwrap();
    let out = dir.path().join("init-out");
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, CONFIG.replace("  timeout: 4s\n", "")).unwrap();
    let missing_socket = dir.path().join("none.sock");
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["completion", "bash"], 0),
        (vec!["completion", "zsh"], 0),
        (vec!["completion", "fish"], 0),
        (vec!["version"], 0),
        (vec!["version", "--output", "json"], 0),
        (vec!["config", "schema"], 0),
        (vec!["config", "--config", config], 0),
        (vec!["config", "--config", config, "--output", "json"], 0),
        (vec!["policy", "openbao", "--config", config], 0),
        (
            vec![
                "fleet-check",
                "--metrics-url",
                "http://127.0.0.1:9/metrics",
                "--output",
                "json",
            ],
            4,
        ),
        (
            vec![
                "probe",
                "--socket",
                missing_socket.to_str().unwrap(),
                "--timeout",
                "2s",
            ],
            4,
        ),
        (
            vec![
                "init",
                "--values",
                values.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            0,
        ),
        (vec!["--help"], 0),
        // Reports printed although OpenBao is unreachable and the target is missing.
        (vec!["doctor", "--config", config], 4),
        (
            vec![
                "upgrade-check",
                "--config",
                config,
                "--target-manifest",
                "/nonexistent/release.toml",
                "--output",
                "json",
            ],
            4,
        ),
    ];
    for (args, code) in cases {
        let output = run_with_closed_stdout(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_log_level_is_a_usage_error_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    for command in ["serve", "config"] {
        let output = binary()
            .args([command, "--log-level", "verbose", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--log-level"), "{stderr}");
    }
}

#[test]
fn global_flags_a_command_would_ignore_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let config = config.to_str().unwrap();
    let refused: [&[&str]; 7] = [
        &["version", "--config", config],
        &["completion", "bash", "--log-level", "debug"],
        &[
            "fleet-check",
            "--metrics-url",
            "http://h:1",
            "--config",
            config,
        ],
        &["config", "schema", "--metrics-address", "127.0.0.1:1"],
        &["doctor", "--config", config, "--health-address", ""],
        &["rotation-plan", "--config", config, "--log-level", "warn"],
        &["probe", "--log-level", "warn"],
    ];
    for args in refused {
        let output = binary().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no effect on"), "{args:?}: {stderr}");
    }
    // The flags still work where they act.
    let output = binary()
        .args(["config", "--config", config, "--log-level", "warn"])
        .args(["--metrics-address", "127.0.0.1:9464", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let effective: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(effective["logging"]["level"], "warn");
    assert_eq!(effective["server"]["metricsAddress"], "127.0.0.1:9464");
}

#[test]
fn config_prints_every_field_of_the_effective_configuration_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let secret = "s3cr3t-secret-id-value";
    std::fs::write(dir.path().join("secret-id"), secret).unwrap();
    let output = binary()
        .args(["config", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.contains(secret));
    let effective: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Every key of the file format (from the JSON Schema) is present, with defaults filled.
    let schema = binary().args(["config", "schema"]).output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    let mut missing = Vec::new();
    for (section, body) in schema["properties"].as_object().unwrap() {
        let Some(properties) = body["properties"].as_object() else {
            assert!(effective.get(section).is_some(), "{section}");
            continue;
        };
        for key in properties.keys() {
            let absent_method = section == "auth" && ["jwt", "token"].contains(&key.as_str());
            if !absent_method && effective[section].get(key).is_none() {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}\n{text}");
    assert_eq!(effective["openbao"]["timeout"], "4s");
    assert_eq!(
        effective["server"]["socketPath"],
        "/run/test-kms/probe.sock"
    );
    assert_eq!(
        effective["auth"]["approle"]["secretIdFile"],
        "/var/lib/openbao-kms/secret-id"
    );
    assert!(
        effective["identityFingerprint"]
            .as_str()
            .unwrap()
            .starts_with("cfg1.")
    );
    // The text form is YAML with the same content.
    let output = binary()
        .arg("config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let yaml: serde_json::Value = serde_norway::from_slice(&output.stdout).unwrap();
    assert_eq!(yaml, effective);
}

#[test]
fn probe_with_config_probes_the_configured_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let output = binary()
        .args(["probe", "--timeout", "2s", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let path = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["id"] == "socket.path")
        .unwrap();
    assert!(
        path["message"]
            .as_str()
            .unwrap()
            .contains("/run/test-kms/probe.sock"),
        "{path}"
    );
    assert_eq!(report["verdict"], "fail");
    // --socket still wins.
    let other = dir.path().join("other.sock");
    let output = binary()
        .args(["probe", "--timeout", "2s", "--output", "json", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&other)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("other.sock"));
}

/// Bash completion, sourced into a real bash and driven as readline would.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script}; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
         COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=(); \
         spec=$(complete -p bao-kms-provider); fn=${{spec#*-F }}; fn=${{fn%% *}}; \
         \"$fn\" bao-kms-provider \"${{COMP_WORDS[COMP_CWORD]}}\" \
         \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        words = words
            .iter()
            .map(|word| format!("'{word}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash must be installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_of_the_hyphenated_binary_completes_subcommand_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bao-kms-provider.bash");
    let output = binary().args(["completion", "bash"]).output().unwrap();
    std::fs::write(&script, &output.stdout).unwrap();

    let top = bash_complete(&script, &["bao-kms-provider", "fleet"]);
    assert_eq!(top, vec!["fleet-check".to_owned()]);
    let doctor = bash_complete(&script, &["bao-kms-provider", "doctor", "--e"]);
    assert_eq!(doctor, vec!["--encryption-config".to_owned()]);
    let fleet = bash_complete(&script, &["bao-kms-provider", "fleet-check", "--metrics-u"]);
    assert_eq!(fleet, vec!["--metrics-url".to_owned()]);
    let retire = bash_complete(&script, &["bao-kms-provider", "retire-versions", "--"]);
    assert!(
        retire.contains(&"--before-version".to_owned()),
        "{retire:?}"
    );
    let output_values = bash_complete(&script, &["bao-kms-provider", "doctor", "--output", ""]);
    assert_eq!(output_values, vec!["text".to_owned(), "json".to_owned()]);
}
