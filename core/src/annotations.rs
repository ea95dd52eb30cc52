//! The `*.kms.openbao.org` annotations: written on Encrypt, required and checked on Decrypt.
//!
//! kube-apiserver stores annotations in clear next to each encrypted DEK seed and hands them back
//! on Decrypt. They name (by digest) the identity and the Transit version a seed was encrypted
//! under, so Decrypt can refuse a mismatch before it spends a Transit call.

use std::collections::BTreeMap;

use crate::aad::{AAD_VERSION_V1, PROVIDER_KIND};
use crate::digest::IdentityDigest;
use crate::identity::KeyScope;
use crate::key_id::KeyId;
use crate::version::KeyVersion;

/// Annotation naming the provider kind.
pub const PROVIDER: &str = "provider.kms.openbao.org";
/// Annotation carrying the digest of the key_id.
pub const KEY_ID_HASH: &str = "key-id-hash.kms.openbao.org";
/// Annotation carrying the Transit key version.
pub const TRANSIT_KEY_VERSION: &str = "transit-key-version.kms.openbao.org";
/// Annotation carrying the digest of the Transit mount id.
pub const TRANSIT_MOUNT_HASH: &str = "transit-mount-hash.kms.openbao.org";
/// Annotation carrying the digest of the key lineage id.
pub const TRANSIT_KEY_HASH: &str = "transit-key-hash.kms.openbao.org";
/// Annotation carrying the digest of the namespace, present only when one is configured.
pub const NAMESPACE_HASH: &str = "openbao-namespace-hash.kms.openbao.org";
/// Annotation carrying the version of the provider that encrypted.
pub const PLUGIN_VERSION: &str = "plugin-version.kms.openbao.org";
/// Annotation carrying the AAD version.
pub const AAD_VERSION: &str = "aad-version.kms.openbao.org";

/// Annotations parsed from a Decrypt request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Annotations {
    key_id_hash: IdentityDigest,
    version: KeyVersion,
    mount_hash: IdentityDigest,
    key_hash: IdentityDigest,
    namespace_hash: Option<IdentityDigest>,
    plugin_version: String,
}

impl Annotations {
    /// The annotations Encrypt returns for a seed encrypted under `key_id` at `version`.
    pub fn for_encrypt(
        scope: &KeyScope,
        key_id: &KeyId,
        version: KeyVersion,
        plugin_version: &str,
    ) -> BTreeMap<String, Vec<u8>> {
        let mut map = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            map.insert(key.to_owned(), value.as_bytes().to_vec());
        };
        put(PROVIDER, PROVIDER_KIND);
        put(KEY_ID_HASH, key_id.digest().as_str());
        put(TRANSIT_KEY_VERSION, &version.to_string());
        put(TRANSIT_MOUNT_HASH, scope.mount_digest().as_str());
        put(TRANSIT_KEY_HASH, scope.lineage_digest().as_str());
        if let Some(namespace) = scope.namespace_digest() {
            put(NAMESPACE_HASH, namespace.as_str());
        }
        put(PLUGIN_VERSION, plugin_version);
        put(AAD_VERSION, AAD_VERSION_V1);
        map
    }

    /// Parses the annotations of a Decrypt request.
    ///
    /// Every key must be a fully qualified domain name (the KMS v2 rule) and every value UTF-8.
    /// The seven required annotations must be present and well formed; other well-formed keys
    /// are tolerated so that a newer release may add informational annotations without making
    /// its ciphertext unreadable to this one.
    ///
    /// # Errors
    /// [`AnnotationError`] naming the first problem found, in key order.
    pub fn parse(raw: &BTreeMap<String, Vec<u8>>) -> Result<Self, AnnotationError> {
        let mut text = BTreeMap::new();
        for (key, value) in raw {
            if !is_fully_qualified_domain_name(key) {
                return Err(AnnotationError::KeyNotFqdn);
            }
            let value = std::str::from_utf8(value).map_err(|_| AnnotationError::ValueNotUtf8)?;
            text.insert(key.as_str(), value);
        }
        let required = |key: &'static str| match text.get(key) {
            Some(value) if !value.is_empty() => Ok(*value),
            Some(_) | None => Err(AnnotationError::Missing(key)),
        };
        let digest = |key: &'static str| {
            IdentityDigest::parse(required(key)?).map_err(|_| AnnotationError::Malformed(key))
        };
        if required(PROVIDER)? != PROVIDER_KIND {
            return Err(AnnotationError::Malformed(PROVIDER));
        }
        if required(AAD_VERSION)? != AAD_VERSION_V1 {
            return Err(AnnotationError::UnsupportedAadVersion);
        }
        let version = KeyVersion::parse(required(TRANSIT_KEY_VERSION)?)
            .map_err(|_| AnnotationError::Malformed(TRANSIT_KEY_VERSION))?;
        let namespace_hash = match text.get(NAMESPACE_HASH) {
            None => None,
            Some(_) => Some(digest(NAMESPACE_HASH)?),
        };
        Ok(Self {
            key_id_hash: digest(KEY_ID_HASH)?,
            version,
            mount_hash: digest(TRANSIT_MOUNT_HASH)?,
            key_hash: digest(TRANSIT_KEY_HASH)?,
            namespace_hash,
            plugin_version: required(PLUGIN_VERSION)?.to_owned(),
        })
    }

    /// Checks that these annotations name exactly `key_id` at `version` within `scope`.
    ///
    /// # Errors
    /// [`AnnotationMismatch`] naming the first annotation that disagrees.
    pub fn check_binding(
        &self,
        scope: &KeyScope,
        key_id: &KeyId,
        version: KeyVersion,
    ) -> Result<(), AnnotationMismatch> {
        if self.version != version {
            return Err(AnnotationMismatch(TRANSIT_KEY_VERSION));
        }
        if self.key_id_hash != key_id.digest() {
            return Err(AnnotationMismatch(KEY_ID_HASH));
        }
        if self.mount_hash != scope.mount_digest() {
            return Err(AnnotationMismatch(TRANSIT_MOUNT_HASH));
        }
        if self.key_hash != scope.lineage_digest() {
            return Err(AnnotationMismatch(TRANSIT_KEY_HASH));
        }
        if self.namespace_hash != scope.namespace_digest() {
            return Err(AnnotationMismatch(NAMESPACE_HASH));
        }
        Ok(())
    }

    /// The Transit version the annotations name.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The provider version that encrypted (informational only, never trusted).
    pub fn plugin_version(&self) -> &str {
        &self.plugin_version
    }
}

