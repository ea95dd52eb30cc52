//! Log lines: JSON shape, stable messages and fields, levels and redaction.
#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bao_kms_core::provider::{Event, ProbeKind};
use bao_kms_core::rotation::BootstrapRefusal;
use bao_kms_core::{KeyId, KeyVersion};
use bao_kms_runtime_tokio::telemetry::logging::{LoggingError, build_subscriber, rfc3339};
use bao_kms_runtime_tokio::telemetry::{init_logging, log_event, log_kms_request};
use serde_json::Value;

const KEY_A: &str = "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk";
const KEY_B: &str = "obk2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `body` under a subscriber of `level` and `format`, returning what it wrote.
fn capture(level: &str, format: &str, body: impl FnOnce()) -> String {
    let sink = Capture::default();
    let writer = sink.clone();
    let subscriber = build_subscriber(level, format, move || writer.clone()).unwrap();
    tracing::subscriber::with_default(subscriber, body);
    String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn key(text: &str) -> KeyId {
    KeyId::parse(text).unwrap()
}

#[test]
fn json_lines_start_with_ts_level_message() {
    let out = capture("info", "json", || {
        log_event(&Event::KeyPromoted {
            previous_key_id: key(KEY_A),
            previous_version: KeyVersion::new(1).unwrap(),
            key_id: key(KEY_B),
            version: KeyVersion::new(2).unwrap(),
        });
    });
    let line = out.lines().next().unwrap();
    assert!(line.starts_with(r#"{"ts":""#), "{line}");
    let after_ts = &line[line.find(r#"","level":"#).unwrap()..];
    assert!(
        after_ts.starts_with(r#"","level":"info","message":"key.promoted","key_id_hash":"#),
        "{line}"
    );
    let value: Value = serde_json::from_str(line).unwrap();
    let ts = value["ts"].as_str().unwrap();
    assert_eq!(ts.len(), "2024-05-16T12:00:00.123Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    assert_eq!(value["key_id_hash"], key(KEY_B).digest().to_string());
    assert_eq!(value["transit_key_version"], 2);
    assert_eq!(
        value["previous_key_id_hash"],
        key(KEY_A).digest().to_string()
    );
    assert_eq!(value["previous_transit_key_version"], 1);
    assert!(
        !out.contains(KEY_A) && !out.contains(KEY_B),
        "raw key_id logged: {out}"
    );
}

#[test]
fn every_core_event_has_its_stable_message() {
    let out = capture("debug", "json", || {
        log_event(&Event::KeyObserved {
            version: KeyVersion::new(5).unwrap(),
            key_id: key(KEY_A),
        });
        log_event(&Event::RegistryPublished { generation: 7 });
        log_event(&Event::HealthChanged { healthy: false });
        log_event(&Event::HealthChanged { healthy: true });
        log_event(&Event::ProbeFinished {
            kind: ProbeKind::Metadata,
            failure: None,
        });
        log_event(&Event::ProbeFinished {
            kind: ProbeKind::Deep,
            failure: Some("deep_probe_invalid"),
        });
        log_event(&Event::StateSaveFailed);
        log_event(&Event::BootstrapRefused(BootstrapRefusal::KeyRotated(3)));
        log_event(&Event::ClockRegressed { seconds: 42 });
        log_event(&Event::DiscoveryStarted);
    });
    let lines = json_lines(&out);
    let summary: Vec<(&str, &str)> = lines
        .iter()
        .map(|v| (v["level"].as_str().unwrap(), v["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("info", "key.observed"),
            ("info", "registry.published"),
            ("warn", "status.health_changed"),
            ("info", "status.health_changed"),
            ("debug", "status.probe"),
            ("warn", "status.probe"),
            ("error", "state.save_failed"),
            ("error", "bootstrap.refused"),
            ("warn", "clock.regressed"),
            ("info", "key.discovery"),
        ]
    );
    assert_eq!(lines[0]["key_id_hash"], key(KEY_A).digest().to_string());
    assert_eq!(lines[0]["transit_key_version"], 5);
    assert_eq!(lines[1]["generation"], 7);
    assert_eq!(lines[2]["healthz"], "unhealthy");
    assert_eq!(lines[3]["healthz"], "ok");
    assert_eq!(lines[4]["probe_kind"], "metadata");
    assert_eq!(lines[4]["status"], "ok");
    assert!(lines[4].get("error_class").is_none());
    assert_eq!(lines[5]["probe_kind"], "deep");
    assert_eq!(lines[5]["status"], "error");
    assert_eq!(lines[5]["error_class"], "deep_probe_invalid");
    assert_eq!(lines[6]["reason"], "state_save_failed");
    assert_eq!(
        lines[7]["reason"],
        "Transit latest_version=3 is not initial version 1"
    );
    assert_eq!(lines[8]["seconds"], 42);
    assert!(!out.contains(KEY_A), "raw key_id logged: {out}");
}

#[test]
fn kms_requests_log_debug_on_success_and_warn_on_failure() {
    let out = capture("debug", "json", || {
        log_kms_request("encrypt", "ok", None, Duration::from_micros(1500));
        log_kms_request(
            "decrypt",
            "invalid_argument",
            Some("aad_mismatch"),
            Duration::from_millis(3),
        );
        log_kms_request("status", "unavailable", None, Duration::ZERO);
    });
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["level"], "debug");
    assert_eq!(lines[0]["message"], "kms.request");
    assert_eq!(lines[0]["operation"], "kms.encrypt");
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[0]["duration_ms"], 1.5);
    assert!(lines[0].get("error_class").is_none());
    assert_eq!(lines[1]["level"], "warn");
    assert_eq!(lines[1]["operation"], "kms.decrypt");
    assert_eq!(lines[1]["status"], "error");
    assert_eq!(lines[1]["grpc_code"], "invalid_argument");
    assert_eq!(lines[1]["error_class"], "aad_mismatch");
    assert_eq!(lines[2]["error_class"], "unknown");
}

#[test]
fn level_filters_debug_lines() {
    let out = capture("info", "json", || {
        log_kms_request("encrypt", "ok", None, Duration::from_millis(1));
        log_event(&Event::ProbeFinished {
            kind: ProbeKind::Metadata,
            failure: None,
        });
        log_event(&Event::DiscoveryStarted);
    });
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["message"], "key.discovery");

    let out = capture("error", "json", || {
        log_event(&Event::ClockRegressed { seconds: 1 });
        log_event(&Event::StateSaveFailed);
    });
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["message"], "state.save_failed");
}

#[test]
fn text_format_is_one_readable_line() {
    let out = capture("info", "text", || {
        log_event(&Event::RegistryPublished { generation: 3 });
    });
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("INFO"), "{out}");
    assert!(out.contains("registry.published"), "{out}");
    assert!(out.contains("generation=3"), "{out}");
    assert!(!out.contains('\u{1b}'), "ANSI escapes in {out:?}");
}

#[test]
fn strings_are_escaped() {
    let out = capture("info", "json", || {
        tracing::info!(target: "bao_kms_runtime_tokio::test", detail = "quote \" and\nnewline", "x.y");
        // Other crates log at warn and above only.
        tracing::info!(target: "hyper::proto", "filtered");
    });
    assert_eq!(out.lines().count(), 1, "{out}");
    let value: Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(value["detail"], "quote \" and\nnewline");
}

#[test]
fn unknown_level_or_format_is_refused() {
    assert!(matches!(
        build_subscriber("trace", "json", io::stderr),
        Err(LoggingError::UnknownLevel)
    ));
    assert!(matches!(
        build_subscriber("info", "logfmt", io::stderr),
        Err(LoggingError::UnknownFormat)
    ));
    assert!(matches!(
        init_logging("verbose", "json"),
        Err(LoggingError::UnknownLevel)
    ));
}

#[test]
fn global_subscriber_installs_once() {
    init_logging("warn", "json").unwrap();
    assert!(matches!(
        init_logging("warn", "json"),
        Err(LoggingError::AlreadyInitialized)
    ));
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        rfc3339(Duration::from_millis(1_715_860_800_123)),
        "2024-05-16T12:00:00.123Z"
    );
    assert_eq!(
        rfc3339(Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00.000Z"
    );
    assert_eq!(
        rfc3339(Duration::from_secs(4_102_444_799)),
        "2099-12-31T23:59:59.000Z"
    );
}
