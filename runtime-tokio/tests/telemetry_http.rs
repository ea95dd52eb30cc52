//! The metrics and health listeners over real TCP sockets on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bao_kms_core::health::{HealthReport, NotReadyReason, RotationState};
use bao_kms_core::{KeyId, KeyVersion};
use bao_kms_runtime_tokio::telemetry::{
    HealthSource, HealthView, Metrics, bind, serve_health, serve_metrics,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`, read to EOF.
async fn request(address: std::net::SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| {
            let (key, value) = line.split_once(':').unwrap();
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

struct Server {
    address: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn start_metrics(metrics: Metrics) -> Server {
    let listener = bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_metrics(listener, metrics, async {
        let _ = stopped.await;
    }));
    Server {
        address,
        stop: Some(stop),
        task,
    }
}

async fn start_health(view: Arc<Mutex<HealthView>>) -> Server {
    let listener = bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let source: HealthSource = Arc::new(move || view.lock().unwrap().clone());
    let task = tokio::spawn(serve_health(listener, source, async {
        let _ = stopped.await;
    }));
    Server {
        address,
        stop: Some(stop),
        task,
    }
}

fn healthy_report() -> HealthReport {
    HealthReport {
        healthy: true,
        reasons: Vec::new(),
        cache_age: Some(Duration::from_millis(1234)),
        stale: false,
        rotation_state: RotationState::Active,
        persistence_degraded: false,
        breaker_open: false,
        metadata_error_class: None,
        deep_error_class: None,
    }
}

fn view(report: Option<HealthReport>, has_active_key: bool) -> Arc<Mutex<HealthView>> {
    Arc::new(Mutex::new(HealthView {
        live: true,
        report,
        has_active_key,
    }))
}

#[tokio::test]
async fn metrics_endpoint_serves_openmetrics() {
    let metrics = Metrics::new("v0.1.0", "abc", "unknown", "false");
    let key = KeyId::parse("obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk").unwrap();
    metrics.apply_health(&healthy_report(), Some((&key, KeyVersion::new(1).unwrap())));
    metrics.record_grpc("status", "ok", Duration::from_millis(1));
    let server = start_metrics(metrics).await;

    let reply = request(server.address, "GET", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        reply
            .body
            .contains("# TYPE openbao_kms_grpc_requests counter\n")
    );
    assert!(reply.body.contains("openbao_kms_ready 1\n"));
    assert!(reply.body.ends_with("# EOF\n"));

    let head = request(server.address, "HEAD", "/metrics").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.body);

    let post = request(server.address, "POST", "/metrics").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    assert_eq!(request(server.address, "GET", "/").await.status, 404);
    assert_eq!(request(server.address, "GET", "/ready").await.status, 404);
    assert_eq!(
        request(server.address, "GET", "/metrics/x").await.status,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ready_is_200_with_ordered_keys_when_healthy() {
    let server = start_health(view(Some(healthy_report()), true)).await;
    let reply = request(server.address, "GET", "/ready").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.body,
        r#"{"reasons":[],"status":"ok","healthz":"ok","cache_age_ms":1234,"stale":false,"rotation_state":"active","persistence_degraded":false}"#
    );
    let head = request(server.address, "HEAD", "/ready").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn ready_is_503_with_reasons_when_unhealthy() {
    let report = HealthReport {
        healthy: false,
        reasons: vec![
            NotReadyReason::MetadataUnverified,
            NotReadyReason::MetadataReadFailed,
        ],
        cache_age: Some(Duration::from_millis(120)),
        stale: false,
        rotation_state: RotationState::Unknown,
        persistence_degraded: true,
        breaker_open: false,
        metadata_error_class: Some("tls_failed"),
        deep_error_class: Some("timeout"),
    };
    let shared = view(Some(report), true);
    let server = start_health(Arc::clone(&shared)).await;
    let reply = request(server.address, "GET", "/ready").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.body,
        r#"{"reasons":["metadata_unverified","metadata_read_failed"],"metadata_error_class":"tls_failed","deep_error_class":"timeout","status":"unavailable","healthz":"unhealthy","cache_age_ms":120,"stale":false,"rotation_state":"unknown","persistence_degraded":true}"#
    );

    // Healthy Status but stale cache and no active key: still 503, with the reasons derived.
    *shared.lock().unwrap() = HealthView {
        live: true,
        report: Some(HealthReport {
            stale: true,
            ..healthy_report()
        }),
        has_active_key: false,
    };
    let reply = request(server.address, "GET", "/ready").await;
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .body
            .starts_with(r#"{"reasons":["status_stale","state_unavailable"],"status":"unavailable","healthz":"ok","#),
        "{}",
        reply.body
    );

    // No diagnostics at all.
    *shared.lock().unwrap() = HealthView {
        live: true,
        report: None,
        has_active_key: false,
    };
    let reply = request(server.address, "GET", "/ready").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.body,
        r#"{"status":"unavailable","reasons":["diagnostics_unavailable"]}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn live_follows_the_runtime_and_ignores_health() {
    let shared = view(None, false);
    let server = start_health(Arc::clone(&shared)).await;
    let reply = request(server.address, "GET", "/live").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"status":"ok"}"#);
    assert_eq!(reply.header("content-type"), Some("application/json"));

    shared.lock().unwrap().live = false;
    let reply = request(server.address, "GET", "/live").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, r#"{"status":"unavailable"}"#);
    server.shutdown().await;
}

#[tokio::test]
async fn health_refuses_other_methods_and_paths() {
    let server = start_health(view(Some(healthy_report()), true)).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        for path in ["/live", "/ready"] {
            let reply = request(server.address, method, path).await;
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        }
    }
    for path in ["/", "/healthz", "/metrics", "/ready/", "/live?x"] {
        let reply = request(server.address, "GET", path).await;
        let expected = if path == "/live?x" { 200 } else { 404 };
        assert_eq!(reply.status, expected, "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let server = start_health(view(Some(healthy_report()), true)).await;
    let address = server.address;
    assert_eq!(request(address, "GET", "/live").await.status, 200);
    server.shutdown().await;
    assert!(TcpStream::connect(address).await.is_err());
}

#[tokio::test]
async fn keep_alive_connections_serve_several_requests_and_shut_down() {
    let server = start_health(view(Some(healthy_report()), true)).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut received = Vec::new();
        while !String::from_utf8_lossy(&received).ends_with(r#"{"status":"ok"}"#) {
            let mut buffer = [0_u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .unwrap()
                .unwrap();
            assert!(
                read > 0,
                "closed early: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buffer[..read]);
        }
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    // An idle keep-alive connection does not hold up shutdown.
    server.shutdown().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "connection left open after shutdown");
}
