//! Talking to the control plane: kube-apiserver's REST API as the admin, etcd's v3 JSON API for
//! raw values, the `EncryptedObject` kube-apiserver stores, and Prometheus text.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Error;

/// The deadline of one HTTP call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The prefix of every Secret value kube-apiserver writes through the plugin.
pub fn kms_prefix() -> String {
    format!("k8s:enc:kms:v2:{}:", super::PROVIDER_NAME)
}

/// An admin client of one kube-apiserver (bearer token, the test CA as the only root).
#[derive(Debug)]
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl ApiClient {
    /// A client of `https://127.0.0.1:<port>`.
    pub fn new(port: u16, ca_cert: &Path, token: &str) -> Result<Self, Error> {
        let pem = std::fs::read(ca_cert)
            .map_err(|error| Error::io(format!("read {}", ca_cert.display()), error))?;
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                roots.push(cert);
            }
        }
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(HTTP_TIMEOUT))
            .tls_config(tls)
            .build()
            .into();
        Ok(Self {
            agent,
            base: format!("https://127.0.0.1:{port}"),
            token: token.to_owned(),
        })
    }

    /// `GET path`: the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, String), Error> {
        let response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        read(response)
    }

    /// `POST path` with a JSON body: the status and the body.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<(u16, String), Error> {
        let response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        read(response)
    }

    /// `PUT path` with a JSON body: the status and the body.
    pub fn put(&self, path: &str, body: &serde_json::Value) -> Result<(u16, String), Error> {
        let response = self
            .agent
            .put(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        read(response)
    }

    /// Creates Secret `name` in `default` with one data entry; the status and the body.
    pub fn create_secret(&self, name: &str, value: &str) -> Result<(u16, String), Error> {
        self.post(
            "/api/v1/namespaces/default/secrets",
            &serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "data": {"value": STANDARD.encode(value)},
            }),
        )
    }

    /// Reads Secret `name` from `default`: `Ok(Some(value))` when it reads, `Ok(None)` on 404,
    /// `Err` on any other answer.
    pub fn read_secret(&self, name: &str) -> Result<Option<String>, Error> {
        let (status, body) = self.get(&format!("/api/v1/namespaces/default/secrets/{name}"))?;
        match status {
            200 => {
                let json: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|error| Error::Http(format!("secret {name} is not JSON: {error}")))?;
                let encoded = json["data"]["value"].as_str().unwrap_or_default();
                let value = STANDARD
                    .decode(encoded)
                    .map_err(|error| Error::Http(format!("secret {name}: {error}")))?;
                Ok(Some(String::from_utf8_lossy(&value).into_owned()))
            }
            404 => Ok(None),
            other => Err(Error::Http(format!(
                "GET secret {name} answered {other}: {}",
                first_line(&body)
            ))),
        }
    }

    /// Replaces Secret `name` with itself, unchanged (what a storage migration does: every
    /// object written again through the current write key).
    pub fn rewrite_secret(&self, name: &str) -> Result<(u16, String), Error> {
        let path = format!("/api/v1/namespaces/default/secrets/{name}");
        let (status, body) = self.get(&path)?;
        if status != 200 {
            return Ok((status, body));
        }
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|error| Error::Http(format!("secret {name} is not JSON: {error}")))?;
        self.put(&path, &json)
    }
}

fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), Error> {
    let mut response = response.map_err(|error| Error::Http(error.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|error| Error::Http(error.to_string()))?;
    Ok((status, body))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into()
}

/// `GET http://127.0.0.1:<port><path>`; the body of a 200 answer.
pub fn plain_get(port: u16, path: &str) -> Result<String, Error> {
    let response = plain_agent()
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call();
    match read(response)? {
        (200, body) => Ok(body),
        (status, body) => Err(Error::Http(format!(
            "GET {path} answered {status}: {}",
            first_line(&body)
        ))),
    }
}

/// The value etcd (client port `port`) stores under `key`, read through etcd's v3 JSON API
/// (`POST /v3/kv/range`, keys and values in base64).
pub fn etcd_get(port: u16, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let response = plain_agent()
        .post(&format!("http://127.0.0.1:{port}/v3/kv/range"))
        .header("Content-Type", "application/json")
        .send(serde_json::json!({"key": STANDARD.encode(key)}).to_string());
    let (status, body) = read(response)?;
    if status != 200 {
        return Err(Error::Http(format!("etcd range answered {status}: {body}")));
    }
    let json: serde_json::Value = serde_json::from_str(&body)
        .map_err(|error| Error::Http(format!("etcd range is not JSON: {error}")))?;
    let Some(value) = json["kvs"]
        .get(0)
        .map(|kv| kv["value"].as_str().unwrap_or_default())
    else {
        return Ok(None);
    };
    STANDARD
        .decode(value)
        .map(Some)
        .map_err(|error| Error::Http(format!("etcd value is not base64: {error}")))
}

/// What kube-apiserver stores after `k8s:enc:kms:v2:<name>:` (its `EncryptedObject` message).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptedObject {
    /// The object encrypted with the DEK.
    #[prost(bytes = "vec", tag = "1")]
    pub encrypted_data: Vec<u8>,
    /// The key_id the plugin returned from Encrypt.
    #[prost(string, tag = "2")]
    pub key_id: String,
    /// The DEK (or DEK seed) as the plugin encrypted it.
    #[prost(bytes = "vec", tag = "3")]
    pub encrypted_dek_source: Vec<u8>,
    /// The annotations the plugin returned from Encrypt.
    #[prost(btree_map = "string, bytes", tag = "4")]
    pub annotations: BTreeMap<String, Vec<u8>>,
    /// Whether `encrypted_dek_source` is a DEK (0) or a seed (1).
    #[prost(int32, tag = "5")]
    pub encrypted_dek_source_type: i32,
}

impl EncryptedObject {
    /// Parses a raw etcd value; `None` when it does not carry [`kms_prefix`].
    pub fn from_etcd(value: &[u8]) -> Option<Result<Self, prost::DecodeError>> {
        let rest = value.strip_prefix(kms_prefix().as_bytes())?;
        Some(<Self as prost::Message>::decode(rest))
    }
}

/// One Prometheus sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The samples of metric `name` in a Prometheus text exposition.
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    let mut found = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.rsplit_once("} ") {
                Some((labels, value)) => (parse_labels(labels), value),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => (BTreeMap::new(), value),
                None => continue,
            },
        };
        let value = value.split_whitespace().next().unwrap_or_default();
        if let Ok(value) = value.parse() {
            found.push(Sample { labels, value });
        }
    }
    found
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut end = after.len();
        let mut chars = after.char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}
