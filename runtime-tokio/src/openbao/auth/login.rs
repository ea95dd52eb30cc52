//! Logins and renewals: the requests each auth method sends and how their answers become a
//! token grant. The flight machinery around them lives in the parent module.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use bao_kms_core::auth::inside_refresh_window;
use bao_kms_core::transit::{FailureClass, TransitFailure};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::credentials::{CredentialError, read_credential};
use super::jwt::{JwtExpectations, check_jwt};
use super::wipe::WipedJson;
use super::{
    AuthBuildError, Grant, Lease, LoginFailure, Method, TOKEN_LOOKUP_PATH, TOKEN_RENEW_PATH,
    TokenManager, bump,
};
use crate::openbao::http::{ApiRequest, malformed_response, normalize_mount_path};

impl TokenManager {
    /// Early refresh: renew when renewable (falling back to login), else login.
    pub(super) fn refresh(&self, old: &Lease) -> Result<Grant, TransitFailure> {
        if !old.renewable {
            return self.login();
        }
        match self.renew(old) {
            Ok(renewed) => {
                let capped =
                    inside_refresh_window(renewed.ttl, self.policy.login_before_token_expiry);
                if capped {
                    // The token reached its max TTL: get a new one, keep the renewed one if
                    // the login fails.
                    Ok(self.login().unwrap_or(renewed))
                } else {
                    Ok(renewed)
                }
            }
            Err(_) => self.login(),
        }
    }

    fn renew(&self, old: &Lease) -> Result<Grant, TransitFailure> {
        let started = self.clock.now();
        let increment = self.policy.token_renewal_increment;
        let seconds = increment.as_secs() + u64::from(increment.subsec_nanos() > 0);
        let body = json!({ "increment": format!("{seconds}s") });
        let result = self
            .http
            .send(
                ApiRequest::post(TOKEN_RENEW_PATH, &body)
                    .token(old.token.as_str())
                    .timeout(self.policy.login_timeout),
            )
            .and_then(|mut response| {
                if !response.is_success() {
                    return Err(response.failure());
                }
                parse_auth(&response.take_body(), started, Some(old.token.as_str()))
            });
        match &result {
            Ok(_) => bump(&self.counters.renewals_succeeded),
            Err(failure) => {
                bump(&self.counters.renewals_failed);
                tracing::warn!(
                    auth_method = self.method.name(),
                    path = TOKEN_RENEW_PATH,
                    error_class = failure.class.as_str(),
                    http_status = failure.http_status.map(u64::from),
                    "openbao token renewal failed"
                );
            }
        }
        result
    }

    pub(super) fn login(&self) -> Result<Grant, TransitFailure> {
        let started = self.clock.now();
        *self
            .file_problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let answered = match &self.method {
            Method::Token { token_file } => self.login_token_file(token_file, started),
            Method::AppRole {
                login_path,
                role_id_file,
                secret_id_file,
            } => self.login_approle(login_path, role_id_file, secret_id_file, started),
            Method::Jwt {
                login_path,
                role,
                jwt_file,
                expectations,
            } => self.login_jwt(login_path, role, jwt_file, expectations, started),
        };
        let (verb, path) = self.method.login_request();
        let described = answered.as_ref().err().map(|failure| LoginFailure {
            method: self.method.name(),
            verb,
            path: path.to_owned(),
            answer: failure.class.as_str(),
            http_status: failure.http_status,
            credential_problem: self
                .file_problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        });
        let result = answered.map_err(login_failure);
        match &result {
            Ok(grant) => {
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                bump(&self.counters.logins_succeeded);
                tracing::info!(
                    auth_method = self.method.name(),
                    token_ttl_seconds = grant.ttl.map(|ttl| ttl.as_secs()),
                    renewable = grant.renewable,
                    "openbao login succeeded"
                );
            }
            Err(failure) => {
                bump(&self.counters.logins_failed);
                tracing::warn!(
                    auth_method = self.method.name(),
                    path,
                    error_class = failure.class.as_str(),
                    openbao_answer = described.as_ref().map_or("", |described| described.answer),
                    http_status = failure.http_status.map(u64::from),
                    credential_problem = described
                        .as_ref()
                        .and_then(|described| described.credential_problem),
                    "openbao login failed"
                );
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = described;
            }
        }
        result
    }

