//! The HTTPS transport to OpenBao and the classification of every failure.
//!
//! [`OpenBaoHttp`] sends each call to one node (see [`super::node`] for the TLS and transport
//! rules, and the core's `cluster` machine for which node). HTTP statuses are returned as data; the caller classifies them
//! with [`ApiResponse::failure`]. Error bodies (`{"errors":[...]}`) are read only to classify
//! and are never surfaced: a [`TransitFailure`] carries a class, a status and a retry hint only.
//!
//! Everything here blocks; run it on tokio's blocking pool.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bao_kms_core::cluster::{Cluster, NodeHealth, NodeRole};
use bao_kms_core::transit::{FailureClass, TransitFailure};
use serde_json::Value;

use super::auth::wipe::{WipedJson, wipe_json};
use super::node::NodeHttp;

/// Largest response body read from OpenBao; a larger body makes the call `Unavailable`.
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// Most OpenBao calls the plugin makes at once (the driver bounds its blocking calls by it).
pub const MAX_CALLS_IN_FLIGHT: usize = 64;

/// Idle keep-alive connections kept per host: as many as calls can be in flight, so a burst
/// that ends does not throw away connections the next burst needs (each new one is a TLS
/// handshake).
pub(super) const MAX_IDLE_CONNECTIONS: usize = MAX_CALLS_IN_FLIGHT;

/// Longest `Retry-After` honoured, so a hostile or broken server cannot park a caller forever.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Longest OpenBao request id copied into logs.
const MAX_REQUEST_ID_LEN: usize = 64;

