//! The identity scope: the configured values every key_id, annotation and AAD is bound to.
//!
//! Identity values are operator labels, not secrets, but they are identity-bearing: changing any
//! of them changes every key_id, so they are validated once here and then carried as a whole.

use std::fmt;

use crate::digest::{IdentityDigest, decode_digest, encode_url, sha256};
use crate::gojson::GoValue;

/// Domain separator of the identity fingerprint.
const FINGERPRINT_DOMAIN: &str = "openbao-kubernetes-kms/config-identity/v1";
/// Prefix of an encoded identity fingerprint.
const FINGERPRINT_PREFIX: &str = "cfg1.";

/// Every identity-bearing value from the configuration, validated.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct IdentityScope {
    key_scope: KeyScope,
    transit_mount_path: String,
    transit_key_name: String,
}

/// The six identity values hashed into every key_id and bound into every AAD.
///
/// Each state-file record carries these values, so a record can be re-derived and checked
/// without the rest of the configuration.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct KeyScope {
    provider_name: String,
    cluster_id: String,
    openbao_instance_id: String,
    openbao_namespace: Option<String>,
    transit_mount_id: String,
    key_lineage_id: String,
}

/// The raw identity values, as they come from configuration.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct IdentityValues {
    /// `transit.keyIdScope.providerName`: the EncryptionConfiguration provider name.
    pub provider_name: String,
    /// `transit.keyIdScope.clusterId`.
    pub cluster_id: String,
    /// `openbao.instanceId`.
    pub openbao_instance_id: String,
    /// `openbao.namespace`; empty means no namespace.
    pub openbao_namespace: String,
    /// `transit.keyIdScope.transitMountId`: an operator label, not the mount accessor.
    pub transit_mount_id: String,
    /// `transit.keyIdScope.keyLineageId`: changes only when the key is deleted and recreated.
    pub key_lineage_id: String,
    /// `transit.mountPath`.
    pub transit_mount_path: String,
    /// `transit.keyName`.
    pub transit_key_name: String,
}

