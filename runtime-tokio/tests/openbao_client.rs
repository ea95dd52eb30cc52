//! The OpenBao client against a real OpenBao 2.7.2 dev server (TLS, transit with
//! `disable_upsert`, the least-privilege `kms-plugin` policy, AppRole and token auth).
//!
//! The tests of this binary share one server while they run concurrently; each uses its own
//! key or AppRole mount where it changes server state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use bao_kms_core::ciphertext::TransitCiphertext;
use bao_kms_core::plaintext::Plaintext;
use bao_kms_core::transit::{
    BatchDecryptItem, FailureClass, KeyMetadata, TransitFailure, TransitRequest, TransitResponse,
};
use bao_kms_core::version::KeyVersion;
use bao_kms_runtime_tokio::openbao::{AuthSettings, CaCertificates, Clock, OpenBaoClient};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use support::bao::BaoServer;
use support::{assert_no_secret, closed_port};

const AAD: &str = "dWlkLTEyMw==";
const OTHER_AAD: &str = "dWlkLTQ1Ng==";

fn version(n: u64) -> KeyVersion {
    KeyVersion::new(n).unwrap()
}

fn encrypt(client: &OpenBaoClient, plaintext: &[u8], key_version: u64, aad: &str) -> String {
    let request = TransitRequest::Encrypt {
        plaintext: Plaintext::new(plaintext.to_vec()),
        key_version: version(key_version),
        associated_data: aad.to_owned(),
    };
    let TransitResponse::Encrypted {
        ciphertext,
        key_version: used,
    } = client.execute(&request).unwrap()
    else {
        panic!("unexpected answer to encrypt");
    };
    assert_eq!(used, key_version);
    ciphertext
}

fn decrypt(
    client: &OpenBaoClient,
    ciphertext: &str,
    aad: &str,
) -> Result<Plaintext, TransitFailure> {
    let request = TransitRequest::Decrypt {
        ciphertext: TransitCiphertext::parse(ciphertext.as_bytes()).unwrap(),
        associated_data: aad.to_owned(),
    };
    client.execute(&request).map(|response| {
        let TransitResponse::Decrypted { plaintext } = response else {
            panic!("unexpected answer to decrypt");
        };
        plaintext
    })
}

fn metadata(client: &OpenBaoClient) -> KeyMetadata {
    let TransitResponse::KeyMetadata(metadata) =
        client.execute(&TransitRequest::ReadKeyMetadata).unwrap()
    else {
        panic!("unexpected answer to a metadata read");
    };
    metadata
}

/// A clock the test moves by hand, starting at the real now.
struct ManualClock {
    offset_secs: Arc<AtomicU64>,
}

impl ManualClock {
    fn new() -> (Self, Clock) {
        let real = Clock::system();
        let (base, wall) = (real.now(), real.wall());
        let offset_secs = Arc::new(AtomicU64::new(0));
        let (a, b) = (Arc::clone(&offset_secs), Arc::clone(&offset_secs));
        let clock = Clock::new(
            move || base + Duration::from_secs(a.load(Ordering::SeqCst)),
            move || wall + Duration::from_secs(b.load(Ordering::SeqCst)),
        );
        (Self { offset_secs }, clock)
    }

    fn advance(&self, secs: u64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }
}

#[test]
fn approle_encrypt_with_version_and_aad_round_trips() {
    let server = BaoServer::shared();
    let client = OpenBaoClient::new(server.settings("kms-key", server.approle())).unwrap();
    let health = client.health().unwrap();
    assert!(health.initialized && !health.sealed && !health.standby);
    assert_eq!(
        (health.http_status, health.version.as_str()),
        (200, "2.7.2")
    );

    let secret = b"0123456789abcdef0123456789abcdef";
    let ciphertext = encrypt(&client, secret, 1, AAD);
    assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
    assert_eq!(ciphertext.len(), 89);
    assert_eq!(decrypt(&client, &ciphertext, AAD).unwrap().expose(), secret);

    // The AppRole token: 1 h TTL, renewable; one login so far.
    let ttl = client.token_ttl_seconds().unwrap();
    assert!((3500.0..=3600.0).contains(&ttl), "{ttl}");
    assert_eq!(client.auth_stats().logins_succeeded, 1);

    // Wrong AAD is an authentication failure of the ciphertext, not a generic 400.
    let failure = decrypt(&client, &ciphertext, OTHER_AAD).unwrap_err();
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::DecryptFailed, Some(400))
    );

    // An explicit version above the latest is refused by Transit.
    let request = TransitRequest::Encrypt {
        plaintext: Plaintext::new(secret.to_vec()),
        key_version: version(9),
        associated_data: AAD.to_owned(),
    };
    let too_new = client.execute(&request).unwrap_err();
    assert_eq!(too_new.class, FailureClass::InvalidRequest);

    let secrets = [
        server.secret("role-id"),
        server.secret("secret-id"),
        STANDARD.encode(secret),
        "0123456789abcdef".to_owned(),
        "kms-key".to_owned(),
    ];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&failure, &secrets);
    assert_no_secret(&too_new, &secrets);
    let shown = format!("{client:?}");
    assert!(
        !secrets.iter().any(|secret| shown.contains(secret)),
        "{shown}"
    );
}

