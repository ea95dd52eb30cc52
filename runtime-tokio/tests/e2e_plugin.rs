//! End to end: the real `bao-kms-provider serve` binary between a kube-apiserver stand-in
//! (KMS v2 gRPC over the Unix socket, 3 s deadlines, every protocol limit checked) and a real
//! OpenBao 2.7.2 dev server with TLS, transit and AppRole.
//!
//! Each test has its own OpenBao server, directory and plugin process (see `e2e_support`); the
//! plugin runs with short intervals (probe 1 s, staleness 5 s, activation delay 2 s, two stable
//! observations) so rotations and outages play out in seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::time::Duration;

use bao_kms_runtime_tokio::openbao::auth::RECOVERY_MIN_INTERVAL;
use e2e_support::kube_apiserver::{ApiserverError, KubeApiserver, WriteSeed};
use e2e_support::{
    ACTIVATION_DELAY, BREAKER_COOLDOWN, Deadline, E2e, Metrics, PROBE_INTERVAL, PluginProcess,
    STATUS_MAX_STALENESS, apiserver_key_id_hash, free_port, key_id_digest, private_dir,
};
use tonic::Code;

/// How often the stand-in polls Status while it waits for something.
const POLL: Duration = Duration::from_millis(500);

const KEY_ID_HASH: &str = "openbao_kms_status_key_id_hash";
const APISERVER_KEY_ID_HASH: &str = "openbao_kms_status_apiserver_key_id_hash";
const OPENBAO_REQUESTS: &str = "openbao_kms_openbao_requests_total";
/// The log message of a successful OpenBao login.
const LOGIN_LOG_LINE: &str = "\"message\":\"openbao login succeeded\"";

/// The gRPC code of a call that must fail.
fn code_of<T: Debug>(result: Result<T, ApiserverError>) -> Code {
    match result {
        Ok(answer) => panic!("expected an error, got {answer:?}"),
        Err(error) => error
            .code()
            .unwrap_or_else(|| panic!("expected a gRPC error, got {error}")),
    }
}

/// The `hash` labels of a key hash metric with their values.
fn hashes(metrics: &Metrics, name: &str) -> Vec<(String, f64)> {
    metrics
        .series(name)
        .into_iter()
        .map(|sample| (sample.labels["hash"].clone(), sample.value))
        .collect()
}

/// Transit calls of `operation` (any outcome) in a scrape.
fn transit_calls(metrics: &Metrics, operation: &str) -> f64 {
    metrics.sum(OPENBAO_REQUESTS, &[("operation", operation)])
}

