//! End to end against OpenBao failures the plugin must ride out without a restart: the leader
//! of a real 3-node raft cluster killed with SIGKILL during a decrypt storm, and a frozen
//! (SIGSTOP) OpenBao under a 128-way storm.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bao_kms_proto::{DecryptRequest, StatusRequest};
use e2e_support::kube_apiserver::dial;
use e2e_support::{Deadline, E2e, now, plugin_binary, signal, stored_seeds};
use tokio::task::JoinSet;

/// kube-apiserver's default KMS deadline.
const APISERVER_TIMEOUT: Duration = Duration::from_secs(3);
const OPENBAO_REQUESTS: &str = "openbao_kms_openbao_requests_total";

/// One Decrypt of the storm: when it started and whether it returned the right seed.
struct Outcome {
    started: Instant,
    ok: bool,
}

/// `concurrency` clients decrypting the seeds round-robin until `until`, each call with the
/// apiserver's deadline; returns every outcome.
async fn storm(
    socket: PathBuf,
    seeds: Arc<Vec<(Vec<u8>, DecryptRequest)>>,
    concurrency: usize,
    until: Instant,
) -> Vec<Outcome> {
    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let socket = socket.clone();
        let seeds = Arc::clone(&seeds);
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            let mut client = dial(&socket).await.expect("dial");
            let mut index = worker;
            while now() < until {
                let (seed, request) = &seeds[index % seeds.len()];
                index += concurrency;
                let started = now();
                let mut call = tonic::Request::new(request.clone());
                call.set_timeout(APISERVER_TIMEOUT);
                let answer = tokio::time::timeout(APISERVER_TIMEOUT, client.decrypt(call)).await;
                let ok =
                    matches!(&answer, Ok(Ok(response)) if response.get_ref().plaintext == *seed);
                outcomes.push(Outcome { started, ok });
                if !ok {
                    // kube-apiserver backs off before it retries a failed read.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            outcomes
        });
    }
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        all.extend(done.expect("storm worker"));
    }
    all
}

