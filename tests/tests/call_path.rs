//! The Transit call path of the core: call slots, decrypt batches, deadlines, cancellation and
//! retries, driven through the deterministic simulation with Transit calls held back so the
//! tests decide when (and how) each call is answered.
#![allow(clippy::unwrap_used, clippy::panic, clippy::wildcard_enum_match_arm)]

use std::collections::BTreeMap;
use std::time::Duration;

use bao_kms_core::provider::Event;
use bao_kms_core::transit::TransitOperation;
use bao_kms_core::{
    FailureClass, KmsRequest, KmsResponse, Plaintext, Refusal, RequestId, TransitFailure,
    TransitRequest,
};
use bao_kms_testkit::sim::Sim;

/// Decrypt calls a node keeps in flight before Decrypts start to queue (the default policy).
const CALL_SLOTS: usize = 4;

/// What kube-apiserver stored for one seed.
struct Stored {
    seed: Vec<u8>,
    request: KmsRequest,
}

/// A healthy node and `count` distinct seeds encrypted through it.
fn node_with_stored(count: u8) -> (Sim, Vec<Stored>) {
    let mut sim = Sim::new(1);
    sim.start(0).unwrap();
    sim.advance(Duration::from_secs(1));
    let stored = (0..count)
        .map(|n| {
            let seed = vec![n; 32];
            let answer = sim.call(
                0,
                KmsRequest::Encrypt {
                    plaintext: Plaintext::new(seed.clone()),
                },
            );
            let Ok(KmsResponse::Encrypted {
                ciphertext,
                key_id,
                annotations,
            }) = answer
            else {
                panic!("encrypt failed: {answer:?}");
            };
            let request = KmsRequest::Decrypt {
                ciphertext,
                key_id: key_id.to_string(),
                annotations,
            };
            Stored { seed, request }
        })
        .collect();
    sim.hold_kms_calls = true;
    (sim, stored)
}

fn decrypted(sim: &mut Sim, id: RequestId) -> Vec<u8> {
    match sim.nodes[0].responses.remove(&id) {
        Some(Ok(KmsResponse::Decrypted { plaintext })) => plaintext.expose().to_vec(),
        other => panic!("request {id:?}: expected a decrypted seed, got {other:?}"),
    }
}

fn refused(sim: &mut Sim, id: RequestId) -> Refusal {
    match sim.nodes[0].responses.remove(&id) {
        Some(Err(refusal)) => refusal,
        other => panic!("request {id:?}: expected a refusal, got {other:?}"),
    }
}

fn batch_size(request: &TransitRequest) -> usize {
    match request {
        TransitRequest::Decrypt { .. } => 1,
        TransitRequest::BatchDecrypt { items } => items.len(),
        other => panic!("not a decrypt call: {other:?}"),
    }
}

fn retried_events(sim: &Sim) -> usize {
    sim.nodes[0]
        .events
        .iter()
        .filter(|event| matches!(event, Event::TransitRetried { .. }))
        .count()
}

#[test]
fn a_lone_decrypt_goes_to_transit_at_once_as_a_single_call() {
    let (mut sim, stored) = node_with_stored(1);
    let id = sim.request(0, stored[0].request.clone());
    assert_eq!(sim.held.len(), 1, "no waiting for company when idle");
    assert!(matches!(
        sim.held[0].request,
        TransitRequest::Decrypt { .. }
    ));
    sim.answer_held(0, None);
    assert_eq!(decrypted(&mut sim, id), stored[0].seed);
}

