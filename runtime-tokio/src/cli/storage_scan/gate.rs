//! `retire-versions --storage-report FILE`: reads the report and words the core's retirement
//! gate (`bao_kms_core::storage_scan::gate`). A blocked gate refuses `--apply` unless the
//! operator passes `--ignore-storage-references`, which is printed as a warning so it shows in
//! the job's log.

use std::path::Path;

use bao_kms_core::storage_scan::ScanSummary;
pub(in crate::cli) use bao_kms_core::storage_scan::gate::{StorageReferences, references};
use serde::Deserialize;

/// The largest report read.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A report file: the `storage-scan --output json` document, whose `scan` is the summary.
#[derive(Deserialize)]
struct ReportFile {
    scan: ScanSummary,
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

/// `key: value` lines for the text plan.
pub(in crate::cli) fn text(references: &StorageReferences) -> String {
    let mut out = format!(
        "storageReportAgeSeconds: {}\nstorageReportComplete: {}\n",
        references.age_seconds, references.complete
    );
    for entry in &references.versions {
        let objects = entry
            .objects
            .map_or_else(|| "not-in-report".to_owned(), |count| count.to_string());
        out.push_str(&format!(
            "storageReferences: transitVersion={} keyIdHash={} objects={objects}\n",
            entry.transit_version, entry.key_id_hash
        ));
    }
    out.push_str(&format!("storageBlocked: {}\n", references.blocked));
    out
}

/// What blocks `--apply`, in one clause.
fn reason(references: &StorageReferences) -> String {
    if !references.complete {
        return "the storage report comes from an incomplete scan (it failed before reading \
                every key)"
            .to_owned();
    }
    let pending: Vec<String> = references
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
pub(in crate::cli) fn refusal(references: &StorageReferences) -> String {
    format!(
        "refusing to retire: {}; migrate storage (rewrite those objects) and scan again, or \
         pass --ignore-storage-references to retire anyway",
        reason(references)
    )
}

/// The warning printed when `--ignore-storage-references` overrides the refusal.
pub(in crate::cli) fn override_warning(references: &StorageReferences) -> String {
    format!(
        "warning: --ignore-storage-references: retiring although {}; objects under a removed \
         version do not decrypt on this node until restore-versions",
        reason(references)
    )
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bao_kms_core::plan::VersionEntry;
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
        assert!(refusal(&referenced).contains("version 1 (3 objects)"));
        assert!(text(&referenced).contains("transitVersion=1 keyIdHash=h1 objects=3"));

        assert!(!references(&summary(0), &removed("h1"), 160).blocked);
        let other_registry = references(&summary(0), &removed("h2"), 160);
        assert!(other_registry.blocked);
        assert!(refusal(&other_registry).contains("not in the report"));

        let mut incomplete = summary(0);
        incomplete.complete = false;
        let refused = references(&incomplete, &removed("h1"), 160);
        assert!(refused.blocked);
        assert!(refusal(&refused).contains("incomplete scan"));
        assert!(override_warning(&referenced).contains("retiring although"));
    }
}
