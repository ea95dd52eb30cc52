//! Checks of the wire-format-v1 parsers and encoders of `bao-kms-core`.
//!
//! Every function takes the raw fuzz input and panics when an invariant breaks. The file is
//! self-contained (it uses only `bao_kms_core`, `base64`, `sha2`, `serde_json` and `std`, all of
//! which the core's integration tests can use too): `core/tests/fuzz_regressions.rs` includes it
//! with `#[path]`, so the committed corpora are replayed by a plain `cargo test` on stable,
//! through exactly the checks the fuzz targets run.
//!
//! Where a check compares against a reference (the key_id and digest syntax, the annotation key
//! rule, the ciphertext syntax, Go's JSON escaping), the reference is written here from the
//! documented rules, independently of the core's code.

use std::collections::BTreeMap;

use bao_kms_core::annotations::{self, Annotations};
use bao_kms_core::registry::admit_loaded;
use bao_kms_core::{
    Aad, Checkpoint, IdentityScope, IdentityValues, KeyId, KeyVersion, StateFile, TransitCiphertext,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::Sha256;

/// The golden identity of `core/tests/vectors/wire-v1.json`.
pub fn golden_values() -> IdentityValues {
    IdentityValues {
        provider_name: "openbao-kms-workload-a".into(),
        cluster_id: "workload-a".into(),
        openbao_instance_id: "bao-prod-a".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-prod-primary".into(),
        key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "kms-key".into(),
    }
}

/// The golden key_id (version 3, created at 1715803200).
pub const GOLDEN_KEY_ID: &str = "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk";
/// The golden Transit version.
pub const GOLDEN_VERSION: u32 = 3;
/// The golden creation time.
pub const GOLDEN_CREATED: i64 = 1_715_803_200;

/// `obk2.` followed by a canonical unpadded base64url SHA-256 digest: 48 characters.
pub fn key_id_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let expected = reference::is_key_id(&text);
    match KeyId::parse(&text) {
        Ok(key_id) => {
            assert!(
                expected,
                "accepted a key_id the written rule refuses: {text:?}"
            );
            assert_eq!(key_id.to_string(), text, "Display does not round-trip");
            assert_eq!(key_id.as_str(), text);
            assert_eq!(key_id.as_str().len(), 48, "accepted key_id is not 48 bytes");
            assert_eq!(KeyId::parse(key_id.as_str()).as_ref(), Ok(&key_id));
            assert!(reference::is_digest(key_id.digest().as_str()));
            let hash = key_id.apiserver_hash();
            assert_eq!(hash.len(), 7 + 64);
            assert!(hash.starts_with("sha256:"));
        }
        Err(_) => assert!(!expected, "refused a well-formed key_id: {text:?}"),
    }
}

/// Annotation maps: parse never panics; a parsed map binds to the golden snapshot only when it
/// carries exactly the golden digests and version.
pub fn annotations_parse(data: &[u8]) {
    let raw = decode_annotation_map(&mut Bytes::new(data));
    check_annotations(&raw);
}

/// The annotation checks, on an already decoded map.
pub fn check_annotations(raw: &BTreeMap<String, Vec<u8>>) {
    let scope = golden_scope();
    let key_id = golden_key_id();
    let version = KeyVersion::new(u64::from(GOLDEN_VERSION)).expect("golden version");
    let parsed = Annotations::parse(raw);
    let again = Annotations::parse(raw);
    assert_eq!(parsed, again, "parse is not deterministic");
    let Ok(parsed) = parsed else {
        return;
    };
    // Independent necessary conditions for acceptance.
    for (key, value) in raw {
        assert!(
            reference::is_fqdn(key),
            "accepted a key the written FQDN rule refuses: {key:?}"
        );
        assert!(
            std::str::from_utf8(value).is_ok(),
            "accepted a non-UTF-8 value"
        );
    }
    let text = |key: &str| raw.get(key).map(|value| String::from_utf8_lossy(value));
    assert_eq!(
        text(annotations::PROVIDER).as_deref(),
        Some("openbao-transit")
    );
    assert_eq!(text(annotations::AAD_VERSION).as_deref(), Some("v1"));
    let version_text = text(annotations::TRANSIT_KEY_VERSION).unwrap_or_default();
    assert!(
        reference::is_canonical_version(&version_text),
        "accepted a non-canonical version {version_text:?}"
    );
    assert_eq!(parsed.version().to_string(), version_text);
    assert!(!parsed.plugin_version().is_empty());
    for key in [
        annotations::KEY_ID_HASH,
        annotations::TRANSIT_MOUNT_HASH,
        annotations::TRANSIT_KEY_HASH,
    ] {
        let value = text(key).unwrap_or_default();
        assert!(
            reference::is_digest(&value),
            "accepted {key} = {value:?}, not a digest"
        );
    }
    let bound = parsed.check_binding(scope.key_scope(), &key_id, version);
    let golden = Annotations::for_encrypt(scope.key_scope(), &key_id, version, "any");
    let binds_by_reference = [
        annotations::KEY_ID_HASH,
        annotations::TRANSIT_KEY_VERSION,
        annotations::TRANSIT_MOUNT_HASH,
        annotations::TRANSIT_KEY_HASH,
    ]
    .iter()
    .all(|key| raw.get(*key) == golden.get(*key))
        && !raw.contains_key(annotations::NAMESPACE_HASH);
    assert_eq!(
        bound.is_ok(),
        binds_by_reference,
        "check_binding disagrees with a comparison of the golden values: {bound:?}"
    );
}

