//! `kms.status_encrypt`: a provider built exactly as `serve` builds it (core `Provider`, the
//! real driver, the real OpenBao client, the registry bytes on disk), but in this process and
//! without a socket, answers Status and then Encrypt; both must name the same key_id, as
//! kube-apiserver requires.
//!
//! Its registry writer discards every save and reports success, so the in-memory provider can
//! publish what it would publish while the files on disk stay untouched.

use std::sync::Arc;

use bao_kms_core::provider::Event;
use bao_kms_core::{KmsRequest, KmsResponse, Plaintext, Provider, StoredState};

use super::{Outcome, fail, pass};
use crate::cli::probe::random_bytes;
use crate::cli::version::PLUGIN_VERSION;
use crate::clock;
use crate::config::Config;
use crate::driver::{self, EventSink, RegistryWriter};
use crate::openbao::OpenBaoClient;

/// How many request timeouts the provider gets to become healthy.
const HEALTHY_WITHIN_TIMEOUTS: u32 = 5;

/// A registry writer that never writes.
#[derive(Debug)]
struct DiscardingRegistry;

impl RegistryWriter for DiscardingRegistry {
    fn write(&self, _state: &str, _checkpoint: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Events are not logged by `doctor`.
#[derive(Debug)]
struct Quiet;

impl EventSink for Quiet {
    fn event(&self, _event: &Event) {}

    fn transit_call(&self, _operation: &'static str, _status: &'static str, _seconds: f64) {}

    fn transit_latest_version(&self, _version: u64) {}
}

/// Runs the check on a tokio runtime of its own.
pub(super) fn status_encrypt(
    config: &Config,
    client: &OpenBaoClient,
    stored: &StoredState,
) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start a runtime: {error}")),
    };
    runtime.block_on(run(config, client, stored))
}

async fn run(config: &Config, client: &OpenBaoClient, stored: &StoredState) -> Outcome {
    let Ok(Ok(seed)) = random_bytes(32).map(<[u8; 32]>::try_from) else {
        return fail("no randomness for the provider");
    };
    let provider = match Provider::new(
        config.provider_config(PLUGIN_VERSION, seed),
        clock::now(),
        stored,
    ) {
        Ok(provider) => provider,
        Err(error) => return fail(format!("the provider refuses the local state: {error}")),
    };
    let (driver, task) = driver::spawn(
        provider,
        Arc::new(client.clone()),
        Arc::new(DiscardingRegistry),
        Arc::new(Quiet),
    );
    let outcome = exchange(config, &driver).await;
    driver.shutdown().await;
    // The driver answers what is waiting and stops; a stuck Transit call is bounded by its
    // own timeout, and the runtime is dropped after this anyway.
    let _ = tokio::time::timeout(config.openbao.timeout * 2, task).await;
    outcome
}

async fn exchange(config: &Config, driver: &driver::DriverHandle) -> Outcome {
    let timeout = config.openbao.timeout;
    let wait = timeout * HEALTHY_WITHIN_TIMEOUTS;
    let mut snapshots = driver.watch();
    // The borrow `wait_for` returns blocks the driver's next publish: drop it at once.
    let healthy = tokio::time::timeout(wait, snapshots.wait_for(|s| s.report.healthy))
        .await
        .is_ok_and(|result| result.is_ok());
    if !healthy {
        let reasons: Vec<&str> = driver
            .snapshot()
            .report
            .reasons
            .iter()
            .map(|reason| reason.as_str())
            .collect();
        return fail(format!(
            "the provider did not become healthy within {}s (reasons: {})",
            wait.as_secs(),
            reasons.join(", ")
        ));
    }
    let status = driver
        .submit(KmsRequest::Status, clock::now() + timeout)
        .await;
    let status_key = match status {
        Ok(KmsResponse::Status {
            key_id: Some(key_id),
        }) => key_id,
        Ok(KmsResponse::Status { key_id: None }) => return fail("Status is not healthy"),
        Ok(_) => return fail("unexpected answer to Status"),
        Err(refusal) => return fail(format!("Status refused ({})", refusal.class())),
    };
    let Ok(seed) = random_bytes(32) else {
        return fail("no randomness for the Encrypt request");
    };
    let encrypted = driver
        .submit(
            KmsRequest::Encrypt {
                plaintext: Plaintext::new(seed),
            },
            clock::now() + timeout,
        )
        .await;
    let encrypt_key = match encrypted {
        Ok(KmsResponse::Encrypted { key_id, .. }) => key_id,
        Ok(_) => return fail("unexpected answer to Encrypt"),
        Err(refusal) => return fail(format!("Encrypt refused ({})", refusal.class())),
    };
    if status_key == encrypt_key {
        pass(format!(
            "Status and Encrypt both name key_id digest {}",
            status_key.digest()
        ))
    } else {
        fail(format!(
            "Status names key_id digest {} but Encrypt used {}",
            status_key.digest(),
            encrypt_key.digest()
        ))
    }
}
