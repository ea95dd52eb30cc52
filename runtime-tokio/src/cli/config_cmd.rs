//! `config`: the effective configuration (defaults, file, environment, flags merged) and the
//! identity fingerprint.
//!
//! Every field of the file format appears with the value `serve` would use, in the file's own
//! shape, so the output can be diffed between nodes. Only file paths are shown for credentials:
//! the configuration holds no secret values, and the files they name are never read here.
//! Top level adds `identityFingerprint` (every node must print the same) and `configFile`.

use serde_json::{Value, json};

use super::{Cli, ExitCode, Output, out};
use crate::config::{self, AuthMethod, Config, format_duration};

pub(super) fn run(cli: &Cli, output: Output) -> ExitCode {
    let loaded = match config::load(&cli.overrides(), &config::process_env) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::Config;
        }
    };
    let effective = effective(&loaded);
    let rendered = match output {
        // JSON is valid YAML, but block YAML is what operators compare with their file.
        Output::Text => serde_norway::to_string(&effective).map_err(|_| ()),
        Output::Json => serde_json::to_string_pretty(&effective).map_err(|_| ()),
    };
    match rendered {
        Ok(text) => out::line_then(text.trim_end(), ExitCode::Success),
        Err(()) => ExitCode::Failure,
    }
}

fn duration(value: std::time::Duration) -> Value {
    Value::String(format_duration(value))
}

fn path(value: &std::path::Path) -> Value {
    Value::String(value.display().to_string())
}

/// The effective configuration in the file's shape.
fn effective(config: &Config) -> Value {
    let server = &config.server;
    let openbao = &config.openbao;
    let auth = &config.auth;
    let scope = config.identity().key_scope();
    let identity = config.identity();
    let method = match &auth.method {
        AuthMethod::Jwt(jwt) => json!({"jwt": {
            "source": "file",
            "mountPath": jwt.mount_path,
            "role": jwt.role,
            "jwtFile": path(&jwt.jwt_file),
            "minRemainingTtl": duration(jwt.min_remaining_ttl),
            "clockSkewLeeway": duration(jwt.clock_skew_leeway),
            "expectedIssuer": jwt.expected_issuer,
            "expectedAudience": jwt.expected_audience,
            "expectedSubject": jwt.expected_subject,
        }}),
        AuthMethod::Token { token_file } => json!({"token": {"tokenFile": path(token_file)}}),
        AuthMethod::AppRole {
            mount_path,
            role_id_file,
            secret_id_file,
        } => json!({"approle": {
            "mountPath": mount_path,
            "roleIdFile": path(role_id_file),
            "secretIdFile": path(secret_id_file),
        }}),
    };
    let mut auth_section = json!({
        "method": auth.method.name(),
        "loginBeforeTokenExpiry": duration(auth.login_before_token_expiry),
        "tokenRenewalIncrement": duration(auth.token_renewal_increment),
        "loginTimeout": duration(auth.login_timeout),
    });
    if let (Some(section), Value::Object(extra)) = (auth_section.as_object_mut(), method) {
        section.extend(extra);
    }
    json!({
        "configVersion": config::CONFIG_VERSION,
        "identityFingerprint": config.identity_fingerprint().as_str(),
        "configFile": config.config_path().map(path),
        "server": {
            "socketPath": path(&server.socket_path),
            "socketMode": format!("{:04o}", server.socket_mode),
            "socketGroup": server.socket_group,
            "socketDirectories": server.socket_directories.iter().map(|dir| path(dir)).collect::<Vec<_>>(),
            "metricsAddress": server.metrics_address.clone().unwrap_or_default(),
            "healthAddress": server.health_address.clone().unwrap_or_default(),
            "maxConcurrentStatus": server.concurrency.status,
            "maxConcurrentEncrypt": server.concurrency.encrypt,
            "maxConcurrentDecrypt": server.concurrency.decrypt,
        },
        "openbao": {
            "address": openbao.address,
            "addresses": std::iter::once(&openbao.address)
                .chain(&openbao.more_addresses)
                .collect::<Vec<_>>(),
            "caCertFile": path(&openbao.ca_cert_file),
            "tlsServerName": openbao.tls_server_name,
            "instanceId": scope.openbao_instance_id(),
            "namespace": openbao.namespace,
            "timeout": duration(openbao.timeout),
        },
        "auth": auth_section,
        "transit": {
            "mountPath": identity.transit_mount_path(),
            "keyName": identity.transit_key_name(),
            "keyIdScope": {
                "providerName": scope.provider_name(),
                "clusterId": scope.cluster_id(),
                "transitMountId": scope.transit_mount_id(),
                "keyLineageId": scope.key_lineage_id(),
            },
        },
        "state": {"path": path(&config.state_path)},
        "bootstrap": {
            "graceTimeout": duration(config.bootstrap.grace_timeout),
            "retryInterval": duration(config.bootstrap.retry_interval),
        },
        "status": {
            "probeInterval": duration(config.status.probe_interval),
            "deepProbeInterval": duration(config.status.deep_probe_interval),
            "statusMaxStaleness": duration(config.status.status_max_staleness),
        },
        "rotation": {
            "mode": "observed",
            "activationDelay": duration(config.rotation.activation_delay),
            "requireStableObservationCount": config.rotation.require_stable_observation_count,
            "rejectVersionRollback": config.rotation.reject_version_rollback,
        },
        "logging": {
            "level": config.logging.level.as_str(),
            "format": config.logging.format.as_str(),
            "logOpenBaoRequestIDs": config.logging.log_openbao_request_ids,
        },
        "performance": {
            "decryptBatchMaxItems": config.decrypt_batching.max_items,
        },
    })
}

#[path = "config_schema.rs"]
mod config_schema;

/// `config schema`: the JSON Schema (draft 2020-12) of the configuration file.
pub(super) fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&config_schema::schema()) {
        Ok(text) => out::line_then(&text, ExitCode::Success),
        Err(_) => ExitCode::Failure,
    }
}