    fn login_token_file(
        &self,
        token_file: &std::path::Path,
        started: Instant,
    ) -> Result<Grant, TransitFailure> {
        let token = read_material(token_file, "token_file", &self.file_problem)?;
        let mut response = self.http.send(
            ApiRequest::get(TOKEN_LOOKUP_PATH)
                .token(&token)
                .timeout(self.policy.login_timeout),
        )?;
        if !response.is_success() {
            return Err(response.failure());
        }
        let body = response.take_body();
        let data = body
            .get("data")
            .ok_or_else(|| malformed_response(Some(200)))?;
        Grant::decode(token, started, data, "ttl")
    }

    fn login_approle(
        &self,
        login_path: &str,
        role_id_file: &std::path::Path,
        secret_id_file: &std::path::Path,
        started: Instant,
    ) -> Result<Grant, TransitFailure> {
        let role_id = read_material(role_id_file, "role_id_file", &self.file_problem)?;
        let secret_id = read_material(secret_id_file, "secret_id_file", &self.file_problem)?;
        let body = WipedJson::new(json!({
            "role_id": role_id.as_str(),
            "secret_id": secret_id.as_str(),
        }));
        self.post_login(login_path, &body, started)
    }

    fn login_jwt(
        &self,
        login_path: &str,
        role: &str,
        jwt_file: &std::path::Path,
        expectations: &JwtExpectations,
        started: Instant,
    ) -> Result<Grant, TransitFailure> {
        let jwt = read_material(jwt_file, "jwt_file", &self.file_problem)?;
        if let Err(error) = check_jwt(&jwt, self.clock.wall(), expectations) {
            tracing::warn!(reason = error.reason(), "jwt refused locally before login");
            *self
                .file_problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.reason());
            return Err(TransitFailure::new(FailureClass::AuthFailed));
        }
        let body = WipedJson::new(json!({ "role": role, "jwt": jwt.as_str() }));
        self.post_login(login_path, &body, started)
    }

    fn post_login(
        &self,
        login_path: &str,
        body: &Value,
        started: Instant,
    ) -> Result<Grant, TransitFailure> {
        let mut response = self
            .http
            .send(ApiRequest::post(login_path, body).timeout(self.policy.login_timeout))?;
        if !response.is_success() {
            return Err(response.failure());
        }
        parse_auth(&response.take_body(), started, None)
    }
}

/// `auth/<mount>/login` from `approle`, `auth/approle`, `/auth/jwt/`, ...
pub(super) fn login_path(mount_path: &str) -> Result<String, AuthBuildError> {
    let mount = normalize_mount_path(mount_path).ok_or(AuthBuildError::InvalidMountPath)?;
    if mount == "auth" {
        return Err(AuthBuildError::InvalidMountPath);
    }
    Ok(if mount.starts_with("auth/") {
        format!("{mount}/login")
    } else {
        format!("auth/{mount}/login")
    })
}

pub(super) fn read_material(
    path: &std::path::Path,
    setting: &'static str,
    problem: &Mutex<Option<&'static str>>,
) -> Result<Zeroizing<String>, TransitFailure> {
    read_credential(path).map_err(|error: CredentialError| {
        tracing::warn!(
            credential = setting,
            reason = error.reason(),
            "credential file refused"
        );
        *problem.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.reason());
        TransitFailure::new(FailureClass::AuthFailed)
    })
}

/// Decodes the `auth` object of a login or renew-self answer.
pub(super) fn parse_auth(
    body: &Value,
    started: Instant,
    current: Option<&str>,
) -> Result<Grant, TransitFailure> {
    let auth = body.get("auth").filter(|auth| auth.is_object());
    let auth = auth.ok_or_else(|| malformed_response(Some(200)))?;
    let token = match (auth.get("client_token").and_then(Value::as_str), current) {
        (Some(token), _) if !token.is_empty() => Zeroizing::new(token.to_owned()),
        (_, Some(current)) => Zeroizing::new(current.to_owned()),
        (Some(_) | None, None) => return Err(malformed_response(Some(200))),
    };
    Grant::decode(token, started, auth, "lease_duration")
}

/// Credential rejections become `AuthFailed`; transport, TLS, DNS, timeouts, sealed, rate
/// limiting and unavailability keep their class.
pub(super) fn login_failure(failure: TransitFailure) -> TransitFailure {
    let rejected = matches!(
        failure.class,
        FailureClass::InvalidRequest
            | FailureClass::Unauthenticated
            | FailureClass::PermissionDenied
            | FailureClass::NotFound
            | FailureClass::DecryptFailed
            | FailureClass::VersionDisallowed
    );
    if rejected {
        TransitFailure {
            class: FailureClass::AuthFailed,
            ..failure
        }
    } else {
        failure
    }
}
