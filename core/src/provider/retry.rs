//! Retries of failed Transit calls: which failures are worth another attempt, and when.
//!
//! Every Transit call the core makes is idempotent: reads, decrypts, and encrypts that always
//! name an explicit `key_version` (the same plaintext encrypted twice yields two valid
//! ciphertexts, and only one of them is ever answered). So any call may be retried; the policy
//! only has to decide *which failures* are transient and *when* the next attempt goes, and it
//! must never let a retry outlive the deadline of the call it repeats.

use std::time::{Duration, Instant};

use crate::transit::{FailureClass, TransitFailure};

/// How failed Transit calls are retried. Not configurable: the bounds follow from the request
/// deadline (`openbao.timeout`), which is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Delay before the first retry (before jitter).
    pub(crate) first_backoff: Duration,
    /// Largest delay between two attempts (before a server's `Retry-After`).
    pub(crate) max_backoff: Duration,
    /// Most attempts of one call, the first included.
    pub(crate) max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            max_attempts: 5,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum RetryVerdict {
    /// Send the same call again at this instant.
    RetryAt(Instant),
    /// The failure is final for this call (not transient).
    Final,
    /// The failure was transient but no attempt fits in the time or attempts left.
    GiveUp,
}

/// Whether a failure may go away on its own within one request's deadline.
///
/// Connection failures and 5xx answers are what a restarted or failing-over OpenBao node gives;
/// 429 is a rate limit that asks to come back later; a sealed or standby node is what clients see
/// during a leader change. Authentication, permission, 4xx, decrypt and TLS failures repeat
/// identically, so retrying them only adds load. A timeout has, by construction, used up the
/// call's deadline.
pub(crate) fn is_transient(class: FailureClass) -> bool {
    match class {
        FailureClass::ConnectionFailed
        | FailureClass::Unavailable
        | FailureClass::RateLimited
        | FailureClass::Sealed => true,
        FailureClass::InvalidRequest
        | FailureClass::Unauthenticated
        | FailureClass::PermissionDenied
        | FailureClass::NotFound
        | FailureClass::DecryptFailed
        | FailureClass::VersionDisallowed
        | FailureClass::TlsFailed
        | FailureClass::DnsFailed
        | FailureClass::Timeout
        | FailureClass::AuthFailed => false,
    }
}

impl RetryPolicy {
    /// Decides the fate of attempt number `attempt` (1 for the first) that failed at `now`
    /// with `failure`, for a call that must finish by `deadline`. `jitter` is a uniform random
    /// value in `0..=u32::MAX` supplied by the caller (the core holds no entropy source).
    ///
    /// The delay is "equal jitter": half the exponential backoff plus a random part of the other
    /// half, so concurrent callers spread out but none retries immediately. A server's
    /// `Retry-After` is a floor. The retry is scheduled only if it starts before the deadline
    /// with at least `min_attempt_time` left for the attempt itself.
    pub(crate) fn after_failure(
        &self,
        now: Instant,
        deadline: Instant,
        attempt: u32,
        failure: &TransitFailure,
        jitter: u32,
        min_attempt_time: Duration,
    ) -> RetryVerdict {
        if !is_transient(failure.class) {
            return RetryVerdict::Final;
        }
        if attempt >= self.max_attempts {
            return RetryVerdict::GiveUp;
        }
        let delay = self
            .backoff(attempt, jitter)
            .max(failure.retry_after.unwrap_or_default());
        let at = now + delay;
        if at + min_attempt_time > deadline {
            return RetryVerdict::GiveUp;
        }
        RetryVerdict::RetryAt(at)
    }

    /// The jittered delay after failed attempt number `attempt` (1-based).
    fn backoff(&self, attempt: u32, jitter: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let full = self
            .first_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        let half = full / 2;
        let random = half.mul_f64(f64::from(jitter) / f64::from(u32::MAX));
        half + random
    }
}

