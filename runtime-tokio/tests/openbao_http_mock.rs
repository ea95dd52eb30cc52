//! The transport against a scripted HTTPS server: redirects are never followed, bodies are
//! bounded, and 401/429/5xx/timeouts are classified as documented. Also checks which headers
//! go where (no token on login, no namespace on `sys/health`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bao_kms_core::transit::{FailureClass, TransitRequest};
use bao_kms_runtime_tokio::openbao::{AuthSettings, CaCertificates, ClientSettings, OpenBaoClient};
use support::mock::MockServer;

fn token_file(mock: &MockServer) -> AuthSettings {
    let path = mock.dir().join("token");
    std::fs::write(&path, "s.mock-file-token\n").unwrap();
    AuthSettings::Token { token_file: path }
}

fn settings(mock: &MockServer, key_name: &str) -> ClientSettings {
    let mut settings =
        support::client_settings(mock.address(), mock.ca_pem(), key_name, token_file(mock));
    settings.namespace = Some("team-a".to_owned());
    settings.timeout = Duration::from_millis(800);
    settings
}

/// The failure of reading key metadata for a scripted key name.
fn metadata_failure(mock: &MockServer, key_name: &str) -> bao_kms_core::transit::TransitFailure {
    let client = OpenBaoClient::new(settings(mock, key_name)).unwrap();
    client
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err()
}

#[test]
fn redirects_are_never_followed() {
    let mock = MockServer::start();
    for status in [301, 302, 303, 307, 308] {
        let failure = metadata_failure(&mock, &format!("r{status}"));
        assert_eq!(
            (failure.class, failure.http_status),
            (FailureClass::Unavailable, Some(status))
        );
    }
    // A redirected login (POST) is not followed either, and keeps the Unavailable class.
    let mut settings = settings(&mock, "kms-key");
    let dir = mock.dir();
    std::fs::write(dir.join("role-id"), "role").unwrap();
    std::fs::write(dir.join("secret-id"), "secret").unwrap();
    settings.auth = AuthSettings::AppRole {
        mount_path: "r307".to_owned(),
        role_id_file: dir.join("role-id"),
        secret_id_file: dir.join("secret-id"),
    };
    let client = OpenBaoClient::new(settings).unwrap();
    let failure = client
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::Unavailable, Some(307))
    );

    let requests = mock.requests();
    assert!(
        requests.iter().all(|line| !line.contains("/v1/followed")),
        "{requests:#?}"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|line| line.contains("/keys/r3"))
            .count(),
        5
    );
    assert_eq!(
        requests
            .iter()
            .filter(|line| line.contains("/auth/r307/login"))
            .count(),
        1
    );
}

#[test]
fn statuses_are_classified_with_retry_after() {
    let mock = MockServer::start();
    let failure = metadata_failure(&mock, "s429");
    assert_eq!(failure.class, FailureClass::RateLimited);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
    // A bare 503 (a proxy, a standby without forwarding) is unavailable; only OpenBao's own
    // "sealed" answer is classified as sealed.
    assert_eq!(
        metadata_failure(&mock, "s503").class,
        FailureClass::Unavailable
    );
    assert_eq!(
        metadata_failure(&mock, "s500sealed").class,
        FailureClass::Sealed
    );
    assert_eq!(
        metadata_failure(&mock, "s500").class,
        FailureClass::Unavailable
    );
    assert_eq!(
        metadata_failure(&mock, "s502").class,
        FailureClass::Unavailable
    );
    assert_eq!(
        metadata_failure(&mock, "s404").class,
        FailureClass::NotFound
    );
    assert_eq!(
        metadata_failure(&mock, "s405").class,
        FailureClass::InvalidRequest
    );
    assert_eq!(
        metadata_failure(&mock, "s400").class,
        FailureClass::InvalidRequest
    );
}

#[test]
fn oversize_malformed_and_slow_answers_are_unavailable_or_timeout() {
    let mock = MockServer::start();
    let failure = metadata_failure(&mock, "big");
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::Unavailable, Some(200))
    );
    let failure = metadata_failure(&mock, "garbage");
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::Unavailable, Some(200))
    );
    let failure = metadata_failure(&mock, "slow");
    assert_eq!(failure.class, FailureClass::Timeout);
}

#[test]
fn a_401_is_retried_once_after_a_forced_login() {
    let mock = MockServer::start();
    let client = OpenBaoClient::new(settings(&mock, "s401")).unwrap();
    let failure = client
        .execute(&TransitRequest::ReadKeyMetadata)
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.http_status),
        (FailureClass::PermissionDenied, Some(401))
    );
    let requests = mock.requests();
    let keys = requests
        .iter()
        .filter(|line| line.contains("/keys/s401"))
        .count();
    let logins = requests
        .iter()
        .filter(|line| line.contains("lookup-self"))
        .count();
    assert_eq!((keys, logins), (2, 2), "{requests:#?}");
    assert_eq!(client.auth_stats().recoveries, 1);
}

#[test]
fn headers_go_where_they_belong() {
    let mock = MockServer::start();
    let dir = mock.dir();
    std::fs::write(dir.join("role-id"), "role").unwrap();
    std::fs::write(dir.join("secret-id"), "secret").unwrap();
    let mut settings = settings(&mock, "s404");
    settings.auth = AuthSettings::AppRole {
        mount_path: "approle".to_owned(),
        role_id_file: dir.join("role-id"),
        secret_id_file: dir.join("secret-id"),
    };
    settings.ca_certificates = CaCertificates::File(mock.ca_file());
    let client = OpenBaoClient::new(settings).unwrap();
    assert_eq!(client.health().unwrap().version, "mock");
    assert_eq!(
        client
            .execute(&TransitRequest::ReadKeyMetadata)
            .unwrap_err()
            .class,
        FailureClass::NotFound
    );
    let requests = mock.requests();
    assert_eq!(
        requests,
        vec![
            "GET /v1/sys/health token=0 namespace=-".to_owned(),
            "POST /v1/auth/approle/login token=0 namespace=team-a".to_owned(),
            "GET /v1/transit/keys/s404 token=1 namespace=team-a".to_owned(),
        ]
    );
}
