//! Wire format v1 reproduced byte for byte from the vectors in `vectors/`.
//!
//! `vectors/wire-v1.json` is a byte copy of the project's golden vector (the preview releases'
//! own fixture); `vectors/wire-v1-extra.json` is written by `vectors/derive_vectors.py` from the
//! written rules, independently of this crate, after that script has reproduced the golden
//! vector. For every vector the key_id, the exact annotation map, the AAD JSON text and its
//! Transit base64 must match, and the annotation edits listed in the files must be refused
//! (or tolerated, or reported as a mismatch) exactly as stated.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use bao_kms_core::annotations::{AnnotationError, AnnotationMismatch, PROVIDER, TRANSIT_KEY_HASH};
use bao_kms_core::limits::{MAX_ANNOTATIONS_BYTES, MAX_KEY_ID_BYTES};
use bao_kms_core::{Aad, Annotations, IdentityScope, IdentityValues, KeyId, KeyVersion};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const GOLDEN: &str = include_str!("vectors/wire-v1.json");
const EXTRA: &str = include_str!("vectors/wire-v1-extra.json");

/// SHA-256 of the golden file as received; the copy must never be edited.
const GOLDEN_SHA256: &str = "f13a0a5238dcc552709874ccb28a8d3421b7d455c4db5bb3cf0da943a9cbbc5f";

type AnnotationMap = BTreeMap<String, Vec<u8>>;

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} must be a string"))
}

fn number(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} must be an unsigned integer"))
}

/// Everything a vector's input determines.
struct Derived {
    scope: IdentityScope,
    version: KeyVersion,
    key_id: KeyId,
    annotations: AnnotationMap,
    aad: Aad,
}

