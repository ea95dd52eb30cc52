//! `serve`: the plugin.
//!
//! Order matters and fails closed: configuration and files are checked, the registry lock is
//! taken, the provider is built from the stored registry, the bootstrap probes must pass, and
//! only then is the KMS socket bound. On SIGTERM or SIGINT the gRPC server drains, waiting
//! requests are answered and the socket is unlinked.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use bao_kms_core::Provider;
use bao_kms_core::limits::MAX_GRPC_MESSAGE_BYTES;
use bao_kms_proto::KeyManagementServiceServer;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnixListenerStream;

use super::version::{PLUGIN_VERSION, build_info};
use super::{Cli, ExitCode};
use crate::adapters::{FileRegistry, TelemetryObserver};
use crate::config::{self, Config, ConfigError};
use crate::driver::{self, DriverHandle};
use crate::files::{RegistryLock, RegistryPaths, read_stored};
use crate::grpc::KmsService;
use crate::openbao::OpenBaoClient;
use crate::{clock, socket, telemetry};

/// How long in-flight RPCs may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

pub(super) fn run(cli: &Cli) -> ExitCode {
    let config = match config::load(&cli.overrides(), &config::process_env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::Config;
        }
    };
    let problems = config::check_files(&config);
    if !problems.is_empty() {
        eprintln!("{}", ConfigError::new(problems));
        return ExitCode::Config;
    }
    let logging = &config.logging;
    if let Err(error) = telemetry::init_logging(logging.level.as_str(), logging.format.as_str()) {
        eprintln!("logging setup failed: {error}");
        return ExitCode::Runtime;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(message = "serve.shutdown", reason = "startup_failed", error = %error);
            return ExitCode::Runtime;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    tracing::info!(message = "serve.start", version = PLUGIN_VERSION);
    match start(config).await {
        Ok(code) => code,
        Err(failure) => {
            tracing::error!(message = "serve.shutdown", reason = "startup_failed", error = %failure);
            failure.exit_code()
        }
    }
}

/// Why `serve` stopped before serving.
#[derive(Debug, thiserror::Error)]
enum StartFailure {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

impl StartFailure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::Config,
            Self::Runtime(_) => ExitCode::Runtime,
        }
    }
}

async fn start(config: Config) -> Result<ExitCode, StartFailure> {
    let client = OpenBaoClient::new(crate::adapters::client_settings(&config))
        .map_err(|error| StartFailure::Config(error.to_string()))?;
    let paths = RegistryPaths::new(&config.state_path)
        .map_err(|error| StartFailure::Config(error.to_string()))?;
    let lock =
        RegistryLock::acquire(&paths).map_err(|error| StartFailure::Runtime(error.to_string()))?;
    let stored = read_stored(&paths).map_err(|error| StartFailure::Runtime(error.to_string()))?;
    let seed = entropy_seed().map_err(|error| StartFailure::Runtime(error.to_string()))?;
    let provider = Provider::new(
        config.provider_config(PLUGIN_VERSION, seed),
        clock::now(),
        &stored,
    )
    .map_err(|error| StartFailure::Runtime(error.to_string()))?;

    let info = build_info();
    let metrics = telemetry::Metrics::new(info.version, info.commit, info.build_date, info.dirty);
    metrics.set_auth_method(config.auth.method.name());
    let observer = Arc::new(TelemetryObserver::new(metrics.clone(), client.clone()));
    let scraped = Arc::downgrade(&observer);
    metrics.on_scrape(move |_| {
        if let Some(observer) = scraped.upgrade() {
            observer.refresh_auth();
        }
    });
    let (driver, driver_task) = driver::spawn(
        provider,
        Arc::new(client.clone()),
        Arc::new(FileRegistry::new(paths)),
        observer.clone(),
    );
    let (stop_listeners, listeners_stopped) = watch::channel(false);
    let live = Arc::new(std::sync::atomic::AtomicBool::new(true));
    start_listeners(&config, &driver, &metrics, &live, &listeners_stopped).await?;
    tokio::spawn(observer.clone().follow(driver.watch()));

    wait_for_bootstrap(&config, &driver).await?;

    let policy = socket::SocketPolicy {
        path: config.server.socket_path.clone(),
        mode: config.server.socket_mode,
        group: config.server.socket_group.clone(),
        approved_dirs: config.server.socket_directories.clone(),
    };
    if socket::prepare(&policy).map_err(|error| StartFailure::Runtime(error.to_string()))?
        == socket::Prepared::StaleRemoved
    {
        metrics.socket_restarted();
        tracing::warn!(message = "socket.stale_removed");
    }
    let listener =
        socket::bind(&policy).map_err(|error| StartFailure::Runtime(error.to_string()))?;
    let guard = socket::SocketGuard::new(&policy.path)
        .map_err(|error| StartFailure::Runtime(error.to_string()))?;

    let service = KmsService::new(driver.clone(), config.openbao.timeout, observer);
    let server = KeyManagementServiceServer::new(service)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            // Every connection through the `:authority` fix: see `grpc::authority`.
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(listener)
                    .map(|accepted| accepted.map(crate::grpc::authority::AuthorityFix::new)),
                async {
                    let _ = grpc_stopped.await;
                },
            ),
    );
    if let Err(error) = socket::notify_ready() {
        tracing::warn!(message = "serve.notify_failed", error = %error);
    }
    tracing::info!(message = "serve.ready");

    let signal = shutdown_signal().await;
    tracing::info!(message = "serve.shutdown", reason = signal);
    let _ = socket::notify_stopping();
    let _ = stop_grpc.send(());
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, grpc).await;
    driver.shutdown().await;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, driver_task).await;
    live.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = stop_listeners.send(true);
    drop(guard);
    drop(lock);
    Ok(match drained {
        Ok(Ok(Ok(()))) => ExitCode::Success,
        Ok(Ok(Err(error))) => {
            tracing::error!(message = "serve.shutdown", reason = "runtime_failed", error = %error);
            ExitCode::Runtime
        }
        Ok(Err(_)) | Err(_) => ExitCode::Runtime,
    })
}

