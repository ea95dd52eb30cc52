//! The OpenBao client: HTTPS transport, token management and Transit calls.
//!
//! [`OpenBaoClient`] turns the core's [`TransitRequest`]s into OpenBao Transit calls and the
//! answers into [`TransitResponse`]s or classified [`TransitFailure`]s. Everything here is
//! blocking (ureq) and meant to run on tokio's blocking pool (`spawn_blocking`), bounded by a
//! semaphore in the caller; one pooled agent is shared by every call.
//!
//! - [`http`]: the agent (CA-only trust, pinned TLS server name, no redirects, bounded bodies)
//!   and the failure classification.
//! - [`auth`]: token lifecycle (login, refresh ahead, shared flight, rate-limited recovery).
//! - [`transit`]: request encoding and answer decoding.
//! - [`clock`]: time as an input.

pub mod auth;
pub mod clock;
pub mod http;
mod node;
pub mod transit;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bao_kms_core::transit::{TransitFailure, TransitRequest, TransitResponse};
use serde_json::Value;

use self::auth::{AuthBuildError, RefreshPolicy};
pub use self::auth::{AuthSettings, AuthStats, TokenManager};
pub use self::clock::Clock;
pub use self::http::OpenBaoHttp;
use self::http::{
    ApiRequest, HttpBuildError, HttpSettings, malformed_response, normalize_mount_path,
};
pub use self::transit::TransitClient;

/// The smallest login timeout used when `login_timeout` is zero (`max(timeout, 5s)`).
pub const DEFAULT_MIN_LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the CA certificates trusted for OpenBao come from.
#[derive(Clone, Eq, PartialEq)]
pub enum CaCertificates {
    /// PEM text already in memory.
    Pem(Vec<u8>),
    /// A PEM file, read once when the client is built.
    File(PathBuf),
}

impl fmt::Debug for CaCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem(pem) => write!(f, "Pem({} bytes)", pem.len()),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Everything the OpenBao client needs; plain values, mapped from the configuration.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClientSettings {
    /// `openbao.address`: `https://host[:port]`.
    pub address: String,
    /// The other nodes of the same HA cluster (`openbao.addresses` after the first).
    pub more_addresses: Vec<String>,
    /// `openbao.caCertFile`: the only trusted CA certificates.
    pub ca_certificates: CaCertificates,
    /// `openbao.tlsServerName`: verified in the certificate and sent as SNI. When it differs
    /// from the address host, the client still connects to the address.
    pub tls_server_name: Option<String>,
    /// `openbao.namespace`, sent as `X-Vault-Namespace` on auth and Transit calls.
    pub namespace: Option<String>,
    /// `openbao.timeout`: deadline of each Transit call.
    pub timeout: Duration,
    /// `transit.mountPath`.
    pub mount_path: String,
    /// `transit.keyName`.
    pub key_name: String,
    /// `auth.*`.
    pub auth: AuthSettings,
    /// `auth.loginBeforeTokenExpiry`.
    pub login_before_token_expiry: Duration,
    /// `auth.tokenRenewalIncrement`.
    pub token_renewal_increment: Duration,
    /// `auth.loginTimeout`; zero means `max(timeout, 5s)`.
    pub login_timeout: Duration,
}

/// Why the client could not be built. Messages name the setting, never a path or secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    /// The CA certificate file could not be read.
    #[error("openbao CA certificate file is unreadable ({0})")]
    CaCertificateUnreadable(std::io::ErrorKind),
    /// The transport settings are invalid.
    #[error(transparent)]
    Http(#[from] HttpBuildError),
    /// The auth settings are invalid.
    #[error(transparent)]
    Auth(#[from] AuthBuildError),
    /// `transit.mountPath` is empty or has an empty or dot segment.
    #[error("transit mount path is invalid")]
    InvalidMountPath,
    /// `transit.keyName` does not match `^\w(([\w-.]+)?\w)?$`.
    #[error("transit key name is invalid")]
    InvalidKeyName,
}

/// `GET sys/health`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HealthInfo {
    /// The HTTP status (200 active, 429 standby, 472/473 performance standby, 501
    /// uninitialized, 503 sealed).
    pub http_status: u16,
    /// The server is initialized.
    pub initialized: bool,
    /// The server is sealed.
    pub sealed: bool,
    /// The node is a standby.
    pub standby: bool,
    /// The server version, e.g. `2.7.2`.
    pub version: String,
}

/// The OpenBao client: transport, token manager and Transit calls for one key. Cheap to
/// clone; clones share the connection pool and the token.
#[derive(Clone, Debug)]
pub struct OpenBaoClient {
    http: Arc<OpenBaoHttp>,
    auth: Arc<TokenManager>,
    transit: TransitClient,
}

impl OpenBaoClient {
    /// Builds the client with the real clock. No network IO happens here.
    ///
    /// # Errors
    /// [`ClientBuildError`] for unreadable or invalid settings.
    pub fn new(settings: ClientSettings) -> Result<Self, ClientBuildError> {
        Self::with_clock(settings, Clock::system())
    }

