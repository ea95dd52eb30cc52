//! Persistence failures of the real plugin against a real OpenBao 2.7.2, with the registry on a
//! filesystem the test mounts: a state write that blocks on a frozen ext4 counts as failed after
//! the core's 10 s save deadline, and a write that fails with ENOSPC on a full tmpfs fails at
//! once. Either way persistence is degraded (`/ready`, the metric), Status stays healthy and
//! Encrypt keeps working with the active key (docs/rotation-safety.md), and once the disk is
//! back a later write lands and the rotation completes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;
mod files_support;

use std::path::Path;
use std::time::{Duration, Instant};

use e2e_support::kube_apiserver::WriteSeed;
use e2e_support::{Deadline, E2e, now};
use files_support::TestMount;

/// The core's save deadline (`SAVE_DEADLINE` in core/src/provider/persist.rs).
const SAVE_DEADLINE: Duration = Duration::from_secs(10);
const DEGRADED_METRIC: &str = "openbao_kms_rotation_persistence_degraded";

/// Points the test configuration's `state.path` at `state`.
fn move_state_to(e2e: &E2e, state: &Path) {
    let old = format!("  path: {}\n", e2e.config().state_path.display());
    let text = std::fs::read_to_string(e2e.config_path()).unwrap();
    assert!(text.contains(&old), "{text}");
    let text = text.replace(&old, &format!("  path: {}\n", state.display()));
    std::fs::write(e2e.config_path(), text).unwrap();
}

/// Polls `/ready` until `persistence_degraded` is `degraded`; returns when it was seen.
fn wait_degraded(e2e: &E2e, degraded: bool, timeout: Duration) -> Instant {
    let deadline = Deadline::after(timeout, format!("persistence_degraded={degraded}"));
    loop {
        let (_, ready) = e2e.ready();
        if ready["persistence_degraded"] == degraded {
            return now();
        }
        deadline.check();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What must hold while persistence is degraded.
async fn serving_while_degraded(e2e: &E2e) {
    let (code, ready) = e2e.ready();
    let reasons = ready["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|reason| reason == "state_save_failed"),
        "{ready}"
    );
    assert_eq!(
        ready["healthz"], "ok",
        "a failed save does not block Status: {ready}"
    );
    assert_eq!(code, 200, "{ready}");
    assert_eq!(e2e.metrics().value(DEGRADED_METRIC), Some(1.0));
    let mut api = e2e.apiserver().await;
    let status = api.poll_status().await.unwrap();
    assert!(status.healthy, "{status:?}");
    assert!(
        matches!(
            api.ensure_write_seed().await.unwrap(),
            WriteSeed::Written(_) | WriteSeed::Current
        ),
        "Encrypt keeps working with the active key"
    );
    assert_eq!(api.decrypt_all().await.unwrap(), 1);
}

/// After the disk is back: the retry lands and the rotation completes.
fn recovers(e2e: &E2e) {
    wait_degraded(e2e, false, Duration::from_secs(30));
    assert_eq!(e2e.metrics().value(DEGRADED_METRIC), Some(0.0));
    let deadline = Deadline::after(Duration::from_secs(30), "the promotion of version 2");
    while e2e.metrics().value("openbao_kms_key_version") != Some(2.0) {
        deadline.check();
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_on_a_frozen_filesystem_degrades_persistence_at_its_deadline_and_retries() {
    let Some(mut mount) = TestMount::ext4(16) else {
        return;
    };
    let mut e2e = E2e::new();
    // Dropped first: the filesystem is thawed before the plugin is stopped, even on a panic.
    let _thaw = mount.thaw_guard();
    move_state_to(&e2e, &mount.path().join("key-registry.json"));
    e2e.start_plugin();
    assert_eq!(
        e2e.apiserver().await.ensure_write_seed().await.unwrap(),
        WriteSeed::Written(0)
    );

    mount.freeze();
    let frozen = now();
    e2e.bao().rotate_key();
    let seen = wait_degraded(&e2e, true, SAVE_DEADLINE + Duration::from_secs(20));
    let after = seen - frozen;
    assert!(
        after >= SAVE_DEADLINE,
        "degraded only once the deadline passed, not at the first slow write ({after:?})"
    );
    serving_while_degraded(&e2e).await;
    // Retries fail at once while the first write is still blocked.
    let deadline = Deadline::after(Duration::from_secs(10), "a refused retry");
    while !e2e.plugin().log().contains("has not returned for") {
        deadline.check();
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("frozen filesystem: persistence degraded {after:?} after the freeze");

    mount.thaw();
    recovers(&e2e);
    assert!(
        e2e.plugin()
            .log()
            .contains("\"message\":\"state.write_slow\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_degrades_persistence_at_once_and_a_later_write_lands() {
    let Some(mount) = TestMount::tmpfs(256) else {
        return;
    };
    let mut e2e = E2e::new();
    move_state_to(&e2e, &mount.path().join("key-registry.json"));
    e2e.start_plugin();
    assert_eq!(
        e2e.apiserver().await.ensure_write_seed().await.unwrap(),
        WriteSeed::Written(0)
    );

    let filler = mount.path().join("filler");
    // Writing until the filesystem is full is the point: the error is expected.
    let _ = std::fs::write(&filler, vec![0_u8; 256 * 1024]);
    let full = now();
    e2e.bao().rotate_key();
    let seen = wait_degraded(&e2e, true, Duration::from_secs(15));
    serving_while_degraded(&e2e).await;
    assert!(
        e2e.plugin().log().contains("No space left on device"),
        "{}",
        e2e.plugin().log_tail(20)
    );
    eprintln!(
        "ENOSPC: persistence degraded {:?} after the disk filled",
        seen - full
    );

    std::fs::remove_file(&filler).unwrap();
    recovers(&e2e);
}
