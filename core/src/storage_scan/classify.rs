//! What an etcd value is, by the prefix kube-apiserver's storage transformers write.

use super::encrypted_object::{self, DecodeError, EncryptedObjectInfo};

/// Prefix of every KMS v2 value; the provider name and a colon follow.
pub const KMS_V2_PREFIX: &[u8] = b"k8s:enc:kms:v2:";
/// Prefix of every KMS v1 value.
pub const KMS_V1_PREFIX: &[u8] = b"k8s:enc:kms:v1:";
/// Prefix of values encrypted by the `aescbc` provider.
pub const AESCBC_PREFIX: &[u8] = b"k8s:enc:aescbc:v1:";
/// Prefix of values encrypted by the `aesgcm` provider.
pub const AESGCM_PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";
/// Prefix of values encrypted by the `secretbox` provider.
pub const SECRETBOX_PREFIX: &[u8] = b"k8s:enc:secretbox:v1:";
/// Any other encryption prefix.
const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
/// The magic of kube-apiserver's protobuf serialization (an unencrypted object).
const PROTOBUF_MAGIC: &[u8] = b"k8s\x00";

/// The kind of one stored value, for counting.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum ValueKind {
    /// KMS v2 under this provider's name, a well-formed `EncryptedObject`.
    KmsV2Ours,
    /// KMS v2 under this provider's name, but the `EncryptedObject` does not decode.
    KmsV2OursMalformed,
    /// KMS v2 under another provider name.
    KmsV2Other,
    /// KMS v1 (any provider name).
    KmsV1,
    /// The `aescbc` provider.
    AesCbc,
    /// The `aesgcm` provider.
    AesGcm,
    /// The `secretbox` provider.
    Secretbox,
    /// Not encrypted: kube-apiserver's protobuf or JSON serialization.
    Identity,
    /// Anything else (an unknown `k8s:enc:` prefix or bytes of no known shape).
    Unknown,
}

impl ValueKind {
    /// The stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KmsV2Ours => "kms-v2",
            Self::KmsV2OursMalformed => "kms-v2-malformed",
            Self::KmsV2Other => "kms-v2-other-provider",
            Self::KmsV1 => "kms-v1",
            Self::AesCbc => "aescbc",
            Self::AesGcm => "aesgcm",
            Self::Secretbox => "secretbox",
            Self::Identity => "identity",
            Self::Unknown => "unknown",
        }
    }
}

/// One classified value.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Classified {
    /// KMS v2 under this provider's name, with what its `EncryptedObject` says.
    Ours(EncryptedObjectInfo),
    /// KMS v2 under this provider's name, but not a decodable `EncryptedObject`.
    OursMalformed(DecodeError),
    /// Any other kind (never [`ValueKind::KmsV2Ours`] or [`ValueKind::KmsV2OursMalformed`]).
    Other(ValueKind),
}

impl Classified {
    /// The kind, for counting.
    pub fn kind(&self) -> ValueKind {
        match self {
            Self::Ours(_) => ValueKind::KmsV2Ours,
            Self::OursMalformed(_) => ValueKind::KmsV2OursMalformed,
            Self::Other(kind) => *kind,
        }
    }
}

/// Classifies one etcd value; `provider_name` is the `name` of this provider's `kms` entry in
/// the `EncryptionConfiguration`. Never decrypts.
pub fn classify(value: &[u8], provider_name: &str) -> Classified {
    if let Some(rest) = value.strip_prefix(KMS_V2_PREFIX) {
        let ours = rest
            .strip_prefix(provider_name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b":"));
        return match ours {
            // An empty provider name would only match `k8s:enc:kms:v2::`, which kube-apiserver
            // never writes; the check keeps a misconfiguration from claiming other values.
            Some(body) if !provider_name.is_empty() => match encrypted_object::decode(body) {
                Ok(info) => Classified::Ours(info),
                Err(error) => Classified::OursMalformed(error),
            },
            _ => Classified::Other(ValueKind::KmsV2Other),
        };
    }
    let kind = if value.starts_with(KMS_V1_PREFIX) {
        ValueKind::KmsV1
    } else if value.starts_with(AESCBC_PREFIX) {
        ValueKind::AesCbc
    } else if value.starts_with(AESGCM_PREFIX) {
        ValueKind::AesGcm
    } else if value.starts_with(SECRETBOX_PREFIX) {
        ValueKind::Secretbox
    } else if value.starts_with(ENCRYPTED_PREFIX) {
        ValueKind::Unknown
    } else if value.starts_with(PROTOBUF_MAGIC) || looks_like_json(value) {
        ValueKind::Identity
    } else {
        ValueKind::Unknown
    };
    Classified::Other(kind)
}

/// kube-apiserver's JSON serialization starts with `{` (leading whitespace tolerated).
fn looks_like_json(value: &[u8]) -> bool {
    value
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::collections::BTreeMap;

    use super::*;

    fn kms(name: &str, body: &[u8]) -> Vec<u8> {
        let mut value = format!("k8s:enc:kms:v2:{name}:").into_bytes();
        value.extend_from_slice(body);
        value
    }

    #[test]
    fn each_prefix_is_classified_as_its_kind() {
        let body = encrypted_object::encode(b"x", "obk2.k", b"d", &BTreeMap::new(), 1);
        let ours = classify(&kms("bao-kms", &body), "bao-kms");
        assert_eq!(ours.kind(), ValueKind::KmsV2Ours);
        let Classified::Ours(info) = ours else {
            panic!("not ours: {ours:?}")
        };
        assert_eq!(info.key_id, "obk2.k");

        let cases: [(&[u8], ValueKind); 11] = [
            (b"k8s:enc:kms:v2:other:\x0a\x00", ValueKind::KmsV2Other),
            (b"k8s:enc:kms:v2:bao-kms-2:\x0a\x00", ValueKind::KmsV2Other),
            (b"k8s:enc:kms:v1:bao-kms:abc", ValueKind::KmsV1),
            (b"k8s:enc:aescbc:v1:key1:abc", ValueKind::AesCbc),
            (b"k8s:enc:aesgcm:v1:key1:abc", ValueKind::AesGcm),
            (b"k8s:enc:secretbox:v1:key1:abc", ValueKind::Secretbox),
            (b"k8s\x00\x0a\x0c", ValueKind::Identity),
            (b" {\"kind\":\"Secret\"}", ValueKind::Identity),
            (b"k8s:enc:future:v9:x", ValueKind::Unknown),
            (b"\x00\x01", ValueKind::Unknown),
            (b"", ValueKind::Unknown),
        ];
        for (value, kind) in cases {
            assert_eq!(classify(value, "bao-kms").kind(), kind, "{value:?}");
        }
    }

    #[test]
    fn a_malformed_object_under_our_name_is_counted_apart() {
        let value = kms("bao-kms", b"\x12\x05ab");
        assert_eq!(
            classify(&value, "bao-kms"),
            Classified::OursMalformed(DecodeError::Truncated)
        );
        // An empty provider name never claims a value.
        assert_eq!(
            classify(b"k8s:enc:kms:v2::", "").kind(),
            ValueKind::KmsV2Other
        );
    }
}
