//! `upgrade-check`: the compatibility manifests compared against the local state, the
//! configuration and live Transit metadata.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bao_kms_core::compat::{Manifest, RELEASE_MANIFEST_TOML};
use bao_kms_core::registry::operator::retire_versions;
use bao_kms_core::{Checkpoint, KeyVersion, SnapshotState, StateFile, StateRecord};
use bao_kms_runtime_tokio::config::{self, Config, Overrides};
use bao_kms_runtime_tokio::files::{RegistryPaths, write_registry};
use serde_json::{Value, json};

use support::bao::BaoServer;

const TOKEN_AUTH: &str = "auth:
  method: token
  token:
    tokenFile: /nonexistent/bao-kms-test/token
";
const APPROLE_AUTH: &str = "auth:
  method: approle
  approle:
    roleIdFile: /nonexistent/bao-kms-test/role-id
    secretIdFile: /nonexistent/bao-kms-test/secret-id
";

/// A node: a configuration file, a private state directory, and where manifests go.
struct Node {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
}

impl Node {
    /// OpenBao is unreachable for this node (no CA file): live metadata is a warning.
    fn new(auth: &str) -> Self {
        Self::with_openbao(
            "https://127.0.0.1:1",
            Path::new("/nonexistent/bao-kms-test/ca.pem"),
            auth,
            "transit",
            "kms-key",
        )
    }

    fn with_openbao(address: &str, ca: &Path, auth: &str, mount: &str, key: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let yaml = format!(
            "configVersion: v1alpha1
openbao:
  address: {address}
  caCertFile: {ca}
  tlsServerName: localhost
  instanceId: bao-test
{auth}transit:
  mountPath: {mount}
  keyName: {key}
  keyIdScope:
    providerName: openbao-kms-test
    clusterId: test
    transitMountId: transit-test
    keyLineageId: 3f6c2a9e0b7d41c58e2f9a1b6d4c7e20
state:
  path: {state}
",
            ca = ca.display(),
            state = state_dir.join("key-registry.json").display(),
        );
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, &yaml).unwrap();
        let config = config::parse_str(&yaml, &Overrides::default(), &|_| None).unwrap();
        Self {
            dir,
            config_path,
            config,
        }
    }

    fn paths(&self) -> RegistryPaths {
        RegistryPaths::new(&self.config.state_path).unwrap()
    }

    /// A state with the given records (version, state), generation 1.
    fn state(&self, records: &[(u64, SnapshotState)]) -> StateFile {
        let scope = self.config.identity().key_scope().clone();
        let records: Vec<StateRecord> = records
            .iter()
            .map(|&(version, state)| {
                let created = 1_700_000_000 + i64::try_from(version).unwrap() * 86_400;
                StateRecord::new(
                    scope.clone(),
                    KeyVersion::new(version).unwrap(),
                    created,
                    state,
                )
                .unwrap()
            })
            .collect();
        let active = records
            .iter()
            .find(|record| record.state() == SnapshotState::Active)
            .unwrap()
            .key_id()
            .clone();
        StateFile::build(self.config.identity_fingerprint(), 1, None, active, records).unwrap()
    }

    fn write_state(&self, state: &StateFile) {
        write_registry(
            &self.paths(),
            &state.encode(),
            &Checkpoint::for_state(state).encode(),
        )
        .unwrap();
    }

    /// Writes a manifest file and returns its path.
    fn manifest_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn check(&self, target: &[&str], json: bool) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"));
        command
            .arg("upgrade-check")
            .args(target)
            .arg("--config")
            .arg(&self.config_path);
        if json {
            command.args(["--output", "json"]);
        }
        command.output().unwrap()
    }

    fn check_manifest(&self, manifest: &Path, json: bool) -> Output {
        self.check(&["--target-manifest", manifest.to_str().unwrap()], json)
    }
}

/// The current manifest as JSON, changed by `edit`.
fn manifest_json(edit: impl FnOnce(&mut Manifest)) -> String {
    let mut manifest = Manifest::this_release();
    edit(&mut manifest);
    serde_json::to_string_pretty(&manifest).unwrap()
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)))
}

fn check<'r>(report: &'r Value, id: &str) -> &'r Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
}

