//! Login backoff against a real OpenBao 2.7.2, on a clock the test moves: a rejected credential
//! costs one login however many callers wait, the next login waits a jittered, doubling
//! interval (the core's `LoginBackoff`), callers meanwhile get the failure at once, and a SIGHUP
//! reload (`reload_credentials`) logs in right away with the fixed credential.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bao_kms_core::transit::FailureClass;
use bao_kms_runtime_tokio::openbao::{AuthSettings, Clock, OpenBaoClient};
use support::bao::BaoServer;

/// A monotonic clock the test moves in milliseconds.
fn manual_clock() -> (Arc<AtomicU64>, Clock) {
    let real = Clock::system();
    let (base, wall) = (real.now(), real.wall());
    let offset = Arc::new(AtomicU64::new(0));
    let (a, b) = (Arc::clone(&offset), Arc::clone(&offset));
    let clock = Clock::new(
        move || base + Duration::from_millis(a.load(Ordering::SeqCst)),
        move || wall + Duration::from_millis(b.load(Ordering::SeqCst)),
    );
    (offset, clock)
}

#[test]
fn a_rejected_credential_costs_one_login_for_all_callers_and_the_next_waits_its_backoff() {
    let server = BaoServer::shared();
    let auth = server.new_approle("kms-plugin");
    let AuthSettings::AppRole { secret_id_file, .. } = &auth else {
        panic!("not an AppRole");
    };
    let good = std::fs::read(secret_id_file).unwrap();
    std::fs::write(secret_id_file, "00000000-0000-0000-0000-000000000000\n").unwrap();
    let (offset, clock) = manual_clock();
    let client = Arc::new(
        OpenBaoClient::with_clock(server.settings("kms-key", auth.clone()), clock).unwrap(),
    );

    let callers: Vec<_> = (0..16)
        .map(|_| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || client.ensure_token())
        })
        .collect();
    for caller in callers {
        let failure = caller.join().unwrap().unwrap_err();
        assert_eq!(failure.class, FailureClass::AuthFailed);
    }
    assert_eq!(
        client.auth_stats().logins_failed,
        1,
        "one login for 16 callers"
    );

    // Within the first wait (at least half of 1 s) callers fail at once, with no login.
    offset.fetch_add(400, Ordering::SeqCst);
    let failure = client.ensure_token().unwrap_err();
    assert_eq!(failure.class, FailureClass::AuthFailed);
    assert_eq!(client.auth_stats().logins_failed, 1);

    // After the first wait (at most 1 s) the next login happens, and fails again.
    offset.fetch_add(700, Ordering::SeqCst);
    assert!(client.ensure_token().is_err());
    assert_eq!(client.auth_stats().logins_failed, 2);

    // The second wait is between 1 s and 2 s: at 0.9 s no login, at 2 s one.
    offset.fetch_add(900, Ordering::SeqCst);
    assert!(client.ensure_token().is_err());
    assert_eq!(client.auth_stats().logins_failed, 2);
    offset.fetch_add(1_100, Ordering::SeqCst);
    assert!(client.ensure_token().is_err());
    assert_eq!(client.auth_stats().logins_failed, 3);

    // The operator fixes the file and sends SIGHUP: the reload logs in at once.
    std::fs::write(secret_id_file, good).unwrap();
    assert!(
        client.ensure_token().is_err(),
        "still inside the third wait"
    );
    client.token_manager().reload_credentials().unwrap();
    client.ensure_token().unwrap();
    assert_eq!(client.auth_stats().logins_succeeded, 1);
    assert_eq!(client.auth_stats().logins_failed, 3);
}
