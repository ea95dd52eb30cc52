//! Against the real client: kube-apiserver v1.37 with a KMS v2 `EncryptionConfiguration`, etcd,
//! the real `bao-kms-provider serve` and a real OpenBao (see `bao_kms_testkit::control_plane`).
//!
//! Each test starts a control plane of its own (about 20 s on two cores) and prints the counts
//! of Secrets it wrote, read and saw fail. kube-apiserver and etcd come from
//! `scripts/install-kube.sh` (a cached build; the first one takes several minutes): without
//! them the tests fail under `CI=true` and are skipped elsewhere with a message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bao_kms_core::annotations::{KEY_ID_HASH, PROVIDER, TRANSIT_KEY_VERSION};
use bao_kms_testkit::control_plane::api::kms_prefix;
use bao_kms_testkit::control_plane::{
    ApiClient, ControlPlane, EncryptedObject, Error, PROVIDER_NAME, binaries, in_ci, samples,
    wait_for,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// How long a state change may take to show (kube-apiserver polls a healthy plugin's Status
/// once a minute, an unhealthy one every 10 s).
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(150);
const POLL: Duration = Duration::from_millis(500);

/// A control plane with `nodes` nodes, or `None` (skip) when the binaries are missing outside
/// CI.
fn control_plane(nodes: usize) -> Option<ControlPlane> {
    if let Err(error) = binaries() {
        assert!(
            !in_ci(),
            "the control-plane binaries are missing under CI=true: {error}"
        );
        eprintln!("skipping: {error} (CI=true makes this a failure)");
        return None;
    }
    Some(ControlPlane::start(nodes).unwrap_or_else(|error| panic!("{error}")))
}

/// base64url(SHA-256(key_id)): the plugin's `key-id-hash` annotation and metric label.
fn key_id_digest(key_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(key_id.as_bytes()))
}

