//! `core::plan`: the rotation report and the operator retire/restore plans, as pure functions
//! over registry bytes, Transit metadata and the configuration.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use bao_kms_core::health::RotationState;
use bao_kms_core::plan::{
    CheckResult, CheckpointState, Confidence, OperatorInput, OperatorPlan, OperatorRefusal,
    OperatorRequest, PlanInput, RotationPlan, VERIFY_LIMITATIONS, operator_plan, rotation_plan,
};
use bao_kms_core::registry::{Checkpoint, Observation, SnapshotState, StateFile, StateRecord};
use bao_kms_core::rotation::RotationPolicy;
use bao_kms_core::{
    FailureClass, IdentityScope, IdentityValues, KeyId, KeyMetadata, KeyVersion, StoredState,
};

use SnapshotState::{Active, Pending, Removed, Retired};

const NOW: i64 = 1_800_000_000;
const POLICY: RotationPolicy = RotationPolicy {
    require_stable_observation_count: 2,
    reject_version_rollback: true,
};
const DELAY: Duration = Duration::from_secs(2);

fn scope() -> IdentityScope {
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

fn version(value: u64) -> KeyVersion {
    KeyVersion::new(value).unwrap()
}

fn created(value: u64) -> i64 {
    1_700_000_000 + i64::try_from(value).unwrap() * 1000
}

fn rec(value: u64, state: SnapshotState) -> StateRecord {
    StateRecord::new(
        scope().key_scope().clone(),
        version(value),
        created(value),
        state,
    )
    .unwrap()
}

fn digest_of(value: u64) -> String {
    KeyId::derive(scope().key_scope(), version(value), created(value))
        .digest()
        .to_string()
}

fn state_of(records: Vec<StateRecord>) -> StateFile {
    let active = records
        .iter()
        .find(|record| record.state() == Active)
        .unwrap()
        .key_id()
        .clone();
    StateFile::build(scope().fingerprint(), 1, None, active, records).unwrap()
}

/// A valid key profile with versions 1..=latest.
fn metadata(latest: u64) -> KeyMetadata {
    KeyMetadata {
        key_type: "aes256-gcm96".into(),
        latest_version: latest,
        min_available_version: 0,
        min_decryption_version: 1,
        min_encryption_version: 0,
        versions: (1..=latest)
            .map(|v| (v, created(v)))
            .collect::<BTreeMap<_, _>>(),
        supports_encryption: true,
        supports_decryption: true,
        ..KeyMetadata::default()
    }
}

fn stored(state: Option<&StateFile>, checkpoint: Option<&Checkpoint>) -> StoredState {
    StoredState {
        state: state.map(|state| state.encode().into_bytes()),
        checkpoint: checkpoint.map(|checkpoint| checkpoint.encode().into_bytes()),
    }
}

fn with_checkpoint(state: &StateFile) -> StoredState {
    stored(Some(state), Some(&Checkpoint::for_state(state)))
}

fn report(stored: &StoredState, metadata: Result<&KeyMetadata, FailureClass>) -> RotationPlan {
    let scope = scope();
    rotation_plan(
        &PlanInput {
            local: Ok(stored),
            metadata,
            scope: &scope,
            policy: POLICY,
            activation_delay: DELAY,
            now_unix: NOW,
        },
        false,
    )
}

fn json(plan: &RotationPlan) -> serde_json::Value {
    serde_json::to_value(plan).unwrap()
}

fn retired_three() -> StateFile {
    state_of(vec![rec(3, Active), rec(2, Retired), rec(1, Retired)])
}

// ---------------------------------------------------------------------------------------------
// rotation-plan

#[test]
fn fresh_files_on_an_unrotated_key_are_bootstrap_eligible_with_version_1_active() {
    let plan = report(&StoredState::default(), Ok(&metadata(1)));
    assert!(!plan.failed(), "{plan:?}");
    assert_eq!(plan.state_checkpoint_status, Some(CheckpointState::Absent));
    assert!(!plan.state_loaded);
    assert_eq!(plan.state_bootstrap_eligible, Some(true));
    assert_eq!(plan.rotation_state.0, RotationState::Active);
    assert_eq!(plan.active_transit_version, Some(1));
    assert_eq!(plan.active_key_id_hash, Some(digest_of(1)));
    assert_eq!(plan.latest_transit_version, Some(1));
    let value = json(&plan);
    assert_eq!(value["stateCheckpointStatus"], "absent");
    assert_eq!(value["stateBootstrapEligible"], true);
    assert!(value.get("stateGeneration").is_none(), "{value}");
    assert!(value.get("stateHash").is_none(), "{value}");
    assert!(value.get("blockers").is_none(), "{value}");
}

#[test]
fn a_rotated_key_without_state_is_not_bootstrap_eligible_and_says_why() {
    let plan = report(&StoredState::default(), Ok(&metadata(3)));
    assert!(plan.failed());
    assert_eq!(plan.state_bootstrap_eligible, Some(false));
    assert_eq!(
        plan.state_bootstrap_reason.as_deref(),
        Some("Transit latest_version=3 is not initial version 1")
    );
    assert_eq!(plan.rotation_state.0, RotationState::Unknown);
    assert_eq!(plan.active_key_id_hash, None);
}

#[test]
fn a_recorded_pending_candidate_reports_its_count_and_what_promotion_still_needs() {
    let pending = rec(2, Pending)
        .with_observation(Observation {
            observed_at_unix: NOW - 10,
            stable_observation_count: 1,
            ..Observation::NONE
        })
        .unwrap();
    let state = state_of(vec![rec(1, Active), pending]);
    let plan = report(&with_checkpoint(&state), Ok(&metadata(2)));
    assert!(!plan.failed(), "{plan:?}");
    assert_eq!(plan.rotation_state.0, RotationState::Pending);
    assert_eq!(plan.pending_transit_version, Some(2));
    assert_eq!(plan.pending_key_id_hash, Some(digest_of(2)));
    assert_eq!(plan.pending_stable_observation_count, Some(1));
    assert_eq!(plan.pending_stable_since, None);
    assert_eq!(
        plan.pending_promotion.as_deref(),
        Some(
            "after 1 more consecutive observation(s) by a running provider (1/2), then 2s of \
             continuous observation"
        )
    );
    assert_eq!(json(&plan)["rotationState"], "pending");
}

#[test]
fn a_stable_candidate_reports_when_it_became_stable_and_never_a_promotion_timestamp() {
    let pending = rec(2, Pending)
        .with_observation(Observation {
            observed_at_unix: 1_715_803_190,
            stable_observation_count: 2,
            stable_at_unix: 1_715_803_200,
            promoted_at_unix: 0,
        })
        .unwrap();
    let state = state_of(vec![rec(1, Active), pending]);
    let plan = report(&with_checkpoint(&state), Ok(&metadata(2)));
    assert_eq!(plan.pending_stable_observation_count, Some(2));
    assert_eq!(
        plan.pending_stable_since.as_deref(),
        Some("2024-05-15T20:00:00Z")
    );
    assert_eq!(
        plan.pending_promotion.as_deref(),
        Some("after 2s of continuous observation by a running provider")
    );
    let value = json(&plan);
    assert!(value.get("pendingPromotesAfter").is_none(), "{value}");
    assert_eq!(value["pendingStableSince"], "2024-05-15T20:00:00Z");
}

#[test]
fn a_rotation_no_provider_has_recorded_yet_is_pending_with_count_zero() {
    let state = state_of(vec![rec(1, Active)]);
    let plan = report(&with_checkpoint(&state), Ok(&metadata(2)));
    assert!(!plan.failed(), "{plan:?}");
    assert_eq!(plan.rotation_state.0, RotationState::Pending);
    assert_eq!(plan.pending_transit_version, Some(2));
    assert_eq!(plan.pending_key_id_hash, Some(digest_of(2)));
    assert_eq!(plan.pending_stable_observation_count, Some(0));
    assert!(
        plan.pending_promotion
            .as_deref()
            .unwrap()
            .starts_with("not yet recorded")
    );
}

#[test]
fn an_unrotated_registry_is_active_with_full_confidence() {
    let state = retired_three();
    let plan = report(&with_checkpoint(&state), Ok(&metadata(3)));
    assert!(!plan.failed(), "{plan:?}");
    assert!(plan.state_loaded);
    assert_eq!(plan.rotation_state.0, RotationState::Active);
    assert_eq!(plan.active_transit_version, Some(3));
    assert_eq!(
        plan.state_hash.as_deref(),
        Some(state.current_hash().as_str())
    );
    assert_eq!(plan.state_generation, Some(1));
    assert_eq!(plan.confidence, Confidence::Full);
    assert_eq!(plan.limitations, None);
    assert_eq!(plan.pending_transit_version, None);
}

#[test]
fn checkpoint_statuses_are_current_behind_missing_and_absent() {
    let state = retired_three();
    let next = state
        .successor(state.active_key_id().clone(), state.records().to_vec())
        .unwrap();
    let cases = [
        (with_checkpoint(&state), CheckpointState::Current, true),
        (
            stored(Some(&next), Some(&Checkpoint::for_state(&state))),
            CheckpointState::Behind,
            true,
        ),
        (stored(Some(&state), None), CheckpointState::Missing, false),
    ];
    for (files, expected, checkpoint_loaded) in cases {
        let plan = report(&files, Ok(&metadata(3)));
        assert!(!plan.failed(), "{expected:?}: {plan:?}");
        assert!(plan.state_loaded);
        assert_eq!(plan.state_checkpoint_status, Some(expected));
        assert_eq!(plan.state_checkpoint_loaded, checkpoint_loaded);
    }
    let behind = report(
        &stored(Some(&next), Some(&Checkpoint::for_state(&state))),
        Ok(&metadata(3)),
    );
    assert_eq!(behind.state_generation, Some(2));
    assert_eq!(behind.state_checkpoint_generation, Some(1));
    assert_eq!(
        json(&behind)["stateCheckpointStatus"],
        serde_json::json!("behind")
    );
    let absent = report(&StoredState::default(), Ok(&metadata(1)));
    assert_eq!(
        absent.state_checkpoint_status,
        Some(CheckpointState::Absent)
    );
}

#[test]
fn a_checkpoint_without_its_state_fails_closed() {
    let state = retired_three();
    let plan = report(
        &stored(None, Some(&Checkpoint::for_state(&state))),
        Ok(&metadata(1)),
    );
    assert!(plan.failed());
    assert!(!plan.state_loaded);
    assert!(plan.state_checkpoint_loaded);
    assert_eq!(
        plan.state_checkpoint_status,
        Some(CheckpointState::Rejected)
    );
    assert_eq!(
        plan.state_error.as_deref(),
        Some("registry state rollback detected: a checkpoint exists but the state is missing")
    );
    // Never bootstrap over a lost state, even for an unrotated key.
    assert_eq!(plan.state_bootstrap_eligible, Some(false));
    assert_eq!(plan.active_key_id_hash, None);
}

#[test]
fn a_rolled_back_state_or_a_foreign_state_fails_closed() {
    let state = retired_three();
    let next = state
        .successor(state.active_key_id().clone(), state.records().to_vec())
        .unwrap();
    let rollback = report(
        &stored(Some(&state), Some(&Checkpoint::for_state(&next))),
        Ok(&metadata(3)),
    );
    assert!(rollback.failed());
    assert!(!rollback.state_loaded);
    assert!(
        rollback
            .state_error
            .as_deref()
            .unwrap()
            .contains("rollback"),
        "{rollback:?}"
    );
    let other = IdentityScope::new(IdentityValues {
        cluster_id: "workload-b".into(),
        provider_name: "openbao-kms-workload-a".into(),
        openbao_instance_id: "bao-prod-a".into(),
        openbao_namespace: String::new(),
        transit_mount_id: "transit-prod-primary".into(),
        key_lineage_id: "01HXEXAMPLEKEYLINEAGEID".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "kms-key".into(),
    })
    .unwrap();
    let files = with_checkpoint(&state);
    let foreign = rotation_plan(
        &PlanInput {
            local: Ok(&files),
            metadata: Ok(&metadata(3)),
            scope: &other,
            policy: POLICY,
            activation_delay: DELAY,
            now_unix: NOW,
        },
        false,
    );
    assert!(foreign.failed());
    assert_eq!(
        foreign.state_error.as_deref(),
        Some(
            "registry state does not belong to this configuration: a record's clusterId does not match the configuration"
        )
    );
}

#[test]
fn unreadable_or_corrupt_files_fail_with_the_reason() {
    let scope = scope();
    let unreadable = rotation_plan(
        &PlanInput {
            local: Err("/var/lib/x/key-registry.json has mode 0666"),
            metadata: Ok(&metadata(3)),
            scope: &scope,
            policy: POLICY,
            activation_delay: DELAY,
            now_unix: NOW,
        },
        false,
    );
    assert!(unreadable.failed());
    assert_eq!(unreadable.state_checkpoint_status, None);
    assert_eq!(
        unreadable.state_error.as_deref(),
        Some("registry files could not be read: /var/lib/x/key-registry.json has mode 0666")
    );
    let corrupt = StoredState {
        state: Some(b"{}".to_vec()),
        checkpoint: None,
    };
    let plan = report(&corrupt, Ok(&metadata(3)));
    assert!(plan.failed());
    assert_eq!(
        plan.state_checkpoint_status,
        Some(CheckpointState::Rejected)
    );
    assert!(
        plan.state_error
            .unwrap()
            .starts_with("registry state is malformed")
    );
}

#[test]
fn a_metadata_failure_fails_but_keeps_every_local_field() {
    let state = retired_three();
    let plan = report(&with_checkpoint(&state), Err(FailureClass::Sealed));
    assert!(plan.failed());
    assert_eq!(plan.transit_metadata_status, CheckResult::Fail);
    assert_eq!(
        plan.transit_metadata_error.as_deref(),
        Some("Transit key metadata could not be read: sealed")
    );
    assert!(plan.state_loaded);
    assert_eq!(plan.state_generation, Some(1));
    assert_eq!(
        plan.state_hash.as_deref(),
        Some(state.current_hash().as_str())
    );
    assert_eq!(plan.state_checkpoint_status, Some(CheckpointState::Current));
    assert_eq!(plan.active_transit_version, Some(3));
    assert_eq!(plan.active_key_id_hash, Some(digest_of(3)));
    assert_eq!(plan.rotation_state.0, RotationState::Active);
    assert_eq!(plan.latest_transit_version, None);
    assert_eq!(plan.confidence, Confidence::Limited);
    let value = json(&plan);
    assert_eq!(value["transitMetadataStatus"], "fail");
    assert!(value.get("latestTransitVersion").is_none());
}

#[test]
fn verify_rotation_has_limited_confidence_and_says_what_it_cannot_prove() {
    let state = retired_three();
    let files = with_checkpoint(&state);
    let scope = scope();
    let plan = rotation_plan(
        &PlanInput {
            local: Ok(&files),
            metadata: Ok(&metadata(3)),
            scope: &scope,
            policy: POLICY,
            activation_delay: DELAY,
            now_unix: NOW,
        },
        true,
    );
    assert!(!plan.failed());
    assert_eq!(plan.name, "verify-rotation");
    assert_eq!(plan.confidence, Confidence::Limited);
    assert_eq!(
        plan.limitations.as_deref(),
        Some(
            "local registry and Transit metadata cannot prove every Kubernetes object or \
             retained backup has been rewritten"
        )
    );
    assert_eq!(plan.limitations.as_deref(), Some(VERIFY_LIMITATIONS));
    let value = json(&plan);
    assert_eq!(value["confidence"], "limited");
    assert_eq!(value["name"], "verify-rotation");
}

#[test]
fn retained_versions_blocked_by_transit_minimums_are_blockers_that_never_suggest_raising_them() {
    let state = retired_three();
    let mut blocked = metadata(3);
    blocked.min_decryption_version = 3;
    let plan = report(&with_checkpoint(&state), Ok(&blocked));
    assert!(plan.failed());
    let versions: Vec<_> = plan
        .blockers
        .iter()
        .map(|blocker| (blocker.reason, blocker.transit_version))
        .collect();
    assert_eq!(
        versions,
        [
            ("decryption_blocked", Some(2)),
            ("decryption_blocked", Some(1))
        ]
    );
    assert_eq!(plan.blockers[1].key_id_hash, Some(digest_of(1)));
    for blocker in &plan.blockers {
        assert!(
            blocker.message.contains("min_decryption_version=3"),
            "{blocker:?}"
        );
        assert!(!blocker.message.contains("raise"), "{blocker:?}");
        assert!(
            blocker
                .message
                .contains("retire-versions --before-version 3")
        );
    }
    let value = json(&plan);
    assert_eq!(value["blockers"][0]["transitVersion"], 2);
    assert_eq!(value["blockers"][0]["reason"], "decryption_blocked");

    let mut trimmed = metadata(3);
    trimmed.min_available_version = 2;
    trimmed.versions.remove(&1);
    let plan = report(&with_checkpoint(&state), Ok(&trimmed));
    assert_eq!(plan.blockers.len(), 1);
    assert_eq!(plan.blockers[0].transit_version, Some(1));
    assert!(plan.blockers[0].message.contains("min_available_version=2"));
}

#[test]
fn an_active_version_blocked_for_encryption_and_a_changed_creation_time_are_blockers() {
    let state = retired_three();
    let mut restricted = metadata(3);
    restricted.min_encryption_version = 4;
    restricted.latest_version = 4;
    restricted.versions.insert(4, created(4));
    let plan = report(&with_checkpoint(&state), Ok(&restricted));
    assert!(plan.failed());
    assert_eq!(plan.blockers.len(), 1);
    assert_eq!(plan.blockers[0].reason, "encryption_blocked");
    assert_eq!(plan.blockers[0].transit_version, Some(3));
    assert_eq!(plan.rotation_state.0, RotationState::Pending);

    let mut replaced = metadata(3);
    replaced.versions.insert(2, created(2) + 1);
    let plan = report(&with_checkpoint(&state), Ok(&replaced));
    assert!(plan.failed());
    assert_eq!(plan.blockers[0].reason, "profile_invalid");
    assert!(plan.blockers[0].message.contains("creation time"));

    let mut rolled_back = metadata(2);
    rolled_back.versions.insert(3, created(3));
    let plan = report(&with_checkpoint(&state), Ok(&rolled_back));
    assert_eq!(plan.blockers[0].reason, "version_rollback");
}

// ---------------------------------------------------------------------------------------------
// retire-versions and restore-versions

fn operator(
    files: &StoredState,
    metadata: Result<&KeyMetadata, FailureClass>,
    request: OperatorRequest<'_>,
) -> Result<OperatorPlan, OperatorRefusal> {
    let scope = scope();
    operator_plan(
        &OperatorInput {
            local: Ok(files),
            metadata,
            scope: &scope,
            policy: POLICY,
            now_unix: NOW,
        },
        request,
    )
}

#[test]
fn a_retirement_plan_names_the_removed_versions_and_the_next_state() {
    let state = retired_three();
    let files = with_checkpoint(&state);
    let plan = operator(
        &files,
        Ok(&metadata(3)),
        OperatorRequest::Retire { before: 3 },
    )
    .unwrap();
    assert!(!plan.failed(), "{plan:?}");
    assert!(!plan.applied);
    assert!(plan.changed);
    assert_eq!(plan.before_version, Some(3));
    assert_eq!(plan.state_hash, state.current_hash().as_str());
    assert_eq!(plan.next_generation, Some(2));
    let next = plan.next().unwrap();
    assert_eq!(
        plan.next_state_hash.as_deref(),
        Some(next.current_hash().as_str())
    );
    let removed: Vec<_> = plan
        .removed_versions
        .as_ref()
        .unwrap()
        .iter()
        .map(|entry| (entry.transit_version, entry.key_id_hash.clone()))
        .collect();
    assert_eq!(removed, [(2, digest_of(2)), (1, digest_of(1))]);
    assert!(plan.limitations.contains("first removed record"));
    let value = serde_json::to_value(&plan).unwrap();
    assert_eq!(value["removedVersions"][0]["transitVersion"], 2);
    assert_eq!(value["applied"], false);
    assert!(value.get("restoredVersions").is_none());

    // Applying needs the exact current hash; the written state decodes with the removals.
    let wrong = next.current_hash().clone();
    assert!(matches!(
        plan.authorize_apply(&wrong),
        Err(OperatorRefusal::Check(_))
    ));
    let writes = plan.authorize_apply(state.current_hash()).unwrap();
    assert_eq!(writes.len(), 1);
    let written = StateFile::decode(writes[0].state.as_bytes()).unwrap();
    assert_eq!(written.generation(), 2);
    assert_eq!(written.previous_hash(), Some(state.current_hash()));
    let states: Vec<_> = written
        .records()
        .iter()
        .map(|r| (r.version().get(), r.state()))
        .collect();
    assert_eq!(states, [(3, Active), (2, Removed), (1, Removed)]);
    let checkpoint = Checkpoint::decode(writes[0].checkpoint.as_bytes()).unwrap();
    assert_eq!(checkpoint, Checkpoint::for_state(&written));
}

#[test]
fn a_lagging_checkpoint_is_brought_up_to_date_before_the_change_is_written() {
    let state = retired_three();
    let files = stored(Some(&state), None);
    let plan = operator(
        &files,
        Ok(&metadata(3)),
        OperatorRequest::Retire { before: 2 },
    )
    .unwrap();
    assert_eq!(plan.state_checkpoint_status, CheckpointState::Missing);
    let writes = plan.authorize_apply(state.current_hash()).unwrap();
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0].state, state.encode());
    assert_eq!(writes[0].checkpoint, Checkpoint::for_state(&state).encode());
}

