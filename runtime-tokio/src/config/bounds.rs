//! The documented bounds of every duration setting (docs/reference/configuration.md), checked
//! at load. They keep every derived deadline finite (bootstrap grace is at least
//! 4 × `openbao.timeout`) and every loop paced (a probe interval of 1ns would probe back to back).

use std::time::Duration;

/// The documented range of a duration setting (docs/reference/configuration.md). A zero
/// `min` with `zero_means_default` set accepts `0s` as "pick the default" below `min`.
#[derive(Clone, Copy, Debug)]
pub struct DurationBounds {
    /// The shortest accepted value (zero: `0s` is accepted).
    pub min: Duration,
    /// The longest accepted value.
    pub max: Duration,
    /// `0s` is accepted even though `min` is larger: it selects a computed default.
    pub zero_means_default: bool,
}

const fn bounds(min: Duration, max: Duration) -> DurationBounds {
    DurationBounds {
        min,
        max,
        zero_means_default: false,
    }
}

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

const fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

const HOUR: u64 = 3_600;

/// `openbao.timeout`.
pub(crate) const OPENBAO_TIMEOUT: DurationBounds = bounds(ms(100), secs(120));
/// `auth.loginBeforeTokenExpiry`.
pub(crate) const LOGIN_BEFORE_TOKEN_EXPIRY: DurationBounds = bounds(secs(1), secs(24 * HOUR));
/// `auth.tokenRenewalIncrement`.
pub(crate) const TOKEN_RENEWAL_INCREMENT: DurationBounds = bounds(secs(1), secs(768 * HOUR));
/// `auth.loginTimeout` (`0s`: the larger of `openbao.timeout` and 5 s).
pub(crate) const LOGIN_TIMEOUT: DurationBounds = DurationBounds {
    min: ms(100),
    max: secs(300),
    zero_means_default: true,
};
/// `auth.jwt.minRemainingTtl`.
pub(crate) const JWT_MIN_REMAINING_TTL: DurationBounds = bounds(secs(1), secs(24 * HOUR));
/// `auth.jwt.clockSkewLeeway`.
pub(crate) const JWT_CLOCK_SKEW_LEEWAY: DurationBounds = bounds(Duration::ZERO, secs(600));
/// `bootstrap.graceTimeout`.
pub(crate) const GRACE_TIMEOUT: DurationBounds = bounds(Duration::ZERO, secs(HOUR));
/// `bootstrap.retryInterval`.
pub(crate) const RETRY_INTERVAL: DurationBounds = bounds(ms(100), secs(600));
/// `status.probeInterval`.
pub(crate) const PROBE_INTERVAL: DurationBounds = bounds(secs(1), secs(HOUR));
/// `status.deepProbeInterval`.
pub(crate) const DEEP_PROBE_INTERVAL: DurationBounds = bounds(secs(1), secs(24 * HOUR));
/// `status.statusMaxStaleness`.
pub(crate) const STATUS_MAX_STALENESS: DurationBounds = bounds(secs(2), secs(24 * HOUR));
/// `rotation.activationDelay`.
pub(crate) const ACTIVATION_DELAY: DurationBounds = bounds(secs(1), secs(168 * HOUR));

/// Every duration setting with its bounds.
pub const DURATION_BOUNDS: [(&str, DurationBounds); 12] = [
    ("openbao.timeout", OPENBAO_TIMEOUT),
    ("auth.loginBeforeTokenExpiry", LOGIN_BEFORE_TOKEN_EXPIRY),
    ("auth.tokenRenewalIncrement", TOKEN_RENEWAL_INCREMENT),
    ("auth.loginTimeout", LOGIN_TIMEOUT),
    ("auth.jwt.minRemainingTtl", JWT_MIN_REMAINING_TTL),
    ("auth.jwt.clockSkewLeeway", JWT_CLOCK_SKEW_LEEWAY),
    ("bootstrap.graceTimeout", GRACE_TIMEOUT),
    ("bootstrap.retryInterval", RETRY_INTERVAL),
    ("status.probeInterval", PROBE_INTERVAL),
    ("status.deepProbeInterval", DEEP_PROBE_INTERVAL),
    ("status.statusMaxStaleness", STATUS_MAX_STALENESS),
    ("rotation.activationDelay", ACTIVATION_DELAY),
];
