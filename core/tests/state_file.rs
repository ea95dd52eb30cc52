//! Wire-format-v1 registry state and checkpoint: golden bytes, strict decoding, the hash chain,
//! the checkpoint rules, allowed transitions and the operator retire/restore requests.
//!
//! The fixtures in `fixtures/` are written by `fixtures/generate.py`, an encoder independent of
//! the code under test (Python's json module plus Go's HTML-safe escapes), so matching them
//! byte for byte checks the Go layout, the escaping, the key_id derivation and the hash.

#![allow(clippy::unwrap_used)]

use bao_kms_core::registry::operator::{restore_versions, retire_versions};
use bao_kms_core::registry::transition::{
    check_operator_restore, check_operator_retirement, check_progress,
};
use bao_kms_core::registry::{
    Checkpoint, CheckpointStatus, Document, LoadVerdict, Observation, SnapshotState, StateError,
    StateFile, StateHash, StateRecord, admit_loaded,
};
use bao_kms_core::{IdentityScope, IdentityValues, KeyId, KeyVersion};
use proptest::prelude::*;
use serde_json::{Value, json};

use SnapshotState::{Active, Pending, Rejected, Removed, Retired};

const ONE_RECORD: &[u8] = include_bytes!("fixtures/golden-one-record.json");
const THREE_RECORDS: &[u8] = include_bytes!("fixtures/golden-three-records.json");
const THREE_RECORDS_CHECKPOINT: &[u8] =
    include_bytes!("fixtures/golden-three-records.json.checkpoint");
const ESCAPING: &[u8] = include_bytes!("fixtures/namespaced-escaping.json");

