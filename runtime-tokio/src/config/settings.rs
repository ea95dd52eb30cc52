//! The validated configuration, as the rest of the runtime consumes it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bao_kms_core::ProviderConfig;
use bao_kms_core::config::{BatchPolicy, BreakerPolicy, ConcurrencyLimits};
use bao_kms_core::identity::{Fingerprint, IdentityScope};
use serde::Serialize;

/// A validated configuration: defaults applied, file, environment and flags merged.
///
/// Build one with [`load`](super::load) or [`parse_str`](super::parse_str); filesystem checks
/// are separate ([`check_files`](super::check_files)).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Config {
    /// `server.*`.
    pub server: ServerSettings,
    /// `openbao.*` (the identity-bearing `instanceId` lives in [`Config::identity`]).
    pub openbao: OpenBaoSettings,
    /// `auth.*`.
    pub auth: AuthSettings,
    /// `state.path`: the registry state file; checkpoint, lock and temporary files sit beside it.
    pub state_path: PathBuf,
    /// `bootstrap.*`.
    pub bootstrap: BootstrapSettings,
    /// `status.*`.
    pub status: StatusSettings,
    /// `rotation.*`.
    pub rotation: RotationSettings,
    /// `logging.*`.
    pub logging: LoggingSettings,
    /// `performance.decryptBatchMaxItems`.
    pub decrypt_batching: BatchPolicy,
    pub(super) identity: IdentityScope,
    pub(super) config_path: Option<PathBuf>,
    pub(super) additions: Vec<&'static str>,
}

impl Config {
    /// Builds the core's configuration from this one.
    ///
    /// `rng_seed` seeds the deep-probe plaintext generator; the caller fills it from the OS.
    pub fn provider_config(&self, plugin_version: &str, rng_seed: [u8; 32]) -> ProviderConfig {
        ProviderConfig {
            identity: self.identity.clone(),
            plugin_version: plugin_version.to_owned(),
            probe_interval: self.status.probe_interval,
            deep_probe_interval: self.status.deep_probe_interval,
            status_max_staleness: self.status.status_max_staleness,
            activation_delay: self.rotation.activation_delay,
            require_stable_observation_count: self.rotation.require_stable_observation_count,
            reject_version_rollback: self.rotation.reject_version_rollback,
            request_timeout: self.openbao.timeout,
            bootstrap_retry_interval: self.bootstrap.retry_interval,
            concurrency: self.server.concurrency,
            breaker: BreakerPolicy::default(),
            batching: self.decrypt_batching,
            rng_seed,
        }
    }

    /// The validated identity values every key_id is bound to.
    pub fn identity(&self) -> &IdentityScope {
        &self.identity
    }

    /// The `cfg1.` fingerprint of the identity values.
    pub fn identity_fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// The file this configuration was read from, when it came from [`load`](super::load).
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// The keys of this file that only this release understands (an older provider would
    /// refuse them as unknown), in schema order.
    pub fn additions_used(&self) -> &[&'static str] {
        &self.additions
    }

    /// The values the `config` command prints.
    pub fn resolved_summary(&self) -> ResolvedSummary {
        ResolvedSummary {
            config_version: CONFIG_VERSION,
            socket_path: self.server.socket_path.display().to_string(),
            metrics_address: self.server.metrics_address.clone().unwrap_or_default(),
            health_address: self.server.health_address.clone().unwrap_or_default(),
            auth_method: self.auth.method.name(),
            identity_fingerprint: self.identity_fingerprint().as_str().to_owned(),
        }
    }
}

/// `server.*`: the KMS socket, the HTTP listeners and the request limits.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ServerSettings {
    /// `server.socketPath`: absolute, inside one of [`Self::socket_directories`].
    pub socket_path: PathBuf,
    /// `server.socketMode`: permission bits of the socket (never execute bits or `other` access).
    pub socket_mode: u32,
    /// `server.socketGroup`: a group name or a decimal gid; `None` keeps the process group.
    pub socket_group: Option<String>,
    /// `server.socketDirectories` (our addition): the directories a socket may live in.
    pub socket_directories: Vec<PathBuf>,
    /// `server.metricsAddress` as `host:port`; `None` disables the metrics listener.
    pub metrics_address: Option<String>,
    /// `server.healthAddress` as `host:port`; `None` disables the health listener.
    pub health_address: Option<String>,
    /// `server.maxConcurrentStatus`, `maxConcurrentEncrypt` and `maxConcurrentDecrypt`.
    pub concurrency: ConcurrencyLimits,
}

/// `openbao.*`: where OpenBao is and how to trust it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct OpenBaoSettings {
    /// `openbao.address`: `https://host[:port]`, scheme lowercased, without a trailing slash.
    /// With `openbao.addresses`, the first node of the list.
    pub address: String,
    /// `openbao.addresses` (our addition) after the first: the other nodes of the same HA
    /// cluster, in order. Empty for a single address.
    pub more_addresses: Vec<String>,
    /// `openbao.caCertFile`: the only trust anchors for the OpenBao connection.
    pub ca_cert_file: PathBuf,
    /// `openbao.tlsServerName`: the name the server certificate must carry.
    pub tls_server_name: String,
    /// `openbao.namespace`, sent as `X-Vault-Namespace`; `None` when not set.
    pub namespace: Option<String>,
    /// `openbao.timeout`: deadline of each OpenBao request and of each KMS request.
    pub timeout: Duration,
}

