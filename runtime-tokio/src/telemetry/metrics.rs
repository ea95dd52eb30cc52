//! The Prometheus metrics of the provider, in an isolated registry.
//!
//! Every label value goes through [`normalize_label`] (lowercase, `[a-z0-9_]` only, never
//! empty), and labels with a closed set of values (gRPC method and code, OpenBao operation, auth
//! method, refusal reasons) fall back to `unknown` for anything outside that set, so a bug
//! elsewhere cannot blow up cardinality or leak an identifier. The two key hash labels are the
//! only exception: they carry digests computed here from the active key_id, never the key_id.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bao_kms_core::health::{HealthReport, RotationState};
use bao_kms_core::{KeyId, KeyVersion};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The gRPC codes, in the snake_case spelling used as `status` label values.
pub const GRPC_CODES: [&str; 17] = [
    "ok",
    "canceled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// The KMS methods, as `method` label values.
pub const KMS_METHODS: [&str; 3] = ["status", "encrypt", "decrypt"];

/// The OpenBao operations, as `operation` label values.
pub const OPENBAO_OPERATIONS: [&str; 9] = [
    "jwt_login",
    "cert_login",
    "token_renew_self",
    "transit_metadata_read",
    "transit_disable_upsert_read",
    "transit_encrypt",
    "transit_decrypt",
    "transit_batch_decrypt",
    "capabilities_self",
];

/// Roles of an OpenBao node (`openbao_kms_openbao_node_role`).
pub const OPENBAO_NODE_ROLES: [&str; 5] = ["unknown", "active", "standby", "sealed", "unreachable"];

/// Refusal classes counted by `openbao_kms_aad_validation_errors_total`.
pub const AAD_ERROR_REASONS: [&str; 3] = ["aad_missing", "aad_mismatch", "annotation_invalid"];

/// Refusal classes counted by `openbao_kms_decrypt_key_id_errors_total`.
pub const KEY_ID_ERROR_REASONS: [&str; 2] = ["key_id_unknown", "key_id_malformed"];

/// Values of `openbao_kms_auth_method_info{method}`.
pub const AUTH_METHODS: [&str; 5] = ["jwt", "token", "approle", "cert", "unknown"];

/// The three rotation states, all emitted by `openbao_kms_rotation_state`.
const ROTATION_STATES: [RotationState; 3] = [
    RotationState::Active,
    RotationState::Pending,
    RotationState::Unknown,
];

/// Histogram buckets: 1 ms doubling up to 2.048 s.
const DURATION_BUCKET_START: f64 = 0.001;
/// Number of finite histogram buckets.
const DURATION_BUCKET_COUNT: u16 = 12;

/// Normalizes a label value: ASCII lowercase, every byte outside `[a-z0-9_]` becomes `_`, and an
/// empty value becomes `unknown`.
pub fn normalize_label(value: &str) -> String {
    if value.is_empty() {
        return "unknown".to_owned();
    }
    value
        .chars()
        .map(|c| {
            let lower = c.to_ascii_lowercase();
            if lower.is_ascii_lowercase() || lower.is_ascii_digit() || lower == '_' {
                lower
            } else {
                '_'
            }
        })
        .collect()
}

/// Normalizes `value` and keeps it only if it is one of `allowed`; else `unknown`.
fn closed_label(value: &str, allowed: &[&str]) -> String {
    let normalized = normalize_label(value);
    if allowed.contains(&normalized.as_str()) {
        normalized
    } else {
        "unknown".to_owned()
    }
}

/// Build labels keep `.`, `-` and `+` so versions and dates stay readable; everything else outside
/// `[A-Za-z0-9]` becomes `_`. They are compile-time constants, never runtime input.
fn build_label(value: &str) -> String {
    if value.is_empty() {
        return "unknown".to_owned();
    }
    value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodStatusLabels {
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationStatusLabels {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationReasonLabels {
    operation: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeRoleLabels {
    address: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabels {
    hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
    build_date: String,
    dirty: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type F64Gauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        DURATION_BUCKET_START,
        2.0,
        DURATION_BUCKET_COUNT,
    ))
}

fn histogram_family<L>() -> HistogramFamily<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(duration_histogram as fn() -> Histogram)
}

/// Hashes of the key currently exported, so a change clears exactly when needed.
#[derive(Debug, Default)]
struct Published {
    /// `(digest, apiserver hash)` of the active key, if any.
    active: Option<(String, String)>,
}

/// A hook run right before each scrape, typically applying the latest health snapshot.
type ScrapeHook = Arc<dyn Fn(&Metrics) + Send + Sync>;

struct Inner {
    registry: Registry,
    /// Serializes health updates with encoding so a scrape never sees a half-switched key.
    published: Mutex<Published>,
    scrape_hook: Mutex<Option<ScrapeHook>>,

    grpc_requests: Family<MethodStatusLabels, Counter>,
    grpc_duration: HistogramFamily<MethodLabels>,
    grpc_in_flight: Family<MethodLabels, Gauge>,
    grpc_rejections: Family<MethodLabels, Counter>,
    openbao_requests: Family<OperationStatusLabels, Counter>,
    openbao_duration: HistogramFamily<OperationLabels>,
    openbao_retries: Family<OperationReasonLabels, Counter>,
    openbao_retry_giveups: Family<OperationReasonLabels, Counter>,
    openbao_node_role: Family<NodeRoleLabels, Gauge>,
    openbao_node_in_use: Family<AddressLabels, Gauge>,
    auth_login: Family<StatusLabels, Counter>,
    auth_renewal: Family<StatusLabels, Counter>,
    auth_method_info: Family<MethodLabels, Gauge>,
    token_ttl: F64Gauge,
    key_id_hash: Family<HashLabels, Gauge>,
    apiserver_key_id_hash: Family<HashLabels, Gauge>,
    key_version: Gauge,
    cache_age: F64Gauge,
    metadata_observations: Family<StatusLabels, Counter>,
    rotation_state: Family<StateLabels, Gauge>,
    persistence_degraded: Gauge,
    aad_errors: Family<ReasonLabels, Counter>,
    key_id_errors: Family<ReasonLabels, Counter>,
    breaker_state: Gauge,
    socket_restarts: Counter,
    ready: Gauge,
    transit_latest_version: Gauge,
    process_open_fds: Gauge,
    process_resident_memory: Gauge,
}

/// The provider's metrics: cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    /// A fresh registry with every metric registered, `build_info` set and the series with a
    /// closed label set (rotation state, refusal reasons, concurrency rejections, in-flight)
    /// present at zero.
    ///
    /// `version`, `commit`, `build_date` and `dirty` become the `openbao_kms_build_info` labels
    /// (`unknown` when empty).
    pub fn new(version: &str, commit: &str, build_date: &str, dirty: &str) -> Self {
        let mut registry = Registry::default();

        let grpc_requests = Family::<MethodStatusLabels, Counter>::default();
        registry.register(
            "openbao_kms_grpc_requests",
            "KMS gRPC requests by method and gRPC status code",
            grpc_requests.clone(),
        );
        let grpc_duration = histogram_family::<MethodLabels>();
        registry.register(
            "openbao_kms_grpc_duration_seconds",
            "KMS gRPC request duration in seconds",
            grpc_duration.clone(),
        );
        let grpc_in_flight = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "openbao_kms_grpc_in_flight",
            "KMS gRPC requests currently being served",
            grpc_in_flight.clone(),
        );
        let grpc_rejections = Family::<MethodLabels, Counter>::default();
        registry.register(
            "openbao_kms_grpc_concurrency_rejections",
            "KMS gRPC requests refused by the concurrency limit",
            grpc_rejections.clone(),
        );
        let openbao_requests = Family::<OperationStatusLabels, Counter>::default();
        registry.register(
            "openbao_kms_openbao_requests",
            "OpenBao HTTP requests by operation and outcome class",
            openbao_requests.clone(),
        );
        let openbao_duration = histogram_family::<OperationLabels>();
        registry.register(
            "openbao_kms_openbao_duration_seconds",
            "OpenBao HTTP request duration in seconds",
            openbao_duration.clone(),
        );
        let openbao_retries = Family::<OperationReasonLabels, Counter>::default();
        registry.register(
            "openbao_kms_openbao_retries",
            "OpenBao calls sent again after a transient failure, by operation and failure class",
            openbao_retries.clone(),
        );
        let openbao_retry_giveups = Family::<OperationReasonLabels, Counter>::default();
        registry.register(
            "openbao_kms_openbao_retry_giveups",
            "OpenBao calls that failed transiently with no retry left inside their deadline",
            openbao_retry_giveups.clone(),
        );
        let openbao_node_role = Family::<NodeRoleLabels, Gauge>::default();
        registry.register(
            "openbao_kms_openbao_node_role",
            "Role of each configured OpenBao node as last seen through sys/health (1 for the current role)",
            openbao_node_role.clone(),
        );
        let openbao_node_in_use = Family::<AddressLabels, Gauge>::default();
        registry.register(
            "openbao_kms_openbao_node_in_use",
            "1 for the configured OpenBao node calls go to now, 0 for the others",
            openbao_node_in_use.clone(),
        );
        let auth_login = Family::<StatusLabels, Counter>::default();
        registry.register(
            "openbao_kms_auth_login",
            "OpenBao logins by outcome class",
            auth_login.clone(),
        );
        let auth_renewal = Family::<StatusLabels, Counter>::default();
        registry.register(
            "openbao_kms_auth_renewal",
            "OpenBao token renewals by outcome class",
            auth_renewal.clone(),
        );
        let auth_method_info = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "openbao_kms_auth_method_info",
            "Configured OpenBao auth method (always 1)",
            auth_method_info.clone(),
        );
        let token_ttl = F64Gauge::default();
        registry.register(
            "openbao_kms_token_ttl_seconds",
            "Conservative remaining lifetime of the OpenBao token in seconds",
            token_ttl.clone(),
        );
        let key_id_hash = Family::<HashLabels, Gauge>::default();
        registry.register(
            "openbao_kms_status_key_id_hash",
            "Digest of the active key_id (always 1); must be equal on every node",
            key_id_hash.clone(),
        );
        let apiserver_key_id_hash = Family::<HashLabels, Gauge>::default();
        registry.register(
            "openbao_kms_status_apiserver_key_id_hash",
            "Active key_id hashed as kube-apiserver does (sha256 hex, always 1)",
            apiserver_key_id_hash.clone(),
        );
        let key_version = Gauge::default();
        registry.register(
            "openbao_kms_key_version",
            "Transit version of the active key (0 without one)",
            key_version.clone(),
        );
        let cache_age = F64Gauge::default();
        registry.register(
            "openbao_kms_status_cache_age_seconds",
            "Age of the last successful metadata probe in seconds (0 before the first)",
            cache_age.clone(),
        );
        let metadata_observations = Family::<StatusLabels, Counter>::default();
        registry.register(
            "openbao_kms_transit_metadata_observation",
            "Transit metadata observations by outcome",
            metadata_observations.clone(),
        );
        let rotation_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "openbao_kms_rotation_state",
            "Observed rotation state, one-hot over active, pending and unknown",
            rotation_state.clone(),
        );
        let persistence_degraded = Gauge::default();
        registry.register(
            "openbao_kms_rotation_persistence_degraded",
            "1 while a registry save is failing and being retried",
            persistence_degraded.clone(),
        );
        let aad_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "openbao_kms_aad_validation_errors",
            "Decrypt requests refused because annotations or AAD did not validate",
            aad_errors.clone(),
        );
        let key_id_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "openbao_kms_decrypt_key_id_errors",
            "Decrypt requests refused because of their key_id",
            key_id_errors.clone(),
        );
        let breaker_state = Gauge::default();
        registry.register(
            "openbao_kms_circuit_breaker_state",
            "1 while a probe circuit breaker is open, else 0",
            breaker_state.clone(),
        );
        let socket_restarts = Counter::default();
        registry.register(
            "openbao_kms_socket_restarts",
            "Stale KMS sockets verified dead and removed before bind",
            socket_restarts.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "openbao_kms_build_info",
            "Build identity of the running binary (always 1)",
            build_info.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "openbao_kms_ready",
            "1 when /ready answers 200, else 0",
            ready.clone(),
        );
        let transit_latest_version = Gauge::default();
        registry.register(
            "openbao_kms_transit_latest_version",
            "latest_version of the Transit key in the last metadata read (0 before the first)",
            transit_latest_version.clone(),
        );
        // The conventional process series, so uptime and restarts can be alerted on with the
        // queries operators already use for other exporters.
        let process_start_time = Gauge::<i64>::default();
        process_start_time.set(crate::clock::wall_clock_unix());
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            process_start_time,
        );
        let process_open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "Number of open file descriptors",
            process_open_fds.clone(),
        );
        let process_resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            process_resident_memory.clone(),
        );

        build_info
            .get_or_create(&BuildLabels {
                version: build_label(version),
                commit: build_label(commit),
                build_date: build_label(build_date),
                dirty: build_label(dirty),
            })
            .set(1);
        for method in KMS_METHODS {
            let labels = MethodLabels {
                method: method.to_owned(),
            };
            grpc_in_flight.get_or_create(&labels).set(0);
            grpc_rejections.get_or_create(&labels).inc_by(0);
        }
        for reason in AAD_ERROR_REASONS {
            aad_errors
                .get_or_create(&ReasonLabels {
                    reason: reason.to_owned(),
                })
                .inc_by(0);
        }
        for reason in KEY_ID_ERROR_REASONS {
            key_id_errors
                .get_or_create(&ReasonLabels {
                    reason: reason.to_owned(),
                })
                .inc_by(0);
        }

        let metrics = Self {
            inner: Arc::new(Inner {
                registry,
                published: Mutex::new(Published::default()),
                scrape_hook: Mutex::new(None),
                grpc_requests,
                grpc_duration,
                grpc_in_flight,
                grpc_rejections,
                openbao_requests,
                openbao_duration,
                openbao_retries,
                openbao_retry_giveups,
                openbao_node_role,
                openbao_node_in_use,
                auth_login,
                auth_renewal,
                auth_method_info,
                token_ttl,
                key_id_hash,
                apiserver_key_id_hash,
                key_version,
                cache_age,
                metadata_observations,
                rotation_state,
                persistence_degraded,
                aad_errors,
                key_id_errors,
                breaker_state,
                socket_restarts,
                ready,
                transit_latest_version,
                process_open_fds,
                process_resident_memory,
            }),
        };
        metrics.set_rotation_state(RotationState::Unknown);
        metrics
    }

    /// Counts one finished KMS request: `method` is `status|encrypt|decrypt`, `code` the gRPC
    /// code in snake_case (`ok`, `deadline_exceeded`, ...).
    pub fn record_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        let method = closed_label(method, &KMS_METHODS);
        let status = closed_label(code, &GRPC_CODES);
        self.inner
            .grpc_duration
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.inner
            .grpc_requests
            .get_or_create(&MethodStatusLabels { method, status })
            .inc();
    }

    /// Marks one KMS request of `method` as in flight until the guard is dropped.
    pub fn grpc_in_flight(&self, method: &str) -> InFlightGuard {
        let gauge = self
            .inner
            .grpc_in_flight
            .get_or_create_owned(&MethodLabels {
                method: closed_label(method, &KMS_METHODS),
            });
        gauge.inc();
        InFlightGuard { gauge }
    }

    /// Counts one KMS request refused by the concurrency limit.
    pub fn concurrency_rejected(&self, method: &str) {
        self.inner
            .grpc_rejections
            .get_or_create(&MethodLabels {
                method: closed_label(method, &KMS_METHODS),
            })
            .inc();
    }

    /// Counts one OpenBao HTTP request: `operation` from the fixed list (`transit_encrypt`, ...),
    /// `status` `ok` or the failure class.
    pub fn record_openbao(&self, operation: &str, status: &str, elapsed: Duration) {
        let operation = closed_label(operation, &OPENBAO_OPERATIONS);
        self.inner
            .openbao_duration
            .get_or_create(&OperationLabels {
                operation: operation.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.inner
            .openbao_requests
            .get_or_create(&OperationStatusLabels {
                operation,
                status: normalize_label(status),
            })
            .inc();
    }

    /// Counts one retry of a failed OpenBao call (`gave_up: false`) or one transient failure
    /// that could not be retried inside its deadline (`gave_up: true`).
    pub fn record_openbao_retry(&self, operation: &str, reason: &str, gave_up: bool) {
        let labels = OperationReasonLabels {
            operation: closed_label(operation, &OPENBAO_OPERATIONS),
            reason: normalize_label(reason),
        };
        let family = if gave_up {
            &self.inner.openbao_retry_giveups
        } else {
            &self.inner.openbao_retries
        };
        family.get_or_create(&labels).inc();
    }

    /// Publishes every configured OpenBao node's role (`unknown`, `active`, `standby`,
    /// `sealed`, `unreachable`) and which node is in use. The addresses come from the
    /// configuration, so the label set is bounded by it.
    pub fn set_openbao_nodes(&self, nodes: &[(String, &'static str)], in_use: &str) {
        for (address, role) in nodes {
            for label in OPENBAO_NODE_ROLES {
                self.inner
                    .openbao_node_role
                    .get_or_create(&NodeRoleLabels {
                        address: address.clone(),
                        role: label.to_owned(),
                    })
                    .set(i64::from(label == *role));
            }
            self.inner
                .openbao_node_in_use
                .get_or_create(&AddressLabels {
                    address: address.clone(),
                })
                .set(i64::from(address == in_use));
        }
    }

    /// Counts one login attempt: `ok` or the failure class.
    pub fn record_login(&self, status: &str) {
        self.record_logins(status, 1);
    }

    /// Counts `count` login attempts with the same outcome.
    pub fn record_logins(&self, status: &str, count: u64) {
        self.inner
            .auth_login
            .get_or_create(&StatusLabels {
                status: normalize_label(status),
            })
            .inc_by(count);
    }

    /// Counts one token renewal attempt: `ok` or the failure class.
    pub fn record_renewal(&self, status: &str) {
        self.record_renewals(status, 1);
    }

    /// Counts `count` renewal attempts with the same outcome.
    pub fn record_renewals(&self, status: &str, count: u64) {
        self.inner
            .auth_renewal
            .get_or_create(&StatusLabels {
                status: normalize_label(status),
            })
            .inc_by(count);
    }

    /// Sets the configured auth method (`jwt|cert`, anything else is `unknown`); the previous
    /// series is removed.
    pub fn set_auth_method(&self, method: &str) {
        let family = &self.inner.auth_method_info;
        family.clear();
        family
            .get_or_create(&MethodLabels {
                method: closed_label(method, &AUTH_METHODS),
            })
            .set(1);
    }

    /// Sets the remaining token lifetime. A token that never expires (`+inf`) is exported as the
    /// largest finite value, so every parser accepts it; NaN and negatives become 0.
    pub fn set_token_ttl(&self, secs: f64) {
        let value = if secs.is_nan() || secs < 0.0 {
            0.0
        } else if secs.is_infinite() {
            f64::MAX
        } else {
            secs
        };
        self.inner.token_ttl.set(value);
    }

    /// Bumps the AAD or key_id error counter when `class` (a [`Refusal::class`] value) is one of
    /// theirs; other classes are ignored.
    ///
    /// [`Refusal::class`]: bao_kms_core::Refusal::class
    pub fn record_refusal_class(&self, class: &str) {
        if AAD_ERROR_REASONS.contains(&class) {
            self.inner
                .aad_errors
                .get_or_create(&ReasonLabels {
                    reason: class.to_owned(),
                })
                .inc();
        } else if KEY_ID_ERROR_REASONS.contains(&class) {
            self.inner
                .key_id_errors
                .get_or_create(&ReasonLabels {
                    reason: class.to_owned(),
                })
                .inc();
        }
    }

    /// Counts one Transit metadata observation: `ok` or its failure class.
    pub fn record_metadata_observation(&self, status: &str) {
        self.inner
            .metadata_observations
            .get_or_create(&StatusLabels {
                status: normalize_label(status),
            })
            .inc();
    }

    /// Records the `latest_version` of a successful Transit key metadata read.
    pub fn set_transit_latest_version(&self, version: u64) {
        self.inner
            .transit_latest_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// Reads the process series from `/proc/self` (Linux); a value that cannot be read keeps
    /// its previous reading rather than dropping to 0, which would look like a leak fixed.
    fn refresh_process(&self) {
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            let open = entries.count().saturating_sub(1);
            self.inner
                .process_open_fds
                .set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kib) = status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i64>()
                        .ok()
                })
        {
            self.inner
                .process_resident_memory
                .set(kib.saturating_mul(1024));
        }
    }

    /// Counts one stale socket removed before bind.
    pub fn socket_restarted(&self) {
        self.inner.socket_restarts.inc();
    }

    /// Applies a health snapshot: key hash series (switched atomically with respect to scrapes),
    /// key version, cache age, rotation state, persistence, breaker and readiness.
    pub fn apply_health(&self, report: &HealthReport, active: Option<(&KeyId, KeyVersion)>) {
        let mut published = lock(&self.inner.published);
        let wanted =
            active.map(|(key_id, _)| (key_id.digest().to_string(), key_id.apiserver_hash()));
        if published.active != wanted {
            self.inner.key_id_hash.clear();
            self.inner.apiserver_key_id_hash.clear();
            if let Some((digest, apiserver)) = &wanted {
                self.inner
                    .key_id_hash
                    .get_or_create(&HashLabels {
                        hash: digest.clone(),
                    })
                    .set(1);
                self.inner
                    .apiserver_key_id_hash
                    .get_or_create(&HashLabels {
                        hash: apiserver.clone(),
                    })
                    .set(1);
            }
            published.active = wanted;
        }
        self.inner
            .key_version
            .set(active.map_or(0, |(_, version)| i64::from(version.get())));
        self.inner
            .cache_age
            .set(report.cache_age.map_or(0.0, |age| age.as_secs_f64()));
        self.set_rotation_state(report.rotation_state);
        self.inner
            .persistence_degraded
            .set(i64::from(report.persistence_degraded));
        self.inner.breaker_state.set(i64::from(report.breaker_open));
        self.inner
            .ready
            .set(i64::from(super::is_ready(report, active.is_some())));
    }

    fn set_rotation_state(&self, current: RotationState) {
        for state in ROTATION_STATES {
            self.inner
                .rotation_state
                .get_or_create(&StateLabels {
                    state: state.as_str().to_owned(),
                })
                .set(i64::from(state == current));
        }
    }

    /// Registers a hook run at the start of every [`encode`](Self::encode), before the registry
    /// is read; the runtime uses it to [`apply_health`](Self::apply_health) the latest snapshot so
    /// gauges like the cache age are current at scrape time. Replaces any earlier hook.
    pub fn on_scrape(&self, hook: impl Fn(&Self) + Send + Sync + 'static) {
        *lock(&self.inner.scrape_hook) = Some(Arc::new(hook));
    }

    /// The OpenMetrics text exposition of every metric, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let hook = lock(&self.inner.scrape_hook).clone();
        if let Some(hook) = hook {
            hook(self);
        }
        self.refresh_process();
        let _published = lock(&self.inner.published);
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only truncate the output.
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    /// The same metrics in the classic Prometheus text format (0.0.4, counters named with their
    /// `_total` suffix in `HELP`/`TYPE`), for tools that do not read OpenMetrics such as
    /// `promtool check metrics`. The `/metrics` endpoint serves [`encode`](Self::encode).
    pub fn encode_prometheus_text(&self) -> String {
        let hook = lock(&self.inner.scrape_hook).clone();
        if let Some(hook) = hook {
            hook(self);
        }
        self.refresh_process();
        let _published = lock(&self.inner.published);
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)
            .is_err()
        {
            out.clear();
        }
        out
    }
}

