//! The login backoff of the token lifecycle, as a pure machine.
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