/// Transit ciphertexts: accepted text re-parses to the same value and follows the written rule.
pub fn ciphertext_prefix(data: &[u8]) {
    let expected = reference::ciphertext_version(data);
    match TransitCiphertext::parse(data) {
        Ok(parsed) => {
            assert_eq!(
                Some(parsed.version().get()),
                expected,
                "accepted a ciphertext the written rule refuses (or with another version)"
            );
            assert_eq!(parsed.as_str().as_bytes(), data);
            assert_eq!(parsed.len(), data.len());
            assert!(!parsed.is_empty());
            let again = TransitCiphertext::parse(parsed.as_str().as_bytes());
            assert_eq!(again.as_ref(), Ok(&parsed), "re-parse differs");
        }
        Err(_) => assert_eq!(expected, None, "refused a well-formed ciphertext"),
    }
}

/// Canonical AAD v1 and the key_id for arbitrary identity values, against the reference
/// encoder. The input is UTF-8 (lossy) text of NUL-separated fields: provider name, cluster id,
/// instance id, namespace, mount id, lineage id, version, creation time; missing fields take
/// the golden values. Values that `IdentityScope::new` refuses are skipped.
pub fn aad_canonical(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0');
    let mut next = |default: &str| fields.next().unwrap_or(default).to_owned();
    let golden = golden_values();
    let values = IdentityValues {
        provider_name: next(&golden.provider_name),
        cluster_id: next(&golden.cluster_id),
        openbao_instance_id: next(&golden.openbao_instance_id),
        openbao_namespace: next(&golden.openbao_namespace),
        transit_mount_id: next(&golden.transit_mount_id),
        key_lineage_id: next(&golden.key_lineage_id),
        ..golden
    };
    let version = next("3").parse::<u32>().unwrap_or(GOLDEN_VERSION).max(1);
    let created = next("1715803200").parse::<i64>().unwrap_or(GOLDEN_CREATED);
    let Ok(scope) = IdentityScope::new(values.clone()) else {
        return;
    };
    let key_version = KeyVersion::new(u64::from(version)).expect("non-zero version");
    let key_id = KeyId::derive(scope.key_scope(), key_version, created);
    let expected_key_id = reference::key_id(&values, version, created);
    assert_eq!(
        key_id.as_str(),
        expected_key_id,
        "key_id derivation differs"
    );
    let aad = Aad::v1(scope.key_scope(), &key_id, key_version);
    let expected = reference::aad_json(&values, &expected_key_id, version);
    assert_eq!(
        aad.as_json(),
        expected,
        "canonical AAD differs from Go's encoding"
    );
    assert_eq!(
        aad.to_transit_base64(),
        STANDARD.encode(expected.as_bytes())
    );
    // The reference itself must be JSON that gives the provider name back unchanged.
    let parsed: serde_json::Value = serde_json::from_str(&expected).expect("reference AAD is JSON");
    assert_eq!(
        parsed["provider_name"].as_str(),
        Some(values.provider_name.as_str())
    );
}

