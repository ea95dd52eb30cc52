//! End to end, a fleet: three `bao-kms-provider serve` processes — three control-plane nodes,
//! each with its own state directory, socket, metrics and health ports, and all with one
//! identity (the same key_id scope including the key lineage, the same mount and key) — in
//! front of one real OpenBao.
//!
//! Every node has a kube-apiserver stand-in of its own that polls Status every 300 ms, encrypts
//! a fresh seed whenever its node's key_id changes, and on every round decrypts every seed of the
//! whole fleet (etcd is shared) through its own node. The Transit key is rotated once; the nodes
//! are restarted one at a time while the new version is still pending, and once more after the
//! fleet converged, as the upgrade runbook's stop / replace / start does. A stand-in does not
//! call its node while the node is down; every failure from a running node is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use e2e_support::kube_apiserver::{
    ApiserverError, KubeApiserver, StatusObservation, StoredSeed, WriteSeed,
};
use e2e_support::{
    Deadline, E2e, Metrics, PluginConfig, PluginProcess, free_port, key_id_digest, now, private_dir,
};
use tonic::Code;

/// `status.probeInterval` of the harness configuration.
const PROBE_INTERVAL: Duration = e2e_support::PROBE_INTERVAL;
/// The nodes, by name.
const NODES: [&str; 3] = ["a", "b", "c"];
/// How often each stand-in polls Status (and decrypts every stored seed).
const POLL: Duration = Duration::from_millis(300);
/// `rotation.activationDelay` of the fleet: long enough that a rolling restart of all three
/// nodes fits inside it (each restart starts the restarted node's delay again).
const ACTIVATION_DELAY: Duration = Duration::from_secs(4);
/// How long a node may take from spawn to a connectable socket (bootstrap grace is 20 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a started node may take to answer a healthy Status.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole test's budget, checked at the end.
const TEST_BUDGET: Duration = Duration::from_secs(90);

const KEY_ID_HASH: &str = "openbao_kms_status_key_id_hash";
const ROTATION_STATE: &str = "openbao_kms_rotation_state";
const TRANSIT_VERSION: &str = "transit-key-version.kms.openbao.org";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// What the stand-ins record

/// One seed in the shared store (etcd), with where it came from.
#[derive(Clone, Debug)]
struct Pooled {
    /// The node whose stand-in wrote it.
    origin: &'static str,
    /// Its index among that stand-in's seeds.
    index: usize,
    /// When it was written, since the fleet started.
    written_at: Duration,
    seed: StoredSeed,
}

impl Pooled {
    fn transit_version(&self) -> String {
        String::from_utf8_lossy(&self.seed.annotations[TRANSIT_VERSION]).into_owned()
    }

    fn label(&self) -> String {
        format!(
            "{}#{} (transit v{}, key-id-hash {})",
            self.origin,
            self.index,
            self.transit_version(),
            key_id_digest(&self.seed.key_id)
        )
    }
}

/// A failed call to a running node.
#[derive(Clone, Debug)]
struct Failure {
    at: Duration,
    node: &'static str,
    what: String,
    /// The seed a Decrypt was for.
    seed: Option<String>,
    code: Option<Code>,
    error: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {:>7.3}s node {} {}",
            self.at.as_secs_f64(),
            self.node,
            self.what
        )?;
        if let Some(seed) = &self.seed {
            write!(f, " of seed {seed}")?;
        }
        write!(f, ": code {:?}: {}", self.code, self.error)
    }
}

/// One Status answer as kube-apiserver judged it.
#[derive(Clone, Debug)]
struct Answer {
    at: Duration,
    node: &'static str,
    /// `poll` or `start-up`.
    when: &'static str,
    healthz: String,
    /// The key_id of a healthy answer; `None` for an unhealthy one.
    key_id: Option<String>,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {:>7.3}s node {} ({}): healthz {:?}, key_id {:?}",
            self.at.as_secs_f64(),
            self.node,
            self.when,
            self.healthz,
            self.key_id
        )
    }
}

