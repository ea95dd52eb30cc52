//! The YAML file as written: strict serde structs, every field optional so defaults and
//! "is required" problems are decided by validation, not by the decoder.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileConfig {
    pub(super) config_version: Option<Text>,
    pub(super) server: Option<ServerSection>,
    pub(super) openbao: Option<OpenBaoSection>,
    pub(super) auth: Option<AuthSection>,
    pub(super) transit: Option<TransitSection>,
    pub(super) state: Option<StateSection>,
    pub(super) bootstrap: Option<BootstrapSection>,
    pub(super) status: Option<StatusSection>,
    pub(super) rotation: Option<RotationSection>,
    pub(super) logging: Option<LoggingSection>,
    pub(super) performance: Option<PerformanceSection>,
}

/// `server`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ServerSection {
    pub(super) socket_path: Option<Text>,
    pub(super) socket_mode: Option<Text>,
    pub(super) socket_group: Option<Text>,
    pub(super) socket_directories: Option<Vec<Text>>,
    pub(super) metrics_address: Option<Text>,
    pub(super) health_address: Option<Text>,
    pub(super) max_concurrent_status: Option<i64>,
    pub(super) max_concurrent_encrypt: Option<i64>,
    pub(super) max_concurrent_decrypt: Option<i64>,
}

/// `openbao`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct OpenBaoSection {
    pub(super) address: Option<Text>,
    pub(super) addresses: Option<Vec<Text>>,
    pub(super) ca_cert_file: Option<Text>,
    pub(super) tls_server_name: Option<Text>,
    pub(super) instance_id: Option<Text>,
    pub(super) namespace: Option<Text>,
    pub(super) timeout: Option<DurationText>,
}

/// `auth`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AuthSection {
    pub(super) method: Option<Text>,
    pub(super) login_before_token_expiry: Option<DurationText>,
    pub(super) token_renewal_increment: Option<DurationText>,
    pub(super) login_timeout: Option<DurationText>,
    pub(super) jwt: Option<JwtSection>,
    pub(super) token: Option<TokenSection>,
    pub(super) approle: Option<AppRoleSection>,
}

/// `auth.jwt`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JwtSection {
    pub(super) source: Option<Text>,
    pub(super) mount_path: Option<Text>,
    pub(super) role: Option<Text>,
    pub(super) jwt_file: Option<Text>,
    pub(super) min_remaining_ttl: Option<DurationText>,
    pub(super) clock_skew_leeway: Option<DurationText>,
    pub(super) expected_issuer: Option<Text>,
    pub(super) expected_audience: Option<Vec<Text>>,
    pub(super) expected_subject: Option<Text>,
}

/// `auth.token` (our addition).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TokenSection {
    pub(super) token_file: Option<Text>,
}

/// `auth.approle` (our addition).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AppRoleSection {
    pub(super) mount_path: Option<Text>,
    pub(super) role_id_file: Option<Text>,
    pub(super) secret_id_file: Option<Text>,
}

/// `transit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TransitSection {
    pub(super) mount_path: Option<Text>,
    pub(super) key_name: Option<Text>,
    pub(super) key_id_scope: Option<KeyIdScopeSection>,
}

/// `transit.keyIdScope`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct KeyIdScopeSection {
    pub(super) provider_name: Option<Text>,
    pub(super) cluster_id: Option<Text>,
    pub(super) transit_mount_id: Option<Text>,
    pub(super) key_lineage_id: Option<Text>,
}

/// `state`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StateSection {
    pub(super) path: Option<Text>,
}

/// `bootstrap`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct BootstrapSection {
    pub(super) grace_timeout: Option<DurationText>,
    pub(super) retry_interval: Option<DurationText>,
}

/// `status`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StatusSection {
    pub(super) probe_interval: Option<DurationText>,
    pub(super) deep_probe_interval: Option<DurationText>,
    pub(super) status_max_staleness: Option<DurationText>,
}

/// `rotation`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RotationSection {
    pub(super) mode: Option<Text>,
    pub(super) activation_delay: Option<DurationText>,
    pub(super) require_stable_observation_count: Option<i64>,
    pub(super) reject_version_rollback: Option<bool>,
}

/// `logging`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LoggingSection {
    pub(super) level: Option<Text>,
    pub(super) format: Option<Text>,
    #[serde(rename = "logOpenBaoRequestIDs")]
    pub(super) log_openbao_request_ids: Option<bool>,
}

/// `performance` (our addition).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PerformanceSection {
    pub(super) decrypt_batch_max_items: Option<i64>,
}

/// A YAML string that was written as a string.
///
/// serde_norway hands a plain scalar such as `120` or `true` to a `String` field as text; this
/// type asks for the scalar's own type instead, so only real strings (quoted, or plain scalars
/// that resolve to strings) are accepted.
#[derive(Clone, Debug, Default)]
pub(super) struct Text(pub(super) String);

impl Text {
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_any(StrictString {
            expected: "a string (quote values that look like numbers or booleans)",
        })?;
        Ok(Self(text))
    }
}

/// A duration, which must be a YAML string in Go syntax (`30s`); a bare number is refused here.
#[derive(Clone, Debug, Default)]
pub(super) struct DurationText(pub(super) String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_any(StrictString {
            expected: "a duration string with a unit, such as \"30s\" or \"500ms\"",
        })?;
        Ok(Self(text))
    }
}

/// Accepts strings only; every other scalar type becomes serde's "invalid type" error.
struct StrictString {
    expected: &'static str,
}

impl Visitor<'_> for StrictString {
    type Value = String;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expected)
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(value.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(value)
    }
}
