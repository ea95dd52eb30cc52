//! The pure observation rules of `rotation::observe`.
#![allow(clippy::unwrap_used)]

use bao_kms_core::health::NotReadyReason;
use bao_kms_core::registry::SnapshotState;
use bao_kms_core::rotation::{ObserveError, ObserveMode, RotationPolicy, bootstrap, observe};
use bao_kms_core::{IdentityScope, IdentityValues, KeyMetadata, KeyVersion};

fn scope() -> IdentityScope {
    IdentityScope::new(IdentityValues {
        provider_name: "kms".into(),
        cluster_id: "c".into(),
        openbao_instance_id: "bao".into(),
        transit_mount_id: "m".into(),
        key_lineage_id: "l".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "k".into(),
        ..IdentityValues::default()
    })
    .unwrap()
}

fn metadata(latest: u64) -> KeyMetadata {
    KeyMetadata {
        key_type: "aes256-gcm96".into(),
        latest_version: latest,
        min_decryption_version: 1,
        versions: (1..=latest)
            .map(|v| (v, 1_700_000_000 + i64::try_from(v).unwrap()))
            .collect(),
        supports_encryption: true,
        supports_decryption: true,
        ..KeyMetadata::default()
    }
}

const POLICY: RotationPolicy = RotationPolicy {
    require_stable_observation_count: 1,
    reject_version_rollback: true,
};

#[test]
fn discovery_records_a_candidate_without_counting_it_even_with_a_threshold_of_one() {
    let first = bootstrap(&scope(), &metadata(1), 1_800_000_000).unwrap();
    let verdict = observe(
        &first,
        &metadata(2),
        1_800_000_010,
        POLICY,
        ObserveMode::Discover,
    )
    .unwrap();
    let next = verdict.next.unwrap();
    let candidate = next.record_by_version(KeyVersion::new(2).unwrap()).unwrap();
    assert_eq!(candidate.state(), SnapshotState::Pending);
    assert_eq!(candidate.observation().stable_observation_count, 0);
    assert_eq!(candidate.observation().stable_at_unix, 0);
    let probed = observe(
        &first,
        &metadata(2),
        1_800_000_010,
        POLICY,
        ObserveMode::Probe,
    )
    .unwrap();
    let counted = probed.next.unwrap();
    let record = counted
        .record_by_version(KeyVersion::new(2).unwrap())
        .unwrap();
    assert_eq!(record.observation().stable_observation_count, 1);
}

#[test]
fn a_rolled_back_key_is_a_version_rollback_when_rejected_and_fails_closed_otherwise() {
    let first = bootstrap(&scope(), &metadata(1), 1_800_000_000).unwrap();
    let seen = observe(
        &first,
        &metadata(2),
        1_800_000_010,
        POLICY,
        ObserveMode::Probe,
    )
    .unwrap();
    let pending = seen.next.unwrap();
    let promoted =
        bao_kms_core::rotation::promote(&pending, KeyVersion::new(2).unwrap(), 1_800_000_100)
            .unwrap();
    let rolled_back = metadata(1);
    let verdict = observe(
        &promoted,
        &rolled_back,
        1_800_000_200,
        POLICY,
        ObserveMode::Probe,
    )
    .unwrap();
    assert_eq!(verdict.blocking, [NotReadyReason::VersionRollback]);
    assert!(verdict.next.is_none());
    let lenient = RotationPolicy {
        reject_version_rollback: false,
        ..POLICY
    };
    let error = observe(
        &promoted,
        &rolled_back,
        1_800_000_200,
        lenient,
        ObserveMode::Probe,
    );
    assert_eq!(error.unwrap_err(), ObserveError::CreationTimeMissing);
}