fn golden_values() -> IdentityValues {
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

fn golden() -> IdentityScope {
    IdentityScope::new(golden_values()).unwrap()
}

fn version(value: u64) -> KeyVersion {
    KeyVersion::new(value).unwrap()
}

/// Creation times: v3 is the golden vector's, v1 and v2 were picked for these fixtures.
fn created(value: u64) -> i64 {
    match value {
        1 => 1_714_000_000,
        2 => 1_715_000_000,
        other => 1_715_803_200 + (i64::try_from(other).unwrap() - 3) * 86_400,
    }
}

fn rec(value: u64, state: SnapshotState) -> StateRecord {
    StateRecord::new(
        golden().key_scope().clone(),
        version(value),
        created(value),
        state,
    )
    .unwrap()
}

fn active_of(records: &[StateRecord]) -> KeyId {
    records
        .iter()
        .find(|r| r.state() == Active)
        .unwrap()
        .key_id()
        .clone()
}

fn bootstrap(records: &[(u64, SnapshotState)]) -> StateFile {
    let records: Vec<_> = records.iter().map(|&(v, state)| rec(v, state)).collect();
    StateFile::build(
        golden().fingerprint(),
        1,
        None,
        active_of(&records),
        records,
    )
    .unwrap()
}

fn successor(previous: &StateFile, records: Vec<StateRecord>) -> StateFile {
    previous.successor(active_of(&records), records).unwrap()
}

fn retired_pair() -> StateFile {
    bootstrap(&[(3, Active), (2, Retired), (1, Retired)])
}

fn decode_value(value: &Value) -> Result<StateFile, StateError> {
    StateFile::decode(serde_json::to_string_pretty(value).unwrap().as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Golden bytes

#[test]
fn a_one_record_state_is_written_in_the_exact_go_layout() {
    let expected = r#"{
  "schemaVersion": "keyregistry.openbao-kms/v1alpha2",
  "identityFingerprint": "cfg1.JQZfWN7cy6_RPBXDJpjDyk63ryppOgdSnYqbnHwAMPQ",
  "generation": 1,
  "currentHash": "krs1.BgikAtelOuFJ2TWUCrLfgT3pGtpWf_ubldAD5ElbAhE",
  "activeKeyId": "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
  "snapshots": [
    {
      "providerName": "openbao-kms-workload-a",
      "clusterId": "workload-a",
      "openbaoInstanceId": "bao-prod-a",
      "transitMountId": "transit-prod-primary",
      "transitKeyLineageId": "01HXEXAMPLEKEYLINEAGEID",
      "transitVersion": 3,
      "transitVersionCreatedAtUnix": 1715803200,
      "kubernetesKeyId": "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
      "state": "active",
      "aadMode": "aad.required",
      "promotedAtUnix": 1715803260
    }
  ]
}
"#;
    let active = rec(3, Active)
        .with_observation(Observation {
            promoted_at_unix: 1_715_803_260,
            ..Observation::NONE
        })
        .unwrap();
    let state = StateFile::build(
        golden().fingerprint(),
        1,
        None,
        active.key_id().clone(),
        vec![active],
    )
    .unwrap();
    assert_eq!(state.encode(), expected);
    assert_eq!(expected.as_bytes(), ONE_RECORD);
    assert_eq!(StateFile::decode(expected.as_bytes()).unwrap(), state);
}

#[test]
fn golden_key_ids_of_all_three_versions_are_pinned() {
    let ids: Vec<_> = (1..=3)
        .map(|v| rec(v, Retired).key_id().as_str().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "obk2.qoH4PrMNhl0N-_dF8L7LYxJ2UcT-k1EodXCxqMwVQ1M",
            "obk2.6GMkKK_RJWeVY2y-QX99Pra9mk_YMYEAQAawarpMsUI",
            "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk",
        ]
    );
}

#[test]
fn a_chained_three_record_state_matches_the_independent_encoder() {
    let previous = StateFile::decode(ONE_RECORD).unwrap();
    let observe = |r: StateRecord, observation| r.with_observation(observation).unwrap();
    let promoted = |at| Observation {
        promoted_at_unix: at,
        ..Observation::NONE
    };
    // Given out of order on purpose: build must sort them the way Go does.
    let records = vec![
        observe(rec(1, Retired), promoted(1_714_000_100)),
        observe(
            rec(3, Active),
            Observation {
                observed_at_unix: 1_715_803_260,
                stable_observation_count: 3,
                stable_at_unix: 1_715_803_500,
                promoted_at_unix: 1_715_804_000,
            },
        ),
        observe(rec(2, Retired), promoted(1_715_000_100)),
    ];
    let state = StateFile::build(
        golden().fingerprint(),
        7,
        Some(previous.current_hash().clone()),
        active_of(&records),
        records,
    )
    .unwrap();
    assert_eq!(state.encode().as_bytes(), THREE_RECORDS);
    assert_eq!(StateFile::decode(THREE_RECORDS).unwrap(), state);
    state.check_scope(&golden()).unwrap();
}

#[test]
fn go_escaped_identity_values_and_a_namespace_match_the_independent_encoder() {
    let scope = IdentityScope::new(IdentityValues {
        provider_name: "kms <a&b> \"q\" \\ é\u{2028}x\u{2029}☃".into(),
        cluster_id: "c&d".into(),
        openbao_instance_id: "bao>1".into(),
        openbao_namespace: "team-a/prod<1>".into(),
        transit_mount_id: "mount \"m\"".into(),
        key_lineage_id: "lineage\\01".into(),
        transit_mount_path: "transit".into(),
        transit_key_name: "kms-key".into(),
    })
    .unwrap();
    let state = StateFile::decode(ESCAPING).unwrap();
    state.check_scope(&scope).unwrap();
    assert_eq!(state.encode().as_bytes(), ESCAPING);
    let states: Vec<_> = state.records().iter().map(StateRecord::state).collect();
    assert_eq!(states, [Active, Pending, Removed]);
}

#[test]
fn the_checkpoint_fixture_round_trips_and_vouches_for_its_state() {
    let checkpoint = Checkpoint::decode(THREE_RECORDS_CHECKPOINT).unwrap();
    let state = StateFile::decode(THREE_RECORDS).unwrap();
    assert_eq!(Checkpoint::for_state(&state), checkpoint);
    assert_eq!(checkpoint.encode().as_bytes(), THREE_RECORDS_CHECKPOINT);
    assert_eq!(checkpoint.admit(&state), Ok(CheckpointStatus::Current));
}

// ---------------------------------------------------------------------------------------------
// Strict decoding

#[test]
fn the_v1alpha1_schema_is_refused_with_its_own_message() {
    let text = std::str::from_utf8(ONE_RECORD)
        .unwrap()
        .replace("v1alpha2", "v1alpha1");
    let error = StateFile::decode(text.as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unsupported registry schema v1alpha1; this release requires fresh bound state (v1alpha2)"
    );
}

#[test]
fn unknown_fields_are_refused_at_the_top_and_in_records() {
    let mut top: Value = serde_json::from_slice(ONE_RECORD).unwrap();
    top["comment"] = json!("hand edited");
    let mut inner: Value = serde_json::from_slice(ONE_RECORD).unwrap();
    inner["snapshots"][0]["note"] = json!(1);
    for value in [top, inner] {
        assert!(matches!(
            decode_value(&value),
            Err(StateError::Malformed { .. })
        ));
    }
}

#[test]
fn trailing_content_is_refused() {
    let mut bytes = ONE_RECORD.to_vec();
    bytes.extend_from_slice(b"{}\n");
    let error = StateFile::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            error,
            StateError::Malformed {
                document: Document::State,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_duplicate_key_id_is_refused() {
    let mut value: Value = serde_json::from_slice(THREE_RECORDS).unwrap();
    value["snapshots"][2] = value["snapshots"][1].clone();
    assert_eq!(
        decode_value(&value),
        Err(StateError::Corrupt(
            "two snapshots share one kubernetesKeyId"
        ))
    );
}

#[test]
fn a_record_whose_key_id_does_not_re_derive_is_refused() {
    let mut value: Value = serde_json::from_slice(THREE_RECORDS).unwrap();
    value["snapshots"][1]["transitVersionCreatedAtUnix"] = json!(1_715_000_001);
    let error = decode_value(&value).unwrap_err();
    assert_eq!(
        error,
        StateError::CorruptRecord {
            index: 1,
            field: "kubernetesKeyId",
            reason: "key_id does not match its record"
        }
    );
    assert!(!error.to_string().contains("workload-a"));
}

#[test]
fn negative_fractional_and_oversized_numbers_are_refused() {
    let edits: [(&str, Value); 4] = [
        ("generation", json!(-1)),
        ("generation", json!(1.0)),
        ("transitVersion", json!(3.5)),
        ("transitVersion", json!(u64::MAX)),
    ];
    for (field, number) in edits {
        let mut value: Value = serde_json::from_slice(ONE_RECORD).unwrap();
        if field == "generation" {
            value[field] = number;
        } else {
            value["snapshots"][0][field] = number;
        }
        assert!(decode_value(&value).is_err(), "{field}");
    }
}

#[test]
fn an_explicit_zero_where_go_omits_the_field_is_not_canonical() {
    let text = std::str::from_utf8(ONE_RECORD).unwrap().replace(
        "\"aadMode\": \"aad.required\",\n",
        "\"aadMode\": \"aad.required\",\n      \"observedAtUnix\": 0,\n",
    );
    assert_eq!(
        StateFile::decode(text.as_bytes()),
        Err(StateError::NotCanonical(Document::State))
    );
}

#[test]
fn the_same_content_laid_out_differently_is_not_canonical() {
    let text = std::str::from_utf8(ONE_RECORD).unwrap();
    let compact: String = text
        .lines()
        .map(str::trim_start)
        .collect::<String>()
        .replace("\": ", "\":");
    let tabs = text.replace("  ", "\t");
    for other in [compact, tabs, text.trim_end().to_owned()] {
        assert_eq!(
            StateFile::decode(other.as_bytes()),
            Err(StateError::NotCanonical(Document::State))
        );
    }
}

#[test]
fn records_out_of_canonical_order_and_changed_content_are_refused() {
    let mut swapped: Value = serde_json::from_slice(THREE_RECORDS).unwrap();
    let snapshots = swapped["snapshots"].as_array_mut().unwrap();
    snapshots.swap(1, 2);
    assert_eq!(
        decode_value(&swapped),
        Err(StateError::Corrupt("snapshots are not in canonical order"))
    );
    let edited = std::str::from_utf8(THREE_RECORDS)
        .unwrap()
        .replace("1714000100", "1714000101");
    assert_eq!(
        StateFile::decode(edited.as_bytes()),
        Err(StateError::Corrupt(
            "currentHash does not match the content"
        ))
    );
}

#[test]
fn scope_mismatches_name_the_field_but_never_the_value() {
    let state = retired_pair();
    let mut other_cluster = golden_values();
    other_cluster.cluster_id = "workload-b".into();
    let error = state
        .check_scope(&IdentityScope::new(other_cluster).unwrap())
        .unwrap_err();
    assert_eq!(
        error,
        StateError::ScopeMismatch("a record's clusterId does not match the configuration")
    );
    assert!(!error.to_string().contains("workload"));
    let mut other_key = golden_values();
    other_key.transit_key_name = "other-key".into();
    assert_eq!(
        state.check_scope(&IdentityScope::new(other_key).unwrap()),
        Err(StateError::ScopeMismatch(
            "state identity fingerprint does not match the configuration"
        ))
    );
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

#[test]
fn a_state_one_generation_ahead_that_chains_onto_the_checkpoint_is_behind() {
    let first = retired_pair();
    let second = successor(&first, first.records().to_vec());
    let checkpoint = Checkpoint::for_state(&first);
    assert_eq!(checkpoint.admit(&second), Ok(CheckpointStatus::Behind));
    assert_eq!(
        admit_loaded(Some(&second), Some(&checkpoint)),
        Ok(LoadVerdict::CheckpointBehind)
    );
    assert_eq!(
        admit_loaded(Some(&first), Some(&checkpoint)),
        Ok(LoadVerdict::Current)
    );
}

#[test]
fn older_skipped_forked_and_unchained_states_are_rollbacks() {
    let first = retired_pair();
    let second = successor(&first, first.records().to_vec());
    let third = successor(&second, second.records().to_vec());
    let fork = bootstrap(&[(3, Active), (2, Retired)]);
    let unchained = StateFile::build(
        golden().fingerprint(),
        2,
        Some(fork.current_hash().clone()),
        first.active_key_id().clone(),
        first.records().to_vec(),
    )
    .unwrap();
    let cases = [
        (
            Checkpoint::for_state(&second),
            &first,
            "state is older than its checkpoint",
        ),
        (
            Checkpoint::for_state(&first),
            &third,
            "state skips generations past its checkpoint",
        ),
        (
            Checkpoint::for_state(&first),
            &fork,
            "state and checkpoint have the same generation but different hashes",
        ),
        (
            Checkpoint::for_state(&first),
            &unchained,
            "state does not chain onto its checkpoint",
        ),
    ];
    for (checkpoint, state, reason) in cases {
        assert_eq!(checkpoint.admit(state), Err(StateError::Rollback(reason)));
        assert_eq!(
            admit_loaded(Some(state), Some(&checkpoint)),
            Err(StateError::Rollback(reason))
        );
    }
}

#[test]
fn a_checkpoint_without_a_state_fails_closed_and_a_lone_state_is_accepted() {
    let state = retired_pair();
    let checkpoint = Checkpoint::for_state(&state);
    assert!(matches!(
        admit_loaded(None, Some(&checkpoint)),
        Err(StateError::Rollback(_))
    ));
    assert_eq!(
        admit_loaded(Some(&state), None),
        Ok(LoadVerdict::CheckpointMissing)
    );
    assert_eq!(admit_loaded(None, None), Ok(LoadVerdict::Fresh));
}

// ---------------------------------------------------------------------------------------------
// Transitions

#[test]
fn observing_then_promoting_a_pending_version_is_accepted() {
    let first = retired_pair();
    let candidate = rec(4, Pending)
        .with_observation(Observation {
            observed_at_unix: 100,
            stable_observation_count: 1,
            ..Observation::NONE
        })
        .unwrap();
    let mut observed = first.records().to_vec();
    observed.push(candidate);
    let second = successor(&first, observed);
    check_progress(&first, &second).unwrap();
    let promoted: Vec<_> = second
        .records()
        .iter()
        .map(|r| match r.state() {
            Active => r.clone().with_state(Retired),
            Pending => r.clone().with_state(Active),
            Retired | Rejected | Removed => r.clone(),
        })
        .collect();
    let third = successor(&second, promoted);
    check_progress(&second, &third).unwrap();
    assert_eq!(third.active().version(), version(4));
}

#[test]
fn a_decreasing_active_version_is_refused() {
    let previous = bootstrap(&[(4, Active), (3, Retired)]);
    let next = successor(&previous, vec![rec(4, Retired), rec(3, Active)]);
    assert_eq!(
        check_progress(&previous, &next),
        Err(StateError::InvalidTransition(
            "the active version decreased"
        ))
    );
}

#[test]
fn a_dropped_retired_record_is_refused() {
    let previous = retired_pair();
    let next = successor(&previous, vec![rec(3, Active), rec(2, Retired)]);
    assert_eq!(
        check_progress(&previous, &next),
        Err(StateError::InvalidTransition("a record was dropped"))
    );
}

#[test]
fn a_generation_jump_or_a_broken_chain_is_refused() {
    let previous = retired_pair();
    let records = previous.records().to_vec();
    let jump = StateFile::build(
        golden().fingerprint(),
        3,
        Some(previous.current_hash().clone()),
        active_of(&records),
        records.clone(),
    )
    .unwrap();
    assert_eq!(
        check_progress(&previous, &jump),
        Err(StateError::InvalidTransition(
            "generation must advance by exactly one"
        ))
    );
    let unchained = StateFile::build(
        golden().fingerprint(),
        2,
        None,
        active_of(&records),
        records,
    )
    .unwrap();
    assert_eq!(
        check_progress(&previous, &unchained),
        Err(StateError::InvalidTransition(
            "previousHash does not name the previous state"
        ))
    );
}

#[test]
fn a_removed_record_never_changes_on_the_normal_path() {
    let previous = bootstrap(&[(3, Active), (2, Retired), (1, Removed)]);
    let touched = rec(1, Removed)
        .with_observation(Observation {
            promoted_at_unix: 5,
            ..Observation::NONE
        })
        .unwrap();
    let modified = successor(&previous, vec![rec(3, Active), rec(2, Retired), touched]);
    let revived = successor(
        &previous,
        vec![rec(3, Active), rec(2, Retired), rec(1, Retired)],
    );
    for next in [modified, revived] {
        assert_eq!(
            check_progress(&previous, &next),
            Err(StateError::InvalidTransition(
                "rejected and removed records never change"
            ))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Operator retire and restore

#[test]
fn retiring_removes_retired_versions_below_the_boundary_only() {
    let previous = bootstrap(&[(3, Active), (4, Pending), (2, Retired), (1, Retired)]);
    let next = retire_versions(&previous, version(2)).unwrap().unwrap();
    assert_eq!(next.generation(), 2);
    assert_eq!(next.previous_hash(), Some(previous.current_hash()));
    let states: Vec<_> = next
        .records()
        .iter()
        .map(|r| (r.version().get(), r.state()))
        .collect();
    assert_eq!(
        states,
        [(3, Active), (4, Pending), (2, Retired), (1, Removed)]
    );
    check_operator_retirement(&previous, &next, version(2)).unwrap();
    // The normal path may never do what the operator just did.
    assert!(check_progress(&previous, &next).is_err());
    let all = retire_versions(&previous, version(3)).unwrap().unwrap();
    assert_eq!(
        all.records()
            .iter()
            .filter(|r| r.state() == Removed)
            .count(),
        2
    );
}

#[test]
fn a_retirement_that_changes_nothing_returns_none() {
    let previous = retired_pair();
    let once = retire_versions(&previous, version(3)).unwrap().unwrap();
    assert_eq!(retire_versions(&once, version(3)), Ok(None));
    assert_eq!(
        retire_versions(&bootstrap(&[(5, Active)]), version(5)),
        Ok(None)
    );
}

#[test]
fn retirement_boundaries_outside_two_to_the_active_version_are_refused() {
    let previous = retired_pair();
    for before in [1, 4] {
        let error = retire_versions(&previous, version(before)).unwrap_err();
        assert!(
            matches!(error, StateError::InvalidOperatorRequest { .. }),
            "{error}"
        );
    }
}

#[test]
fn restoring_makes_removed_versions_retired_again() {
    let previous = retire_versions(&retired_pair(), version(3))
        .unwrap()
        .unwrap();
    let next = restore_versions(&previous, &[version(1)]).unwrap();
    let states: Vec<_> = next
        .records()
        .iter()
        .map(|r| (r.version().get(), r.state()))
        .collect();
    assert_eq!(states, [(3, Active), (1, Retired), (2, Removed)]);
    check_operator_restore(&previous, &next).unwrap();
    assert!(check_progress(&previous, &next).is_err());
}

#[test]
fn restore_requests_for_unremoved_active_missing_or_repeated_versions_are_refused() {
    let previous = bootstrap(&[(3, Active), (2, Retired), (1, Removed)]);
    let cases: [(&[u64], &str); 6] = [
        (&[], "no versions to restore"),
        (&[2], "the version is not removed"),
        (
            &[3],
            "only versions below the active version can be restored",
        ),
        (
            &[4],
            "only versions below the active version can be restored",
        ),
        (&[1, 1], "the version is named twice"),
        (&[1, 2], "the version is not removed"),
    ];
    for (versions, reason) in cases {
        let versions: Vec<_> = versions.iter().copied().map(version).collect();
        match restore_versions(&previous, &versions) {
            Err(StateError::InvalidOperatorRequest { reason: got, .. }) => assert_eq!(got, reason),
            other => panic!("{versions:?}: {other:?}"),
        }
    }
    let sparse = bootstrap(&[(5, Active), (2, Removed)]);
    assert_eq!(
        restore_versions(&sparse, &[version(3)]),
        Err(StateError::InvalidOperatorRequest {
            version: Some(version(3)),
            reason: "the registry has no record of it"
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Identity labels: valid per `check_label`, full of characters Go escapes or that need care.
fn label() -> impl Strategy<Value = String> {
    let edge = prop::sample::select(vec![
        'a', 'Z', '7', '<', '>', '&', '"', '\\', 'é', '☃', '😀',
    ]);
    let inner = prop::sample::select(vec![
        'a', '<', '>', '&', '"', '\\', '\u{2028}', '\u{2029}', ' ', 'é', '/', '😀', '\'',
    ]);
    (edge.clone(), prop::collection::vec(inner, 0..6), edge).prop_map(|(first, middle, last)| {
        std::iter::once(first)
            .chain(middle)
            .chain(std::iter::once(last))
            .collect()
    })
}

fn namespace() -> impl Strategy<Value = String> {
    let segment = prop::collection::vec(
        prop::sample::select(vec!['a', 'b', '<', '>', '&', '"', '\\', 'é', '-']),
        1..4,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    prop::option::of(prop::collection::vec(segment, 1..3).prop_map(|s| s.join("/")))
        .prop_map(Option::unwrap_or_default)
}

fn observation() -> impl Strategy<Value = Observation> {
    (
        0_u8..6,
        1_i64..2_000_000_000,
        1_u32..10,
        0_i64..1_000,
        0_i64..1_000,
    )
        .prop_map(|(shape, at, count, stable_delay, promoted_delay)| {
            let observed = Observation {
                observed_at_unix: at,
                stable_observation_count: count,
                ..Observation::NONE
            };
            match shape {
                0 => Observation::NONE,
                1 => Observation {
                    observed_at_unix: at,
                    ..Observation::NONE
                },
                2 => observed,
                3 => Observation {
                    stable_at_unix: at + stable_delay,
                    ..observed
                },
                4 => Observation {
                    promoted_at_unix: at,
                    ..Observation::NONE
                },
                _ => Observation {
                    stable_at_unix: at + stable_delay,
                    promoted_at_unix: at + promoted_delay,
                    ..observed
                },
            }
        })
}

fn registry() -> impl Strategy<Value = StateFile> {
    let identity = (label(), label(), label(), namespace(), label(), label());
    let versions = prop::sample::subsequence((1_u64..=40).collect::<Vec<_>>(), 1..=6);
    let details = prop::collection::vec(
        (
            prop::sample::select(vec![Pending, Retired, Rejected, Removed]),
            1_i64..4_000_000_000,
            observation(),
        ),
        6,
    );
    let previous = prop::option::of(any::<[u8; 32]>());
    (
        identity,
        versions,
        details,
        any::<prop::sample::Index>(),
        1_u64..=u64::MAX,
        previous,
    )
        .prop_map(
            |(identity, versions, details, active, generation, previous)| {
                let (provider, cluster, instance, namespace, mount, lineage) = identity;
                let scope = IdentityScope::new(IdentityValues {
                    provider_name: provider,
                    cluster_id: cluster,
                    openbao_instance_id: instance,
                    openbao_namespace: namespace,
                    transit_mount_id: mount,
                    key_lineage_id: lineage,
                    transit_mount_path: "transit".into(),
                    transit_key_name: "kms-key".into(),
                })
                .unwrap();
                let active = active.index(versions.len());
                let records: Vec<_> = versions
                    .iter()
                    .zip(details)
                    .enumerate()
                    .map(|(index, (&v, (state, created, observation)))| {
                        let state = if index == active { Active } else { state };
                        StateRecord::new(scope.key_scope().clone(), version(v), created, state)
                            .unwrap()
                            .with_observation(observation)
                            .unwrap()
                    })
                    .collect();
                let previous = previous.map(|bytes| {
                    use base64::Engine as _;
                    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
                    StateHash::parse(&format!("krs1.{body}")).unwrap()
                });
                let active_key_id = records[active].key_id().clone();
                StateFile::build(
                    scope.fingerprint(),
                    generation,
                    previous,
                    active_key_id,
                    records,
                )
                .unwrap()
            },
        )
}

proptest! {
    #[test]
    fn every_valid_registry_survives_encode_decode_encode_unchanged(state in registry()) {
        let encoded = state.encode();
        let decoded = StateFile::decode(encoded.as_bytes()).unwrap();
        prop_assert_eq!(decoded.encode(), encoded);
        prop_assert_eq!(decoded, state);
    }

    #[test]
    fn changing_any_single_byte_of_a_valid_state_is_refused(
        state in registry(),
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let mut bytes = state.encode().into_bytes();
        let index = position.index(bytes.len());
        prop_assume!(bytes[index] != replacement);
        bytes[index] = replacement;
        prop_assert!(StateFile::decode(&bytes).is_err());
    }

    #[test]
    fn removing_any_single_byte_of_a_valid_state_is_refused(
        state in registry(),
        position in any::<prop::sample::Index>(),
    ) {
        let mut bytes = state.encode().into_bytes();
        bytes.remove(position.index(bytes.len()));
        prop_assert!(StateFile::decode(&bytes).is_err());
    }

    #[test]
    fn a_checkpoint_with_any_single_byte_changed_is_refused_or_names_another_state(
        state in registry(),
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let checkpoint = Checkpoint::for_state(&state);
        let mut bytes = checkpoint.encode().into_bytes();
        let index = position.index(bytes.len());
        prop_assume!(bytes[index] != replacement);
        bytes[index] = replacement;
        // A checkpoint has no hash of its own: an edit may still parse, but then it names a
        // different generation or hash and no longer vouches for the state.
        if let Ok(edited) = Checkpoint::decode(&bytes) {
            prop_assert!(edited != checkpoint);
        }
    }
}