#[test]
fn distinct_decrypts_that_wait_for_a_slot_leave_as_one_batch_and_a_tampered_item_fails_alone() {
    let (mut sim, stored) = node_with_stored(20);
    let first: Vec<RequestId> = stored[..CALL_SLOTS]
        .iter()
        .map(|s| sim.request(0, s.request.clone()))
        .collect();
    assert_eq!(sim.held.len(), CALL_SLOTS, "one call per free slot");
    assert!(sim.held.iter().all(|held| batch_size(&held.request) == 1));

    // Every slot is busy: the next sixteen wait, one of them tampered (its ciphertext changed in
    // the base64 body, so it still passes validation and only Transit can tell).
    let mut tampered = stored[10].request.clone();
    if let KmsRequest::Decrypt { ciphertext, .. } = &mut tampered {
        let last = ciphertext.len() - 3;
        ciphertext[last] = if ciphertext[last] == b'A' { b'B' } else { b'A' };
    }
    let waiting: Vec<RequestId> = (CALL_SLOTS..20)
        .map(|n| {
            let request = if n == 10 {
                tampered.clone()
            } else {
                stored[n].request.clone()
            };
            sim.request(0, request)
        })
        .collect();
    assert_eq!(sim.held.len(), CALL_SLOTS, "no call without a free slot");

    sim.answer_held(0, None);
    assert_eq!(decrypted(&mut sim, first[0]), stored[0].seed);
    assert_eq!(
        sim.held.len(),
        CALL_SLOTS,
        "the freed slot carries the waiting ones"
    );
    let batch = sim.held.last().unwrap();
    assert!(matches!(batch.request, TransitRequest::BatchDecrypt { .. }));
    assert_eq!(batch_size(&batch.request), 16, "all sixteen in one call");

    let position = sim.held.len() - 1;
    sim.answer_held(position, None);
    for (offset, id) in waiting.iter().enumerate() {
        let n = CALL_SLOTS + offset;
        if n == 10 {
            let refusal = refused(&mut sim, *id);
            assert!(
                matches!(&refusal, Refusal::Transit { failure, .. } if failure.class == FailureClass::DecryptFailed),
                "{refusal:?}"
            );
        } else {
            assert_eq!(decrypted(&mut sim, *id), stored[n].seed, "item {n}");
        }
    }
    assert_eq!(sim.transit.calls(TransitOperation::BatchDecrypt), 1);
}

#[test]
fn batches_are_bounded_by_the_configured_item_limit() {
    let mut sim = Sim::new(1);
    sim.nodes[0].config.batching.max_items = 5;
    sim.nodes[0].config.batching.max_calls = 1;
    sim.start(0).unwrap();
    sim.advance(Duration::from_secs(1));
    let requests: Vec<KmsRequest> = (0..12_u8)
        .map(|n| {
            let Ok(KmsResponse::Encrypted {
                ciphertext,
                key_id,
                annotations,
            }) = sim.call(
                0,
                KmsRequest::Encrypt {
                    plaintext: Plaintext::new(vec![n; 32]),
                },
            )
            else {
                panic!("encrypt failed")
            };
            KmsRequest::Decrypt {
                ciphertext,
                key_id: key_id.to_string(),
                annotations,
            }
        })
        .collect();
    sim.hold_kms_calls = true;
    let ids: Vec<RequestId> = requests.into_iter().map(|r| sim.request(0, r)).collect();
    let mut sizes = Vec::new();
    while !sim.held.is_empty() {
        sizes.push(batch_size(&sim.held[0].request));
        sim.answer_held(0, None);
    }
    assert_eq!(sizes, [1, 5, 5, 1]);
    for (n, id) in ids.into_iter().enumerate() {
        assert_eq!(decrypted(&mut sim, id), vec![u8::try_from(n).unwrap(); 32]);
    }
}

#[test]
fn identical_decrypts_share_one_item_whether_queued_or_in_flight() {
    let (mut sim, stored) = node_with_stored(5);
    let in_flight: Vec<RequestId> = (0..3)
        .map(|_| sim.request(0, stored[0].request.clone()))
        .collect();
    assert_eq!(sim.held.len(), 1);
    for s in &stored[1..CALL_SLOTS] {
        sim.request(0, s.request.clone());
    }
    let queued: Vec<RequestId> = (0..3)
        .map(|_| sim.request(0, stored[4].request.clone()))
        .collect();
    assert_eq!(sim.held.len(), CALL_SLOTS);
    sim.answer_held(0, None);
    for id in in_flight {
        assert_eq!(decrypted(&mut sim, id), stored[0].seed);
    }
    let next = sim.held.last().unwrap();
    assert_eq!(
        batch_size(&next.request),
        1,
        "three identical requests, one item"
    );
    let position = sim.held.len() - 1;
    sim.answer_held(position, None);
    for id in queued {
        assert_eq!(decrypted(&mut sim, id), stored[4].seed);
    }
}