/// The unhealthy Status answers, split into those inside a node's promotion (after the node's
/// last healthy answer naming `old`, before its first naming `new`) and all others.
fn unhealthy_answers<'x>(
    answers: &'x [Answer],
    old: &str,
    new: &str,
) -> (Vec<&'x Answer>, Vec<&'x Answer>) {
    let mut at_promotion = Vec::new();
    let mut other = Vec::new();
    for node in NODES {
        let mine: Vec<&Answer> = answers
            .iter()
            .filter(|answer| answer.node == node)
            .collect();
        for (index, answer) in mine.iter().enumerate() {
            if answer.key_id.is_some() {
                continue;
            }
            let before = mine[..index]
                .iter()
                .rev()
                .find_map(|answer| answer.key_id.as_deref());
            let after = mine[index + 1..]
                .iter()
                .find_map(|answer| answer.key_id.as_deref());
            if before == Some(old) && after == Some(new) {
                at_promotion.push(*answer);
            } else {
                other.push(*answer);
            }
        }
    }
    (at_promotion, other)
}

fn lines<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What every stand-in shares: the seed store and the records.
struct Shared {
    start: Instant,
    stop: AtomicBool,
    pool: Mutex<Vec<Pooled>>,
    failures: Mutex<Vec<Failure>>,
    /// Every Status answer of every node, in order.
    answers: Mutex<Vec<Answer>>,
    decrypts: AtomicU64,
    /// Successful Decrypts, by node, of seeds under a key_id the node's Status had not named
    /// yet (a node still pending decrypting what a node that promoted wrote).
    ahead: Mutex<BTreeMap<&'static str, u64>>,
    rounds: AtomicU64,
}

impl Shared {
    fn at(&self) -> Duration {
        now() - self.start
    }

    fn fail(&self, node: &'static str, what: String, seed: Option<String>, error: &ApiserverError) {
        let failure = Failure {
            at: self.at(),
            node,
            what,
            seed,
            code: error.code(),
            error: error.to_string(),
        };
        eprintln!("FAILURE {failure}");
        lock(&self.failures).push(failure);
    }

    fn answered(&self, node: &'static str, when: &'static str, status: &StatusObservation) {
        let answer = Answer {
            at: self.at(),
            node,
            when,
            healthz: status.healthz.clone(),
            key_id: status.healthy.then(|| status.key_id.clone()),
        };
        if answer.key_id.is_none() {
            eprintln!("UNHEALTHY Status {answer}");
        }
        lock(&self.answers).push(answer);
    }

    /// A healthy answer the stand-in reported as `Current` or `Written`.
    fn answered_healthy(&self, node: &'static str, api: &KubeApiserver) {
        let key_id = api.status_history().last().cloned();
        lock(&self.answers).push(Answer {
            at: self.at(),
            node,
            when: "poll",
            healthz: "ok".to_owned(),
            key_id,
        });
    }
}

/// A stand-in and whether its node is up. A poll round holds the lock, so whoever takes it
/// knows no call to the node is in flight.
struct Link {
    api: KubeApiserver,
    up: bool,
}

/// The name of the method a write-seed error came from.
fn method_of(error: &ApiserverError) -> String {
    match error {
        ApiserverError::Rpc { method, .. } => method.to_string(),
        ApiserverError::Connect(_) => "connect".to_owned(),
        ApiserverError::Protocol(_)
        | ApiserverError::KeyIdMismatch { .. }
        | ApiserverError::PlaintextMismatch { .. } => "Status/Encrypt check".to_owned(),
    }
}

/// One poll round of one stand-in: Status (and a fresh seed on a key_id change), then a Decrypt
/// of every seed in the store through this node.
async fn round(node: &'static str, link: &mut Link, shared: &Shared) {
    match link.api.ensure_write_seed().await {
        Ok(WriteSeed::Written(index)) => {
            shared.answered_healthy(node, &link.api);
            let seed = link.api.stored()[index].clone();
            let pooled = Pooled {
                origin: node,
                index,
                written_at: shared.at(),
                seed,
            };
            eprintln!(
                "at {:>7.3}s node {node} wrote seed {}",
                pooled.written_at.as_secs_f64(),
                pooled.label()
            );
            lock(&shared.pool).push(pooled);
        }
        Ok(WriteSeed::Unhealthy(status)) => shared.answered(node, "poll", &status),
        Ok(WriteSeed::Current) => shared.answered_healthy(node, &link.api),
        Err(error) => shared.fail(node, method_of(&error), None, &error),
    }
    let pool = lock(&shared.pool).clone();
    for pooled in pool {
        let uid = link.api.next_uid();
        match link.api.decrypt(pooled.seed.decrypt_request(uid)).await {
            Ok(plaintext) if plaintext == pooled.seed.seed => {
                shared.decrypts.fetch_add(1, Ordering::Relaxed);
                if !link.api.status_history().contains(&pooled.seed.key_id) {
                    *lock(&shared.ahead).entry(node).or_default() += 1;
                }
            }
            Ok(_) => shared.fail(
                node,
                "Decrypt".to_owned(),
                Some(pooled.label()),
                &ApiserverError::PlaintextMismatch {
                    index: pooled.index,
                },
            ),
            Err(error) => shared.fail(node, "Decrypt".to_owned(), Some(pooled.label()), &error),
        }
    }
    shared.rounds.fetch_add(1, Ordering::Relaxed);
}

