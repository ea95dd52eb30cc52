//! The provider's policy knobs, already parsed and validated (no file or env parsing here).

use std::time::Duration;

use crate::identity::IdentityScope;

/// Everything the core needs to decide; built by the runtime from the YAML configuration.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ProviderConfig {
    /// The identity values every key_id is bound to.
    pub identity: IdentityScope,
    /// This build's version, written into the `plugin-version` annotation.
    pub plugin_version: String,
    /// `status.probeInterval`: metadata probe cadence and the unknown-key discovery limit.
    pub probe_interval: Duration,
    /// `status.deepProbeInterval`: encrypt/decrypt round-trip probe cadence.
    pub deep_probe_interval: Duration,
    /// `status.statusMaxStaleness`: after this, Status reports unhealthy.
    pub status_max_staleness: Duration,
    /// `rotation.activationDelay`: how long a stable candidate waits before promotion.
    pub activation_delay: Duration,
    /// `rotation.requireStableObservationCount`: observations before a candidate is stable.
    pub require_stable_observation_count: u32,
    /// `rotation.rejectVersionRollback`: treat `latest_version` going backwards as unhealthy.
    pub reject_version_rollback: bool,
    /// `openbao.timeout`: deadline of each KMS request and each Transit call.
    pub request_timeout: Duration,
    /// `bootstrap.retryInterval`: probe cadence until the first healthy snapshot.
    pub bootstrap_retry_interval: Duration,
    /// Per-method concurrency limits.
    pub concurrency: ConcurrencyLimits,
    /// Circuit breaker policy shared by the metadata and deep probes.
    pub breaker: BreakerPolicy,
    /// Decrypt batching policy.
    pub batching: BatchPolicy,
    /// Seed for the deep-probe plaintext generator (the runtime fills it from the OS).
    pub rng_seed: [u8; 32],
}

impl ProviderConfig {
    /// The documented defaults for everything but the identity.
    pub fn with_defaults(identity: IdentityScope, plugin_version: impl Into<String>) -> Self {
        Self {
            identity,
            plugin_version: plugin_version.into(),
            probe_interval: Duration::from_secs(30),
            deep_probe_interval: Duration::from_secs(300),
            status_max_staleness: Duration::from_secs(120),
            activation_delay: Duration::from_secs(120),
            require_stable_observation_count: 3,
            reject_version_rollback: true,
            request_timeout: Duration::from_secs(2),
            bootstrap_retry_interval: Duration::from_secs(5),
            concurrency: ConcurrencyLimits::default(),
            breaker: BreakerPolicy::default(),
            batching: BatchPolicy::default(),
            rng_seed: [0; 32],
        }
    }
}

/// How many requests of each method may be in flight; excess is refused at once, never queued.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ConcurrencyLimits {
    /// Status requests.
    pub status: u32,
    /// Encrypt requests.
    pub encrypt: u32,
    /// Decrypt requests.
    pub decrypt: u32,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        Self {
            status: 16,
            encrypt: 32,
            decrypt: 64,
        }
    }
}

/// When a probe circuit breaker opens and for how long.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker blocks probes.
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// How concurrent Decrypts are grouped into Transit batch calls.
///
/// A Decrypt goes to Transit at once while fewer than `max_calls` Decrypt calls are in flight;
/// otherwise it waits, and the next free call slot takes up to `max_items` waiting Decrypts as
/// one `batch_input` call. One batch of 64 costs OpenBao about twice one single decrypt, so a
/// few slots carry a storm far better than one call per request.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BatchPolicy {
    /// Most items in one batch call; 1 disables batching. Transit's default JSON string limit
    /// allows about 166 items with per-item AAD, so the ceiling is well below that.
    pub max_items: u32,
    /// Most Decrypt calls in flight at once.
    pub max_calls: u32,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_items: 64,
            max_calls: 4,
        }
    }
}
