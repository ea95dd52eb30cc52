//! Core [`TransitRequest`]s as OpenBao Transit calls, and their answers as core data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bao_kms_core::plaintext::Plaintext;
use bao_kms_core::transit::{
    BatchDecryptItem, FailureClass, KeyMetadata, TransitFailure, TransitRequest, TransitResponse,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::auth::TokenManager;
use super::auth::wipe::WipedJson;
use super::http::{
    ApiRequest, ApiResponse, OpenBaoHttp, classify_error_text, escape_path_segment,
    malformed_response,
};

/// Transit calls for one mount and key, authenticated by the shared [`TokenManager`].
#[derive(Clone)]
pub struct TransitClient {
    http: Arc<OpenBaoHttp>,
    auth: Arc<TokenManager>,
    keys_path: String,
    config_keys_path: String,
    encrypt_path: String,
    decrypt_path: String,
}

impl std::fmt::Debug for TransitClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitClient").finish_non_exhaustive()
    }
}

impl TransitClient {
    /// A client for `mount` (already normalised, see `http::normalize_mount_path`) and the
    /// raw key name, which is path-escaped here, once.
    pub fn new(
        http: Arc<OpenBaoHttp>,
        auth: Arc<TokenManager>,
        mount: &str,
        key_name: &str,
    ) -> Self {
        let key = escape_path_segment(key_name);
        Self {
            http,
            auth,
            keys_path: format!("{mount}/keys/{key}"),
            config_keys_path: format!("{mount}/config/keys"),
            encrypt_path: format!("{mount}/encrypt/{key}"),
            decrypt_path: format!("{mount}/decrypt/{key}"),
        }
    }

    /// Runs one request. Blocking: call it from tokio's blocking pool.
    ///
    /// # Errors
    /// A classified [`TransitFailure`]; for batch decrypt, per-item failures are inside the
    /// `Ok` answer instead.
    pub fn execute(&self, request: &TransitRequest) -> Result<TransitResponse, TransitFailure> {
        self.execute_within(request, self.http.timeout())
    }

    /// Runs one request that must finish within `budget` (the time its caller has left), never
    /// longer than `openbao.timeout`. Blocking: call it from tokio's blocking pool.
    ///
    /// # Errors
    /// As [`Self::execute`]; a budget of zero fails at once with a timeout, nothing sent.
    pub fn execute_within(
        &self,
        request: &TransitRequest,
        budget: Duration,
    ) -> Result<TransitResponse, TransitFailure> {
        let budget = budget.min(self.http.timeout());
        if budget.is_zero() {
            return Err(TransitFailure::new(FailureClass::Timeout));
        }
        let result = self.dispatch(request, budget);
        if let Err(failure) = &result {
            tracing::debug!(
                operation = request.operation().as_str(),
                error_class = failure.class.as_str(),
                http_status = failure.http_status.map(u64::from),
                "transit call failed"
            );
        }
        result
    }

