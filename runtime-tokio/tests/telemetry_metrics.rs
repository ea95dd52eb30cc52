//! Metrics registry: names, types, label normalization and the key hash lifecycle.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bao_kms_core::health::{HealthReport, NotReadyReason, RotationState};
use bao_kms_core::{KeyId, KeyVersion};
use bao_kms_runtime_tokio::telemetry::{Metrics, normalize_label};

const KEY_A: &str = "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk";
const KEY_B: &str = "obk2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn metrics() -> Metrics {
    Metrics::new("v0.1.0", "abc123", "2024-05-16", "false")
}

fn healthy() -> HealthReport {
    HealthReport {
        healthy: true,
        reasons: Vec::new(),
        cache_age: Some(Duration::from_millis(1500)),
        stale: false,
        rotation_state: RotationState::Active,
        persistence_degraded: false,
        breaker_open: false,
        metadata_error_class: None,
        deep_error_class: None,
    }
}

/// Lines of the exposition that are samples of `name` (exact family, any suffix given).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

fn exercise(metrics: &Metrics) {
    metrics.record_grpc("encrypt", "ok", Duration::from_millis(3));
    metrics.record_grpc("decrypt", "invalid_argument", Duration::from_millis(1));
    let guard = metrics.grpc_in_flight("decrypt");
    drop(guard);
    metrics.concurrency_rejected("encrypt");
    metrics.record_openbao("transit_encrypt", "ok", Duration::from_millis(7));
    metrics.record_login("ok");
    metrics.record_renewal("permission_denied");
    metrics.set_auth_method("jwt");
    metrics.set_token_ttl(3600.0);
    metrics.record_metadata_observation("ok");
    metrics.record_refusal_class("aad_mismatch");
    metrics.record_refusal_class("key_id_unknown");
    metrics.socket_restarted();
    let key = KeyId::parse(KEY_A).unwrap();
    metrics.apply_health(&healthy(), Some((&key, KeyVersion::new(3).unwrap())));
}

