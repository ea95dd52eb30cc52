//! Requests to the plugin over its Unix socket, as kube-apiserver sends them, and the plugin's
//! own count of OpenBao requests from `/metrics`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use bao_kms_proto::{
    DecryptRequest, EncryptRequest, HEALTHZ_OK, KeyManagementServiceClient, StatusRequest,
};
use tonic::transport::Channel;

/// A KMS v2 client on the plugin's socket; clones share one HTTP/2 connection, like the
/// apiserver's single gRPC connection.
pub(crate) type Client = KeyManagementServiceClient<Channel>;

/// What an Encrypt returned, kept for the Decrypt cells.
#[derive(Clone, Debug)]
pub(crate) struct Sealed {
    /// The plaintext that was encrypted.
    pub(crate) seed: Vec<u8>,
    /// The ciphertext.
    pub(crate) ciphertext: Vec<u8>,
    /// The key_id Encrypt reported.
    pub(crate) key_id: String,
    /// The annotations Encrypt returned.
    pub(crate) annotations: BTreeMap<String, Vec<u8>>,
}

fn grpc_error(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// One Status; anything but `healthz=ok` with a key_id is an error. Returns the key_id.
pub(crate) async fn status(mut client: Client) -> Result<String, String> {
    let answer = client
        .status(StatusRequest {})
        .await
        .map_err(|status| grpc_error(&status))?
        .into_inner();
    if answer.healthz != HEALTHZ_OK || answer.key_id.is_empty() {
        return Err(format!("unhealthy status: healthz={}", answer.healthz));
    }
    Ok(answer.key_id)
}

/// One Encrypt of `seed`.
pub(crate) async fn encrypt(
    mut client: Client,
    seed: Vec<u8>,
    uid: String,
) -> Result<Sealed, String> {
    let answer = client
        .encrypt(EncryptRequest {
            plaintext: seed.clone(),
            uid,
        })
        .await
        .map_err(|status| grpc_error(&status))?
        .into_inner();
    Ok(Sealed {
        seed,
        ciphertext: answer.ciphertext,
        key_id: answer.key_id,
        annotations: answer.annotations,
    })
}

/// One Decrypt of `item`; a plaintext other than the seed is an error.
pub(crate) async fn decrypt(mut client: Client, item: &Sealed, uid: String) -> Result<(), String> {
    let answer = client
        .decrypt(DecryptRequest {
            ciphertext: item.ciphertext.clone(),
            uid,
            key_id: item.key_id.clone(),
            annotations: item.annotations.clone(),
        })
        .await
        .map_err(|status| grpc_error(&status))?
        .into_inner();
    if answer.plaintext != item.seed {
        return Err("decrypt returned a different plaintext".to_owned());
    }
    Ok(())
}

/// The plugin's counters that say how its requests reached OpenBao, read from `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// `openbao_kms_openbao_requests_total`, every operation: all Transit calls, probes included.
    pub(crate) openbao_calls: u64,
    /// Of those, `operation="transit_decrypt"`: single-item decrypt calls.
    pub(crate) decrypt_calls: u64,
    /// Of those, `operation="transit_batch_decrypt"`: `batch_input` calls.
    pub(crate) batch_calls: u64,
    /// Of those, `operation="transit_encrypt"`.
    pub(crate) encrypt_calls: u64,
    /// `openbao_kms_openbao_retries_total`: extra attempts after a transient failure.
    pub(crate) retries: u64,
    /// `openbao_kms_grpc_requests_total`: finished KMS calls.
    pub(crate) grpc_requests: u64,
}

impl Counters {
    /// `self - before`, per counter.
    pub(crate) fn since(self, before: Self) -> Self {
        Self {
            openbao_calls: self.openbao_calls.saturating_sub(before.openbao_calls),
            decrypt_calls: self.decrypt_calls.saturating_sub(before.decrypt_calls),
            batch_calls: self.batch_calls.saturating_sub(before.batch_calls),
            encrypt_calls: self.encrypt_calls.saturating_sub(before.encrypt_calls),
            retries: self.retries.saturating_sub(before.retries),
            grpc_requests: self.grpc_requests.saturating_sub(before.grpc_requests),
        }
    }

    /// The Transit calls that carried KMS requests (encrypt, decrypt and batch decrypt).
    pub(crate) fn kms_calls(self) -> u64 {
        self.decrypt_calls + self.batch_calls + self.encrypt_calls
    }

    /// Sums the counters of a Prometheus text exposition.
    pub(crate) fn parse(text: &str) -> Self {
        let mut counters = Self::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some(value) = parse_count(value) else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let operation = |wanted: &str| labels.contains(&format!("operation=\"{wanted}\""));
            match name {
                "openbao_kms_openbao_requests_total" => {
                    counters.openbao_calls += value;
                    if operation("transit_decrypt") {
                        counters.decrypt_calls += value;
                    } else if operation("transit_batch_decrypt") {
                        counters.batch_calls += value;
                    } else if operation("transit_encrypt") {
                        counters.encrypt_calls += value;
                    }
                }
                "openbao_kms_openbao_retries_total" => counters.retries += value,
                "openbao_kms_grpc_requests_total" => counters.grpc_requests += value,
                _ => {}
            }
        }
        counters
    }
}

/// The plugin's counters now; `None` without a metrics listener or when it does not answer.
pub(crate) fn counters(metrics_address: Option<&str>) -> Option<Counters> {
    let address = metrics_address?;
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    // HTTP/1.0: the body is delimited by the connection closing, never chunked.
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let counters = Counters::parse(&text);
    (counters.openbao_calls > 0).then_some(counters)
}

/// A counter sample value: an integer, or a float in exposition formats that print one.
fn parse_count(text: &str) -> Option<u64> {
    if let Ok(value) = text.parse::<u64>() {
        return Some(value);
    }
    let value = text.parse::<f64>().ok()?;
    // Counters are non-negative integers well below 2^53.
    (value.is_finite() && value >= 0.0).then_some(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_operation() {
        let text = "# TYPE openbao_kms_openbao_requests_total counter\n\
            openbao_kms_openbao_requests_total{operation=\"transit_decrypt\",status=\"ok\"} 5\n\
            openbao_kms_openbao_requests_total{operation=\"transit_decrypt\",status=\"timeout\"} 1\n\
            openbao_kms_openbao_requests_total{operation=\"transit_batch_decrypt\",status=\"ok\"} 7\n\
            openbao_kms_openbao_requests_total{operation=\"transit_encrypt\",status=\"ok\"} 2\n\
            openbao_kms_openbao_requests_total{operation=\"transit_metadata_read\",status=\"ok\"} 3\n\
            openbao_kms_openbao_retries_total{operation=\"transit_decrypt\",reason=\"unavailable\"} 4\n\
            openbao_kms_grpc_requests_total{method=\"decrypt\",status=\"ok\"} 100\n\
            openbao_kms_grpc_requests_total{method=\"status\",status=\"ok\"} 1e1\n";
        let counters = Counters::parse(text);
        assert_eq!(
            counters,
            Counters {
                openbao_calls: 18,
                decrypt_calls: 6,
                batch_calls: 7,
                encrypt_calls: 2,
                retries: 4,
                grpc_requests: 110,
            }
        );
        assert_eq!(counters.kms_calls(), 15);
        assert_eq!(counters.since(counters), Counters::default());
    }

    #[test]
    fn counter_values_parse_as_integers_or_floats() {
        assert_eq!(parse_count("42"), Some(42));
        assert_eq!(parse_count("42.0"), Some(42));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("NaN"), None);
    }
}
