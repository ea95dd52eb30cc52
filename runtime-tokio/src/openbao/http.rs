//! The HTTPS transport to OpenBao and the classification of every failure.
//!
//! One pooled [`ureq::Agent`] serves every call. It trusts only the configured CA certificates,
//! verifies (and sends as SNI) the configured TLS server name, never follows redirects, never
//! uses an environment proxy, bounds every request by a global timeout and every response body
//! by [`MAX_RESPONSE_BYTES`]. HTTP statuses are returned as data; the caller classifies them
//! with [`ApiResponse::failure`]. Error bodies (`{"errors":[...]}`) are read only to classify
//! and are never surfaced: a [`TransitFailure`] carries a class, a status and a retry hint only.
//!
//! Everything here blocks; run it on tokio's blocking pool.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bao_kms_core::transit::{FailureClass, TransitFailure};
use serde_json::Value;
use ureq::http::Uri;
use zeroize::Zeroizing;

use super::auth::wipe::{WipedJson, wipe_json};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Largest response body read from OpenBao; a larger body makes the call `Unavailable`.
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// Idle keep-alive connections kept per host.
const MAX_IDLE_CONNECTIONS: usize = 16;

/// Longest `Retry-After` honoured, so a hostile or broken server cannot park a caller forever.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

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
    method: Method,
    path: &'a str,
    token: Option<&'a str>,
    body: Option<&'a Value>,
    timeout: Option<Duration>,
    namespaced: bool,
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
    status: u16,
    body: Value,
    retry_after: Option<Duration>,
}

impl ApiResponse {
    /// Builds a response; for tests of decoders.
    pub fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after: None,
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

/// The blocking HTTPS client of one OpenBao address.
pub struct OpenBaoHttp {
    agent: ureq::Agent,
    base_url: String,
    namespace: Option<String>,
    timeout: Duration,
    requests_sent: AtomicU64,
}

impl fmt::Debug for OpenBaoHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoHttp")
            .field("timeout", &self.timeout)
            .field("namespaced", &self.namespace.is_some())
            .finish_non_exhaustive()
    }
}