#[test]
fn batch_decrypt_reports_each_item_in_order() {
    let server = BaoServer::shared();
    let client = OpenBaoClient::new(server.settings("kms-key", server.approle())).unwrap();
    let first = encrypt(&client, b"first", 1, AAD);
    let second = encrypt(&client, b"second", 1, OTHER_AAD);
    let third = encrypt(&client, b"third", 1, AAD);
    // Flip one character of the second ciphertext's body: still well-formed, no longer authentic.
    let mut tampered = second.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let item = |ciphertext: &str, aad: &str| BatchDecryptItem {
        ciphertext: TransitCiphertext::parse(ciphertext.as_bytes()).unwrap(),
        associated_data: aad.to_owned(),
    };
    let request = TransitRequest::BatchDecrypt {
        items: vec![
            item(&first, AAD),
            item(&tampered, OTHER_AAD),
            item(&third, AAD),
            item(&second, AAD),
        ],
    };
    let TransitResponse::BatchDecrypted { results } = client.execute(&request).unwrap() else {
        panic!("unexpected answer");
    };
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().unwrap().expose(), b"first");
    assert_eq!(
        results[1].as_ref().unwrap_err().class,
        FailureClass::DecryptFailed
    );
    assert_eq!(results[2].as_ref().unwrap().expose(), b"third");
    assert_eq!(
        results[3].as_ref().unwrap_err().class,
        FailureClass::DecryptFailed
    );

    // Every item failing is HTTP 400 with batch_results: still per-item answers.
    let request = TransitRequest::BatchDecrypt {
        items: vec![item(&tampered, OTHER_AAD), item(&first, OTHER_AAD)],
    };
    let TransitResponse::BatchDecrypted { results } = client.execute(&request).unwrap() else {
        panic!("unexpected answer");
    };
    assert!(
        results
            .iter()
            .all(|result| result.as_ref().unwrap_err().class == FailureClass::DecryptFailed)
    );
}

#[test]
fn key_metadata_and_mount_config_are_decoded() {
    let server = BaoServer::shared();
    let client = OpenBaoClient::new(server.settings("kms-key", server.approle())).unwrap();
    let metadata = metadata(&client);
    assert_eq!(metadata.key_type, "aes256-gcm96");
    assert_eq!(metadata.latest_version, 1);
    assert_eq!(metadata.versions.len(), 1);
    let created = metadata.versions[&1];
    let now = Clock::system()
        .wall()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        created > 1_700_000_000 && created.unsigned_abs() <= now,
        "{created}"
    );
    assert_eq!(
        (
            metadata.min_decryption_version,
            metadata.min_encryption_version,
            metadata.min_available_version
        ),
        (1, 0, 0)
    );
    assert!(!metadata.derived && !metadata.convergent_encryption && !metadata.exportable);
    assert!(!metadata.allow_plaintext_backup && !metadata.deletion_allowed);
    assert!(!metadata.imported_key && !metadata.soft_deleted);
    assert!(metadata.supports_encryption && metadata.supports_decryption);
    assert_eq!(metadata.auto_rotate_period, Duration::ZERO);

    let config = client.execute(&TransitRequest::ReadKeysConfig).unwrap();
    assert_eq!(
        config,
        TransitResponse::KeysConfig {
            disable_upsert: true
        }
    );

    let paths = vec![
        "transit/encrypt/kms-key".to_owned(),
        "transit/keys/other-key".to_owned(),
    ];
    let capabilities = client
        .execute(&TransitRequest::CapabilitiesSelf { paths })
        .unwrap();
    let expected = BTreeMap::from([
        (
            "transit/encrypt/kms-key".to_owned(),
            vec!["update".to_owned()],
        ),
        ("transit/keys/other-key".to_owned(), vec!["deny".to_owned()]),
    ]);
    assert_eq!(
        capabilities,
        TransitResponse::Capabilities { paths: expected }
    );
}

