//! OpenBao token management shared by every call.
//!
//! The token lives in memory only. One login or renewal ("flight") runs at a time; callers that
//! have no usable token wait for it, callers with a still-valid token keep using it. When the
//! remaining lifetime drops to `loginBeforeTokenExpiry`, the next caller refreshes it first
//! (renew-self when renewable, else a fresh login; a failed renewal falls back to login, and a
//! failed refresh keeps the old token and is retried after [`REFRESH_RETRY_INTERVAL`]).
//!
//! A 401/403 on any call triggers one shared forced login and ONE retry of the request; a
//! retry that is denied again is `PermissionDenied`. Forced logins are rate-limited: at most
//! one per [`RECOVERY_MIN_INTERVAL`], doubling after each failed login up to
//! [`RECOVERY_MAX_INTERVAL`]; [`RECOVERY_QUIET_PERIOD`] without denials starts afresh.
//!
//! Login material is re-read from its file before every login. Login failures are
//! `AuthFailed`, unless the cause was transport, TLS, DNS, timeout, sealed, rate limiting or
//! an unavailable server, which keep their class. Nothing here logs or returns a secret.

pub mod credentials;
pub mod failure;
pub mod jwt;
mod login;
pub mod wipe;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bao_kms_core::auth::{
    BackoffPolicy, LoginBackoff, LoginGate, TokenLifetime, TokenUse, inside_refresh_window,
};
use bao_kms_core::transit::{FailureClass, TransitFailure};
use serde_json::Value;
use zeroize::Zeroizing;

pub use self::failure::LoginFailure;
use self::jwt::JwtExpectations;
use self::login::login_path;
use super::clock::Clock;
use super::http::{ApiResponse, OpenBaoHttp, malformed_response};

/// Shortest time between two forced (recovery) logins.
pub const RECOVERY_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Longest time between two forced logins after repeated login failures.
pub const RECOVERY_MAX_INTERVAL: Duration = Duration::from_secs(300);
/// Time without denials after which recovery rate limiting starts afresh.
pub const RECOVERY_QUIET_PERIOD: Duration = Duration::from_secs(600);
/// Wait before retrying a failed early refresh while the old token is still valid.
pub const REFRESH_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// How the provider authenticates to OpenBao.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum AuthSettings {
    /// A token read from a file (for example written by an agent). "Login" re-reads the file
    /// and looks the token up (`auth/token/lookup-self`) for its TTL and renewability.
    Token {
        /// File holding the token.
        token_file: PathBuf,
    },
    /// AppRole: `POST auth/<mount>/login {"role_id","secret_id"}`.
    AppRole {
        /// Auth mount, with or without the `auth/` prefix (`approle` or `auth/approle`).
        mount_path: String,
        /// File holding the role id.
        role_id_file: PathBuf,
        /// File holding the secret id.
        secret_id_file: PathBuf,
    },
    /// JWT from a file: `POST <mount>/login {"role","jwt"}` after local claim checks.
    Jwt {
        /// Auth mount, with or without the `auth/` prefix (`auth/jwt` or `jwt`).
        mount_path: String,
        /// The JWT auth role.
        role: String,
        /// File holding the compact JWT.
        jwt_file: PathBuf,
        /// The JWT must have more than this left.
        min_remaining_ttl: Duration,
        /// Tolerance for `nbf`, `iat` and `exp`.
        clock_skew_leeway: Duration,
        /// Required `iss`, when set.
        expected_issuer: Option<String>,
        /// `aud` must contain one of these, when not empty.
        expected_audience: Vec<String>,
        /// Required `sub`, when set.
        expected_subject: Option<String>,
    },
}

/// When and how long tokens are refreshed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RefreshPolicy {
    /// Refresh once the remaining lifetime is at most this.
    pub login_before_token_expiry: Duration,
    /// The `increment` asked of renew-self (OpenBao may grant less).
    pub token_renewal_increment: Duration,
    /// Deadline of each login and renewal request.
    pub login_timeout: Duration,
}

