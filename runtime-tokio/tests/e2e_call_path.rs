//! End to end: the Transit call path of the real `bao-kms-provider serve` binary against a real
//! OpenBao 2.7.2 dev server — distinct Decrypts batched into `batch_input` calls, the caller's
//! `grpc-timeout` bounding a request while OpenBao is frozen, and Status answered while it is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::sync::Arc;
use std::time::Duration;

use bao_kms_proto::StatusRequest;
use e2e_support::kube_apiserver::dial;
use e2e_support::{Deadline, E2e, Frozen, now, signal, stored_seeds};
use tokio::task::JoinSet;
use tonic::Code;

const OPENBAO_REQUESTS: &str = "openbao_kms_openbao_requests_total";
const GRPC_REQUESTS: &str = "openbao_kms_grpc_requests_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_distinct_decrypts_reaches_openbao_in_fewer_calls_than_requests() {
    let e2e = E2e::running();
    let seeds = Arc::new(stored_seeds(&e2e, 64).await);
    let before = e2e.metrics();
    let socket = e2e.socket().to_path_buf();
    // Four rounds of 64 concurrent Decrypts: 64 is the plugin's default Decrypt concurrency.
    for round in 0..4 {
        let mut storm = JoinSet::new();
        for index in 0..seeds.len() {
            let seeds = Arc::clone(&seeds);
            let socket = socket.clone();
            storm.spawn(async move {
                let mut client = dial(&socket).await.expect("dial");
                let (seed, request) = &seeds[index];
                let mut request = tonic::Request::new(request.clone());
                request.set_timeout(Duration::from_secs(3));
                let answer = client.decrypt(request).await.expect("decrypt");
                assert_eq!(
                    &answer.into_inner().plaintext,
                    seed,
                    "round {round} seed {index}"
                );
            });
        }
        while let Some(done) = storm.join_next().await {
            done.expect("a decrypt task failed");
        }
    }
    let after = e2e.metrics();
    let calls = |name: &str| {
        after.sum(OPENBAO_REQUESTS, &[("operation", name)])
            - before.sum(OPENBAO_REQUESTS, &[("operation", name)])
    };
    let singles = calls("transit_decrypt");
    let batches = calls("transit_batch_decrypt");
    assert!(
        batches >= 1.0,
        "no batch call in a storm of 256 decrypts ({singles} singles)"
    );
    assert!(
        singles + batches < 128.0,
        "256 decrypts took {singles} single and {batches} batch calls"
    );
    let answered = after.sum(GRPC_REQUESTS, &[("method", "decrypt"), ("status", "ok")])
        - before.sum(GRPC_REQUESTS, &[("method", "decrypt"), ("status", "ok")]);
    assert_eq!(answered, 256.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_grpc_timeout_bounds_a_decrypt_while_openbao_is_frozen_and_status_still_answers()
 {
    let e2e = E2e::running();
    let seeds = stored_seeds(&e2e, 1).await;
    let mut client = dial(e2e.socket()).await.expect("dial");
    let before = e2e.metrics();
    let frozen = Frozen(e2e.bao().pid());
    signal(frozen.0, "STOP");

    let started = now();
    let mut request = tonic::Request::new(seeds[0].1.clone());
    request.set_timeout(Duration::from_millis(300));
    let refused = client
        .decrypt(request)
        .await
        .expect_err("OpenBao is frozen");
    // Whichever side's timer fires first: tonic's own (Cancelled) or the plugin's answer.
    // (tonic enforces the grpc-timeout it sends, so the client cannot tell the two apart.)
    assert!(
        matches!(refused.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{refused:?}"
    );
    // The plugin gives its OpenBao call only the caller's 300 ms, not its own 2 s
    // openbao.timeout: the timed-out Transit call is counted well before 2 s have passed
    // (whether the plugin answered the deadline first or the client's cancel arrived first).
    let timed_out = |metrics: &e2e_support::Metrics| {
        metrics.sum(
            OPENBAO_REQUESTS,
            &[("operation", "transit_decrypt"), ("status", "timeout")],
        )
    };
    let counted = Deadline::after(Duration::from_millis(1_500), "the timed-out Transit call");
    loop {
        if timed_out(&e2e.metrics()) - timed_out(&before) >= 1.0 {
            break;
        }
        counted.check();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() < Duration::from_millis(1_600));

    // Status needs no OpenBao call: it keeps answering from the cached snapshot.
    let mut status = tonic::Request::new(StatusRequest {});
    status.set_timeout(Duration::from_millis(500));
    let answer = client.status(status).await.expect("status").into_inner();
    assert_eq!(answer.healthz, "ok");
    assert!(!answer.key_id.is_empty());

    drop(frozen);
    let mut request = tonic::Request::new(seeds[0].1.clone());
    request.set_timeout(Duration::from_secs(3));
    let answer = client
        .decrypt(request)
        .await
        .expect("decrypt after SIGCONT");
    assert_eq!(answer.into_inner().plaintext, seeds[0].0);
}
