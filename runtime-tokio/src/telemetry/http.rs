//! The metrics and health HTTP listeners (hyper, HTTP/1 only).
//!
//! Both servers answer GET and HEAD only (405 otherwise), 404 on unknown paths, never read a
//! request body, give a client 5 s to send its request head (which also closes idle keep-alive
//! connections after 5 s), cap concurrent connections, and stop accepting when their shutdown
//! future completes, letting in-flight requests finish for up to 5 s.
//!
//! `/ready` reads the runtime's cached view and never contacts OpenBao.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bao_kms_core::health::HealthReport;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::metrics::Metrics;

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the health bodies.
const JSON_CONTENT_TYPE: &str = "application/json";
/// Time a client has to send a complete request head; also the keep-alive idle limit.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time in-flight connections get to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Concurrent connections per listener; more are closed right after accept.
const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed accept (for example when out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the health endpoints need to know, taken from the runtime's latest snapshot.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HealthView {
    /// Whether the runtime's listeners are up and it is not stopping.
    pub live: bool,
    /// The core's latest health report; `None` when it cannot be read.
    pub report: Option<HealthReport>,
    /// Whether the registry has an active key.
    pub has_active_key: bool,
}

/// Where the health endpoints get their view; called once per request, must not block long.
pub type HealthSource = Arc<dyn Fn() -> HealthView + Send + Sync>;

/// Binds a TCP listener on `address` (`host:port`, port 0 picks a free port). It applies no policy
/// of its own: which addresses are acceptable is the configuration's decision.
///
/// # Errors
/// The bind error.
pub async fn bind(address: &str) -> io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves `GET|HEAD /metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send,
) {
    let handler = move |method: &Method, path: &str| -> Response<Full<Bytes>> {
        if path != "/metrics" {
            return not_found();
        }
        if !is_get_or_head(method) {
            return method_not_allowed();
        }
        let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        );
        response
    };
    serve(listener, handler, shutdown).await;
}

/// Serves `GET|HEAD /live` and `GET|HEAD /ready` on `listener` until `shutdown` completes.
pub async fn serve_health(
    listener: TcpListener,
    health: HealthSource,
    shutdown: impl Future<Output = ()> + Send,
) {
    let handler = move |method: &Method, path: &str| -> Response<Full<Bytes>> {
        let route: fn(&HealthView) -> (bool, String) = match path {
            "/live" => live_json,
            "/ready" => ready_json,
            _ => return not_found(),
        };
        if !is_get_or_head(method) {
            return method_not_allowed();
        }
        let (ok, body) = route(&health());
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    };
    serve(listener, handler, shutdown).await;
}

/// The `/live` answer: whether it is 200, and the JSON body.
pub fn live_json(view: &HealthView) -> (bool, String) {
    if view.live {
        (true, r#"{"status":"ok"}"#.to_owned())
    } else {
        (false, r#"{"status":"unavailable"}"#.to_owned())
    }
}

/// The `/ready` body, keys in their documented order.
#[derive(Serialize)]
struct ReadyBody {
    reasons: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_error_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deep_error_class: Option<&'static str>,
    status: &'static str,
    healthz: &'static str,
    cache_age_ms: u64,
    stale: bool,
    rotation_state: &'static str,
    persistence_degraded: bool,
}

/// The body when no report can be read.
#[derive(Serialize)]
struct UnavailableBody {
    status: &'static str,
    reasons: [&'static str; 1],
}

/// The `/ready` answer: whether it is 200, and the JSON body.
///
/// 200 iff Status is healthy, the cache is not stale and an active key exists. A 503 always
/// names at least one reason when one can be derived (`status_stale`, `state_unavailable`).
pub fn ready_json(view: &HealthView) -> (bool, String) {
    let Some(report) = &view.report else {
        let body = UnavailableBody {
            status: "unavailable",
            reasons: ["diagnostics_unavailable"],
        };
        return (false, to_json(&body));
    };
    let ready = super::is_ready(report, view.has_active_key);
    let mut reasons: Vec<&'static str> = report.reasons.iter().map(|r| r.as_str()).collect();
    if report.stale && !reasons.contains(&"status_stale") {
        reasons.push("status_stale");
    }
    if !view.has_active_key && !reasons.contains(&"state_unavailable") {
        reasons.push("state_unavailable");
    }
    let body = ReadyBody {
        reasons,
        metadata_error_class: report.metadata_error_class,
        deep_error_class: report.deep_error_class,
        status: if ready { "ok" } else { "unavailable" },
        healthz: if report.healthy { "ok" } else { "unhealthy" },
        cache_age_ms: report
            .cache_age
            .map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        stale: report.stale,
        rotation_state: report.rotation_state.as_str(),
        persistence_degraded: report.persistence_degraded,
    };
    (ready, to_json(&body))
}

fn to_json(body: &impl Serialize) -> String {
    // Plain structs of strings, numbers and booleans always serialize.
    serde_json::to_string(body).unwrap_or_else(|_| r#"{"status":"unavailable"}"#.to_owned())
}

fn is_get_or_head(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn not_found() -> Response<Full<Bytes>> {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// Accept loop shared by both listeners.
async fn serve<H>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()> + Send)
where
    H: Fn(&Method, &str) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::debug!(message = "telemetry.connection_refused", reason = "connection_limit");
                        drop(stream);
                        continue;
                    }
                    let handler = Arc::clone(&handler);
                    let stop = stop_rx.clone();
                    connections.spawn(serve_connection(stream, handler, stop));
                }
                Err(error) => {
                    tracing::warn!(message = "telemetry.accept_failed", error_kind = ?error.kind());
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    // Every connection holds a receiver, so the send only fails when there is none.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection<H>(
    stream: tokio::net::TcpStream,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(&Method, &str) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let response = handler(request.method(), request.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    let stopping = async move {
        // An error means the server is gone, which also means stop.
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(
            message = "telemetry.connection_error",
            timeout = error.is_timeout(),
            incomplete = error.is_incomplete_message()
        );
    }
}