/// A small deterministic generator for jitter (SplitMix64), seeded from the configuration's
/// seed so simulations replay exactly; jitter needs spread, not unpredictability.
#[derive(Clone, Debug)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(crate) fn new(seed: &[u8; 32]) -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for chunk in seed.chunks_exact(8) {
            let mut bytes = [0_u8; 8];
            bytes.copy_from_slice(chunk);
            state ^= u64::from_le_bytes(bytes);
            state = state.rotate_left(17).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        }
        Self { state }
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The high half of a 64-bit mix; truncation is the point.
        #[allow(clippy::cast_possible_truncation)]
        let high = (z >> 32) as u32;
        high
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::epoch;

    fn failure(class: FailureClass) -> TransitFailure {
        TransitFailure::new(class)
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let policy = RetryPolicy::default();
        let now = epoch();
        let deadline = now + Duration::from_secs(3);
        for class in [
            FailureClass::ConnectionFailed,
            FailureClass::Unavailable,
            FailureClass::RateLimited,
            FailureClass::Sealed,
        ] {
            let verdict =
                policy.after_failure(now, deadline, 1, &failure(class), 0, Duration::ZERO);
            assert!(matches!(verdict, RetryVerdict::RetryAt(_)), "{class}");
        }
        for class in [
            FailureClass::DecryptFailed,
            FailureClass::PermissionDenied,
            FailureClass::InvalidRequest,
            FailureClass::Timeout,
            FailureClass::TlsFailed,
        ] {
            let verdict =
                policy.after_failure(now, deadline, 1, &failure(class), 0, Duration::ZERO);
            assert_eq!(verdict, RetryVerdict::Final, "{class}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jitter_stays_in_the_upper_half() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 0), Duration::from_millis(10));
        assert_eq!(policy.backoff(1, u32::MAX), Duration::from_millis(20));
        assert_eq!(policy.backoff(2, u32::MAX), Duration::from_millis(40));
        assert_eq!(policy.backoff(30, u32::MAX), Duration::from_millis(500));
        assert_eq!(policy.backoff(30, 0), Duration::from_millis(250));
    }

    #[test]
    fn a_retry_never_outlives_the_deadline() {
        let policy = RetryPolicy::default();
        let now = epoch();
        let unavailable = failure(FailureClass::Unavailable);
        let tight = now + Duration::from_millis(15);
        // Backoff at least 10 ms plus 10 ms for the attempt itself does not fit in 15 ms.
        let verdict =
            policy.after_failure(now, tight, 1, &unavailable, 0, Duration::from_millis(10));
        assert_eq!(verdict, RetryVerdict::GiveUp);
        let roomy = now + Duration::from_secs(2);
        let verdict =
            policy.after_failure(now, roomy, 1, &unavailable, 0, Duration::from_millis(10));
        assert_eq!(
            verdict,
            RetryVerdict::RetryAt(now + Duration::from_millis(10))
        );
        let verdict = policy.after_failure(now, roomy, 5, &unavailable, 0, Duration::ZERO);
        assert_eq!(verdict, RetryVerdict::GiveUp, "attempts are bounded");
    }

    #[test]
    fn retry_after_is_a_floor_and_still_bounded_by_the_deadline() {
        let policy = RetryPolicy::default();
        let now = epoch();
        let mut limited = failure(FailureClass::RateLimited);
        limited.retry_after = Some(Duration::from_secs(1));
        let verdict = policy.after_failure(
            now,
            now + Duration::from_secs(2),
            1,
            &limited,
            0,
            Duration::ZERO,
        );
        assert_eq!(verdict, RetryVerdict::RetryAt(now + Duration::from_secs(1)));
        let verdict = policy.after_failure(
            now,
            now + Duration::from_millis(900),
            1,
            &limited,
            0,
            Duration::ZERO,
        );
        assert_eq!(verdict, RetryVerdict::GiveUp);
    }

    #[test]
    fn jitter_is_deterministic_per_seed_and_spread() {
        let mut a = Jitter::new(&[1; 32]);
        let mut b = Jitter::new(&[1; 32]);
        let mut c = Jitter::new(&[2; 32]);
        let first: Vec<u32> = (0..64).map(|_| a.next_u32()).collect();
        let again: Vec<u32> = (0..64).map(|_| b.next_u32()).collect();
        let other: Vec<u32> = (0..64).map(|_| c.next_u32()).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        let upper = first.iter().filter(|v| **v > u32::MAX / 2).count();
        assert!(
            (16..=48).contains(&upper),
            "{upper} of 64 in the upper half"
        );
    }
}
