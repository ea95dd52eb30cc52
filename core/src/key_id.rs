//! The Kubernetes key_id of wire format v1: `obk2.` + base64url-nopad(SHA-256(parts)).

use std::fmt;

use crate::digest::{IdentityDigest, decode_digest, encode_url, sha256};
use crate::identity::KeyScope;
use crate::version::KeyVersion;

/// Prefix of every wire-format-v1 key_id.
const KEY_ID_PREFIX: &str = "obk2.";
/// Domain separator, the first hashed part.
const KEY_ID_DOMAIN: &str = "openbao-kubernetes-kms/key-id/v1";
/// Length of every wire-format-v1 key_id.
pub const KEY_ID_LEN: usize = 48;

/// A parsed wire-format-v1 key_id.
#[derive(Clone, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct KeyId(String);

impl KeyId {
    /// Derives the key_id of one Transit key version.
    ///
    /// The hashed input is every part followed by one NUL byte (the last one too): the domain,
    /// provider name, cluster id, instance id, the namespace only when set, mount id, lineage id,
    /// the decimal version and the decimal creation time in whole Unix seconds. Mount path and
    /// key name are not inputs; the state file's identity fingerprint binds them instead.
    pub fn derive(scope: &KeyScope, version: KeyVersion, created_at_unix: i64) -> Self {
        let version = version.to_string();
        let created = created_at_unix.to_string();
        let mut parts: Vec<&str> = vec![
            KEY_ID_DOMAIN,
            scope.provider_name(),
            scope.cluster_id(),
            scope.openbao_instance_id(),
        ];
        parts.extend(scope.openbao_namespace());
        parts.extend([
            scope.transit_mount_id(),
            scope.key_lineage_id(),
            &version,
            &created,
        ]);
        let mut input = Vec::new();
        for part in parts {
            input.extend_from_slice(part.as_bytes());
            input.push(0);
        }
        Self(format!("{KEY_ID_PREFIX}{}", encode_url(&sha256(&input))))
    }

    /// Parses a key_id: exactly 48 characters, `obk2.` and a canonical 43-character digest.
    ///
    /// # Errors
    /// [`KeyIdError`] for anything else, including key_ids of other plugins.
    pub fn parse(text: &str) -> Result<Self, KeyIdError> {
        if text.len() != KEY_ID_LEN {
            return Err(KeyIdError);
        }
        let body = text.strip_prefix(KEY_ID_PREFIX).ok_or(KeyIdError)?;
        decode_digest(body).map_err(|_| KeyIdError)?;
        Ok(Self(text.to_owned()))
    }

    /// The key_id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest published in the `key-id-hash` annotation and the AAD.
    pub fn digest(&self) -> IdentityDigest {
        IdentityDigest::of(self.0.as_bytes())
    }

    /// The hash kube-apiserver uses for its own key_id metrics and logs: `sha256:<hex>`.
    pub fn apiserver_hash(&self) -> String {
        let mut out = String::from("sha256:");
        for byte in sha256(self.0.as_bytes()) {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

// A key_id is public by design (kube-apiserver logs it), but logs of this project show only its
// digest so that raw identifiers never need to be reviewed; Debug follows the same rule.
impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.digest())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key_id was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("key_id malformed")]
pub struct KeyIdError;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::identity::{IdentityScope, IdentityValues};

    fn golden_scope() -> IdentityScope {
        IdentityScope::new(IdentityValues {
            provider_name: "openbao-kms-workload-a".into(),
            cluster_id: "workload-a".into(),
            openbao_instance_id: "bao-prod-a".into(),
            openbao_namespace: String::new(),
            transit_mount_id: "transit-prod-primary".into(),
            key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
            transit_mount_path: "transit".into(),
            transit_key_name: "kms-key".into(),
        })
        .unwrap()
    }

    #[test]
    fn golden_key_id_is_reproduced() {
        let key_id = KeyId::derive(
            golden_scope().key_scope(),
            KeyVersion::new(3).unwrap(),
            1_715_803_200,
        );
        assert_eq!(
            key_id.as_str(),
            "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk"
        );
        assert_eq!(
            key_id.digest().as_str(),
            "qCXYChOIPSWs7scJIduEDiNOYvEUJtFS1Rsbz1eAWY4"
        );
    }

    #[test]
    fn parse_accepts_derived_ids_and_refuses_others() {
        let key_id = KeyId::derive(golden_scope().key_scope(), KeyVersion::FIRST, 1);
        assert_eq!(KeyId::parse(key_id.as_str()).unwrap(), key_id);
        for bad in [
            "",
            "obk2.",
            "obk1.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
            "x".repeat(48).as_str(),
        ] {
            assert!(KeyId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apiserver_hash_is_lowercase_hex_of_sha256() {
        let key_id = KeyId::parse("obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk").unwrap();
        let hash = key_id.apiserver_hash();
        assert!(hash.starts_with("sha256:"));
        assert_eq!(hash.len(), 7 + 64);
        assert!(
            hash[7..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}
