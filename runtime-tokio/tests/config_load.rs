//! Decoding and validation of the configuration file (no filesystem, no process environment).
#![allow(clippy::unwrap_used)]

mod config_support;

use std::path::PathBuf;
use std::time::Duration;

use bao_kms_core::config::{BatchPolicy, BreakerPolicy, ConcurrencyLimits};
use bao_kms_core::identity::{IdentityScope, IdentityValues};
use bao_kms_runtime_tokio::config::{AuthMethod, LogFormat, LogLevel};
use config_support::{MINIMAL, parse};

/// The minimal config with `line` replaced by `replacement` (which may span several lines).
fn minimal_with(line: &str, replacement: &str) -> String {
    assert!(MINIMAL.contains(line), "fixture has no line {line:?}");
    MINIMAL.replacen(line, replacement, 1)
}

/// The minimal config with extra top-level YAML appended.
fn minimal_plus(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

fn error_text(yaml: &str) -> String {
    parse(yaml).unwrap_err().to_string()
}

fn problem_fields(yaml: &str) -> Vec<String> {
    parse(yaml)
        .unwrap_err()
        .problems()
        .iter()
        .map(|p| p.field().to_owned())
        .collect()
}

#[test]
fn a_minimal_config_loads_with_every_default_applied() {
    let config = parse(MINIMAL).unwrap();

    let server = &config.server;
    assert_eq!(
        server.socket_path,
        PathBuf::from("/run/openbao-kms/kms.sock")
    );
    assert_eq!(server.socket_mode, 0o660);
    assert_eq!(server.socket_group, None);
    assert_eq!(
        server.socket_directories,
        [
            PathBuf::from("/run/openbao-kms"),
            PathBuf::from("/var/run/openbao-kms")
        ]
    );
    assert_eq!(server.metrics_address.as_deref(), Some("127.0.0.1:8081"));
    assert_eq!(server.health_address.as_deref(), Some("127.0.0.1:8082"));
    assert_eq!(
        server.concurrency,
        ConcurrencyLimits {
            status: 16,
            encrypt: 32,
            decrypt: 64
        }
    );

    assert_eq!(config.openbao.address, "https://openbao.example:8200");
    assert_eq!(
        config.openbao.ca_cert_file,
        PathBuf::from("/etc/openbao-kms/tls/ca.crt")
    );
    assert_eq!(config.openbao.tls_server_name, "openbao.example");
    assert_eq!(config.openbao.namespace, None);
    assert_eq!(config.openbao.timeout, Duration::from_secs(2));

    assert_eq!(
        config.auth.login_before_token_expiry,
        Duration::from_secs(300)
    );
    assert_eq!(
        config.auth.token_renewal_increment,
        Duration::from_secs(3_600)
    );
    assert_eq!(config.auth.login_timeout, Duration::from_secs(5));
    let AuthMethod::Jwt(jwt) = &config.auth.method else {
        panic!("expected jwt, got {:?}", config.auth.method);
    };
    assert_eq!(jwt.mount_path, "auth/k8s-workload-a-jwt");
    assert_eq!(jwt.role, "kms-provider");
    assert_eq!(
        jwt.jwt_file,
        PathBuf::from("/var/lib/openbao-kms/identity.jwt")
    );
    assert_eq!(jwt.min_remaining_ttl, Duration::from_secs(120));
    assert_eq!(jwt.clock_skew_leeway, Duration::from_secs(30));
    assert_eq!(jwt.expected_issuer, None);
    assert!(jwt.expected_audience.is_empty());
    assert_eq!(jwt.expected_subject, None);

    assert_eq!(
        config.state_path,
        PathBuf::from("/var/lib/openbao-kms/state/key-registry.json")
    );
    assert_eq!(config.bootstrap.grace_timeout, Duration::from_secs(60));
    assert_eq!(config.bootstrap.retry_interval, Duration::from_secs(5));
    assert_eq!(config.status.probe_interval, Duration::from_secs(30));
    assert_eq!(config.status.deep_probe_interval, Duration::from_secs(300));
    assert_eq!(config.status.status_max_staleness, Duration::from_secs(120));
    assert_eq!(config.rotation.activation_delay, Duration::from_secs(120));
    assert_eq!(config.rotation.require_stable_observation_count, 3);
    assert!(config.rotation.reject_version_rollback);
    assert_eq!(config.logging.level, LogLevel::Info);
    assert_eq!(config.logging.format, LogFormat::Json);
    assert!(config.logging.log_openbao_request_ids);
    assert_eq!(
        config.decrypt_batching,
        BatchPolicy {
            max_items: 64,
            ..BatchPolicy::default()
        }
    );
    assert_eq!(config.config_path(), None);
    assert!(config.additions_used().is_empty());
}

#[test]
fn a_full_config_loads_every_value_given() {
    let yaml = r#"
configVersion: v1alpha1
server:
  socketPath: /var/run/openbao-kms/kms.sock
  socketMode: "0600"
  socketGroup: "996"
  metricsAddress: "[::1]:9090"
  healthAddress: ""
  maxConcurrentStatus: 1
  maxConcurrentEncrypt: 1024
  maxConcurrentDecrypt: 8
openbao:
  address: https://bao.example/
  caCertFile: /ca.pem
  tlsServerName: 10.0.0.5
  instanceId: bao-b
  namespace: team/a
  timeout: 1500ms
auth:
  method: jwt
  loginBeforeTokenExpiry: 10m
  tokenRenewalIncrement: 2h
  loginTimeout: 7s
  jwt:
    source: file
    mountPath: auth/jwt/
    role: r
    jwtFile: /jwt
    minRemainingTtl: 1m
    clockSkewLeeway: 0s
    expectedIssuer: https://issuer.example
    expectedAudience: [openbao, kms]
    expectedSubject: system:serviceaccount:kube-system:kms
transit:
  mountPath: transit/
  keyName: kms-key
  keyIdScope:
    providerName: p
    clusterId: c
    transitMountId: m
    keyLineageId: l
state:
  path: /srv/state/registry.json
bootstrap:
  graceTimeout: 0s
  retryInterval: 1s
status:
  probeInterval: 10s
  deepProbeInterval: 1m
  statusMaxStaleness: 1m
rotation:
  mode: observed
  activationDelay: 1h
  requireStableObservationCount: 1
  rejectVersionRollback: false
logging:
  level: debug
  format: text
  logOpenBaoRequestIDs: false
performance:
  decryptBatchMaxItems: 1
"#;
    let config = parse(yaml).unwrap();

    assert_eq!(
        config.server.socket_path,
        PathBuf::from("/var/run/openbao-kms/kms.sock")
    );
    assert_eq!(config.server.socket_mode, 0o600);
    assert_eq!(config.server.socket_group.as_deref(), Some("996"));
    assert_eq!(config.server.metrics_address.as_deref(), Some("[::1]:9090"));
    assert_eq!(config.server.health_address, None);
    assert_eq!(
        config.server.concurrency,
        ConcurrencyLimits {
            status: 1,
            encrypt: 1024,
            decrypt: 8
        }
    );
    assert_eq!(config.openbao.address, "https://bao.example");
    assert_eq!(config.openbao.namespace.as_deref(), Some("team/a"));
    assert_eq!(config.openbao.timeout, Duration::from_millis(1_500));
    assert_eq!(config.auth.login_timeout, Duration::from_secs(7));
    let AuthMethod::Jwt(jwt) = &config.auth.method else {
        panic!("expected jwt");
    };
    assert_eq!(jwt.mount_path, "auth/jwt");
    assert_eq!(jwt.clock_skew_leeway, Duration::ZERO);
    assert_eq!(jwt.expected_audience, ["openbao", "kms"]);
    assert_eq!(
        jwt.expected_issuer.as_deref(),
        Some("https://issuer.example")
    );
    assert_eq!(config.identity().transit_mount_path(), "transit");
    assert_eq!(
        config.identity().key_scope().openbao_namespace(),
        Some("team/a")
    );
    assert_eq!(config.bootstrap.grace_timeout, Duration::ZERO);
    assert!(!config.rotation.reject_version_rollback);
    assert_eq!(config.logging.level, LogLevel::Debug);
    assert_eq!(config.logging.format, LogFormat::Text);
    assert!(!config.logging.log_openbao_request_ids);
    assert_eq!(config.decrypt_batching.max_items, 1);
    assert_eq!(config.additions_used(), ["performance"]);
}

#[test]
fn the_provider_config_carries_the_configured_policy_values() {
    let yaml =
        minimal_plus("status:\n  probeInterval: 20s\nperformance:\n  decryptBatchMaxItems: 16\n");
    let config = parse(&yaml).unwrap();

    let provider = config.provider_config("0.1.0-test", [7; 32]);

    assert_eq!(provider.plugin_version, "0.1.0-test");
    assert_eq!(provider.probe_interval, Duration::from_secs(20));
    assert_eq!(provider.deep_probe_interval, Duration::from_secs(300));
    assert_eq!(provider.status_max_staleness, Duration::from_secs(120));
    assert_eq!(provider.activation_delay, Duration::from_secs(120));
    assert_eq!(provider.require_stable_observation_count, 3);
    assert!(provider.reject_version_rollback);
    assert_eq!(provider.request_timeout, Duration::from_secs(2));
    assert_eq!(provider.bootstrap_retry_interval, Duration::from_secs(5));
    assert_eq!(provider.concurrency, ConcurrencyLimits::default());
    assert_eq!(provider.breaker, BreakerPolicy::default());
    assert_eq!(
        provider.batching,
        BatchPolicy {
            max_items: 16,
            ..BatchPolicy::default()
        }
    );
    assert_eq!(provider.rng_seed, [7; 32]);
    assert_eq!(&provider.identity, config.identity());
}

#[test]
fn the_identity_fingerprint_is_the_core_fingerprint_of_the_configured_values() {
    let config = parse(MINIMAL).unwrap();
    let expected = IdentityScope::new(IdentityValues {
        provider_name: "openbao-kms-workload-a".into(),
        cluster_id: "workload-a".into(),
        openbao_instance_id: "bao-prod-a".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-prod-primary".into(),
        key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "kms-key".into(),
    })
    .unwrap();

    assert_eq!(config.identity_fingerprint(), expected.fingerprint());
}

#[test]
fn the_resolved_summary_lists_the_effective_values_as_yaml() {
    let config = parse(MINIMAL).unwrap();

    let summary = config.resolved_summary();

    let fingerprint = config.identity_fingerprint();
    assert_eq!(
        summary.to_string(),
        format!(
            "configVersion: \"v1alpha1\"\nsocketPath: \"/run/openbao-kms/kms.sock\"\n\
             metricsAddress: \"127.0.0.1:8081\"\nhealthAddress: \"127.0.0.1:8082\"\n\
             authMethod: \"jwt\"\nidentityFingerprint: \"{fingerprint}\"\n"
        )
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["identityFingerprint"], fingerprint.as_str());
    assert_eq!(json["authMethod"], "jwt");
}

#[test]
fn an_unknown_top_level_key_is_refused_by_name() {
    let text = error_text(&minimal_plus("extraSetting: true\n"));

    assert!(text.starts_with("config invalid; "), "{text}");
    assert!(text.contains("unknown field `extraSetting`"), "{text}");
}

#[test]
fn an_unknown_nested_key_is_refused_with_its_path_and_position() {
    let text = error_text(&minimal_plus(
        "server:\n  socketPth: /run/openbao-kms/kms.sock\n",
    ));

    assert!(text.contains("server: unknown field `socketPth`"), "{text}");
    assert!(text.contains("line "), "{text}");
}

#[test]
fn keys_this_release_does_not_support_are_unknown_keys() {
    let cert = error_text(&minimal_with(
        "  jwt:\n",
        "  cert:\n    mountPath: auth/cert\n  jwt:\n",
    ));
    let correlation = error_text(&minimal_plus(
        "logging:\n  debugCorrelation:\n    enabled: true\n",
    ));
    let oauth2 = error_text(&minimal_with(
        "    role: kms-provider\n",
        "    role: kms-provider\n    oauth2:\n      clientId: x\n",
    ));

    assert!(cert.contains("auth: unknown field `cert`"), "{cert}");
    assert!(
        correlation.contains("logging: unknown field `debugCorrelation`"),
        "{correlation}"
    );
    assert!(
        oauth2.contains("auth.jwt: unknown field `oauth2`"),
        "{oauth2}"
    );
}

#[test]
fn an_unquoted_number_or_boolean_for_a_string_field_is_refused() {
    let version = error_text(&minimal_with("configVersion: v1alpha1", "configVersion: 1"));
    let group = error_text(&minimal_plus("server:\n  socketGroup: 996\n"));
    let role = error_text(&minimal_with("role: kms-provider", "role: true"));

    assert!(
        version.contains("configVersion: invalid type: integer `1`"),
        "{version}"
    );
    assert!(
        group.contains("server.socketGroup: invalid type: integer `996`"),
        "{group}"
    );
    assert!(
        role.contains("auth.jwt.role: invalid type: boolean `true`"),
        "{role}"
    );
}

#[test]
fn a_quoted_number_for_an_integer_or_boolean_field_is_refused() {
    let count = error_text(&minimal_plus("server:\n  maxConcurrentStatus: \"16\"\n"));
    let flag = error_text(&minimal_plus(
        "rotation:\n  rejectVersionRollback: \"true\"\n",
    ));

    assert!(
        count.contains("server.maxConcurrentStatus: invalid type: string"),
        "{count}"
    );
    assert!(
        flag.contains("rotation.rejectVersionRollback: invalid type: string"),
        "{flag}"
    );
}

#[test]
fn a_bare_duration_is_refused() {
    let unquoted = error_text(&minimal_with(
        "  instanceId: bao-prod-a\n",
        "  instanceId: bao-prod-a\n  timeout: 120\n",
    ));
    let quoted = error_text(&minimal_with(
        "  instanceId: bao-prod-a\n",
        "  instanceId: bao-prod-a\n  timeout: \"120\"\n",
    ));

    assert!(
        unquoted.contains("openbao.timeout: invalid type: integer `120`, expected a duration"),
        "{unquoted}"
    );
    assert_eq!(
        quoted,
        "config invalid; openbao.timeout: must have a unit (ns, us, ms, s, m or h), such as 30s"
    );
}

#[test]
fn go_duration_syntax_is_accepted_for_durations() {
    let yaml = minimal_plus(
        "bootstrap:\n  graceTimeout: 1m30s\n  retryInterval: 250ms\n\
         status:\n  deepProbeInterval: 1h\n",
    );
    let config = parse(&yaml).unwrap();

    assert_eq!(config.bootstrap.grace_timeout, Duration::from_secs(90));
    assert_eq!(config.bootstrap.retry_interval, Duration::from_millis(250));
    assert_eq!(
        config.status.deep_probe_interval,
        Duration::from_secs(3_600)
    );
}

#[test]
fn zero_is_refused_where_a_duration_must_be_positive_and_negative_everywhere() {
    let yaml = minimal_plus("bootstrap:\n  graceTimeout: -1s\n  retryInterval: 0s\n");

    assert_eq!(
        error_text(&yaml),
        "config invalid; bootstrap.graceTimeout: must not be negative; \
         bootstrap.retryInterval: must be greater than 0"
    );
}

#[test]
fn a_missing_or_different_config_version_is_refused() {
    let missing = error_text(&minimal_with("configVersion: v1alpha1\n", ""));
    let other = error_text(&minimal_with(
        "configVersion: v1alpha1",
        "configVersion: v1",
    ));

    assert_eq!(
        missing,
        "config invalid; configVersion: is required (v1alpha1)"
    );
    assert_eq!(other, "config invalid; configVersion: must be v1alpha1");
}

#[test]
fn an_empty_file_reports_every_required_field() {
    let fields = problem_fields("");

    assert_eq!(
        fields,
        [
            "configVersion",
            "openbao.address",
            "openbao.caCertFile",
            "openbao.tlsServerName",
            "openbao.instanceId",
            "auth.jwt.mountPath",
            "auth.jwt.role",
            "auth.jwt.jwtFile",
            "transit.mountPath",
            "transit.keyName",
            "transit.keyIdScope.providerName",
            "transit.keyIdScope.clusterId",
            "transit.keyIdScope.transitMountId",
            "transit.keyIdScope.keyLineageId",
        ]
    );
}

#[test]
fn multiple_problems_are_all_reported_in_one_message_in_schema_order() {
    let yaml = r#"
configVersion: v1alpha1
logging:
  level: trace
server:
  maxConcurrentDecrypt: 0
openbao:
  address: http://openbao.example:8200
  caCertFile: relative/ca.crt
  tlsServerName: openbao.example
  instanceId: bao-prod-a
auth:
  jwt:
    mountPath: auth/jwt
    role: kms-provider
    jwtFile: /var/lib/openbao-kms/identity.jwt
transit:
  mountPath: transit
  keyName: -bad
  keyIdScope:
    providerName: p
    clusterId: c
    transitMountId: m
    keyLineageId: l
"#;

    assert_eq!(
        error_text(yaml),
        "config invalid; server.maxConcurrentDecrypt: must be between 1 and 1024; \
         openbao.address: must use https (plain http is refused); \
         openbao.caCertFile: must be an absolute path; \
         transit.keyName: must match ^\\w(([\\w-.]+)?\\w)?$ (ASCII letters, digits, _, - and .); \
         logging.level: must be one of debug, info, warn, error (trace is not supported)"
    );
}

#[test]
fn whitespace_only_required_values_count_as_missing() {
    let yaml = minimal_with("role: kms-provider", "role: \"   \"")
        .replace("clusterId: workload-a", "clusterId: \" \"")
        .replace("  mountPath: transit\n", "  mountPath: \"\\t\"\n");

    assert_eq!(
        error_text(&yaml),
        "config invalid; auth.jwt.role: is required; transit.mountPath: is required; \
         transit.keyIdScope.clusterId: is required"
    );
}

#[test]
fn identifiers_with_surrounding_whitespace_are_refused() {
    let yaml = minimal_with("role: kms-provider", "role: \" kms-provider\"");

    assert_eq!(
        error_text(&yaml),
        "config invalid; auth.jwt.role: must not have surrounding whitespace"
    );
}

#[test]
fn probe_interval_not_below_status_max_staleness_is_refused() {
    let equal = minimal_plus("status:\n  probeInterval: 2m\n");
    let above = minimal_plus("status:\n  probeInterval: 5m\n  statusMaxStaleness: 1m\n");

    assert_eq!(
        error_text(&equal),
        "config invalid; status.probeInterval: must be less than status.statusMaxStaleness (2m0s)"
    );
    assert_eq!(
        error_text(&above),
        "config invalid; status.probeInterval: must be less than status.statusMaxStaleness (1m0s)"
    );
}

#[test]
fn token_renewal_increment_not_above_login_before_token_expiry_is_refused() {
    let yaml = minimal_with(
        "auth:\n",
        "auth:\n  loginBeforeTokenExpiry: 30m\n  tokenRenewalIncrement: 30m\n",
    );

    assert_eq!(
        error_text(&yaml),
        "config invalid; auth.tokenRenewalIncrement: must be greater than \
         auth.loginBeforeTokenExpiry (30m0s)"
    );
}

#[test]
fn a_zero_login_timeout_resolves_to_the_larger_of_openbao_timeout_and_five_seconds() {
    let short = parse(&minimal_with("auth:\n", "auth:\n  loginTimeout: 0s\n")).unwrap();
    let long = parse(&minimal_with(
        "  instanceId: bao-prod-a\n",
        "  instanceId: bao-prod-a\n  timeout: 9s\n",
    ))
    .unwrap();

    assert_eq!(short.auth.login_timeout, Duration::from_secs(5));
    assert_eq!(long.auth.login_timeout, Duration::from_secs(9));
}

#[test]
fn an_openbao_address_must_be_plain_https_to_a_host() {
    let cases = [
        (
            "http://openbao.example:8200",
            "must use https (plain http is refused)",
        ),
        ("https://openbao.example:8200/v1", "must not have a path"),
        (
            "https://user@openbao.example",
            "must not contain user information",
        ),
        ("https://openbao.example?x=1", "must not have a query"),
        ("https://openbao.example#f", "must not have a fragment"),
        ("openbao.example:8200", "must be an https:// URL"),
    ];
    for (address, message) in cases {
        let yaml = minimal_with("https://openbao.example:8200", address);
        let text = error_text(&yaml);
        assert!(
            text.starts_with(&format!("config invalid; openbao.address: {message}")),
            "{text}"
        );
    }
}

#[test]
fn a_socket_outside_the_approved_directories_is_refused() {
    let yaml = minimal_plus("server:\n  socketPath: /tmp/kms.sock\n");

    assert_eq!(
        error_text(&yaml),
        "config invalid; server.socketPath: must be directly inside one of \
         server.socketDirectories (/run/openbao-kms, /var/run/openbao-kms)"
    );
}

#[test]
fn a_socket_in_a_subdirectory_of_an_approved_directory_is_refused() {
    let yaml = minimal_plus("server:\n  socketPath: /run/openbao-kms/sub/kms.sock\n");

    assert_eq!(problem_fields(&yaml), ["server.socketPath"]);
}

#[test]
fn a_socket_is_allowed_in_a_directory_listed_in_socket_directories() {
    let yaml = minimal_plus(
        "server:\n  socketPath: /var/lib/kms/kms.sock\n  socketDirectories: [/var/lib/kms/]\n",
    );

    let config = parse(&yaml).unwrap();

    assert_eq!(
        config.server.socket_path,
        PathBuf::from("/var/lib/kms/kms.sock")
    );
    assert_eq!(config.additions_used(), ["server.socketDirectories"]);
}

#[test]
fn socket_directories_must_be_absolute_and_not_empty() {
    let empty = minimal_plus("server:\n  socketDirectories: []\n");
    let relative = minimal_plus("server:\n  socketDirectories: [/run/openbao-kms, run/x]\n");

    assert_eq!(
        error_text(&empty),
        "config invalid; server.socketDirectories: must list at least one directory"
    );
    assert_eq!(
        error_text(&relative),
        "config invalid; server.socketDirectories[1]: must be an absolute path"
    );
}

#[test]
fn a_socket_path_too_long_for_a_unix_socket_is_refused() {
    let long = format!("/run/openbao-kms/{}.sock", "k".repeat(100));
    let yaml = minimal_plus(&format!("server:\n  socketPath: {long}\n"));

    assert!(error_text(&yaml).contains("must be at most 107 bytes"));
}

#[test]
fn a_socket_mode_with_execute_or_world_bits_or_bad_syntax_is_refused() {
    for mode in ["0770", "0664", "0661"] {
        let yaml = minimal_plus(&format!("server:\n  socketMode: \"{mode}\"\n"));
        assert!(
            error_text(&yaml).contains("server.socketMode: must not grant execute bits"),
            "{mode}"
        );
    }
    for mode in ["660", "0860", "00660", "rw-rw----"] {
        let yaml = minimal_plus(&format!("server:\n  socketMode: \"{mode}\"\n"));
        assert!(
            error_text(&yaml).contains("server.socketMode: must be a quoted octal"),
            "{mode}"
        );
    }
}

#[test]
fn a_socket_group_is_a_group_name_or_a_decimal_gid() {
    for good in ["openbao-kms-socket", "\"996\"", "\"0\""] {
        let yaml = minimal_plus(&format!("server:\n  socketGroup: {good}\n"));
        assert!(parse(&yaml).is_ok(), "{good}");
    }
    for bad in ["\"\"", "\"4294967295\"", "\"kms socket\"", "\"-x\""] {
        let yaml = minimal_plus(&format!("server:\n  socketGroup: {bad}\n"));
        assert_eq!(problem_fields(&yaml), ["server.socketGroup"], "{bad}");
    }
}

#[test]
fn metrics_and_health_on_the_same_endpoint_are_refused() {
    let yaml = minimal_plus(
        "server:\n  metricsAddress: 127.0.0.1:9000\n  healthAddress: \"[::ffff:127.0.0.1]:9000\"\n",
    );

    assert_eq!(
        error_text(&yaml),
        "config invalid; server.healthAddress: [::ffff:127.0.0.1]:9000 must differ from \
         server.metricsAddress 127.0.0.1:9000 (use port 0 or an empty address to disable one)"
    );
}

#[test]
fn listen_addresses_may_share_port_zero_or_be_disabled() {
    let ephemeral =
        minimal_plus("server:\n  metricsAddress: 127.0.0.1:0\n  healthAddress: 127.0.0.1:0\n");
    let disabled = minimal_plus("server:\n  metricsAddress: \"\"\n  healthAddress: \"\"\n");

    assert!(parse(&ephemeral).is_ok());
    let disabled = parse(&disabled).unwrap();
    assert_eq!(disabled.server.metrics_address, None);
    assert_eq!(disabled.server.health_address, None);
}

#[test]
fn a_listen_address_without_host_or_port_is_refused() {
    let no_host = minimal_plus("server:\n  metricsAddress: \":8081\"\n");
    let no_port = minimal_plus("server:\n  healthAddress: localhost\n");

    assert_eq!(problem_fields(&no_host), ["server.metricsAddress"]);
    assert_eq!(problem_fields(&no_port), ["server.healthAddress"]);
}

#[test]
fn concurrency_limits_outside_1_to_1024_are_refused() {
    let yaml = minimal_plus(concat!(
        "server:\n",
        "  maxConcurrentStatus: 0\n",
        "  maxConcurrentEncrypt: 1025\n",
        "  maxConcurrentDecrypt: -1\n",
    ));

    assert_eq!(
        problem_fields(&yaml),
        [
            "server.maxConcurrentStatus",
            "server.maxConcurrentEncrypt",
            "server.maxConcurrentDecrypt"
        ]
    );
}

#[test]
fn a_section_for_an_auth_method_other_than_the_selected_one_is_refused() {
    let yaml = minimal_with(
        "auth:\n",
        "auth:\n  token:\n    tokenFile: /etc/openbao-kms/token\n",
    );

    assert_eq!(
        error_text(&yaml),
        "config invalid; auth.token: is set but auth.method is jwt"
    );
}

#[test]
fn token_auth_needs_an_absolute_token_file() {
    let auth = "auth:\n  jwt:\n    mountPath: auth/k8s-workload-a-jwt\n    role: kms-provider\n    \
                jwtFile: /var/lib/openbao-kms/identity.jwt\n";
    let missing = MINIMAL.replace(auth, "auth:\n  method: token\n");
    let relative = MINIMAL.replace(
        auth,
        "auth:\n  method: token\n  token:\n    tokenFile: token\n",
    );
    let good = MINIMAL.replace(
        auth,
        "auth:\n  method: token\n  token:\n    tokenFile: /etc/t\n",
    );

    assert_eq!(
        error_text(&missing),
        "config invalid; auth.token.tokenFile: is required"
    );
    assert_eq!(
        error_text(&relative),
        "config invalid; auth.token.tokenFile: must be an absolute path"
    );
    let config = parse(&good).unwrap();
    assert_eq!(
        config.auth.method,
        AuthMethod::Token {
            token_file: PathBuf::from("/etc/t")
        }
    );
    assert_eq!(config.additions_used(), ["auth.token"]);
    assert_eq!(config.resolved_summary().auth_method, "token");
}

#[test]
fn approle_auth_defaults_its_mount_path_and_needs_both_id_files() {
    let auth = "auth:\n  jwt:\n    mountPath: auth/k8s-workload-a-jwt\n    role: kms-provider\n    \
                jwtFile: /var/lib/openbao-kms/identity.jwt\n";
    let good = MINIMAL.replace(
        auth,
        "auth:\n  method: approle\n  approle:\n    roleIdFile: /etc/r\n    secretIdFile: /etc/s\n",
    );
    let missing = MINIMAL.replace(
        auth,
        "auth:\n  method: approle\n  approle:\n    mountPath: x\n",
    );

    let config = parse(&good).unwrap();
    assert_eq!(
        config.auth.method,
        AuthMethod::AppRole {
            mount_path: "auth/approle".into(),
            role_id_file: PathBuf::from("/etc/r"),
            secret_id_file: PathBuf::from("/etc/s"),
        }
    );
    assert_eq!(
        error_text(&missing),
        "config invalid; auth.approle.mountPath: must start with auth/ (for example auth/jwt); \
         auth.approle.roleIdFile: is required; auth.approle.secretIdFile: is required"
    );
}

#[test]
fn an_unsupported_auth_method_is_refused() {
    let cert = minimal_with("auth:\n", "auth:\n  method: cert\n");
    let other = minimal_with("auth:\n", "auth:\n  method: kubernetes\n");

    assert_eq!(
        error_text(&cert),
        "config invalid; auth.method: cert is not supported by this release; use jwt, token or \
         approle"
    );
    assert_eq!(
        error_text(&other),
        "config invalid; auth.method: must be one of jwt, token, approle"
    );
}

#[test]
fn the_oauth2_jwt_source_is_refused_with_a_clear_message() {
    let yaml = minimal_with("  jwt:\n", "  jwt:\n    source: oauth2\n");

    assert_eq!(
        error_text(&yaml),
        "config invalid; auth.jwt.source: oauth2 is not supported by this release; use source: \
         file with jwtFile"
    );
}

#[test]
fn a_jwt_mount_path_must_be_relative_and_under_auth() {
    for (path, message) in [
        ("/auth/jwt", "must be relative (no leading /)"),
        ("jwt", "must start with auth/ (for example auth/jwt)"),
        ("auth//jwt", "must not contain empty, . or .. segments"),
        ("auth/../sys", "must not contain empty, . or .. segments"),
    ] {
        let yaml = minimal_with("auth/k8s-workload-a-jwt", path);
        assert_eq!(
            error_text(&yaml),
            format!("config invalid; auth.jwt.mountPath: {message}"),
            "{path}"
        );
    }
}

#[test]
fn an_empty_expected_audience_entry_is_refused_by_index() {
    let yaml = minimal_with(
        "    role: kms-provider\n",
        "    role: kms-provider\n    expectedAudience: [a, \"\"]\n",
    );

    assert_eq!(
        error_text(&yaml),
        "config invalid; auth.jwt.expectedAudience[1]: is required"
    );
}

#[test]
fn identity_problems_name_their_fields() {
    let yaml = minimal_with(
        "  instanceId: bao-prod-a\n",
        "  instanceId: bao-prod-a\n  namespace: /root\n",
    )
    .replace("keyName: kms-key", "keyName: \"kms key\"");

    assert_eq!(
        problem_fields(&yaml),
        ["openbao.namespace", "transit.keyName"]
    );
}

#[test]
fn only_the_observed_rotation_mode_exists() {
    let yaml = minimal_plus("rotation:\n  mode: manual\n  requireStableObservationCount: 0\n");

    assert_eq!(
        error_text(&yaml),
        "config invalid; rotation.mode: must be observed (the only mode of this release); \
         rotation.requireStableObservationCount: must be between 1 and 1000"
    );
}

#[test]
fn decrypt_batch_max_items_outside_1_to_128_is_refused() {
    let zero = minimal_plus("performance:\n  decryptBatchMaxItems: 0\n");
    let big = minimal_plus("performance:\n  decryptBatchMaxItems: 129\n");

    for yaml in [zero, big] {
        assert_eq!(
            error_text(&yaml),
            "config invalid; performance.decryptBatchMaxItems: must be between 1 and 128"
        );
    }
}

#[test]
fn malformed_yaml_reports_the_decoder_message_with_its_position() {
    let text = error_text("configVersion: v1alpha1\nserver: [unclosed\n");

    assert!(text.starts_with("config invalid; "), "{text}");
    assert!(text.contains("line "), "{text}");
}

#[test]
fn a_duplicate_key_is_refused() {
    let text = error_text(&minimal_with(
        "configVersion: v1alpha1\n",
        "configVersion: v1alpha1\nconfigVersion: v1alpha1\n",
    ));

    assert!(text.contains("duplicate field `configVersion`"), "{text}");
}

#[test]
fn an_unquoted_leading_zero_mode_is_a_yaml_string_but_a_plain_number_is_not() {
    let leading_zero = minimal_plus("server:\n  socketMode: 0600\n");
    let plain_number = minimal_plus("server:\n  socketMode: 600\n");

    assert_eq!(parse(&leading_zero).unwrap().server.socket_mode, 0o600);
    assert!(error_text(&plain_number).contains("server.socketMode: invalid type: integer `600`"));
}

#[test]
fn the_documented_example_configurations_are_valid() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reference/configuration.md"
    ))
    .unwrap();
    let examples: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();

    assert_eq!(examples.len(), 2);
    let methods: Vec<&str> = examples
        .iter()
        .map(|yaml| parse(yaml).unwrap().auth.method.name())
        .collect();
    assert_eq!(methods, ["token", "jwt"]);
}