fn message(report: &Value, id: &str) -> String {
    check(report, id)["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn release() -> String {
    Manifest::this_release().release
}

#[test]
fn moving_to_the_same_release_is_safe_with_exit_code_0() {
    let node = Node::new(TOKEN_AUTH);
    node.write_state(&node.state(&[(1, SnapshotState::Active)]));
    let manifest = node.manifest_file("release.toml", RELEASE_MANIFEST_TOML);
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = report(&output);
    assert_eq!(report["name"], "upgrade-check");
    assert_eq!(
        message(&report, "upgrade.direction"),
        format!("same release {}", release())
    );
    for id in [
        "upgrade.state",
        "upgrade.formats",
        "upgrade.config",
        "upgrade.reverse",
    ] {
        assert_eq!(check(&report, id)["status"], "pass", "{id}: {report}");
    }
    assert!(message(&report, "upgrade.state").contains("active Transit version 1"));
    // OpenBao cannot be reached: the live check warns, and so does the rotation check,
    // which could only consult the local registry.
    assert_eq!(check(&report, "upgrade.transit")["status"], "warn");
    assert_eq!(check(&report, "upgrade.rotation")["status"], "warn");
}

#[test]
fn a_rollback_to_a_release_without_removed_records_is_unsafe_once_versions_were_retired() {
    let node = Node::new(TOKEN_AUTH);
    let state = node.state(&[(1, SnapshotState::Retired), (2, SnapshotState::Active)]);
    let retired = retire_versions(&state, KeyVersion::new(2).unwrap())
        .unwrap()
        .expect("version 1 is removed");
    node.write_state(&retired);
    let old = RELEASE_MANIFEST_TOML
        .replace(
            &format!("release = \"{}\"", release()),
            "release = \"0.0.9\"",
        )
        .replace(
            "record_states = [\"active\", \"pending\", \"retired\", \"rejected\", \"removed\"]",
            "record_states = [\"active\", \"pending\", \"retired\", \"rejected\"]",
        );
    assert_ne!(old, RELEASE_MANIFEST_TOML);
    let manifest = node.manifest_file("old.toml", &old);

    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let json = report(&output);
    assert_eq!(
        message(&json, "upgrade.direction"),
        format!("rollback from {} to 0.0.9", release())
    );
    assert_eq!(check(&json, "upgrade.formats")["status"], "fail");
    assert!(
        message(&json, "upgrade.formats").contains("record state \"removed\""),
        "{json}"
    );
    assert!(message(&json, "upgrade.state").contains("removed"));

    let text = String::from_utf8(node.check_manifest(&manifest, false).stdout).unwrap();
    assert!(text.starts_with("upgrade-check\n"), "{text}");
    assert!(
        text.contains("[fail] upgrade.formats: the target reads every format in use - the target release cannot read record state \"removed\" which is in use"),
        "{text}"
    );
}

#[test]
fn a_pending_rotation_in_the_state_makes_the_move_unsafe() {
    let node = Node::new(TOKEN_AUTH);
    node.write_state(&node.state(&[(1, SnapshotState::Active), (2, SnapshotState::Pending)]));
    let manifest = node.manifest_file("release.toml", RELEASE_MANIFEST_TOML);
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let json = report(&output);
    assert_eq!(check(&json, "upgrade.rotation")["status"], "fail");
    assert!(
        message(&json, "upgrade.rotation")
            .contains("the local registry has a pending record for Transit version 2"),
        "{json}"
    );
    assert_eq!(check(&json, "upgrade.formats")["status"], "pass");
}

#[test]
fn a_configuration_using_approle_is_unsafe_for_a_target_without_config_additions() {
    let node = Node::new(APPROLE_AUTH);
    node.write_state(&node.state(&[(1, SnapshotState::Active)]));
    let preview = manifest_json(|manifest| {
        manifest.release = "0.1.0-preview.3".to_owned();
        manifest.reads.config_additions.clear();
    });
    let manifest = node.manifest_file("preview.json", &preview);
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let json = report(&output);
    assert_eq!(check(&json, "upgrade.config")["status"], "fail");
    assert!(
        message(&json, "upgrade.config")
            .contains("the target release rejects configuration key auth.approle"),
        "{json}"
    );
    assert_eq!(
        message(&json, "upgrade.direction"),
        format!("rollback from {} to 0.1.0-preview.3", release())
    );
    // The same configuration is fine for a target that accepts the addition.
    let current = node.manifest_file("current.json", &manifest_json(|_| {}));
    let output = node.check_manifest(&current, true);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(message(&report(&output), "upgrade.config").contains("auth.approle"));
}

#[test]
fn the_real_binary_as_target_is_a_safe_move() {
    let node = Node::new(TOKEN_AUTH);
    node.write_state(&node.state(&[(1, SnapshotState::Active)]));
    let output = node.check(
        &["--target-binary", env!("CARGO_BIN_EXE_bao-kms-provider")],
        true,
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json = report(&output);
    assert!(message(&json, "upgrade.target").contains("from binary"));
    assert_eq!(
        message(&json, "upgrade.direction"),
        format!("same release {}", release())
    );
}

#[test]
fn a_target_binary_without_a_compatibility_manifest_fails_the_check() {
    let node = Node::new(TOKEN_AUTH);
    for program in ["/bin/true", "/bin/false"] {
        let output = node.check(&["--target-binary", program], true);
        assert_eq!(output.status.code(), Some(4), "{program}: {output:?}");
        let json = report(&output);
        assert_eq!(check(&json, "upgrade.target")["status"], "fail");
        assert!(
            message(&json, "upgrade.target").contains("--target-manifest"),
            "{json}"
        );
        assert_eq!(check(&json, "upgrade.formats")["status"], "skip");
    }
}

#[test]
fn a_target_that_writes_a_format_this_release_cannot_read_warns_about_the_way_back() {
    let node = Node::new(TOKEN_AUTH);
    node.write_state(&node.state(&[(1, SnapshotState::Active)]));
    let next = manifest_json(|manifest| {
        manifest.release = "0.2.0".to_owned();
        manifest
            .reads
            .state_schemas
            .insert("keyregistry.openbao-kms/v1alpha3".to_owned());
        manifest.writes.state_schema = "keyregistry.openbao-kms/v1alpha3".to_owned();
    });
    let manifest = node.manifest_file("next.json", &next);
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json = report(&output);
    assert_eq!(
        message(&json, "upgrade.direction"),
        format!("upgrade from {} to 0.2.0", release())
    );
    let reverse = check(&json, "upgrade.reverse");
    assert_eq!(reverse["status"], "warn");
    assert!(
        message(&json, "upgrade.reverse")
            .contains("state schema \"keyregistry.openbao-kms/v1alpha3\""),
        "{json}"
    );
}

#[test]
fn a_node_without_state_may_move_and_says_it_has_issued_nothing() {
    let node = Node::new(TOKEN_AUTH);
    let manifest = node.manifest_file("release.toml", RELEASE_MANIFEST_TOML);
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json = report(&output);
    assert!(message(&json, "upgrade.state").contains("no state yet"));
    assert_eq!(check(&json, "upgrade.rotation")["status"], "pass");
    assert_eq!(check(&json, "upgrade.transit")["status"], "skip");
}

#[test]
fn a_corrupt_state_makes_every_move_unsafe() {
    let node = Node::new(TOKEN_AUTH);
    let state = node.state(&[(1, SnapshotState::Active)]);
    let tampered = state
        .encode()
        .replace("\"generation\": 1", "\"generation\": 2");
    write_registry(
        &node.paths(),
        &tampered,
        &Checkpoint::for_state(&state).encode(),
    )
    .unwrap();
    let manifest = node.manifest_file("release.toml", RELEASE_MANIFEST_TOML);
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    assert_eq!(check(&report(&output), "upgrade.state")["status"], "fail");
}

#[test]
fn usage_and_configuration_errors_have_their_exit_codes() {
    let node = Node::new(TOKEN_AUTH);
    let manifest = node.manifest_file("release.toml", RELEASE_MANIFEST_TOML);
    let no_config = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"))
        .args(["upgrade-check", "--target-manifest"])
        .arg(&manifest)
        .env_remove("BAO_KMS_PROVIDER_CONFIG")
        .env_remove("BAO_KMS_PROVIDER_CONFIG_PATH")
        .output()
        .unwrap();
    assert_eq!(no_config.status.code(), Some(3));
    assert_eq!(node.check(&[], false).status.code(), Some(2));
    let both = node.check(
        &[
            "--target-manifest",
            manifest.to_str().unwrap(),
            "--target-binary",
            "/bin/true",
        ],
        false,
    );
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn a_transit_version_newer_than_the_local_active_one_blocks_the_move_as_a_pending_rotation() {
    let server = BaoServer::shared();
    let key = server.unique("upgrade-key");
    server.create_key(&key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let token_file = dir.path().join("token");
    let auth = format!(
        "auth:\n  method: token\n  token:\n    tokenFile: {}\n",
        token_file.display()
    );
    let node = Node::with_openbao(&server.address(), &ca, &auth, "transit", &key);

    // The provider's own least-privilege policy, from `policy openbao`.
    let policy = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"))
        .args(["policy", "openbao", "--config"])
        .arg(&node.config_path)
        .output()
        .unwrap();
    assert_eq!(policy.status.code(), Some(0));
    let policy_name = server.unique("upgrade-policy");
    server.root_ok(
        "POST",
        &format!("sys/policies/acl/{policy_name}"),
        Some(json!({"policy": String::from_utf8(policy.stdout).unwrap()})),
    );
    let token = server.root_ok(
        "POST",
        "auth/token/create",
        Some(json!({"policies": [policy_name], "no_default_policy": true, "ttl": "10m"})),
    )["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    node.write_state(&node.state(&[(1, SnapshotState::Active)]));
    let manifest = node.manifest_file("release.toml", RELEASE_MANIFEST_TOML);

    // Before the rotation: Transit agrees with the registry.
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json = report(&output);
    assert_eq!(
        message(&json, "upgrade.transit"),
        "latest_version=1, local active version 1"
    );
    assert_eq!(check(&json, "upgrade.rotation")["status"], "pass");

    server.root_ok("POST", &format!("transit/keys/{key}/rotate"), None);
    let output = node.check_manifest(&manifest, true);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert!(!stdout.contains(&token) && !stderr.contains(&token));
    let json = report(&output);
    assert_eq!(check(&json, "upgrade.rotation")["status"], "fail");
    assert!(
        message(&json, "upgrade.rotation")
            .contains("Transit latest_version 2 is above the local active version 1"),
        "{json}"
    );
}