#[test]
fn retiring_versions_transit_already_blocks_is_allowed_but_keeping_them_is_blocked() {
    let state = retired_three();
    let files = with_checkpoint(&state);
    let mut blocked = metadata(3);
    blocked.min_decryption_version = 3;
    // Out-of-order recovery: OpenBao's minimum was raised first; removing both is the fix.
    let plan = operator(&files, Ok(&blocked), OperatorRequest::Retire { before: 3 }).unwrap();
    assert!(plan.blockers.is_empty(), "{plan:?}");
    // Removing only version 1 leaves version 2 decryptable but blocked by Transit.
    let partial = operator(&files, Ok(&blocked), OperatorRequest::Retire { before: 2 }).unwrap();
    assert!(partial.failed());
    assert_eq!(partial.blockers[0].transit_version, Some(2));
    assert!(matches!(
        partial.authorize_apply(state.current_hash()),
        Err(OperatorRefusal::Check(_))
    ));
    // Transit behind the local active version blocks too.
    let mut behind = metadata(2);
    behind.versions.insert(3, created(3));
    let rolled = operator(&files, Ok(&behind), OperatorRequest::Retire { before: 3 }).unwrap();
    assert_eq!(rolled.blockers[0].reason, "version_rollback");
    // And so does unreadable metadata.
    let unread = operator(
        &files,
        Err(FailureClass::PermissionDenied),
        OperatorRequest::Retire { before: 3 },
    )
    .unwrap();
    assert_eq!(unread.transit_metadata_status, CheckResult::Fail);
    assert_eq!(unread.blockers[0].reason, "metadata_read_failed");
}

