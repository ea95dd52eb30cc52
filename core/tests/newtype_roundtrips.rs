//! Property tests of the wire-format-v1 newtypes: what one release prints, the next one parses
//! back to the same value, and near misses are refused.
//!
//! Identity values are drawn from valid configurations only (non-empty, no surrounding
//! whitespace, no control characters), with a bias towards the characters Go's JSON encoder
//! treats specially (`<`, `>`, `&`, U+2028, U+2029, quotes, backslashes) and towards non-ASCII
//! text, since those are where a Rust port can drift from the Go bytes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt;

use bao_kms_core::annotations::{AnnotationMismatch, NAMESPACE_HASH, TRANSIT_KEY_VERSION};
use bao_kms_core::identity::Fingerprint;
use bao_kms_core::limits::MAX_ANNOTATIONS_BYTES;
use bao_kms_core::{
    Aad, Annotations, IdentityDigest, IdentityScope, IdentityValues, KeyId, KeyVersion,
    TransitCiphertext,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// An identifier-like configuration value that passes validation.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9._-]{0,24}",
        "\\PC{1,16}",
        "[a-z<>&\"\\\\ é☃\u{2028}\u{2029}\u{200b}\u{7ff}\u{ffff}🔑-]{1,16}",
    ]
    // Surrounding whitespace (Unicode White_Space, which includes U+2028 and U+2029) is refused
    // by the configuration, so it is cut here; \PC never yields control characters.
    .prop_map(|text| match text.trim() {
        "" => "x".to_owned(),
        trimmed => trimmed.to_owned(),
    })
}

/// A relative OpenBao path such as `transit` or `a/b`.
fn openbao_path() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,8}(/[a-z0-9_-]{1,8}){0,2}"
}

fn identity_values() -> impl Strategy<Value = IdentityValues> {
    (
        (label(), label(), label()),
        prop::option::of(openbao_path()),
        (label(), label()),
        openbao_path(),
        "[A-Za-z0-9_]([A-Za-z0-9_.-]{0,12}[A-Za-z0-9_])?",
    )
        .prop_map(
            |(
                (provider_name, cluster_id, openbao_instance_id),
                namespace,
                (transit_mount_id, key_lineage_id),
                transit_mount_path,
                transit_key_name,
            )| IdentityValues {
                provider_name,
                cluster_id,
                openbao_instance_id,
                openbao_namespace: namespace.unwrap_or_default(),
                transit_mount_id,
                key_lineage_id,
                transit_mount_path,
                transit_key_name,
            },
        )
}

fn scope_of(values: IdentityValues) -> IdentityScope {
    IdentityScope::new(values.clone())
        .unwrap_or_else(|problems| panic!("{values:?} refused: {problems:?}"))
}

fn version() -> impl Strategy<Value = KeyVersion> {
    prop_oneof![1_u64..=20, 1_u64..=u64::from(u32::MAX)]
        .prop_map(|value| KeyVersion::new(value).unwrap())
}

fn created() -> impl Strategy<Value = i64> {
    prop_oneof![1_i64..=4_102_444_800, 1_i64..=i64::MAX]
}

fn plugin_version() -> impl Strategy<Value = String> {
    "v?[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-[a-z0-9.]{1,8})?(\\+[a-z0-9.]{1,8})?"
}