/// What the transport needs to know; built from `ClientSettings` by the client.
#[derive(Clone)]
pub struct HttpSettings {
    /// `openbao.address`: `https://host[:port][/prefix]`.
    pub address: String,
    /// PEM text holding the only CA certificates trusted for OpenBao.
    pub ca_cert_pem: Vec<u8>,
    /// `openbao.tlsServerName`: the name verified in the server certificate and sent as SNI.
    /// `None` (or empty) uses the host of `address`.
    pub tls_server_name: Option<String>,
    /// `openbao.namespace`, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Deadline of each request unless the request sets its own.
    pub timeout: Duration,
    /// Further nodes of the same HA cluster (`openbao.addresses` after the first).
    pub more_addresses: Vec<String>,
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("address", &self.address)
            .field(
                "ca_cert_pem",
                &format_args!("{} bytes", self.ca_cert_pem.len()),
            )
            .field("tls_server_name", &self.tls_server_name)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why the transport could not be built. Messages name the setting, never a secret.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpBuildError {
    /// `openbao.address` is not an acceptable https URL.
    #[error("openbao address is invalid: {0}")]
    InvalidAddress(&'static str),
    /// `openbao.tlsServerName` is not a DNS name or IP address.
    #[error("openbao tlsServerName is not a valid DNS name or IP address")]
    InvalidTlsServerName,
    /// `openbao.namespace` cannot be sent as a header or is not a relative path.
    #[error("openbao namespace is invalid: {0}")]
    InvalidNamespace(&'static str),
    /// The CA PEM holds no usable certificate.
    #[error("openbao CA certificate file is invalid: {0}")]
    InvalidCaCertificate(&'static str),
    /// The timeout is zero.
    #[error("openbao timeout must be greater than zero")]
    InvalidTimeout,
}

/// HTTP method of an OpenBao call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST` with a JSON body.
    Post,
}

/// One OpenBao call. `Debug` shows the method only: paths, tokens and bodies stay out of logs.
#[derive(Clone, Copy)]
pub struct ApiRequest<'a> {
    pub(super) method: Method,
    pub(super) path: &'a str,
    pub(super) token: Option<&'a str>,
    pub(super) body: Option<&'a Value>,
    pub(super) timeout: Option<Duration>,
    pub(super) namespaced: bool,
}

impl<'a> ApiRequest<'a> {
    /// A `GET` of `path` (relative to `/v1/`, already escaped).
    pub fn get(path: &'a str) -> Self {
        Self {
            method: Method::Get,
            path,
            token: None,
            body: None,
            timeout: None,
            namespaced: true,
        }
    }

    /// A `POST` of `body` as JSON to `path` (relative to `/v1/`, already escaped).
    pub fn post(path: &'a str, body: &'a Value) -> Self {
        Self {
            method: Method::Post,
            path,
            token: None,
            body: Some(body),
            timeout: None,
            namespaced: true,
        }
    }

    /// Sends `X-Vault-Token`.
    #[must_use]
    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    /// Overrides the transport's default deadline (logins use `loginTimeout`).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Omits `X-Vault-Namespace` (root-only endpoints such as `sys/health`).
    #[must_use]
    pub fn root_namespace(mut self) -> Self {
        self.namespaced = false;
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }
}

impl fmt::Debug for ApiRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("token", &self.token.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// An HTTP answer of any status. `Debug` shows the status only: bodies may hold secrets, and
/// are wiped when dropped.
pub struct ApiResponse {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) retry_after: Option<Duration>,
    /// The `Location` of a 307/308 answer.
    pub(super) location: Option<String>,
}

impl ApiResponse {
    /// Builds a response; for tests of decoders.
    pub fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after: None,
            location: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether OpenBao rejected the token (401 or 403).
    pub fn is_denied(&self) -> bool {
        matches!(self.status, 401 | 403)
    }

    /// The parsed JSON body; `Null` when empty or (for a non-2xx status) not JSON.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Takes the parsed JSON body out, leaving `Null`; it is wiped when dropped.
    pub fn take_body(&mut self) -> WipedJson {
        WipedJson::new(self.body.take())
    }

    /// The `Retry-After` delay, when the server sent one in seconds.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// OpenBao's `request_id`, when it is short and made of safe characters (for logs).
    pub fn request_id(&self) -> Option<&str> {
        let id = self.body.get("request_id")?.as_str()?;
        let safe = !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        safe.then_some(id)
    }

    /// The classified failure for a non-2xx answer.
    pub fn failure(&self) -> TransitFailure {
        let errors = error_texts(&self.body);
        let class = classify_status(self.status, &errors);
        TransitFailure {
            class,
            http_status: Some(self.status),
            retry_after: if class == FailureClass::RateLimited {
                self.retry_after
            } else {
                None
            },
        }
    }
}

impl Drop for ApiResponse {
    fn drop(&mut self) {
        wipe_json(&mut self.body);
    }
}

impl fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The `errors` strings of an OpenBao error body (`{"errors":[...]}`), for classification only.
pub fn error_texts(body: &Value) -> Vec<&str> {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Classifies a non-2xx HTTP status, using the error texts only to refine it.
///
/// 400 with `message authentication failed` ⇒ `DecryptFailed`; 400 with `disallowed by policy`
/// ⇒ `VersionDisallowed`; other 4xx ⇒ `InvalidRequest`, except 401 `Unauthenticated`,
/// 403 `PermissionDenied`, 404 `NotFound` and 429 `RateLimited`; 503 or any error text
/// mentioning `sealed` ⇒ `Sealed`; 3xx, other 5xx and anything else ⇒ `Unavailable`.
pub fn classify_status(status: u16, errors: &[&str]) -> FailureClass {
    let mentions = |needle: &str| {
        errors
            .iter()
            .any(|text| text.to_ascii_lowercase().contains(needle))
    };
    // Only OpenBao's own "sealed" answer is `sealed`; a proxy's bare 503 is `unavailable`.
    if status >= 300 && mentions("sealed") {
        return FailureClass::Sealed;
    }
    match status {
        400 => classify_error_text(errors.iter().copied()),
        401 => FailureClass::Unauthenticated,
        403 => FailureClass::PermissionDenied,
        404 => FailureClass::NotFound,
        429 => FailureClass::RateLimited,
        402 | 405..=428 | 430..=499 => FailureClass::InvalidRequest,
        _ => FailureClass::Unavailable,
    }
}

/// Classifies the error text of a 400 answer or of one batch item.
pub fn classify_error_text<'t>(texts: impl IntoIterator<Item = &'t str>) -> FailureClass {
    let mut class = FailureClass::InvalidRequest;
    for text in texts {
        let lower = text.to_ascii_lowercase();
        if lower.contains("message authentication failed") {
            return FailureClass::DecryptFailed;
        }
        if lower.contains("disallowed by policy") {
            class = FailureClass::VersionDisallowed;
        }
    }
    class
}

/// Classifies a ureq transport error (no HTTP status was received, or the body could not be
/// read).
pub fn classify_transport_error(error: &ureq::Error) -> FailureClass {
    #[expect(
        clippy::wildcard_enum_match_arm,
        reason = "ureq::Error is non_exhaustive; everything unlisted is Unavailable"
    )]
    match error {
        ureq::Error::Timeout(_) => FailureClass::Timeout,
        ureq::Error::HostNotFound => FailureClass::DnsFailed,
        ureq::Error::ConnectionFailed => FailureClass::ConnectionFailed,
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired => FailureClass::TlsFailed,
        ureq::Error::Io(io) => classify_io_error(io),
        _ => FailureClass::Unavailable,
    }
}

/// Classifies a socket-level error.
pub fn classify_io_error(error: &io::Error) -> FailureClass {
    use io::ErrorKind;
    #[expect(
        clippy::wildcard_enum_match_arm,
        reason = "io::ErrorKind is non_exhaustive; unlisted kinds are refined by their text"
    )]
    match error.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => FailureClass::Timeout,
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::NotConnected
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::AddrNotAvailable
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable => FailureClass::ConnectionFailed,
        _ if looks_like_tls(error) => FailureClass::TlsFailed,
        _ => FailureClass::Unavailable,
    }
}