#[test]
fn every_metric_is_exposed_with_its_type() {
    let metrics = metrics();
    exercise(&metrics);
    let text = metrics.encode();
    let expected = [
        ("openbao_kms_grpc_requests", "counter"),
        ("openbao_kms_grpc_duration_seconds", "histogram"),
        ("openbao_kms_grpc_in_flight", "gauge"),
        ("openbao_kms_grpc_concurrency_rejections", "counter"),
        ("openbao_kms_openbao_requests", "counter"),
        ("openbao_kms_openbao_duration_seconds", "histogram"),
        ("openbao_kms_auth_login", "counter"),
        ("openbao_kms_auth_renewal", "counter"),
        ("openbao_kms_auth_method_info", "gauge"),
        ("openbao_kms_token_ttl_seconds", "gauge"),
        ("openbao_kms_status_key_id_hash", "gauge"),
        ("openbao_kms_status_apiserver_key_id_hash", "gauge"),
        ("openbao_kms_key_version", "gauge"),
        ("openbao_kms_status_cache_age_seconds", "gauge"),
        ("openbao_kms_transit_metadata_observation", "counter"),
        ("openbao_kms_rotation_state", "gauge"),
        ("openbao_kms_rotation_persistence_degraded", "gauge"),
        ("openbao_kms_aad_validation_errors", "counter"),
        ("openbao_kms_decrypt_key_id_errors", "counter"),
        ("openbao_kms_circuit_breaker_state", "gauge"),
        ("openbao_kms_socket_restarts", "counter"),
        ("openbao_kms_build_info", "gauge"),
        ("openbao_kms_ready", "gauge"),
        ("openbao_kms_transit_latest_version", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
    ];
    for (name, kind) in expected {
        let type_line = format!("# TYPE {name} {kind}\n");
        assert!(
            text.contains(&type_line),
            "missing {type_line:?} in\n{text}"
        );
        let sample = if kind == "counter" {
            format!("{name}_total")
        } else if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.to_owned()
        };
        assert!(
            !samples(&text, &sample).is_empty(),
            "no sample of {sample} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
    let type_lines = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(
        type_lines,
        expected.len(),
        "unexpected extra metrics:\n{text}"
    );
}

#[test]
fn values_and_labels_are_as_documented() {
    let metrics = metrics();
    exercise(&metrics);
    let text = metrics.encode();
    for line in [
        "openbao_kms_grpc_requests_total{method=\"encrypt\",status=\"ok\"} 1",
        "openbao_kms_grpc_requests_total{method=\"decrypt\",status=\"invalid_argument\"} 1",
        "openbao_kms_grpc_in_flight{method=\"decrypt\"} 0",
        "openbao_kms_grpc_concurrency_rejections_total{method=\"encrypt\"} 1",
        "openbao_kms_grpc_concurrency_rejections_total{method=\"status\"} 0",
        "openbao_kms_openbao_requests_total{operation=\"transit_encrypt\",status=\"ok\"} 1",
        "openbao_kms_auth_login_total{status=\"ok\"} 1",
        "openbao_kms_auth_renewal_total{status=\"permission_denied\"} 1",
        "openbao_kms_auth_method_info{method=\"jwt\"} 1",
        "openbao_kms_token_ttl_seconds 3600.0",
        "openbao_kms_key_version 3",
        "openbao_kms_status_cache_age_seconds 1.5",
        "openbao_kms_transit_metadata_observation_total{status=\"ok\"} 1",
        "openbao_kms_rotation_state{state=\"active\"} 1",
        "openbao_kms_rotation_state{state=\"pending\"} 0",
        "openbao_kms_rotation_state{state=\"unknown\"} 0",
        "openbao_kms_rotation_persistence_degraded 0",
        "openbao_kms_aad_validation_errors_total{reason=\"aad_mismatch\"} 1",
        "openbao_kms_aad_validation_errors_total{reason=\"aad_missing\"} 0",
        "openbao_kms_aad_validation_errors_total{reason=\"annotation_invalid\"} 0",
        "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_unknown\"} 1",
        "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_malformed\"} 0",
        "openbao_kms_circuit_breaker_state 0",
        "openbao_kms_socket_restarts_total 1",
        "openbao_kms_build_info{version=\"v0.1.0\",commit=\"abc123\",build_date=\"2024-05-16\",dirty=\"false\"} 1",
        "openbao_kms_ready 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Twelve finite buckets from 1 ms to 2.048 s, then +Inf.
    let buckets: Vec<&str> = samples(&text, "openbao_kms_grpc_duration_seconds_bucket")
        .into_iter()
        .filter(|l| l.contains("method=\"encrypt\""))
        .collect();
    assert_eq!(buckets.len(), 13, "{buckets:?}");
    assert!(buckets[0].contains("le=\"0.001\""), "{}", buckets[0]);
    assert!(buckets[11].contains("le=\"2.048\""), "{}", buckets[11]);
    assert!(buckets[12].contains("le=\"+Inf\""), "{}", buckets[12]);
}

#[test]
fn key_hash_series_switch_with_the_active_key() {
    let metrics = metrics();
    let a = KeyId::parse(KEY_A).unwrap();
    let b = KeyId::parse(KEY_B).unwrap();
    metrics.apply_health(&healthy(), Some((&a, KeyVersion::new(1).unwrap())));
    let text = metrics.encode();
    let hash_a = format!(
        "openbao_kms_status_key_id_hash{{hash=\"{}\"}} 1",
        a.digest()
    );
    let api_a = format!(
        "openbao_kms_status_apiserver_key_id_hash{{hash=\"{}\"}} 1",
        a.apiserver_hash()
    );
    assert!(text.lines().any(|l| l == hash_a), "{text}");
    assert!(text.lines().any(|l| l == api_a), "{text}");
    assert!(a.apiserver_hash().starts_with("sha256:"));
    assert!(!text.contains(KEY_A), "raw key_id leaked:\n{text}");

    // Same key again: nothing changes.
    metrics.apply_health(&healthy(), Some((&a, KeyVersion::new(1).unwrap())));
    assert_eq!(
        samples(&metrics.encode(), "openbao_kms_status_key_id_hash").len(),
        1
    );

    metrics.apply_health(&healthy(), Some((&b, KeyVersion::new(2).unwrap())));
    let text = metrics.encode();
    assert_eq!(
        samples(&text, "openbao_kms_status_key_id_hash").len(),
        1,
        "{text}"
    );
    assert_eq!(
        samples(&text, "openbao_kms_status_apiserver_key_id_hash").len(),
        1,
        "{text}"
    );
    assert!(
        !text.contains(&a.digest().to_string()),
        "old series kept:\n{text}"
    );
    assert!(
        !text.contains(&a.apiserver_hash()),
        "old series kept:\n{text}"
    );
    assert!(text.contains(&format!("hash=\"{}\"", b.digest())));
    assert!(text.contains(&format!("hash=\"{}\"", b.apiserver_hash())));
    assert!(text.lines().any(|l| l == "openbao_kms_key_version 2"));

    // No active key: both series gone, version 0, not ready.
    metrics.apply_health(&healthy(), None);
    let text = metrics.encode();
    assert!(
        samples(&text, "openbao_kms_status_key_id_hash").is_empty(),
        "{text}"
    );
    assert!(samples(&text, "openbao_kms_status_apiserver_key_id_hash").is_empty());
    assert!(text.lines().any(|l| l == "openbao_kms_key_version 0"));
    assert!(text.lines().any(|l| l == "openbao_kms_ready 0"));
}

#[test]
fn unhealthy_report_drives_the_gauges() {
    let metrics = metrics();
    let key = KeyId::parse(KEY_A).unwrap();
    let report = HealthReport {
        healthy: false,
        reasons: vec![
            NotReadyReason::CircuitBreakerOpen,
            NotReadyReason::StateSaveFailed,
        ],
        cache_age: None,
        stale: true,
        rotation_state: RotationState::Pending,
        persistence_degraded: true,
        breaker_open: true,
        metadata_error_class: Some("tls_failed"),
        deep_error_class: None,
    };
    metrics.apply_health(&report, Some((&key, KeyVersion::new(4).unwrap())));
    let text = metrics.encode();
    for line in [
        "openbao_kms_rotation_state{state=\"active\"} 0",
        "openbao_kms_rotation_state{state=\"pending\"} 1",
        "openbao_kms_rotation_state{state=\"unknown\"} 0",
        "openbao_kms_rotation_persistence_degraded 1",
        "openbao_kms_circuit_breaker_state 1",
        "openbao_kms_status_cache_age_seconds 0.0",
        "openbao_kms_ready 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn fresh_registry_emits_unknown_rotation_state() {
    let text = metrics().encode();
    for line in [
        "openbao_kms_rotation_state{state=\"active\"} 0",
        "openbao_kms_rotation_state{state=\"pending\"} 0",
        "openbao_kms_rotation_state{state=\"unknown\"} 1",
        "openbao_kms_ready 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn label_values_are_normalized() {
    assert_eq!(normalize_label(""), "unknown");
    assert_eq!(normalize_label("Permission-Denied"), "permission_denied");
    assert_eq!(
        normalize_label("tls failed: x509/..."),
        "tls_failed__x509____"
    );
    assert_eq!(normalize_label("ok_2"), "ok_2");
    assert_eq!(normalize_label("é"), "_");

    let metrics = metrics();
    metrics.record_login("OAuth2-Rejected");
    metrics.record_renewal("");
    metrics.record_openbao("Transit Encrypt", "TLS-Failed", Duration::from_millis(1));
    metrics.record_openbao("transit/keys/secret-name", "ok", Duration::from_millis(1));
    metrics.record_grpc("Encrypt", "Deadline-Exceeded", Duration::from_millis(1));
    metrics.record_grpc("bogus", "not a code", Duration::from_millis(1));
    metrics.record_metadata_observation("Circuit Breaker Open");
    metrics.set_auth_method("kubernetes");
    metrics.record_refusal_class("something_else");
    let text = metrics.encode();
    for line in [
        "openbao_kms_auth_login_total{status=\"oauth2_rejected\"} 1",
        "openbao_kms_auth_renewal_total{status=\"unknown\"} 1",
        "openbao_kms_openbao_requests_total{operation=\"transit_encrypt\",status=\"tls_failed\"} 1",
        "openbao_kms_openbao_requests_total{operation=\"unknown\",status=\"ok\"} 1",
        "openbao_kms_grpc_requests_total{method=\"encrypt\",status=\"deadline_exceeded\"} 1",
        "openbao_kms_grpc_requests_total{method=\"unknown\",status=\"unknown\"} 1",
        "openbao_kms_transit_metadata_observation_total{status=\"circuit_breaker_open\"} 1",
        "openbao_kms_auth_method_info{method=\"unknown\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("secret-name"), "{text}");
    assert!(!text.contains("something_else"), "{text}");
    // Every label value outside the hash and build labels is [a-z0-9_].
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if line.contains("hash=") || line.starts_with("openbao_kms_build_info") {
            continue;
        }
        let Some(start) = line.find('{') else {
            continue;
        };
        let end = line.find('}').unwrap();
        for pair in line[start + 1..end].split(',') {
            let value = pair.split_once('=').unwrap().1.trim_matches('"');
            if pair.starts_with("le=") {
                continue;
            }
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{line}"
            );
        }
    }
}

#[test]
fn auth_method_replaces_the_previous_series() {
    let metrics = metrics();
    metrics.set_auth_method("jwt");
    metrics.set_auth_method("cert");
    let text = metrics.encode();
    assert_eq!(samples(&text, "openbao_kms_auth_method_info").len(), 1);
    assert!(text.contains("openbao_kms_auth_method_info{method=\"cert\"} 1"));
}

#[test]
fn in_flight_guard_counts_until_dropped() {
    let metrics = metrics();
    let first = metrics.grpc_in_flight("encrypt");
    let second = metrics.grpc_in_flight("encrypt");
    assert!(
        metrics
            .encode()
            .contains("openbao_kms_grpc_in_flight{method=\"encrypt\"} 2")
    );
    drop(first);
    assert!(
        metrics
            .encode()
            .contains("openbao_kms_grpc_in_flight{method=\"encrypt\"} 1")
    );
    drop(second);
    assert!(
        metrics
            .encode()
            .contains("openbao_kms_grpc_in_flight{method=\"encrypt\"} 0")
    );
}

#[test]
fn token_ttl_is_always_a_finite_number() {
    let metrics = metrics();
    metrics.set_token_ttl(f64::INFINITY);
    let text = metrics.encode();
    let line = samples(&text, "openbao_kms_token_ttl_seconds")[0];
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value.is_finite() && value > 1e300, "{line}");
    metrics.set_token_ttl(f64::NAN);
    assert!(
        metrics
            .encode()
            .contains("openbao_kms_token_ttl_seconds 0.0\n")
    );
    metrics.set_token_ttl(-5.0);
    assert!(
        metrics
            .encode()
            .contains("openbao_kms_token_ttl_seconds 0.0\n")
    );
}

#[test]
fn scrape_hook_runs_before_each_encode() {
    let metrics = metrics();
    let key = KeyId::parse(KEY_A).unwrap();
    metrics.on_scrape(move |m| {
        m.apply_health(&healthy(), Some((&key, KeyVersion::new(9).unwrap())));
    });
    let text = metrics.encode();
    assert!(
        text.lines().any(|l| l == "openbao_kms_key_version 9"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "openbao_kms_ready 1"), "{text}");
}

#[test]
fn registries_are_isolated() {
    let one = metrics();
    let two = metrics();
    one.socket_restarted();
    assert!(one.encode().contains("openbao_kms_socket_restarts_total 1"));
    assert!(two.encode().contains("openbao_kms_socket_restarts_total 0"));
}
