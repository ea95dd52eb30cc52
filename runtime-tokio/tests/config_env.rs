//! Environment variables and flags: precedence defaults < file < environment < flags.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use bao_kms_runtime_tokio::config::{
    Config, ConfigError, ENV_CONFIG_PATH, ENV_HEALTH_ADDRESS, ENV_LOG_LEVEL, ENV_METRICS_ADDRESS,
    LogLevel, Overrides, load, parse_str,
};

const BASE: &str = r#"
configVersion: v1alpha1
server:
  metricsAddress: 127.0.0.1:7001
  healthAddress: 127.0.0.1:7002
openbao:
  address: https://openbao.example:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: openbao.example
  instanceId: bao-prod-a
auth:
  jwt:
    mountPath: auth/jwt
    role: kms-provider
    jwtFile: /var/lib/openbao-kms/identity.jwt
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: p
    clusterId: c
    transitMountId: m
    keyLineageId: l
logging:
  level: warn
"#;

fn env_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn parse_with(
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    parse_str(BASE, overrides, &|name| env.get(name).cloned())
}

#[test]
fn the_file_overrides_the_defaults() {
    let config = parse_with(&Overrides::default(), &BTreeMap::new()).unwrap();

    assert_eq!(config.logging.level, LogLevel::Warn);
    assert_eq!(
        config.server.metrics_address.as_deref(),
        Some("127.0.0.1:7001")
    );
    assert_eq!(
        config.server.health_address.as_deref(),
        Some("127.0.0.1:7002")
    );
}

#[test]
fn the_environment_overrides_the_file() {
    let env = env_map(&[
        ("BAO_KMS_PROVIDER_LOG_LEVEL", "debug"),
        ("BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS", "127.0.0.1:7101"),
        ("BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS", "127.0.0.1:7102"),
    ]);

    let config = parse_with(&Overrides::default(), &env).unwrap();

    assert_eq!(config.logging.level, LogLevel::Debug);
    assert_eq!(
        config.server.metrics_address.as_deref(),
        Some("127.0.0.1:7101")
    );
    assert_eq!(
        config.server.health_address.as_deref(),
        Some("127.0.0.1:7102")
    );
}

#[test]
fn flags_override_the_environment() {
    let env = env_map(&[
        ("BAO_KMS_PROVIDER_LOG_LEVEL", "debug"),
        ("BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS", "127.0.0.1:7101"),
        ("BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS", "127.0.0.1:7102"),
    ]);
    let flags = Overrides {
        log_level: Some("error".into()),
        metrics_address: Some("127.0.0.1:7201".into()),
        health_address: Some("127.0.0.1:7202".into()),
        ..Overrides::default()
    };

    let config = parse_with(&flags, &env).unwrap();

    assert_eq!(config.logging.level, LogLevel::Error);
    assert_eq!(
        config.server.metrics_address.as_deref(),
        Some("127.0.0.1:7201")
    );
    assert_eq!(
        config.server.health_address.as_deref(),
        Some("127.0.0.1:7202")
    );
}

#[test]
fn the_first_of_two_synonymous_variables_wins_and_the_second_is_a_fallback() {
    let both = env_map(&[
        ("BAO_KMS_PROVIDER_LOG_LEVEL", "error"),
        ("BAO_KMS_PROVIDER_LOGGING_LEVEL", "debug"),
        ("BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS", "127.0.0.1:7301"),
        ("BAO_KMS_PROVIDER_SERVER_METRICSADDRESS", "127.0.0.1:7302"),
    ]);
    let second_only = env_map(&[
        ("BAO_KMS_PROVIDER_LOGGING_LEVEL", "debug"),
        ("BAO_KMS_PROVIDER_SERVER_HEALTHADDRESS", "127.0.0.1:7402"),
    ]);

    let first = parse_with(&Overrides::default(), &both).unwrap();
    let fallback = parse_with(&Overrides::default(), &second_only).unwrap();

    assert_eq!(first.logging.level, LogLevel::Error);
    assert_eq!(
        first.server.metrics_address.as_deref(),
        Some("127.0.0.1:7301")
    );
    assert_eq!(fallback.logging.level, LogLevel::Debug);
    assert_eq!(
        fallback.server.health_address.as_deref(),
        Some("127.0.0.1:7402")
    );
}

#[test]
fn an_empty_environment_variable_counts_as_unset() {
    let env = env_map(&[("BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS", "")]);

    let config = parse_with(&Overrides::default(), &env).unwrap();

    assert_eq!(
        config.server.metrics_address.as_deref(),
        Some("127.0.0.1:7001")
    );
}

#[test]
fn an_empty_flag_disables_a_listener() {
    let flags = Overrides {
        health_address: Some(String::new()),
        ..Overrides::default()
    };

    let config = parse_with(&flags, &BTreeMap::new()).unwrap();

    assert_eq!(config.server.health_address, None);
    assert_eq!(config.resolved_summary().health_address, "");
}

#[test]
fn cross_field_checks_apply_to_the_effective_addresses() {
    let env = env_map(&[("BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS", "127.0.0.1:7001")]);
    let flags = Overrides {
        metrics_address: Some("127.0.0.1:7002".into()),
        ..Overrides::default()
    };

    let clash = parse_with(&Overrides::default(), &env).unwrap_err();
    let moved = parse_with(&flags, &env).unwrap();

    assert_eq!(
        clash.to_string(),
        "config invalid; server.healthAddress: 127.0.0.1:7001 must differ from \
         server.metricsAddress 127.0.0.1:7001 (use port 0 or an empty address to disable one)"
    );
    assert_eq!(
        moved.server.metrics_address.as_deref(),
        Some("127.0.0.1:7002")
    );
}

#[test]
fn an_invalid_override_is_reported_with_its_source() {
    let env = env_map(&[("BAO_KMS_PROVIDER_LOGGING_LEVEL", "trace")]);
    let flags = Overrides {
        metrics_address: Some("nowhere".into()),
        ..Overrides::default()
    };

    let error = parse_with(&flags, &env).unwrap_err();

    assert_eq!(
        error.to_string(),
        "config invalid; server.metricsAddress: must be host:port, such as 127.0.0.1:8081 \
         (from --metrics-address); logging.level: must be one of debug, info, warn, error \
         (trace is not supported) (from BAO_KMS_PROVIDER_LOGGING_LEVEL)"
    );
}

#[test]
fn only_the_documented_variables_are_read() {
    let asked = RefCell::new(Vec::new());
    let lookup = |name: &str| {
        asked.borrow_mut().push(name.to_owned());
        None
    };

    parse_str(BASE, &Overrides::default(), &lookup).unwrap();
    let _ = load(&Overrides::default(), &lookup);

    let documented: Vec<&str> = [
        ENV_CONFIG_PATH,
        ENV_LOG_LEVEL,
        ENV_METRICS_ADDRESS,
        ENV_HEALTH_ADDRESS,
    ]
    .concat();
    let asked = asked.into_inner();
    assert!(!asked.is_empty());
    for name in &asked {
        assert!(
            documented.contains(&name.as_str()),
            "read undocumented variable {name}"
        );
    }
}

#[test]
fn loading_without_a_config_path_says_that_config_is_required() {
    let error = load(&Overrides::default(), &|_| None).unwrap_err();

    assert_eq!(
        error.to_string(),
        "config invalid; --config is required (or BAO_KMS_PROVIDER_CONFIG)"
    );
}