    fn dispatch(
        &self,
        request: &TransitRequest,
        budget: Duration,
    ) -> Result<TransitResponse, TransitFailure> {
        match request {
            TransitRequest::ReadKeyMetadata => {
                let response = self.call(ApiRequest::get(&self.keys_path), budget)?;
                decode_key_metadata(&*success(response)?).map(TransitResponse::KeyMetadata)
            }
            TransitRequest::ReadKeysConfig => {
                let response = self.call(ApiRequest::get(&self.config_keys_path), budget)?;
                let body = success(response)?;
                let disable_upsert = data(&body)?
                    .get("disable_upsert")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| malformed_response(Some(200)))?;
                Ok(TransitResponse::KeysConfig { disable_upsert })
            }
            TransitRequest::Encrypt {
                plaintext,
                key_version,
                associated_data,
            } => {
                check_aad(associated_data)?;
                let body = WipedJson::new(json!({
                    "plaintext": STANDARD.encode(plaintext.expose()),
                    "associated_data": associated_data,
                    "key_version": key_version.get(),
                }));
                let response = self.call(ApiRequest::post(&self.encrypt_path, &body), budget)?;
                drop(body);
                let body = success(response)?;
                let data = data(&body)?;
                let ciphertext = data.get("ciphertext").and_then(Value::as_str);
                let version = data.get("key_version").and_then(Value::as_u64);
                match (ciphertext, version) {
                    (Some(ciphertext), Some(key_version)) if !ciphertext.is_empty() => {
                        Ok(TransitResponse::Encrypted {
                            ciphertext: ciphertext.to_owned(),
                            key_version,
                        })
                    }
                    _ => Err(malformed_response(Some(200))),
                }
            }
            TransitRequest::Decrypt {
                ciphertext,
                associated_data,
            } => {
                check_aad(associated_data)?;
                let body = json!({
                    "ciphertext": ciphertext.as_str(),
                    "associated_data": associated_data,
                });
                let response = self.call(ApiRequest::post(&self.decrypt_path, &body), budget)?;
                let body = success(response)?;
                let plaintext = decode_plaintext(data(&body)?)?;
                Ok(TransitResponse::Decrypted { plaintext })
            }
            TransitRequest::BatchDecrypt { items } => self.batch_decrypt(items, budget),
            TransitRequest::CapabilitiesSelf { paths } => {
                let body = json!({ "paths": paths });
                let response =
                    self.call(ApiRequest::post("sys/capabilities-self", &body), budget)?;
                let body = success(response)?;
                decode_capabilities(data(&body)?, paths)
                    .map(|paths| TransitResponse::Capabilities { paths })
            }
        }
    }

    fn batch_decrypt(
        &self,
        items: &[BatchDecryptItem],
        budget: Duration,
    ) -> Result<TransitResponse, TransitFailure> {
        if items.is_empty() {
            return Ok(TransitResponse::BatchDecrypted {
                results: Vec::new(),
            });
        }
        for item in items {
            check_aad(&item.associated_data)?;
        }
        let batch: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                json!({
                    "ciphertext": item.ciphertext.as_str(),
                    "associated_data": item.associated_data,
                    "reference": index.to_string(),
                })
            })
            .collect();
        let body = json!({ "batch_input": batch, "partial_failure_response_code": 207 });
        let mut response = self.call(ApiRequest::post(&self.decrypt_path, &body), budget)?;
        let status = response.status();
        let has_results = response
            .body()
            .get("data")
            .and_then(|data| data.get("batch_results"))
            .is_some_and(Value::is_array);
        // 200: all good; 207: partial failure; 400 with batch_results: all items failed.
        let per_item = matches!(status, 200 | 207) || (status == 400 && has_results);
        if !per_item {
            return Err(if response.is_success() {
                malformed_response(Some(status))
            } else {
                response.failure()
            });
        }
        let body = response.take_body();
        decode_batch_results(&body, items.len(), status)
            .map(|results| TransitResponse::BatchDecrypted { results })
    }

    fn call(
        &self,
        request: ApiRequest<'_>,
        budget: Duration,
    ) -> Result<ApiResponse, TransitFailure> {
        let request = request.timeout(budget);
        self.auth
            .with_token(|token| self.http.send(request.token(token)))
    }
}

/// The body of a 2xx answer, or the classified failure.
fn success(mut response: ApiResponse) -> Result<WipedJson, TransitFailure> {
    if response.is_success() {
        Ok(response.take_body())
    } else {
        Err(response.failure())
    }
}

fn data(body: &Value) -> Result<&Map<String, Value>, TransitFailure> {
    body.get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed_response(Some(200)))
}

/// AAD must be present and valid base64: OpenBao answers 500 to bad base64, and an empty AAD
/// would silently drop the binding.
fn check_aad(associated_data: &str) -> Result<(), TransitFailure> {
    if associated_data.is_empty() || STANDARD.decode(associated_data).is_err() {
        return Err(TransitFailure::new(FailureClass::InvalidRequest));
    }
    Ok(())
}