/// Why the token manager could not be built.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthBuildError {
    /// The auth mount path is empty or has an empty or dot segment.
    #[error("auth mount path is invalid")]
    InvalidMountPath,
    /// The JWT role is empty.
    #[error("auth jwt role is required")]
    MissingRole,
    /// A duration that must be positive is zero.
    #[error("auth {0} must be greater than zero")]
    ZeroDuration(&'static str),
}

/// Counters of login and renewal outcomes, for metrics.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct AuthStats {
    /// Successful logins (including token-file reloads).
    pub logins_succeeded: u64,
    /// Failed logins.
    pub logins_failed: u64,
    /// Successful renew-self calls.
    pub renewals_succeeded: u64,
    /// Failed renew-self calls.
    pub renewals_failed: u64,
    /// Forced logins after a 401/403.
    pub recoveries: u64,
    /// 401/403 answers not recovered because recovery was rate-limited.
    pub recoveries_throttled: u64,
}

#[derive(Debug, Default)]
struct Counters {
    logins_succeeded: AtomicU64,
    logins_failed: AtomicU64,
    renewals_succeeded: AtomicU64,
    renewals_failed: AtomicU64,
    recoveries: AtomicU64,
    recoveries_throttled: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

enum Method {
    Token {
        token_file: PathBuf,
    },
    AppRole {
        login_path: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    Jwt {
        login_path: String,
        role: String,
        jwt_file: PathBuf,
        expectations: JwtExpectations,
    },
}

impl Method {
    fn name(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::AppRole { .. } => "approle",
            Self::Jwt { .. } => "jwt",
        }
    }

    /// The HTTP method and path of the login request.
    fn login_request(&self) -> (&'static str, &str) {
        match self {
            Self::Token { .. } => ("GET", TOKEN_LOOKUP_PATH),
            Self::AppRole { login_path, .. } | Self::Jwt { login_path, .. } => ("POST", login_path),
        }
    }
}

/// Where a token-file "login" looks the token up.
const TOKEN_LOOKUP_PATH: &str = "auth/token/lookup-self";
/// Where tokens are renewed.
const TOKEN_RENEW_PATH: &str = "auth/token/renew-self";

/// A token and what is known of its lifetime. `Debug` never shows the token; it is wiped
/// when the last caller using it lets go.
struct Lease {
    token: Zeroizing<String>,
    obtained_at: Instant,
    /// `None`: the token does not expire (TTL 0, e.g. a root token).
    ttl: Option<Duration>,
    renewable: bool,
    generation: u64,
}

impl Lease {
    fn lifetime(&self) -> TokenLifetime {
        TokenLifetime {
            obtained_at: self.obtained_at,
            ttl: self.ttl,
        }
    }

    /// `None` when the token does not expire, else the time left (zero once expired).
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.lifetime().remaining(now)
    }

    fn usable(&self, now: Instant) -> bool {
        self.remaining(now).is_none_or(|left| !left.is_zero())
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("ttl", &self.ttl)
            .field("renewable", &self.renewable)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// The outcome of a login or renewal before it is installed.
struct Grant {
    token: Zeroizing<String>,
    obtained_at: Instant,
    ttl: Option<Duration>,
    renewable: bool,
}

impl Grant {
    /// A grant from an answer object carrying its lifetime in `lifetime_field` (seconds; 0 means
    /// no expiry) and `renewable`. A token without expiry is never renewed.
    fn decode(
        token: Zeroizing<String>,
        started: Instant,
        object: &Value,
        lifetime_field: &str,
    ) -> Result<Self, TransitFailure> {
        let seconds = object
            .get(lifetime_field)
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed_response(Some(200)))?;
        let renewable = object
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            token,
            obtained_at: started,
            ttl: (seconds > 0).then(|| Duration::from_secs(seconds)),
            renewable: renewable && seconds > 0,
        })
    }
}

#[derive(Default)]
struct Recovery {
    last_attempt: Option<Instant>,
    consecutive_failures: u32,
    last_denial: Option<Instant>,
}

impl Recovery {
    fn interval(&self) -> Duration {
        let factor = 1u32
            .checked_shl(self.consecutive_failures.min(16))
            .unwrap_or(u32::MAX);
        RECOVERY_MIN_INTERVAL
            .saturating_mul(factor)
            .min(RECOVERY_MAX_INTERVAL)
    }
}

