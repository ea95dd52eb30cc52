//! A read-only client of etcd's v3 JSON gateway (`POST /v3/kv/range`), paginated.
//!
//! The gateway ships with every etcd server (the same port as gRPC), so the scan needs no gRPC
//! stack of its own: keys and values travel base64-encoded in JSON, over HTTPS with the control
//! plane's etcd client certificate, or plain HTTP (loopback tests). Only `range` is ever called.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// Why talking to etcd failed. Messages name paths and endpoints, never values.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EtcdError {
    /// A certificate or key file could not be used.
    #[error("{0}")]
    Tls(String),
    /// The endpoint is not an `http://` or `https://` URL, or TLS flags are missing.
    #[error("{0}")]
    Usage(String),
    /// The request did not complete.
    #[error("etcd range request failed: {0}")]
    Transport(String),
    /// etcd answered with an error.
    #[error("etcd answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// etcd's error message (never a value: etcd errors carry no data).
        message: String,
    },
    /// The answer is not the documented JSON.
    #[error("etcd answer is malformed: {0}")]
    Malformed(String),
}

/// Where etcd is and how to authenticate.
#[derive(Clone, Debug)]
pub(crate) struct EtcdSettings {
    /// `https://host:port` or `http://host:port`.
    pub(crate) endpoint: String,
    /// CA bundle that signed etcd's serving certificate.
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub(crate) cert: Option<PathBuf>,
    /// Client key (PEM).
    pub(crate) key: Option<PathBuf>,
    /// The deadline of one range request.
    pub(crate) timeout: Duration,
}

/// One page of a range.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// Keys and values, in key order.
    pub(crate) kvs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether more keys follow in the range.
    pub(crate) more: bool,
    /// The store revision the page was read at.
    pub(crate) revision: i64,
}

/// A range client.
#[derive(Debug)]
pub(crate) struct Gateway {
    agent: ureq::Agent,
    url: String,
}

#[derive(Deserialize)]
struct RangeAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<KeyValue>,
    #[serde(default)]
    more: bool,
}

#[derive(Default, Deserialize)]
struct Header {
    /// int64 as a JSON string (proto3 JSON mapping).
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

impl Gateway {
    /// A client of `settings.endpoint`; HTTPS requires the CA, certificate and key.
    pub(crate) fn new(settings: &EtcdSettings) -> Result<Self, EtcdError> {
        let endpoint = settings.endpoint.trim_end_matches('/');
        let builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(settings.timeout))
            .user_agent(concat!("bao-kms-provider/", env!("CARGO_PKG_VERSION")));
        let builder = if endpoint.starts_with("https://") {
            let (Some(ca), Some(cert), Some(key)) = (&settings.ca, &settings.cert, &settings.key)
            else {
                return Err(EtcdError::Usage(
                    "an https:// etcd endpoint needs --etcd-ca, --etcd-cert and --etcd-key".into(),
                ));
            };
            let roots = certificates(ca)?;
            let chain = certificates(cert)?;
            let key = private_key(key)?;
            let tls = ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)))
                .build();
            builder.https_only(true).tls_config(tls)
        } else if endpoint.starts_with("http://") {
            builder
        } else {
            return Err(EtcdError::Usage(format!(
                "--etcd-endpoint {endpoint} is not an http:// or https:// URL"
            )));
        };
        Ok(Self {
            agent: builder.build().new_agent(),
            url: format!("{endpoint}/v3/kv/range"),
        })
    }

    /// Keys in `[start, end)`, at most `limit`, read at `revision` (0: the current one).
    pub(crate) fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u64,
        revision: i64,
    ) -> Result<Page, EtcdError> {
        let mut body = serde_json::json!({
            "key": STANDARD.encode(start),
            "range_end": STANDARD.encode(end),
            "limit": limit.to_string(),
        });
        if revision > 0 {
            body["revision"] = serde_json::Value::String(revision.to_string());
        }
        let mut response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|error| EtcdError::Transport(error.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            // A page holds at most `limit` values of at most etcd's request size (1.5 MiB by
            // default); the cap keeps a misconfigured page size from exhausting memory.
            .limit(512 * 1024 * 1024)
            .read_to_string()
            .map_err(|error| EtcdError::Transport(error.to_string()))?;
        if status != 200 {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|json| json["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "no message".to_owned());
            return Err(EtcdError::Status { status, message });
        }
        let answer: RangeAnswer =
            serde_json::from_str(&text).map_err(|error| EtcdError::Malformed(error.to_string()))?;
        drop(text);
        let revision = answer
            .header
            .revision
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| EtcdError::Malformed("header.revision is not an integer".into()))?
            .unwrap_or(0);
        let mut kvs = Vec::with_capacity(answer.kvs.len());
        for kv in answer.kvs {
            let key = STANDARD
                .decode(kv.key)
                .map_err(|_| EtcdError::Malformed("a key is not base64".into()))?;
            let value = STANDARD
                .decode(kv.value)
                .map_err(|_| EtcdError::Malformed("a value is not base64".into()))?;
            kvs.push((key, value));
        }
        Ok(Page {
            kvs,
            more: answer.more,
            revision,
        })
    }
}

/// The end of the range of every key starting with `prefix` (etcd's `WithPrefix`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix is empty): the range runs to the end of the keyspace.
    vec![0]
}

/// The key right after `key` (the next page's start).
pub(crate) fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

fn read_pem(path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path)
        .map_err(|error| EtcdError::Tls(format!("cannot read {}: {error}", path.display())))
}

fn certificates(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, EtcdError> {
    let pem = read_pem(path)?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => out.push(cert),
            Ok(_) => {}
            Err(_) => {
                return Err(EtcdError::Tls(format!(
                    "{} is not valid PEM",
                    path.display()
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(EtcdError::Tls(format!(
            "{} holds no CERTIFICATE block",
            path.display()
        )));
    }
    Ok(out)
}

fn private_key(path: &Path) -> Result<ureq::tls::PrivateKey<'static>, EtcdError> {
    let pem = read_pem(path)?;
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(ureq::tls::PemItem::PrivateKey(key)) = item {
            return Ok(key);
        }
    }
    // The key's contents never appear in the message.
    Err(EtcdError::Tls(format!(
        "{} holds no private key",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_and_page_starts_follow_etcds_rules() {
        assert_eq!(prefix_end(b"/registry/"), b"/registry0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\x00");
        assert_eq!(prefix_end(b""), b"\x00");
        assert_eq!(after(b"/registry/a"), b"/registry/a\x00");
    }
}