fn decode_plaintext(data: &Map<String, Value>) -> Result<Plaintext, TransitFailure> {
    let encoded = data
        .get("plaintext")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed_response(Some(200)))?;
    STANDARD
        .decode(encoded)
        .map(Plaintext::new)
        .map_err(|_| malformed_response(Some(200)))
}

/// Decodes `data` of `GET <mount>/keys/<key>` into the core's [`KeyMetadata`].
///
/// Required (missing or ill-typed ⇒ `Unavailable`): `type`, `latest_version`,
/// `min_available_version`, `min_decryption_version`, `min_encryption_version`, `keys`
/// (version → integer creation time), `derived`, `exportable`, `allow_plaintext_backup`,
/// `deletion_allowed`, `supports_encryption`, `supports_decryption`. Optional (absent ⇒
/// false / zero): `convergent_encryption` (only sent for derived keys), `imported_key`,
/// `soft_deleted` (OpenBao-specific), `auto_rotate_period` (seconds).
///
/// # Errors
/// `Unavailable` ("malformed response") when a required field is missing or ill-typed.
pub fn decode_key_metadata(body: &Value) -> Result<KeyMetadata, TransitFailure> {
    let data = data(body)?;
    let malformed = || malformed_response(Some(200));
    let uint = |name: &str| data.get(name).and_then(Value::as_u64).ok_or_else(malformed);
    let flag = |name: &str| {
        data.get(name)
            .and_then(Value::as_bool)
            .ok_or_else(malformed)
    };
    let optional_flag = |name: &str| match data.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(value) => value.as_bool().ok_or_else(malformed),
    };
    let key_type = data
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(malformed)?
        .to_owned();
    let keys = data
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(malformed)?;
    let mut versions = BTreeMap::new();
    for (version, created) in keys {
        let canonical = !version.is_empty()
            && !version.starts_with('0')
            && version.bytes().all(|b| b.is_ascii_digit());
        let number = version
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(malformed)?;
        let created = created.as_i64().ok_or_else(malformed)?;
        versions.insert(number, created);
    }
    let auto_rotate_period = match data.get("auto_rotate_period") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(value) => Duration::from_secs(value.as_u64().ok_or_else(malformed)?),
    };
    Ok(KeyMetadata {
        key_type,
        latest_version: uint("latest_version")?,
        min_available_version: uint("min_available_version")?,
        min_decryption_version: uint("min_decryption_version")?,
        min_encryption_version: uint("min_encryption_version")?,
        versions,
        derived: flag("derived")?,
        convergent_encryption: optional_flag("convergent_encryption")?,
        exportable: flag("exportable")?,
        allow_plaintext_backup: flag("allow_plaintext_backup")?,
        deletion_allowed: flag("deletion_allowed")?,
        imported_key: optional_flag("imported_key")?,
        soft_deleted: optional_flag("soft_deleted")?,
        supports_encryption: flag("supports_encryption")?,
        supports_decryption: flag("supports_decryption")?,
        auto_rotate_period,
    })
}

/// Decodes `data.batch_results`: exactly `expected` items, in order, each `reference` equal
/// to its index; an item with a non-empty `error` becomes a per-item failure classified like
/// a 400 answer.
///
/// # Errors
/// `Unavailable` when the count, order, references or plaintexts are wrong.
pub fn decode_batch_results(
    body: &Value,
    expected: usize,
    http_status: u16,
) -> Result<Vec<Result<Plaintext, TransitFailure>>, TransitFailure> {
    let malformed = || malformed_response(Some(http_status));
    let results = data(body)
        .ok()
        .and_then(|data| data.get("batch_results"))
        .and_then(Value::as_array)
        .ok_or_else(malformed)?;
    if results.len() != expected {
        return Err(malformed());
    }
    let mut decoded = Vec::with_capacity(expected);
    for (index, item) in results.iter().enumerate() {
        let item = item.as_object().ok_or_else(malformed)?;
        if item.get("reference").and_then(Value::as_str) != Some(index.to_string().as_str()) {
            return Err(malformed());
        }
        match item.get("error").and_then(Value::as_str) {
            Some(error) if !error.is_empty() => {
                decoded.push(Err(TransitFailure::new(classify_error_text([error]))))
            }
            Some(_) | None => {
                let plaintext = decode_plaintext(item).map_err(|_| malformed())?;
                decoded.push(Ok(plaintext));
            }
        }
    }
    Ok(decoded)
}

