//! Scenarios of the provider core, driven through the deterministic simulation.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use bao_kms_core::annotations::TRANSIT_KEY_VERSION;
use bao_kms_core::health::NotReadyReason;
use bao_kms_core::provider::Event;
use bao_kms_core::{KmsRequest, KmsResponse, Plaintext, Refusal, SnapshotState};
use bao_kms_testkit::apiserver::{ApiServer, decrypt};
use bao_kms_testkit::sim::Sim;

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A single node started on a fresh key and allowed to settle.
fn started() -> Sim {
    let mut sim = Sim::new(1);
    sim.start(0).unwrap();
    sim.advance(seconds(1));
    sim
}

fn encrypt(sim: &mut Sim, node: usize) -> Result<KmsResponse, Refusal> {
    sim.call(
        node,
        KmsRequest::Encrypt {
            plaintext: Plaintext::new(vec![7; 32]),
        },
    )
}

fn active_version(sim: &Sim, node: usize) -> u32 {
    sim.provider(node).active_key().unwrap().1.get()
}

#[test]
fn first_start_on_an_unrotated_key_bootstraps_version_one_and_becomes_healthy() {
    let mut sim = started();
    let key_id = sim
        .status_key_id(0)
        .expect("healthy after bootstrap and deep probe");
    assert_eq!(active_version(&sim, 0), 1);
    let disk = sim.nodes[0].disk.state.clone().expect("state saved");
    assert!(String::from_utf8(disk).unwrap().contains(&key_id));
    assert!(sim.nodes[0].disk.checkpoint.is_some());
}

#[test]
fn first_start_on_a_rotated_key_is_refused_and_stays_unhealthy() {
    let mut sim = Sim::new(1);
    sim.transit.rotate(sim.wall_unix);
    sim.start(0).unwrap();
    sim.advance(seconds(30));
    assert_eq!(sim.status_key_id(0), None);
    assert!(
        sim.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::BootstrapRefused(_)))
    );
    assert!(sim.nodes[0].disk.state.is_none());
}

#[test]
fn a_rotation_is_promoted_only_after_the_stable_count_and_the_activation_delay() {
    let mut sim = started();
    let before = sim.status_key_id(0).unwrap();
    sim.transit.rotate(sim.wall_unix);
    // Probes run at t=2, 12, 22 (every 10 s): three observations make the candidate stable at
    // t=22; the 30 s activation delay starts once that is saved and ends at t=52.
    sim.advance(seconds(2));
    assert_eq!(sim.provider(0).pending_candidate().unwrap().1.get(), 2);
    assert_eq!(
        sim.provider(0).activation_deadline(),
        None,
        "one observation is not stable"
    );
    sim.advance(seconds(10));
    assert_eq!(
        sim.provider(0).activation_deadline(),
        None,
        "two observations are not stable"
    );
    sim.advance(seconds(10));
    assert!(
        sim.provider(0).activation_deadline().is_some(),
        "stable and saved: delay runs"
    );
    assert_eq!(sim.status_key_id(0).as_deref(), Some(before.as_str()));
    sim.advance(seconds(28));
    assert_eq!(
        sim.status_key_id(0).as_deref(),
        Some(before.as_str()),
        "delay not over"
    );
    sim.advance(seconds(2));
    let after = sim.status_key_id(0).unwrap();
    assert_ne!(after, before);
    assert_eq!(active_version(&sim, 0), 2);
    assert!(
        sim.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::KeyPromoted { .. }))
    );
}

#[test]
fn a_restart_during_the_activation_delay_restarts_the_full_delay() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(22));
    assert!(sim.provider(0).activation_deadline().is_some());
    sim.advance(seconds(20));
    sim.stop(0);
    sim.start(0).unwrap();
    // Without the restart, promotion would happen 10 s from now.
    sim.advance(seconds(25));
    assert_eq!(
        active_version(&sim, 0),
        1,
        "the delay restarted at the restart"
    );
    sim.advance(seconds(20));
    assert_eq!(active_version(&sim, 0), 2);
}

#[test]
fn latest_version_going_backwards_is_rejected_as_unhealthy() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(80));
    assert_eq!(active_version(&sim, 0), 2);
    sim.transit.roll_back_to(1);
    sim.advance(seconds(11));
    assert_eq!(sim.status_key_id(0), None);
    let report = sim.provider(0).health(sim.now);
    assert!(
        report.reasons.contains(&NotReadyReason::VersionRollback)
            || report.reasons.contains(&NotReadyReason::ProfileInvalid),
        "{report:?}"
    );
    assert!(matches!(
        encrypt(&mut sim, 0),
        Err(Refusal::StatusUnhealthy)
    ));
}