#[test]
fn rotation_and_min_decryption_version_are_observed() {
    let server = BaoServer::shared();
    let key = server.unique("rotating");
    server.create_key(&key);
    // The root token through token-file auth: TTL 0, never expires, not renewable.
    let client =
        OpenBaoClient::new(server.settings(&key, server.token_auth("root-token"))).unwrap();
    assert_eq!(metadata(&client).latest_version, 1);
    let old = encrypt(&client, b"old", 1, AAD);
    assert_eq!(client.token_ttl_seconds(), Some(f64::INFINITY));

    server.root_ok("POST", &format!("transit/keys/{key}/rotate"), None);
    let rotated = metadata(&client);
    assert_eq!(rotated.latest_version, 2);
    assert_eq!(
        rotated.versions.keys().copied().collect::<Vec<_>>(),
        vec![1, 2]
    );
    let new = encrypt(&client, b"new", 2, AAD);
    assert!(new.starts_with("vault:v2:"));
    // Encrypting with the older version is still possible when asked for explicitly.
    assert!(encrypt(&client, b"still v1", 1, AAD).starts_with("vault:v1:"));

    server.root_ok(
        "POST",
        &format!("transit/keys/{key}/config"),
        Some(json!({"min_decryption_version": 2})),
    );
    let failure = decrypt(&client, &old, AAD).unwrap_err();
    assert_eq!(failure.class, FailureClass::VersionDisallowed);
    assert_eq!(decrypt(&client, &new, AAD).unwrap().expose(), b"new");
    let trimmed = metadata(&client);
    assert_eq!(
        (trimmed.min_decryption_version, trimmed.versions.len()),
        (2, 1)
    );
}

#[test]
fn token_file_auth_works_and_missing_keys_are_not_found() {
    let server = BaoServer::shared();
    let client =
        OpenBaoClient::new(server.settings("kms-key", server.token_auth("token"))).unwrap();
    let ciphertext = encrypt(&client, b"token auth", 1, AAD);
    assert_eq!(
        decrypt(&client, &ciphertext, AAD).unwrap().expose(),
        b"token auth"
    );
    let ttl = client.token_ttl_seconds().unwrap();
    assert!((3000.0..=3600.0).contains(&ttl), "periodic token ttl {ttl}");

    // The root token can read anything, so a missing key is a clean 404.
    let root = OpenBaoClient::new(server.settings("no-such-key", server.token_auth("root-token")))
        .unwrap();
    let failure = root.execute(&TransitRequest::ReadKeyMetadata).unwrap_err();
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::NotFound, Some(404))
    );

    // A token file that does not exist is an authentication failure, with no request sent.
    let missing =
        OpenBaoClient::new(server.settings("kms-key", server.token_auth("absent"))).unwrap();
    let failure = missing
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::AuthFailed);
    assert_eq!(missing.requests_sent(), 0);
}

#[test]
fn a_revoked_token_is_replaced_by_one_approle_login() {
    let server = BaoServer::shared();
    let auth = server.new_approle("kms-plugin");
    let client = OpenBaoClient::new(server.settings("kms-key", auth.clone())).unwrap();
    let ciphertext = encrypt(&client, b"before revocation", 1, AAD);
    assert_eq!(client.auth_stats().logins_succeeded, 1);

    server.revoke_approle_tokens(&auth);
    let before = client.requests_sent();
    // Transparent: 403 with the revoked token, one login, one successful retry.
    assert_eq!(
        decrypt(&client, &ciphertext, AAD).unwrap().expose(),
        b"before revocation"
    );
    assert_eq!(client.requests_sent() - before, 3);
    let stats = client.auth_stats();
    assert_eq!(
        (
            stats.logins_succeeded,
            stats.recoveries,
            stats.recoveries_throttled
        ),
        (2, 1, 0)
    );
}