struct State {
    lease: Option<Arc<Lease>>,
    /// When the next login may start after failed ones (the core's machine).
    backoff: LoginBackoff,
    /// The failure of the last login, answered while the backoff holds logins back.
    last_login_error: Option<TransitFailure>,
    generations: u64,
    flight: Option<u64>,
    flights: u64,
    /// The last finished flight and its failure, for the callers that waited on it.
    finished: Option<(u64, Option<TransitFailure>)>,
    refresh_not_before: Option<Instant>,
    recovery: Recovery,
}

impl State {
    fn new(seed: u64) -> Self {
        Self {
            lease: None,
            backoff: LoginBackoff::new(BackoffPolicy::DEFAULT, seed),
            last_login_error: None,
            generations: 0,
            flight: None,
            flights: 0,
            finished: None,
            refresh_not_before: None,
            recovery: Recovery::default(),
        }
    }
}

/// A seed for the backoff jitter that differs between processes.
fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

enum FlightKind {
    Login,
    Refresh(Arc<Lease>),
}

enum Recovered {
    Retry(Arc<Lease>),
    Throttled,
    Failed(TransitFailure),
}

/// Thread-safe, blocking token manager; share it as `Arc<TokenManager>`.
pub struct TokenManager {
    http: Arc<OpenBaoHttp>,
    method: Method,
    policy: RefreshPolicy,
    clock: Clock,
    state: Mutex<State>,
    flight_done: Condvar,
    counters: Counters,
    /// The last failed login, cleared by a successful one.
    last_failure: Mutex<Option<LoginFailure>>,
    /// Set by a credential file refused during the running login.
    file_problem: Mutex<Option<&'static str>>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("method", &self.method.name())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// Builds the manager; no login happens until the first call (or [`Self::ensure_token`]).
    ///
    /// # Errors
    /// [`AuthBuildError`] for an invalid mount path, an empty JWT role or a zero duration.
    pub fn new(
        http: Arc<OpenBaoHttp>,
        settings: AuthSettings,
        policy: RefreshPolicy,
        clock: Clock,
    ) -> Result<Self, AuthBuildError> {
        if policy.login_timeout.is_zero() {
            return Err(AuthBuildError::ZeroDuration("loginTimeout"));
        }
        if policy.token_renewal_increment.is_zero() {
            return Err(AuthBuildError::ZeroDuration("tokenRenewalIncrement"));
        }
        let method = match settings {
            AuthSettings::Token { token_file } => Method::Token { token_file },
            AuthSettings::AppRole {
                mount_path,
                role_id_file,
                secret_id_file,
            } => Method::AppRole {
                login_path: login_path(&mount_path)?,
                role_id_file,
                secret_id_file,
            },
            AuthSettings::Jwt {
                mount_path,
                role,
                jwt_file,
                min_remaining_ttl,
                clock_skew_leeway,
                expected_issuer,
                expected_audience,
                expected_subject,
            } => {
                if role.trim().is_empty() {
                    return Err(AuthBuildError::MissingRole);
                }
                Method::Jwt {
                    login_path: login_path(&mount_path)?,
                    role,
                    jwt_file,
                    expectations: JwtExpectations {
                        min_remaining_ttl,
                        clock_skew_leeway,
                        expected_issuer,
                        expected_audience,
                        expected_subject,
                    },
                }
            }
        };
        Ok(Self {
            http,
            method,
            policy,
            clock,
            state: Mutex::new(State::new(jitter_seed())),
            flight_done: Condvar::new(),
            counters: Counters::default(),
            last_failure: Mutex::new(None),
            file_problem: Mutex::new(None),
        })
    }

    /// Makes sure a usable token is held, logging in (or refreshing) if needed.
    ///
    /// # Errors
    /// The classified login failure.
    pub fn ensure_token(&self) -> Result<(), TransitFailure> {
        self.current().map(|_| ())
    }