#[test]
fn versions_skipped_between_probes_are_retained_for_decryption() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    sim.transit.rotate(sim.wall_unix + 1);
    sim.transit.rotate(sim.wall_unix + 2);
    sim.advance(seconds(11));
    let registry = sim.provider(0).registry().unwrap();
    let states: BTreeMap<u32, SnapshotState> = registry
        .records()
        .iter()
        .map(|r| (r.version().get(), r.state()))
        .collect();
    assert_eq!(states.get(&2), Some(&SnapshotState::Retired));
    assert_eq!(states.get(&3), Some(&SnapshotState::Retired));
    assert_eq!(states.get(&4), Some(&SnapshotState::Pending));
    assert_eq!(states.get(&1), Some(&SnapshotState::Active));
}

#[test]
fn status_key_id_equals_encrypt_key_id_across_a_rotation() {
    let mut sim = started();
    let mut apiserver = ApiServer::default();
    for step in 0..40 {
        if step == 5 {
            sim.transit.rotate(sim.wall_unix);
        }
        apiserver.poll(&mut sim, 0).unwrap();
        sim.advance(seconds(5));
    }
    assert_eq!(
        apiserver.status_history.len(),
        2,
        "exactly one key_id change"
    );
    assert_eq!(apiserver.stored.len(), 2);
    for seed in apiserver.stored.clone() {
        decrypt(&mut sim, 0, &seed).unwrap();
    }
}

#[test]
fn status_never_produces_a_transit_call() {
    let mut sim = started();
    let before = sim.nodes[0].transit_log.len();
    for _ in 0..100 {
        sim.status_key_id(0).unwrap();
    }
    assert_eq!(sim.nodes[0].transit_log.len(), before);
}

#[test]
fn decrypt_with_bad_limits_key_id_or_annotations_is_refused_before_any_transit_call() {
    let mut sim = started();
    let Ok(KmsResponse::Encrypted {
        ciphertext,
        key_id,
        annotations,
    }) = encrypt(&mut sim, 0)
    else {
        panic!("encrypt failed");
    };
    let key_id = key_id.to_string();
    let mut tampered = annotations.clone();
    tampered.insert(TRANSIT_KEY_VERSION.into(), b"2".to_vec());
    let mut not_fqdn = annotations.clone();
    not_fqdn.insert("provider".into(), b"openbao-transit".to_vec());
    let mut huge = annotations.clone();
    huge.insert("big.example.com".into(), vec![b'a'; 40_000]);
    let cases = [
        (
            vec![b'v'; 1025],
            key_id.clone(),
            annotations.clone(),
            Refusal::RequestLimitExceeded,
        ),
        (
            ciphertext.clone(),
            "k".repeat(1025),
            annotations.clone(),
            Refusal::RequestLimitExceeded,
        ),
        (
            ciphertext.clone(),
            key_id.clone(),
            huge,
            Refusal::RequestLimitExceeded,
        ),
        (
            Vec::new(),
            key_id.clone(),
            annotations.clone(),
            Refusal::CiphertextRequired,
        ),
        (
            ciphertext.clone(),
            "obk2.short".into(),
            annotations.clone(),
            Refusal::KeyIdMalformed,
        ),
        (
            ciphertext.clone(),
            key_id.clone(),
            not_fqdn,
            Refusal::AnnotationsInvalid,
        ),
        (
            b"vault:v1:!!".to_vec(),
            key_id.clone(),
            annotations,
            Refusal::CiphertextMalformed,
        ),
        (ciphertext, key_id, tampered, Refusal::AnnotationMismatch),
    ];
    let before = sim.nodes[0].transit_log.len();
    for (ciphertext, key_id, annotations, expected) in cases {
        let answer = sim.call(
            0,
            KmsRequest::Decrypt {
                ciphertext,
                key_id,
                annotations,
            },
        );
        assert_eq!(answer.unwrap_err(), expected);
    }
    assert_eq!(
        sim.nodes[0].transit_log.len(),
        before,
        "no Transit call was made"
    );
}

#[test]
fn discovery_of_an_unknown_key_id_runs_at_most_once_per_probe_interval() {
    let mut sim = Sim::new(2);
    sim.start(0).unwrap();
    sim.advance(seconds(1));
    sim.start(1).unwrap();
    sim.advance(seconds(1));
    let unknown = "obk2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let Ok(KmsResponse::Encrypted {
        ciphertext,
        annotations,
        ..
    }) = encrypt(&mut sim, 0)
    else {
        panic!("encrypt failed");
    };
    let request = || KmsRequest::Decrypt {
        ciphertext: ciphertext.clone(),
        key_id: unknown.into(),
        annotations: annotations.clone(),
    };
    let discoveries = |sim: &Sim| {
        sim.nodes[1]
            .events
            .iter()
            .filter(|e| matches!(e, Event::DiscoveryStarted))
            .count()
    };
    assert_eq!(sim.call(1, request()).unwrap_err(), Refusal::UnknownKeyId);
    assert_eq!(sim.call(1, request()).unwrap_err(), Refusal::UnknownKeyId);
    assert_eq!(
        discoveries(&sim),
        1,
        "the second unknown key_id did not start discovery"
    );
    sim.advance(seconds(11));
    assert_eq!(sim.call(1, request()).unwrap_err(), Refusal::UnknownKeyId);
    assert_eq!(discoveries(&sim), 2);
}

