//! Logs: one JSON object per line (default) or human-readable text, and the stable log messages.
//!
//! A JSON line is `{"ts":"2024-05-16T12:00:00.123Z","level":"info","message":"key.promoted",...}`
//! followed by the event's fields in the order they were recorded; span context is not added.
//!
//! Redaction is structural: key_ids appear only as their digest ([`KeyId::digest`]), failures only
//! as their stable class, and nothing in this module ever receives plaintext, tokens, ciphertext,
//! annotations, file paths or key names.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bao_kms_core::KeyId;
use bao_kms_core::provider::Event;
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;

use super::metrics::{GRPC_CODES, KMS_METHODS, normalize_label};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `logging.level` is not one of `debug|info|warn|error`.
    #[error("logging.level must be one of debug, info, warn, error")]
    UnknownLevel,
    /// `logging.format` is not one of `json|text`.
    #[error("logging.format must be json or text")]
    UnknownFormat,
    /// The level filter could not be built.
    #[error("log filter could not be built")]
    Filter,
    /// A global subscriber is already installed.
    #[error("a global log subscriber is already installed")]
    AlreadyInitialized,
}

/// Installs the process-wide log subscriber writing to stderr.
///
/// `level` is `debug|info|warn|error` and applies to this project's crates; dependencies log at
/// `warn` or above (or `error` when `level` is `error`). `format` is `json` or `text`.
///
/// # Errors
/// [`LoggingError`] for an unknown level or format, or when a subscriber is already installed.
pub fn init_logging(level: &str, format: &str) -> Result<(), LoggingError> {
    let subscriber = build_subscriber(level, format, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInitialized)
}

/// Builds the subscriber [`init_logging`] installs, writing to `writer`; for tests and for callers
/// that scope a subscriber with [`tracing::subscriber::with_default`].
///
/// # Errors
/// [`LoggingError`] for an unknown level or format.
pub fn build_subscriber<W>(
    level: &str,
    format: &str,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync + 'static>, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = match level {
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" => Level::WARN,
        "error" => Level::ERROR,
        _ => return Err(LoggingError::UnknownLevel),
    };
    let own = level.as_str().to_ascii_lowercase();
    let dependencies = if level == Level::ERROR {
        "error"
    } else {
        "warn"
    };
    let directives = format!(
        "{dependencies},bao_kms_runtime_tokio={own},bao_kms_core={own},bao_kms_provider={own}"
    );
    let filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|_| LoggingError::Filter)?;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        "json" => Ok(Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .with_writer(writer),
            ),
        )),
        "text" => Ok(Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_target(false)
                    .with_writer(writer),
            ),
        )),
        _ => Err(LoggingError::UnknownFormat),
    }
}

/// Event formatter writing `{"ts":..,"level":..,"message":..,<fields>}` per line.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut line = String::with_capacity(128 + fields.rest.len());
        line.push_str("{\"ts\":");
        push_json_string(&mut line, &rfc3339_now());
        line.push_str(",\"level\":");
        push_json_string(&mut line, &level);
        line.push_str(",\"message\":");
        push_json_string(&mut line, fields.message.as_deref().unwrap_or(""));
        line.push_str(&fields.rest);
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields as JSON members (each preceded by a comma).
#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    rest: String,
}

impl JsonFields {
    fn member(&mut self, field: &Field, value: &serde_json::Value) {
        let name = field.name();
        // `log` crate records carry their metadata as fields; the JSON line has its own.
        if name.starts_with("log.") {
            return;
        }
        let name = match name {
            "ts" | "level" => format!("field_{name}"),
            other => other.to_owned(),
        };
        self.rest.push(',');
        push_json_string(&mut self.rest, &name);
        self.rest.push(':');
        self.rest
            .push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()));
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let json = serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string().into(), serde_json::Value::Number);
        self.member(field, &json);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, &value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, &value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, &value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.member(field, &value.into());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.member(field, &text.into());
        }
    }
}

fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned()));
}

/// The current UTC time as RFC 3339 with milliseconds: `2024-05-16T12:00:00.123Z`.
#[expect(clippy::disallowed_methods, reason = "log timestamps")]
fn rfc3339_now() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    rfc3339(since_epoch)
}

/// Formats a time since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The digest of a key_id, the only form key_ids take in logs.
fn key_hash(key_id: &KeyId) -> String {
    key_id.digest().to_string()
}