/// A stand-in with one seed written under the current key.
async fn apiserver_with_a_seed(e2e: &E2e) -> KubeApiserver {
    let mut api = e2e.apiserver().await;
    assert_eq!(
        api.ensure_write_seed().await.unwrap(),
        WriteSeed::Written(0)
    );
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_plugin_round_trips_a_seed_and_publishes_the_hashes_of_its_status_key_id() {
    let e2e = E2e::running();
    let mut api = e2e.apiserver().await;

    let status = api.poll_status().await.unwrap();
    assert!(status.healthy, "{status:?}");
    assert_eq!(status.version, "v2");
    assert_eq!(status.healthz, "ok");

    assert_eq!(
        api.ensure_write_seed().await.unwrap(),
        WriteSeed::Written(0)
    );
    let seed = api.current_seed().unwrap().clone();
    assert_eq!(
        seed.key_id, status.key_id,
        "Encrypt key_id == Status key_id"
    );
    assert_eq!(
        seed.annotations["key-id-hash.kms.openbao.org"],
        key_id_digest(&status.key_id).into_bytes()
    );
    assert_eq!(
        seed.annotations["transit-key-version.kms.openbao.org"],
        b"1"
    );
    assert_eq!(api.ensure_write_seed().await.unwrap(), WriteSeed::Current);
    assert_eq!(api.decrypt_all().await.unwrap(), 1);

    let metrics = e2e.metrics();
    assert_eq!(
        hashes(&metrics, KEY_ID_HASH),
        [(key_id_digest(&status.key_id), 1.0)]
    );
    assert_eq!(
        hashes(&metrics, APISERVER_KEY_ID_HASH),
        [(apiserver_key_id_hash(&status.key_id), 1.0)]
    );
    assert!(
        apiserver_key_id_hash(&status.key_id).starts_with("sha256:")
            && apiserver_key_id_hash(&status.key_id).len() == 7 + 64
    );
    assert_eq!(metrics.value("openbao_kms_key_version"), Some(1.0));
    assert_eq!(
        metrics.value("openbao_kms_transit_latest_version"),
        Some(1.0)
    );
    assert_eq!(metrics.value("openbao_kms_ready"), Some(1.0));

    let (code, ready) = e2e.ready();
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["healthz"], "ok", "{ready}");
    assert_eq!(ready["stale"], false, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transit_rotation_moves_the_status_key_id_exactly_once_and_every_seed_still_decrypts() {
    let e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    let old_key_id = api.current_seed().unwrap().key_id.clone();

    assert_eq!(e2e.bao().rotate_key(), 2);
    // Observed within a probe, stable after two observations, promoted after the activation
    // delay; the rest is margin for a loaded machine.
    let deadline = Deadline::after(
        PROBE_INTERVAL * 3 + ACTIVATION_DELAY + Duration::from_secs(15),
        "a seed encrypted under the rotated key",
    );
    let mut unhealthy = Vec::new();
    loop {
        match api.ensure_write_seed().await.unwrap() {
            WriteSeed::Written(index) => {
                assert_eq!(index, 1);
                break;
            }
            WriteSeed::Unhealthy(status) => unhealthy.push(status),
            WriteSeed::Current => {}
        }
        deadline.check();
        tokio::time::sleep(POLL).await;
    }
    let switched_after = deadline.elapsed();
    assert!(
        switched_after >= ACTIVATION_DELAY.saturating_sub(Duration::from_millis(500)),
        "the new key was used {switched_after:?} after the rotation, before the activation delay"
    );

    // Keep polling as kube-apiserver does: the key_id must not move again (no flip-flop).
    for _ in 0..6 {
        tokio::time::sleep(POLL).await;
        match api.ensure_write_seed().await.unwrap() {
            WriteSeed::Current => {}
            WriteSeed::Unhealthy(status) => unhealthy.push(status),
            WriteSeed::Written(index) => panic!("the key_id moved again (seed {index})"),
        }
    }
    let new_key_id = api.current_seed().unwrap().key_id.clone();
    assert_ne!(new_key_id, old_key_id);
    assert_eq!(api.status_history(), [old_key_id, new_key_id.clone()]);
    assert_eq!(
        api.stored()[1].annotations["transit-key-version.kms.openbao.org"],
        b"2"
    );
    assert!(
        unhealthy.is_empty(),
        "Status was unhealthy during the rotation: {unhealthy:?}"
    );
    assert_eq!(api.decrypt_all().await.unwrap(), 2);

    let metrics = e2e.metrics();
    assert_eq!(
        hashes(&metrics, KEY_ID_HASH),
        [(key_id_digest(&new_key_id), 1.0)]
    );
    assert_eq!(
        hashes(&metrics, APISERVER_KEY_ID_HASH),
        [(apiserver_key_id_hash(&new_key_id), 1.0)]
    );
    assert_eq!(metrics.value("openbao_kms_key_version"), Some(2.0));
    assert_eq!(
        metrics.value("openbao_kms_transit_latest_version"),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_decryption_version_above_a_version_in_use_makes_status_unhealthy_until_it_is_lowered()
 {
    let e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    assert_eq!(e2e.bao().rotate_key(), 2);
    let rotated = Deadline::after(
        PROBE_INTERVAL * 3 + ACTIVATION_DELAY + Duration::from_secs(15),
        "a seed encrypted under the rotated key",
    );
    while api.ensure_write_seed().await.unwrap() != WriteSeed::Written(1) {
        rotated.check();
        tokio::time::sleep(POLL).await;
    }

    // Version 1 still protects a stored seed.
    e2e.bao().set_min_decryption_version(2);
    let blocked = Deadline::after(
        PROBE_INTERVAL * 3 + Duration::from_secs(5),
        "Status to turn unhealthy",
    );
    while api.poll_status().await.unwrap().healthy {
        blocked.check();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (code, ready) = e2e.ready();
    assert_eq!(code, 503, "{ready}");
    let reasons = ready["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|reason| reason == "decryption_blocked"),
        "{ready}"
    );
    let old = api.stored()[0].decrypt_request("below-min-decryption-version");
    let refused = code_of(api.decrypt(old).await);
    assert_eq!(refused, Code::InvalidArgument, "Transit refuses version 1");

    e2e.bao().set_min_decryption_version(1);
    let recovered = Deadline::after(
        BREAKER_COOLDOWN + Duration::from_secs(10),
        "Status to turn healthy again",
    );
    loop {
        let status = api.poll_status().await.unwrap();
        if status.healthy {
            assert_eq!(status.key_id, api.stored()[1].key_id);
            break;
        }
        recovered.check();
        tokio::time::sleep(POLL).await;
    }
    eprintln!("Status healthy {:?} after lowering", recovered.elapsed());
    assert_eq!(api.decrypt_all().await.unwrap(), 2);
    assert_eq!(api.status_history().len(), 2, "{:?}", api.status_history());
}

/// OpenBao is taken away by sealing it (see `Bao::seal`): a dev server keeps its storage in
/// memory, so a stopped and restarted dev server would have no transit key any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_openbao_makes_status_unhealthy_within_the_staleness_bound_and_unsealing_recovers_without_a_restart()
 {
    let mut e2e = E2e::running();
    let pid = e2e.plugin().pid();
    let mut api = apiserver_with_a_seed(&e2e).await;
    let key_id = api.current_seed().unwrap().key_id.clone();

    e2e.bao().seal();
    // The last good probe was at most a probe interval before the seal.
    let bound = STATUS_MAX_STALENESS + PROBE_INTERVAL + Duration::from_secs(2);
    let sealed = Deadline::after(bound, "Status to turn unhealthy after the seal");
    loop {
        let status = api.poll_status().await.unwrap();
        if !status.healthy {
            assert_eq!(status.healthz, "unhealthy", "{status:?}");
            assert_eq!(status.key_id, "", "an unhealthy Status carries no key_id");
            break;
        }
        sealed.check();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("Status unhealthy {:?} after the seal", sealed.elapsed());

    let encrypt = code_of(api.encrypt(vec![7; 32]).await);
    assert!(
        matches!(encrypt, Code::FailedPrecondition | Code::Unavailable),
        "Encrypt while sealed: {encrypt:?}"
    );
    let request = api.stored()[0].decrypt_request("decrypt-while-sealed");
    assert_eq!(code_of(api.decrypt(request).await), Code::Unavailable);
    assert!(matches!(
        api.ensure_write_seed().await.unwrap(),
        WriteSeed::Unhealthy(_)
    ));
    let (code, ready) = e2e.ready();
    assert_eq!(code, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable", "{ready}");

    e2e.bao().unseal();
    // Three failed probes opened the probe circuit breaker for its cooldown.
    let recovered = Deadline::after(
        BREAKER_COOLDOWN + STATUS_MAX_STALENESS + Duration::from_secs(10),
        "Status to turn healthy after the unseal",
    );
    loop {
        let status = api.poll_status().await.unwrap();
        if status.healthy {
            assert_eq!(status.key_id, key_id, "the key_id survived the outage");
            break;
        }
        recovered.check();
        tokio::time::sleep(POLL).await;
    }
    eprintln!("Status healthy {:?} after the unseal", recovered.elapsed());

    assert_eq!(e2e.plugin().try_exit(), None, "the plugin kept running");
    assert_eq!(e2e.plugin().pid(), pid);
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
    assert_eq!(api.ensure_write_seed().await.unwrap(), WriteSeed::Current);
    let fresh = api.encrypt(vec![9; 32]).await.unwrap();
    assert_eq!(fresh.key_id, key_id);
    assert_eq!(api.status_history(), [key_id]);
    let (code, ready) = e2e.ready();
    assert_eq!(code, 200, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_openbao_tokens_are_replaced_by_a_new_login_and_the_next_encrypt_and_decrypt_succeed()
 {
    let mut e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    // The auth metrics are not exported (see the ignored test below), so logins are counted
    // in the log.
    let logins = |e2e: &mut E2e| e2e.plugin().log().matches(LOGIN_LOG_LINE).count();
    assert_eq!(logins(&mut e2e), 1, "one login at start-up");

    // Straight after the revocation, before a probe can notice it.
    e2e.bao().revoke_approle_tokens();
    assert_eq!(api.decrypt_all().await.unwrap(), 1);

    // Forced logins are rate-limited (one per RECOVERY_MIN_INTERVAL, by design); a second
    // revocation inside that interval would fail one call with PermissionDenied.
    tokio::time::sleep(RECOVERY_MIN_INTERVAL + Duration::from_millis(500)).await;
    e2e.bao().revoke_approle_tokens();
    let seed = vec![42; 32];
    let encrypted = api.encrypt(seed.clone()).await.unwrap();
    let mut request = api.stored()[0].decrypt_request("after-revocation");
    request.ciphertext = encrypted.ciphertext;
    request.key_id = encrypted.key_id;
    request.annotations = encrypted.annotations;
    assert_eq!(api.decrypt(request).await.unwrap(), seed);

    assert!(
        logins(&mut e2e) >= 3,
        "two revocations need two new logins; log:\n{}",
        e2e.plugin().log_tail(30)
    );
    assert!(api.poll_status().await.unwrap().healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_login_is_counted_in_openbao_kms_auth_login_total() {
    let e2e = E2e::running();
    let metrics = e2e.metrics();
    assert!(
        metrics.sum("openbao_kms_auth_login_total", &[("status", "ok")]) >= 1.0,
        "series: {:?}",
        metrics.series("openbao_kms_auth_login_total")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_annotations_are_refused_with_invalid_argument_before_any_transit_call() {
    let e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    let seed = api.current_seed().unwrap().clone();

    let with = |key: &str, value: &[u8]| {
        let mut annotations = seed.annotations.clone();
        annotations.insert(key.to_owned(), value.to_vec());
        annotations
    };
    let without = |key: &str| {
        let mut annotations = seed.annotations.clone();
        assert!(annotations.remove(key).is_some());
        annotations
    };
    let other_digest = key_id_digest("some other key");
    let cases: Vec<(&str, BTreeMap<String, Vec<u8>>)> = vec![
        (
            "another transit version",
            with("transit-key-version.kms.openbao.org", b"2"),
        ),
        (
            "another key_id hash",
            with("key-id-hash.kms.openbao.org", other_digest.as_bytes()),
        ),
        (
            "another mount hash",
            with(
                "transit-mount-hash.kms.openbao.org",
                other_digest.as_bytes(),
            ),
        ),
        (
            "another lineage hash",
            with("transit-key-hash.kms.openbao.org", other_digest.as_bytes()),
        ),
        (
            "a malformed digest",
            with("key-id-hash.kms.openbao.org", b"not-a-digest"),
        ),
        (
            "an unknown aad version",
            with("aad-version.kms.openbao.org", b"v9"),
        ),
        (
            "another provider kind",
            with("provider.kms.openbao.org", b"vault-transit"),
        ),
        (
            "no provider annotation",
            without("provider.kms.openbao.org"),
        ),
        (
            "no key_id hash annotation",
            without("key-id-hash.kms.openbao.org"),
        ),
        ("no annotations at all", BTreeMap::new()),
        (
            "a key that is not a domain name",
            with("Not_A_Domain", b"x"),
        ),
        (
            "a value that is not UTF-8",
            with("plugin-version.kms.openbao.org", &[0xff, 0xfe]),
        ),
    ];

    let before = e2e.metrics();
    for (what, annotations) in &cases {
        let mut request = seed.decrypt_request(api.next_uid());
        request.annotations = annotations.clone();
        assert_eq!(
            code_of(api.decrypt(request).await),
            Code::InvalidArgument,
            "{what}"
        );
    }
    let after = e2e.metrics();

    let delta =
        |operation: &str| transit_calls(&after, operation) - transit_calls(&before, operation);
    // Only a deep probe (one encrypt and one decrypt, every 30 s) can call Transit meanwhile;
    // no Encrypt was sent, so every transit_encrypt in the window is one.
    let deep_probes = delta("transit_encrypt");
    assert_eq!(
        delta("transit_decrypt") + delta("transit_batch_decrypt"),
        deep_probes,
        "a tampered Decrypt reached Transit"
    );
    let aad_errors =
        |metrics: &Metrics| metrics.sum("openbao_kms_aad_validation_errors_total", &[]);
    assert_eq!(
        aad_errors(&after) - aad_errors(&before),
        cases.len() as f64,
        "every refusal is counted as an AAD validation error"
    );

    // The untampered seed still decrypts.
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_formed_but_unknown_key_id_is_refused_with_not_found() {
    let e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    let seed = api.current_seed().unwrap().clone();

    let unknown = format!("obk2.{}", key_id_digest("a key this provider never had"));
    assert_eq!(unknown.len(), seed.key_id.len());
    let mut request = seed.decrypt_request(api.next_uid());
    request.key_id = unknown.clone();
    request.annotations.insert(
        "key-id-hash.kms.openbao.org".to_owned(),
        key_id_digest(&unknown).into_bytes(),
    );
    assert_eq!(code_of(api.decrypt(request).await), Code::NotFound);

    // A key_id of another plugin is not well formed for this one.
    let mut request = seed.decrypt_request(api.next_uid());
    request.key_id = "projects/p/locations/l/keyRings/r/cryptoKeys/k".to_owned();
    assert_eq!(code_of(api.decrypt(request).await), Code::InvalidArgument);

    let metrics = e2e.metrics();
    let errors = |reason: &str| {
        metrics.sum(
            "openbao_kms_decrypt_key_id_errors_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(errors("key_id_unknown"), 1.0);
    assert_eq!(errors("key_id_malformed"), 1.0);
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_ciphertexts_key_ids_annotations_and_grpc_messages_are_refused() {
    let e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    let seed = api.current_seed().unwrap().clone();

    let mut request = seed.decrypt_request(api.next_uid());
    request.ciphertext = vec![b'v'; 1025];
    assert_eq!(
        code_of(api.decrypt(request).await),
        Code::InvalidArgument,
        "ciphertext of 1025 bytes"
    );

    let mut request = seed.decrypt_request(api.next_uid());
    request.key_id = format!("obk2.{}", "A".repeat(1020));
    assert_eq!(request.key_id.len(), 1025);
    assert_eq!(
        code_of(api.decrypt(request).await),
        Code::InvalidArgument,
        "key_id of 1025 bytes"
    );

    let mut request = seed.decrypt_request(api.next_uid());
    let used: usize = request
        .annotations
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    let key = "padding.example.com";
    request
        .annotations
        .insert(key.to_owned(), vec![b'x'; 32 * 1024 + 1 - used - key.len()]);
    let total: usize = request
        .annotations
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    assert_eq!(total, 32 * 1024 + 1);
    assert_eq!(
        code_of(api.decrypt(request).await),
        Code::InvalidArgument,
        "annotations of 32 KiB + 1 byte"
    );

    // A plaintext that fits in a message but whose ciphertext could not fit 1024 bytes.
    assert_eq!(
        code_of(api.encrypt(vec![1; 2048]).await),
        Code::InvalidArgument,
        "plaintext of 2 KiB"
    );

    // Messages over the 64 KiB limit are refused by tonic's decoder, which answers OutOfRange
    // (grpc-go would say ResourceExhausted) before the service sees anything.
    assert_eq!(
        code_of(api.encrypt(vec![1; 64 * 1024 + 1]).await),
        Code::OutOfRange,
        "Encrypt message over 64 KiB"
    );
    let mut request = seed.decrypt_request(api.next_uid());
    request.ciphertext = vec![b'v'; 70 * 1024];
    assert_eq!(
        code_of(api.decrypt(request).await),
        Code::OutOfRange,
        "Decrypt message over 64 KiB"
    );

    // None of it hurt the plugin.
    assert!(api.poll_status().await.unwrap().healthy);
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_restarted_with_sigterm_keeps_its_key_id_and_decrypts_everything_encrypted_before()
{
    let mut e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    let key_id = api.current_seed().unwrap().key_id.clone();

    let status = e2e.stop_plugin();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert!(
        !e2e.socket().exists(),
        "the socket file is removed on shutdown"
    );

    e2e.start_plugin();
    // The same apiserver, which kept running: a new connection, the same stored seeds.
    api.reconnect().await.unwrap();
    let status = api.poll_status().await.unwrap();
    assert!(status.healthy, "{status:?}");
    assert_eq!(status.key_id, key_id, "the key_id is unchanged");
    assert_eq!(api.ensure_write_seed().await.unwrap(), WriteSeed::Current);
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
    assert_eq!(api.status_history(), std::slice::from_ref(&key_id));

    // A restarted apiserver writes a fresh seed under the same key.
    let restarted = apiserver_with_a_seed(&e2e).await;
    assert_eq!(restarted.current_seed().unwrap().key_id, key_id);
    assert_eq!(
        e2e.metrics().value("openbao_kms_socket_restarts_total"),
        Some(0.0),
        "a clean shutdown leaves no stale socket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_state_path_is_refused_by_the_lock_while_the_first_keeps_serving()
 {
    let mut e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;

    // Same state path; its own socket and listeners, so only the lock can refuse it.
    let mut second = e2e.config().clone();
    second.socket = private_dir(&e2e.dir().join("run2")).join("kms.sock");
    second.metrics_port = free_port();
    second.health_port = free_port();
    let config = e2e.write_config("second", &second);
    let mut process: PluginProcess = e2e.spawn_plugin(&config, "second");
    let status = process.expect_exit(Duration::from_secs(20));
    let log = process.log();
    assert_eq!(status.code(), Some(5), "exit status; log:\n{log}");
    assert!(log.contains("locked by another process"), "log:\n{log}");
    assert!(!second.socket.exists());

    assert_eq!(
        e2e.plugin().try_exit(),
        None,
        "the first instance still runs"
    );
    assert!(api.poll_status().await.unwrap().healthy);
    assert_eq!(api.ensure_write_seed().await.unwrap(), WriteSeed::Current);
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_file_is_removed_and_counted_when_the_plugin_starts() {
    let mut e2e = E2e::new();
    // A socket nobody serves any more, as a killed plugin leaves behind.
    drop(std::os::unix::net::UnixListener::bind(e2e.socket()).unwrap());
    assert!(
        std::fs::symlink_metadata(e2e.socket())
            .unwrap()
            .file_type()
            .is_socket()
    );

    e2e.start_plugin();
    let metrics = e2e.metrics();
    assert_eq!(
        metrics.value("openbao_kms_socket_restarts_total"),
        Some(1.0)
    );
    assert!(e2e.plugin().log().contains("socket.stale_removed"));
    let mut api = apiserver_with_a_seed(&e2e).await;
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_is_never_taken_over_by_a_second_instance() {
    let mut e2e = E2e::running();
    let mut api = apiserver_with_a_seed(&e2e).await;
    let key_id = api.current_seed().unwrap().key_id.clone();

    // Another state path (so the lock does not refuse it first), the same socket path.
    let mut second = e2e.config().clone();
    second.state_path = private_dir(&e2e.dir().join("state2")).join("key-registry.json");
    second.metrics_port = free_port();
    second.health_port = free_port();
    let config = e2e.write_config("second", &second);
    let mut process = e2e.spawn_plugin(&config, "second");
    // It bootstraps against OpenBao first (a second or two), then finds the socket in use.
    let status = process.expect_exit(Duration::from_secs(30));
    let log = process.log();
    assert_eq!(status.code(), Some(5), "exit status; log:\n{log}");
    assert!(
        log.contains("another process is serving on the socket"),
        "log:\n{log}"
    );

    assert_eq!(
        e2e.plugin().try_exit(),
        None,
        "the first instance still runs"
    );
    assert!(
        std::fs::symlink_metadata(e2e.socket())
            .unwrap()
            .file_type()
            .is_socket()
    );
    let status = api.poll_status().await.unwrap();
    assert!(status.healthy);
    assert_eq!(status.key_id, key_id);
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
    // New connections reach the first instance too.
    let mut fresh = e2e.apiserver().await;
    assert_eq!(fresh.poll_status().await.unwrap().key_id, key_id);
}

#[test]
fn an_invalid_configuration_exits_with_code_3_and_says_config_invalid_on_stderr() {
    let dir = tempfile::Builder::new()
        .prefix("bao-kms-e2e-config-")
        .tempdir()
        .unwrap();
    let run = private_dir(&dir.path().join("run"));
    let state = private_dir(&dir.path().join("state"));
    let config = dir.path().join("config.yaml");
    let text = format!(
        r#"configVersion: v1alpha1
server:
  socketPath: {socket}
  socketDirectories: ["{run}"]
  metricsAddress: ""
  healthAddress: ""
openbao:
  address: http://127.0.0.1:8200
  caCertFile: {dir}/ca.pem
  tlsServerName: 127.0.0.1
  instanceId: bao-e2e
auth:
  method: approle
  approle:
    roleIdFile: {dir}/role-id
    secretIdFile: {dir}/secret-id
transit:
  mountPath: transit
  keyName: kms-key
  keyIdScope:
    providerName: e2e-kms
    clusterId: e2e-cluster
    transitMountId: transit-e2e
    keyLineageId: lineage
state:
  path: {state}/key-registry.json
"#,
        socket = run.join("kms.sock").display(),
        run = run.display(),
        dir = dir.path().display(),
        state = state.display(),
    );
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();

    let mut process = PluginProcess::serve(&config, dir.path(), "plugin");
    let status = process.expect_exit(Duration::from_secs(10));
    let stderr = process.log();
    assert_eq!(status.code(), Some(3), "stderr:\n{stderr}");
    assert!(stderr.starts_with("config invalid; "), "stderr:\n{stderr}");
    assert!(
        stderr.contains("openbao.address: must use https"),
        "stderr:\n{stderr}"
    );
    assert_eq!(process.stdout(), "");
    assert!(!run.join("kms.sock").exists());
}
