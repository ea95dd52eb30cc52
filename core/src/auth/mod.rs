//! The token lifecycle's decisions, pure: when a held token must be refreshed first, when a
//! renewal is not enough, and the login backoff.
//!
//! The runtime reports each login outcome with the monotonic `now` and asks whether a login may
//! start. After a failed login the next one waits an exponentially growing, jittered interval,
//! so a lost or rejected credential does not turn every waiting call into another login: the
//! callers get the last failure at once until the wait is over. A success, or an operator's
//! credential reload, starts afresh.

use std::time::{Duration, Instant};

/// How long logins wait after failures.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BackoffPolicy {
    /// The wait after the first failure (before jitter).
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl BackoffPolicy {
    /// 1 s after the first failure, doubling up to 5 min.
    pub const DEFAULT: Self = Self {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
    };
}

/// Whether a login may start now.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LoginGate {
    /// Yes.
    Open,
    /// Not before this instant; answer callers with the last failure meanwhile.
    ClosedUntil(Instant),
}

/// The backoff state: consecutive failures and when the next login may start.
#[derive(Clone, Debug)]
pub struct LoginBackoff {
    policy: BackoffPolicy,
    failures: u32,
    not_before: Option<Instant>,
    /// splitmix64 state for the jitter.
    rng: u64,
}

impl LoginBackoff {
    /// A fresh machine; `seed` makes the jitter differ between processes.
    pub fn new(policy: BackoffPolicy, seed: u64) -> Self {
        Self {
            policy,
            failures: 0,
            not_before: None,
            rng: seed,
        }
    }

    /// Whether a login may start at `now`.
    pub fn gate(&self, now: Instant) -> LoginGate {
        match self.not_before {
            Some(at) if now < at => LoginGate::ClosedUntil(at),
            Some(_) | None => LoginGate::Open,
        }
    }

    /// Records a failed login at `now`; returns the wait chosen before the next one: the
    /// doubled base (capped at `max`), of which a random half is kept ("equal jitter"), so
    /// processes that failed together do not retry together.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let factor = 1_u32.checked_shl(self.failures.min(20)).unwrap_or(u32::MAX);
        let base = self
            .policy
            .initial
            .saturating_mul(factor)
            .min(self.policy.max);
        let half = base / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let extra = if jitter_nanos == 0 {
            0
        } else {
            self.next_random() % (jitter_nanos + 1)
        };
        let wait = half + Duration::from_nanos(extra);
        self.failures = self.failures.saturating_add(1);
        self.not_before = Some(now.checked_add(wait).unwrap_or(now));
        wait
    }

    /// Records a successful login: the next failure starts from the initial wait again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }

    /// Lifts the wait without forgetting the failures (an operator reloaded the credentials).
    pub fn open_now(&mut self) {
        self.not_before = None;
    }

    /// Consecutive failed logins.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What a caller does with the token it holds, seen at `now`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TokenUse {
    /// Use it as is.
    Use,
    /// Refresh it first (renew or log in); on failure keep using it, it is still valid.
    RefreshFirst,
    /// It has expired: a login is needed before any call.
    Expired,
}

/// A held token's lifetime: when it was obtained and its TTL (`None`: it does not expire).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TokenLifetime {
    /// When the grant was asked for (the TTL counts from there, conservatively).
    pub obtained_at: Instant,
    /// The granted TTL; `None` for a token that never expires.
    pub ttl: Option<Duration>,
}

impl TokenLifetime {
    /// Time left at `now`: `None` when it never expires, zero once expired.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let ttl = self.ttl?;
        Some(ttl.saturating_sub(now.saturating_duration_since(self.obtained_at)))
    }

    /// What to do with the token at `now`. `window` is `auth.loginBeforeTokenExpiry`; a
    /// refresh is not started while another login or renewal runs (`busy`) or before
    /// `not_before` (after a failed refresh, or a grant that was already inside the window).
    pub fn usage(
        &self,
        now: Instant,
        window: Duration,
        busy: bool,
        not_before: Option<Instant>,
    ) -> TokenUse {
        match self.remaining(now) {
            None => TokenUse::Use,
            Some(left) if left.is_zero() => TokenUse::Expired,
            Some(left) => {
                let due = left <= window && !busy && not_before.is_none_or(|at| now >= at);
                if due {
                    TokenUse::RefreshFirst
                } else {
                    TokenUse::Use
                }
            }
        }
    }
}