/// Keeps one request counted in `openbao_kms_grpc_in_flight` until dropped.
#[derive(Debug)]
#[must_use = "the request stops counting as in flight when the guard is dropped"]
pub struct InFlightGuard {
    gauge: Gauge,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize_label(""), "unknown");
        assert_eq!(normalize_label("TLS-Failed"), "tls_failed");
        assert_eq!(normalize_label("a b/c"), "a_b_c");
        assert_eq!(closed_label("Encrypt", &KMS_METHODS), "encrypt");
        assert_eq!(closed_label("bogus", &KMS_METHODS), "unknown");
        assert_eq!(build_label("0.1.0+g1"), "0.1.0+g1");
        assert_eq!(build_label(""), "unknown");
    }

    #[test]
    fn process_series_and_the_transit_latest_version_are_exported() {
        let metrics = Metrics::new("v0", "c", "d", "false");
        metrics.set_transit_latest_version(7);
        let text = metrics.encode();
        assert!(
            text.contains("openbao_kms_transit_latest_version 7\n"),
            "{text}"
        );
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .and_then(|value| value.parse().ok())
                .unwrap_or(-1.0)
        };
        assert!(value("process_start_time_seconds") > 1.6e9, "{text}");
        assert!(value("process_open_fds") >= 3.0, "{text}");
        assert!(value("process_resident_memory_bytes") > 1.0e5, "{text}");
    }
}