/// Why annotations could not be parsed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotationError {
    /// An annotation key is not a fully qualified domain name.
    #[error("annotation key is not a fully qualified domain name")]
    KeyNotFqdn,
    /// An annotation value is not UTF-8.
    #[error("annotation value is not UTF-8")]
    ValueNotUtf8,
    /// A required annotation is absent or empty.
    #[error("annotation {0} is required")]
    Missing(&'static str),
    /// A required annotation has a malformed value.
    #[error("annotation {0} is malformed")]
    Malformed(&'static str),
    /// The AAD version is not one this release reads.
    #[error("annotation aad-version names an unsupported AAD version")]
    UnsupportedAadVersion,
}

/// An annotation that does not match the key snapshot named by the key_id.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("annotation {0} does not match the key snapshot")]
pub struct AnnotationMismatch(pub &'static str);

/// Whether `name` passes Kubernetes' fully-qualified-domain-name rule: a lowercase RFC 1123
/// subdomain of at most 253 characters with at least two labels (one trailing dot tolerated).
pub fn is_fully_qualified_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let mut labels = 0;
    for label in name.split('.') {
        labels += 1;
        let bytes = label.as_bytes();
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return false;
        };
        let alnum = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
        if bytes.len() > 63
            || !alnum(first)
            || !alnum(last)
            || !bytes.iter().all(|&byte| alnum(byte) || byte == b'-')
        {
            return false;
        }
    }
    labels >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_rule_matches_kubernetes() {
        for good in ["provider.kms.openbao.org", "a.b", "a-1.b2.", "x.y-z"] {
            assert!(is_fully_qualified_domain_name(good), "{good}");
        }
        for bad in [
            "provider", "", ".a.b", "a..b", "A.b", "a_b.c", "-a.b", "a-.b", "a/b.c", "a.b..",
        ] {
            assert!(!is_fully_qualified_domain_name(bad), "{bad}");
        }
        assert!(!is_fully_qualified_domain_name(&format!(
            "{}.b",
            "a".repeat(64)
        )));
        assert!(is_fully_qualified_domain_name(&format!(
            "{}.b",
            "a".repeat(63)
        )));
    }
}
