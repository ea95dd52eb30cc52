//! `policy openbao` and `config schema`: the documents printed from the configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use support::bao::BaoServer;
use support::repo_root;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"));
    command
        .env_remove("BAO_KMS_PROVIDER_CONFIG")
        .env_remove("BAO_KMS_PROVIDER_CONFIG_PATH");
    command
}

fn run(args: &[&str], config: Option<&Path>) -> Output {
    let mut command = binary();
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn config_with_auth(dir: &Path, mount: &str, key: &str, auth: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    let yaml = format!(
        "configVersion: v1alpha1
openbao:
  address: https://127.0.0.1:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: localhost
  instanceId: bao-prod-a
auth:
{auth}
transit:
  mountPath: {mount}
  keyName: {key}
  keyIdScope:
    providerName: openbao-kms-workload-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
    keyLineageId: 01HXEXAMPLEKEYLINEAGEID
"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

const TOKEN_AUTH: &str = "  method: token
  token:
    tokenFile: /var/lib/openbao-kms/token";
const JWT_AUTH: &str = "  method: jwt
  jwt:
    mountPath: auth/k8s-workload-a-jwt
    role: kms
    jwtFile: /var/lib/openbao-kms/identity.jwt";
const APPROLE_AUTH: &str = "  method: approle
  approle:
    roleIdFile: /etc/openbao-kms/credentials/role-id
    secretIdFile: /etc/openbao-kms/credentials/secret-id";

const EXPECTED_TOKEN_POLICY: &str = r#"# Least-privilege OpenBao policy for bao-kms-provider.
# It never grants create, rotate, key or mount configuration, trim, restore, rewrap,
# delete, export, backup or sudo.

# Read Transit key metadata (versions, minimums, key type) for Status and rotation.
path "kv-transit/prod/keys/kms-key" {
  capabilities = ["read"]
}

# Encrypt with the existing key. update only: create would let encrypt create a missing key (upsert).
path "kv-transit/prod/encrypt/kms-key" {
  capabilities = ["update"]
}

# Decrypt ciphertext written with this key.
path "kv-transit/prod/decrypt/kms-key" {
  capabilities = ["update"]
}

# Read the mount's key configuration, so doctor can confirm disable_upsert=true.
path "kv-transit/prod/config/keys" {
  capabilities = ["read"]
}

# Let doctor check this token's own capabilities.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Renew this token before it expires (leave out with --include-token-renewal=false).
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Look up the token read from auth.token.tokenFile (its TTL and renewability).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
"#;

#[test]
fn the_policy_for_token_auth_has_exactly_the_documented_stanzas_with_the_mount_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    // Surrounding slashes of the mount path are dropped, as everywhere else.
    let config = config_with_auth(dir.path(), "/kv-transit/prod/", "kms-key", TOKEN_AUTH);
    let output = run(&["policy", "openbao"], Some(&config));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(stdout(&output), EXPECTED_TOKEN_POLICY);
}

#[test]
fn token_renewal_is_included_by_default_and_left_out_with_false() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_auth(dir.path(), "transit", "kms-key", JWT_AUTH);
    let with = stdout(&run(&["policy", "openbao"], Some(&config)));
    let explicit = stdout(&run(
        &["policy", "openbao", "--include-token-renewal=true"],
        Some(&config),
    ));
    let without = run(
        &["policy", "openbao", "--include-token-renewal=false"],
        Some(&config),
    );
    assert_eq!(without.status.code(), Some(0));
    let without = stdout(&without);
    assert_eq!(with, explicit);
    assert!(with.contains("path \"auth/token/renew-self\""), "{with}");
    assert!(!without.contains("renew-self"), "{without}");
    // JWT auth never looks its token up.
    assert!(!with.contains("lookup-self"), "{with}");
    assert_eq!(with.matches("path \"").count(), 6);
    assert_eq!(without.matches("path \"").count(), 5);
}

#[test]
fn no_auth_method_is_ever_granted_create_or_any_key_management_capability() {
    let dir = tempfile::tempdir().unwrap();
    for auth in [TOKEN_AUTH, JWT_AUTH, APPROLE_AUTH] {
        let config = config_with_auth(dir.path(), "transit", "kms-key", auth);
        let policy = stdout(&run(&["policy", "openbao"], Some(&config)));
        let granted: Vec<&str> = policy
            .lines()
            .filter(|line| line.trim_start().starts_with("capabilities"))
            .collect();
        assert!(!granted.is_empty());
        for line in granted {
            assert!(
                line.trim() == r#"capabilities = ["read"]"#
                    || line.trim() == r#"capabilities = ["update"]"#,
                "{line}"
            );
        }
        let paths: Vec<&str> = policy
            .lines()
            .filter(|line| line.starts_with("path "))
            .collect();
        for forbidden in [
            "rotate",
            "export",
            "backup",
            "restore",
            "rewrap",
            "trim",
            "/config\"",
            "*",
            "+",
        ] {
            assert!(
                paths.iter().all(|path| !path.contains(forbidden)),
                "{forbidden} in {paths:?}"
            );
        }
    }
}

#[test]
fn without_a_configuration_the_policy_command_exits_with_code_3() {
    let output = run(&["policy", "openbao"], None);
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("config invalid;"), "{stderr}");
}

