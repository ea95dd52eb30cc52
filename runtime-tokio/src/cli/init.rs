//! `init`: every file an installation needs, generated from one values file.
//!
//! The values file is a provider configuration. `init` fills the default host paths of the
//! files it may omit (the OpenBao CA bundle, the credential files of the chosen auth method,
//! the socket group), optionally generates a new `transit.keyIdScope.keyLineageId`
//! (`--new-key`), validates the result exactly as `serve` would (environment variables are
//! ignored), and writes into `--out`:
//!
//! | file | what |
//! |---|---|
//! | `config.yaml` | the provider configuration, installed as `/etc/openbao-kms/config.yaml` |
//! | `encryption-config-readers.yaml` | phase 1 EncryptionConfiguration: `identity` first, KMS second |
//! | `encryption-config.yaml` | phase 2 EncryptionConfiguration: KMS first, `identity` second |
//! | `openbao-policy.hcl` | the policy `policy openbao` prints |
//! | `openbao-setup.sh` | `bao` commands for an OpenBao administrator to review and run |
//! | `bao-kms-provider.service` | systemd model: the hardened unit (`Type=notify`) |
//! | `bao-kms-provider.yaml` | static-pod model: the kubelet manifest, image pinned by digest |
//! | `node-setup.sh` | per-node root script: directories, files, modes, checks, start, verify |
//! | `installation.json` | fingerprint, lineage id, model, image, host paths, files, next steps |
//!
//! It never contacts OpenBao, never writes outside `--out`, never overwrites a file, and
//! writes no credential. Exit codes: 2 for bad flags (including a non-empty `--out` and
//! `--new-key` with a lineage id already set), 3 for invalid values, 1 when writing fails.

use std::fmt::Write as _;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use serde_norway::{Mapping, Value};

use super::version::{PLUGIN_VERSION, build_info};
use super::{ExitCode, InitModel, out, policy};
use crate::config::{self, AuthMethod, Config, Overrides};

/// The arguments of `init`.
#[derive(Debug)]
pub(super) struct InitArgs<'a> {
    pub(super) values: &'a Path,
    pub(super) out: &'a Path,
    pub(super) model: InitModel,
    pub(super) new_key: bool,
    pub(super) policy_name: Option<&'a str>,
    pub(super) image: Option<&'a str>,
    pub(super) socket_gid: Option<u32>,
}

/// Where the configuration is installed on every node.
const CONFIG_INSTALL_PATH: &str = "/etc/openbao-kms/config.yaml";
/// The configuration directory on every node.
const CONFIG_DIR: &str = "/etc/openbao-kms";
/// Where the systemd model expects the binary.
const BINARY_PATH: &str = "/usr/local/bin/bao-kms-provider";
/// Default `openbao.caCertFile`.
const DEFAULT_CA_FILE: &str = "/etc/openbao-kms/tls/ca.crt";
/// Default `server.socketGroup` of the systemd model.
const DEFAULT_SOCKET_GROUP: &str = "openbao-kms-socket";
/// The service user and group of the systemd model.
const SERVICE_USER: &str = "openbao-kms";
/// The uid and gid the static pod runs as (distroless `nonroot`).
const POD_UID: u32 = 65532;
/// Token TTL of the generated JWT and AppRole roles.
const ROLE_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);
/// Largest values file read.
const MAX_VALUES_BYTES: u64 = 1024 * 1024;

pub(super) fn run(args: &InitArgs<'_>) -> ExitCode {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(failure) => {
            eprintln!("init: {}", failure.message);
            return failure.code;
        }
    };
    if let Err(message) = write_files(args.out, &plan.files) {
        eprintln!("init: {message}");
        return ExitCode::Failure;
    }
    let mut report = format!(
        "init: wrote {} files to {} (model {})\n",
        plan.files.len(),
        args.out.display(),
        model_name(args.model)
    );
    for file in &plan.files {
        let _ = writeln!(report, "  {:04o} {}", file.mode, file.name);
    }
    let _ = writeln!(report, "identity fingerprint: {}", plan.fingerprint);
    if plan.new_key {
        let _ = writeln!(report, "new key lineage id: {}", plan.lineage_id);
    } else {
        let _ = writeln!(
            report,
            "key lineage id: {} (from the values file)",
            plan.lineage_id
        );
    }
    let _ = writeln!(report, "policy name: {}", plan.policy_name);
    report.push_str(
        "next: review openbao-setup.sh and run it as an OpenBao administrator, then run \
         node-setup.sh as root on every control-plane node; installation.json lists every step\n",
    );
    out::text_then(&report, ExitCode::Success)
}

/// Why `init` stopped before writing.
#[derive(Debug)]
struct Failure {
    code: ExitCode,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Usage,
            message: message.into(),
        }
    }

    fn values(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Config,
            message: message.into(),
        }
    }

    fn io(message: impl Into<String>) -> Self {
        Self {
            code: ExitCode::Failure,
            message: message.into(),
        }
    }
}

/// One generated file.
#[derive(Debug)]
struct OutFile {
    name: &'static str,
    mode: u32,
    content: String,
}

/// Everything `init` will write, decided before anything is written.
#[derive(Debug)]
struct Plan {
    files: Vec<OutFile>,
    fingerprint: String,
    lineage_id: String,
    new_key: bool,
    policy_name: String,
}

fn model_name(model: InitModel) -> &'static str {
    match model {
        InitModel::Systemd => "systemd",
        InitModel::StaticPod => "static-pod",
    }
}

