#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::identity::{IdentityScope, IdentityValues};
use crate::registry::StateRecord;
use crate::version::KeyVersion;

fn scope() -> IdentityScope {
    IdentityScope::new(IdentityValues {
        provider_name: "bao-kms".into(),
        cluster_id: "c1".into(),
        openbao_instance_id: "bao".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-1".into(),
        key_lineage_id: "lineage-1".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "kms-key".into(),
    })
    .unwrap()
}

fn record(version: u64, state: SnapshotState) -> StateRecord {
    StateRecord::new(
        scope().key_scope().clone(),
        KeyVersion::new(version).unwrap(),
        1_700_000_000 + i64::try_from(version).unwrap(),
        state,
    )
    .unwrap()
}

/// v3 active, v2 retired, v1 removed.
fn registry() -> StateFile {
    let records = vec![
        record(3, SnapshotState::Active),
        record(2, SnapshotState::Retired),
        record(1, SnapshotState::Removed),
    ];
    let active = records[0].key_id().clone();
    StateFile::build(scope().fingerprint(), 1, None, active, records).unwrap()
}

fn value(key_id: &str, version: &str) -> Vec<u8> {
    let mut annotations = BTreeMap::new();
    annotations.insert(TRANSIT_KEY_VERSION.to_owned(), version.as_bytes().to_vec());
    let mut out = b"k8s:enc:kms:v2:bao-kms:".to_vec();
    out.extend(encrypted_object::encode(
        b"data",
        key_id,
        b"dek",
        &annotations,
        1,
    ));
    out
}

fn entry(summary: &ScanSummary, version: u32) -> &VersionVerdict {
    summary
        .versions
        .iter()
        .find(|entry| entry.transit_version == Some(version))
        .unwrap()
}

#[test]
fn counts_per_resource_and_key_id_match_the_registry_and_give_verdicts() {
    let registry = registry();
    let v3 = registry.records()[0].key_id().as_str().to_owned();
    let v2 = registry.records()[1].key_id().as_str().to_owned();
    assert_eq!(registry.records()[1].version().get(), 2);
    let mut tally = Tally::new("/registry/", "bao-kms");
    for n in 0..5 {
        tally.add(
            format!("/registry/secrets/ns/a{n}").as_bytes(),
            &value(&v3, "3"),
        );
    }
    for n in 0..2 {
        tally.add(
            format!("/registry/secrets/ns/b{n}").as_bytes(),
            &value(&v2, "2"),
        );
    }
    tally.add(b"/registry/configmaps/ns/c", b"k8s\x00\x0a");
    tally.add(b"/registry/secrets/ns/other", b"k8s:enc:aescbc:v1:k:zz");
    tally.add(
        b"/registry/widgets.example.com/widgets/ns/w",
        &value("foreign-key", "7"),
    );
    let summary = ScanSummary::build(&tally, Some(&registry), 42, true);
    assert_eq!(summary.objects, 10);
    assert_eq!(summary.scanned_at_unix, 42);

    let secrets = summary
        .resources
        .iter()
        .find(|entry| entry.resource == "secrets")
        .unwrap();
    assert_eq!(secrets.objects, 8);
    assert_eq!(secrets.kinds["kms-v2"], 7);
    assert_eq!(secrets.kinds["aescbc"], 1);
    assert_eq!(
        secrets.key_id_hashes[IdentityDigest::of(v3.as_bytes()).as_str()],
        5
    );
    assert!(
        summary
            .resources
            .iter()
            .any(|entry| entry.resource == "widgets.widgets.example.com")
    );
    assert_eq!(summary.count_of(ValueKind::Identity), 1);

    assert_eq!(entry(&summary, 3).verdict, Verdict::Current);
    assert_eq!(entry(&summary, 3).objects, 5);
    assert_eq!(entry(&summary, 2).verdict, Verdict::StillReferenced);
    assert_eq!(entry(&summary, 2).objects, 2);
    assert_eq!(entry(&summary, 2).registry_state, "retired");
    assert_eq!(entry(&summary, 1).verdict, Verdict::SafeToRetire);
    let unknown = entry(&summary, 7);
    assert_eq!(unknown.verdict, Verdict::UnknownKeyId);
    assert_eq!(unknown.registry_state, "unknown");

    let below_3: Vec<u32> = summary
        .referenced_below(3)
        .iter()
        .filter_map(|entry| entry.transit_version)
        .collect();
    assert_eq!(below_3, [2]);
    assert!(summary.referenced_below(2).is_empty());

    // The summary round-trips through its JSON form (what --storage-report reads back).
    let json = serde_json::to_string(&summary).unwrap();
    let back: ScanSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, summary);
}

#[test]
fn objects_under_a_removed_version_are_unreadable_and_buckets_are_capped() {
    let registry = registry();
    let v1 = registry.records()[2].key_id().as_str().to_owned();
    let mut tally = Tally::new("/registry/", "bao-kms");
    tally.add(b"/registry/secrets/ns/a", &value(&v1, "1"));
    let summary = ScanSummary::build(&tally, Some(&registry), 0, true);
    assert_eq!(entry(&summary, 1).verdict, Verdict::Unreadable);

    let mut tally = Tally::new("/registry/", "bao-kms");
    for n in 0..MAX_BUCKETS + 10 {
        tally.add(format!("/registry/r{n}/x").as_bytes(), b"{}");
    }
    let summary = ScanSummary::build(&tally, None, 0, true);
    assert_eq!(summary.resources.len(), MAX_BUCKETS + 1);
    let overflow = summary
        .resources
        .iter()
        .find(|entry| entry.resource == OVERFLOW_BUCKET)
        .unwrap();
    assert_eq!(overflow.objects, 10);
}

#[test]
fn resource_types_come_from_the_key_path() {
    assert_eq!(
        resource_type(b"/registry/secrets/ns/a", b"/registry/"),
        "secrets"
    );
    assert_eq!(
        resource_type(
            b"/registry/apiregistration.k8s.io/apiservices/v1.",
            b"/registry/"
        ),
        "apiservices.apiregistration.k8s.io"
    );
    assert_eq!(
        resource_type(b"/registry/namespaces/default", b"/registry/"),
        "namespaces"
    );
    assert_eq!(
        resource_type(b"/elsewhere/x", b"/registry/"),
        OVERFLOW_BUCKET
    );
    assert_eq!(resource_type(b"/registry/", b"/registry/"), OVERFLOW_BUCKET);
}
