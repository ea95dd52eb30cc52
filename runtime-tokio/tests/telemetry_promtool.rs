//! `promtool check metrics` over the exposition, when promtool is installed (Debian package
//! `prometheus`); skipped with a note otherwise.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bao_kms_core::health::{HealthReport, RotationState};
use bao_kms_core::{KeyId, KeyVersion};
use bao_kms_runtime_tokio::telemetry::Metrics;

fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        println!("note: promtool not found (Debian package `prometheus`); skipping the lint check");
    }
    found
}

fn check_metrics(text: &str) -> Output {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn populated() -> Metrics {
    let metrics = Metrics::new("v0.1.0", "abc123", "2024-05-16", "false");
    metrics.record_grpc("encrypt", "ok", Duration::from_millis(3));
    metrics.record_grpc("decrypt", "not_found", Duration::from_millis(2));
    let _guard = metrics.grpc_in_flight("status");
    metrics.concurrency_rejected("decrypt");
    metrics.record_openbao(
        "transit_metadata_read",
        "tls_failed",
        Duration::from_millis(9),
    );
    metrics.record_login("ok");
    metrics.record_renewal("ok");
    metrics.set_auth_method("cert");
    metrics.set_token_ttl(f64::INFINITY);
    metrics.record_metadata_observation("timeout");
    metrics.record_refusal_class("annotation_invalid");
    metrics.record_refusal_class("key_id_malformed");
    metrics.socket_restarted();
    let key = KeyId::parse("obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk").unwrap();
    let report = HealthReport {
        healthy: true,
        reasons: Vec::new(),
        cache_age: Some(Duration::from_secs(4)),
        stale: false,
        rotation_state: RotationState::Pending,
        persistence_degraded: false,
        breaker_open: false,
        metadata_error_class: None,
        deep_error_class: None,
    };
    metrics.apply_health(&report, Some((&key, KeyVersion::new(2).unwrap())));
    metrics
}

/// The classic text rendering of the same registry passes promtool's parser and every lint
/// (names, help, counter suffixes, units).
#[test]
fn promtool_accepts_the_prometheus_text_rendering() {
    if !promtool_available() {
        return;
    }
    let output = check_metrics(&populated().encode_prometheus_text());
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The OpenMetrics exposition served on `/metrics` parses. promtool's checker reads only the
/// classic format, where an OpenMetrics counter family `x` (samples `x_total`) shows up as an
/// unrelated `x_total` without help; that one artifact is tolerated, nothing else is.
#[test]
fn promtool_parses_the_openmetrics_exposition() {
    if !promtool_available() {
        return;
    }
    let text = populated().encode();
    let output = check_metrics(&text);
    if output.status.success() {
        return;
    }
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !report.contains("error while linting") && !report.contains("parsing error"),
        "promtool could not parse the exposition: {report}\n{text}"
    );
    for problem in report.lines().filter(|line| !line.trim().is_empty()) {
        let name = problem
            .strip_suffix(" no help text")
            .and_then(|name| name.strip_suffix("_total"))
            .unwrap_or_else(|| panic!("unexpected promtool finding: {problem}"));
        assert!(
            text.contains(&format!("# TYPE {name} counter\n")),
            "unexpected promtool finding: {problem}"
        );
    }
}
