//! `retire-versions --storage-report FILE`: what a recent scan says about each version the
//! plan would retire, and whether `--apply` may go ahead.
//!
//! A version is clear only when the report names its key_id (so the scan was matched against
//! this registry) with zero objects. Anything else blocks `--apply` unless the operator passes
//! `--ignore-storage-references`, which is printed as a warning so it shows in the job's log.

use std::path::Path;

use bao_kms_core::plan::VersionEntry;
use bao_kms_core::storage_scan::ScanSummary;
use serde::{Deserialize, Serialize};

/// The largest report read.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A report file: the `storage-scan --output json` document, whose `scan` is the summary.
#[derive(Deserialize)]
struct ReportFile {
    scan: ScanSummary,
}

/// What the storage report says about the versions a retirement would remove.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::cli) struct StorageReferences {
    /// When the scan finished (Unix seconds).
    pub(in crate::cli) scanned_at_unix: i64,
    /// Whether the scan read every key (an incomplete one blocks).
    pub(in crate::cli) complete: bool,
    /// Seconds between the scan and now.
    pub(in crate::cli) age_seconds: i64,
    /// One entry per version the plan would remove.
    pub(in crate::cli) versions: Vec<VersionReferences>,
    /// Whether `--apply` would be refused without the override.
    pub(in crate::cli) blocked: bool,
}

/// Objects one version still encrypts, by the report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::cli) struct VersionReferences {
    /// The Transit version.
    pub(in crate::cli) transit_version: u32,
    /// Digest of its key_id.
    pub(in crate::cli) key_id_hash: String,
    /// Objects stored under it; `None` when the report does not name this key_id.
    pub(in crate::cli) objects: Option<u64>,
}

/// Reads the report at `path`. Errors name the file, never its contents.
pub(in crate::cli) fn load(path: &Path) -> Result<ScanSummary, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str::<ReportFile>(&text)
        .map(|file| file.scan)
        .map_err(|error| {
            format!(
                "{} is not a storage-scan JSON report (line {}, column {})",
                path.display(),
                error.line(),
                error.column()
            )
        })
}

/// Matches the versions a plan removes against the report.
pub(in crate::cli) fn references(
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

impl StorageReferences {
    /// `key: value` lines for the text plan.
    pub(in crate::cli) fn text(&self) -> String {
        let mut out = format!(
            "storageReportAgeSeconds: {}\nstorageReportComplete: {}\n",
            self.age_seconds, self.complete
        );
        for entry in &self.versions {
            let objects = entry
                .objects
                .map_or_else(|| "not-in-report".to_owned(), |count| count.to_string());
            out.push_str(&format!(
                "storageReferences: transitVersion={} keyIdHash={} objects={objects}\n",
                entry.transit_version, entry.key_id_hash
            ));
        }
        out.push_str(&format!("storageBlocked: {}\n", self.blocked));
        out
    }

    /// What blocks `--apply`, in one clause.
    fn reason(&self) -> String {
        if !self.complete {
            return "the storage report comes from an incomplete scan (it failed before reading \
                    every key)"
                .to_owned();
        }
        let pending: Vec<String> = self
            .versions
            .iter()
            .filter(|entry| entry.objects != Some(0))
            .map(|entry| match entry.objects {
                Some(count) => format!("version {} ({count} objects)", entry.transit_version),
                None => format!("version {} (not in the report)", entry.transit_version),
            })
            .collect();
        format!(
            "the storage report shows objects still encrypted under {}",
            pending.join(", ")
        )
    }

    /// Why `--apply` is refused.
    pub(in crate::cli) fn refusal(&self) -> String {
        format!(
            "refusing to retire: {}; migrate storage (rewrite those objects) and scan again, or \
             pass --ignore-storage-references to retire anyway",
            self.reason()
        )
    }

    /// The warning printed when `--ignore-storage-references` overrides the refusal.
    pub(in crate::cli) fn override_warning(&self) -> String {
        format!(
            "warning: --ignore-storage-references: retiring although {}; objects under a removed \
             version do not decrypt on this node until restore-versions",
            self.reason()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bao_kms_core::storage_scan::{Verdict, VersionVerdict};

    use super::*;

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
    fn a_version_blocks_unless_the_report_names_it_with_zero_objects() {
        let referenced = references(&summary(3), &removed("h1"), 160);
        assert!(referenced.blocked);
        assert_eq!(referenced.age_seconds, 60);
        assert!(referenced.refusal().contains("version 1 (3 objects)"));
        assert!(
            referenced
                .text()
                .contains("transitVersion=1 keyIdHash=h1 objects=3")
        );

        assert!(!references(&summary(0), &removed("h1"), 160).blocked);
        let other_registry = references(&summary(0), &removed("h2"), 160);
        assert!(other_registry.blocked);
        assert!(other_registry.refusal().contains("not in the report"));

        let mut incomplete = summary(0);
        incomplete.complete = false;
        let refused = references(&incomplete, &removed("h1"), 160);
        assert!(refused.blocked);
        assert!(refused.refusal().contains("incomplete scan"));
        assert!(referenced.override_warning().contains("retiring although"));
    }
}