impl OpenBaoHttp {
    /// Builds the agent: CA-only trust, TLS ≥ 1.2, pinned server name, no redirects, no proxy.
    ///
    /// # Errors
    /// [`HttpBuildError`] when the address, server name, namespace, CA PEM or timeout is invalid.
    pub fn new(settings: &HttpSettings) -> Result<Self, HttpBuildError> {
        if settings.timeout.is_zero() {
            return Err(HttpBuildError::InvalidTimeout);
        }
        let target = parse_address(&settings.address)?;
        let server_name = match settings.tls_server_name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => parse_server_name(name)?,
            Some(_) | None => target.host.clone(),
        };
        let namespace = match settings.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => Some(validate_namespace(ns)?),
            Some(_) | None => None,
        };
        let roots = parse_ca_pem(&settings.ca_cert_pem)?;

        let url_host = match server_name.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            Ok(IpAddr::V4(_)) | Err(_) => server_name.clone(),
        };
        let base_url = format!(
            "https://{url_host}:{}{}/v1/",
            target.port, target.path_prefix
        );
        let base_uri: Uri = base_url
            .parse()
            .map_err(|_| HttpBuildError::InvalidTlsServerName)?;
        let sni_host = base_uri
            .host()
            .ok_or(HttpBuildError::InvalidTlsServerName)?
            .to_owned();

        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .use_sni(true)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(true)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(settings.timeout))
            .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
            .max_idle_connections(MAX_IDLE_CONNECTIONS)
            .user_agent(concat!("bao-kms-provider/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        let resolver = PinnedResolver {
            sni_host,
            target: target.dial_uri,
            inner: DefaultResolver::default(),
        };
        let agent = ureq::Agent::with_parts(config, DefaultConnector::default(), resolver);
        Ok(Self {
            agent,
            base_url,
            namespace,
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

    /// Sends one request and returns the answer whatever its status.
    ///
    /// # Errors
    /// A classified [`TransitFailure`] when no complete answer arrived (transport, TLS, DNS,
    /// timeout), when the body exceeds [`MAX_RESPONSE_BYTES`], or when a 2xx body is not JSON.
    pub fn send(&self, request: ApiRequest<'_>) -> Result<ApiResponse, TransitFailure> {
        let url = format!("{}{}", self.base_url, request.path);
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        let sent = match (request.method, request.body) {
            (Method::Post, Some(body)) => {
                // Serialized here rather than by ureq so that the bytes (a secret id, a JWT,
                // base64 plaintext) are wiped once sent.
                let bytes = Zeroizing::new(
                    serde_json::to_vec(body)
                        .map_err(|_| TransitFailure::new(FailureClass::InvalidRequest))?,
                );
                self.decorate(self.agent.post(&url), &request)
                    .header("Content-Type", "application/json")
                    .send(&bytes[..])
            }
            (Method::Post, None) => self.decorate(self.agent.post(&url), &request).send_empty(),
            (Method::Get, _) => self.decorate(self.agent.get(&url), &request).call(),
        };
        let mut response = sent.map_err(|error| transport_failure(&error))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
        let bytes = Zeroizing::new(
            response
                .body_mut()
                .with_config()
                .limit(MAX_RESPONSE_BYTES)
                .read_to_vec()
                .map_err(|error| TransitFailure {
                    http_status: Some(status),
                    ..transport_failure(&error)
                })?,
        );
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => value,
                Err(_) if (200..300).contains(&status) => {
                    return Err(malformed_response(Some(status)));
                }
                Err(_) => Value::Null,
            }
        };
        Ok(ApiResponse {
            status,
            body,
            retry_after,
        })
    }

    fn decorate<B>(
        &self,
        mut builder: ureq::RequestBuilder<B>,
        request: &ApiRequest<'_>,
    ) -> ureq::RequestBuilder<B> {
        builder = builder.header("Accept", "application/json");
        if let Some(token) = request.token {
            builder = builder.header("X-Vault-Token", token);
        }
        if request.namespaced
            && let Some(namespace) = &self.namespace
        {
            builder = builder.header("X-Vault-Namespace", namespace.as_str());
        }
        if let Some(timeout) = request.timeout {
            builder = builder.config().timeout_global(Some(timeout)).build();
        }
        builder
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

fn transport_failure(error: &ureq::Error) -> TransitFailure {
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

struct Target {
    host: String,
    port: u16,
    path_prefix: String,
    dial_uri: Uri,
}

fn parse_address(address: &str) -> Result<Target, HttpBuildError> {
    let address = address.trim();
    let uri: Uri = address
        .parse()
        .map_err(|_| HttpBuildError::InvalidAddress("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(HttpBuildError::InvalidAddress("scheme must be https"));
    }
    let authority = uri
        .authority()
        .ok_or(HttpBuildError::InvalidAddress("missing host"))?;
    if authority.as_str().contains('@') {
        return Err(HttpBuildError::InvalidAddress("userinfo is not allowed"));
    }
    if uri.query().is_some() || address.contains('#') {
        return Err(HttpBuildError::InvalidAddress(
            "query and fragment are not allowed",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(HttpBuildError::InvalidAddress("missing host"));
    }
    let port = authority.port_u16().unwrap_or(443);
    let path_prefix = uri.path().trim_end_matches('/').to_owned();
    let dial_uri: Uri = format!("https://{}:{port}/", authority.host())
        .parse()
        .map_err(|_| HttpBuildError::InvalidAddress("not a URL"))?;
    Ok(Target {
        host: host.to_owned(),
        port,
        path_prefix,
        dial_uri,
    })
}

fn parse_server_name(name: &str) -> Result<String, HttpBuildError> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(bare.to_owned());
    }
    let valid = bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(HttpBuildError::InvalidTlsServerName)
    }
}

fn validate_namespace(namespace: &str) -> Result<String, HttpBuildError> {
    if namespace.trim() != namespace {
        return Err(HttpBuildError::InvalidNamespace("surrounding whitespace"));
    }
    if namespace.starts_with('/') || namespace.contains("//") || namespace.contains('%') {
        return Err(HttpBuildError::InvalidNamespace("must be a relative path"));
    }
    let trimmed = namespace.trim_end_matches('/');
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(HttpBuildError::InvalidNamespace("empty or dot segment"));
    }
    if !namespace.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpBuildError::InvalidNamespace(
            "control or non-ASCII characters",
        ));
    }
    Ok(namespace.to_owned())
}

