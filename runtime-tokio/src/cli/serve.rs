//! `serve`: the plugin.
//!
//! Order matters and fails closed: configuration and files are checked, the registry lock is
//! taken, the provider is built from the stored registry, the bootstrap probes must pass, and
//! only then is the KMS socket bound. On SIGTERM or SIGINT the gRPC server drains, waiting
//! requests are answered and the socket is unlinked.
//!
//! Crash-only: the driver, the gRPC server and the listeners are supervised; when one of them
//! ends outside a shutdown the process exits with status 5 within a second, so the service
//! manager restarts it instead of leaving a process that is up but cannot serve. SIGHUP
//! re-reads the credential files (a fresh login) and never stops the process.

mod fault;
mod supervise;

use std::future::Future;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

use self::supervise::{LiveFlag, Phase, Supervisor};

/// Blocking threads beyond the OpenBao call permits: registry writes, logins, SIGHUP reloads.
const BLOCKING_THREADS_SPARE: usize = 8;

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
    let hardening = supervise::harden();
    supervise::install_panic_hook();
    // Blocking threads carry the OpenBao calls (at most MAX_CALLS_IN_FLIGHT, bounded by the
    // driver's permits), the registry writes and the logins; the bound keeps a storm from
    // growing the pool (and its per-thread memory) past what the permits allow anyway.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(crate::openbao::http::MAX_CALLS_IN_FLIGHT + BLOCKING_THREADS_SPARE)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(message = "serve.shutdown", reason = "startup_failed", error = %error);
            return ExitCode::Runtime;
        }
    };
    let code = runtime.block_on(serve(config, hardening));
    // A blocking call that never returns (a hung disk, a stuck Transit call) must not hold the
    // exit: the process ends, and the kernel reclaims what is left.
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

/// How long blocking threads get to finish once `serve` has decided to exit.
const EXIT_GRACE: Duration = Duration::from_millis(250);

async fn serve(config: Config, hardening: supervise::Hardening) -> ExitCode {
    tracing::info!(
        message = "serve.start",
        version = PLUGIN_VERSION,
        dumpable = hardening.dumpable,
        core_limit_zero = hardening.core_limit_zero
    );
    if hardening.dumpable || !hardening.core_limit_zero {
        tracing::warn!(
            message = "serve.hardening_incomplete",
            dumpable = hardening.dumpable
        );
    }
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
    // Registered first: from here on SIGHUP reloads credentials instead of killing.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|error| StartFailure::Runtime(format!("SIGHUP handler: {error}")))?;
    tokio::spawn(reload_on_hangup(hangups, client.clone()));
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
        fault::driver_events(observer.clone()),
    );
    let mut tasks = Supervisor::default();
    tasks.watch(DRIVER_TASK, driver_task);
    let (phase_tx, phase) = watch::channel(Phase::Bootstrap);
    tokio::spawn(supervise::notify_systemd(driver.clone(), phase));
    let (stop_listeners, listeners_stopped) = watch::channel(false);
    let live: LiveFlag = Arc::new(AtomicBool::new(true));
    start_listeners(
        &config,
        &driver,
        &metrics,
        &live,
        &listeners_stopped,
        &mut tasks,
    )
    .await?;
    let follower = observer.clone();
    let snapshots = driver.watch();
    tasks.spawn_follower(TELEMETRY_TASK, async move {
        follower.follow(snapshots).await;
        Ok(())
    });

    wait_for_bootstrap(&config, &driver, &client, &mut tasks).await?;

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
    let grpc = tonic::transport::Server::builder()
        .add_service(server)
        // Every connection through the `:authority` fix: see `grpc::authority`.
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener)
                .map(|accepted| accepted.map(crate::grpc::authority::AuthorityFix::new)),
            async {
                let _ = grpc_stopped.await;
            },
        );
    tasks.spawn(GRPC_TASK, async move {
        grpc.await.map_err(|error| error.to_string())
    });
    phase_tx.send_replace(Phase::Serving);
    if let Err(error) = socket::notify("READY=1\nSTATUS=serving") {
        tracing::warn!(message = "serve.notify_failed", error = %error);
    }
    fault::arm_on_sigusr2();
    tracing::info!(message = "serve.ready");

    let signal = tokio::select! {
        signal = shutdown_signal() => signal,
        (name, ended) = tasks.next_cause() => {
            supervise::log_unexpected_end(name, &ended);
            live.store(false, Ordering::SeqCst);
            drop(guard);
            drop(lock);
            return Ok(ExitCode::Runtime);
        }
    };
    tracing::info!(message = "serve.shutdown", reason = signal);
    phase_tx.send_replace(Phase::Stopping);
    let _ = socket::notify("STOPPING=1\nSTATUS=stopping: draining requests");
    let _ = stop_grpc.send(());
    let drained = tasks.wait_for(GRPC_TASK, SHUTDOWN_GRACE).await;
    driver.shutdown().await;
    let _ = tasks.wait_for(DRIVER_TASK, SHUTDOWN_GRACE).await;
    live.store(false, Ordering::SeqCst);
    let _ = stop_listeners.send(true);
    drop(guard);
    drop(lock);
    Ok(match drained {
        Some(supervise::Ended::Returned) => ExitCode::Success,
        Some(supervise::Ended::Failed(error)) => {
            tracing::error!(message = "serve.shutdown", reason = "runtime_failed", error = %error);
            ExitCode::Runtime
        }
        Some(_) | None => ExitCode::Runtime,
    })
}