fn decode_capabilities(
    data: &Map<String, Value>,
    paths: &[String],
) -> Result<BTreeMap<String, Vec<String>>, TransitFailure> {
    let mut out = BTreeMap::new();
    for path in paths {
        let entry = data
            .get(path.as_str())
            .or_else(|| data.get(path.trim_start_matches('/')))
            .and_then(Value::as_array)
            .ok_or_else(|| malformed_response(Some(200)))?;
        let capabilities = entry
            .iter()
            .map(|capability| capability.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed_response(Some(200)))?;
        out.insert(path.clone(), capabilities);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn metadata_body() -> Value {
        json!({"data": {
            "allow_plaintext_backup": false, "auto_rotate_period": 0, "deletion_allowed": false,
            "derived": false, "exportable": false, "imported_key": false,
            "keys": {"1": 1795805642, "2": 1795805700}, "latest_version": 2,
            "min_available_version": 0, "min_decryption_version": 1, "min_encryption_version": 0,
            "name": "kms-key", "soft_deleted": false, "supports_decryption": true,
            "supports_derivation": true, "supports_encryption": true, "supports_signing": false,
            "type": "aes256-gcm96"
        }})
    }

    #[test]
    fn key_metadata_decodes_and_refuses_ill_typed_fields() {
        let metadata = decode_key_metadata(&metadata_body()).unwrap();
        assert_eq!(metadata.latest_version, 2);
        assert_eq!(
            metadata.versions,
            BTreeMap::from([(1, 1795805642), (2, 1795805700)])
        );
        assert_eq!(metadata.key_type, "aes256-gcm96");
        assert!(metadata.supports_encryption && !metadata.convergent_encryption);

        for (field, bad) in [
            ("latest_version", json!("2")),
            ("keys", json!({"01": 1})),
            ("keys", json!({"1": {"creation_time": "x"}})),
            ("exportable", json!(null)),
            ("type", json!(1)),
        ] {
            let mut body = metadata_body();
            body["data"][field] = bad;
            let failure = decode_key_metadata(&body).unwrap_err();
            assert_eq!(failure.class, FailureClass::Unavailable, "{field}");
        }
        let mut body = metadata_body();
        body["data"]
            .as_object_mut()
            .unwrap()
            .remove("min_decryption_version");
        assert!(decode_key_metadata(&body).is_err());
    }

    #[test]
    fn batch_results_keep_order_and_check_references() {
        let body = json!({"data": {"batch_results": [
            {"plaintext": "aGk=", "reference": "0"},
            {"error": "cipher: message authentication failed", "plaintext": "", "reference": "1"},
            {"error": "ciphertext or signature version is disallowed by policy (too old)", "reference": "2"},
        ]}});
        let results = decode_batch_results(&body, 3, 207).unwrap();
        assert_eq!(results[0].as_ref().unwrap().expose(), b"hi");
        assert_eq!(
            results[1].as_ref().unwrap_err().class,
            FailureClass::DecryptFailed
        );
        assert_eq!(
            results[2].as_ref().unwrap_err().class,
            FailureClass::VersionDisallowed
        );

        assert!(decode_batch_results(&body, 2, 207).is_err());
        let swapped = json!({"data": {"batch_results": [
            {"plaintext": "aGk=", "reference": "1"}, {"plaintext": "aGk=", "reference": "0"},
        ]}});
        assert!(decode_batch_results(&swapped, 2, 200).is_err());
    }

    #[test]
    fn aad_must_be_present_base64() {
        assert!(check_aad("dWlkLTEyMw==").is_ok());
        assert!(check_aad("").is_err());
        assert!(check_aad("not base64!").is_err());
    }
}