/// A stand-in's life: a round every [`POLL`] while its node is up.
async fn poll_node(node: &'static str, link: Arc<tokio::sync::Mutex<Link>>, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        {
            let mut link = link.lock().await;
            if link.up {
                round(node, &mut link, &shared).await;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// (Re)connects a stand-in to its freshly started node and polls until Status is healthy; then
/// the stand-in may use the node again. Returns the first healthy Status.
async fn bring_up(
    node: &'static str,
    link: &tokio::sync::Mutex<Link>,
    shared: &Shared,
) -> StatusObservation {
    let mut link = link.lock().await;
    assert!(!link.up, "node {node} is already up");
    link.api
        .reconnect()
        .await
        .unwrap_or_else(|error| panic!("node {node}: {error}"));
    let deadline = Deadline::after(
        HEALTHY_TIMEOUT,
        format!("a healthy Status from node {node}"),
    );
    loop {
        match link.api.poll_status().await {
            Ok(status) if status.healthy => {
                shared.answered(node, "start-up", &status);
                link.up = true;
                return status;
            }
            Ok(status) => shared.answered(node, "start-up", &status),
            Err(error) => shared.fail(node, "Status after start".to_owned(), None, &error),
        }
        deadline.check();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The nodes

/// Writes `etc/node-<name>.yaml`: the harness configuration (same identity for every node) with
/// the fleet's activation delay.
fn write_node_config(e2e: &E2e, name: &str, config: &PluginConfig) -> PathBuf {
    let path = e2e.write_config(&format!("node-{name}"), config);
    let text = fs::read_to_string(&path).unwrap();
    let harness = "  activationDelay: 2s\n";
    assert!(
        text.contains(harness),
        "the harness configuration changed:\n{text}"
    );
    let fleet = format!("  activationDelay: {}s\n", ACTIVATION_DELAY.as_secs());
    // Rewriting the file in place keeps its mode (0640).
    fs::write(&path, text.replace(harness, &fleet)).unwrap();
    path
}

/// The part of a configuration that makes a node's identity.
fn identity_block(config: &Path) -> String {
    let text = fs::read_to_string(config).unwrap();
    let start = text.find("transit:\n").expect("a transit section");
    let end = text.find("state:\n").expect("a state section");
    text[start..end].to_owned()
}

/// One control-plane node: its configuration and, while it runs, its process (stopped on drop).
struct Node {
    name: &'static str,
    config: PluginConfig,
    config_path: PathBuf,
    process: Option<PluginProcess>,
    starts: u32,
}

impl Node {
    fn new(e2e: &E2e, name: &'static str) -> Self {
        let dir = e2e.dir();
        let config = PluginConfig {
            socket: private_dir(&dir.join(format!("run-{name}"))).join("kms.sock"),
            state_path: private_dir(&dir.join(format!("state-{name}"))).join("key-registry.json"),
            metrics_port: free_port(),
            health_port: free_port(),
            openbao_address: e2e.bao().address(),
            openbao_addresses: e2e.bao().addresses(),
        };
        let config_path = write_node_config(e2e, name, &config);
        Self {
            name,
            config,
            config_path,
            process: None,
            starts: 0,
        }
    }

    /// Spawns the process (the log is `node-<name>-<start>.log`).
    fn spawn(&mut self, e2e: &E2e) {
        assert!(self.process.is_none(), "node {} is running", self.name);
        self.starts += 1;
        let log = format!("node-{}-{}", self.name, self.starts);
        self.process = Some(e2e.spawn_plugin(&self.config_path, &log));
    }

    /// Waits until the spawned process serves its socket. A listener port taken by someone
    /// else in between (the only start-up race) is retried with new ports.
    fn wait_serving(&mut self, e2e: &E2e) {
        for attempt in 0..3 {
            let process = self.process.as_mut().expect("spawned");
            let error = match wait_for_socket(process, &self.config.socket) {
                Ok(()) => return,
                Err(error) => error,
            };
            let log = process.log();
            if attempt == 2 || !log.contains(" listener: ") {
                panic!(
                    "node {}: {error}; its log:\n{}",
                    self.name,
                    process.log_tail(40)
                );
            }
            eprintln!("node {}: a listener port was taken; new ports", self.name);
            self.process = None;
            self.config.metrics_port = free_port();
            self.config.health_port = free_port();
            self.config_path = write_node_config(e2e, self.name, &self.config);
            self.spawn(e2e);
        }
    }

    /// SIGTERM (SIGKILL after the harness's bound); the exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut process = self.process.take().expect("the node is running");
        let status = process.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "node {} exit status after SIGTERM; its log:\n{}",
            self.name,
            process.log_tail(40)
        );
        status
    }
}

/// Waits (bounded) until `socket` accepts connections; fails when the process exits first.
fn wait_for_socket(process: &mut PluginProcess, socket: &Path) -> Result<(), String> {
    let deadline = Deadline::after(START_TIMEOUT, "the node's socket");
    loop {
        if let Some(status) = process.try_exit() {
            return Err(format!("the node exited during start-up with {status}"));
        }
        let is_socket =
            fs::symlink_metadata(socket).is_ok_and(|metadata| metadata.file_type().is_socket());
        if is_socket && std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if deadline.passed() {
            return Err(format!("no connectable socket within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a node's `/metrics` says about the key.
#[derive(Clone, Debug, PartialEq)]
struct KeyMetrics {
    /// The `hash` labels of `openbao_kms_status_key_id_hash` samples equal to 1.
    hashes: Vec<String>,
    /// The `state` label of the `openbao_kms_rotation_state` sample equal to 1.
    rotation_state: String,
}

impl KeyMetrics {
    fn of(metrics: &Metrics) -> Self {
        let set = |name: &str, label: &str| -> Vec<String> {
            metrics
                .series(name)
                .into_iter()
                .filter(|sample| sample.value == 1.0)
                .map(|sample| sample.labels[label].clone())
                .collect()
        };
        Self {
            hashes: set(KEY_ID_HASH, "hash"),
            rotation_state: set(ROTATION_STATE, "state").join("+"),
        }
    }
}

/// What one restart looked like.
#[derive(Debug)]
struct Restart {
    node: &'static str,
    /// Rotation state of every running node just before the SIGTERM.
    states_before: BTreeMap<&'static str, String>,
    /// SIGTERM to a healthy Status.
    took: Duration,
    /// The key_id of the first healthy Status after the start.
    key_id_after: String,
    /// The node's rotation state right after the start.
    state_after: String,
}

impl Restart {
    fn pending_somewhere(&self) -> bool {
        self.states_before.values().any(|state| state == "pending")
    }
}

/// The fleet: three nodes, their stand-ins and the runtime the stand-ins poll on. Fields drop
/// in order: the runtime (stand-ins cancelled) before the nodes (processes stopped).
struct Fleet<'a> {
    runtime: tokio::runtime::Runtime,
    pollers: Vec<tokio::task::JoinHandle<()>>,
    links: Vec<Arc<tokio::sync::Mutex<Link>>>,
    nodes: Vec<Node>,
    shared: Arc<Shared>,
    e2e: &'a E2e,
    http: ureq::Agent,
    /// Every distinct `openbao_kms_status_key_id_hash` each node's metrics showed, in order.
    metric_history: BTreeMap<&'static str, Vec<String>>,
}

impl<'a> Fleet<'a> {
    /// Starts the three nodes (all spawned, then each waited for), connects a stand-in to each
    /// and starts polling.
    fn start(e2e: &'a E2e) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            start: now(),
            stop: AtomicBool::new(false),
            pool: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            decrypts: AtomicU64::new(0),
            ahead: Mutex::new(BTreeMap::new()),
            rounds: AtomicU64::new(0),
        });
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut nodes: Vec<Node> = NODES.iter().map(|name| Node::new(e2e, name)).collect();
        let identity = identity_block(&nodes[0].config_path);
        for node in &nodes {
            assert_eq!(identity_block(&node.config_path), identity, "one identity");
        }
        let mut fleet = Self {
            runtime,
            pollers: Vec::new(),
            links: Vec::new(),
            nodes: Vec::new(),
            shared,
            e2e,
            http,
            metric_history: BTreeMap::new(),
        };
        for node in &mut nodes {
            node.spawn(e2e);
        }
        // Into the fleet before waiting, so a failed start stops every process.
        fleet.nodes = nodes;
        for node in &mut fleet.nodes {
            node.wait_serving(e2e);
        }
        for index in 0..NODES.len() {
            let socket = fleet.nodes[index].config.socket.clone();
            let api = fleet
                .runtime
                .block_on(KubeApiserver::connect(&socket))
                .unwrap();
            let link = Arc::new(tokio::sync::Mutex::new(Link { api, up: false }));
            fleet.links.push(link);
            fleet.bring_up(index);
        }
        for (index, name) in NODES.into_iter().enumerate() {
            let poller = poll_node(name, fleet.links[index].clone(), fleet.shared.clone());
            fleet.pollers.push(fleet.runtime.spawn(poller));
        }
        fleet
    }

    fn bring_up(&self, index: usize) -> StatusObservation {
        self.runtime
            .block_on(bring_up(NODES[index], &self.links[index], &self.shared))
    }

    fn key_metrics(&self, index: usize) -> KeyMetrics {
        let port = self.nodes[index].config.metrics_port;
        let mut response = self
            .http
            .get(&format!("http://127.0.0.1:{port}/metrics"))
            .call()
            .unwrap_or_else(|error| panic!("node {}: GET /metrics: {error}", NODES[index]));
        assert_eq!(response.status().as_u16(), 200, "node {}", NODES[index]);
        let body = response.body_mut().read_to_string().unwrap();
        KeyMetrics::of(&Metrics::parse(&body))
    }

    /// Scrapes every running node, recording each key_id hash change; the metrics by node.
    fn observe(&mut self) -> BTreeMap<&'static str, KeyMetrics> {
        let mut seen = BTreeMap::new();
        for (index, name) in NODES.into_iter().enumerate() {
            if self.nodes[index].process.is_none() {
                continue;
            }
            let metrics = self.key_metrics(index);
            // Two hashes at once would be recorded as one entry `a+b` and fail the history check.
            if !metrics.hashes.is_empty() {
                let hash = metrics.hashes.join("+");
                let history = self.metric_history.entry(name).or_default();
                if history.last() != Some(&hash) {
                    eprintln!(
                        "at {:>7.3}s node {name} metrics key_id hash {hash} ({})",
                        self.shared.at().as_secs_f64(),
                        metrics.rotation_state
                    );
                    history.push(hash);
                }
            }
            seen.insert(name, metrics);
        }
        seen
    }

    /// Each stand-in's Status key_id history.
    fn histories(&self) -> Vec<Vec<String>> {
        self.runtime.block_on(async {
            let mut histories = Vec::new();
            for link in &self.links {
                histories.push(link.lock().await.api.status_history().to_vec());
            }
            histories
        })
    }

    /// Waits until every node's Status and metrics name one key_id, every stand-in saw
    /// `changes` key_ids and wrote a seed under the last; returns that key_id.
    fn wait_converged(&mut self, timeout: Duration, changes: usize, what: &str) -> String {
        let deadline = Deadline::after(timeout, what);
        loop {
            let metrics = self.observe();
            let histories = self.histories();
            let last = histories[0].last().cloned();
            let pool = lock(&self.shared.pool).clone();
            let converged = last.as_ref().is_some_and(|key_id| {
                histories
                    .iter()
                    .all(|history| history.len() == changes && history.last() == Some(key_id))
                    && metrics.len() == NODES.len()
                    && metrics
                        .values()
                        .all(|node| node.hashes == [key_id_digest(key_id)])
                    && NODES.iter().all(|node| {
                        pool.iter()
                            .any(|seed| seed.origin == *node && seed.seed.key_id == *key_id)
                    })
            });
            if converged {
                return last.unwrap();
            }
            if deadline.passed() {
                panic!(
                    "{what}: not converged after {timeout:?}; Status histories {histories:?}, \
                     metrics {metrics:?}, failures {:?}",
                    lock(&self.shared.failures)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the metrics of the running nodes satisfy `done`.
    fn wait_metrics(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&BTreeMap<&'static str, KeyMetrics>) -> bool,
    ) {
        let deadline = Deadline::after(timeout, what);
        loop {
            let metrics = self.observe();
            if done(&metrics) {
                return;
            }
            if deadline.passed() {
                panic!("{what}: not within {timeout:?}; metrics {metrics:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The runbook's stop / replace / start for one node: the stand-in stops calling it, SIGTERM,
    /// the exit waited for, the same binary started with the same configuration and state
    /// directory, the socket and a healthy Status waited for, and the stand-in back on it.
    fn restart(&mut self, index: usize) -> Restart {
        let node = NODES[index];
        let states_before = self
            .observe()
            .into_iter()
            .map(|(name, metrics)| (name, metrics.rotation_state))
            .collect();
        let begin = now();
        self.runtime.block_on(async {
            self.links[index].lock().await.up = false;
        });
        eprintln!(
            "at {:>7.3}s node {node}: SIGTERM",
            self.shared.at().as_secs_f64()
        );
        self.nodes[index].stop();
        assert!(
            !self.nodes[index].config.socket.exists(),
            "node {node} removed its socket on shutdown"
        );
        self.nodes[index].spawn(self.e2e);
        self.nodes[index].wait_serving(self.e2e);
        let status = self.bring_up(index);
        let took = now() - begin;
        let state_after = self.key_metrics(index).rotation_state;
        eprintln!(
            "at {:>7.3}s node {node}: healthy again after {took:?} ({state_after}), key-id-hash {}",
            self.shared.at().as_secs_f64(),
            key_id_digest(&status.key_id)
        );
        self.observe();
        Restart {
            node,
            states_before,
            took,
            key_id_after: status.key_id,
            state_after,
        }
    }

    /// Lets the stand-ins poll for `span` while the metrics are watched.
    fn run_for(&mut self, span: Duration) {
        let end = now() + span;
        while now() < end {
            self.observe();
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the stand-ins' polling (each finishes its round).
    fn stop_polling(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let pollers = std::mem::take(&mut self.pollers);
        self.runtime.block_on(async {
            for poller in pollers {
                tokio::time::timeout(Duration::from_secs(30), poller)
                    .await
                    .expect("a stand-in finishes its round")
                    .unwrap();
            }
        });
    }

    /// Decrypts every stored seed through every node; the failures.
    fn decrypt_everything_everywhere(&self) -> Vec<String> {
        let pool = lock(&self.shared.pool).clone();
        self.runtime.block_on(async {
            let mut failures = Vec::new();
            for (index, link) in self.links.iter().enumerate() {
                let mut link = link.lock().await;
                assert!(link.up, "node {} is up", NODES[index]);
                for pooled in &pool {
                    let uid = link.api.next_uid();
                    match link.api.decrypt(pooled.seed.decrypt_request(uid)).await {
                        Ok(plaintext) if plaintext == pooled.seed.seed => {}
                        Ok(_) => failures.push(format!(
                            "node {}: seed {} decrypted to another plaintext",
                            NODES[index],
                            pooled.label()
                        )),
                        Err(error) => failures.push(format!(
                            "node {}: seed {}: {error}",
                            NODES[index],
                            pooled.label()
                        )),
                    }
                }
            }
            failures
        })
    }
}

#[test]
fn three_nodes_converge_on_one_key_id_through_a_rotation_and_rolling_restarts_without_a_failed_decrypt()
 {
    let budget = Deadline::after(TEST_BUDGET, "the whole test");
    let e2e = E2e::new();
    let mut fleet = Fleet::start(&e2e);
    let started = budget.elapsed();

    // Three nodes of one identity name one key_id for Transit version 1.
    let old = fleet.wait_converged(
        Duration::from_secs(20),
        1,
        "the fleet on the initial key_id",
    );
    assert_eq!(e2e.bao().latest_version(), 1);

    // Rotate, and restart every node while the new version is pending somewhere: node a as soon
    // as a node saw the candidate, node b in the middle of its activation delay, node c just
    // after it promoted (b, whose delay started again at its restart, is still pending then).
    assert_eq!(e2e.bao().rotate_key(), 2);
    let rotated = now();
    let old_digest = key_id_digest(&old);
    fleet.wait_metrics(
        Duration::from_secs(10),
        "a pending rotation on some node",
        |metrics| {
            metrics
                .values()
                .any(|node| node.rotation_state == "pending")
        },
    );
    let pending_after = now() - rotated;
    let mut during = vec![fleet.restart(0)];
    let middle_of_delay = rotated + PROBE_INTERVAL * 2 + ACTIVATION_DELAY / 4;
    while now() < middle_of_delay {
        fleet.observe();
        std::thread::sleep(Duration::from_millis(100));
    }
    during.push(fleet.restart(1));
    fleet.wait_metrics(
        PROBE_INTERVAL * 3 + ACTIVATION_DELAY + Duration::from_secs(10),
        "node c promoting the rotated version",
        |metrics| {
            metrics["c"].rotation_state == "active"
                && metrics["c"].hashes.iter().any(|hash| *hash != old_digest)
        },
    );
    let first_promotion_after = now() - rotated;
    during.push(fleet.restart(2));
    for restart in &during {
        assert!(
            restart.pending_somewhere(),
            "restart of node {} during the rotation found no pending candidate: {restart:?}",
            restart.node
        );
    }
    assert_eq!(
        during[2].state_after, "active",
        "node c came back with its promotion"
    );
    assert_ne!(
        during[2].key_id_after, old,
        "node c came back on the rotated key_id"
    );
    let new = fleet.wait_converged(
        Duration::from_secs(30),
        2,
        "the fleet on the rotated key_id",
    );
    let converged_after = now() - rotated;
    assert_ne!(new, old);

    // The runbook once more, after the rotation: every node comes back on the new key_id.
    let mut after = Vec::new();
    for index in 0..NODES.len() {
        let restart = fleet.restart(index);
        assert_eq!(
            restart.key_id_after, new,
            "node {} came back on another key_id",
            restart.node
        );
        assert_eq!(restart.state_after, "active", "node {}", restart.node);
        after.push(restart);
    }
    fleet.run_for(POLL * 4);
    fleet.stop_polling();

    // Report.
    let failures = lock(&fleet.shared.failures).clone();
    let ahead = lock(&fleet.shared.ahead).clone();
    let answers = lock(&fleet.shared.answers).clone();
    let (at_promotion, unhealthy) = unhealthy_answers(&answers, &old, &new);
    let pool = lock(&fleet.shared.pool).clone();
    eprintln!("fleet serving {started:?} after the test started");
    eprintln!("rotation pending on some node {pending_after:?} after the rotation");
    eprintln!("node c promoted {first_promotion_after:?} after the rotation");
    for restart in during.iter().chain(&after) {
        eprintln!(
            "restart of node {}: {:?}; before {:?}; after {}",
            restart.node, restart.took, restart.states_before, restart.state_after
        );
    }
    eprintln!("all three nodes on the new key_id {converged_after:?} after the rotation");
    for pooled in &pool {
        eprintln!(
            "seed {} written at {:.3}s",
            pooled.label(),
            pooled.written_at.as_secs_f64()
        );
    }
    eprintln!(
        "{} successful Decrypts in {} poll rounds; {} failures; {} Status answers, {} unhealthy \
         at a promotion, {} otherwise",
        fleet.shared.decrypts.load(Ordering::Relaxed),
        fleet.shared.rounds.load(Ordering::Relaxed),
        failures.len(),
        answers.len(),
        at_promotion.len(),
        unhealthy.len()
    );
    eprintln!("Decrypts of a key_id the node's Status had not named yet, by node: {ahead:?}");

    // No call to a running node failed, Decrypt least of all.
    let decrypt_failures: Vec<Failure> = failures
        .iter()
        .filter(|failure| failure.what == "Decrypt")
        .cloned()
        .collect();
    assert!(
        decrypt_failures.is_empty(),
        "{} Decrypts failed on a running node:\n{}",
        decrypt_failures.len(),
        lines(&decrypt_failures)
    );
    assert!(
        failures.is_empty(),
        "calls to a running node failed:\n{}",
        lines(&failures)
    );
    assert!(
        unhealthy.is_empty(),
        "a running node answered an unhealthy Status:\n{}",
        lines(&unhealthy)
    );
    // A promoted key was proven during its activation delay, so no node is unhealthy even at
    // the instant it promotes.
    assert!(
        at_promotion.is_empty(),
        "a node answered an unhealthy Status at its promotion:\n{}",
        lines(&at_promotion)
    );

    // The fleet was mixed for a while, and the nodes still pending decrypted what the promoted
    // node wrote.
    assert!(
        ahead.values().sum::<u64>() > 0,
        "no node decrypted a seed under a key_id it had not promoted yet"
    );

    // Every seed decrypts on every node.
    let everywhere = fleet.decrypt_everything_everywhere();
    assert!(everywhere.is_empty(), "{everywhere:#?}");

    // One seed per node and key_id: Transit version 1 under the old key_id, 2 under the new.
    for node in NODES {
        let seeds: Vec<(String, String)> = pool
            .iter()
            .filter(|pooled| pooled.origin == node)
            .map(|pooled| (pooled.seed.key_id.clone(), pooled.transit_version()))
            .collect();
        assert_eq!(
            seeds,
            [(old.clone(), "1".to_owned()), (new.clone(), "2".to_owned())],
            "node {node}"
        );
    }

    // Every Status history: old, then new; every node's metrics: the same hash, old then new.
    for (node, history) in NODES.iter().zip(fleet.histories()) {
        assert_eq!(history, [old.clone(), new.clone()], "node {node}");
    }
    let digests = [key_id_digest(&old), key_id_digest(&new)];
    for node in NODES {
        assert_eq!(fleet.metric_history[node], digests, "node {node}");
    }
    for (index, node) in NODES.into_iter().enumerate() {
        assert_eq!(
            fleet.key_metrics(index),
            KeyMetrics {
                hashes: vec![digests[1].clone()],
                rotation_state: "active".to_owned(),
            },
            "node {node}"
        );
    }

    let took = budget.elapsed();
    eprintln!("the test took {took:?}");
    assert!(took < TEST_BUDGET, "the test took {took:?}");
}

/// kube-apiserver may call Status (its poll, a `/readyz` hit) or Encrypt (a write after a DEK
/// seed rotation) at any instant. A promoted key must be usable at once: the provider proves the
/// candidate with a round trip during its activation delay. This test polls Status and encrypts
/// in tight loops across a rotation on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_never_turns_status_unhealthy_nor_refuses_encrypt_even_for_a_moment() {
    let e2e = E2e::running();
    let mut status_api = e2e.apiserver().await;
    let mut encrypt_api = e2e.apiserver().await;
    let old = status_api.poll_status().await.unwrap();
    assert!(old.healthy, "{old:?}");
    let start = now();
    let stop = Arc::new(AtomicBool::new(false));
    let encrypts = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut failures = Vec::new();
            let mut calls = 0_u32;
            while !stop.load(Ordering::Relaxed) {
                calls += 1;
                if let Err(error) = encrypt_api.encrypt(vec![7; 32]).await {
                    failures.push(format!(
                        "at {:.3}s Encrypt failed: {error}",
                        (now() - start).as_secs_f64()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (calls, failures)
        }
    });

    assert_eq!(e2e.bao().rotate_key(), 2);
    let deadline = Deadline::after(
        PROBE_INTERVAL * 3 + e2e_support::ACTIVATION_DELAY + Duration::from_secs(15),
        "the rotated key_id in a healthy Status",
    );
    let mut unhealthy = Vec::new();
    let mut polls = 0_u32;
    let mut new_since: Option<Instant> = None;
    while new_since.is_none_or(|since| now() - since < Duration::from_millis(500)) {
        polls += 1;
        let status = status_api.poll_status().await.unwrap();
        if !status.healthy {
            unhealthy.push(format!(
                "at {:.3}s Status {status:?}",
                (now() - start).as_secs_f64()
            ));
        } else if status.key_id != old.key_id && new_since.is_none() {
            new_since = Some(now());
        }
        deadline.check();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (calls, encrypt_failures) = encrypts.await.unwrap();
    eprintln!(
        "{polls} Status polls, {} unhealthy; {calls} Encrypts, {} failed",
        unhealthy.len(),
        encrypt_failures.len()
    );
    assert_eq!(status_api.status_history().len(), 2);
    assert!(
        unhealthy.is_empty() && encrypt_failures.is_empty(),
        "around the promotion:\n{}\n{}",
        unhealthy.join("\n"),
        encrypt_failures.join("\n")
    );
}