#[test]
fn a_mount_path_a_policy_would_read_as_a_wildcard_is_refused_with_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_auth(dir.path(), "transit+x", "kms-key", TOKEN_AUTH);
    let output = run(&["policy", "openbao"], Some(&config));
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("transit.mountPath"), "{stderr}");
}

#[test]
fn a_real_openbao_accepts_the_policy_and_it_grants_exactly_the_provider_paths() {
    let server = BaoServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let key = server.unique("policy-key");
    let config = config_with_auth(dir.path(), "transit", &key, TOKEN_AUTH);
    let policy = stdout(&run(&["policy", "openbao"], Some(&config)));
    let name = server.unique("bao-kms-policy");
    server.root_ok(
        "POST",
        &format!("sys/policies/acl/{name}"),
        Some(json!({ "policy": policy })),
    );
    let token = server.root_ok(
        "POST",
        "auth/token/create",
        Some(json!({"policies": [name], "no_default_policy": true, "ttl": "10m"})),
    )["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = [
        (format!("transit/keys/{key}"), vec!["read"]),
        (format!("transit/encrypt/{key}"), vec!["update"]),
        (format!("transit/decrypt/{key}"), vec!["update"]),
        ("transit/config/keys".to_owned(), vec!["read"]),
        ("sys/capabilities-self".to_owned(), vec!["update"]),
        ("auth/token/renew-self".to_owned(), vec!["update"]),
        ("auth/token/lookup-self".to_owned(), vec!["read"]),
        (format!("transit/keys/{key}/rotate"), vec!["deny"]),
        (format!("transit/keys/{key}/config"), vec!["deny"]),
        (format!("transit/keys/{key}/trim"), vec!["deny"]),
        (format!("transit/export/encryption-key/{key}"), vec!["deny"]),
        (format!("transit/backup/{key}"), vec!["deny"]),
        (format!("transit/rewrap/{key}"), vec!["deny"]),
        ("transit/restore".to_owned(), vec!["deny"]),
        ("sys/mounts/transit".to_owned(), vec!["deny"]),
    ];
    let paths: Vec<&str> = expected.iter().map(|(path, _)| path.as_str()).collect();
    let answer = server.root_ok(
        "POST",
        "sys/capabilities",
        Some(json!({"token": token, "paths": paths})),
    );
    for (path, capabilities) in &expected {
        assert_eq!(
            answer[path.as_str()],
            json!(capabilities),
            "{path}: {answer}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// config schema

fn schema() -> Value {
    let output = run(&["config", "schema"], None);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("config schema prints JSON")
}

/// The schema of a dotted key, following `properties`.
fn key_schema<'s>(schema: &'s Value, key: &str) -> Option<&'s Value> {
    key.split('.')
        .try_fold(schema, |node, part| node.get("properties")?.get(part))
}

/// Every object schema (one with `properties`) and its location.
fn objects<'s>(schema: &'s Value, at: String, out: &mut Vec<(String, &'s Value)>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        out.push((at.clone(), schema));
        for (name, child) in properties {
            objects(child, format!("{at}.{name}"), out);
        }
    }
}

