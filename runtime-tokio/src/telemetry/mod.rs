//! Metrics, health endpoints and logs.
//!
//! - [`metrics`]: the isolated Prometheus registry ([`Metrics`]) with every `openbao_kms_*`
//!   series and the label normalization that keeps raw identifiers out of labels.
//! - [`http`]: the `/metrics` listener and the `/live` + `/ready` listener (hyper, HTTP/1 only).
//! - [`logging`]: the JSON/text log subscriber and the stable log messages for core events and
//!   KMS requests.
//!
//! Nothing here decides anything: readiness is read from the core's [`HealthReport`], and the
//! same verdict ([`is_ready`]) drives both `/ready` and `openbao_kms_ready`.

pub mod http;
pub mod logging;
pub mod metrics;

use bao_kms_core::health::HealthReport;

pub use self::http::{HealthSource, HealthView, bind, serve_health, serve_metrics};
pub use self::logging::{LoggingError, init_logging, log_event, log_kms_request};
pub use self::metrics::{InFlightGuard, Metrics, normalize_label};

/// Whether a provider with this report is ready to serve: Status healthy, the cache fresh and an
/// active key present. `/ready` answers 200 and `openbao_kms_ready` is 1 exactly then.
pub fn is_ready(report: &HealthReport, has_active_key: bool) -> bool {
    report.healthy && !report.stale && has_active_key
}