impl IdentityScope {
    /// Validates every identity value.
    ///
    /// # Errors
    /// Every problem found, each naming the configuration field it belongs to.
    pub fn new(values: IdentityValues) -> Result<Self, Vec<IdentityError>> {
        let mut problems = Vec::new();
        let checks: [(&'static str, &str); 6] = [
            ("transit.keyIdScope.providerName", &values.provider_name),
            ("transit.keyIdScope.clusterId", &values.cluster_id),
            ("openbao.instanceId", &values.openbao_instance_id),
            (
                "transit.keyIdScope.transitMountId",
                &values.transit_mount_id,
            ),
            ("transit.keyIdScope.keyLineageId", &values.key_lineage_id),
            ("transit.keyName", &values.transit_key_name),
        ];
        for (field, value) in checks {
            if let Err(reason) = check_label(value) {
                problems.push(IdentityError { field, reason });
            }
        }
        if problems
            .iter()
            .all(|problem| problem.field != "transit.keyName")
            && !is_openbao_name(&values.transit_key_name)
        {
            problems.push(IdentityError {
                field: "transit.keyName",
                reason: "must match ^\\w(([\\w-.]+)?\\w)?$ (ASCII letters, digits, _, - and .)",
            });
        }
        if let Err(reason) = check_relative_path(&values.transit_mount_path, false) {
            problems.push(IdentityError {
                field: "transit.mountPath",
                reason,
            });
        }
        if let Err(reason) = check_relative_path(&values.openbao_namespace, true) {
            problems.push(IdentityError {
                field: "openbao.namespace",
                reason,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let namespace = values.openbao_namespace;
        Ok(Self {
            key_scope: KeyScope {
                provider_name: values.provider_name,
                cluster_id: values.cluster_id,
                openbao_instance_id: values.openbao_instance_id,
                openbao_namespace: (!namespace.is_empty()).then_some(namespace),
                transit_mount_id: values.transit_mount_id,
                key_lineage_id: values.key_lineage_id,
            },
            transit_mount_path: values.transit_mount_path.trim_matches('/').to_owned(),
            transit_key_name: values.transit_key_name,
        })
    }

    /// The values hashed into key_ids and bound into the AAD.
    pub fn key_scope(&self) -> &KeyScope {
        &self.key_scope
    }

    /// The Transit mount path, without surrounding slashes.
    pub fn transit_mount_path(&self) -> &str {
        &self.transit_mount_path
    }

    /// The Transit key name.
    pub fn transit_key_name(&self) -> &str {
        &self.transit_key_name
    }

    /// The `cfg1.` fingerprint that binds a state file to this configuration.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut fields = vec![
            ("domain", GoValue::str(FINGERPRINT_DOMAIN)),
            ("provider_name", GoValue::str(&self.key_scope.provider_name)),
            ("cluster_id", GoValue::str(&self.key_scope.cluster_id)),
            (
                "openbao_instance_id",
                GoValue::str(&self.key_scope.openbao_instance_id),
            ),
        ];
        if let Some(namespace) = &self.key_scope.openbao_namespace {
            fields.push(("openbao_namespace", GoValue::str(namespace)));
        }
        fields.extend([
            (
                "transit_mount_id",
                GoValue::str(&self.key_scope.transit_mount_id),
            ),
            (
                "key_lineage_id",
                GoValue::str(&self.key_scope.key_lineage_id),
            ),
            ("transit_mount_path", GoValue::str(&self.transit_mount_path)),
            ("transit_key_name", GoValue::str(&self.transit_key_name)),
        ]);
        let canonical = GoValue::Object(fields).to_compact();
        Fingerprint(format!(
            "{FINGERPRINT_PREFIX}{}",
            encode_url(&sha256(canonical.as_bytes()))
        ))
    }
}

impl KeyScope {
    /// Builds a key scope from values read back from a state file.
    ///
    /// # Errors
    /// The first invalid value, named by its state-file field.
    pub fn from_parts(
        provider_name: String,
        cluster_id: String,
        openbao_instance_id: String,
        openbao_namespace: Option<String>,
        transit_mount_id: String,
        key_lineage_id: String,
    ) -> Result<Self, IdentityError> {
        let checks: [(&'static str, &str); 5] = [
            ("providerName", &provider_name),
            ("clusterId", &cluster_id),
            ("openbaoInstanceId", &openbao_instance_id),
            ("transitMountId", &transit_mount_id),
            ("transitKeyLineageId", &key_lineage_id),
        ];
        for (field, value) in checks {
            check_label(value).map_err(|reason| IdentityError { field, reason })?;
        }
        if let Some(namespace) = &openbao_namespace {
            check_relative_path(namespace, false).map_err(|reason| IdentityError {
                field: "openbaoNamespace",
                reason,
            })?;
        }
        Ok(Self {
            provider_name,
            cluster_id,
            openbao_instance_id,
            openbao_namespace,
            transit_mount_id,
            key_lineage_id,
        })
    }

    /// The EncryptionConfiguration provider name (the only raw value inside the AAD).
    pub fn provider_name(&self) -> &str {
        &self.provider_name
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The OpenBao instance id.
    pub fn openbao_instance_id(&self) -> &str {
        &self.openbao_instance_id
    }

    /// The OpenBao namespace, when one is configured.
    pub fn openbao_namespace(&self) -> Option<&str> {
        self.openbao_namespace.as_deref()
    }

    /// The Transit mount id label.
    pub fn transit_mount_id(&self) -> &str {
        &self.transit_mount_id
    }

    /// The key lineage id.
    pub fn key_lineage_id(&self) -> &str {
        &self.key_lineage_id
    }

    /// Digest of the cluster id, as bound into the AAD.
    pub fn cluster_id_digest(&self) -> IdentityDigest {
        IdentityDigest::of(self.cluster_id.as_bytes())
    }

    /// Digest of the OpenBao instance id, as bound into the AAD.
    pub fn instance_digest(&self) -> IdentityDigest {
        IdentityDigest::of(self.openbao_instance_id.as_bytes())
    }

    /// Digest of the namespace, when one is configured.
    pub fn namespace_digest(&self) -> Option<IdentityDigest> {
        self.openbao_namespace
            .as_deref()
            .map(|ns| IdentityDigest::of(ns.as_bytes()))
    }

    /// Digest of the Transit mount id label.
    pub fn mount_digest(&self) -> IdentityDigest {
        IdentityDigest::of(self.transit_mount_id.as_bytes())
    }

    /// Digest of the key lineage id.
    pub fn lineage_digest(&self) -> IdentityDigest {
        IdentityDigest::of(self.key_lineage_id.as_bytes())
    }
}

/// A `cfg1.` identity fingerprint: 48 characters.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Parses `cfg1.` followed by a 43-character digest.
    ///
    /// # Errors
    /// [`FingerprintError`] on any other text.
    pub fn parse(text: &str) -> Result<Self, FingerprintError> {
        let body = text
            .strip_prefix(FINGERPRINT_PREFIX)
            .ok_or(FingerprintError)?;
        decode_digest(body).map_err(|_| FingerprintError)?;
        Ok(Self(text.to_owned()))
    }

    /// The encoded fingerprint.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a fingerprint was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("identity fingerprint must be cfg1. followed by 43 base64url characters")]
pub struct FingerprintError;

/// One invalid identity value.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct IdentityError {
    /// The configuration field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks an identifier-like value: present, no surrounding whitespace, no control characters.
pub fn check_label(value: &str) -> Result<(), &'static str> {
    if value.trim().is_empty() {
        return Err("is required");
    }
    if value.trim() != value {
        return Err("must not have surrounding whitespace");
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

/// Whether `name` is a valid OpenBao object name (`GenericNameRegex`, ASCII only).
pub fn is_openbao_name(name: &str) -> bool {
    let word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    let bytes = name.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    word(first)
        && word(last)
        && bytes
            .iter()
            .all(|&byte| word(byte) || byte == b'-' || byte == b'.')
}

/// Checks a relative OpenBao path (mount path or namespace).
///
/// Surrounding slashes are tolerated for mount paths (they are trimmed), never for namespaces.
pub fn check_relative_path(value: &str, optional: bool) -> Result<(), &'static str> {
    if value.is_empty() {
        return if optional { Ok(()) } else { Err("is required") };
    }
    if value.trim() != value || value.chars().any(char::is_control) {
        return Err("must not have surrounding whitespace or control characters");
    }
    if optional && value.starts_with('/') {
        return Err("must be relative (no leading /)");
    }
    if value.contains('%') {
        return Err("must not contain %");
    }
    let trimmed = value.trim_matches('/');
    if trimmed.is_empty() {
        return Err("is required");
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("must not contain empty, . or .. segments");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn golden_values() -> IdentityValues {
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

    #[test]
    fn fingerprint_is_cfg1_prefixed_and_48_characters() {
        let scope = IdentityScope::new(golden_values()).unwrap();
        let fingerprint = scope.fingerprint();
        assert!(fingerprint.as_str().starts_with("cfg1."));
        assert_eq!(fingerprint.as_str().len(), 48);
        assert_eq!(
            Fingerprint::parse(fingerprint.as_str()).unwrap(),
            fingerprint
        );
    }

    #[test]
    fn fingerprint_binds_mount_path_and_key_name() {
        let base = IdentityScope::new(golden_values()).unwrap().fingerprint();
        let mut other_key = golden_values();
        other_key.transit_key_name = "other".into();
        let mut other_mount = golden_values();
        other_mount.transit_mount_path = "transit2".into();
        assert_ne!(IdentityScope::new(other_key).unwrap().fingerprint(), base);
        assert_ne!(IdentityScope::new(other_mount).unwrap().fingerprint(), base);
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_field() {
        let values = IdentityValues {
            provider_name: " padded".into(),
            cluster_id: String::new(),
            openbao_instance_id: "ok".into(),
            openbao_namespace: "/abs".into(),
            transit_mount_id: "tab\there".into(),
            key_lineage_id: "ok".into(),
            transit_mount_path: "a//b".into(),
            transit_key_name: "-bad".into(),
        };
        let fields: Vec<_> = IdentityScope::new(values)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "transit.keyIdScope.providerName",
                "transit.keyIdScope.clusterId",
                "transit.keyIdScope.transitMountId",
                "transit.keyName",
                "transit.mountPath",
                "openbao.namespace",
            ]
        );
    }

    #[test]
    fn openbao_names_follow_the_generic_name_rule() {
        for good in ["a", "kms-key", "k.e_y", "A1"] {
            assert!(is_openbao_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", ".a", "a/b", "ключ", "a b"] {
            assert!(!is_openbao_name(bad), "{bad}");
        }
    }
}
