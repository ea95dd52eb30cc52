//! Checks of the runtime's parsers of untrusted text: the YAML configuration and OpenBao's
//! Transit JSON answers.

use std::sync::OnceLock;
use std::time::Duration;

use bao_kms_core::rotation::{self, ObserveMode, RotationPolicy};
use bao_kms_core::{KeyMetadata, StateFile, profile};
use bao_kms_runtime_tokio::config::{Overrides, format_duration, parse_duration, parse_str};
use bao_kms_runtime_tokio::openbao::http::{
    ApiResponse, classify_error_text, classify_status, error_texts,
};
use bao_kms_runtime_tokio::openbao::transit::{decode_batch_results, decode_key_metadata};
use serde_json::Value;

/// Configuration text: `parse_str` never panics; it accepts, or every problem it reports has a
/// message and names a dotted camelCase field (or is a general, file-level problem). An
/// accepted configuration converts to the core's configuration and summary without panicking.
///
/// The same text is also given to the Go-syntax duration parser: anything it accepts formats
/// back to text that parses to the same duration.
pub fn config_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_str(&text, &Overrides::default(), &|_| None) {
        Ok(config) => {
            let core = config.provider_config("v0.0.0-fuzz", [7; 32]);
            assert_eq!(&core.identity, config.identity());
            let summary = config.resolved_summary();
            assert!(!summary.to_string().is_empty());
            assert_eq!(
                config.identity_fingerprint(),
                config.identity().fingerprint()
            );
        }
        Err(error) => {
            let problems = error.problems();
            assert!(!problems.is_empty(), "a config error without problems");
            for problem in problems {
                assert!(
                    !problem.message().is_empty(),
                    "a problem without a message: {problem:?}"
                );
                assert!(
                    problem.field().is_empty() || is_field_path(problem.field()),
                    "a problem names no field: {problem:?}"
                );
            }
            assert!(error.to_string().starts_with("config invalid; "));
        }
    }
    if text.len() <= 64
        && let Ok(duration) = parse_duration(&text)
    {
        let formatted = format_duration(duration);
        assert_eq!(
            parse_duration(&formatted),
            Ok(duration),
            "{text:?} parsed to {duration:?}, which formats as {formatted:?}"
        );
    }
}

/// A dotted camelCase path, each segment optionally indexed: `auth.jwt.expectedAudience[1]`.
fn is_field_path(field: &str) -> bool {
    field.split('.').all(|segment| {
        let name = segment.split('[').next().unwrap_or_default();
        let indexes = &segment[name.len()..];
        let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        let indexes_ok = indexes.is_empty()
            || (indexes.starts_with('[')
                && indexes.ends_with(']')
                && indexes[1..indexes.len() - 1]
                    .split("][")
                    .all(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())));
        name_ok && indexes_ok
    })
}

/// Transit answers: the public decoders never panic on any JSON, and what they accept is
/// consistent; accepted key metadata then goes through the core's profile, bootstrap and
/// observation code, which must not panic either. (The encrypt, decrypt, `config/keys` and
/// capabilities decoders are private to `openbao::transit`; their shared helpers are covered
/// through the batch decoder.)
pub fn transit_json(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(metadata) = decode_key_metadata(&body) {
        metadata_invariants(&body, &metadata);
        exercise_core(&metadata);
    }
    let items = body
        .get("data")
        .and_then(|data| data.get("batch_results"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for status in [200, 207, 400] {
        for expected in [items, items + 1] {
            if let Ok(results) = decode_batch_results(&body, expected, status) {
                assert_eq!(results.len(), expected, "batch results of the wrong length");
            }
        }
        let response = ApiResponse::new(status, body.clone());
        let _ = response.failure();
        if let Some(id) = response.request_id() {
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        }
    }
    let texts = error_texts(&body);
    let _ = classify_error_text(texts.iter().copied());
    for status in [301, 400, 401, 403, 404, 429, 500, 503] {
        let _ = classify_status(status, &texts);
    }
}

fn metadata_invariants(body: &Value, metadata: &KeyMetadata) {
    let data = &body["data"];
    assert_eq!(
        data["latest_version"].as_u64(),
        Some(metadata.latest_version)
    );
    assert_eq!(data["type"].as_str(), Some(metadata.key_type.as_str()));
    let keys = data["keys"].as_object().map_or(0, serde_json::Map::len);
    assert_eq!(
        keys,
        metadata.versions.len(),
        "a key version was dropped or invented"
    );
    for (version, created) in &metadata.versions {
        assert_eq!(data["keys"][version.to_string()].as_i64(), Some(*created));
    }
}

/// A one-record registry to observe fuzzed metadata against.
fn observed_state() -> &'static StateFile {
    static STATE: OnceLock<StateFile> = OnceLock::new();
    STATE.get_or_init(|| {
        let metadata = KeyMetadata {
            key_type: "aes256-gcm96".into(),
            latest_version: 1,
            min_decryption_version: 1,
            versions: [(1, 1_795_805_642)].into_iter().collect(),
            supports_encryption: true,
            supports_decryption: true,
            auto_rotate_period: Duration::ZERO,
            ..KeyMetadata::default()
        };
        match rotation::bootstrap(&crate::wire::golden_scope(), &metadata, 1_795_805_700) {
            Ok(state) => state,
            Err(refusal) => panic!("bootstrap of a fresh key must succeed: {refusal:?}"),
        }
    })
}

fn exercise_core(metadata: &KeyMetadata) {
    let _ = profile::findings(metadata);
    let _ = rotation::bootstrap(&crate::wire::golden_scope(), metadata, 1_795_805_700);
    let current = observed_state();
    for mode in [ObserveMode::Probe, ObserveMode::Discover] {
        for reject_version_rollback in [true, false] {
            let policy = RotationPolicy {
                require_stable_observation_count: 1,
                reject_version_rollback,
            };
            if let Ok(verdict) = rotation::observe(current, metadata, 1_795_805_800, policy, mode)
                && let Some(next) = verdict.next
            {
                assert_eq!(next.generation(), current.generation() + 1);
                assert_eq!(
                    StateFile::decode(next.encode().as_bytes()).as_ref(),
                    Ok(&next)
                );
            }
        }
    }
}