fn parse_ca_pem(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, HttpBuildError> {
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => {
                // A DER certificate is an ASN.1 SEQUENCE; rustls would silently skip garbage.
                if cert.der().first() != Some(&0x30) {
                    return Err(HttpBuildError::InvalidCaCertificate(
                        "not a DER certificate",
                    ));
                }
                roots.push(cert);
            }
            Ok(_) => {}
            Err(_) => return Err(HttpBuildError::InvalidCaCertificate("PEM is malformed")),
        }
    }
    if roots.is_empty() {
        return Err(HttpBuildError::InvalidCaCertificate("no CERTIFICATE block"));
    }
    Ok(roots)
}

/// Connects to `openbao.address` while the URL (hence SNI and certificate verification) names
/// `openbao.tlsServerName`. Only that name is ever resolved: redirects are not followed, so no
/// other host can appear.
#[derive(Debug)]
struct PinnedResolver {
    sni_host: String,
    target: Uri,
    inner: DefaultResolver,
}

impl PinnedResolver {
    /// The target as a socket address when its host is an IP literal.
    fn literal_address(&self) -> Option<std::net::SocketAddr> {
        let authority = self.target.authority()?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ip: IpAddr = host.parse().ok()?;
        let port = authority.port_u16().unwrap_or(443);
        Some(std::net::SocketAddr::new(ip, port))
    }
}

impl Resolver for PinnedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if !uri
            .host()
            .is_some_and(|host| host.eq_ignore_ascii_case(&self.sni_host))
        {
            return Err(ureq::Error::HostNotFound);
        }
        // An IP literal needs no lookup; the default resolver would start a thread per request.
        if let Some(address) = self.literal_address() {
            let mut resolved = self.inner.empty();
            resolved.push(address);
            return Ok(resolved);
        }
        self.inner
            .resolve(&self.target, config, timeout)
            .map_err(|error| {
                if matches!(error, ureq::Error::Timeout(_)) {
                    error
                } else {
                    ureq::Error::HostNotFound
                }
            })
    }
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

    #[test]
    fn addresses_must_be_plain_https() {
        assert!(parse_address("http://127.0.0.1:8200").is_err());
        assert!(parse_address("https://user@127.0.0.1:8200").is_err());
        assert!(parse_address("https://127.0.0.1:8200/?x=1").is_err());
        let target = parse_address("https://[::1]:8200/prefix/").unwrap();
        assert_eq!(target.host, "::1");
        assert_eq!(target.port, 8200);
        assert_eq!(target.path_prefix, "/prefix");
        assert_eq!(parse_address("https://bao.example").unwrap().port, 443);
    }

    #[test]
    fn server_names_and_namespaces_are_validated() {
        assert_eq!(parse_server_name("Bao.Example").unwrap(), "bao.example");
        assert_eq!(parse_server_name("127.0.0.1").unwrap(), "127.0.0.1");
        assert!(parse_server_name("bad name").is_err());
        assert!(parse_server_name("").is_err());
        assert!(validate_namespace("team/a").is_ok());
        assert!(validate_namespace("/team").is_err());
        assert!(validate_namespace("team//a").is_err());
        assert!(validate_namespace("team\n").is_err());
    }
}