/// A JSON object of strings, with its fields in document order.
struct OrderedFields(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = OrderedFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    fields.push(entry);
                }
                Ok(OrderedFields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

proptest! {
    #[test]
    fn key_id_prints_and_parses_back(
        values in identity_values(),
        version in version(),
        created in created(),
    ) {
        let scope = scope_of(values);
        let key_id = KeyId::derive(scope.key_scope(), version, created);
        let text = key_id.to_string();
        prop_assert_eq!(text.len(), 48);
        prop_assert!(text.starts_with("obk2."));
        prop_assert_eq!(KeyId::parse(&text).unwrap(), key_id);
    }

    #[test]
    fn key_id_parse_refuses_any_other_length(
        text in prop_oneof!["obk2\\.[A-Za-z0-9_-]{0,60}", "\\PC{0,60}"]
            .prop_filter("length 48", |text| text.len() != 48),
    ) {
        prop_assert!(KeyId::parse(&text).is_err());
    }

    #[test]
    fn key_id_parse_refuses_any_other_prefix(
        values in identity_values(),
        version in version(),
        prefix in "[ -~]{5}".prop_filter("the real prefix", |prefix| prefix != "obk2."),
    ) {
        let key_id = KeyId::derive(scope_of(values).key_scope(), version, 1_715_803_200);
        let text = format!("{prefix}{}", &key_id.as_str()[5..]);
        prop_assert_eq!(text.len(), 48);
        prop_assert!(KeyId::parse(&text).is_err(), "{}", text);
    }

    #[test]
    fn identity_digest_prints_and_parses_back(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let digest = IdentityDigest::of(&bytes);
        let text = digest.to_string();
        prop_assert_eq!(text.len(), 43);
        prop_assert_eq!(IdentityDigest::parse(&text).unwrap(), digest);
    }

    #[test]
    fn key_version_parses_its_own_decimal(value in 1_u32..=u32::MAX) {
        let version = KeyVersion::new(u64::from(value)).unwrap();
        prop_assert_eq!(KeyVersion::parse(&value.to_string()).unwrap(), version);
        prop_assert_eq!(version.to_string(), value.to_string());
        prop_assert_eq!(version.get(), value);
    }

    #[test]
    fn key_version_refuses_non_canonical_spellings(
        value in 0_u32..=u32::MAX,
        prefix in prop::sample::select(vec!["0", "00", "+", "-", " ", "\t", "\u{a0}"]),
        suffix in prop::sample::select(vec!["", " ", "\n", ".0"]),
    ) {
        let text = format!("{prefix}{value}{suffix}");
        prop_assert!(KeyVersion::parse(&text).is_err(), "{:?}", text);
        let trailing = format!("{value}{}", if suffix.is_empty() { " " } else { suffix });
        prop_assert!(KeyVersion::parse(&trailing).is_err(), "{:?}", trailing);
    }

    #[test]
    fn key_version_refuses_zero_and_values_beyond_32_bits(
        value in prop_oneof![Just(0_u64), u64::from(u32::MAX) + 1..=u64::MAX],
    ) {
        prop_assert!(KeyVersion::new(value).is_err());
        prop_assert!(KeyVersion::parse(&value.to_string()).is_err());
    }

    #[test]
    fn transit_ciphertext_parses_with_its_version(
        version in version(),
        payload in prop::collection::vec(any::<u8>(), 28..160),
    ) {
        let text = format!("vault:v{version}:{}", STANDARD.encode(&payload));
        let parsed = TransitCiphertext::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(parsed.version(), version);
        prop_assert_eq!(parsed.as_str(), text.as_str());
        prop_assert_eq!(parsed.len(), text.len());
    }

    #[test]
    fn transit_ciphertext_prefix_mutation_never_keeps_the_version(
        version in version(),
        payload in prop::collection::vec(any::<u8>(), 28..64),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let prefix = format!("vault:v{version}:");
        let mut bytes = format!("{prefix}{}", STANDARD.encode(&payload)).into_bytes();
        let at = index.index(prefix.len());
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        if let Ok(parsed) = TransitCiphertext::parse(&bytes) {
            prop_assert_ne!(parsed.version(), version, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn transit_ciphertext_refuses_payloads_shorter_than_gcm_overhead(
        version in version(),
        payload in prop::collection::vec(any::<u8>(), 0..28),
    ) {
        let text = format!("vault:v{version}:{}", STANDARD.encode(&payload));
        prop_assert!(TransitCiphertext::parse(text.as_bytes()).is_err());
    }

    #[test]
    fn annotations_written_on_encrypt_parse_and_bind(
        values in identity_values(),
        version in version(),
        other_version in version(),
        created in created(),
        plugin in plugin_version(),
        other_lineage in label(),
    ) {
        let scope = scope_of(values.clone());
        let key_scope = scope.key_scope();
        let key_id = KeyId::derive(key_scope, version, created);
        let written = Annotations::for_encrypt(key_scope, &key_id, version, &plugin);
        let expected_len = if key_scope.openbao_namespace().is_some() { 8 } else { 7 };
        prop_assert_eq!(written.len(), expected_len);
        prop_assert_eq!(written.contains_key(NAMESPACE_HASH), expected_len == 8);
        let size: usize = written.iter().map(|(key, value)| key.len() + value.len()).sum();
        prop_assert!(size <= MAX_ANNOTATIONS_BYTES);

        let parsed = Annotations::parse(&written).unwrap();
        prop_assert_eq!(parsed.version(), version);
        prop_assert_eq!(parsed.plugin_version(), plugin.as_str());
        prop_assert_eq!(parsed.check_binding(key_scope, &key_id, version), Ok(()));

        // Another version of the same key.
        if other_version != version {
            let other_key_id = KeyId::derive(key_scope, other_version, created);
            prop_assert_eq!(
                parsed.check_binding(key_scope, &other_key_id, other_version),
                Err(AnnotationMismatch(TRANSIT_KEY_VERSION))
            );
        }
        // Another lineage (the key was deleted and recreated).
        if other_lineage != values.key_lineage_id {
            let other = scope_of(IdentityValues { key_lineage_id: other_lineage, ..values.clone() });
            let other_key_id = KeyId::derive(other.key_scope(), version, created);
            prop_assert!(parsed.check_binding(other.key_scope(), &other_key_id, version).is_err());
            prop_assert!(parsed.check_binding(other.key_scope(), &key_id, version).is_err());
        }
        // The same values with the namespace switched on or off.
        let toggled = if values.openbao_namespace.is_empty() { "team-a/child" } else { "" };
        let other = scope_of(IdentityValues { openbao_namespace: toggled.to_owned(), ..values });
        let other_key_id = KeyId::derive(other.key_scope(), version, created);
        prop_assert_ne!(&other_key_id, &key_id);
        prop_assert!(parsed.check_binding(other.key_scope(), &other_key_id, version).is_err());
        prop_assert_eq!(
            parsed.check_binding(other.key_scope(), &key_id, version),
            Err(AnnotationMismatch(NAMESPACE_HASH))
        );
    }

    #[test]
    fn aad_is_json_with_fixed_field_order_and_go_escaping(
        values in identity_values(),
        version in version(),
        created in created(),
    ) {
        let scope = scope_of(values);
        let key_scope = scope.key_scope();
        let key_id = KeyId::derive(key_scope, version, created);
        let aad = Aad::v1(key_scope, &key_id, version);
        let json = aad.as_json();
        for raw in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            prop_assert!(!json.contains(raw), "raw {:?} in {}", raw, json);
        }
        prop_assert!(!json.contains('\n'));
        prop_assert_eq!(STANDARD.decode(aad.to_transit_base64()).unwrap(), json.as_bytes());

        let OrderedFields(fields) = serde_json::from_str(json).unwrap();
        let mut expected = vec![
            ("aad_version", "v1".to_owned()),
            ("purpose", "kubernetes-etcd-kms-v2".to_owned()),
            ("provider", "openbao-transit".to_owned()),
            ("provider_name", key_scope.provider_name().to_owned()),
            ("cluster_id_hash", IdentityDigest::of(key_scope.cluster_id().as_bytes()).to_string()),
            (
                "openbao_instance_hash",
                IdentityDigest::of(key_scope.openbao_instance_id().as_bytes()).to_string(),
            ),
        ];
        if let Some(namespace) = key_scope.openbao_namespace() {
            expected.push((
                "openbao_namespace_hash",
                IdentityDigest::of(namespace.as_bytes()).to_string(),
            ));
        }
        expected.extend([
            (
                "transit_mount_hash",
                IdentityDigest::of(key_scope.transit_mount_id().as_bytes()).to_string(),
            ),
            (
                "transit_key_hash",
                IdentityDigest::of(key_scope.key_lineage_id().as_bytes()).to_string(),
            ),
            ("key_id_hash", IdentityDigest::of(key_id.as_str().as_bytes()).to_string()),
            ("key_version", version.to_string()),
        ]);
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        prop_assert_eq!(fields, expected);
    }

    #[test]
    fn fingerprint_is_cfg1_and_48_characters(values in identity_values()) {
        let fingerprint = scope_of(values).fingerprint();
        let text = fingerprint.as_str();
        prop_assert_eq!(text.len(), 48);
        prop_assert!(text.starts_with("cfg1."));
        prop_assert_eq!(Fingerprint::parse(text).unwrap(), fingerprint);
    }

    #[test]
    fn annotation_keys_written_are_fully_qualified(
        values in identity_values(),
        version in version(),
    ) {
        let scope = scope_of(values);
        let key_id = KeyId::derive(scope.key_scope(), version, 1);
        let written: BTreeMap<String, Vec<u8>> =
            Annotations::for_encrypt(scope.key_scope(), &key_id, version, "v0.1.0");
        for key in written.keys() {
            prop_assert!(bao_kms_core::annotations::is_fully_qualified_domain_name(key), "{}", key);
            prop_assert!(key.ends_with(".kms.openbao.org"));
        }
    }
}
