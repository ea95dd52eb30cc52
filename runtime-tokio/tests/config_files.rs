//! Reading the config file and the filesystem checks of `check_files`.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use bao_kms_runtime_tokio::config::{Config, Overrides, check_files, load};
use tempfile::TempDir;

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGVGb3JUZXN0czAKBggqhkjOPQQDAjAA
-----END CERTIFICATE-----
";

/// A host layout in a temporary directory that passes every check.
struct Layout {
    dir: TempDir,
}

impl Layout {
    fn new() -> Self {
        let layout = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir(layout.path("run")).unwrap();
        fs::create_dir(layout.path("state")).unwrap();
        set_mode(&layout.path("run"), 0o750);
        set_mode(&layout.path("state"), 0o750);
        layout.write("ca.crt", CA_PEM, 0o644);
        layout.write("identity.jwt", "eyJhbGciOi.eyJzdWIi.c2ln\n", 0o640);
        layout.write("token", "s.token\n", 0o600);
        layout.write("role-id", "role\n", 0o640);
        layout.write("secret-id", "secret\n", 0o640);
        layout.write_config(&layout.yaml("jwt"), 0o640);
        layout
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str, mode: u32) {
        let path = self.path(name);
        fs::write(&path, contents).unwrap();
        set_mode(&path, mode);
    }

    fn write_config(&self, yaml: &str, mode: u32) {
        self.write("config.yaml", yaml, mode);
    }

    fn yaml(&self, method: &str) -> String {
        let root = self.dir.path().display();
        let auth = match method {
            "token" => format!("  method: token\n  token:\n    tokenFile: {root}/token\n"),
            "approle" => format!(
                "  method: approle\n  approle:\n    roleIdFile: {root}/role-id\n    \
                 secretIdFile: {root}/secret-id\n"
            ),
            _ => format!(
                "  jwt:\n    mountPath: auth/jwt\n    role: kms\n    jwtFile: {root}/identity.jwt\n"
            ),
        };
        format!(
            "configVersion: v1alpha1\n\
             server:\n  socketPath: {root}/run/kms.sock\n  socketDirectories: [{root}/run]\n\
             openbao:\n  address: https://openbao.example:8200\n  caCertFile: {root}/ca.crt\n  \
             tlsServerName: openbao.example\n  instanceId: bao-a\n\
             auth:\n{auth}\
             transit:\n  mountPath: transit\n  keyName: kms-key\n  keyIdScope:\n    \
             providerName: p\n    clusterId: c\n    transitMountId: m\n    keyLineageId: l\n\
             state:\n  path: {root}/state/key-registry.json\n"
        )
    }

    fn load(&self) -> Config {
        let overrides = Overrides {
            config_path: Some(self.path("config.yaml")),
            ..Overrides::default()
        };
        load(&overrides, &|_| None).unwrap()
    }

    fn problems(&self) -> Vec<String> {
        check_files(&self.load())
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_one_problem(problems: &[String], field: &str, fragment: &str) {
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("{field}: ")),
        "{problems:?}"
    );
    assert!(problems[0].contains(fragment), "{problems:?}");
}

#[test]
fn a_private_host_layout_has_no_problems_for_every_auth_method() {
    let layout = Layout::new();
    for method in ["jwt", "token", "approle"] {
        layout.write_config(&layout.yaml(method), 0o600);
        assert_eq!(layout.problems(), Vec::<String>::new(), "{method}");
    }
}

#[test]
fn load_reads_the_path_from_the_environment_and_remembers_it() {
    let layout = Layout::new();
    let path = layout.path("config.yaml");
    let path_text = path.display().to_string();

    let config = load(&Overrides::default(), &|name| {
        (name == "BAO_KMS_PROVIDER_CONFIG_PATH").then(|| path_text.clone())
    })
    .unwrap();

    assert_eq!(config.config_path(), Some(path.as_path()));
}

#[test]
fn the_config_flag_wins_over_the_environment() {
    let layout = Layout::new();
    let overrides = Overrides {
        config_path: Some(layout.path("config.yaml")),
        ..Overrides::default()
    };

    let config = load(&overrides, &|name| {
        (name == "BAO_KMS_PROVIDER_CONFIG").then(|| "/nonexistent/config.yaml".to_owned())
    })
    .unwrap();

    assert_eq!(
        config.config_path(),
        Some(layout.path("config.yaml").as_path())
    );
}

#[test]
fn an_unreadable_config_file_is_a_config_error() {
    let overrides = Overrides {
        config_path: Some(PathBuf::from("/nonexistent/openbao-kms/config.yaml")),
        ..Overrides::default()
    };

    let error = load(&overrides, &|_| None).unwrap_err();

    assert!(
        error.to_string().starts_with(
            "config invalid; cannot read config file /nonexistent/openbao-kms/config.yaml: "
        ),
        "{error}"
    );
}