#[test]
fn a_pending_key_id_another_node_promoted_is_discovered_and_decrypts() {
    let mut sim = Sim::new(2);
    sim.start(0).unwrap();
    sim.start(1).unwrap();
    sim.advance(seconds(1));
    sim.transit.rotate(sim.wall_unix);
    // Node 1 is down while node 0 promotes, so node 1 never observed version 2.
    sim.stop(1);
    sim.advance(seconds(80));
    assert_eq!(active_version(&sim, 0), 2);
    let Ok(KmsResponse::Encrypted {
        ciphertext,
        key_id,
        annotations,
    }) = encrypt(&mut sim, 0)
    else {
        panic!("encrypt failed");
    };
    sim.start(1).unwrap();
    // No time passes: the first Decrypt on node 1 must discover version 2 by itself.
    let answer = sim.call(
        1,
        KmsRequest::Decrypt {
            ciphertext,
            key_id: key_id.to_string(),
            annotations,
        },
    );
    assert!(
        matches!(answer, Ok(KmsResponse::Decrypted { .. })),
        "{answer:?}"
    );
}

#[test]
fn an_openbao_outage_makes_status_unhealthy_after_the_staleness_window_and_recovers() {
    let mut sim = started();
    sim.transit.outage = Some(bao_kms_core::FailureClass::ConnectionFailed);
    sim.advance(seconds(20));
    assert!(
        sim.status_key_id(0).is_some(),
        "a short outage does not flap Status"
    );
    sim.advance(seconds(25));
    assert_eq!(sim.status_key_id(0), None, "stale after 40 s");
    sim.transit.outage = None;
    sim.advance(seconds(40));
    assert!(
        sim.status_key_id(0).is_some(),
        "healthy again without a restart"
    );
}

#[test]
fn a_failed_promotion_save_is_retried_with_the_same_state_and_never_half_applies() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(50));
    assert_eq!(active_version(&sim, 0), 1);
    let generation = sim.provider(0).registry().unwrap().generation();
    sim.nodes[0].failing_saves = 2;
    sim.advance(seconds(3));
    assert_eq!(
        active_version(&sim, 0),
        1,
        "not promoted while the save fails"
    );
    assert!(sim.provider(0).health(sim.now).persistence_degraded);
    assert!(
        sim.status_key_id(0).is_some(),
        "the old key keeps serving meanwhile"
    );
    sim.advance(seconds(10));
    assert_eq!(active_version(&sim, 0), 2);
    assert_eq!(
        sim.provider(0).registry().unwrap().generation(),
        generation + 1
    );
    let disk = bao_kms_core::StateFile::decode(sim.nodes[0].disk.state.as_ref().unwrap()).unwrap();
    assert_eq!(disk.generation(), generation + 1);
}

#[test]
fn a_promotion_blocked_by_a_failing_save_does_not_spin_probes() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(40));
    // The stable candidate's delay ends at t=52; every save fails from now on for a while.
    sim.nodes[0].failing_saves = 1_000;
    let calls_before = sim.nodes[0].transit_log.len();
    sim.advance(seconds(30));
    let calls = sim.nodes[0].transit_log.len() - calls_before;
    // Probes follow their 10 s schedule (plus deep probes): a handful of calls, not thousands.
    assert!(calls < 40, "{calls} Transit calls in 30 s");
    assert_eq!(active_version(&sim, 0), 1);
}

#[test]
fn a_backward_wall_clock_jump_across_a_restart_neither_blocks_nor_hastens_promotion() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(22));
    assert!(sim.provider(0).activation_deadline().is_some());
    sim.wall_unix -= 6_000;
    sim.stop(0);
    sim.start(0).unwrap();
    // The delay restarts with the process and runs on the monotonic clock.
    sim.advance(seconds(25));
    assert_eq!(
        active_version(&sim, 0),
        1,
        "a wall-clock jump does not shorten the delay"
    );
    sim.advance(seconds(20));
    assert_eq!(
        active_version(&sim, 0),
        2,
        "and does not block promotion either"
    );
    let state = sim.provider(0).registry().unwrap();
    let promoted = state.active().observation();
    assert!(promoted.promoted_at_unix >= promoted.stable_at_unix);
    assert!(
        sim.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::ClockRegressed { .. }))
    );
}