/// rustls errors reach ureq as `io::Error` (kind `InvalidData`) wrapping a `rustls::Error`.
/// rustls is not a direct dependency, so the inner error is recognised by its message.
fn looks_like_tls(error: &io::Error) -> bool {
    const MARKERS: [&str; 11] = [
        "certificate",
        "handshake",
        "alert",
        "tls",
        "peer is incompatible",
        "peer misbehaved",
        "corrupt message",
        "unexpected message",
        "inappropriate message",
        "decrypt peer",
        "invalid dns name",
    ];
    let text = error.to_string().to_ascii_lowercase();
    MARKERS.iter().any(|marker| text.contains(marker))
}

/// The HTTPS client of OpenBao: one [`NodeHttp`] per configured address, and the core's
/// [`Cluster`] machine deciding which node each call goes to.
///
/// With one address this is a plain client. With several (an HA cluster) the first call, and
/// the first call after the node in use failed like a node that is no longer active, asks every
/// node's `sys/health` (bounded by the call's own timeout) and moves to the active one. The
/// failed call itself is returned as failed: the core retries it, and the retry goes to the new
/// active node.
pub struct OpenBaoHttp {
    nodes: Vec<NodeHttp>,
    addresses: Vec<String>,
    cluster: Mutex<Cluster>,
    timeout: Duration,
    requests_sent: AtomicU64,
}

impl fmt::Debug for OpenBaoHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoHttp")
            .field("nodes", &self.addresses)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Longest a node may take to answer `sys/health` during discovery.
const DISCOVERY_TIMEOUT: Duration = Duration::from_millis(500);