/// State files: anything accepted re-encodes byte for byte and is internally consistent.
pub fn state_file(data: &[u8]) {
    let Ok(state) = StateFile::decode(data) else {
        return;
    };
    assert_eq!(
        state.encode().as_bytes(),
        data,
        "accepted a non-canonical state file"
    );
    assert_eq!(
        StateFile::decode(state.encode().as_bytes()).as_ref(),
        Ok(&state)
    );
    assert!(state.generation() >= 1);
    assert_eq!(state.active().key_id(), state.active_key_id());
    let mut versions = std::collections::BTreeSet::new();
    for record in state.records() {
        let derived = KeyId::derive(record.scope(), record.version(), record.created_at_unix());
        assert_eq!(
            &derived,
            record.key_id(),
            "a record's key_id is not derived"
        );
        assert!(
            versions.insert(record.version()),
            "duplicate version accepted"
        );
        assert_eq!(state.record_by_key_id(record.key_id()), Some(record));
    }
    let checkpoint = Checkpoint::for_state(&state);
    let encoded = checkpoint.encode();
    assert_eq!(
        Checkpoint::decode(encoded.as_bytes()).as_ref(),
        Ok(&checkpoint)
    );
    assert!(admit_loaded(Some(&state), Some(&checkpoint)).is_ok());
    if let Ok(next) = state.successor(state.active_key_id().clone(), state.records().to_vec()) {
        assert_eq!(next.generation(), state.generation() + 1);
        assert_eq!(next.previous_hash(), Some(state.current_hash()));
        assert_eq!(
            StateFile::decode(next.encode().as_bytes()).as_ref(),
            Ok(&next)
        );
        assert!(admit_loaded(Some(&next), Some(&checkpoint)).is_ok());
    }
}

/// Checkpoints: anything accepted re-encodes byte for byte.
pub fn checkpoint(data: &[u8]) {
    let Ok(checkpoint) = Checkpoint::decode(data) else {
        return;
    };
    assert_eq!(
        checkpoint.encode().as_bytes(),
        data,
        "accepted a non-canonical checkpoint"
    );
    assert!(checkpoint.generation() >= 1);
    assert!(reference::is_state_hash(checkpoint.current_hash().as_str()));
}

/// The golden identity scope.
pub fn golden_scope() -> IdentityScope {
    IdentityScope::new(golden_values()).expect("golden identity is valid")
}

/// The golden key_id.
pub fn golden_key_id() -> KeyId {
    KeyId::parse(GOLDEN_KEY_ID).expect("golden key_id parses")
}

/// A cursor over fuzz input bytes; reads past the end give zeros and empty slices.
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        let (first, rest) = self
            .data
            .split_first()
            .map_or((0, &[][..]), |(b, r)| (*b, r));
        self.data = rest;
        first
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `len` bytes (fewer at the end of the input).
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        taken
    }
}

/// Decodes an annotation map: until the input ends, a key (one length byte, then the bytes,
/// read as lossy UTF-8) and a value (two length bytes little-endian, then the bytes). Every map
/// is reachable, and real annotation maps are easy to write as seeds.
pub fn decode_annotation_map(bytes: &mut Bytes<'_>) -> BTreeMap<String, Vec<u8>> {
    let mut map = BTreeMap::new();
    while !bytes.is_empty() {
        let key_len = usize::from(bytes.byte());
        let key = String::from_utf8_lossy(bytes.take(key_len)).into_owned();
        let value_len = usize::from(bytes.u16());
        map.insert(key, bytes.take(value_len).to_vec());
    }
    map
}