fn derive(input: &Value) -> Derived {
    // The golden vector does not carry the mount path and key name; they are not inputs of the
    // key_id, the annotations or the AAD, only of the identity fingerprint.
    let optional = |field: &str, default: &str| {
        input
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let scope = IdentityScope::new(IdentityValues {
        provider_name: text(input, "providerName").to_owned(),
        cluster_id: text(input, "clusterId").to_owned(),
        openbao_instance_id: text(input, "openbaoInstanceId").to_owned(),
        openbao_namespace: text(input, "openbaoNamespace").to_owned(),
        transit_mount_id: text(input, "transitMountId").to_owned(),
        key_lineage_id: text(input, "transitKeyLineageId").to_owned(),
        transit_mount_path: optional("transitMountPath", "transit"),
        transit_key_name: optional("transitKeyName", "kms-key"),
    })
    .unwrap();
    let version = KeyVersion::new(number(input, "transitVersion")).unwrap();
    let created = i64::try_from(number(input, "transitVersionCreatedAtUnix")).unwrap();
    let key_id = KeyId::derive(scope.key_scope(), version, created);
    let annotations = Annotations::for_encrypt(
        scope.key_scope(),
        &key_id,
        version,
        text(input, "pluginVersion"),
    );
    let aad = Aad::v1(scope.key_scope(), &key_id, version);
    Derived {
        scope,
        version,
        key_id,
        annotations,
        aad,
    }
}

fn annotations_of(expected: &Value) -> AnnotationMap {
    expected["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap().as_bytes().to_vec()))
        .collect()
}

fn as_text(map: &AnnotationMap) -> BTreeMap<&str, &str> {
    map.iter()
        .map(|(key, value)| (key.as_str(), std::str::from_utf8(value).unwrap()))
        .collect()
}

/// Checks one vector completely and returns what it derived, for the annotation cases.
fn check_vector(vector: &Value) -> Derived {
    let name = text(vector, "name");
    let input = &vector["input"];
    let expected = &vector["expected"];
    let derived = derive(input);

    assert_eq!(
        derived.key_id.as_str(),
        text(expected, "keyId"),
        "{name}: key_id"
    );
    assert_eq!(derived.key_id.as_str().len(), 48, "{name}: key_id length");
    assert!(derived.key_id.as_str().len() <= MAX_KEY_ID_BYTES);
    assert_eq!(
        KeyId::parse(text(expected, "keyId")).unwrap(),
        derived.key_id,
        "{name}: the expected key_id parses"
    );

    let want = annotations_of(expected);
    assert_eq!(
        as_text(&derived.annotations),
        as_text(&want),
        "{name}: annotations (keys and values)"
    );
    assert_eq!(derived.annotations, want, "{name}: annotation bytes");
    let size: usize = want
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    assert!(size <= MAX_ANNOTATIONS_BYTES);

    assert_eq!(
        derived.aad.as_json(),
        text(expected, "aadJson"),
        "{name}: AAD JSON"
    );
    assert_eq!(
        derived.aad.to_transit_base64(),
        text(expected, "transitAssociatedData"),
        "{name}: Transit associated_data"
    );
    // The vector is self-consistent: the base64 layer is exactly the JSON text.
    assert_eq!(
        STANDARD
            .decode(text(expected, "transitAssociatedData"))
            .unwrap(),
        text(expected, "aadJson").as_bytes(),
        "{name}: base64 of the AAD"
    );
    // The AAD's only raw value survives a JSON round trip.
    let aad: Value = serde_json::from_str(derived.aad.as_json()).unwrap();
    assert_eq!(aad["provider_name"], input["providerName"], "{name}");

    if let Some(hash) = expected.get("apiserverKeyIdHash") {
        assert_eq!(
            derived.key_id.apiserver_hash(),
            hash.as_str().unwrap(),
            "{name}: kube-apiserver key_id hash"
        );
    }
    if let Some(fingerprint) = expected.get("identityFingerprint") {
        assert_eq!(
            derived.scope.fingerprint().as_str(),
            fingerprint.as_str().unwrap(),
            "{name}: identity fingerprint"
        );
    }

    // What Encrypt writes, Decrypt reads back and binds to the same key.
    let parsed = Annotations::parse(&want).unwrap();
    assert_eq!(parsed.version(), derived.version);
    assert_eq!(parsed.plugin_version(), text(input, "pluginVersion"));
    parsed
        .check_binding(derived.scope.key_scope(), &derived.key_id, derived.version)
        .unwrap();
    derived
}

fn vectors(document: &Value) -> &[Value] {
    let vectors = document["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    vectors
}

/// Applies one case's `drop`, `set` and `add` edits to a copy of `golden`.
fn edited(golden: &AnnotationMap, case: &Value) -> AnnotationMap {
    let mut map = golden.clone();
    if let Some(key) = case.get("drop") {
        let key = key.as_str().unwrap();
        assert!(map.remove(key).is_some(), "drop of absent {key}");
    }
    if let Some(set) = case.get("set") {
        for (key, value) in set.as_object().unwrap() {
            let old = map.insert(key.clone(), value.as_str().unwrap().as_bytes().to_vec());
            assert!(old.is_some(), "set of absent {key}");
        }
    }
    if let Some(add) = case.get("add") {
        for (key, value) in add.as_object().unwrap() {
            map.insert(key.clone(), value.as_str().unwrap().as_bytes().to_vec());
        }
    }
    map
}

/// The language-neutral name the extra vectors use for a refusal.
fn refusal_name(error: &AnnotationError) -> String {
    match error {
        AnnotationError::KeyNotFqdn => "key-not-fqdn".to_owned(),
        AnnotationError::ValueNotUtf8 => "value-not-utf8".to_owned(),
        AnnotationError::Missing(key) => format!("missing:{key}"),
        AnnotationError::Malformed(key) => format!("malformed:{key}"),
        AnnotationError::UnsupportedAadVersion => "unsupported-aad-version".to_owned(),
        #[allow(clippy::wildcard_enum_match_arm)]
        other => format!("{other:?}"),
    }
}

#[test]
fn golden_file_is_an_unmodified_copy() {
    let digest = Sha256::digest(GOLDEN.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(hex, GOLDEN_SHA256);
}

#[test]
fn golden_vector_is_reproduced_byte_for_byte() {
    let document: Value = serde_json::from_str(GOLDEN).unwrap();
    for vector in vectors(&document) {
        check_vector(vector);
    }
}

#[test]
fn golden_malformed_annotations_are_refused_with_their_reason() {
    let document: Value = serde_json::from_str(GOLDEN).unwrap();
    let golden = check_vector(&vectors(&document)[0]).annotations;
    let cases = document["malformedAnnotations"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = text(case, "case");
        let error = Annotations::parse(&edited(&golden, case)).unwrap_err();
        let expected = match name {
            "missing provider" => AnnotationError::Missing(PROVIDER),
            "bad key hash" => AnnotationError::Malformed(TRANSIT_KEY_HASH),
            "unknown aad version" => AnnotationError::UnsupportedAadVersion,
            "non-FQDN key" => AnnotationError::KeyNotFqdn,
            other => panic!("unknown golden case {other}"),
        };
        assert_eq!(error, expected, "{name}");
    }
}

#[test]
fn extra_vectors_are_reproduced_byte_for_byte() {
    let document: Value = serde_json::from_str(EXTRA).unwrap();
    let names: Vec<_> = vectors(&document)
        .iter()
        .map(|vector| text(vector, "name"))
        .collect();
    assert_eq!(
        names,
        [
            "namespace-set",
            "escaped-provider-name",
            "max-version",
            "namespace-quotes-and-astral"
        ]
    );
    for vector in vectors(&document) {
        check_vector(vector);
    }
}

#[test]
fn namespace_changes_key_id_aad_and_annotations_only_where_specified() {
    let golden: Value = serde_json::from_str(GOLDEN).unwrap();
    let extra: Value = serde_json::from_str(EXTRA).unwrap();
    let plain = &vectors(&golden)[0]["expected"];
    let namespaced = &vectors(&extra)[0];
    assert_eq!(text(namespaced, "name"), "namespace-set");
    let with = &namespaced["expected"];
    assert_ne!(text(plain, "keyId"), text(with, "keyId"));
    let (plain_map, with_map) = (annotations_of(plain), annotations_of(with));
    let added: Vec<_> = with_map
        .keys()
        .filter(|key| !plain_map.contains_key(*key))
        .collect();
    assert_eq!(added, ["openbao-namespace-hash.kms.openbao.org"]);
    let aad = text(with, "aadJson");
    let instance = aad.find("\"openbao_instance_hash\":").unwrap();
    let namespace = aad.find("\"openbao_namespace_hash\":").unwrap();
    let mount = aad.find("\"transit_mount_hash\":").unwrap();
    assert!(instance < namespace && namespace < mount);
    assert!(!text(plain, "aadJson").contains("openbao_namespace_hash"));
}

#[test]
fn escaped_provider_name_uses_go_escapes_and_raw_utf8() {
    let document: Value = serde_json::from_str(EXTRA).unwrap();
    let vector = &vectors(&document)[1];
    assert_eq!(text(vector, "name"), "escaped-provider-name");
    let aad = derive(&vector["input"]).aad;
    assert!(
        aad.as_json()
            .contains(r#""provider_name":"kms\u003cprod\u003e\u0026co\u2028é\u2029☃","#),
        "{}",
        aad.as_json()
    );
    for raw in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
        assert!(!aad.as_json().contains(raw), "raw {raw:?}");
    }
}

#[test]
fn extra_malformed_annotations_are_refused_with_their_reason() {
    let document: Value = serde_json::from_str(EXTRA).unwrap();
    let cases = document["malformedAnnotations"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for vector in vectors(&document) {
        let golden = derive(&vector["input"]).annotations;
        for case in cases {
            let error = Annotations::parse(&edited(&golden, case)).unwrap_err();
            assert_eq!(
                refusal_name(&error),
                text(case, "refusal"),
                "{} / {}",
                text(vector, "name"),
                text(case, "case")
            );
        }
    }
}

#[test]
fn extra_tolerated_annotations_parse_and_still_bind() {
    let document: Value = serde_json::from_str(EXTRA).unwrap();
    let cases = document["toleratedAnnotations"].as_array().unwrap();
    assert!(!cases.is_empty());
    for vector in vectors(&document) {
        let derived = derive(&vector["input"]);
        for case in cases {
            let parsed = Annotations::parse(&edited(&derived.annotations, case))
                .unwrap_or_else(|error| panic!("{}: {error}", text(case, "case")));
            parsed
                .check_binding(derived.scope.key_scope(), &derived.key_id, derived.version)
                .unwrap();
        }
    }
}

#[test]
fn extra_mismatched_annotations_name_the_first_disagreeing_annotation() {
    let document: Value = serde_json::from_str(EXTRA).unwrap();
    let cases = document["mismatchedAnnotations"].as_array().unwrap();
    let mut applied = 0;
    for vector in vectors(&document) {
        let derived = derive(&vector["input"]);
        let namespaced = derived.scope.key_scope().openbao_namespace().is_some();
        for case in cases {
            let applies = match text(case, "appliesTo") {
                "all" => true,
                "namespaced" => namespaced,
                "unnamespaced" => !namespaced,
                other => panic!("unknown appliesTo {other}"),
            };
            if !applies {
                continue;
            }
            applied += 1;
            let parsed = Annotations::parse(&edited(&derived.annotations, case)).unwrap();
            let mismatch = parsed
                .check_binding(derived.scope.key_scope(), &derived.key_id, derived.version)
                .unwrap_err();
            let AnnotationMismatch(annotation) = mismatch;
            assert_eq!(
                annotation,
                text(case, "mismatch"),
                "{} / {}",
                text(vector, "name"),
                text(case, "case")
            );
        }
    }
    assert!(applied >= 4 * 4 + 2 * 2 + 2);
}

#[test]
fn annotations_of_one_key_never_bind_to_another_vector() {
    let document: Value = serde_json::from_str(EXTRA).unwrap();
    let all: Vec<Derived> = vectors(&document)
        .iter()
        .map(|vector| derive(&vector["input"]))
        .collect();
    for (i, from) in all.iter().enumerate() {
        let parsed = Annotations::parse(&from.annotations).unwrap();
        for (j, to) in all.iter().enumerate() {
            let bound = parsed.check_binding(to.scope.key_scope(), &to.key_id, to.version);
            assert_eq!(bound.is_ok(), i == j, "{i} -> {j}");
        }
    }
}
