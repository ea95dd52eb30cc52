//! Local JWT checks done before a JWT login, with hand-made unsigned tokens.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bao_kms_runtime_tokio::openbao::auth::jwt::{JwtError, JwtExpectations, check_jwt};
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

fn expectations() -> JwtExpectations {
    JwtExpectations {
        min_remaining_ttl: Duration::from_secs(120),
        clock_skew_leeway: Duration::from_secs(30),
        expected_issuer: Some("https://issuer.example".to_owned()),
        expected_audience: vec!["openbao".to_owned(), "other".to_owned()],
        expected_subject: Some("system:kms".to_owned()),
    }
}

fn good_claims() -> Value {
    json!({
        "iss": "https://issuer.example",
        "aud": ["unrelated", "openbao"],
        "sub": "system:kms",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
    })
}

fn with(field: &str, value: Value) -> String {
    let mut claims = good_claims();
    claims[field] = value;
    token(&claims)
}

#[test]
fn a_valid_token_passes_and_reports_its_expiry() {
    let summary = check_jwt(&token(&good_claims()), now(), &expectations()).unwrap();
    assert_eq!(summary.expires_at_unix, NOW + 3600);
    assert_eq!(summary.remaining, Duration::from_secs(3600));

    // A single-string audience, padded base64url and surrounding-free text are all accepted.
    let mut claims = good_claims();
    claims["aud"] = json!("other");
    let header = URL_SAFE.encode(br#"{"alg":"RS256"}"#);
    let payload = URL_SAFE.encode(claims.to_string());
    let padded = format!("{header}.{payload}.c2lnbmF0dXJl");
    assert!(check_jwt(&padded, now(), &expectations()).is_ok());

    // No expectations configured: only the time rules apply.
    let loose = JwtExpectations {
        min_remaining_ttl: Duration::from_secs(60),
        ..Default::default()
    };
    assert!(check_jwt(&token(&json!({"exp": NOW + 61})), now(), &loose).is_ok());
}

#[test]
fn expired_tokens_are_refused_beyond_the_leeway() {
    assert_eq!(
        check_jwt(&with("exp", json!(NOW - 31)), now(), &expectations()),
        Err(JwtError::Expired)
    );
    // Inside the leeway it is not "expired", but far below minRemainingTtl.
    assert_eq!(
        check_jwt(&with("exp", json!(NOW - 5)), now(), &expectations()),
        Err(JwtError::InsufficientRemainingTtl)
    );
    assert_eq!(
        check_jwt(&with("exp", json!(NOW + 120)), now(), &expectations()),
        Err(JwtError::InsufficientRemainingTtl)
    );
    assert!(check_jwt(&with("exp", json!(NOW + 121)), now(), &expectations()).is_ok());
}

#[test]
fn tokens_from_the_future_are_refused() {
    assert_eq!(
        check_jwt(&with("nbf", json!(NOW + 31)), now(), &expectations()),
        Err(JwtError::NotYetValid)
    );
    assert!(check_jwt(&with("nbf", json!(NOW + 30)), now(), &expectations()).is_ok());
    assert_eq!(
        check_jwt(&with("iat", json!(NOW + 31)), now(), &expectations()),
        Err(JwtError::IssuedInFuture)
    );
}

#[test]
fn identity_claims_must_match_when_configured() {
    assert_eq!(
        check_jwt(&with("aud", json!("kubernetes")), now(), &expectations()),
        Err(JwtError::AudienceMismatch)
    );
    assert_eq!(
        check_jwt(&with("aud", json!(["a", "b"])), now(), &expectations()),
        Err(JwtError::AudienceMismatch)
    );
    assert_eq!(
        check_jwt(&with("aud", json!(7)), now(), &expectations()),
        Err(JwtError::AudienceMismatch)
    );
    assert_eq!(
        check_jwt(
            &with("iss", json!("https://evil.example")),
            now(),
            &expectations()
        ),
        Err(JwtError::IssuerMismatch)
    );
    assert_eq!(
        check_jwt(&with("sub", json!("someone-else")), now(), &expectations()),
        Err(JwtError::SubjectMismatch)
    );
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        check_jwt(&token(&claims), now(), &expectations()),
        Err(JwtError::AudienceMismatch)
    );
}

#[test]
fn malformed_tokens_and_time_claims_are_refused() {
    let good = token(&good_claims());
    let mut parts = good.split('.');
    let (header, payload) = (parts.next().unwrap(), parts.next().unwrap());
    for bad in [
        String::new(),
        format!("{header}.{payload}"),
        format!("{header}.{payload}."),
        format!("{header}.{payload}.sig.extra"),
        format!("{header}.{payload}.c2ln ature"),
        format!("{header}.!!!.c2ln"),
        format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode("[1,2]")),
        format!("{}.{payload}.c2ln", URL_SAFE_NO_PAD.encode("not json")),
    ] {
        assert_eq!(
            check_jwt(&bad, now(), &expectations()),
            Err(JwtError::Malformed),
            "{bad}"
        );
    }
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check_jwt(&token(&claims), now(), &expectations()),
        Err(JwtError::MissingExpiry)
    );
    assert_eq!(
        check_jwt(&with("exp", json!("1900000000")), now(), &expectations()),
        Err(JwtError::InvalidTimeClaim)
    );
    assert_eq!(
        check_jwt(&with("exp", json!(1.9e9)), now(), &expectations()),
        Err(JwtError::InvalidTimeClaim)
    );
    assert_eq!(
        check_jwt(&with("nbf", json!(-1)), now(), &expectations()),
        Err(JwtError::InvalidTimeClaim)
    );
}

#[test]
fn errors_name_the_claim_never_its_value() {
    let error = check_jwt(
        &with("sub", json!("secret-subject")),
        now(),
        &expectations(),
    )
    .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("secret-subject"));
    assert_eq!(error.reason(), "jwt_subject_mismatch");
}