#[test]
fn config_schema_is_draft_2020_12_json_that_refuses_unknown_keys_at_every_level() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(
        schema["$id"],
        "https://bao-kms-provider.invalid/config.schema.json"
    );
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["configVersion"]["const"], "v1alpha1");
    assert!(
        schema["required"]
            .as_array()
            .unwrap()
            .contains(&json!("configVersion"))
    );
    let mut all = Vec::new();
    objects(&schema, "$".to_owned(), &mut all);
    assert!(all.len() >= 14, "{}", all.len());
    for (at, object) in all {
        assert_eq!(object["additionalProperties"], false, "{at}");
    }
}

#[test]
fn our_additions_and_the_typed_keys_are_in_the_schema_with_defaults() {
    let schema = schema();
    for key in [
        "server.socketDirectories",
        "auth.token.tokenFile",
        "auth.approle.mountPath",
        "auth.approle.roleIdFile",
        "auth.approle.secretIdFile",
        "performance.decryptBatchMaxItems",
    ] {
        let entry = key_schema(&schema, key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(entry["description"].is_string(), "{key}");
    }
    let batch = key_schema(&schema, "performance.decryptBatchMaxItems").unwrap();
    assert_eq!(batch["minimum"], 1);
    assert_eq!(batch["maximum"], 128);
    assert_eq!(batch["default"], 64);
    let timeout = key_schema(&schema, "openbao.timeout").unwrap();
    assert_eq!(timeout["default"], "2s");
    assert!(timeout["pattern"].as_str().unwrap().contains("ms"));
    assert_eq!(
        key_schema(&schema, "transit.keyName").unwrap()["pattern"],
        "^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$"
    );
    assert_eq!(
        key_schema(&schema, "auth.method").unwrap()["enum"],
        json!(["jwt", "token", "approle", null])
    );
    assert_eq!(
        key_schema(&schema, "server.socketMode").unwrap()["default"],
        "0660"
    );
}

/// Every key named in a table row of `docs/reference/configuration.md`.
fn documented_keys(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|key| key.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
        .map(str::to_owned)
        .collect()
}

/// Every dotted key of a YAML mapping.
fn yaml_keys(value: &serde_norway::Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(map) = value.as_mapping() {
        for (key, child) in map {
            let key = key.as_str().unwrap();
            let dotted = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            };
            yaml_keys(child, &dotted, out);
            out.push(dotted);
        }
    }
}

#[test]
fn every_key_of_the_configuration_reference_and_its_examples_appears_in_the_schema() {
    let schema = schema();
    let markdown =
        std::fs::read_to_string(repo_root().join("docs/reference/configuration.md")).unwrap();
    let keys = documented_keys(&markdown);
    assert!(keys.len() >= 50, "{keys:?}");
    let mut examples = Vec::new();
    for block in markdown.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().unwrap();
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        yaml_keys(&value, "", &mut examples);
    }
    let deploy = repo_root().join("deploy/config");
    if let Ok(entries) = std::fs::read_dir(&deploy) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                let value: serde_norway::Value =
                    serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                yaml_keys(&value, "", &mut examples);
            }
        }
    }
    assert!(examples.len() >= 40, "{examples:?}");
    for key in keys.iter().chain(&examples) {
        assert!(
            key_schema(&schema, key).is_some(),
            "{key} is documented but not in the schema"
        );
    }
}
