//! Local checks of a JWT before it is sent to OpenBao's JWT login.
//!
//! The signature is verified by OpenBao only; these checks catch an expired, premature or
//! misaddressed token early, with a reason that names the claim but never its value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// What the configuration expects of the JWT.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct JwtExpectations {
    /// `exp - now` must be greater than this.
    pub min_remaining_ttl: Duration,
    /// Tolerance for `nbf`, `iat` and `exp`.
    pub clock_skew_leeway: Duration,
    /// Required `iss`, when set.
    pub expected_issuer: Option<String>,
    /// `aud` (a string or an array) must contain one of these, when not empty.
    pub expected_audience: Vec<String>,
    /// Required `sub`, when set.
    pub expected_subject: Option<String>,
}

/// Facts about an accepted JWT (not secret).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct JwtSummary {
    /// `exp` in Unix seconds.
    pub expires_at_unix: u64,
    /// `exp - now`, zero when negative (possible within the leeway).
    pub remaining: Duration,
}

/// Why a JWT was refused locally. Messages name the claim, never a value.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three non-empty base64url parts without whitespace, or not JSON objects.
    #[error("jwt is not a compact JWS with a JSON payload")]
    Malformed,
    /// `exp` is missing.
    #[error("jwt has no exp claim")]
    MissingExpiry,
    /// `exp`, `nbf` or `iat` is not a non-negative integer.
    #[error("jwt time claim is not a non-negative integer")]
    InvalidTimeClaim,
    /// `exp` is in the past (beyond the leeway).
    #[error("jwt is expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("jwt is not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("jwt was issued in the future (iat)")]
    IssuedInFuture,
    /// Less than `minRemainingTtl` left.
    #[error("jwt remaining lifetime is below minRemainingTtl")]
    InsufficientRemainingTtl,
    /// `iss` does not match.
    #[error("jwt issuer does not match expectedIssuer")]
    IssuerMismatch,
    /// `aud` does not contain an expected audience.
    #[error("jwt audience does not match expectedAudience")]
    AudienceMismatch,
    /// `sub` does not match.
    #[error("jwt subject does not match expectedSubject")]
    SubjectMismatch,
}

impl JwtError {
    /// A stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "jwt_malformed",
            Self::MissingExpiry => "jwt_exp_missing",
            Self::InvalidTimeClaim => "jwt_time_claim_invalid",
            Self::Expired => "jwt_expired",
            Self::NotYetValid => "jwt_not_yet_valid",
            Self::IssuedInFuture => "jwt_issued_in_future",
            Self::InsufficientRemainingTtl => "jwt_remaining_ttl_too_short",
            Self::IssuerMismatch => "jwt_issuer_mismatch",
            Self::AudienceMismatch => "jwt_audience_mismatch",
            Self::SubjectMismatch => "jwt_subject_mismatch",
        }
    }
}

/// Checks a compact JWT's shape and claims against `expectations` at wall-clock `now`.
///
/// Rules: three non-empty base64url parts (padding tolerated) without whitespace; header and
/// payload JSON objects; `exp` required; `exp`, `nbf`, `iat` non-negative integers;
/// `nbf ≤ now + leeway`, `iat ≤ now + leeway`, `exp > now − leeway`, `exp − now >
/// minRemainingTtl`; `iss`, `sub` equal and `aud` (string or array) any-match when configured.
///
/// # Errors
/// The first [`JwtError`] found.
pub fn check_jwt(
    jwt: &str,
    now: SystemTime,
    expectations: &JwtExpectations,
) -> Result<JwtSummary, JwtError> {
    let claims = decode_claims(jwt)?;
    let now = i128::from(
        now.duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
    );
    let leeway = i128::from(expectations.clock_skew_leeway.as_secs());

    let exp = time_claim(&claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
    let nbf = time_claim(&claims, "nbf")?;
    let iat = time_claim(&claims, "iat")?;
    if nbf.is_some_and(|nbf| i128::from(nbf) > now + leeway) {
        return Err(JwtError::NotYetValid);
    }
    if iat.is_some_and(|iat| i128::from(iat) > now + leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    let exp_wide = i128::from(exp);
    if exp_wide <= now - leeway {
        return Err(JwtError::Expired);
    }
    let remaining = exp_wide - now;
    if remaining <= i128::from(expectations.min_remaining_ttl.as_secs()) {
        return Err(JwtError::InsufficientRemainingTtl);
    }

    if let Some(issuer) = &expectations.expected_issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        return Err(JwtError::IssuerMismatch);
    }
    if !expectations.expected_audience.is_empty() {
        let matches = |aud: &str| {
            expectations
                .expected_audience
                .iter()
                .any(|want| want == aud)
        };
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => matches(aud),
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(matches),
            Some(_) | None => false,
        };
        if !ok {
            return Err(JwtError::AudienceMismatch);
        }
    }
    if let Some(subject) = &expectations.expected_subject
        && claims.get("sub").and_then(Value::as_str) != Some(subject.as_str())
    {
        return Err(JwtError::SubjectMismatch);
    }
    Ok(JwtSummary {
        expires_at_unix: exp,
        remaining: Duration::from_secs(u64::try_from(remaining).unwrap_or(0)),
    })
}

fn decode_claims(jwt: &str) -> Result<Map<String, Value>, JwtError> {
    if jwt.is_empty()
        || jwt
            .bytes()
            .any(|b| b.is_ascii_whitespace() || !b.is_ascii_graphic())
    {
        return Err(JwtError::Malformed);
    }
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let signature = b64url(signature)?;
    if signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    let header: Value =
        serde_json::from_slice(&b64url(header)?).map_err(|_| JwtError::Malformed)?;
    if !header.is_object() {
        return Err(JwtError::Malformed);
    }
    match serde_json::from_slice(&b64url(payload)?) {
        Ok(Value::Object(claims)) => Ok(claims),
        Ok(_) | Err(_) => Err(JwtError::Malformed),
    }
}

fn b64url(part: &str) -> Result<Vec<u8>, JwtError> {
    let unpadded = part.trim_end_matches('=');
    if unpadded.is_empty() {
        return Err(JwtError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(unpadded)
        .map_err(|_| JwtError::Malformed)
}

fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(JwtError::InvalidTimeClaim),
    }
}