#[test]
fn repeating_a_retirement_changes_nothing_and_writes_nothing() {
    let state = state_of(vec![rec(3, Active), rec(2, Removed), rec(1, Removed)]);
    let files = with_checkpoint(&state);
    let plan = operator(
        &files,
        Ok(&metadata(3)),
        OperatorRequest::Retire { before: 3 },
    )
    .unwrap();
    assert!(!plan.changed);
    assert_eq!(plan.next_state_hash, None);
    assert_eq!(plan.removed_versions.as_deref(), Some(&[][..]));
    assert_eq!(plan.authorize_apply(state.current_hash()).unwrap(), []);
}

#[test]
fn bad_boundaries_and_version_lists_are_usage_errors_and_registry_mismatches_are_check_failures() {
    let state = retired_three();
    let files = with_checkpoint(&state);
    let meta = metadata(3);
    let usage = |request| {
        matches!(
            operator(&files, Ok(&meta), request),
            Err(OperatorRefusal::Usage(_))
        )
    };
    let check = |request| {
        matches!(
            operator(&files, Ok(&meta), request),
            Err(OperatorRefusal::Check(_))
        )
    };
    assert!(usage(OperatorRequest::Retire { before: 1 }));
    assert!(usage(OperatorRequest::Retire { before: 0 }));
    assert!(usage(OperatorRequest::Retire { before: 4 }));
    assert!(usage(OperatorRequest::Restore { versions: &[] }));
    assert!(usage(OperatorRequest::Restore { versions: &[0] }));
    assert!(usage(OperatorRequest::Restore { versions: &[1, 1] }));
    assert!(usage(OperatorRequest::Restore { versions: &[3] }));
    assert!(check(OperatorRequest::Restore { versions: &[1] }));
    assert!(matches!(
        operator(
            &StoredState::default(),
            Ok(&meta),
            OperatorRequest::Retire { before: 2 }
        ),
        Err(OperatorRefusal::Check(_))
    ));
    assert!(matches!(
        bao_kms_core::plan::check_expected_hash_flag(None),
        Err(OperatorRefusal::Usage(_))
    ));
    assert!(matches!(
        bao_kms_core::plan::check_expected_hash_flag(Some("krs1.nope")),
        Err(OperatorRefusal::Usage(_))
    ));
}