#[test]
fn a_queued_decrypt_whose_caller_gave_up_is_never_sent() {
    let (mut sim, stored) = node_with_stored(6);
    for s in &stored[..CALL_SLOTS] {
        sim.request(0, s.request.clone());
    }
    let cancelled = sim.request(0, stored[4].request.clone());
    let expiring =
        sim.request_with_timeout(0, stored[5].request.clone(), Duration::from_millis(300));
    let decrypts_before = sim.transit.calls(TransitOperation::Decrypt);
    sim.cancel(0, cancelled);
    sim.advance(Duration::from_millis(400));
    assert_eq!(refused(&mut sim, expiring), Refusal::DeadlineExceeded);
    assert!(
        !sim.nodes[0].responses.contains_key(&cancelled),
        "a cancelled request gets no answer"
    );
    while !sim.held.is_empty() {
        sim.answer_held(0, None);
    }
    assert_eq!(
        sim.transit.calls(TransitOperation::Decrypt) - decrypts_before
            + sim.transit.calls(TransitOperation::BatchDecrypt),
        u64::try_from(CALL_SLOTS).unwrap(),
        "only the four first decrypts reached Transit"
    );
}

#[test]
fn a_cancelled_request_frees_its_call_slot_at_once() {
    let (mut sim, stored) = node_with_stored(5);
    let ids: Vec<RequestId> = stored[..CALL_SLOTS]
        .iter()
        .map(|s| sim.request(0, s.request.clone()))
        .collect();
    let waiting = sim.request(0, stored[4].request.clone());
    assert_eq!(sim.held.len(), CALL_SLOTS);
    sim.cancel(0, ids[0]);
    assert_eq!(
        sim.held.len(),
        CALL_SLOTS + 1,
        "the waiting decrypt took the freed slot"
    );
    let position = sim.held.len() - 1;
    sim.answer_held(position, None);
    assert_eq!(decrypted(&mut sim, waiting), stored[4].seed);
    // The abandoned call's late answer is ignored.
    sim.answer_held(0, None);
    assert!(!sim.nodes[0].responses.contains_key(&ids[0]));
}

#[test]
fn the_callers_deadline_bounds_the_request_and_the_call() {
    let (mut sim, stored) = node_with_stored(1);
    let start = sim.now;
    let id = sim.request_with_timeout(0, stored[0].request.clone(), Duration::from_millis(700));
    assert_eq!(sim.held[0].deadline, start + Duration::from_millis(700));
    sim.advance(Duration::from_millis(699));
    assert!(!sim.nodes[0].responses.contains_key(&id));
    sim.advance(Duration::from_millis(1));
    assert_eq!(refused(&mut sim, id), Refusal::DeadlineExceeded);

    // A caller that would wait longer than openbao.timeout (2 s) is answered by then.
    let id = sim.request_with_timeout(0, stored[0].request.clone(), Duration::from_secs(60));
    let held = sim.held.last().unwrap();
    assert_eq!(held.deadline, sim.now + Duration::from_secs(2));
    sim.advance(Duration::from_secs(2));
    assert_eq!(refused(&mut sim, id), Refusal::DeadlineExceeded);
}

#[test]
fn transient_failures_are_retried_with_backoff_inside_the_deadline() {
    let (mut sim, stored) = node_with_stored(1);
    let id = sim.request(0, stored[0].request.clone());
    let unavailable = TransitFailure {
        class: FailureClass::Unavailable,
        http_status: Some(503),
        retry_after: None,
    };
    sim.answer_held(0, Some(Err(unavailable)));
    assert!(sim.held.is_empty(), "not sent again before the backoff");
    sim.advance(Duration::from_millis(25));
    assert_eq!(
        sim.held.len(),
        1,
        "sent again after the jittered backoff (10-20 ms)"
    );
    sim.answer_held(
        0,
        Some(Err(TransitFailure::new(FailureClass::ConnectionFailed))),
    );
    sim.advance(Duration::from_millis(45));
    assert_eq!(sim.held.len(), 1, "backoff doubles (20-40 ms)");
    sim.answer_held(0, None);
    assert_eq!(decrypted(&mut sim, id), stored[0].seed);
    assert_eq!(retried_events(&sim), 2);
}

