//! The driver between gRPC handlers and the core: a dropped RPC future cancels its request in
//! the core at once (its call slot is free for the next Decrypt, and a queued Decrypt nobody
//! waits for is never sent), and a call waits for a blocking thread no longer than its deadline.
//! Transit is the test kit's model behind a gate the test opens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::wildcard_enum_match_arm
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bao_kms_core::provider::Event;
use bao_kms_core::{
    KmsRequest, KmsResponse, Plaintext, Provider, StoredState, TransitFailure, TransitRequest,
    TransitResponse,
};
use bao_kms_runtime_tokio::driver::{
    self, DriverHandle, EventSink, RegistryWriter, TransitExecutor,
};
use bao_kms_testkit::sim;
use bao_kms_testkit::transit_model::TransitModel;

/// The model, with Decrypt calls held at a gate while it is closed.
struct GatedTransit {
    model: Mutex<TransitModel>,
    open: Mutex<bool>,
    opened: Condvar,
    decrypts_started: AtomicUsize,
    /// Every Decrypt ciphertext that reached "OpenBao", in order.
    seen: Mutex<Vec<String>>,
}

impl GatedTransit {
    fn new() -> Self {
        Self {
            model: Mutex::new(TransitModel::new(7, sim::START_UNIX - 3600)),
            open: Mutex::new(true),
            opened: Condvar::new(),
            decrypts_started: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn set_open(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.opened.notify_all();
    }
}

impl TransitExecutor for GatedTransit {
    fn execute(
        &self,
        request: &TransitRequest,
        budget: Duration,
    ) -> Result<TransitResponse, TransitFailure> {
        if let TransitRequest::Decrypt { ciphertext, .. } = request {
            self.decrypts_started.fetch_add(1, Ordering::SeqCst);
            self.seen
                .lock()
                .unwrap()
                .push(ciphertext.as_str().to_owned());
            let open = self.open.lock().unwrap();
            // Like a real HTTP call, the wait ends with the call's time budget.
            let (_open, _) = self
                .opened
                .wait_timeout_while(open, budget, |open| !*open)
                .unwrap();
        }
        self.model.lock().unwrap().execute(request)
    }
}

struct MemoryRegistry;

impl RegistryWriter for MemoryRegistry {
    fn write(&self, _state: &str, _checkpoint: &str) -> Result<(), String> {
        Ok(())
    }
}

struct NoEvents(AtomicBool);

impl EventSink for NoEvents {
    fn event(&self, _event: &Event) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn transit_call(&self, _operation: &'static str, _status: &'static str, _seconds: f64) {}
    fn transit_latest_version(&self, _version: u64) {}
}

#[allow(clippy::disallowed_methods, reason = "the test's clock")]
fn now() -> Instant {
    Instant::now()
}

/// A driver over a healthy provider with a single Decrypt call slot.
async fn healthy_driver(transit: &Arc<GatedTransit>) -> DriverHandle {
    let mut config = sim::config(0);
    config.batching.max_calls = 1;
    let provider = Provider::new(config, now(), &StoredState::default()).unwrap();
    let (handle, _task) = driver::spawn(
        provider,
        Arc::clone(transit) as Arc<dyn TransitExecutor>,
        Arc::new(MemoryRegistry),
        Arc::new(NoEvents(AtomicBool::new(false))),
    );
    let deadline = now() + Duration::from_secs(10);
    while handle.status_from_snapshot(now()).flatten().is_none() {
        assert!(now() < deadline, "the provider did not become healthy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle
}

async fn stored(handle: &DriverHandle, seed: u8) -> KmsRequest {
    let answer = handle
        .submit(
            KmsRequest::Encrypt {
                plaintext: Plaintext::new(vec![seed; 32]),
            },
            now() + Duration::from_secs(3),
        )
        .await;
    let Ok(KmsResponse::Encrypted {
        ciphertext,
        key_id,
        annotations,
    }) = answer
    else {
        panic!("encrypt failed: {answer:?}");
    };
    KmsRequest::Decrypt {
        ciphertext,
        key_id: key_id.to_string(),
        annotations,
    }
}

fn ciphertext_of(request: &KmsRequest) -> String {
    match request {
        KmsRequest::Decrypt { ciphertext, .. } => String::from_utf8(ciphertext.clone()).unwrap(),
        other => panic!("not a decrypt: {other:?}"),
    }
}

async fn wait_for_decrypts(transit: &GatedTransit, count: usize) {
    let deadline = now() + Duration::from_secs(5);
    while transit.decrypts_started.load(Ordering::SeqCst) < count {
        assert!(
            now() < deadline,
            "only {} decrypts started",
            transit.decrypts_started.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_rpc_frees_its_call_slot_at_once_and_a_cancelled_queued_decrypt_is_never_sent() {
    let transit = Arc::new(GatedTransit::new());
    let handle = healthy_driver(&transit).await;
    let first = stored(&handle, 1).await;
    let queued = stored(&handle, 2).await;
    let later = stored(&handle, 3).await;
    let before = transit.decrypts_started.load(Ordering::SeqCst);
    transit.set_open(false);

    // The first Decrypt takes the only slot and hangs in "OpenBao".
    let deadline = now() + Duration::from_secs(3);
    let hanging = tokio::spawn({
        let handle = handle.clone();
        async move { handle.submit(first, deadline).await }
    });
    wait_for_decrypts(&transit, before + 1).await;
    // The second waits for the slot; its caller gives up (the RPC future is dropped).
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        handle.submit(queued.clone(), deadline),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the queued decrypt cannot have been answered"
    );
    // The first caller gives up too: its call no longer holds the slot.
    hanging.abort();
    let _ = hanging.await;

    // A new Decrypt goes to "OpenBao" at once, while the abandoned call is still stuck there.
    let fresh = tokio::spawn({
        let handle = handle.clone();
        let later = later.clone();
        async move { handle.submit(later, now() + Duration::from_secs(3)).await }
    });
    wait_for_decrypts(&transit, before + 2).await;
    transit.set_open(true);
    let answer = fresh.await.unwrap();
    assert!(
        matches!(&answer, Ok(KmsResponse::Decrypted { plaintext }) if plaintext.expose() == [3; 32]),
        "{answer:?}"
    );
    let seen = transit.seen.lock().unwrap().clone();
    assert!(
        !seen.contains(&ciphertext_of(&queued)),
        "the cancelled queued decrypt reached OpenBao"
    );
    assert_eq!(seen.last(), Some(&ciphertext_of(&later)));
}