/// `auth.*`: how the provider obtains and keeps an OpenBao token.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AuthSettings {
    /// `auth.method` with the settings of that method.
    pub method: AuthMethod,
    /// `auth.loginBeforeTokenExpiry`: renew or log in again this long before the token expires.
    pub login_before_token_expiry: Duration,
    /// `auth.tokenRenewalIncrement`: the increment asked for on renewal.
    pub token_renewal_increment: Duration,
    /// `auth.loginTimeout`, resolved: `0s` in the file means `max(openbao.timeout, 5s)`.
    pub login_timeout: Duration,
}

/// The selected authentication method and its settings.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum AuthMethod {
    /// `auth.method: jwt` with a JWT read from a file.
    Jwt(JwtSettings),
    /// `auth.method: token` (our addition): a token read from a file, renewed, never logged in.
    Token {
        /// `auth.token.tokenFile`.
        token_file: PathBuf,
    },
    /// `auth.method: approle` (our addition): AppRole login with ids read from files.
    AppRole {
        /// `auth.approle.mountPath`, relative, starting with `auth/`, no trailing slash.
        mount_path: String,
        /// `auth.approle.roleIdFile`.
        role_id_file: PathBuf,
        /// `auth.approle.secretIdFile`.
        secret_id_file: PathBuf,
    },
}

impl AuthMethod {
    /// The `auth.method` value: `jwt`, `token` or `approle`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Jwt(_) => "jwt",
            Self::Token { .. } => "token",
            Self::AppRole { .. } => "approle",
        }
    }

    /// Every credential file this method reads, with its field name.
    pub fn credential_files(&self) -> Vec<(&'static str, &Path)> {
        match self {
            Self::Jwt(jwt) => vec![("auth.jwt.jwtFile", jwt.jwt_file.as_path())],
            Self::Token { token_file } => vec![("auth.token.tokenFile", token_file.as_path())],
            Self::AppRole {
                role_id_file,
                secret_id_file,
                ..
            } => vec![
                ("auth.approle.roleIdFile", role_id_file.as_path()),
                ("auth.approle.secretIdFile", secret_id_file.as_path()),
            ],
        }
    }
}

/// `auth.jwt.*` with `source: file`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct JwtSettings {
    /// `auth.jwt.mountPath`, relative, starting with `auth/`, no trailing slash.
    pub mount_path: String,
    /// `auth.jwt.role`.
    pub role: String,
    /// `auth.jwt.jwtFile`: re-read before every login.
    pub jwt_file: PathBuf,
    /// `auth.jwt.minRemainingTtl`: a JWT with less time left is not sent.
    pub min_remaining_ttl: Duration,
    /// `auth.jwt.clockSkewLeeway`: tolerance for `nbf`, `iat` and `exp`.
    pub clock_skew_leeway: Duration,
    /// `auth.jwt.expectedIssuer`: local `iss` check when set.
    pub expected_issuer: Option<String>,
    /// `auth.jwt.expectedAudience`: the JWT must carry one of these audiences when non-empty.
    pub expected_audience: Vec<String>,
    /// `auth.jwt.expectedSubject`: local `sub` check when set.
    pub expected_subject: Option<String>,
}

/// `bootstrap.*`: how long `serve` waits for a verified data path before failing.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BootstrapSettings {
    /// `bootstrap.graceTimeout`: `0s` means a single attempt.
    pub grace_timeout: Duration,
    /// `bootstrap.retryInterval`.
    pub retry_interval: Duration,
}

/// `status.*`: probe cadence and staleness.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct StatusSettings {
    /// `status.probeInterval`: always shorter than [`Self::status_max_staleness`].
    pub probe_interval: Duration,
    /// `status.deepProbeInterval`.
    pub deep_probe_interval: Duration,
    /// `status.statusMaxStaleness`.
    pub status_max_staleness: Duration,
}

/// `rotation.*` (the mode is always `observed`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RotationSettings {
    /// `rotation.activationDelay`.
    pub activation_delay: Duration,
    /// `rotation.requireStableObservationCount`.
    pub require_stable_observation_count: u32,
    /// `rotation.rejectVersionRollback`.
    pub reject_version_rollback: bool,
}

/// `logging.*`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct LoggingSettings {
    /// `logging.level`.
    pub level: LogLevel,
    /// `logging.format`.
    pub format: LogFormat,
    /// `logging.logOpenBaoRequestIDs`.
    pub log_openbao_request_ids: bool,
}

/// `logging.level` (`trace` is deliberately not offered).
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

impl LogLevel {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// `logging.format`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

/// What the `config` command prints: the effective values after defaults, file, environment and
/// flags.
///
/// `Display` writes YAML (one `key: "value"` line each); `Serialize` gives the same keys for JSON.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSummary {
    /// Always `v1alpha1`.
    pub config_version: &'static str,
    /// `server.socketPath`.
    pub socket_path: String,
    /// `server.metricsAddress`; empty when disabled.
    pub metrics_address: String,
    /// `server.healthAddress`; empty when disabled.
    pub health_address: String,
    /// `auth.method`.
    pub auth_method: &'static str,
    /// The `cfg1.` identity fingerprint.
    pub identity_fingerprint: String,
}

impl fmt::Display for ResolvedSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = [
            ("configVersion", self.config_version),
            ("socketPath", &self.socket_path),
            ("metricsAddress", &self.metrics_address),
            ("healthAddress", &self.health_address),
            ("authMethod", self.auth_method),
            ("identityFingerprint", &self.identity_fingerprint),
        ];
        for (key, value) in lines {
            // A JSON string is a valid YAML double-quoted scalar, so any path stays unambiguous.
            let quoted = serde_json::to_string(value).map_err(|_| fmt::Error)?;
            writeln!(f, "{key}: {quoted}")?;
        }
        Ok(())
    }
}

/// The only accepted `configVersion`.
pub const CONFIG_VERSION: &str = "v1alpha1";
