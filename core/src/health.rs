//! Health: circuit breakers, the reasons a provider is not ready, and the report behind Status,
//! `/ready` and the health metrics.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::BreakerPolicy;

/// A probe circuit breaker: opens after consecutive failures, closes on the next success.
///
/// While open, probes of its kind are not sent, so a failing OpenBao is not hammered; once the
/// cooldown has elapsed the next probe is let through (half-open).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Records a probe outcome at `now`.
    pub fn record(&mut self, now: Instant, success: bool, policy: &BreakerPolicy) {
        if success {
            *self = Self::default();
            return;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures >= policy.failure_threshold {
            self.open_until = Some(now + policy.cooldown);
        }
    }

    /// Whether the breaker blocks probes at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    /// When the breaker lets the next probe through, if it is open.
    pub fn open_until(&self, now: Instant) -> Option<Instant> {
        self.open_until.filter(|until| now < *until)
    }
}

/// Why a provider is not ready; the names are the stable `/ready` reason codes.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum NotReadyReason {
    /// No registry has been loaded or bootstrapped yet.
    StateUnavailable,
    /// The last successful metadata probe is older than `statusMaxStaleness`.
    StatusStale,
    /// No metadata probe has succeeded yet.
    MetadataUnverified,
    /// `config/keys` could not be read.
    UpsertCheckFailed,
    /// Key metadata could not be read.
    MetadataReadFailed,
    /// The mount allows encrypt to create keys (`disable_upsert` is false).
    UpsertAllowed,
    /// The key profile has findings, or Transit metadata contradicts the registry.
    ProfileInvalid,
    /// `latest_version` went below the active version.
    VersionRollback,
    /// A registry save failed.
    StateSaveFailed,
    /// A registry change could not be published (bootstrap refused, state mismatch).
    StatePublishFailed,
    /// `min_encryption_version` blocks the active version.
    EncryptionBlocked,
    /// `min_decryption_version` or `min_available_version` blocks a retained version.
    DecryptionBlocked,
    /// The active key has not passed a deep probe yet.
    DeepProbePending,
    /// The last deep probe failed.
    DeepProbeFailed,
    /// The last deep probe returned something that breaks the contract.
    DeepProbeInvalid,
    /// A probe circuit breaker is open.
    CircuitBreakerOpen,
}

impl NotReadyReason {
    /// The stable reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StateUnavailable => "state_unavailable",
            Self::StatusStale => "status_stale",
            Self::MetadataUnverified => "metadata_unverified",
            Self::UpsertCheckFailed => "upsert_check_failed",
            Self::MetadataReadFailed => "metadata_read_failed",
            Self::UpsertAllowed => "upsert_allowed",
            Self::ProfileInvalid => "profile_invalid",
            Self::VersionRollback => "version_rollback",
            Self::StateSaveFailed => "state_save_failed",
            Self::StatePublishFailed => "state_publish_failed",
            Self::EncryptionBlocked => "encryption_blocked",
            Self::DecryptionBlocked => "decryption_blocked",
            Self::DeepProbePending => "deep_probe_pending",
            Self::DeepProbeFailed => "deep_probe_failed",
            Self::DeepProbeInvalid => "deep_probe_invalid",
            Self::CircuitBreakerOpen => "circuit_breaker_open",
        }
    }

    /// Whether this reason makes Status unhealthy.
    ///
    /// Transient read failures do not: the cached snapshot stays valid until it is stale, so a
    /// blip in OpenBao does not flap the API server. A failed save does not either: the published
    /// registry is still the one on disk or its successor, and the save is retried.
    pub fn blocks_status(self) -> bool {
        !matches!(
            self,
            Self::UpsertCheckFailed
                | Self::MetadataReadFailed
                | Self::CircuitBreakerOpen
                | Self::StateSaveFailed
                | Self::DeepProbeFailed
        )
    }
}

impl fmt::Display for NotReadyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where observed rotation stands.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RotationState {
    /// The newest Transit version is the active one.
    Active,
    /// A newer Transit version is observed and waiting for promotion.
    Pending,
    /// No registry or no metadata yet.
    Unknown,
}

impl RotationState {
    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Unknown => "unknown",
        }
    }
}

/// A point-in-time view of the provider's health, for Status, `/ready` and metrics.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HealthReport {
    /// Whether Status answers `ok`.
    pub healthy: bool,
    /// Every current problem, sorted; empty when healthy and nothing is degraded.
    pub reasons: Vec<NotReadyReason>,
    /// Age of the last successful metadata probe, if any.
    pub cache_age: Option<Duration>,
    /// Whether the cache is older than `statusMaxStaleness`.
    pub stale: bool,
    /// Observed rotation state.
    pub rotation_state: RotationState,
    /// Whether a registry save is failing and being retried.
    pub persistence_degraded: bool,
    /// Whether a probe circuit breaker is open.
    pub breaker_open: bool,
    /// Failure class of the last failed metadata probe, while it is the latest outcome.
    pub metadata_error_class: Option<&'static str>,
    /// Failure class of the last failed deep probe, while it is the latest outcome.
    pub deep_error_class: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_three_failures_and_lets_a_probe_through_after_cooldown() {
        let policy = BreakerPolicy::default();
        let start = crate::test_support::epoch();
        let mut breaker = Breaker::default();
        breaker.record(start, false, &policy);
        breaker.record(start, false, &policy);
        assert!(!breaker.is_open(start));
        breaker.record(start, false, &policy);
        assert!(breaker.is_open(start));
        assert!(breaker.is_open(start + Duration::from_secs(29)));
        assert!(!breaker.is_open(start + Duration::from_secs(30)));
        breaker.record(start + Duration::from_secs(31), true, &policy);
        assert_eq!(breaker, Breaker::default());
    }
}
