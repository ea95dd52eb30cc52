//! `fleet-check` against tiny local metrics servers serving canned text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

use serde_json::Value;

const HASH_A: &str = "q1w2e3r4t5y6u7i8o9p0-_ASDFGHJKLZXCVBNMqwertyu";
const HASH_B: &str = "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp-_OoNnMmLlKkJj";

/// Metrics as the provider exports them (OpenMetrics, with the series around ours).
fn metrics(hash: Option<&str>, version: u32, rotation: &str, ready: bool) -> String {
    let mut text = String::from(
        "# HELP openbao_kms_build_info Build information.\n\
         # TYPE openbao_kms_build_info gauge\n\
         openbao_kms_build_info{version=\"v0.1.0\"} 1\n\
         # TYPE openbao_kms_status_key_id_hash gauge\n",
    );
    if let Some(hash) = hash {
        text.push_str(&format!(
            "openbao_kms_status_key_id_hash{{hash=\"{hash}\"}} 1\n"
        ));
    }
    text.push_str(&format!(
        "# TYPE openbao_kms_key_version gauge\nopenbao_kms_key_version {version}\n\
         # TYPE openbao_kms_rotation_state gauge\n"
    ));
    for state in ["active", "pending", "unknown"] {
        let value = u8::from(state == rotation);
        text.push_str(&format!(
            "openbao_kms_rotation_state{{state=\"{state}\"}} {value}\n"
        ));
    }
    text.push_str(&format!(
        "# TYPE openbao_kms_ready gauge\nopenbao_kms_ready {}\n# EOF\n",
        u8::from(ready)
    ));
    text
}

/// Serves `body` at `/metrics` (404 elsewhere) on 127.0.0.1 until the test process exits;
/// returns the metrics URL.
fn serve(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if header == "\r\n" || header == "\n" => break,
                    Ok(_) => {}
                }
            }
            let (status, body) = if request_line.starts_with("GET /metrics ") {
                ("200 OK", body.as_str())
            } else {
                ("404 Not Found", "not found\n")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; \
                 version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/metrics")
}

/// A URL where nothing listens.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/metrics")
}

fn fleet_check(urls: &[String], json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"));
    command.arg("fleet-check");
    for url in urls {
        command.args(["--metrics-url", url]);
    }
    if json {
        command.args(["--output", "json"]);
    }
    command.output().unwrap()
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

fn check<'r>(report: &'r Value, id: &str) -> &'r Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
}

#[test]
fn agreeing_ready_nodes_pass_with_exit_code_0() {
    let urls = [
        serve(metrics(Some(HASH_A), 3, "active", true)),
        serve(metrics(Some(HASH_A), 3, "active", true)),
        serve(metrics(Some(HASH_A), 3, "active", true)),
    ];
    let output = fleet_check(&urls, true);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = report(&output);
    assert_eq!(report["name"], "fleet-check");
    for node in ["node.1", "node.2", "node.3"] {
        let check = check(&report, node);
        assert_eq!(check["status"], "pass");
        assert_eq!(
            check["message"],
            format!("hash={HASH_A} version=3 rotation=active ready=1")
        );
    }
    let agreement = check(&report, "fleet.key_id_hash");
    assert_eq!(agreement["status"], "pass");
    assert!(agreement["message"].as_str().unwrap().contains(HASH_A));
    assert_eq!(check(&report, "fleet.rotation")["status"], "pass");
}

#[test]
fn divergent_hashes_fail_with_exit_code_4_naming_both_hashes_and_their_nodes() {
    let urls = [
        serve(metrics(Some(HASH_A), 3, "active", true)),
        serve(metrics(Some(HASH_B), 4, "active", true)),
    ];
    let output = fleet_check(&urls, false);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("[fail] fleet.key_id_hash:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("hash={HASH_A} on node.1")), "{line}");
    assert!(line.contains(&format!("hash={HASH_B} on node.2")), "{line}");
    assert!(text.starts_with("fleet-check\n[pass] node.1: "), "{text}");
}

#[test]
fn an_unreachable_node_fails_the_check_with_exit_code_4() {
    let urls = [
        serve(metrics(Some(HASH_A), 3, "active", true)),
        closed_url(),
    ];
    let output = fleet_check(&urls, true);
    assert_eq!(output.status.code(), Some(4));
    let report = report(&output);
    assert_eq!(check(&report, "node.1")["status"], "pass");
    let node = check(&report, "node.2");
    assert_eq!(node["status"], "fail");
    assert!(
        node["message"].as_str().unwrap().starts_with("unreachable"),
        "{node}"
    );
    assert_eq!(check(&report, "fleet.key_id_hash")["status"], "fail");
}

#[test]
fn a_node_that_is_not_ready_or_reports_no_hash_fails_the_fleet() {
    let urls = [
        serve(metrics(Some(HASH_A), 3, "active", false)),
        serve(metrics(None, 0, "unknown", true)),
    ];
    let output = fleet_check(&urls, true);
    assert_eq!(output.status.code(), Some(4));
    let report = report(&output);
    let first = check(&report, "node.1");
    assert_eq!(first["status"], "fail");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("ready=0; the node is not ready")
    );
    let second = check(&report, "node.2");
    assert_eq!(second["status"], "fail");
    assert!(
        second["message"]
            .as_str()
            .unwrap()
            .contains("no active key hash")
    );
}

#[test]
fn a_pending_rotation_on_one_node_warns_without_failing() {
    let urls = [
        serve(metrics(Some(HASH_A), 3, "active", true)),
        serve(metrics(Some(HASH_A), 3, "pending", true)),
    ];
    let output = fleet_check(&urls, true);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = report(&output);
    let rotation = check(&report, "fleet.rotation");
    assert_eq!(rotation["status"], "warn");
    assert!(rotation["message"].as_str().unwrap().contains("node.2"));
}

#[test]
fn a_url_that_is_not_a_metrics_page_fails_and_a_non_http_url_is_a_usage_error() {
    let url = serve(metrics(Some(HASH_A), 3, "active", true));
    let wrong = url.replace("/metrics", "/other");
    let output = fleet_check(&[wrong], true);
    assert_eq!(output.status.code(), Some(4));
    assert!(
        check(&report(&output), "node.1")["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 404")
    );
    let output = fleet_check(&["ftp://127.0.0.1/metrics".to_owned()], true);
    assert_eq!(output.status.code(), Some(2));
    // A URL without a path gets /metrics.
    let bare = url.trim_end_matches("/metrics").to_owned();
    assert_eq!(fleet_check(&[bare], true).status.code(), Some(0));
}