#[test]
fn retry_after_is_honoured_and_a_retry_that_cannot_fit_gives_up() {
    let (mut sim, stored) = node_with_stored(1);
    let id = sim.request(0, stored[0].request.clone());
    let limited = TransitFailure {
        class: FailureClass::RateLimited,
        http_status: Some(429),
        retry_after: Some(Duration::from_secs(1)),
    };
    sim.answer_held(0, Some(Err(limited.clone())));
    sim.advance(Duration::from_millis(999));
    assert!(sim.held.is_empty(), "Retry-After is a floor");
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.held.len(), 1);
    // The request has 2 s (openbao.timeout) and 1 s is gone: another Retry-After of 1 s would
    // end exactly at the deadline, leaving no time for the attempt, so the call gives up now.
    sim.answer_held(0, Some(Err(limited)));
    let refusal = refused(&mut sim, id);
    assert!(
        matches!(&refusal, Refusal::Transit { failure, .. } if failure.class == FailureClass::RateLimited),
        "{refusal:?}"
    );
    assert!(
        sim.nodes[0]
            .events
            .iter()
            .any(|event| matches!(event, Event::TransitRetriesExhausted { .. }))
    );
}

#[test]
fn permanent_failures_are_answered_at_once_without_a_retry() {
    let (mut sim, stored) = node_with_stored(1);
    let id = sim.request(0, stored[0].request.clone());
    sim.answer_held(
        0,
        Some(Err(TransitFailure::new(FailureClass::PermissionDenied))),
    );
    let refusal = refused(&mut sim, id);
    assert!(matches!(refusal, Refusal::Transit { .. }), "{refusal:?}");
    sim.advance(Duration::from_secs(1));
    assert!(sim.held.is_empty());
    assert_eq!(retried_events(&sim), 0);
}

#[test]
fn a_call_waiting_for_a_retry_is_dropped_when_its_callers_are_gone() {
    let (mut sim, stored) = node_with_stored(1);
    let decrypts_before = sim.transit.calls(TransitOperation::Decrypt);
    let id = sim.request(0, stored[0].request.clone());
    sim.answer_held(0, Some(Err(TransitFailure::new(FailureClass::Unavailable))));
    sim.cancel(0, id);
    sim.advance(Duration::from_secs(1));
    assert!(sim.held.is_empty(), "never sent again");
    assert_eq!(
        sim.transit.calls(TransitOperation::Decrypt),
        decrypts_before
    );
}

#[test]
fn the_status_view_holds_until_its_validity_ends_through_an_outage_and_recovery() {
    let (mut sim, _) = node_with_stored(0);
    let mut seen = BTreeMap::new();
    for step in 0..240 {
        if step == 20 {
            sim.transit.outage = Some(FailureClass::Unavailable);
        }
        if step == 160 {
            sim.transit.outage = None;
        }
        let view = sim.provider(0).status_view(sim.now);
        assert!(
            view.valid_until > sim.now,
            "a running node's view is valid now"
        );
        // Just before the view expires, with no input in between, Status still says the same.
        let last_valid = view.valid_until - Duration::from_millis(1);
        if last_valid > sim.now {
            let wait = last_valid - sim.now;
            sim.advance(wait.min(Duration::from_secs(5)));
        }
        let status = sim.status_key_id(0);
        assert_eq!(
            view.key_id.as_ref().map(ToString::to_string),
            status,
            "step {step}"
        );
        seen.insert(status.is_some(), step);
        sim.advance(Duration::from_millis(500));
    }
    assert_eq!(
        seen.len(),
        2,
        "the outage made Status unhealthy and recovery healthy again"
    );
}