/// `sha256:<hex>`: how kube-apiserver names a key_id in its metrics.
fn apiserver_hash(key_id: &str) -> String {
    let hex: String = Sha256::digest(key_id.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The `EncryptedObject` etcd holds for Secret `name`; panics unless it is KMS v2 through
/// [`PROVIDER_NAME`].
fn stored(plane: &ControlPlane, name: &str) -> EncryptedObject {
    let raw = plane
        .etcd_value(&format!("/registry/secrets/default/{name}"))
        .unwrap()
        .unwrap_or_else(|| panic!("no etcd value for secret {name}"));
    assert!(
        raw.starts_with(kms_prefix().as_bytes()),
        "secret {name} is stored as {:?}…",
        String::from_utf8_lossy(&raw[..raw.len().min(40)])
    );
    EncryptedObject::from_etcd(&raw).unwrap().unwrap()
}

/// The key_id the plugin of node `index` reports as current (by its digest in
/// `openbao_kms_status_key_id_hash`).
fn plugin_key_digest(plane: &ControlPlane, index: usize) -> Vec<String> {
    let metrics = plane.plugin_metrics(index).unwrap();
    samples(&metrics, "openbao_kms_status_key_id_hash")
        .into_iter()
        .filter(|sample| sample.value == 1.0)
        .map(|sample| sample.labels["hash"].clone())
        .collect()
}

/// Counts of one scenario, printed for the record.
#[derive(Debug, Default)]
struct Counts {
    written: AtomicU64,
    write_failed: AtomicU64,
    read: AtomicU64,
    read_failed: AtomicU64,
}

impl Counts {
    fn print(&self, scenario: &str) {
        eprintln!(
            "[{scenario}] secrets written={} write_failed={} read={} read_failed={}",
            self.written.load(Ordering::SeqCst),
            self.write_failed.load(Ordering::SeqCst),
            self.read.load(Ordering::SeqCst),
            self.read_failed.load(Ordering::SeqCst),
        );
    }
}

/// Creates Secret `name` (which must succeed) and counts it.
fn write(api: &ApiClient, counts: &Counts, name: &str) {
    let (status, body) = api
        .create_secret(name, &format!("value of {name}"))
        .unwrap();
    assert_eq!(status, 201, "create {name}: {body}");
    counts.written.fetch_add(1, Ordering::SeqCst);
}

/// Reads Secret `name` (which must read back its value) and counts it.
fn read_back(api: &ApiClient, counts: &Counts, name: &str) {
    let value = api.read_secret(name).unwrap();
    assert_eq!(
        value.as_deref(),
        Some(format!("value of {name}").as_str()),
        "{name}"
    );
    counts.read.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn kube_apiserver_stores_secrets_through_the_plugin_as_kms_v2_with_our_key_id() {
    let Some(plane) = control_plane(1) else {
        return;
    };
    let api = plane.api(0).unwrap();
    let counts = Counts::default();

    let (status, readyz) = api.get("/readyz?verbose").unwrap();
    assert_eq!(status, 200, "{readyz}");
    assert!(
        readyz.contains("[+]kms-providers ok"),
        "/readyz?verbose names the KMS provider check healthy: {readyz}"
    );

    let names: Vec<String> = (0..20).map(|n| format!("secret-a-{n}")).collect();
    for name in &names {
        write(&api, &counts, name);
    }
    for name in &names {
        read_back(&api, &counts, name);
    }

    let digests = plugin_key_digest(&plane, 0);
    assert_eq!(digests.len(), 1, "one current key_id: {digests:?}");
    let mut key_ids = BTreeMap::new();
    for name in &names {
        let object = stored(&plane, name);
        assert_eq!(
            key_id_digest(&object.key_id),
            digests[0],
            "{name} carries the plugin's key_id"
        );
        let annotation = |key: &str| {
            String::from_utf8(object.annotations.get(key).cloned().unwrap_or_default()).unwrap()
        };
        assert_eq!(
            annotation(KEY_ID_HASH),
            digests[0],
            "{name}: {:?}",
            object.annotations
        );
        assert!(
            !annotation(PROVIDER).is_empty(),
            "{name}: {:?}",
            object.annotations
        );
        assert_eq!(annotation(TRANSIT_KEY_VERSION), "1", "{name}");
        assert!(!object.encrypted_data.is_empty() && !object.encrypted_dek_source.is_empty());
        *key_ids.entry(object.key_id).or_insert(0) += 1;
    }
    assert_eq!(key_ids.len(), 1, "{key_ids:?}");
    let key_id = key_ids.keys().next().unwrap().clone();

    // kube-apiserver and the plugin name the same key_id in their metrics.
    let (status, metrics) = api.get("/metrics").unwrap();
    assert_eq!(status, 200);
    let writes: f64 = samples(&metrics, "apiserver_envelope_encryption_key_id_hash_total")
        .into_iter()
        .filter(|sample| {
            sample.labels.get("key_id_hash") == Some(&apiserver_hash(&key_id))
                && sample.labels.get("provider_name").map(String::as_str) == Some(PROVIDER_NAME)
                && sample.labels.get("transformation_type").map(String::as_str)
                    == Some("to_storage")
        })
        .map(|sample| sample.value)
        .sum();
    assert!(
        writes >= 20.0,
        "apiserver counted {writes} writes under our key_id"
    );
    let plugin_metrics = plane.plugin_metrics(0).unwrap();
    let observed: Vec<String> =
        samples(&plugin_metrics, "openbao_kms_status_apiserver_key_id_hash")
            .into_iter()
            .filter(|sample| sample.value == 1.0)
            .map(|sample| sample.labels["hash"].clone())
            .collect();
    assert_eq!(observed, [apiserver_hash(&key_id)]);
    counts.print("stores_through_the_plugin");
}

/// Keeps writing Secrets through `writer` and reading each new one (and the first one) back
/// through every reader until `stop`; every failure is counted, none panics.
fn load(
    writer: ApiClient,
    readers: Vec<ApiClient>,
    prefix: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut written = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("{prefix}-{n}");
        n += 1;
        match writer.create_secret(&name, &format!("value of {name}")) {
            Ok((201, _)) => {
                counts.written.fetch_add(1, Ordering::SeqCst);
                written.push(name);
            }
            _ => {
                counts.write_failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        for reader in &readers {
            for name in [written.first(), written.last()].into_iter().flatten() {
                match reader.read_secret(name) {
                    Ok(Some(value)) if value == format!("value of {name}") => {
                        counts.read.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        counts.read_failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    written
}

/// Runs [`load`] in a thread, writing through node `writer` and reading through `readers`;
/// stop it with the returned flag.
fn start_load(
    plane: &ControlPlane,
    writer: usize,
    readers: &[usize],
    prefix: &str,
    counts: &Arc<Counts>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<String>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = plane.api(writer).unwrap();
    let readers = readers
        .iter()
        .map(|index| plane.api(*index).unwrap())
        .collect();
    let (prefix, counts, flag) = (prefix.to_owned(), counts.clone(), stop.clone());
    let worker = std::thread::spawn(move || load(writer, readers, prefix, counts, flag));
    (stop, worker)
}

#[test]
fn plugin_and_kube_apiserver_restarts_under_load_lose_no_secret_and_fail_no_read() {
    let Some(mut plane) = control_plane(1) else {
        return;
    };
    let counts = Arc::new(Counts::default());
    let (stop, worker) = start_load(&plane, 0, &[0], "secret-d", &counts);
    std::thread::sleep(Duration::from_secs(3));

    plane.stop_plugin(0);
    std::thread::sleep(Duration::from_secs(2));
    plane.start_plugin(0).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let mut written = worker.join().unwrap();

    plane.stop_apiserver(0);
    plane.start_apiserver(0).unwrap();
    plane.wait_apiserver_ready(0).unwrap();
    let (stop, worker) = start_load(&plane, 0, &[0], "secret-d2", &counts);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    written.extend(worker.join().unwrap());

    // Every Secret written reads back through the restarted kube-apiserver (its DEK cache is
    // gone: each one is decrypted through the plugin again).
    let api = plane.api(0).unwrap();
    for name in &written {
        read_back(&api, &counts, name);
        let _ = stored(&plane, name);
    }
    counts.print("restarts_under_load");
    assert!(
        written.len() >= 10,
        "the load wrote {} secrets",
        written.len()
    );
    assert_eq!(counts.read_failed.load(Ordering::SeqCst), 0, "{counts:?}");
    assert_eq!(counts.write_failed.load(Ordering::SeqCst), 0, "{counts:?}");
    assert_eq!(counts.written.load(Ordering::SeqCst), written.len() as u64);
}

#[test]
fn a_transit_rotation_reaches_kube_apiserver_and_new_secrets_use_the_new_key_id() {
    let Some(plane) = control_plane(1) else {
        return;
    };
    let api = plane.api(0).unwrap();
    let counts = Counts::default();
    let old: Vec<String> = (0..5).map(|n| format!("secret-c-old-{n}")).collect();
    for name in &old {
        write(&api, &counts, name);
    }
    let old_key_id = stored(&plane, &old[0]).key_id;

    assert_eq!(plane.bao().rotate_key(), 2);
    // The plugin moves to the new key_id once it has seen version 2 stable...
    let new_digest = wait_for(
        OBSERVE_TIMEOUT,
        POLL,
        "the plugin to move to version 2",
        || {
            let digests = plugin_key_digest(&plane, 0);
            Ok(digests
                .into_iter()
                .find(|digest| *digest != key_id_digest(&old_key_id)))
        },
    )
    .unwrap();
    // ...and kube-apiserver follows on its next Status poll (at most a minute).
    let new_key_id = wait_for::<String>(
        OBSERVE_TIMEOUT,
        Duration::from_secs(1),
        "new secrets under the new key_id",
        || {
            let name = format!("secret-c-probe-{}", counts.written.load(Ordering::SeqCst));
            write(&api, &counts, &name);
            let object = stored(&plane, &name);
            Ok((key_id_digest(&object.key_id) == new_digest).then_some(object.key_id))
        },
    )
    .unwrap();
    assert_ne!(new_key_id, old_key_id);

    let fresh: Vec<String> = (0..5).map(|n| format!("secret-c-new-{n}")).collect();
    for name in &fresh {
        write(&api, &counts, name);
        let object = stored(&plane, name);
        assert_eq!(object.key_id, new_key_id, "{name}");
        assert_eq!(object.annotations[TRANSIT_KEY_VERSION], b"2", "{name}");
    }
    for name in old.iter().chain(&fresh) {
        read_back(&api, &counts, name);
    }
    assert_eq!(
        stored(&plane, &old[0]).key_id,
        old_key_id,
        "old secrets keep their key_id"
    );

    // kube-apiserver's key_id hash metrics and the plugin's view of them agree.
    let (_, metrics) = api.get("/metrics").unwrap();
    let status_hashes: Vec<String> = samples(
        &metrics,
        "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds",
    )
    .into_iter()
    .filter_map(|sample| sample.labels.get("key_id_hash").cloned())
    .collect();
    assert!(
        status_hashes.contains(&apiserver_hash(&new_key_id)),
        "apiserver saw the new key_id in Status: {status_hashes:?}"
    );
    let plugin_metrics = plane.plugin_metrics(0).unwrap();
    let observed: Vec<String> =
        samples(&plugin_metrics, "openbao_kms_status_apiserver_key_id_hash")
            .into_iter()
            .filter(|sample| sample.value == 1.0)
            .map(|sample| sample.labels["hash"].clone())
            .collect();
    assert_eq!(observed, [apiserver_hash(&new_key_id)]);
    counts.print("rotation");
}

#[test]
fn with_the_plugin_down_readiness_and_writes_fail_and_recover_without_an_apiserver_restart() {
    let Some(mut plane) = control_plane(1) else {
        return;
    };
    let api = plane.api(0).unwrap();
    let counts = Counts::default();
    let before: Vec<String> = (0..5).map(|n| format!("secret-b-{n}")).collect();
    for name in &before {
        write(&api, &counts, name);
    }

    plane.stop_plugin(0);
    // kube-apiserver trusts a healthy answer for a minute, then polls every 10 s.
    let readyz = wait_for(
        OBSERVE_TIMEOUT,
        Duration::from_secs(2),
        "/readyz to fail the KMS check",
        || {
            let (status, body) = api
                .get("/readyz?verbose")
                .map_err(|error| Error::Http(error.to_string()))?;
            Ok((status != 200 && body.contains("[-]kms-providers failed")).then_some(body))
        },
    )
    .unwrap();
    assert!(readyz.contains("[-]kms-providers failed"), "{readyz}");
    // Reads of existing Secrets go on from kube-apiserver's DEK cache.
    for name in &before {
        read_back(&api, &counts, name);
    }
    // Writes fail once the last healthy Status is older than kube-apiserver's write lease.
    let mut n = 0;
    wait_for(
        OBSERVE_TIMEOUT + OBSERVE_TIMEOUT,
        Duration::from_secs(2),
        "a write to fail",
        || {
            n += 1;
            let name = format!("secret-b-down-{n}");
            let (status, _) = api.create_secret(&name, &format!("value of {name}"))?;
            if status == 201 {
                counts.written.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            } else {
                counts.write_failed.fetch_add(1, Ordering::SeqCst);
                Ok(Some(()))
            }
        },
    )
    .unwrap();

    plane.start_plugin(0).unwrap();
    wait_for(
        OBSERVE_TIMEOUT,
        Duration::from_secs(1),
        "/readyz to pass again",
        || {
            let (status, body) = api.get("/readyz?verbose")?;
            Ok((status == 200 && body.contains("[+]kms-providers ok")).then_some(()))
        },
    )
    .unwrap();
    let after: Vec<String> = (0..5).map(|n| format!("secret-b-after-{n}")).collect();
    wait_for(
        OBSERVE_TIMEOUT,
        Duration::from_secs(1),
        "a write to succeed again",
        || {
            Ok(matches!(
                api.create_secret(&after[0], &format!("value of {}", after[0])),
                Ok((201, _))
            )
            .then_some(()))
        },
    )
    .unwrap();
    counts.written.fetch_add(1, Ordering::SeqCst);
    for name in &after[1..] {
        write(&api, &counts, name);
    }
    for name in before.iter().chain(&after) {
        read_back(&api, &counts, name);
    }
    counts.print("plugin_down");
    assert!(counts.write_failed.load(Ordering::SeqCst) >= 1);
}

/// `fleet-check` over every node: `Some(report)` once it exits with 0.
fn fleet_agrees(plane: &ControlPlane, nodes: usize) -> Option<serde_json::Value> {
    let urls: Vec<String> = (0..nodes)
        .map(|index| plane.node(index).metrics_url())
        .collect();
    let mut args = vec!["fleet-check", "--output", "json"];
    for url in &urls {
        args.extend(["--metrics-url", url.as_str()]);
    }
    let (code, stdout) = plane.plugin_command(&args).unwrap();
    (code == 0).then(|| serde_json::from_str(&stdout).unwrap())
}

/// Every Secret in `names` reads back its value through every node.
fn read_everywhere(plane: &ControlPlane, nodes: usize, counts: &Counts, names: &[String]) {
    for index in 0..nodes {
        let api = plane.api(index).unwrap();
        for name in names {
            read_back(&api, counts, name);
        }
    }
}

/// `retire-versions --before-version 2` on node `index`'s stopped plugin: plan, then apply.
fn retire_version_1(plane: &ControlPlane, index: usize) -> serde_json::Value {
    let config = plane
        .node(index)
        .plugin_config()
        .to_str()
        .unwrap()
        .to_owned();
    let plan_args = [
        "retire-versions",
        "--config",
        &config,
        "--before-version",
        "2",
        "--output",
        "json",
    ];
    let (code, plan) = plane.plugin_command(&plan_args).unwrap();
    assert_eq!(code, 0, "retire-versions plan on node {index}: {plan}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let hash = plan["stateHash"].as_str().unwrap().to_owned();
    let mut apply_args = plan_args.to_vec();
    // The migration above rewrote every Secret; this test checks the reads, and the storage
    // scan gate has its own test (kube_storage_scan.rs).
    apply_args.extend([
        "--apply",
        "--ignore-storage-references",
        "--expected-state-hash",
        &hash,
    ]);
    let (code, applied) = plane.plugin_command(&apply_args).unwrap();
    assert_eq!(
        code, 0,
        "retire-versions --apply on node {index}: {applied}"
    );
    serde_json::from_str(&applied).unwrap()
}

#[test]
fn two_kube_apiservers_read_every_secret_through_plugin_replacements_a_rotation_a_migration_and_a_retirement()
 {
    let Some(mut plane) = control_plane(2) else {
        return;
    };
    let counts = Arc::new(Counts::default());
    let fleet = wait_for(OBSERVE_TIMEOUT, POLL, "fleet-check to agree", || {
        Ok(fleet_agrees(&plane, 2))
    })
    .unwrap();
    assert_eq!(fleet["name"], "fleet-check", "{fleet}");

    // Replace the plugins one node at a time while Secrets are written through node 0 and
    // read through both nodes.
    let (stop, worker) = start_load(&plane, 0, &[0, 1], "secret-e", &counts);
    for index in [0, 1] {
        std::thread::sleep(Duration::from_secs(2));
        plane.stop_plugin(index);
        plane.start_plugin(index).unwrap();
        wait_for(OBSERVE_TIMEOUT, POLL, "fleet-check to agree", || {
            Ok(fleet_agrees(&plane, 2))
        })
        .unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut written = worker.join().unwrap();
    read_everywhere(&plane, 2, &counts, &written);

    // Rotate: both plugins move to version 2 together (fleet-check agrees on one new hash),
    // then both kube-apiservers write with it.
    let old_key_id = stored(&plane, &written[0]).key_id;
    assert_eq!(plane.bao().rotate_key(), 2);
    wait_for(OBSERVE_TIMEOUT, POLL, "both plugins on version 2", || {
        Ok(fleet_agrees(&plane, 2).filter(|_| {
            (0..2).all(|index| plugin_key_digest(&plane, index) != [key_id_digest(&old_key_id)])
        }))
    })
    .unwrap();
    let mut new_key_id = String::new();
    for index in [0, 1] {
        let api = plane.api(index).unwrap();
        new_key_id = wait_for(
            OBSERVE_TIMEOUT,
            Duration::from_secs(1),
            "writes under the new key_id",
            || {
                let name = format!(
                    "secret-e-{index}-probe-{}",
                    counts.written.load(Ordering::SeqCst)
                );
                write(&api, &counts, &name);
                written.push(name.clone());
                let object = stored(&plane, &name);
                Ok((object.key_id != old_key_id).then_some(object.key_id))
            },
        )
        .unwrap();
    }
    read_everywhere(&plane, 2, &counts, &written);

    // Storage migration: every Secret written again through node 1 is stored under the new
    // key_id and still reads on both nodes.
    let api = plane.api(1).unwrap();
    for name in &written {
        let (status, body) = api.rewrite_secret(name).unwrap();
        assert_eq!(status, 200, "rewrite {name}: {body}");
        assert_eq!(stored(&plane, name).key_id, new_key_id, "{name} migrated");
    }

    // Retire version 1 on both nodes (plugin stopped for --apply), raise Transit's
    // min_decryption_version, and read everything through restarted kube-apiservers, whose
    // DEK caches are empty: each Secret is decrypted through a plugin again.
    for index in [0, 1] {
        plane.stop_plugin(index);
        let report = retire_version_1(&plane, index);
        assert_eq!(report["applied"], true, "{report}");
        plane.start_plugin(index).unwrap();
    }
    plane.bao().set_min_decryption_version(2);
    for index in [0, 1] {
        plane.stop_apiserver(index);
        plane.start_apiserver(index).unwrap();
    }
    for index in [0, 1] {
        plane.wait_apiserver_ready(index).unwrap();
    }
    read_everywhere(&plane, 2, &counts, &written);
    wait_for(OBSERVE_TIMEOUT, POLL, "fleet-check to agree", || {
        Ok(fleet_agrees(&plane, 2))
    })
    .unwrap();

    counts.print("two_apiservers_runbook");
    assert_eq!(counts.read_failed.load(Ordering::SeqCst), 0, "{counts:?}");
    assert_eq!(counts.write_failed.load(Ordering::SeqCst), 0, "{counts:?}");
}