impl OpenBaoHttp {
    /// Builds one agent per address (`settings.address` first, then `settings.more_addresses`):
    /// CA-only trust, TLS >= 1.2, pinned server name, no automatic redirects, no proxy.
    ///
    /// # Errors
    /// [`HttpBuildError`] when an address, the server name, namespace, CA PEM or timeout is
    /// invalid.
    pub fn new(settings: &HttpSettings) -> Result<Self, HttpBuildError> {
        let addresses: Vec<String> = std::iter::once(settings.address.clone())
            .chain(settings.more_addresses.iter().cloned())
            .collect();
        let nodes = addresses
            .iter()
            .map(|address| NodeHttp::new(settings, address))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cluster: Mutex::new(Cluster::new(nodes.len())),
            nodes,
            addresses,
            timeout: settings.timeout,
            requests_sent: AtomicU64::new(0),
        })
    }

    /// The default per-request deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How many requests were handed to the network so far (for tests and metrics).
    pub fn requests_sent(&self) -> u64 {
        self.requests_sent.load(Ordering::Relaxed)
    }

    /// Each configured address with its role as last seen (`unknown` until a discovery ran;
    /// a single address is never probed).
    pub fn node_roles(&self) -> Vec<(String, NodeRole)> {
        let cluster = self.cluster();
        self.addresses
            .iter()
            .cloned()
            .zip(cluster.roles().iter().copied())
            .collect()
    }

    /// The address calls go to now.
    pub fn current_address(&self) -> &str {
        let current = self.cluster().current();
        self.addresses.get(current).map_or("", String::as_str)
    }

    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one request to the node in use and returns the answer whatever its status.
    ///
    /// # Errors
    /// A classified [`TransitFailure`] when no complete answer arrived (transport, TLS, DNS,
    /// timeout), when the body exceeds [`MAX_RESPONSE_BYTES`], or when a 2xx body is not JSON.
    pub fn send(&self, request: ApiRequest<'_>) -> Result<ApiResponse, TransitFailure> {
        if self.cluster().needs_discovery() {
            self.discover(request.timeout.unwrap_or(self.timeout));
        }
        let node = self.cluster().current();
        let Some(transport) = self.nodes.get(node) else {
            return Err(TransitFailure::new(FailureClass::Unavailable));
        };
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        let result = transport.send(&request);
        match &result {
            Err(failure) => self.cluster().call_failed(node, failure.class),
            Ok(response) if response.is_success() => {}
            Ok(response) => {
                if let Some(target) = response
                    .location
                    .as_deref()
                    .and_then(|location| self.nodes.iter().position(|n| n.is_origin_of(location)))
                {
                    self.cluster().redirected_to(target);
                } else {
                    self.cluster().call_failed(node, response.failure().class);
                }
            }
        }
        result
    }

    /// Asks every node's `sys/health` (each bounded by the smaller of `budget` and
    /// [`DISCOVERY_TIMEOUT`]) and lets the cluster machine choose.
    fn discover(&self, budget: Duration) {
        let timeout = budget.min(DISCOVERY_TIMEOUT);
        let health: Vec<NodeHealth> = self
            .nodes
            .iter()
            .map(|node| {
                let request = ApiRequest::get("sys/health")
                    .root_namespace()
                    .timeout(timeout);
                match node.send(&request) {
                    Ok(response) => NodeHealth::Status(response.status()),
                    Err(_) => NodeHealth::Unreachable,
                }
            })
            .collect();
        let mut cluster = self.cluster();
        cluster.discovered(&health);
        tracing::info!(
            message = "openbao.discovery",
            active = self.addresses.get(cluster.current()).map_or("", String::as_str),
            roles = %cluster
                .roles()
                .iter()
                .map(|role| role.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
}

/// A failure for a 2xx answer whose JSON does not have the expected shape.
pub fn malformed_response(http_status: Option<u16>) -> TransitFailure {
    TransitFailure {
        class: FailureClass::Unavailable,
        http_status,
        retry_after: None,
    }
}

pub(super) fn transport_failure(error: &ureq::Error) -> TransitFailure {
    let class = classify_transport_error(error);
    tracing::debug!(error_class = class.as_str(), "openbao transport failure");
    TransitFailure::new(class)
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay), like Go's
/// `url.PathEscape`. Applied exactly once to key names.
pub fn escape_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Trims `/` from a mount path and escapes each of its segments.
///
/// Returns `None` for an empty path or an empty, `.` or `..` segment.
pub fn normalize_mount_path(mount: &str) -> Option<String> {
    let trimmed = mount.trim().trim_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    let mut segments = Vec::new();
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return None;
        }
        segments.push(escape_path_segment(segment));
    }
    Some(segments.join("/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statuses_and_texts_classify_as_documented() {
        let auth = ["cipher: message authentication failed"];
        let old = ["ciphertext or signature version is disallowed by policy (too old)"];
        assert_eq!(classify_status(400, &auth), FailureClass::DecryptFailed);
        assert_eq!(classify_status(400, &old), FailureClass::VersionDisallowed);
        assert_eq!(
            classify_status(400, &["invalid ciphertext: no prefix"]),
            FailureClass::InvalidRequest
        );
        assert_eq!(classify_status(401, &[]), FailureClass::Unauthenticated);
        assert_eq!(
            classify_status(403, &["permission denied"]),
            FailureClass::PermissionDenied
        );
        assert_eq!(classify_status(404, &[]), FailureClass::NotFound);
        assert_eq!(classify_status(405, &[]), FailureClass::InvalidRequest);
        assert_eq!(classify_status(429, &[]), FailureClass::RateLimited);
        assert_eq!(classify_status(503, &[]), FailureClass::Unavailable);
        assert_eq!(
            classify_status(503, &["Vault is sealed"]),
            FailureClass::Sealed
        );
        assert_eq!(
            classify_status(500, &["Vault is sealed"]),
            FailureClass::Sealed
        );
        assert_eq!(
            classify_status(500, &["internal error"]),
            FailureClass::Unavailable
        );
        assert_eq!(classify_status(502, &[]), FailureClass::Unavailable);
        for redirect in [301, 302, 303, 307, 308] {
            assert_eq!(classify_status(redirect, &[]), FailureClass::Unavailable);
        }
    }

    #[test]
    fn io_errors_classify_by_kind_and_tls_text() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_io_error(&refused), FailureClass::ConnectionFailed);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_io_error(&reset), FailureClass::ConnectionFailed);
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(classify_io_error(&timed_out), FailureClass::Timeout);
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        assert_eq!(classify_io_error(&tls), FailureClass::TlsFailed);
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        assert_eq!(classify_io_error(&alert), FailureClass::TlsFailed);
        let other = io::Error::other("something odd");
        assert_eq!(classify_io_error(&other), FailureClass::Unavailable);
        assert_eq!(
            classify_transport_error(&ureq::Error::HostNotFound),
            FailureClass::DnsFailed
        );
        assert_eq!(
            classify_transport_error(&ureq::Error::BodyExceedsLimit(1)),
            FailureClass::Unavailable
        );
    }

    #[test]
    fn key_names_are_escaped_once_and_mounts_trimmed() {
        assert_eq!(escape_path_segment("kms-key_1.v2~"), "kms-key_1.v2~");
        assert_eq!(escape_path_segment("a b/c%"), "a%20b%2Fc%25");
        assert_eq!(
            normalize_mount_path("/transit/"),
            Some("transit".to_owned())
        );
        assert_eq!(
            normalize_mount_path("kms/transit"),
            Some("kms/transit".to_owned())
        );
        assert_eq!(normalize_mount_path("/"), None);
        assert_eq!(normalize_mount_path("a/../b"), None);
    }
}
