//! Shared helpers for the OpenBao integration tests: a real OpenBao dev server (TLS, transit,
//! AppRole, least-privilege policy) and a scripted HTTPS mock for what a real server will not
//! do (redirects, oversize bodies, 429/503).
//!
//! Every process started here is stopped on `Drop`, also when a test panics. A watchdog shell
//! additionally stops an OpenBao server (and removes its directory) if the test process dies
//! without unwinding (SIGKILL, abort).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod bao;
pub(crate) mod mock;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bao_kms_runtime_tokio::openbao::{AuthSettings, CaCertificates, ClientSettings};

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Serialises port picking and server start-up inside one test binary.
static PORT_LOCK: Mutex<()> = Mutex::new(());
static PORT_SEQ: AtomicU32 = AtomicU32::new(0);

/// A port P on 127.0.0.1 such that P and P+1 are both free right now, below the usual
/// ephemeral range so outgoing connections do not grab it. Call with `PORT_LOCK` held.
pub(crate) fn free_port_pair() -> u16 {
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..2000 {
        let n = PORT_SEQ.fetch_add(1, Ordering::Relaxed);
        let offset = seed.wrapping_add(n.wrapping_mul(37)) % 4500;
        let port = u16::try_from(21000 + offset * 2).unwrap();
        let first = TcpListener::bind(("127.0.0.1", port));
        let second = TcpListener::bind(("127.0.0.1", port + 1));
        if first.is_ok() && second.is_ok() {
            return port;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}

pub(crate) fn lock_ports() -> std::sync::MutexGuard<'static, ()> {
    PORT_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Client settings with test-friendly defaults.
pub(crate) fn client_settings(
    address: String,
    ca_pem: Vec<u8>,
    key_name: &str,
    auth: AuthSettings,
) -> ClientSettings {
    ClientSettings {
        address,
        more_addresses: Vec::new(),
        ca_certificates: CaCertificates::Pem(ca_pem),
        tls_server_name: None,
        namespace: None,
        timeout: Duration::from_secs(5),
        mount_path: "transit".to_owned(),
        key_name: key_name.to_owned(),
        auth,
        login_before_token_expiry: Duration::from_secs(300),
        token_renewal_increment: Duration::from_secs(3600),
        login_timeout: Duration::from_secs(5),
    }
}

/// Asserts that neither `Display` nor `Debug` of `value` contains any of `secrets`.
pub(crate) fn assert_no_secret<T: std::fmt::Display + std::fmt::Debug>(
    value: &T,
    secrets: &[&str],
) {
    let shown = format!("{value} {value:?}");
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !shown.contains(secret),
            "a secret leaked into an error: {shown}"
        );
    }
}
