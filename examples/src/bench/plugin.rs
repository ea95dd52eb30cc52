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

/// The plugin's `openbao_kms_openbao_requests_total`, summed over operations and outcomes:
/// every HTTP request it sent to OpenBao (Transit calls, probes, logins). `None` without a
/// metrics listener or when it does not answer.
pub(crate) fn openbao_requests(metrics_address: Option<&str>) -> Option<u64> {
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
    let mut total = 0_u64;
    let mut seen = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("openbao_kms_openbao_requests_total{")
            && let Some((_, value)) = rest.rsplit_once(' ')
            && let Some(value) = parse_count(value)
        {
            total += value;
            seen = true;
        }
    }
    seen.then_some(total)
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
    fn counter_values_parse_as_integers_or_floats() {
        assert_eq!(parse_count("42"), Some(42));
        assert_eq!(parse_count("42.0"), Some(42));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("NaN"), None);
    }
}