#[test]
fn a_restore_makes_removed_versions_retired_unless_transit_blocks_them() {
    let state = state_of(vec![rec(3, Active), rec(2, Removed), rec(1, Removed)]);
    let files = with_checkpoint(&state);
    let plan = operator(
        &files,
        Ok(&metadata(3)),
        OperatorRequest::Restore { versions: &[1, 2] },
    )
    .unwrap();
    assert!(!plan.failed(), "{plan:?}");
    assert_eq!(plan.operation, "restore");
    let restored: Vec<_> = plan
        .restored_versions
        .as_ref()
        .unwrap()
        .iter()
        .map(|entry| entry.transit_version)
        .collect();
    assert_eq!(restored, [2, 1]);
    let writes = plan.authorize_apply(state.current_hash()).unwrap();
    let written = StateFile::decode(writes[0].state.as_bytes()).unwrap();
    assert!(
        written
            .records()
            .iter()
            .filter(|r| r.version().get() < 3)
            .all(|r| r.state() == Retired)
    );
    let mut blocked = metadata(3);
    blocked.min_decryption_version = 2;
    let plan = operator(
        &files,
        Ok(&blocked),
        OperatorRequest::Restore { versions: &[1] },
    )
    .unwrap();
    assert!(plan.failed());
    assert_eq!(plan.blockers[0].transit_version, Some(1));
}
