//! The check of the storage scan's value classifier and `EncryptedObject` decoder.
//!
//! The input is a raw etcd value. The classifier must never panic, must agree with the written
//! prefix rules, and whatever the hand-written decoder accepts must be exactly what `prost`
//! (the reference protobuf implementation, through the test kit's message definition) decodes
//! from the same bytes. The reverse is not required: the scan refuses oversized fields and
//! groups that `prost` would accept.

use std::collections::BTreeMap;

use bao_kms_core::storage_scan::encrypted_object::{self, EncryptedObjectInfo};
use bao_kms_core::storage_scan::{Classified, ValueKind, classify};
use bao_kms_testkit::control_plane::EncryptedObject;
use prost::Message as _;

/// The provider name the check classifies against.
pub const PROVIDER: &str = "bao-kms";

/// Classifies `data` and cross-checks a decoded `EncryptedObject` against `prost`.
pub fn encrypted_object(data: &[u8]) {
    let ours = format!("k8s:enc:kms:v2:{PROVIDER}:");
    let classified = classify(data, PROVIDER);
    let kind = classified.kind();
    match data.strip_prefix(ours.as_bytes()) {
        Some(body) => {
            assert!(
                matches!(kind, ValueKind::KmsV2Ours | ValueKind::KmsV2OursMalformed),
                "our prefix classified as {kind:?}"
            );
            assert_eq!(
                classified,
                match encrypted_object::decode(body) {
                    Ok(info) => Classified::Ours(info),
                    Err(error) => Classified::OursMalformed(error),
                }
            );
            if let Classified::Ours(info) = &classified {
                agree_with_prost(body, info);
                round_trip(info);
            }
        }
        None => assert!(
            !matches!(kind, ValueKind::KmsV2Ours | ValueKind::KmsV2OursMalformed),
            "a value without our prefix classified as ours"
        ),
    }
    if data.starts_with(b"k8s:enc:kms:v2:") && !data.starts_with(ours.as_bytes()) {
        assert_eq!(kind, ValueKind::KmsV2Other);
    }
    for (prefix, expected) in [
        (&b"k8s:enc:kms:v1:"[..], ValueKind::KmsV1),
        (b"k8s:enc:aescbc:v1:", ValueKind::AesCbc),
        (b"k8s:enc:aesgcm:v1:", ValueKind::AesGcm),
        (b"k8s:enc:secretbox:v1:", ValueKind::Secretbox),
    ] {
        if data.starts_with(prefix) {
            assert_eq!(kind, expected);
        }
    }
}

fn agree_with_prost(body: &[u8], info: &EncryptedObjectInfo) {
    let reference = match EncryptedObject::decode(body) {
        Ok(reference) => reference,
        Err(error) => panic!("accepted what prost refuses: {error}"),
    };
    assert_eq!(info.key_id, reference.key_id);
    assert_eq!(info.encrypted_data_len, reference.encrypted_data.len());
    assert_eq!(
        info.encrypted_dek_source_len,
        reference.encrypted_dek_source.len()
    );
    assert_eq!(info.annotations, reference.annotations);
    // prost keeps the low 32 bits of an int32 varint.
    assert_eq!(
        info.encrypted_dek_source_type as u32,
        reference.encrypted_dek_source_type as u32
    );
}

/// Encoding what was decoded and decoding again gives the same information.
fn round_trip(info: &EncryptedObjectInfo) {
    let bytes = encrypted_object::encode(
        &vec![0; info.encrypted_data_len],
        &info.key_id,
        &vec![0; info.encrypted_dek_source_len],
        &info.annotations,
        info.encrypted_dek_source_type,
    );
    assert_eq!(encrypted_object::decode(&bytes).as_ref(), Ok(info));
}

/// Seeds: well-formed values shaped like the plugin's, a truncated one, other prefixes.
pub fn encrypted_object_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut annotations = BTreeMap::new();
    for (key, value) in [
        ("provider.kms.openbao.org", "openbao-transit"),
        (
            "key-id-hash.kms.openbao.org",
            "ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
        ),
        ("transit-key-version.kms.openbao.org", "3"),
        ("aad-version.kms.openbao.org", "v1"),
    ] {
        annotations.insert(key.to_owned(), value.as_bytes().to_vec());
    }
    let body = encrypted_object::encode(
        &[0x5a; 48],
        crate::wire::GOLDEN_KEY_ID,
        b"vault:v3:c2VlZA==",
        &annotations,
        1,
    );
    let with_prefix = |prefix: &str, body: &[u8]| {
        let mut value = prefix.as_bytes().to_vec();
        value.extend_from_slice(body);
        value
    };
    let ours = with_prefix("k8s:enc:kms:v2:bao-kms:", &body);
    let truncated = ours[..ours.len() - 7].to_vec();
    let mut field_too_large = b"k8s:enc:kms:v2:bao-kms:".to_vec();
    // Field number 2^29: prost refuses it, so the decoder must too.
    field_too_large.extend([0x80, 0x80, 0x80, 0x80, 0x10, 0x00]);
    let mut unknown_field = ours.clone();
    unknown_field.extend([0x30, 0x01, 0x3a, 0x02, b'h', b'i']);
    vec![
        ("plugin-shaped", ours),
        ("truncated", truncated),
        ("unknown-field", unknown_field),
        ("field-number-too-large", field_too_large),
        (
            "other-provider",
            with_prefix("k8s:enc:kms:v2:other:", &body),
        ),
        ("kms-v1", with_prefix("k8s:enc:kms:v1:bao-kms:", b"opaque")),
        ("aescbc", with_prefix("k8s:enc:aescbc:v1:key1:", b"opaque")),
        (
            "identity-protobuf",
            b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret".to_vec(),
        ),
    ]
}