/// Writes the log line for a core event.
///
/// | Event | Message | Level | Fields |
/// |---|---|---|---|
/// | `KeyObserved` | `key.observed` | info | `key_id_hash`, `transit_key_version` |
/// | `KeyPromoted` | `key.promoted` | info | `key_id_hash`, `transit_key_version`, `previous_key_id_hash`, `previous_transit_key_version` |
/// | `RegistryPublished` | `registry.published` | info | `generation` |
/// | `HealthChanged` | `status.health_changed` | info / warn | `healthz` (`ok`/`unhealthy`) |
/// | `ProbeFinished` | `status.probe` | debug / warn | `probe_kind`, `status`, `error_class` |
/// | `StateSaveFailed` | `state.save_failed` | error | `reason` |
/// | `BootstrapRefused` | `bootstrap.refused` | error | `reason` |
/// | `ClockRegressed` | `clock.regressed` | warn | `seconds` |
/// | `DiscoveryStarted` | `key.discovery` | info | — |
/// | `TransitRetried` | `openbao.retry` | debug | `operation`, `error_class` |
/// | `TransitRetriesExhausted` | `openbao.retry_gave_up` | warn | `operation`, `error_class` |
pub fn log_event(event: &Event) {
    #[expect(
        clippy::wildcard_enum_match_arm,
        reason = "Event is #[non_exhaustive] in the core crate; future variants get a generic line"
    )]
    match event {
        Event::KeyObserved { version, key_id } => {
            tracing::info!(
                key_id_hash = %key_hash(key_id),
                transit_key_version = version.get(),
                "key.observed"
            );
        }
        Event::KeyPromoted {
            previous_key_id,
            previous_version,
            key_id,
            version,
        } => {
            tracing::info!(
                key_id_hash = %key_hash(key_id),
                transit_key_version = version.get(),
                previous_key_id_hash = %key_hash(previous_key_id),
                previous_transit_key_version = previous_version.get(),
                "key.promoted"
            );
        }
        Event::RegistryPublished { generation } => {
            tracing::info!(generation = *generation, "registry.published");
        }
        Event::HealthChanged { healthy: true } => {
            tracing::info!(healthz = "ok", "status.health_changed");
        }
        Event::HealthChanged { healthy: false } => {
            tracing::warn!(healthz = "unhealthy", "status.health_changed");
        }
        Event::ProbeFinished {
            kind,
            failure: None,
        } => {
            tracing::debug!(probe_kind = kind.as_str(), status = "ok", "status.probe");
        }
        Event::ProbeFinished {
            kind,
            failure: Some(class),
        } => {
            tracing::warn!(
                probe_kind = kind.as_str(),
                status = "error",
                error_class = %normalize_label(class),
                "status.probe"
            );
        }
        Event::StateSaveFailed => {
            tracing::error!(reason = "state_save_failed", "state.save_failed");
        }
        Event::BootstrapRefused(refusal) => {
            tracing::error!(reason = %refusal, "bootstrap.refused");
        }
        Event::ClockRegressed { seconds } => {
            tracing::warn!(seconds = *seconds, "clock.regressed");
        }
        Event::DiscoveryStarted => {
            tracing::info!("key.discovery");
        }
        Event::TransitRetried { operation, class } => {
            tracing::debug!(
                operation = operation.as_str(),
                error_class = class.as_str(),
                "openbao.retry"
            );
        }
        Event::TransitRetriesExhausted { operation, class } => {
            tracing::warn!(
                operation = operation.as_str(),
                error_class = class.as_str(),
                "openbao.retry_gave_up"
            );
        }
        _ => {
            tracing::debug!("core.event");
        }
    }
}

/// Writes the `kms.request` line for one finished KMS request: debug when `code` is `ok`, warn
/// otherwise. `method` is `status|encrypt|decrypt`, `code` the snake_case gRPC code, `class` the
/// refusal's error class.
pub fn log_kms_request(method: &str, code: &str, class: Option<&str>, elapsed: Duration) {
    let method = normalize_label(method);
    let method = if KMS_METHODS.contains(&method.as_str()) {
        method
    } else {
        "unknown".to_owned()
    };
    let code = normalize_label(code);
    let code = if GRPC_CODES.contains(&code.as_str()) {
        code
    } else {
        "unknown".to_owned()
    };
    let operation = format!("kms.{method}");
    // Microsecond resolution, as a float of milliseconds.
    // Exact below 2^53 µs (285 years).
    let duration_ms =
        u64::try_from(elapsed.as_micros()).map_or(f64::MAX, |micros| micros as f64 / 1000.0);
    if code == "ok" {
        tracing::debug!(
            operation = %operation,
            status = "ok",
            grpc_code = %code,
            duration_ms,
            "kms.request"
        );
    } else {
        let class = class.map_or_else(|| "unknown".to_owned(), normalize_label);
        tracing::warn!(
            operation = %operation,
            status = "error",
            grpc_code = %code,
            duration_ms,
            error_class = %class,
            "kms.request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_millis(1_715_860_800_123)),
            "2024-05-16T12:00:00.123Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