/// The inverse of [`decode_annotation_map`], for writing seeds.
pub fn encode_annotation_map(map: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in map {
        let key_len = u8::try_from(key.len()).expect("seed keys are short");
        let value_len = u16::try_from(value.len()).expect("seed values are short");
        out.push(key_len);
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Reference implementations of the written wire-format rules, independent of the core.
pub mod reference {
    use base64::Engine as _;
    use sha2::Digest as _;

    use super::{IdentityValues, STANDARD, Sha256, URL_SAFE_NO_PAD};

    /// 43 characters of unpadded base64url that decode to 32 bytes and re-encode identically.
    pub fn is_digest(text: &str) -> bool {
        text.len() == 43
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD
                .decode(text)
                .is_ok_and(|bytes| bytes.len() == 32 && URL_SAFE_NO_PAD.encode(&bytes) == text)
    }

    /// `obk2.` and a digest.
    pub fn is_key_id(text: &str) -> bool {
        text.strip_prefix("obk2.").is_some_and(is_digest)
    }

    /// `krs1.` and a digest.
    pub fn is_state_hash(text: &str) -> bool {
        text.strip_prefix("krs1.").is_some_and(is_digest)
    }

    /// Decimal digits without a leading zero, between 1 and `u32::MAX`.
    pub fn is_canonical_version(text: &str) -> bool {
        !text.is_empty()
            && !text.starts_with('0')
            && text.bytes().all(|b| b.is_ascii_digit())
            && text.parse::<u32>().is_ok()
    }

    /// Kubernetes' FQDN rule for annotation keys: at most 253 characters once one trailing
    /// dot is dropped, at least two labels, each 1 to 63 of `[a-z0-9-]` with an alphanumeric
    /// first and last character.
    pub fn is_fqdn(key: &str) -> bool {
        let name = key.strip_suffix('.').unwrap_or(key);
        let labels: Vec<&str> = name.split('.').collect();
        let label_ok = |label: &&str| {
            let bytes = label.as_bytes();
            let alnum = |b: &u8| b.is_ascii_digit() || b.is_ascii_lowercase();
            (1..=63).contains(&bytes.len())
                && bytes.first().is_some_and(alnum)
                && bytes.last().is_some_and(alnum)
                && bytes.iter().all(|b| alnum(b) || *b == b'-')
        };
        !name.is_empty() && name.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok)
    }

    /// The version of a well-formed ciphertext: `vault:v<N>:` with canonical `N`, then padded
    /// standard base64 (canonical) of at least 28 bytes.
    pub fn ciphertext_version(bytes: &[u8]) -> Option<u32> {
        let text = std::str::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix("vault:v")?;
        let colon = rest.find(':')?;
        let (digits, body) = (&rest[..colon], &rest[colon + 1..]);
        if !is_canonical_version(digits) {
            return None;
        }
        let payload = STANDARD.decode(body).ok()?;
        (payload.len() >= 28 && STANDARD.encode(&payload) == body)
            .then(|| digits.parse().ok())
            .flatten()
    }

    /// Unpadded base64url SHA-256 of `value`.
    pub fn digest(value: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
    }

    /// The key_id: `obk2.` + digest of every part followed by a NUL byte.
    pub fn key_id(values: &IdentityValues, version: u32, created: i64) -> String {
        let mut input = Vec::new();
        let mut part = |text: &str| {
            input.extend_from_slice(text.as_bytes());
            input.push(0);
        };
        part("openbao-kubernetes-kms/key-id/v1");
        part(&values.provider_name);
        part(&values.cluster_id);
        part(&values.openbao_instance_id);
        if !values.openbao_namespace.is_empty() {
            part(&values.openbao_namespace);
        }
        part(&values.transit_mount_id);
        part(&values.key_lineage_id);
        part(&version.to_string());
        part(&created.to_string());
        format!("obk2.{}", URL_SAFE_NO_PAD.encode(Sha256::digest(&input)))
    }

    /// A JSON string literal as Go's `encoding/json` writes it (HTML-safe escaping).
    pub fn go_quote(text: &str) -> String {
        let mut out = String::from("\"");
        for ch in text.chars() {
            let escaped = match ch {
                '"' => "\\\"".to_owned(),
                '\\' => "\\\\".to_owned(),
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                '\u{8}' => "\\b".to_owned(),
                '\u{c}' => "\\f".to_owned(),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                    format!("\\u{:04x}", u32::from(ch))
                }
                other => other.to_string(),
            };
            out.push_str(&escaped);
        }
        out.push('"');
        out
    }

    /// The canonical AAD v1 JSON: Go's `json.Marshal` of the fixed struct, fields in order.
    pub fn aad_json(values: &IdentityValues, key_id: &str, version: u32) -> String {
        let mut fields: Vec<(&str, String)> = vec![
            ("aad_version", "v1".into()),
            ("purpose", "kubernetes-etcd-kms-v2".into()),
            ("provider", "openbao-transit".into()),
            ("provider_name", values.provider_name.clone()),
            ("cluster_id_hash", digest(&values.cluster_id)),
            ("openbao_instance_hash", digest(&values.openbao_instance_id)),
        ];
        if !values.openbao_namespace.is_empty() {
            fields.push(("openbao_namespace_hash", digest(&values.openbao_namespace)));
        }
        fields.extend([
            ("transit_mount_hash", digest(&values.transit_mount_id)),
            ("transit_key_hash", digest(&values.key_lineage_id)),
            ("key_id_hash", digest(key_id)),
            ("key_version", version.to_string()),
        ]);
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{}:{}", go_quote(name), go_quote(value)))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}