fn plan(args: &InitArgs<'_>) -> Result<Plan, Failure> {
    check_flags(args)?;
    check_out_dir(args.out)?;
    let mut values = read_values(args.values)?;
    let lineage_id = if args.new_key {
        let existing = lookup(&values, &["transit", "keyIdScope", "keyLineageId"]);
        if existing.is_some_and(|value| !value.is_null()) {
            return Err(Failure::usage(
                "--new-key generates transit.keyIdScope.keyLineageId, but the values file \
                 already sets it; remove it for a new key, or drop --new-key to keep it",
            ));
        }
        let id = new_lineage_id().map_err(Failure::io)?;
        set(
            &mut values,
            &["transit", "keyIdScope", "keyLineageId"],
            Value::String(id.clone()),
        );
        Some(id)
    } else {
        None
    };
    let filled = fill_defaults(&mut values, args);
    let mut yaml = serde_norway::to_string(&values)
        .map_err(|error| Failure::values(format!("values cannot be written back: {error}")))?;
    // Environment overrides are ignored: the file must stand on its own on every node.
    let config = config::parse_str(&yaml, &Overrides::default(), &|_| None)
        .map_err(|error| Failure::values(error.to_string()))?;
    check_for_init(&config, args)?;

    let scope = config.identity().key_scope();
    let policy_name = match args.policy_name {
        Some(name) => name.to_owned(),
        None => {
            let name = format!("openbao-kms-{}", scope.cluster_id());
            check_policy_name(&name).map_err(|reason| {
                Failure::values(format!(
                    "the default policy name {name:?} (from transit.keyIdScope.clusterId) \
                     {reason}; pass --policy-name"
                ))
            })?;
            name
        }
    };
    let policy =
        policy::render(&config, true).map_err(|error| Failure::values(error.to_string()))?;
    let fingerprint = config.identity_fingerprint().as_str().to_owned();
    let header = format!(
        "# bao-kms-provider configuration, generated by `bao-kms-provider init` ({PLUGIN_VERSION}).\n\
         # Identity fingerprint: {fingerprint} (every node must show the same one).\n\
         # Install as {CONFIG_INSTALL_PATH}; node-setup.sh does it.\n"
    );
    yaml.insert_str(0, &header);

    let layout = Layout::new(&config, args.model);
    let mut files = vec![
        OutFile {
            name: "config.yaml",
            mode: 0o640,
            content: yaml,
        },
        OutFile {
            name: "encryption-config-readers.yaml",
            mode: 0o640,
            content: encryption_config(&config, Phase::Readers),
        },
        OutFile {
            name: "encryption-config.yaml",
            mode: 0o640,
            content: encryption_config(&config, Phase::Writers),
        },
        OutFile {
            name: "openbao-policy.hcl",
            mode: 0o640,
            content: policy,
        },
        OutFile {
            name: "openbao-setup.sh",
            mode: 0o750,
            content: openbao_setup(&config, &policy_name, args.new_key),
        },
    ];
    match args.model {
        InitModel::Systemd => files.push(OutFile {
            name: "bao-kms-provider.service",
            mode: 0o640,
            content: systemd_unit(&config, &layout, &fingerprint),
        }),
        InitModel::StaticPod => files.push(OutFile {
            name: "bao-kms-provider.yaml",
            mode: 0o640,
            content: static_pod(&config, &layout, args, &fingerprint),
        }),
    }
    files.push(OutFile {
        name: "node-setup.sh",
        mode: 0o750,
        content: node_setup(&config, &layout, args.model, &fingerprint),
    });
    let lineage = scope.key_lineage_id().to_owned();
    let installation = installation_json(&Installation {
        config: &config,
        layout: &layout,
        args,
        fingerprint: &fingerprint,
        lineage_id: &lineage,
        policy_name: &policy_name,
        filled: &filled,
        files: &files,
    })?;
    files.push(OutFile {
        name: "installation.json",
        mode: 0o640,
        content: installation,
    });
    Ok(Plan {
        files,
        fingerprint,
        lineage_id: lineage,
        new_key: lineage_id.is_some(),
        policy_name,
    })
}

fn check_flags(args: &InitArgs<'_>) -> Result<(), Failure> {
    match args.model {
        InitModel::Systemd => {
            if args.image.is_some() || args.socket_gid.is_some() {
                return Err(Failure::usage(
                    "--image and --socket-gid apply only to --model static-pod",
                ));
            }
        }
        InitModel::StaticPod => {
            let Some(image) = args.image else {
                return Err(Failure::usage(
                    "--model static-pod needs --image, pinned by digest (REPO@sha256:<64 hex>)",
                ));
            };
            check_image(image).map_err(Failure::usage)?;
            match args.socket_gid {
                None => {
                    return Err(Failure::usage(
                        "--model static-pod needs --socket-gid: the numeric group kube-apiserver \
                         uses to reach the socket",
                    ));
                }
                Some(u32::MAX) => {
                    return Err(Failure::usage("--socket-gid must be below 4294967295"));
                }
                Some(_) => {}
            }
        }
    }
    if let Some(name) = args.policy_name {
        check_policy_name(name)
            .map_err(|reason| Failure::usage(format!("--policy-name {reason}")))?;
    }
    Ok(())
}

/// An image reference pinned by digest: `name@sha256:<64 lowercase hex>`.
fn check_image(image: &str) -> Result<(), String> {
    let Some((name, digest)) = image.split_once('@') else {
        return Err(format!(
            "--image {image:?} must be pinned by digest (REPO@sha256:<64 hex>)"
        ));
    };
    let pinned = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b));
    if pinned && name_ok {
        Ok(())
    } else {
        Err(format!(
            "--image {image:?} must be pinned by digest (REPO@sha256:<64 hex>)"
        ))
    }
}

/// An OpenBao policy name this tool writes: ASCII letters, digits, `_`, `-` and `.`, not
/// `root` or `default`.
fn check_policy_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err("may contain only ASCII letters, digits, _, - and .");
    }
    if name == "root" || name == "default" {
        return Err("must not be root or default (reserved by OpenBao)");
    }
    Ok(())
}

/// `--out` must be absent or an empty directory (not a symbolic link).
fn check_out_dir(out: &Path) -> Result<(), Failure> {
    match std::fs::symlink_metadata(out) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Failure::io(format!("--out {}: {error}", out.display()))),
        Ok(metadata) if metadata.is_dir() => {
            let mut entries = std::fs::read_dir(out)
                .map_err(|error| Failure::io(format!("--out {}: {error}", out.display())))?;
            if entries.next().is_some() {
                Err(Failure::usage(format!(
                    "--out {} is not empty; init never overwrites, give a new or empty directory",
                    out.display()
                )))
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(Failure::usage(format!(
            "--out {} exists and is not a directory",
            out.display()
        ))),
    }
}

fn read_values(path: &Path) -> Result<Value, Failure> {
    let unreadable = |error: std::io::Error| {
        Failure::values(format!(
            "cannot read values file {}: {error}",
            path.display()
        ))
    };
    let file = File::open(path).map_err(unreadable)?;
    let mut text = String::new();
    file.take(MAX_VALUES_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_VALUES_BYTES {
        return Err(Failure::values("the values file is larger than 1 MiB"));
    }
    // The strict decode (unknown keys, wrong types) runs on the text as written, so its line
    // and column point into the operator's file; later steps re-serialise the values, which
    // would move every position. Field-level problems wait until the defaults are filled.
    if let Err(error) = config::parse_str(&text, &Overrides::default(), &|_| None)
        && error
            .problems()
            .iter()
            .any(|problem| problem.field().is_empty())
    {
        return Err(Failure::values(error.to_string()));
    }
    let value: Value = serde_norway::from_str(&text)
        .map_err(|error| Failure::values(format!("config invalid; {error}")))?;
    if value.is_mapping() {
        Ok(value)
    } else {
        Err(Failure::values(
            "config invalid; the values file must be a YAML mapping (a provider configuration)",
        ))
    }
}

fn lookup<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |node, key| node.get(*key))
}