/// Binds the metrics and health listeners (before bootstrap, so `/ready` explains a slow start).
async fn start_listeners(
    config: &Config,
    driver: &DriverHandle,
    metrics: &telemetry::Metrics,
    live: &Arc<std::sync::atomic::AtomicBool>,
    stopped: &watch::Receiver<bool>,
) -> Result<(), StartFailure> {
    if let Some(address) = &config.server.metrics_address {
        let listener = telemetry::bind(address)
            .await
            .map_err(|error| StartFailure::Runtime(format!("metrics listener: {error}")))?;
        tokio::spawn(telemetry::serve_metrics(
            listener,
            metrics.clone(),
            wait_true(stopped.clone()),
        ));
    }
    if let Some(address) = &config.server.health_address {
        let listener = telemetry::bind(address)
            .await
            .map_err(|error| StartFailure::Runtime(format!("health listener: {error}")))?;
        let driver = driver.clone();
        let live = Arc::clone(live);
        let source: telemetry::HealthSource = Arc::new(move || {
            let snapshot = driver.snapshot();
            telemetry::HealthView {
                live: live.load(std::sync::atomic::Ordering::SeqCst),
                report: Some(snapshot.report),
                has_active_key: snapshot.active.is_some(),
            }
        });
        tokio::spawn(telemetry::serve_health(
            listener,
            source,
            wait_true(stopped.clone()),
        ));
    }
    Ok(())
}

async fn wait_true(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Waits until Status is healthy, for at most `bootstrap.graceTimeout` (a single probe cycle
/// when it is zero).
async fn wait_for_bootstrap(config: &Config, driver: &DriverHandle) -> Result<(), StartFailure> {
    let single_attempt = config.openbao.timeout * 4;
    let grace = config.bootstrap.grace_timeout.max(single_attempt);
    let mut snapshots = driver.watch();
    let healthy = tokio::time::timeout(
        grace,
        snapshots.wait_for(|snapshot| snapshot.report.healthy),
    );
    match healthy.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(StartFailure::Runtime(
            "the provider stopped during bootstrap".into(),
        )),
        Err(_) => {
            let reasons: Vec<&str> = driver
                .snapshot()
                .report
                .reasons
                .iter()
                .map(|reason| reason.as_str())
                .collect();
            Err(StartFailure::Runtime(format!(
                "bootstrap did not reach a healthy status within the grace timeout (reasons: {})",
                reasons.join(", ")
            )))
        }
    }
}

/// Resolves on SIGTERM or SIGINT and names the signal.
async fn shutdown_signal() -> &'static str {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = terminate => "sigterm",
        _ = tokio::signal::ctrl_c() => "sigint",
    }
}

/// 32 bytes from the OS for the deep-probe plaintext generator.
fn entropy_seed() -> std::io::Result<[u8; 32]> {
    let mut seed = [0_u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}