    /// Builds the client with the given clock.
    ///
    /// # Errors
    /// [`ClientBuildError`] for unreadable or invalid settings.
    pub fn with_clock(settings: ClientSettings, clock: Clock) -> Result<Self, ClientBuildError> {
        let mount =
            normalize_mount_path(&settings.mount_path).ok_or(ClientBuildError::InvalidMountPath)?;
        if !valid_key_name(&settings.key_name) {
            return Err(ClientBuildError::InvalidKeyName);
        }
        let ca_cert_pem = match settings.ca_certificates {
            CaCertificates::Pem(pem) => pem,
            CaCertificates::File(path) => std::fs::read(&path)
                .map_err(|error| ClientBuildError::CaCertificateUnreadable(error.kind()))?,
        };
        let http = Arc::new(OpenBaoHttp::new(&HttpSettings {
            address: settings.address,
            more_addresses: settings.more_addresses,
            ca_cert_pem,
            tls_server_name: settings.tls_server_name,
            namespace: settings.namespace,
            timeout: settings.timeout,
        })?);
        let login_timeout = if settings.login_timeout.is_zero() {
            settings.timeout.max(DEFAULT_MIN_LOGIN_TIMEOUT)
        } else {
            settings.login_timeout
        };
        let policy = RefreshPolicy {
            login_before_token_expiry: settings.login_before_token_expiry,
            token_renewal_increment: settings.token_renewal_increment,
            login_timeout,
        };
        let auth = Arc::new(TokenManager::new(
            Arc::clone(&http),
            settings.auth,
            policy,
            clock,
        )?);
        let transit = TransitClient::new(
            Arc::clone(&http),
            Arc::clone(&auth),
            &mount,
            &settings.key_name,
        );
        Ok(Self {
            http,
            auth,
            transit,
        })
    }

    /// Runs one Transit request (blocking).
    ///
    /// # Errors
    /// The classified failure.
    pub fn execute(&self, request: &TransitRequest) -> Result<TransitResponse, TransitFailure> {
        self.transit.execute(request)
    }

    /// Runs one Transit request within `budget`, the time its caller has left (blocking).
    ///
    /// # Errors
    /// The classified failure; a timeout at once when the budget is zero.
    pub fn execute_within(
        &self,
        request: &TransitRequest,
        budget: Duration,
    ) -> Result<TransitResponse, TransitFailure> {
        self.transit.execute_within(request, budget)
    }

    /// Logs in now unless a usable token is held (e.g. at startup).
    ///
    /// # Errors
    /// The classified login failure.
    pub fn ensure_token(&self) -> Result<(), TransitFailure> {
        self.auth.ensure_token()
    }

    /// `GET sys/health` without a token or namespace. Every documented health status (200,
    /// 429, 472, 473, 501, 503) with a well-formed body is `Ok`; the caller reads `sealed`,
    /// `standby` and `initialized`.
    ///
    /// # Errors
    /// The classified failure for transport errors, other statuses or a malformed body.
    pub fn health(&self) -> Result<HealthInfo, TransitFailure> {
        let response = self
            .http
            .send(ApiRequest::get("sys/health").root_namespace())?;
        let status = response.status();
        if !matches!(status, 200 | 429 | 472 | 473 | 501 | 503) {
            return Err(response.failure());
        }
        let body = response.body();
        let flag = |name: &str| body.get(name).and_then(Value::as_bool);
        match (flag("initialized"), flag("sealed"), flag("standby")) {
            (Some(initialized), Some(sealed), Some(standby)) => Ok(HealthInfo {
                http_status: status,
                initialized,
                sealed,
                standby,
                version: body
                    .get("version")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
            _ if response.is_success() => Err(malformed_response(Some(status))),
            _ => Err(response.failure()),
        }
    }

    /// Seconds of token lifetime left (see [`TokenManager::token_ttl_seconds`]).
    pub fn token_ttl_seconds(&self) -> Option<f64> {
        self.auth.token_ttl_seconds()
    }

    /// Every configured node with its role as last seen (the core's type).
    pub fn node_roles(&self) -> Vec<(String, bao_kms_core::cluster::NodeRole)> {
        self.http.node_roles()
    }

    /// Every configured node with its role as last seen, and the address calls go to now.
    pub fn nodes(&self) -> (Vec<(String, &'static str)>, String) {
        let roles = self
            .http
            .node_roles()
            .into_iter()
            .map(|(address, role)| (address, role.as_str()))
            .collect();
        (roles, self.http.current_address().to_owned())
    }

    /// Login and renewal counters.
    pub fn auth_stats(&self) -> AuthStats {
        self.auth.stats()
    }

    /// Requests handed to the network so far, all kinds included.
    pub fn requests_sent(&self) -> u64 {
        self.http.requests_sent()
    }

    /// The Transit client.
    pub fn transit(&self) -> &TransitClient {
        &self.transit
    }

    /// The shared token manager.
    pub fn token_manager(&self) -> &Arc<TokenManager> {
        &self.auth
    }
}

/// OpenBao's `GenericNameRegex` for key names: `^\w(([\w-.]+)?\w)?$` (ASCII).
fn valid_key_name(name: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            word(first) && word(last) && bytes.iter().all(|&b| word(b) || b == b'-' || b == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_the_generic_name_regex() {
        for good in ["k", "kms-key", "kms.key_2", "a-b.c"] {
            assert!(valid_key_name(good), "{good}");
        }
        for bad in ["", "-k", "k-", "k/ey", "k ey", "kéy", ".k"] {
            assert!(!valid_key_name(bad), "{bad}");
        }
    }
}
