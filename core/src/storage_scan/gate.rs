//! The retirement gate: what a storage scan says about the versions a `retire-versions` plan
//! would remove, and whether applying it may go ahead.
//!
//! A version is clear only when the report names its key_id (so the scan was matched against
//! this registry) with zero objects, and the scan read every key. Anything else blocks; the
//! shell words the verdict and owns the operator's override.

use serde::Serialize;

use crate::plan::VersionEntry;

use super::ScanSummary;

/// What the storage report says about the versions a retirement would remove.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageReferences {
    /// When the scan finished (Unix seconds).
    pub scanned_at_unix: i64,
    /// Whether the scan read every key (an incomplete one blocks).
    pub complete: bool,
    /// Seconds between the scan and now.
    pub age_seconds: i64,
    /// One entry per version the plan would remove.
    pub versions: Vec<VersionReferences>,
    /// Whether `--apply` would be refused without the override.
    pub blocked: bool,
}

/// Objects one version still encrypts, by the report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionReferences {
    /// The Transit version.
    pub transit_version: u32,
    /// Digest of its key_id.
    pub key_id_hash: String,
    /// Objects stored under it; `None` when the report does not name this key_id.
    pub objects: Option<u64>,
}

/// Matches the versions a plan removes against the report.
pub fn references(
    summary: &ScanSummary,
    removed: &[VersionEntry],
    now_unix: i64,
) -> StorageReferences {
    let versions: Vec<VersionReferences> = removed
        .iter()
        .map(|entry| VersionReferences {
            transit_version: entry.transit_version,
            key_id_hash: entry.key_id_hash.clone(),
            objects: summary
                .versions
                .iter()
                .find(|scanned| scanned.key_id_hash == entry.key_id_hash)
                .map(|scanned| scanned.objects),
        })
        .collect();
    let blocked = !summary.complete || versions.iter().any(|entry| entry.objects != Some(0));
    StorageReferences {
        scanned_at_unix: summary.scanned_at_unix,
        complete: summary.complete,
        age_seconds: now_unix.saturating_sub(summary.scanned_at_unix),
        versions,
        blocked,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage_scan::{Verdict, VersionVerdict};

    fn summary(objects: u64) -> ScanSummary {
        ScanSummary {
            prefix: "/registry/".into(),
            provider_name: "bao-kms".into(),
            scanned_at_unix: 100,
            complete: true,
            objects,
            bytes: 0,
            resources: Vec::new(),
            versions: vec![VersionVerdict {
                transit_version: Some(1),
                key_id_hash: "h1".into(),
                registry_state: "retired".into(),
                objects,
                verdict: if objects == 0 {
                    Verdict::SafeToRetire
                } else {
                    Verdict::StillReferenced
                },
            }],
        }
    }

    fn removed(hash: &str) -> Vec<VersionEntry> {
        vec![VersionEntry {
            transit_version: 1,
            key_id_hash: hash.into(),
        }]
    }

    #[test]
    fn a_version_blocks_unless_a_complete_report_names_it_with_zero_objects() {
        let referenced = references(&summary(3), &removed("h1"), 160);
        assert!(referenced.blocked);
        assert_eq!(referenced.age_seconds, 60);
        assert_eq!(referenced.versions[0].objects, Some(3));
        assert!(!references(&summary(0), &removed("h1"), 160).blocked);
        let other_registry = references(&summary(0), &removed("h2"), 160);
        assert!(other_registry.blocked);
        assert_eq!(other_registry.versions[0].objects, None);
        let mut incomplete = summary(0);
        incomplete.complete = false;
        assert!(references(&incomplete, &removed("h1"), 160).blocked);
    }
}