#[test]
fn a_config_file_readable_by_others_is_refused() {
    let layout = Layout::new();
    set_mode(&layout.path("config.yaml"), 0o644);

    assert_one_problem(&layout.problems(), "configFile", "has mode 0644");
}

#[test]
fn a_group_writable_credential_file_is_refused() {
    let layout = Layout::new();
    set_mode(&layout.path("identity.jwt"), 0o660);

    assert_one_problem(
        &layout.problems(),
        "auth.jwt.jwtFile",
        "it must have none of the bits 0037 (found 0020)",
    );
}

#[test]
fn a_world_readable_approle_secret_is_refused() {
    let layout = Layout::new();
    layout.write_config(&layout.yaml("approle"), 0o600);
    set_mode(&layout.path("secret-id"), 0o644);

    assert_one_problem(
        &layout.problems(),
        "auth.approle.secretIdFile",
        "found 0004",
    );
}

#[test]
fn a_symlinked_credential_file_is_refused() {
    let layout = Layout::new();
    layout.write("real-token", "s.token\n", 0o600);
    fs::remove_file(layout.path("token")).unwrap();
    symlink(layout.path("real-token"), layout.path("token")).unwrap();
    layout.write_config(&layout.yaml("token"), 0o600);

    assert_one_problem(
        &layout.problems(),
        "auth.token.tokenFile",
        "must not be a symbolic link",
    );
}

#[test]
fn a_credential_file_over_one_mebibyte_is_refused() {
    let layout = Layout::new();
    layout.write("identity.jwt", &"a".repeat(1024 * 1024 + 1), 0o600);

    assert_one_problem(
        &layout.problems(),
        "auth.jwt.jwtFile",
        "must be at most 1 MiB",
    );
}

#[test]
fn a_symlinked_ca_file_is_refused() {
    let layout = Layout::new();
    layout.write("real-ca.crt", CA_PEM, 0o644);
    fs::remove_file(layout.path("ca.crt")).unwrap();
    symlink(layout.path("real-ca.crt"), layout.path("ca.crt")).unwrap();

    assert_one_problem(
        &layout.problems(),
        "openbao.caCertFile",
        "must not be a symbolic link",
    );
}

#[test]
fn a_missing_ca_file_is_reported() {
    let layout = Layout::new();
    fs::remove_file(layout.path("ca.crt")).unwrap();

    assert_one_problem(&layout.problems(), "openbao.caCertFile", "does not exist");
}

#[test]
fn a_ca_file_without_a_pem_certificate_is_refused() {
    let layout = Layout::new();
    layout.write(
        "ca.crt",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        0o644,
    );

    assert_one_problem(
        &layout.problems(),
        "openbao.caCertFile",
        "contains no PEM CERTIFICATE block",
    );
}

#[test]
fn a_group_writable_ca_file_is_refused() {
    let layout = Layout::new();
    set_mode(&layout.path("ca.crt"), 0o664);

    assert_one_problem(
        &layout.problems(),
        "openbao.caCertFile",
        "none of the bits 0022",
    );
}

#[test]
fn a_world_writable_state_directory_is_refused() {
    let layout = Layout::new();
    set_mode(&layout.path("state"), 0o777);

    assert_one_problem(&layout.problems(), "state.path", "has mode 0777");
}

#[test]
fn a_missing_state_directory_is_reported() {
    let layout = Layout::new();
    fs::remove_dir(layout.path("state")).unwrap();

    assert_one_problem(&layout.problems(), "state.path", "does not exist");
}

#[test]
fn a_symlinked_socket_directory_is_refused() {
    let layout = Layout::new();
    fs::remove_dir(layout.path("run")).unwrap();
    fs::create_dir(layout.path("real-run")).unwrap();
    symlink(layout.path("real-run"), layout.path("run")).unwrap();

    assert_one_problem(
        &layout.problems(),
        "server.socketPath",
        "must not be a symbolic link",
    );
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_but_a_stale_socket_is_not() {
    let layout = Layout::new();
    let socket = layout.path("run/kms.sock");
    fs::write(&socket, "").unwrap();

    assert_one_problem(
        &layout.problems(),
        "server.socketPath",
        "exists and is not a socket",
    );

    fs::remove_file(&socket).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    drop(listener);
    assert_eq!(layout.problems(), Vec::<String>::new());
}

#[test]
fn every_file_problem_is_reported_together_in_schema_order() {
    let layout = Layout::new();
    set_mode(&layout.path("config.yaml"), 0o666);
    fs::remove_file(layout.path("ca.crt")).unwrap();
    set_mode(&layout.path("identity.jwt"), 0o604);
    set_mode(&layout.path("state"), 0o770);

    let fields: Vec<String> = check_files(&layout.load())
        .iter()
        .map(|problem| problem.field().to_owned())
        .collect();

    assert_eq!(
        fields,
        [
            "configFile",
            "openbao.caCertFile",
            "auth.jwt.jwtFile",
            "state.path"
        ]
    );
}