/// Sets `path` to `new`, creating (or replacing null) intermediate mappings.
fn set(value: &mut Value, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for key in parents {
        let Some(map) = node.as_mapping_mut() else {
            return;
        };
        let slot = map
            .entry(Value::String((*key).to_owned()))
            .or_insert(Value::Null);
        if slot.is_null() {
            *slot = Value::Mapping(Mapping::new());
        }
        node = slot;
    }
    if let Some(map) = node.as_mapping_mut() {
        map.insert(Value::String((*last).to_owned()), new);
    }
}

/// Sets `path` when it is absent or null; returns whether it did.
fn fill(value: &mut Value, path: &[&str], default: &str) -> bool {
    if lookup(value, path).is_some_and(|existing| !existing.is_null()) {
        return false;
    }
    // Only fill inside mappings: a scalar in the way is left for validation to report.
    let parent_ok = path
        .split_last()
        .map(|(_, parents)| {
            parents.iter().enumerate().all(|(depth, _)| {
                lookup(value, &path[..=depth])
                    .is_none_or(|node| node.is_mapping() || node.is_null())
            })
        })
        .unwrap_or(false);
    if parent_ok {
        set(value, path, Value::String(default.to_owned()));
    }
    parent_ok
}

/// Fills the default host paths of omitted files and the socket group; returns the keys set.
fn fill_defaults(values: &mut Value, args: &InitArgs<'_>) -> Vec<String> {
    // The systemd paths are the ones of deploy/config and docs/install.md; the static pod
    // keeps every credential in one directory, mounted read-only into the pod.
    let (jwt_file, token_file, role_id_file, secret_id_file) = match args.model {
        InitModel::Systemd => (
            "/var/lib/openbao-kms/identity.jwt",
            "/etc/openbao-kms/token",
            "/etc/openbao-kms/approle/role-id",
            "/etc/openbao-kms/approle/secret-id",
        ),
        InitModel::StaticPod => (
            "/var/lib/openbao-kms/credentials/identity.jwt",
            "/var/lib/openbao-kms/credentials/token",
            "/var/lib/openbao-kms/credentials/role-id",
            "/var/lib/openbao-kms/credentials/secret-id",
        ),
    };
    let method = lookup(values, &["auth", "method"])
        .and_then(Value::as_str)
        .unwrap_or("jwt")
        .to_owned();
    let mut defaults: Vec<(Vec<&str>, String)> =
        vec![(vec!["openbao", "caCertFile"], DEFAULT_CA_FILE.to_owned())];
    match method.as_str() {
        "token" => defaults.push((vec!["auth", "token", "tokenFile"], token_file.to_owned())),
        "approle" => {
            defaults.push((
                vec!["auth", "approle", "roleIdFile"],
                role_id_file.to_owned(),
            ));
            defaults.push((
                vec!["auth", "approle", "secretIdFile"],
                secret_id_file.to_owned(),
            ));
        }
        _ => defaults.push((vec!["auth", "jwt", "jwtFile"], jwt_file.to_owned())),
    }
    let mut filled = Vec::new();
    for (path, default) in defaults {
        if fill(values, &path, &default) {
            filled.push(path.join("."));
        }
    }
    match (args.model, args.socket_gid) {
        (InitModel::StaticPod, Some(gid)) => {
            set(
                values,
                &["server", "socketGroup"],
                Value::String(gid.to_string()),
            );
            filled.push("server.socketGroup".to_owned());
        }
        (InitModel::StaticPod, None) | (InitModel::Systemd, _) => {
            if fill(values, &["server", "socketGroup"], DEFAULT_SOCKET_GROUP) {
                filled.push("server.socketGroup".to_owned());
            }
        }
    }
    filled
}

/// 16 random bytes from the kernel as 32 lowercase hex digits.
fn new_lineage_id() -> Result<String, String> {
    let mut bytes = [0_u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(|error| format!("cannot read /dev/urandom: {error}"))?;
    Ok(bytes
        .iter()
        .fold(String::with_capacity(32), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        }))
}