    /// Runs `call` with the current token. On a 401/403 it recovers the token once (shared
    /// forced login, rate-limited) and retries `call` exactly once; a second denial is
    /// `PermissionDenied`. Any other answer is returned as is.
    ///
    /// # Errors
    /// The login failure, the transport failure of `call`, or the denial.
    pub fn with_token(
        &self,
        mut call: impl FnMut(&str) -> Result<ApiResponse, TransitFailure>,
    ) -> Result<ApiResponse, TransitFailure> {
        let lease = self.current()?;
        let first = call(lease.token.as_str())?;
        if !first.is_denied() {
            return Ok(first);
        }
        match self.recover(&lease) {
            Recovered::Retry(fresh) => {
                drop(lease);
                let second = call(fresh.token.as_str())?;
                if second.is_denied() {
                    tracing::warn!(
                        auth_method = self.method.name(),
                        http_status = u64::from(second.status()),
                        "openbao denied the request again after token recovery"
                    );
                    Err(TransitFailure {
                        class: FailureClass::PermissionDenied,
                        http_status: Some(second.status()),
                        retry_after: None,
                    })
                } else {
                    Ok(second)
                }
            }
            Recovered::Throttled => Err(first.failure()),
            Recovered::Failed(failure) => Err(failure),
        }
    }

    /// Re-reads the credential files and logs in with them now (SIGHUP). A login in progress
    /// is waited for first. When the new login fails the current token stays in use.
    ///
    /// # Errors
    /// The classified login failure.
    pub fn reload_credentials(&self) -> Result<(), TransitFailure> {
        let mut state = self.lock();
        while let Some(flight) = state.flight {
            state = self.wait_for_flight(state, flight)?;
        }
        state.backoff.open_now();
        self.run_flight(state, FlightKind::Login).map(drop)
    }

    /// Seconds of token lifetime left: `None` without a token, `f64::INFINITY` for a token
    /// that does not expire, `0.0` once expired.
    pub fn token_ttl_seconds(&self) -> Option<f64> {
        let now = self.clock.now();
        let state = self.lock();
        let lease = state.lease.as_ref()?;
        Some(
            lease
                .remaining(now)
                .map_or(f64::INFINITY, |left| left.as_secs_f64()),
        )
    }

