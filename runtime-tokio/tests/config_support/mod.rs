//! The configuration fixture shared by the configuration tests: a minimal valid file and a
//! parse that sees no process environment.
#![allow(dead_code, reason = "each test file uses the part it needs")]

use bao_kms_runtime_tokio::config::{Config, ConfigError, Overrides, parse_str};

/// The smallest valid configuration: every required key, nothing else.
pub(crate) const MINIMAL: &str = r#"
configVersion: v1alpha1
openbao:
  address: https://openbao.example:8200
  caCertFile: /etc/openbao-kms/tls/ca.crt
  tlsServerName: openbao.example
  instanceId: bao-prod-a
auth:
  jwt:
    mountPath: auth/k8s-workload-a-jwt
    role: kms-provider
    jwtFile: /var/lib/openbao-kms/identity.jwt
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: openbao-kms-workload-a
    clusterId: workload-a
    transitMountId: transit-prod-primary
    keyLineageId: 01HXEXAMPLEKEYLINEAGEID
"#;

/// An environment with no variables set.
pub(crate) fn no_env(_: &str) -> Option<String> {
    None
}

/// Parses `yaml` with no overrides and no environment.
pub(crate) fn parse(yaml: &str) -> Result<Config, ConfigError> {
    parse_str(yaml, &Overrides::default(), &no_env)
}