/// The rules `init` adds to `serve`'s, because the files it generates depend on them.
fn check_for_init(config: &Config, args: &InitArgs<'_>) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let role_ttl = ROLE_TOKEN_TTL;
    match &config.auth.method {
        AuthMethod::Jwt(jwt) => {
            if jwt.expected_issuer.is_none() {
                problems.push("auth.jwt.expectedIssuer: is required by init (the generated mount trusts this issuer)".to_owned());
            }
            if jwt.expected_audience.is_empty() {
                problems.push(
                    "auth.jwt.expectedAudience: is required by init (the generated role binds it)"
                        .to_owned(),
                );
            }
            if jwt.expected_subject.is_none() {
                problems.push(
                    "auth.jwt.expectedSubject: is required by init (the generated role binds it)"
                        .to_owned(),
                );
            }
            if config.auth.login_before_token_expiry >= role_ttl {
                problems.push(
                    "auth.loginBeforeTokenExpiry: must be shorter than 30m, the token TTL of the generated role".to_owned(),
                );
            }
        }
        AuthMethod::AppRole { .. } => {
            if config.auth.login_before_token_expiry >= role_ttl {
                problems.push(
                    "auth.loginBeforeTokenExpiry: must be shorter than 30m, the token TTL of the generated role".to_owned(),
                );
            }
        }
        AuthMethod::Token { .. } => {}
    }
    let state_dir = parent(&config.state_path);
    let socket_dir = parent(&config.server.socket_path);
    for (field, file) in config.auth.method.credential_files() {
        let dir = parent(file);
        for (other, what) in [
            (&state_dir, "state.path"),
            (&socket_dir, "server.socketPath"),
        ] {
            if dir.starts_with(other) {
                problems.push(format!(
                    "{field}: its directory {} must not be, or be inside, the directory of {what}",
                    dir.display()
                ));
            }
        }
    }
    if args.model == InitModel::Systemd {
        for (field, path) in [
            ("state.path", &state_dir),
            ("server.socketPath", &socket_dir),
        ] {
            let text = path.to_string_lossy();
            if text
                .chars()
                .any(|c| c.is_whitespace() || "%\"'\\$;".contains(c))
            {
                problems.push(format!(
                    "{field}: its directory {text:?} cannot be written into a systemd unit \
                     (whitespace, %, quotes, \\, $ or ;)"
                ));
            }
        }
    }
    if args.model == InitModel::StaticPod {
        match config.server.health_address.as_deref().map(split_host_port) {
            Some(Some((_, port))) if port != 0 => {}
            Some(_) | None => problems.push(
                "server.healthAddress: the static pod's probes need a fixed health port".to_owned(),
            ),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::values(format!(
            "config invalid; {}",
            problems.join("; ")
        )))
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// `host:port` or `[v6]:port`, already validated by the loader.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

/// The address a local client uses to reach a listener.
fn local_url(address: &str, path: &str) -> Option<String> {
    let (host, port) = split_host_port(address)?;
    if port == 0 {
        return None;
    }
    let host = match host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        other if other.contains(':') => format!("[{other}]"),
        other => other.to_owned(),
    };
    Some(format!("http://{host}:{port}{path}"))
}

/// Host paths the generated files name.
#[derive(Debug)]
struct Layout {
    socket_dir: PathBuf,
    state_dir: PathBuf,
    ca_dir: PathBuf,
    credential_dirs: Vec<PathBuf>,
    socket_group: String,
}

impl Layout {
    fn new(config: &Config, model: InitModel) -> Self {
        let mut credential_dirs: Vec<PathBuf> = config
            .auth
            .method
            .credential_files()
            .into_iter()
            .map(|(_, file)| parent(file))
            .collect();
        credential_dirs.sort();
        credential_dirs.dedup();
        let socket_group = config
            .server
            .socket_group
            .clone()
            .unwrap_or_else(|| match model {
                InitModel::Systemd => DEFAULT_SOCKET_GROUP.to_owned(),
                InitModel::StaticPod => POD_UID.to_string(),
            });
        Self {
            socket_dir: parent(&config.server.socket_path),
            state_dir: parent(&config.state_path),
            ca_dir: parent(&config.openbao.ca_cert_file),
            credential_dirs,
            socket_group,
        }
    }
}

/// A value as a YAML double-quoted scalar (JSON strings are valid YAML).
fn yaml_str(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A value as one single-quoted shell word.
fn sh(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn path_sh(path: &Path) -> String {
    sh(&path.to_string_lossy())
}

#[derive(Clone, Copy, Eq, PartialEq)]
enum Phase {
    Readers,
    Writers,
}

fn encryption_config(config: &Config, phase: Phase) -> String {
    let provider = config.identity().key_scope().provider_name();
    let endpoint = format!("unix://{}", config.server.socket_path.display());
    let kms = format!(
        "      - kms:\n          apiVersion: v2\n          name: {}\n          endpoint: {}\n          timeout: 3s\n",
        yaml_str(provider),
        yaml_str(&endpoint)
    );
    let identity = "      - identity: {}\n";
    let (comment, first, second) = match phase {
        Phase::Readers => (
            "# Phase 1 (readers): install on every kube-apiserver first. New writes stay\n\
             # unencrypted (identity); every apiserver can already read KMS-encrypted data.\n",
            identity.to_owned(),
            kms,
        ),
        Phase::Writers => (
            "# Phase 2 (writers): install once every apiserver runs phase 1. New writes are\n\
             # encrypted with the KMS provider; then rewrite existing Secrets:\n\
             #   kubectl get secrets -A -o json | kubectl replace -f -\n\
             # and only then remove the identity provider.\n",
            kms,
            identity.to_owned(),
        ),
    };
    format!(
        "# Generated by `bao-kms-provider init` ({PLUGIN_VERSION}).\n{comment}\
         apiVersion: apiserver.config.k8s.io/v1\n\
         kind: EncryptionConfiguration\n\
         resources:\n  - resources:\n      - secrets\n    providers:\n{first}{second}"
    )
}

fn openbao_setup(config: &Config, policy_name: &str, new_key: bool) -> String {
    let identity = config.identity();
    let mount = identity.transit_mount_path();
    let key = identity.transit_key_name();
    let mut out = format!(
        "#!/bin/sh\n\
         # OpenBao setup for bao-kms-provider, generated by `bao-kms-provider init` ({PLUGIN_VERSION}).\n\
         # Review every command, then run it once as an OpenBao administrator, for example:\n\
         #   BAO_CACERT=/path/to/ca.crt BAO_TOKEN=... sh openbao-setup.sh\n\
         # It prints no credential and writes nothing on this machine.\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         export BAO_ADDR=\"${{BAO_ADDR:-{}}}\"\n",
        config.openbao.address
    );
    if let Some(namespace) = &config.openbao.namespace {
        let _ = writeln!(out, "export BAO_NAMESPACE={}", sh(namespace));
    }
    let _ = write!(
        out,
        "MOUNT={}\nKEY={}\nPOLICY={}\n\n",
        sh(mount),
        sh(key),
        sh(policy_name)
    );
    out.push_str(
        "# 1. The Transit mount (kept when it exists).\n\
         if ! bao read \"sys/mounts/$MOUNT\" >/dev/null 2>&1; then\n\
         \x20 bao secrets enable -path=\"$MOUNT\" transit\n\
         fi\n\n\
         # 2. Never create a missing key on encrypt (upsert), for the whole mount.\n\
         bao write \"$MOUNT/config/keys\" disable_upsert=true\n\n\
         # 3. The key: aes256-gcm96, not exportable, no plaintext backup, not deletable.\n\
         if bao read \"$MOUNT/keys/$KEY\" >/dev/null 2>&1; then\n",
    );
    if new_key {
        out.push_str(
            "\x20 echo \"$MOUNT/keys/$KEY exists, but init --new-key generated a new key lineage id:\" >&2\n\
             \x20 echo \"choose another transit.keyName, or rerun init without --new-key and with the key's lineage id\" >&2\n\
             \x20 exit 1\n",
        );
    } else {
        out.push_str("\x20 echo \"keeping the existing key $MOUNT/keys/$KEY\"\n");
    }
    out.push_str(
        "else\n\
         \x20 bao write \"$MOUNT/keys/$KEY\" type=aes256-gcm96 exportable=false allow_plaintext_backup=false\n\
         fi\n\n\
         # 4. The least-privilege policy (the text of `bao-kms-provider policy openbao`).\n\
         bao policy write \"$POLICY\" openbao-policy.hcl\n\n",
    );
    let ttl = "30m";
    match &config.auth.method {
        AuthMethod::Jwt(jwt) => {
            let path = jwt.mount_path.trim_start_matches("auth/");
            let role = json!({
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_subject": jwt.expected_subject,
                "bound_audiences": jwt.expected_audience,
                "token_policies": [policy_name],
                "token_no_default_policy": true,
                "token_type": "service",
                "token_ttl": ttl,
                "token_max_ttl": "24h",
            });
            let issuer = jwt.expected_issuer.as_deref().unwrap_or_default();
            let _ = write!(
                out,
                "# 5. JWT auth: the mount and the role the provider logs in with.\n\
                 AUTH_PATH={}\n\
                 if ! bao read \"sys/auth/$AUTH_PATH\" >/dev/null 2>&1; then\n\
                 \x20 bao auth enable -path=\"$AUTH_PATH\" jwt\n\
                 fi\n\
                 # The mount must trust the issuer {issuer_sh} before the first login. Which\n\
                 # setting depends on the issuer; one of:\n\
                 #   bao write \"auth/$AUTH_PATH/config\" oidc_discovery_url={issuer_sh} bound_issuer={issuer_sh}\n\
                 #   bao write \"auth/$AUTH_PATH/config\" jwks_url=https://... bound_issuer={issuer_sh}\n\
                 #   bao write \"auth/$AUTH_PATH/config\" jwt_validation_pubkeys=@issuer.pem bound_issuer={issuer_sh}\n\
                 # The role binds the subject and audiences the provider also checks locally; its\n\
                 # token TTL ({ttl}) is longer than auth.loginBeforeTokenExpiry.\n\
                 bao write \"auth/$AUTH_PATH/role/\"{} - <<'BAO_KMS_ROLE'\n{}\nBAO_KMS_ROLE\n",
                sh(path),
                sh(&jwt.role),
                role,
                issuer_sh = sh(issuer),
            );
        }
        AuthMethod::AppRole {
            mount_path,
            role_id_file,
            secret_id_file,
        } => {
            let path = mount_path.trim_start_matches("auth/");
            let role = json!({
                "token_policies": [policy_name],
                "token_no_default_policy": true,
                "token_type": "service",
                "token_ttl": ttl,
                "token_max_ttl": "24h",
                "secret_id_num_uses": 0,
            });
            let _ = write!(
                out,
                "# 5. AppRole auth: the mount and a role named after the policy.\n\
                 AUTH_PATH={}\n\
                 if ! bao read \"sys/auth/$AUTH_PATH\" >/dev/null 2>&1; then\n\
                 \x20 bao auth enable -path=\"$AUTH_PATH\" approle\n\
                 fi\n\
                 bao write \"auth/$AUTH_PATH/role/$POLICY\" - <<'BAO_KMS_ROLE'\n{role}\nBAO_KMS_ROLE\n\
                 # The role_id and a secret_id are credentials. Read them where you can write them\n\
                 # straight into {} and {} on every node\n\
                 # (root:openbao-kms, mode 0640), never into this directory:\n\
                 #   bao read -field=role_id \"auth/$AUTH_PATH/role/$POLICY/role-id\"\n\
                 #   bao write -f -field=secret_id \"auth/$AUTH_PATH/role/$POLICY/secret-id\"\n",
                sh(path),
                role_id_file.display(),
                secret_id_file.display(),
            );
        }
        AuthMethod::Token { token_file } => {
            let _ = write!(
                out,
                "# 5. Token auth (development and quickstarts): a periodic orphan token with only\n\
                 # this policy. It is a credential: create it where you can write it straight into\n\
                 # {} on every node (mode 0640), never into this directory:\n\
                 #   bao token create -orphan -no-default-policy -policy=\"$POLICY\" -period=24h \\\n\
                 #     -display-name=bao-kms-provider -field=token\n",
                token_file.display()
            );
        }
    }
    out.push_str("\necho \"OpenBao is set up for bao-kms-provider (policy $POLICY)\"\n");
    out
}

/// `deploy/systemd/bao-kms-provider.service`: the one source of every generated unit, so the
/// documented unit and the generated one cannot drift apart.
const UNIT_TEMPLATE: &str = include_str!("../../../deploy/systemd/bao-kms-provider.service");

/// The keys of [`UNIT_TEMPLATE`] whose values come from the configuration.
const UNIT_KEYS: [&str; 7] = [
    "AssertPathExists",
    "AssertPathIsDirectory",
    "SupplementaryGroups",
    "ExecStart",
    "TimeoutStartSec",
    "ReadOnlyPaths",
    "ReadWritePaths",
];

fn systemd_unit(config: &Config, layout: &Layout, fingerprint: &str) -> String {
    let start_timeout = config.bootstrap.grace_timeout.as_secs() + 30;
    let mut read_write = vec![layout.socket_dir.display().to_string()];
    if layout.state_dir != layout.socket_dir {
        read_write.push(layout.state_dir.display().to_string());
    }
    let values: [String; 7] = [
        CONFIG_INSTALL_PATH.to_owned(),
        layout.socket_dir.display().to_string(),
        layout.socket_group.clone(),
        format!("{BINARY_PATH} serve --config {CONFIG_INSTALL_PATH}"),
        format!("{start_timeout}s"),
        CONFIG_DIR.to_owned(),
        read_write.join(" "),
    ];
    let header = format!(
        "# bao-kms-provider, generated by `bao-kms-provider init` ({PLUGIN_VERSION}) from\n\
         # deploy/systemd/bao-kms-provider.service.\n\
         # Identity fingerprint: {fingerprint}\n\
         # Install as /etc/systemd/system/bao-kms-provider.service (node-setup.sh does it).\n"
    );
    render_unit(&header, &values)
}

/// The template from `[Unit]` on, under `header`, with each [`UNIT_KEYS`] line set to its value.
fn render_unit(header: &str, values: &[String; 7]) -> String {
    let body = UNIT_TEMPLATE
        .find("[Unit]")
        .map_or(UNIT_TEMPLATE, |at| &UNIT_TEMPLATE[at..]);
    let mut out = header.to_owned();
    for line in body.lines() {
        let key = line.split_once('=').map(|(key, _)| key);
        match UNIT_KEYS.iter().position(|known| Some(*known) == key) {
            Some(index) => {
                let _ = writeln!(out, "{}={}", UNIT_KEYS[index], values[index]);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn static_pod(config: &Config, layout: &Layout, args: &InitArgs<'_>, fingerprint: &str) -> String {
    let image = args.image.unwrap_or_default();
    let gid = args.socket_gid.unwrap_or_default();
    let health_port = config
        .server
        .health_address
        .as_deref()
        .and_then(split_host_port)
        .map_or(8082, |(_, port)| port);
    let probe_host = config
        .server
        .health_address
        .as_deref()
        .and_then(split_host_port)
        .map_or_else(
            || "127.0.0.1".to_owned(),
            |(host, _)| match host.as_str() {
                "0.0.0.0" | "" => "127.0.0.1".to_owned(),
                "::" => "::1".to_owned(),
                other => other.to_owned(),
            },
        );
    // The startup probe covers the bootstrap grace time plus a minute.
    let startup_failures = (config.bootstrap.grace_timeout.as_secs() + 60)
        .div_ceil(5)
        .max(12);
    let mut ports = String::new();
    for (name, address) in [
        ("metrics", config.server.metrics_address.as_deref()),
        ("health", config.server.health_address.as_deref()),
    ] {
        if let Some((_, port)) = address.and_then(split_host_port)
            && port != 0
        {
            let _ = write!(
                ports,
                "        - name: {name}\n          containerPort: {port}\n          protocol: TCP\n"
            );
        }
    }
    // Read-only mounts: the configuration, the CA directory and the credential directories
    // (directories, so an atomically replaced credential file is seen); read-write: the
    // socket and state directories. Each host path is mounted at the same path.
    let mut mounts: Vec<(String, String, &str, bool)> = Vec::new();
    let mut read_only_dirs: Vec<PathBuf> = vec![layout.ca_dir.clone()];
    read_only_dirs.extend(layout.credential_dirs.iter().cloned());
    read_only_dirs.sort();
    read_only_dirs.dedup();
    if !read_only_dirs
        .iter()
        .any(|dir| dir == Path::new(CONFIG_DIR))
    {
        mounts.push((
            "config".to_owned(),
            CONFIG_INSTALL_PATH.to_owned(),
            "File",
            true,
        ));
    }
    for (index, dir) in read_only_dirs.iter().enumerate() {
        mounts.push((
            format!("readonly-{index}"),
            dir.display().to_string(),
            "Directory",
            true,
        ));
    }
    mounts.push((
        "socket".to_owned(),
        layout.socket_dir.display().to_string(),
        "Directory",
        false,
    ));
    if layout.state_dir != layout.socket_dir {
        mounts.push((
            "state".to_owned(),
            layout.state_dir.display().to_string(),
            "Directory",
            false,
        ));
    }
    let mut volume_mounts = String::new();
    let mut volumes = String::new();
    for (name, path, kind, read_only) in &mounts {
        let _ = write!(
            volume_mounts,
            "        - name: {name}\n          mountPath: {}\n          readOnly: {read_only}\n",
            yaml_str(path)
        );
        let _ = write!(
            volumes,
            "    - name: {name}\n      hostPath:\n        path: {}\n        type: {kind}\n",
            yaml_str(path)
        );
    }
    let probe = |path: &str, period: u32, failures: u64| {
        format!(
            "        httpGet:\n          host: {}\n          path: {path}\n          port: {health_port}\n        periodSeconds: {period}\n        failureThreshold: {failures}\n",
            yaml_str(&probe_host)
        )
    };
    format!(
        "# bao-kms-provider static pod, generated by `bao-kms-provider init` ({PLUGIN_VERSION}).\n\
         # Identity fingerprint: {fingerprint}\n\
         # Install into the kubelet's static pod directory (node-setup.sh does it).\n\
         apiVersion: v1\n\
         kind: Pod\n\
         metadata:\n\
         \x20 name: bao-kms-provider\n\
         \x20 namespace: kube-system\n\
         \x20 labels:\n\
         \x20   app.kubernetes.io/name: bao-kms-provider\n\
         \x20   app.kubernetes.io/component: kms-provider\n\
         spec:\n\
         \x20 hostNetwork: true\n\
         \x20 priorityClassName: system-node-critical\n\
         \x20 automountServiceAccountToken: false\n\
         \x20 enableServiceLinks: false\n\
         \x20 restartPolicy: Always\n\
         \x20 # SIGTERM drains the gRPC server for up to 15 s, then the socket is removed.\n\
         \x20 terminationGracePeriodSeconds: 45\n\
         \x20 securityContext:\n\
         \x20   runAsNonRoot: true\n\
         \x20   runAsUser: {POD_UID}\n\
         \x20   runAsGroup: {POD_UID}\n\
         \x20   supplementalGroups: [{gid}]\n\
         \x20   seccompProfile:\n\
         \x20     type: RuntimeDefault\n\
         \x20 containers:\n\
         \x20   - name: bao-kms-provider\n\
         \x20     image: {image}\n\
         \x20     imagePullPolicy: IfNotPresent\n\
         \x20     command: [\"{BINARY_PATH}\"]\n\
         \x20     args: [\"serve\", \"--config={CONFIG_INSTALL_PATH}\"]\n\
         \x20     ports:\n{ports}\
         \x20     securityContext:\n\
         \x20       allowPrivilegeEscalation: false\n\
         \x20       readOnlyRootFilesystem: true\n\
         \x20       capabilities:\n\
         \x20         drop: [\"ALL\"]\n\
         \x20     startupProbe:\n{startup}\
         \x20     livenessProbe:\n{liveness}\
         \x20     readinessProbe:\n{readiness}\
         \x20     resources:\n\
         \x20       requests:\n\
         \x20         cpu: 50m\n\
         \x20         memory: 64Mi\n\
         \x20       limits:\n\
         \x20         memory: 256Mi\n\
         \x20     volumeMounts:\n{volume_mounts}\
         \x20 volumes:\n{volumes}",
        image = yaml_str(image),
        startup = probe("/live", 5, startup_failures),
        liveness = probe("/live", 10, 3),
        readiness = probe("/ready", 10, 3),
    )
}

fn node_setup(config: &Config, layout: &Layout, model: InitModel, fingerprint: &str) -> String {
    let ca = &config.openbao.ca_cert_file;
    let credentials = config.auth.method.credential_files();
    let (owner, group) = match model {
        InitModel::Systemd => (SERVICE_USER.to_owned(), SERVICE_USER.to_owned()),
        InitModel::StaticPod => (POD_UID.to_string(), POD_UID.to_string()),
    };
    let mut out = format!(
        "#!/bin/sh\n\
         # Node setup for bao-kms-provider ({model}), generated by `bao-kms-provider init` ({PLUGIN_VERSION}).\n\
         # Run as root on each control-plane node, one node at a time, from this directory,\n\
         # after openbao-setup.sh. Every node must show the identity fingerprint\n\
         # {fingerprint}\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         [ \"$(id -u)\" -eq 0 ] || {{ echo \"node-setup.sh must run as root\" >&2; exit 1; }}\n\
         CONFIG={config_path}\n\n",
        model = model_name(model),
        config_path = sh(CONFIG_INSTALL_PATH),
    );
    out.push_str("echo \"== phase 1: users and groups\"\n");
    match model {
        InitModel::Systemd => {
            let _ = write!(
                out,
                "getent group {user} >/dev/null || groupadd --system {user}\n\
                 id -u {user} >/dev/null 2>&1 || useradd --system --gid {user} --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin {user}\n",
                user = SERVICE_USER
            );
            if !layout.socket_group.bytes().all(|b| b.is_ascii_digit()) {
                let _ = writeln!(
                    out,
                    "getent group {group} >/dev/null || groupadd --system {group}",
                    group = sh(&layout.socket_group)
                );
            }
            out.push_str(
                "echo \"kube-apiserver must run with the socket group as a supplementary group\"\n",
            );
        }
        InitModel::StaticPod => {
            let _ = writeln!(
                out,
                "echo \"the pod runs as uid/gid {POD_UID}; the socket group is gid {}\"",
                layout.socket_group
            );
        }
    }

    out.push_str("\necho \"== phase 2: directories\"\n");
    let _ = writeln!(
        out,
        "install -d -m 0750 -o root -g {group} {}",
        sh(CONFIG_DIR)
    );
    if layout.ca_dir != Path::new(CONFIG_DIR) {
        let _ = writeln!(
            out,
            "install -d -m 0755 -o root -g root {}",
            path_sh(&layout.ca_dir)
        );
    }
    for dir in &layout.credential_dirs {
        if dir != Path::new(CONFIG_DIR) {
            let _ = writeln!(
                out,
                "install -d -m 0750 -o root -g {group} {}",
                path_sh(dir)
            );
        }
    }
    let _ = writeln!(
        out,
        "install -d -m 0750 -o {owner} -g {group} {}",
        path_sh(&layout.state_dir)
    );
    let _ = write!(
        out,
        "# The socket directory lives on /run: recreate it at every boot.\n\
         printf 'd %s 2750 %s %s -\\n' {} {owner} {} > /etc/tmpfiles.d/bao-kms-provider.conf\n\
         systemd-tmpfiles --create /etc/tmpfiles.d/bao-kms-provider.conf\n",
        path_sh(&layout.socket_dir),
        sh(&layout.socket_group),
    );

    out.push_str("\necho \"== phase 3: files\"\n");
    let _ = writeln!(
        out,
        "install -m 0640 -o root -g {group} config.yaml \"$CONFIG\""
    );
    out.push_str("missing=0\n");
    if model == InitModel::Systemd {
        let _ = writeln!(
            out,
            "[ -x {bin} ] || {{ echo \"missing: {BINARY_PATH} (install the bao-kms-provider binary)\" >&2; missing=1; }}",
            bin = sh(BINARY_PATH)
        );
    }
    let _ = writeln!(
        out,
        "[ -f {ca} ] || {{ echo \"missing: \"{ca}\" (copy the OpenBao CA bundle, mode 0644)\" >&2; missing=1; }}",
        ca = path_sh(ca)
    );
    for (field, file) in &credentials {
        let _ = writeln!(
            out,
            "[ -f {file} ] || {{ echo \"missing: \"{file}\" ({field}, root:{group} 0640)\" >&2; missing=1; }}",
            file = path_sh(file)
        );
    }
    out.push_str(
        "[ \"$missing\" -eq 0 ] || { echo \"provide the missing files, then run node-setup.sh again\" >&2; exit 1; }\n",
    );
    let _ = writeln!(
        out,
        "chown root:root {ca} && chmod 0644 {ca}",
        ca = path_sh(ca)
    );
    for (_, file) in &credentials {
        let _ = writeln!(
            out,
            "chown root:{group} {file} && chmod 0640 {file}",
            file = path_sh(file)
        );
    }
    let doctor = "doctor --config \"$CONFIG\"";
    match model {
        InitModel::Systemd => {
            let _ = writeln!(
                out,
                "runuser -u {SERVICE_USER} -- {} {doctor}",
                sh(BINARY_PATH)
            );
        }
        InitModel::StaticPod => {
            let _ = writeln!(
                out,
                "if command -v bao-kms-provider >/dev/null 2>&1; then\n\
                 \x20 setpriv --reuid={POD_UID} --regid={POD_UID} --clear-groups bao-kms-provider {doctor}\n\
                 fi"
            );
        }
    }

    out.push_str("\necho \"== phase 4: start\"\n");
    match model {
        InitModel::Systemd => out.push_str(
            "install -m 0644 -o root -g root bao-kms-provider.service /etc/systemd/system/bao-kms-provider.service\n\
             systemctl daemon-reload\n\
             # Type=notify: this returns once the provider is ready (or failed).\n\
             systemctl enable --now bao-kms-provider.service\n",
        ),
        InitModel::StaticPod => out.push_str(
            "MANIFESTS=\"${KUBELET_MANIFESTS:-/etc/kubernetes/manifests}\"\n\
             install -m 0600 -o root -g root bao-kms-provider.yaml \"$MANIFESTS/bao-kms-provider.yaml\"\n",
        ),
    }

    out.push_str("\necho \"== phase 5: verify\"\n");
    match config
        .server
        .health_address
        .as_deref()
        .and_then(|address| local_url(address, "/ready"))
    {
        Some(url) => {
            let _ = write!(
                out,
                "ready=0\n\
                 for _ in $(seq 1 60); do\n\
                 \x20 if curl -fsS -o /dev/null {url}; then ready=1; break; fi\n\
                 \x20 sleep 3\n\
                 done\n\
                 [ \"$ready\" -eq 1 ] || {{ echo \"{url_text} did not answer 200 within 180s\" >&2; exit 1; }}\n",
                url = sh(&url),
                url_text = url,
            );
        }
        None => {
            out.push_str("echo \"server.healthAddress is disabled: check readiness in the logs\"\n")
        }
    }
    let probe = format!("probe --socket {}", path_sh(&config.server.socket_path));
    match model {
        InitModel::Systemd => {
            let _ = writeln!(out, "{} {probe}", sh(BINARY_PATH));
        }
        InitModel::StaticPod => {
            let _ = writeln!(
                out,
                "if command -v bao-kms-provider >/dev/null 2>&1; then bao-kms-provider {probe}; fi"
            );
        }
    }
    out.push_str(
        "echo \"node ready; once every node is set up, compare them:\"\n\
         echo \"  bao-kms-provider fleet-check --metrics-url http://NODE:PORT/metrics ...\"\n",
    );
    out
}

/// Inputs of `installation.json`.
struct Installation<'a> {
    config: &'a Config,
    layout: &'a Layout,
    args: &'a InitArgs<'a>,
    fingerprint: &'a str,
    lineage_id: &'a str,
    policy_name: &'a str,
    filled: &'a [String],
    files: &'a [OutFile],
}

fn installation_json(installation: &Installation<'_>) -> Result<String, Failure> {
    let Installation {
        config,
        layout,
        args,
        ..
    } = installation;
    let scope = config.identity().key_scope();
    let credential_files: Vec<_> = config
        .auth
        .method
        .credential_files()
        .into_iter()
        .map(|(field, path)| json!({"field": field, "path": path.display().to_string()}))
        .collect();
    let mut files: Vec<_> = installation
        .files
        .iter()
        .map(|file| json!({"name": file.name, "mode": format!("{:04o}", file.mode)}))
        .collect();
    files.push(json!({"name": "installation.json", "mode": "0640"}));
    let runtime_identity = match args.model {
        InitModel::Systemd => json!({
            "user": SERVICE_USER,
            "group": SERVICE_USER,
            "socketGroup": layout.socket_group,
        }),
        InitModel::StaticPod => json!({
            "uid": POD_UID,
            "gid": POD_UID,
            "socketGid": args.socket_gid,
        }),
    };
    let mut remaining =
        vec!["Review openbao-setup.sh and run it once as an OpenBao administrator.".to_owned()];
    match &config.auth.method {
        AuthMethod::Jwt(jwt) => {
            remaining.push(format!(
                "Configure the trust of the JWT auth mount {} for issuer {} (see openbao-setup.sh).",
                jwt.mount_path,
                jwt.expected_issuer.as_deref().unwrap_or_default()
            ));
            remaining.push(format!(
                "Provide the JWT at {} on every node (root:{SERVICE_USER} 0640 or the pod group), refreshed before it expires.",
                jwt.jwt_file.display()
            ));
        }
        AuthMethod::AppRole {
            role_id_file,
            secret_id_file,
            ..
        } => remaining.push(format!(
            "Write the AppRole role_id into {} and a secret_id into {} on every node (mode 0640).",
            role_id_file.display(),
            secret_id_file.display()
        )),
        AuthMethod::Token { token_file } => remaining.push(format!(
            "Create a token with policy {} and write it into {} on every node (mode 0640).",
            installation.policy_name,
            token_file.display()
        )),
    }
    remaining.push(format!(
        "Copy the OpenBao CA bundle to {} on every node.",
        config.openbao.ca_cert_file.display()
    ));
    match args.model {
        InitModel::Systemd => remaining.push(format!(
            "Install the bao-kms-provider binary at {BINARY_PATH} on every node."
        )),
        InitModel::StaticPod => remaining.push(format!(
            "Make the image {} available to every kubelet.",
            args.image.unwrap_or_default()
        )),
    }
    remaining.extend([
        "Run node-setup.sh as root on every control-plane node, one node at a time.".to_owned(),
        "Install encryption-config-readers.yaml as kube-apiserver's --encryption-provider-config on every control-plane node and restart each apiserver (phase 1).".to_owned(),
        "Then install encryption-config.yaml on every node and restart each apiserver (phase 2); rewrite existing Secrets (kubectl get secrets -A -o json | kubectl replace -f -).".to_owned(),
        "Check that every node reports the same key: bao-kms-provider fleet-check --metrics-url http://NODE:PORT/metrics ...".to_owned(),
    ]);
    let build = build_info();
    let document = json!({
        "generator": {
            "name": "bao-kms-provider init",
            "version": build.version,
            "commit": build.commit,
            "buildDate": build.build_date,
            "dirty": build.dirty,
        },
        "identityFingerprint": installation.fingerprint,
        "keyLineageId": installation.lineage_id,
        "newKey": args.new_key,
        "model": model_name(args.model),
        "image": args.image,
        "policyName": installation.policy_name,
        "providerName": scope.provider_name(),
        "clusterId": scope.cluster_id(),
        "authMethod": config.auth.method.name(),
        "runtimeIdentity": runtime_identity,
        "hostPaths": {
            "config": CONFIG_INSTALL_PATH,
            "binary": match args.model {
                InitModel::Systemd => Some(BINARY_PATH),
                InitModel::StaticPod => None,
            },
            "caCertFile": config.openbao.ca_cert_file.display().to_string(),
            "credentialFiles": credential_files,
            "socketPath": config.server.socket_path.display().to_string(),
            "socketDirectory": layout.socket_dir.display().to_string(),
            "stateDirectory": layout.state_dir.display().to_string(),
        },
        "defaultsFilled": installation.filled,
        "files": files,
        "remainingActions": remaining,
    });
    serde_json::to_string_pretty(&document)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|error| Failure::io(error.to_string()))
}

/// Writes every file into `out`, creating it when absent; on failure removes what it wrote.
fn write_files(out: &Path, files: &[OutFile]) -> Result<(), String> {
    let created_dir = match std::fs::symlink_metadata(out) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new()
                .mode(0o750)
                .create(out)
                .map_err(|error| format!("cannot create {}: {error}", out.display()))?;
            true
        }
        Err(error) => return Err(format!("{}: {error}", out.display())),
        Ok(metadata) if metadata.is_dir() => false,
        Ok(_) => return Err(format!("{} is not a directory", out.display())),
    };
    let mut written: Vec<PathBuf> = Vec::new();
    let mut result = Ok(());
    for file in files {
        let path = out.join(file.name);
        match write_new(&path, file) {
            Ok(()) => written.push(path),
            Err(error) => {
                // A file that existed already is not ours to remove.
                if error.kind() != std::io::ErrorKind::AlreadyExists {
                    let _ = std::fs::remove_file(&path);
                }
                result = Err(format!("cannot write {}: {error}", path.display()));
                break;
            }
        }
    }
    if result.is_err() {
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
        if created_dir {
            let _ = std::fs::remove_dir(out);
        }
    }
    result
}

/// Creates a new file (never follows or replaces anything), writes it and sets its mode.
fn write_new(path: &Path, file: &OutFile) -> std::io::Result<()> {
    let mut handle = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(path)?;
    handle.write_all(file.content.as_bytes())?;
    // The umask may have narrowed the mode.
    handle.set_permissions(std::fs::Permissions::from_mode(file.mode))?;
    handle.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_single_quotes() {
        assert_eq!(sh("a'b"), r"'a'\''b'");
        assert_eq!(sh("plain"), "'plain'");
    }

    #[test]
    fn only_digest_pinned_images_are_accepted() {
        let digest = "a".repeat(64);
        assert!(check_image(&format!("ghcr.io/x/bao-kms-provider@sha256:{digest}")).is_ok());
        assert!(check_image("ghcr.io/x/bao-kms-provider:0.1.0").is_err());
        assert!(check_image("ghcr.io/x/bao-kms-provider@sha256:abc").is_err());
        assert!(check_image(&format!("@sha256:{digest}")).is_err());
    }

    #[test]
    fn policy_names_exclude_reserved_and_separator_characters() {
        assert!(check_policy_name("openbao-kms-prod").is_ok());
        assert!(check_policy_name("root").is_err());
        assert!(check_policy_name("default").is_err());
        assert!(check_policy_name("a/b").is_err());
        assert!(check_policy_name("a,b").is_err());
        assert!(check_policy_name("").is_err());
    }

    #[test]
    fn local_urls_replace_unspecified_hosts() {
        assert_eq!(
            local_url("0.0.0.0:8082", "/ready").as_deref(),
            Some("http://127.0.0.1:8082/ready")
        );
        assert_eq!(
            local_url("[::]:8082", "/ready").as_deref(),
            Some("http://[::1]:8082/ready")
        );
        assert_eq!(local_url("127.0.0.1:0", "/ready"), None);
    }

    #[test]
    fn every_configured_unit_key_is_set_exactly_once_in_the_deploy_unit() {
        for key in UNIT_KEYS {
            let prefix = format!("{key}=");
            let count = UNIT_TEMPLATE
                .lines()
                .filter(|line| line.starts_with(&prefix))
                .count();
            assert_eq!(count, 1, "{key}");
        }
    }
}