#[test]
fn a_policy_denial_is_permission_denied_after_exactly_one_retry() {
    let server = BaoServer::shared();
    let key = server.unique("not-allowed");
    server.create_key(&key);
    let (clock_control, clock) = ManualClock::new();
    let client = OpenBaoClient::with_clock(server.settings(&key, server.approle()), clock).unwrap();
    client.ensure_token().unwrap();

    let request = TransitRequest::Encrypt {
        plaintext: Plaintext::new(b"denied".to_vec()),
        key_version: version(1),
        associated_data: AAD.to_owned(),
    };
    let before = client.requests_sent();
    let failure = client.execute(&request).unwrap_err();
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::PermissionDenied, Some(403))
    );
    // encrypt (403), forced login, ONE retry (403).
    assert_eq!(client.requests_sent() - before, 3);
    assert_eq!(client.auth_stats().recoveries, 1);
    assert_eq!(client.auth_stats().logins_succeeded, 2);

    // Within 5 s, recovery is rate-limited: no login, no retry.
    let before = client.requests_sent();
    let failure = client.execute(&request).unwrap_err();
    assert_eq!(failure.class, FailureClass::PermissionDenied);
    assert_eq!(client.requests_sent() - before, 1);
    assert_eq!(client.auth_stats().recoveries_throttled, 1);

    // After the interval, one recovery is allowed again.
    clock_control.advance(6);
    let before = client.requests_sent();
    assert_eq!(
        client.execute(&request).unwrap_err().class,
        FailureClass::PermissionDenied
    );
    assert_eq!(client.requests_sent() - before, 3);
    assert_eq!(client.auth_stats().recoveries, 2);
}

#[test]
fn tokens_are_renewed_ahead_of_expiry_and_replaced_once_expired() {
    let server = BaoServer::shared();
    let (clock_control, clock) = ManualClock::new();
    let client =
        OpenBaoClient::with_clock(server.settings("kms-key", server.approle()), clock).unwrap();
    metadata(&client);
    assert_eq!(client.auth_stats().logins_succeeded, 1);

    // Inside loginBeforeTokenExpiry (300 s) of the 1 h TTL: renew-self, same token.
    clock_control.advance(3600 - 200);
    assert!(client.token_ttl_seconds().unwrap() <= 200.0);
    metadata(&client);
    let stats = client.auth_stats();
    assert_eq!((stats.renewals_succeeded, stats.logins_succeeded), (1, 1));
    assert!(client.token_ttl_seconds().unwrap() > 3000.0);

    // Past the (local) expiry: a fresh login before the call.
    clock_control.advance(2 * 3600);
    assert_eq!(client.token_ttl_seconds(), Some(0.0));
    metadata(&client);
    assert_eq!(client.auth_stats().logins_succeeded, 2);
}

#[test]
fn a_failed_renewal_falls_back_to_login() {
    let server = BaoServer::shared();
    let auth = server.new_approle("kms-plugin");
    let (clock_control, clock) = ManualClock::new();
    let client =
        OpenBaoClient::with_clock(server.settings("kms-key", auth.clone()), clock).unwrap();
    let ciphertext = encrypt(&client, b"renewal", 1, AAD);

    // Near expiry, renew-self fails (the token was revoked): a fresh login replaces it before
    // the call, so no 403 is ever seen and no recovery is needed.
    server.revoke_approle_tokens(&auth);
    clock_control.advance(3600 - 60);
    assert_eq!(
        decrypt(&client, &ciphertext, AAD).unwrap().expose(),
        b"renewal"
    );
    let stats = client.auth_stats();
    assert_eq!(
        (
            stats.renewals_failed,
            stats.logins_succeeded,
            stats.recoveries
        ),
        (1, 2, 0)
    );
}

#[test]
fn concurrent_callers_share_one_login() {
    let server = BaoServer::shared();
    let auth = server.new_approle("kms-plugin");
    let client = OpenBaoClient::new(server.settings("kms-key", auth)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || metadata(&client).latest_version)
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 1);
    }
    assert_eq!(client.auth_stats().logins_succeeded, 1);
    assert_eq!(client.requests_sent(), 9);
}

#[test]
fn tls_is_verified_against_the_configured_ca_and_server_name() {
    let server = BaoServer::shared();
    // The dev certificate names localhost and 127.0.0.1: connecting to 127.0.0.1 while
    // verifying "localhost" works through the pinned resolver.
    let mut settings = server.settings("kms-key", server.approle());
    settings.tls_server_name = Some("localhost".to_owned());
    let client = OpenBaoClient::new(settings).unwrap();
    assert_eq!(metadata(&client).latest_version, 1);

    // A name the certificate does not carry.
    let mut settings = server.settings("kms-key", server.approle());
    settings.tls_server_name = Some("bao.example.invalid".to_owned());
    let client = OpenBaoClient::new(settings).unwrap();
    assert_eq!(client.health().unwrap_err().class, FailureClass::TlsFailed);

    // A CA bundle that does not include the dev CA: login keeps the TLS class.
    let mut settings = server.settings("kms-key", server.approle());
    settings.ca_certificates = CaCertificates::File("/etc/ssl/certs/ca-certificates.crt".into());
    let client = OpenBaoClient::new(settings).unwrap();
    assert_eq!(client.health().unwrap_err().class, FailureClass::TlsFailed);
    let failure = client
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::TlsFailed);
    assert_eq!(client.auth_stats().logins_failed, 1);
}

