//! Glue between the driver's traits and the concrete IO: the OpenBao client, the registry files
//! and telemetry.

use std::sync::Arc;
use std::time::Duration;

use bao_kms_core::provider::{Event, KmsMethod, ProbeKind};
use bao_kms_core::{TransitFailure, TransitRequest, TransitResponse};
use tokio::sync::watch;
use tonic::Code;

use crate::config::{AuthMethod, Config};
use crate::driver::{EventSink, RegistryWriter, Snapshot, TransitExecutor};
use crate::files::{RegistryPaths, write_registry};
use crate::grpc::{RpcObserver, code_label};
use crate::openbao::auth::AuthStats;
use crate::openbao::{self, CaCertificates, ClientSettings, OpenBaoClient};
use crate::telemetry::{self, Metrics};

impl TransitExecutor for OpenBaoClient {
    fn execute(
        &self,
        request: &TransitRequest,
        budget: Duration,
    ) -> Result<TransitResponse, TransitFailure> {
        self.execute_within(request, budget)
    }
}

/// Maps the configuration onto the OpenBao client's settings.
pub fn client_settings(config: &Config) -> ClientSettings {
    let auth = match &config.auth.method {
        AuthMethod::Jwt(jwt) => openbao::AuthSettings::Jwt {
            mount_path: jwt.mount_path.clone(),
            role: jwt.role.clone(),
            jwt_file: jwt.jwt_file.clone(),
            min_remaining_ttl: jwt.min_remaining_ttl,
            clock_skew_leeway: jwt.clock_skew_leeway,
            expected_issuer: jwt.expected_issuer.clone(),
            expected_audience: jwt.expected_audience.clone(),
            expected_subject: jwt.expected_subject.clone(),
        },
        AuthMethod::Token { token_file } => openbao::AuthSettings::Token {
            token_file: token_file.clone(),
        },
        AuthMethod::AppRole {
            mount_path,
            role_id_file,
            secret_id_file,
        } => openbao::AuthSettings::AppRole {
            mount_path: mount_path.clone(),
            role_id_file: role_id_file.clone(),
            secret_id_file: secret_id_file.clone(),
        },
    };
    ClientSettings {
        address: config.openbao.address.clone(),
        more_addresses: config.openbao.more_addresses.clone(),
        ca_certificates: CaCertificates::File(config.openbao.ca_cert_file.clone()),
        tls_server_name: Some(config.openbao.tls_server_name.clone()),
        namespace: config.openbao.namespace.clone(),
        timeout: config.openbao.timeout,
        mount_path: config.identity().transit_mount_path().to_owned(),
        key_name: config.identity().transit_key_name().to_owned(),
        auth,
        login_before_token_expiry: config.auth.login_before_token_expiry,
        token_renewal_increment: config.auth.token_renewal_increment,
        login_timeout: config.auth.login_timeout,
    }
}

/// Writes registry files with the atomic, durable writer.
#[derive(Debug)]
pub struct FileRegistry {
    paths: RegistryPaths,
}

impl FileRegistry {
    /// A writer for the files at `paths`.
    pub fn new(paths: RegistryPaths) -> Self {
        Self { paths }
    }
}

impl RegistryWriter for FileRegistry {
    fn write(&self, state: &str, checkpoint: &str) -> Result<(), String> {
        write_registry(&self.paths, state, checkpoint).map_err(|error| error.to_string())
    }
}

/// Turns driver events, Transit calls and finished RPCs into metrics and log lines.
#[derive(Debug)]
pub struct TelemetryObserver {
    metrics: Metrics,
    client: OpenBaoClient,
    /// Auth outcomes already added to the counters.
    auth_counted: std::sync::Mutex<AuthStats>,
}

impl TelemetryObserver {
    /// An observer feeding `metrics`; `client` supplies the token TTL.
    pub fn new(metrics: Metrics, client: OpenBaoClient) -> Self {
        Self {
            metrics,
            client,
            auth_counted: std::sync::Mutex::new(AuthStats::default()),
        }
    }

    /// Follows the driver's snapshots and keeps the health and auth metrics current.
    pub async fn follow(self: Arc<Self>, mut snapshots: watch::Receiver<Snapshot>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            self.refresh_auth();
            {
                let snapshot = snapshots.borrow_and_update().clone();
                let active = snapshot
                    .active
                    .as_ref()
                    .map(|(key_id, version)| (key_id, *version));
                self.metrics.apply_health(&snapshot.report, active);
                if let Some(ttl) = self.client.token_ttl_seconds() {
                    self.metrics.set_token_ttl(ttl);
                }
                let (nodes, in_use) = self.client.nodes();
                self.metrics.set_openbao_nodes(&nodes, &in_use);
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
        }
    }
}

impl TelemetryObserver {
    /// Adds the logins and renewals that happened since the last refresh to the counters;
    /// runs on every scrape and every second.
    pub fn refresh_auth(&self) {
        let mut counted = self
            .auth_counted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = *counted;
        let now = self.client.auth_stats();
        let delta = |after: u64, earlier: u64| after.saturating_sub(earlier);
        self.metrics
            .record_logins("ok", delta(now.logins_succeeded, before.logins_succeeded));
        self.metrics
            .record_logins("error", delta(now.logins_failed, before.logins_failed));
        self.metrics.record_renewals(
            "ok",
            delta(now.renewals_succeeded, before.renewals_succeeded),
        );
        self.metrics
            .record_renewals("error", delta(now.renewals_failed, before.renewals_failed));
        *counted = now;
    }
}

impl EventSink for TelemetryObserver {
    fn event(&self, event: &Event) {
        if let Event::ProbeFinished {
            kind: ProbeKind::Metadata,
            failure,
        } = event
        {
            self.metrics
                .record_metadata_observation(failure.unwrap_or("ok"));
        }
        if let Event::TransitRetried { operation, class } = event {
            self.metrics
                .record_openbao_retry(operation.as_str(), class.as_str(), false);
        }
        if let Event::TransitRetriesExhausted { operation, class } = event {
            self.metrics
                .record_openbao_retry(operation.as_str(), class.as_str(), true);
        }
        telemetry::log_event(event);
    }

    fn transit_call(&self, operation: &'static str, status: &'static str, seconds: f64) {
        self.metrics
            .record_openbao(operation, status, Duration::from_secs_f64(seconds));
    }

    fn transit_latest_version(&self, version: u64) {
        self.metrics.set_transit_latest_version(version);
    }
}

impl RpcObserver for TelemetryObserver {
    fn rpc_finished(
        &self,
        method: KmsMethod,
        code: Code,
        class: Option<&'static str>,
        elapsed: Duration,
    ) {
        let code = code_label(code);
        self.metrics.record_grpc(method.as_str(), code, elapsed);
        if let Some(class) = class {
            self.metrics.record_refusal_class(class);
            if class == "concurrency_limit" {
                self.metrics.concurrency_rejected(method.as_str());
            }
        }
        telemetry::log_kms_request(method.as_str(), code, class, elapsed);
    }
}
