//! What the last failed login was, so that logs and the bootstrap error can name the root
//! cause (method, request, OpenBao's answer) instead of its consequences. Holds no secret.

use std::fmt;

/// The last failed login.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LoginFailure {
    /// `token`, `approle` or `jwt`.
    pub method: &'static str,
    /// The HTTP method of the login request.
    pub verb: &'static str,
    /// The login request's path (`auth/approle/login`, `auth/token/lookup-self`).
    pub path: String,
    /// The class of the answer before it became `auth_failed` (`permission_denied`,
    /// `invalid_request`, `unavailable`, ...).
    pub answer: &'static str,
    /// The HTTP status OpenBao answered, when it answered.
    pub http_status: Option<u16>,
    /// Set when no request was sent because a credential file was refused (its reason).
    pub credential_problem: Option<&'static str>,
}

impl fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(problem) = self.credential_problem {
            return write!(
                f,
                "{} login: a credential file was refused ({problem}); nothing was sent to {}",
                self.method, self.path
            );
        }
        write!(
            f,
            "{} login {} {} answered {}",
            self.method, self.verb, self.path, self.answer
        )?;
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_failure_names_method_request_and_answer() {
        let denied = LoginFailure {
            method: "token",
            verb: "GET",
            path: "auth/token/lookup-self".to_owned(),
            answer: "permission_denied",
            http_status: Some(403),
            credential_problem: None,
        };
        assert_eq!(
            denied.to_string(),
            "token login GET auth/token/lookup-self answered permission_denied (HTTP 403)"
        );
        let missing = LoginFailure {
            credential_problem: Some("file_missing"),
            ..denied
        };
        assert_eq!(
            missing.to_string(),
            "token login: a credential file was refused (file_missing); nothing was sent to auth/token/lookup-self"
        );
    }
}