    /// Snapshot of the login/renewal counters.
    pub fn stats(&self) -> AuthStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        AuthStats {
            logins_succeeded: read(&self.counters.logins_succeeded),
            logins_failed: read(&self.counters.logins_failed),
            renewals_succeeded: read(&self.counters.renewals_succeeded),
            renewals_failed: read(&self.counters.renewals_failed),
            recoveries: read(&self.counters.recoveries),
            recoveries_throttled: read(&self.counters.recoveries_throttled),
        }
    }

    /// The last failed login, if the latest login failed (the root cause of an auth failure).
    pub fn last_login_failure(&self) -> Option<LoginFailure> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The auth method name (`token`, `approle`, `jwt`).
    pub fn method_name(&self) -> &'static str {
        self.method.name()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The longest a caller waits for someone else's flight: a renewal plus a login plus
    /// file reads.
    fn flight_wait_bound(&self) -> Duration {
        self.policy
            .login_timeout
            .saturating_mul(3)
            .saturating_add(Duration::from_secs(1))
    }

    /// A usable token, logging in or refreshing first when needed.
    fn current(&self) -> Result<Arc<Lease>, TransitFailure> {
        let mut state = self.lock();
        loop {
            let now = self.clock.now();
            if let Some(lease) = state.lease.clone() {
                let usage = lease.lifetime().usage(
                    now,
                    self.policy.login_before_token_expiry,
                    state.flight.is_some(),
                    state.refresh_not_before,
                );
                match usage {
                    TokenUse::Use => return Ok(lease),
                    TokenUse::RefreshFirst => {
                        let refreshed =
                            self.run_flight(state, FlightKind::Refresh(Arc::clone(&lease)));
                        // A failed early refresh keeps the old, still valid token.
                        return Ok(refreshed.unwrap_or(lease));
                    }
                    TokenUse::Expired => {}
                }
            }
            if let Some(flight) = state.flight {
                state = self.wait_for_flight(state, flight)?;
                let now = self.clock.now();
                if let Some(lease) = state.lease.as_ref().filter(|lease| lease.usable(now)) {
                    return Ok(Arc::clone(lease));
                }
                if let Some((id, Some(failure))) = &state.finished
                    && *id == flight
                {
                    return Err(failure.clone());
                }
                continue;
            }
            // After failed logins the next one waits (jittered, doubling): meanwhile callers
            // get the last failure at once instead of each starting a login.
            if let LoginGate::ClosedUntil(_) = state.backoff.gate(now)
                && let Some(failure) = state.last_login_error.clone()
            {
                return Err(failure);
            }
            return self.run_flight(state, FlightKind::Login);
        }
    }

    fn wait_for_flight<'a>(
        &self,
        state: MutexGuard<'a, State>,
        flight: u64,
    ) -> Result<MutexGuard<'a, State>, TransitFailure> {
        let (state, _) = self
            .flight_done
            .wait_timeout_while(state, self.flight_wait_bound(), |state| {
                state.flight == Some(flight)
            })
            .unwrap_or_else(PoisonError::into_inner);
        if state.flight == Some(flight) {
            return Err(TransitFailure::new(FailureClass::Timeout));
        }
        Ok(state)
    }

    /// Runs one login or refresh with the lock released, installs the result and wakes the
    /// waiters.
    fn run_flight(
        &self,
        mut state: MutexGuard<'_, State>,
        kind: FlightKind,
    ) -> Result<Arc<Lease>, TransitFailure> {
        state.flights += 1;
        let flight = state.flights;
        state.flight = Some(flight);
        drop(state);

        let is_refresh = matches!(kind, FlightKind::Refresh(_));
        let outcome = match kind {
            FlightKind::Login => self.login(),
            FlightKind::Refresh(old) => self.refresh(&old),
        };

        let now = self.clock.now();
        let retry_at = now.checked_add(REFRESH_RETRY_INTERVAL).unwrap_or(now);
        let mut state = self.lock();
        if !is_refresh {
            match &outcome {
                Ok(_) => {
                    state.backoff.succeeded();
                    state.last_login_error = None;
                }
                Err(failure) => {
                    let wait = state.backoff.failed(now);
                    state.last_login_error = Some(failure.clone());
                    tracing::info!(
                        auth_method = self.method.name(),
                        failures = state.backoff.failures(),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "openbao login backoff"
                    );
                }
            }
        }
        let result = match outcome {
            Ok(grant) => {
                // A token granted inside the refresh window (max TTL reached, short TTL) is
                // refreshed again only after a pause, not on every call.
                let short = inside_refresh_window(grant.ttl, self.policy.login_before_token_expiry);
                state.refresh_not_before = short.then_some(retry_at);
                state.generations += 1;
                let lease = Arc::new(Lease {
                    token: grant.token,
                    obtained_at: grant.obtained_at,
                    ttl: grant.ttl,
                    renewable: grant.renewable,
                    generation: state.generations,
                });
                state.lease = Some(Arc::clone(&lease));
                state.finished = Some((flight, None));
                Ok(lease)
            }
            Err(failure) => {
                if is_refresh {
                    state.refresh_not_before = Some(retry_at);
                }
                state.finished = Some((flight, Some(failure.clone())));
                Err(failure)
            }
        };
        state.flight = None;
        drop(state);
        self.flight_done.notify_all();
        result
    }

    /// Handles a 401/403 seen with `denied`: reuse a newer token, or run one rate-limited
    /// forced login.
    fn recover(&self, denied: &Arc<Lease>) -> Recovered {
        let mut state = self.lock();
        let now = self.clock.now();
        let newer = |state: &State| {
            state
                .lease
                .as_ref()
                .filter(|lease| lease.generation != denied.generation && lease.usable(now))
                .map(Arc::clone)
        };
        if let Some(lease) = newer(&state) {
            return Recovered::Retry(lease);
        }
        if let Some(flight) = state.flight {
            state = match self.wait_for_flight(state, flight) {
                Ok(state) => state,
                Err(failure) => return Recovered::Failed(failure),
            };
            if let Some(lease) = newer(&state) {
                return Recovered::Retry(lease);
            }
            if let Some((id, Some(failure))) = &state.finished
                && *id == flight
            {
                return Recovered::Failed(failure.clone());
            }
        }

        let recovery = &mut state.recovery;
        if recovery
            .last_denial
            .is_some_and(|at| now.saturating_duration_since(at) >= RECOVERY_QUIET_PERIOD)
        {
            *recovery = Recovery::default();
        }
        recovery.last_denial = Some(now);
        if let Some(last) = recovery.last_attempt
            && now.saturating_duration_since(last) < recovery.interval()
        {
            bump(&self.counters.recoveries_throttled);
            tracing::warn!(
                auth_method = self.method.name(),
                "openbao rejected the token; recovery is rate-limited"
            );
            return Recovered::Throttled;
        }
        recovery.last_attempt = Some(now);
        bump(&self.counters.recoveries);
        tracing::info!(
            auth_method = self.method.name(),
            "openbao rejected the token; logging in again"
        );
        // The rejected token must not be handed out while the forced login runs.
        if state
            .lease
            .as_ref()
            .is_some_and(|lease| lease.generation == denied.generation)
        {
            state.lease = None;
        }
        let result = self.run_flight(state, FlightKind::Login);
        let mut state = self.lock();
        match result {
            Ok(lease) => {
                state.recovery.consecutive_failures = 0;
                Recovered::Retry(lease)
            }
            Err(failure) => {
                state.recovery.consecutive_failures =
                    state.recovery.consecutive_failures.saturating_add(1);
                Recovered::Failed(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::login::{login_failure, parse_auth};
    use super::*;

    #[test]
    fn login_paths_accept_both_spellings() {
        assert_eq!(login_path("approle").unwrap(), "auth/approle/login");
        assert_eq!(login_path("/auth/approle/").unwrap(), "auth/approle/login");
        assert_eq!(
            login_path("auth/k8s-a-jwt").unwrap(),
            "auth/k8s-a-jwt/login"
        );
        assert!(login_path("auth").is_err());
        assert!(login_path("").is_err());
    }

    #[test]
    fn recovery_interval_doubles_up_to_the_cap() {
        let mut recovery = Recovery::default();
        assert_eq!(recovery.interval(), Duration::from_secs(5));
        recovery.consecutive_failures = 1;
        assert_eq!(recovery.interval(), Duration::from_secs(10));
        recovery.consecutive_failures = 6;
        assert_eq!(recovery.interval(), Duration::from_secs(300));
        recovery.consecutive_failures = u32::MAX;
        assert_eq!(recovery.interval(), Duration::from_secs(300));
    }

    #[test]
    fn login_failures_keep_transport_classes() {
        let denied = TransitFailure {
            class: FailureClass::InvalidRequest,
            http_status: Some(400),
            retry_after: None,
        };
        assert_eq!(login_failure(denied).class, FailureClass::AuthFailed);
        for class in [
            FailureClass::Sealed,
            FailureClass::RateLimited,
            FailureClass::TlsFailed,
            FailureClass::Unavailable,
            FailureClass::Timeout,
        ] {
            assert_eq!(login_failure(TransitFailure::new(class)).class, class);
        }
    }

    #[test]
    fn auth_blocks_decode_ttl_and_renewability() {
        let started = Clock::system().now();
        let body =
            json!({"auth": {"client_token": "s.x", "lease_duration": 3600, "renewable": true}});
        let grant = parse_auth(&body, started, None).unwrap();
        assert_eq!(grant.ttl, Some(Duration::from_secs(3600)));
        assert!(grant.renewable);
        let root = json!({"auth": {"client_token": "s.x", "lease_duration": 0, "renewable": true}});
        let grant = parse_auth(&root, started, None).unwrap();
        assert_eq!(grant.ttl, None);
        assert!(!grant.renewable);
        assert!(parse_auth(&json!({"auth": null}), started, None).is_err());
        assert!(parse_auth(&json!({"auth": {"client_token": "s.x"}}), started, None).is_err());
    }
}