/// Names of the supervised tasks, as logged.
const DRIVER_TASK: &str = "driver";
const GRPC_TASK: &str = "grpc";
const METRICS_TASK: &str = "metrics";
const HEALTH_TASK: &str = "health";
const TELEMETRY_TASK: &str = "telemetry";

/// Binds the metrics and health listeners (before bootstrap, so `/ready` explains a slow start).
async fn start_listeners(
    config: &Config,
    driver: &DriverHandle,
    metrics: &telemetry::Metrics,
    live: &LiveFlag,
    stopped: &watch::Receiver<bool>,
    tasks: &mut Supervisor,
) -> Result<(), StartFailure> {
    if let Some(address) = &config.server.metrics_address {
        let listener = telemetry::bind(address)
            .await
            .map_err(|error| StartFailure::Runtime(format!("metrics listener: {error}")))?;
        let serving =
            telemetry::serve_metrics(listener, metrics.clone(), wait_true(stopped.clone()));
        tasks.spawn(METRICS_TASK, ended_by(serving, stopped.clone()));
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
                // A driver that stopped turning cannot answer anything: not live.
                live: live.load(Ordering::SeqCst) && supervise::driver_progressing(&driver),
                report: Some(snapshot.report),
                has_active_key: snapshot.active.is_some(),
            }
        });
        let serving = telemetry::serve_health(listener, source, wait_true(stopped.clone()));
        tasks.spawn(HEALTH_TASK, ended_by(serving, stopped.clone()));
    }
    Ok(())
}

/// A listener's future as a supervised task: ending before `stopped` is set is an error.
async fn ended_by(
    serving: impl Future<Output = ()>,
    stopped: watch::Receiver<bool>,
) -> Result<(), String> {
    serving.await;
    if *stopped.borrow() {
        Ok(())
    } else {
        Err("the listener stopped accepting connections".to_owned())
    }
}

async fn wait_true(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// On every SIGHUP: re-reads the credential files and logs in with them; the current token
/// stays in use when that fails. Never ends the process.
async fn reload_on_hangup(mut hangups: tokio::signal::unix::Signal, client: OpenBaoClient) {
    while hangups.recv().await.is_some() {
        tracing::info!(
            message = "serve.reload",
            reason = "sighup",
            auth_method = client.token_manager().method_name()
        );
        let reloading = client.clone();
        let outcome =
            tokio::task::spawn_blocking(move || reloading.token_manager().reload_credentials())
                .await;
        match outcome {
            Ok(Ok(())) => tracing::info!(message = "serve.reloaded", outcome = "ok"),
            Ok(Err(failure)) => tracing::warn!(
                message = "serve.reloaded",
                outcome = "failed",
                error_class = failure.class.as_str(),
                http_status = failure.http_status.map(u64::from)
            ),
            Err(_) => tracing::error!(message = "serve.reloaded", outcome = "panicked"),
        }
    }
}

/// Waits until Status is healthy, for at most `bootstrap.graceTimeout` (a single probe cycle
/// when it is zero). A supervised task that ends meanwhile ends the bootstrap too.
async fn wait_for_bootstrap(
    config: &Config,
    driver: &DriverHandle,
    client: &OpenBaoClient,
    tasks: &mut Supervisor,
) -> Result<(), StartFailure> {
    let single_attempt = config.openbao.timeout * 4;
    let grace = config.bootstrap.grace_timeout.max(single_attempt);
    let mut snapshots = driver.watch();
    let healthy = tokio::time::timeout(
        grace,
        snapshots.wait_for(|snapshot| snapshot.report.healthy),
    );
    let outcome = tokio::select! {
        outcome = healthy => outcome,
        (name, ended) = tasks.next_cause() => {
            supervise::log_unexpected_end(name, &ended);
            return Err(StartFailure::Runtime(format!(
                "the {name} task {} during bootstrap",
                ended.as_str()
            )));
        }
    };
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(StartFailure::Runtime(
            "the provider stopped during bootstrap".into(),
        )),
        Err(_) => Err(StartFailure::Runtime(format!(
            "bootstrap did not reach a healthy status within the grace timeout: {}",
            bootstrap_cause(&driver.snapshot().report, client)
        ))),
    }
}

/// Why bootstrap failed, root cause first: a failed login (method, request and OpenBao's
/// answer), else the first probe failure, then the Status reasons it led to.
fn bootstrap_cause(report: &bao_kms_core::health::HealthReport, client: &OpenBaoClient) -> String {
    let reasons: Vec<&str> = report
        .reasons
        .iter()
        .map(|reason| reason.as_str())
        .collect();
    let root = if let Some(login) = client.token_manager().last_login_failure() {
        format!("auth_failed: {login}")
    } else if let Some(class) = report.metadata_error_class {
        format!("metadata probe failed: {class}")
    } else if let Some(class) = report.deep_error_class {
        format!("encrypt/decrypt probe failed: {class}")
    } else {
        "no probe succeeded".to_owned()
    };
    format!("{root} (Status reasons: {})", reasons.join(", "))
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