#[test]
fn nothing_listening_is_connection_failed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s.unused\n").unwrap();
    let ca = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
    let settings = support::client_settings(
        format!("https://127.0.0.1:{}", closed_port()),
        ca,
        "kms-key",
        AuthSettings::Token {
            token_file: dir.path().join("token"),
        },
    );
    let client = OpenBaoClient::new(settings).unwrap();
    let failure = client.health().unwrap_err();
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::ConnectionFailed, None)
    );
    let failure = client
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::ConnectionFailed);
    assert_no_secret(&failure, &["s.unused"]);
}

#[test]
fn wrong_approle_credentials_are_auth_failed() {
    let server = BaoServer::shared();
    let auth = server.new_approle("kms-plugin");
    let AuthSettings::AppRole { secret_id_file, .. } = &auth else {
        unreachable!()
    };
    let wrong = "00000000-1111-2222-3333-444444444444";
    std::fs::write(secret_id_file, wrong).unwrap();
    let client = OpenBaoClient::new(server.settings("kms-key", auth.clone())).unwrap();
    let failure = client
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::AuthFailed, Some(400))
    );
    assert_no_secret(&failure, &[wrong]);
    assert_eq!(client.token_ttl_seconds(), None);
}

/// JWT login end to end: OpenBao's JWT auth verifies an RS256 signature made with openssl.
#[test]
fn jwt_file_login_works_and_bad_tokens_never_reach_openbao() {
    let server = BaoServer::shared();
    let dir = server.dir().join(server.unique("jwt"));
    std::fs::create_dir(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "jwt.key",
    ]);
    openssl(&["pkey", "-in", "jwt.key", "-pubout", "-out", "jwt.pub"]);
    let public = std::fs::read_to_string(dir.join("jwt.pub")).unwrap();

    let mount = server.unique("jwt");
    server.root_ok(
        "POST",
        &format!("sys/auth/{mount}"),
        Some(json!({"type": "jwt"})),
    );
    server.root_ok(
        "POST",
        &format!("auth/{mount}/config"),
        Some(json!({
            "jwt_validation_pubkeys": [public], "bound_issuer": "https://issuer.test",
        })),
    );
    server.root_ok(
        "POST",
        &format!("auth/{mount}/role/kms"),
        Some(json!({
            "role_type": "jwt", "user_claim": "sub", "bound_subject": "system:kms",
            "bound_audiences": ["openbao"], "token_policies": ["kms-plugin"],
            "token_no_default_policy": true, "token_ttl": "1h",
        })),
    );

    let now = Clock::system()
        .wall()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |exp: u64| {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = json!({"iss": "https://issuer.test", "aud": "openbao", "sub": "system:kms",
                            "iat": now - 5, "nbf": now - 5, "exp": exp});
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        std::fs::write(dir.join("input"), &input).unwrap();
        openssl(&[
            "dgst", "-sha256", "-sign", "jwt.key", "-out", "sig", "input",
        ]);
        let signature = URL_SAFE_NO_PAD.encode(std::fs::read(dir.join("sig")).unwrap());
        format!("{input}.{signature}")
    };
    let jwt_file = dir.join("token.jwt");
    let auth = AuthSettings::Jwt {
        mount_path: format!("auth/{mount}"),
        role: "kms".to_owned(),
        jwt_file: jwt_file.clone(),
        min_remaining_ttl: Duration::from_secs(120),
        clock_skew_leeway: Duration::from_secs(30),
        expected_issuer: Some("https://issuer.test".to_owned()),
        expected_audience: vec!["openbao".to_owned()],
        expected_subject: Some("system:kms".to_owned()),
    };

    let good = sign(now + 600);
    std::fs::write(&jwt_file, format!("{good}\n")).unwrap();
    let client = OpenBaoClient::new(server.settings("kms-key", auth.clone())).unwrap();
    let ciphertext = encrypt(&client, b"via jwt", 1, AAD);
    assert_eq!(
        decrypt(&client, &ciphertext, AAD).unwrap().expose(),
        b"via jwt"
    );
    assert_eq!(client.auth_stats().logins_succeeded, 1);

    // Too little lifetime left: refused locally, OpenBao never sees it.
    std::fs::write(&jwt_file, sign(now + 60)).unwrap();
    let client = OpenBaoClient::new(server.settings("kms-key", auth)).unwrap();
    let failure = client
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::AuthFailed);
    assert_eq!(client.requests_sent(), 0);
    assert_no_secret(&failure, &[good.as_str()]);
}
