//! Transit key profile checks: a key that is unsafe or unusable for Kubernetes is refused.

use crate::transit::KeyMetadata;

/// The only key type the provider accepts.
pub const REQUIRED_KEY_TYPE: &str = "aes256-gcm96";

/// One problem with a Transit key's configuration.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum ProfileFinding {
    /// The key type is not `aes256-gcm96`.
    UnsupportedType,
    /// Key material can be exported.
    Exportable,
    /// Plaintext backup is allowed.
    PlaintextBackup,
    /// Key derivation is on (the provider sends no context).
    Derived,
    /// Convergent encryption is on.
    Convergent,
    /// The key may be deleted.
    DeletionAllowed,
    /// The key cannot encrypt.
    EncryptionUnsupported,
    /// The key cannot decrypt.
    DecryptionUnsupported,
    /// `min_encryption_version` is above `latest_version`.
    MinEncryptionVersionAboveLatest,
    /// `min_decryption_version` is above `latest_version`.
    MinDecryptionVersionAboveLatest,
    /// `min_available_version` is above `latest_version`.
    MinAvailableVersionAboveLatest,
    /// The key is soft-deleted.
    SoftDeleted,
    /// `latest_version` is zero.
    NoVersions,
    /// The latest version has no creation time.
    LatestVersionUndated,
}

/// Which promise a finding breaks.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum FindingImpact {
    /// The key could leak or weaken the protection of Secrets.
    CryptographicSafety,
    /// The key could become unusable and make the API server lose access to Secrets.
    ApiServerAvailability,
}

impl ProfileFinding {
    /// The stable finding code.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnsupportedType => "unsupported_type",
            Self::Exportable => "exportable",
            Self::PlaintextBackup => "plaintext_backup",
            Self::Derived => "derived",
            Self::Convergent => "convergent",
            Self::DeletionAllowed => "deletion_allowed",
            Self::EncryptionUnsupported => "encryption_unsupported",
            Self::DecryptionUnsupported => "decryption_unsupported",
            Self::MinEncryptionVersionAboveLatest => "min_encryption_version",
            Self::MinDecryptionVersionAboveLatest => "min_decryption_version",
            Self::MinAvailableVersionAboveLatest => "min_available_version",
            Self::SoftDeleted => "soft_deleted",
            Self::NoVersions => "no_versions",
            Self::LatestVersionUndated => "latest_version_undated",
        }
    }

    /// Which promise the finding breaks.
    pub fn impact(self) -> FindingImpact {
        match self {
            Self::UnsupportedType
            | Self::Exportable
            | Self::PlaintextBackup
            | Self::Derived
            | Self::Convergent => FindingImpact::CryptographicSafety,
            Self::DeletionAllowed
            | Self::EncryptionUnsupported
            | Self::DecryptionUnsupported
            | Self::MinEncryptionVersionAboveLatest
            | Self::MinDecryptionVersionAboveLatest
            | Self::MinAvailableVersionAboveLatest
            | Self::SoftDeleted
            | Self::NoVersions
            | Self::LatestVersionUndated => FindingImpact::ApiServerAvailability,
        }
    }
}

/// Every finding for a key, in a stable order. An empty list means the key is usable.
///
/// Every finding blocks service: the provider fails closed rather than run on a key that could
/// be exported, deleted or switched to a weaker mode under it.
pub fn findings(metadata: &KeyMetadata) -> Vec<ProfileFinding> {
    let latest = metadata.latest_version;
    let checks = [
        (
            metadata.key_type != REQUIRED_KEY_TYPE,
            ProfileFinding::UnsupportedType,
        ),
        (metadata.exportable, ProfileFinding::Exportable),
        (
            metadata.allow_plaintext_backup,
            ProfileFinding::PlaintextBackup,
        ),
        (metadata.derived, ProfileFinding::Derived),
        (metadata.convergent_encryption, ProfileFinding::Convergent),
        (metadata.deletion_allowed, ProfileFinding::DeletionAllowed),
        (
            !metadata.supports_encryption,
            ProfileFinding::EncryptionUnsupported,
        ),
        (
            !metadata.supports_decryption,
            ProfileFinding::DecryptionUnsupported,
        ),
        (
            metadata.min_encryption_version > latest,
            ProfileFinding::MinEncryptionVersionAboveLatest,
        ),
        (
            metadata.min_decryption_version > latest,
            ProfileFinding::MinDecryptionVersionAboveLatest,
        ),
        (
            metadata.min_available_version > latest,
            ProfileFinding::MinAvailableVersionAboveLatest,
        ),
        (metadata.soft_deleted, ProfileFinding::SoftDeleted),
        (latest == 0, ProfileFinding::NoVersions),
        (
            latest > 0 && !metadata.versions.contains_key(&latest),
            ProfileFinding::LatestVersionUndated,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(found, finding)| found.then_some(finding))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn good_metadata() -> KeyMetadata {
        KeyMetadata {
            key_type: REQUIRED_KEY_TYPE.into(),
            latest_version: 1,
            min_decryption_version: 1,
            versions: [(1, 1_700_000_000)].into(),
            supports_encryption: true,
            supports_decryption: true,
            ..KeyMetadata::default()
        }
    }

    #[test]
    fn a_default_openbao_aes_key_has_no_findings() {
        assert!(findings(&good_metadata()).is_empty());
    }

    #[test]
    fn exportable_and_deletable_keys_are_flagged_with_their_impact() {
        let metadata = KeyMetadata {
            exportable: true,
            deletion_allowed: true,
            ..good_metadata()
        };
        let found = findings(&metadata);
        assert_eq!(
            found,
            [ProfileFinding::Exportable, ProfileFinding::DeletionAllowed]
        );
        assert_eq!(found[0].impact(), FindingImpact::CryptographicSafety);
        assert_eq!(found[1].impact(), FindingImpact::ApiServerAvailability);
    }
}