/// Whether a grant of `ttl` is already inside the refresh window: the token reached its max
/// TTL (a renewal granted less than asked) or is short-lived. After a renewal this means a
/// login is needed; after any grant, the next early refresh waits a pause instead of running on
/// every call.
pub fn inside_refresh_window(ttl: Option<Duration>, window: Duration) -> bool {
    ttl.is_some_and(|ttl| ttl <= window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_within_half_and_whole_base_up_to_the_cap() {
        let start = crate::test_support::epoch();
        let mut backoff = LoginBackoff::new(BackoffPolicy::DEFAULT, 42);
        assert_eq!(backoff.gate(start), LoginGate::Open);
        let mut now = start;
        for failure in 0..12_u32 {
            let base = Duration::from_secs(1)
                .saturating_mul(1 << failure)
                .min(Duration::from_secs(300));
            let wait = backoff.failed(now);
            assert!(
                wait >= base / 2 && wait <= base,
                "failure {failure}: {wait:?}"
            );
            assert_eq!(backoff.gate(now), LoginGate::ClosedUntil(now + wait));
            assert_eq!(
                backoff.gate(now + wait - Duration::from_nanos(1)),
                LoginGate::ClosedUntil(now + wait)
            );
            now += wait;
            assert_eq!(backoff.gate(now), LoginGate::Open);
        }
        assert_eq!(backoff.failures(), 12);
        backoff.succeeded();
        let wait = backoff.failed(now);
        assert!(
            wait <= Duration::from_secs(1),
            "afresh after a success: {wait:?}"
        );
    }

    #[test]
    fn two_processes_failing_together_do_not_retry_together() {
        let start = crate::test_support::epoch();
        let mut one = LoginBackoff::new(BackoffPolicy::DEFAULT, 1);
        let mut two = LoginBackoff::new(BackoffPolicy::DEFAULT, 2);
        let waits: Vec<(Duration, Duration)> = (0..5)
            .map(|_| (one.failed(start), two.failed(start)))
            .collect();
        assert!(waits.iter().any(|(a, b)| a != b), "{waits:?}");
    }

    #[test]
    fn a_token_is_used_until_its_window_refreshed_inside_it_and_replaced_once_expired() {
        let start = crate::test_support::epoch();
        let window = Duration::from_secs(300);
        let token = TokenLifetime {
            obtained_at: start,
            ttl: Some(Duration::from_secs(3_600)),
        };
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(token.usage(at(0), window, false, None), TokenUse::Use);
        assert_eq!(token.usage(at(3_299), window, false, None), TokenUse::Use);
        assert_eq!(
            token.usage(at(3_300), window, false, None),
            TokenUse::RefreshFirst
        );
        // Another refresh runs, or the last one failed moments ago: keep using it.
        assert_eq!(token.usage(at(3_300), window, true, None), TokenUse::Use);
        assert_eq!(
            token.usage(at(3_300), window, false, Some(at(3_305))),
            TokenUse::Use
        );
        assert_eq!(
            token.usage(at(3_305), window, false, Some(at(3_305))),
            TokenUse::RefreshFirst
        );
        assert_eq!(
            token.usage(at(3_600), window, false, None),
            TokenUse::Expired
        );
        let root = TokenLifetime {
            obtained_at: start,
            ttl: None,
        };
        assert_eq!(
            root.usage(at(1_000_000), window, false, None),
            TokenUse::Use
        );
    }

    #[test]
    fn a_renewal_that_reached_the_max_ttl_is_inside_the_window() {
        let window = Duration::from_secs(300);
        assert!(inside_refresh_window(
            Some(Duration::from_secs(120)),
            window
        ));
        assert!(inside_refresh_window(Some(window), window));
        assert!(!inside_refresh_window(
            Some(Duration::from_secs(3_600)),
            window
        ));
        assert!(!inside_refresh_window(None, window));
    }

    #[test]
    fn an_operator_reload_opens_the_gate_but_keeps_counting() {
        let start = crate::test_support::epoch();
        let mut backoff = LoginBackoff::new(BackoffPolicy::DEFAULT, 7);
        backoff.failed(start);
        backoff.failed(start);
        backoff.open_now();
        assert_eq!(backoff.gate(start), LoginGate::Open);
        assert_eq!(backoff.failures(), 2);
    }
}
