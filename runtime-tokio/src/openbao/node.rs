//! The HTTPS client of one OpenBao node: address parsing, TLS trust and the pinned resolver.
//!
//! Each node has its own pooled [`ureq::Agent`]. It trusts only the configured CA certificates,
//! verifies (and sends as SNI) the configured TLS server name, never follows redirects by itself,
//! never uses an environment proxy, bounds every request by a timeout and every response body by
//! [`MAX_RESPONSE_BYTES`]. [`super::http::OpenBaoHttp`] picks the node for each call.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use bao_kms_core::transit::{FailureClass, TransitFailure};
use serde_json::Value;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use zeroize::Zeroizing;

use super::http::{
    ApiRequest, ApiResponse, HttpBuildError, HttpSettings, MAX_IDLE_CONNECTIONS,
    MAX_RESPONSE_BYTES, MAX_RETRY_AFTER, Method, malformed_response, transport_failure,
};

/// The blocking HTTPS client of one OpenBao address (one node of a cluster).
pub(super) struct NodeHttp {
    /// `host:port` of the configured address, to match redirect targets against.
    origin: String,
    agent: ureq::Agent,
    base_url: String,
    namespace: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for NodeHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHttp")
            .field("timeout", &self.timeout)
            .field("namespaced", &self.namespace.is_some())
            .finish_non_exhaustive()
    }
}

impl NodeHttp {
    /// Whether `location` (a redirect target) points at this node's configured address.
    pub(super) fn is_origin_of(&self, location: &str) -> bool {
        location_origin(location).is_some_and(|origin| origin == self.origin)
    }

    /// Builds the agent: CA-only trust, TLS ≥ 1.2, pinned server name, no redirects, no proxy.
    ///
    /// # Errors
    /// [`HttpBuildError`] when the address, server name, namespace, CA PEM or timeout is invalid.
    pub(super) fn new(settings: &HttpSettings, address: &str) -> Result<Self, HttpBuildError> {
        if settings.timeout.is_zero() {
            return Err(HttpBuildError::InvalidTimeout);
        }
        let target = parse_address(address)?;
        let origin = format!("{}:{}", target.host.to_ascii_lowercase(), target.port);
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
            origin,
            agent,
            base_url,
            namespace,
            timeout: settings.timeout,
        })
    }

    /// Sends one request and returns the answer whatever its status.
    ///
    /// # Errors
    /// A classified [`TransitFailure`] when no complete answer arrived (transport, TLS, DNS,
    /// timeout), when the body exceeds [`MAX_RESPONSE_BYTES`], or when a 2xx body is not JSON.
    pub(super) fn send(&self, request: &ApiRequest<'_>) -> Result<ApiResponse, TransitFailure> {
        let url = format!("{}{}", self.base_url, request.path);
        let sent = match (request.method, request.body) {
            (Method::Post, Some(body)) => {
                // Serialized here rather than by ureq so that the bytes (a secret id, a JWT,
                // base64 plaintext) are wiped once sent.
                let bytes = Zeroizing::new(
                    serde_json::to_vec(body)
                        .map_err(|_| TransitFailure::new(FailureClass::InvalidRequest))?,
                );
                self.decorate(self.agent.post(&url), request)
                    .header("Content-Type", "application/json")
                    .send(&bytes[..])
            }
            (Method::Post, None) => self.decorate(self.agent.post(&url), request).send_empty(),
            (Method::Get, _) => self.decorate(self.agent.get(&url), request).call(),
        };
        let mut response = sent.map_err(|error| transport_failure(&error))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
        // Kept only for a redirect, which the cluster follows to configured nodes only.
        let location = (status == 307 || status == 308)
            .then(|| response.headers().get("location"))
            .flatten()
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
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
            location,
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

/// `host:port` (lowercase, default port 443) of an absolute https URL.
fn location_origin(location: &str) -> Option<String> {
    let uri: Uri = location.trim().parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some(format!(
        "{}:{}",
        host.to_ascii_lowercase(),
        uri.port_u16().unwrap_or(443)
    ))
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