#[test]
fn a_transit_key_restored_to_an_older_version_reports_version_rollback() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(60));
    assert_eq!(active_version(&sim, 0), 2);
    sim.transit.roll_back_to(1);
    sim.advance(seconds(11));
    let report = sim.provider(0).health(sim.now);
    assert!(
        report.reasons.contains(&NotReadyReason::VersionRollback),
        "{report:?}"
    );
    assert!(
        !report.reasons.contains(&NotReadyReason::ProfileInvalid),
        "{report:?}"
    );
    assert_eq!(sim.status_key_id(0), None);
}

#[test]
fn discovery_records_a_new_version_for_decryption_without_counting_an_observation() {
    let mut sim = Sim::new(2);
    sim.start(0).unwrap();
    sim.start(1).unwrap();
    sim.advance(seconds(1));
    sim.stop(1);
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(80));
    let Ok(KmsResponse::Encrypted {
        ciphertext,
        key_id,
        annotations,
    }) = encrypt(&mut sim, 0)
    else {
        panic!("encrypt failed");
    };
    sim.nodes[1].config.require_stable_observation_count = 1;
    sim.start(1).unwrap();
    sim.transit.rotate(sim.wall_unix);
    // Node 1's start-up probe saw version 3 (count 1); version 2 arrives by discovery below.
    let request = KmsRequest::Decrypt {
        ciphertext,
        key_id: key_id.to_string(),
        annotations,
    };
    assert!(matches!(
        sim.call(1, request),
        Ok(KmsResponse::Decrypted { .. })
    ));
    let registry = sim.provider(1).registry().unwrap();
    for record in registry.records() {
        if record.state() == SnapshotState::Pending {
            assert!(record.observation().stable_observation_count <= 1);
        }
    }
}

#[test]
fn status_stays_healthy_and_encrypt_never_pauses_through_a_promotion() {
    let mut sim = started();
    sim.transit.rotate(sim.wall_unix);
    let mut key_ids = Vec::new();
    // Poll every 100 ms for 70 s: the candidate is proven by a round trip during its
    // activation delay, so the promoted key is usable the instant it becomes active.
    for _ in 0..700 {
        let key_id = sim.status_key_id(0).expect("Status never turns unhealthy");
        assert!(matches!(
            encrypt(&mut sim, 0),
            Ok(KmsResponse::Encrypted { .. })
        ));
        if key_ids.last() != Some(&key_id) {
            key_ids.push(key_id);
        }
        sim.advance(Duration::from_millis(100));
    }
    assert_eq!(key_ids.len(), 2, "exactly one key_id change");
    assert_eq!(active_version(&sim, 0), 2);
    // Not even for an instant between two inputs (the simulation answers Transit calls
    // synchronously, so the health events are the finer-grained witness).
    let unhealthy = sim.nodes[0]
        .events
        .iter()
        .filter(|event| matches!(event, Event::HealthChanged { healthy: false }))
        .count();
    assert_eq!(unhealthy, 0);
}

#[test]
fn a_discovery_that_must_wait_for_a_failing_save_answers_retry_not_unknown() {
    let mut sim = Sim::new(2);
    sim.start(0).unwrap();
    sim.start(1).unwrap();
    sim.advance(seconds(1));
    sim.stop(1);
    sim.transit.rotate(sim.wall_unix);
    sim.advance(seconds(80));
    let Ok(KmsResponse::Encrypted {
        ciphertext,
        key_id,
        annotations,
    }) = encrypt(&mut sim, 0)
    else {
        panic!("encrypt failed");
    };
    // Node 1 restarts with its checkpoint missing and a disk that fails the next save: the
    // checkpoint rewrite waits for a retry, so the new version it observes cannot be saved yet.
    sim.nodes[1].disk.checkpoint = None;
    sim.nodes[1].failing_saves = 1;
    sim.start(1).unwrap();
    let request = KmsRequest::Decrypt {
        ciphertext,
        key_id: key_id.to_string(),
        annotations,
    };
    let answer = sim.call_waiting(1, request.clone());
    // The save retry may come after the request's 2 s (openbao.timeout): then the answer is a
    // deadline, which kube-apiserver retries like the refresh failure.
    assert!(
        matches!(
            answer,
            Ok(KmsResponse::Decrypted { .. })
                | Err(Refusal::KeyMetadataRefreshFailed | Refusal::DeadlineExceeded)
        ),
        "a retryable answer, never key_id unknown: {answer:?}"
    );
    sim.advance(seconds(30));
    assert!(matches!(
        sim.call_waiting(1, request),
        Ok(KmsResponse::Decrypted { .. })
    ));
}