/// The `openbao.health` line of a `doctor` run with the test's configuration.
fn doctor_health_line(e2e: &E2e) -> String {
    let output = std::process::Command::new(plugin_binary())
        .args(["doctor", "--config"])
        .arg(e2e.config_path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    stdout
        .lines()
        .find(|line| line.contains("openbao.health"))
        .unwrap_or_else(|| panic!("no openbao.health line in:\n{stdout}"))
        .to_owned()
}

async fn status_key_id(e2e: &E2e) -> Option<String> {
    let mut client = dial(e2e.socket()).await.expect("dial");
    let mut request = tonic::Request::new(StatusRequest {});
    request.set_timeout(APISERVER_TIMEOUT);
    let answer = client.status(request).await.ok()?.into_inner();
    (answer.healthz == "ok").then_some(answer.key_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_raft_leader_during_a_decrypt_storm_fails_no_decrypt_after_one_timeout_and_rotation_still_converges()
 {
    let mut e2e = E2e::new_raft();
    e2e.start_plugin();
    let key_id = status_key_id(&e2e)
        .await
        .expect("healthy before the failover");
    let seeds = Arc::new(stored_seeds(&e2e, 32).await);

    let storm_end = now() + Duration::from_secs(16);
    let load = tokio::spawn(storm(
        e2e.socket().to_path_buf(),
        Arc::clone(&seeds),
        16,
        storm_end,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = e2e.bao().active_node().expect("an active node");
    let killed_at = now();
    signal(e2e.bao().node_pid(leader), "KILL");

    // A new leader is elected among the two others.
    let elected = Deadline::after(Duration::from_secs(30), "a new raft leader");
    let new_leader = loop {
        if let Some(node) = e2e.bao().active_node() {
            break node;
        }
        elected.check();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elected_at = now();
    assert_ne!(new_leader, leader);
    let degraded = doctor_health_line(&e2e);
    assert!(
        degraded.starts_with("[warn]") && degraded.contains("1 node(s) sealed or unreachable"),
        "{degraded}"
    );

    // Status keeps the key_id throughout (it never needs OpenBao to answer).
    let mut statuses = Vec::new();
    while now() < storm_end {
        statuses.push(status_key_id(&e2e).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let outcomes = load.await.expect("the storm");
    for status in statuses.iter().flatten() {
        assert_eq!(
            status, &key_id,
            "Status moved to another key_id during the failover"
        );
    }

    let total = outcomes.len();
    let failed: Vec<Duration> = outcomes
        .iter()
        .filter(|outcome| !outcome.ok)
        .map(|outcome| outcome.started.saturating_duration_since(killed_at))
        .collect();
    let late = elected_at + APISERVER_TIMEOUT;
    let failed_late = outcomes
        .iter()
        .filter(|outcome| !outcome.ok && outcome.started > late)
        .count();
    eprintln!(
        "failover: {total} decrypts, {} failed (started {:?} after the kill); new leader after {:?}",
        failed.len(),
        failed,
        elected_at.saturating_duration_since(killed_at)
    );
    assert!(total > 100, "the storm ran: {total} decrypts");
    assert_eq!(
        failed_late, 0,
        "decrypts failed more than one timeout after the new leader was elected"
    );

    // The plugin's metrics name the node it moved to.
    let leader_address = e2e.bao().addresses()[new_leader - 1].clone();
    let noticed = Deadline::after(Duration::from_secs(5), "the metrics to show the new leader");
    loop {
        let metrics = e2e.metrics();
        let in_use = metrics.sum(
            "openbao_kms_openbao_node_in_use",
            &[("address", leader_address.as_str())],
        );
        let active = metrics.sum(
            "openbao_kms_openbao_node_role",
            &[("address", leader_address.as_str()), ("role", "active")],
        );
        if in_use == 1.0 && active == 1.0 {
            break;
        }
        noticed.check();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Rotation still converges: the plugin observes and promotes the new version through the
    // new leader, new seeds use it and old ones still decrypt.
    e2e.bao().rotate_key();
    let promoted = Deadline::after(Duration::from_secs(40), "the rotation to be promoted");
    let new_key_id = loop {
        if let Some(current) = status_key_id(&e2e).await
            && current != key_id
        {
            break current;
        }
        promoted.check();
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut api = e2e.apiserver().await;
    let fresh = api
        .encrypt(vec![0xAB; 32])
        .await
        .expect("encrypt after the rotation");
    assert_eq!(fresh.key_id, new_key_id);
    let old = storm(
        e2e.socket().to_path_buf(),
        Arc::clone(&seeds),
        4,
        now() + Duration::from_secs(1),
    )
    .await;
    assert!(
        old.iter().all(|outcome| outcome.ok),
        "an old seed failed after the rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_openbao_under_a_128_way_storm_receives_no_more_decrypts_than_the_plugin_sent_and_recovers_within_one_timeout()
 {
    let mut e2e = E2e::new_audited();
    e2e.start_plugin();
    let audit = e2e.bao().audit_log();
    let seeds = Arc::new(stored_seeds(&e2e, 128).await);
    let before = e2e.metrics();
    let audited_before = audited_decrypts(&audit);

    let pid = e2e.bao().pid();
    signal(pid, "STOP");
    let frozen_for = Duration::from_secs(30);
    let outcomes = storm(
        e2e.socket().to_path_buf(),
        Arc::clone(&seeds),
        128,
        now() + frozen_for,
    )
    .await;
    let sent_while_frozen = decrypt_calls(&e2e.metrics()) - decrypt_calls(&before);
    signal(pid, "CONT");
    let thawed = now();

    // Fresh requests succeed within one timeout of the thaw.
    let recovered = storm(
        e2e.socket().to_path_buf(),
        Arc::clone(&seeds),
        8,
        thawed + Duration::from_secs(1),
    )
    .await;
    assert!(
        recovered.iter().all(|outcome| outcome.ok),
        "a decrypt failed after SIGCONT"
    );
    assert!(now().saturating_duration_since(thawed) < APISERVER_TIMEOUT * 2);

    // Let OpenBao work through whatever reached its socket while it was frozen, then compare.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent_total = decrypt_calls(&e2e.metrics()) - decrypt_calls(&before);
    let audited = audited_decrypts(&audit) - audited_before;
    eprintln!(
        "freeze: {} storm RPCs, {} decrypt calls sent while frozen, {} in all, {} audited",
        outcomes.len(),
        sent_while_frozen,
        sent_total,
        audited
    );
    assert!(
        audited <= sent_total,
        "OpenBao saw {audited} decrypts, the plugin sent {sent_total}"
    );
    assert!(
        sent_while_frozen < outcomes.len() as f64 / 4.0,
        "the plugin sent {sent_while_frozen} calls for {} RPCs while OpenBao was frozen",
        outcomes.len()
    );
}

/// Decrypt calls (single and batch) the plugin handed to the network, from its metrics.
fn decrypt_calls(metrics: &e2e_support::Metrics) -> f64 {
    metrics.sum(OPENBAO_REQUESTS, &[("operation", "transit_decrypt")])
        + metrics.sum(OPENBAO_REQUESTS, &[("operation", "transit_batch_decrypt")])
}

/// Decrypt requests in OpenBao's file audit log (one `request` entry per call).
fn audited_decrypts(audit: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    let count = text
        .lines()
        .filter(|line| line.contains("\"type\":\"request\""))
        .filter(|line| line.contains("\"path\":\"transit/decrypt/"))
        .count();
    count as f64
}
