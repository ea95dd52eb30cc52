//! `rotation-plan`, `verify-rotation`, `retire-versions` and `restore-versions` against a real
//! OpenBao 2.7.2 dev server and the registry files a real `bao-kms-provider serve` wrote.
//!
//! Each test has its own OpenBao server and directory (see `e2e_support`); the provider runs
//! with short intervals (probe 1 s, activation delay 2 s, two stable observations), so a
//! rotation is promoted within seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bao_kms_core::registry::{Checkpoint, SnapshotState, StateFile};
use e2e_support::{ACTIVATION_DELAY, Deadline, E2e, PROBE_INTERVAL, key_id_digest, plugin_binary};
use serde_json::Value;

const LOCKED: &str =
    "the provider must be stopped: key registry state is locked by another process";
const LIMITATIONS: &str = "local registry and Transit metadata cannot prove every Kubernetes \
                           object or retained backup has been rewritten";

/// One CLI run: exit code, stdout, stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}):\n{}", self.stdout))
    }

    /// The value of a `key: value` text line.
    fn line(&self, key: &str) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `bao-kms-provider <command> --config <config> <args>`, with no configuration from the
/// environment.
fn cli(config: &Path, command: &str, args: &[&str]) -> Run {
    let output = Command::new(plugin_binary())
        .arg(command)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BAO_KMS_PROVIDER_CONFIG")
        .env_remove("BAO_KMS_PROVIDER_CONFIG_PATH")
        .env_remove("BAO_KMS_PROVIDER_LOG_LEVEL")
        .env_remove("BAO_KMS_PROVIDER_LOGGING_LEVEL")
        .output()
        .expect("run bao-kms-provider");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn read_state(e2e: &E2e) -> Option<StateFile> {
    let bytes = fs::read(&e2e.config().state_path).ok()?;
    StateFile::decode(&bytes).ok()
}

fn read_checkpoint(e2e: &E2e) -> Checkpoint {
    let path = format!("{}.checkpoint", e2e.config().state_path.display());
    Checkpoint::decode(&fs::read(path).unwrap()).unwrap()
}

/// Waits (bounded) until the saved registry's active version is `version`.
fn wait_for_active(e2e: &E2e, version: u32, timeout: Duration) -> StateFile {
    let deadline = Deadline::after(timeout, format!("active version {version} on disk"));
    loop {
        if let Some(state) = read_state(e2e)
            && state.active().version().get() == version
        {
            return state;
        }
        deadline.check();
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Everything secret or identity-bearing a report must never print.
fn assert_no_secrets(e2e: &E2e, state: &StateFile, runs: &[&Run]) {
    let mut forbidden: Vec<String> = ["role-id", "secret-id", "root-token"]
        .iter()
        .map(|name| {
            fs::read_to_string(e2e.bao().file(name))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    forbidden.extend(
        state
            .records()
            .iter()
            .map(|record| record.key_id().as_str().to_owned()),
    );
    forbidden.extend(["e2e-cluster".to_owned(), "transit-e2e".to_owned()]);
    for run in runs {
        for secret in &forbidden {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "output shows {secret:?}: {run:?}"
            );
        }
    }
}

/// A provider that bootstrapped its registry and was stopped.
fn stopped_after_bootstrap() -> (E2e, StateFile) {
    let mut e2e = E2e::running();
    let state = wait_for_active(&e2e, 1, Duration::from_secs(20));
    assert_eq!(e2e.stop_plugin().code(), Some(0));
    (e2e, state)
}

#[test]
fn rotation_plan_and_verify_rotation_report_the_registry_a_stopped_provider_left() {
    let (e2e, state) = stopped_after_bootstrap();
    let config = e2e.config_path();
    let active_hash = key_id_digest(state.active_key_id().as_str());

    let text = cli(config, "rotation-plan", &[]);
    println!("{}", text.stdout);
    assert_eq!(text.code, Some(0), "{text:?}");
    assert_eq!(text.stdout.lines().next(), Some("rotation-plan"));
    let expected = [
        ("transitMetadataStatus", "pass".to_owned()),
        ("stateLoaded", "true".to_owned()),
        ("stateGeneration", state.generation().to_string()),
        ("stateHash", state.current_hash().to_string()),
        ("stateCheckpointLoaded", "true".to_owned()),
        ("stateCheckpointStatus", "current".to_owned()),
        ("stateCheckpointGeneration", state.generation().to_string()),
        ("rotationState", "active".to_owned()),
        ("activeKeyIdHash", active_hash.clone()),
        ("activeTransitVersion", "1".to_owned()),
        ("latestTransitVersion", "1".to_owned()),
        ("confidence", "full".to_owned()),
    ];
    for (key, value) in &expected {
        assert_eq!(text.line(key), Some(value.as_str()), "{key}: {text:?}");
    }
    assert_eq!(text.line("pendingTransitVersion"), None);
    assert_eq!(text.line("limitations"), None);

    let json = cli(config, "rotation-plan", &["--output", "json"]);
    println!("{}", json.stdout);
    assert_eq!(json.code, Some(0), "{json:?}");
    let value = json.json();
    assert_eq!(value["name"], "rotation-plan");
    assert_eq!(value["transitMetadataStatus"], "pass");
    assert_eq!(value["stateLoaded"], true);
    assert_eq!(value["stateHash"], state.current_hash().as_str());
    assert_eq!(value["stateCheckpointStatus"], "current");
    assert_eq!(value["rotationState"], "active");
    assert_eq!(value["activeKeyIdHash"], active_hash.as_str());
    assert_eq!(value["activeTransitVersion"], 1);
    assert_eq!(value["latestTransitVersion"], 1);
    assert!(value.get("transitMetadataError").is_none(), "{value}");
    assert!(value.get("blockers").is_none(), "{value}");

    let verify = cli(config, "verify-rotation", &["--output", "json"]);
    assert_eq!(verify.code, Some(0), "{verify:?}");
    let value = verify.json();
    assert_eq!(value["name"], "verify-rotation");
    assert_eq!(value["confidence"], "limited");
    assert_eq!(value["limitations"], LIMITATIONS);
    let verify_text = cli(config, "verify-rotation", &[]);
    assert_eq!(verify_text.line("limitations"), Some(LIMITATIONS));

    // A rotation no provider has seen yet is reported as pending, never recorded.
    assert_eq!(e2e.bao().rotate_key(), 2);
    let pending = cli(config, "rotation-plan", &[]);
    println!("{}", pending.stdout);
    assert_eq!(pending.code, Some(0), "{pending:?}");
    assert_eq!(pending.line("rotationState"), Some("pending"));
    assert_eq!(pending.line("pendingTransitVersion"), Some("2"));
    assert_eq!(pending.line("pendingStableObservationCount"), Some("0"));
    assert_eq!(pending.line("latestTransitVersion"), Some("2"));
    assert!(
        pending
            .line("pendingPromotion")
            .unwrap()
            .starts_with("not yet recorded"),
        "{pending:?}"
    );
    assert_eq!(
        fs::read(&e2e.config().state_path).unwrap(),
        state.encode().into_bytes(),
        "a report never writes the registry"
    );
    assert_no_secrets(
        &e2e,
        &state,
        &[&text, &json, &verify, &verify_text, &pending],
    );
}

#[test]
fn unreadable_transit_metadata_exits_4_with_the_local_part_of_the_report() {
    let (e2e, state) = stopped_after_bootstrap();
    let config = e2e.config_path();
    e2e.bao().seal();

    let text = cli(config, "rotation-plan", &[]);
    println!("{}", text.stdout);
    assert_eq!(text.code, Some(4), "{text:?}");
    assert_eq!(text.line("transitMetadataStatus"), Some("fail"));
    assert!(
        text.line("transitMetadataError")
            .unwrap()
            .starts_with("Transit key metadata could not be read: "),
        "{text:?}"
    );
    assert_eq!(text.line("stateLoaded"), Some("true"));
    assert_eq!(text.line("stateCheckpointStatus"), Some("current"));
    assert_eq!(text.line("activeTransitVersion"), Some("1"));
    assert_eq!(text.line("latestTransitVersion"), None);
    assert_eq!(text.line("confidence"), Some("limited"));

    for command in ["rotation-plan", "verify-rotation"] {
        let json = cli(config, command, &["--output", "json"]);
        assert_eq!(json.code, Some(4), "{json:?}");
        let value = json.json();
        assert_eq!(value["transitMetadataStatus"], "fail");
        assert_eq!(value["stateLoaded"], true);
        assert_eq!(value["stateCheckpointStatus"], "current");
        assert_eq!(value["activeTransitVersion"], 1);
        assert_eq!(value["stateHash"], state.current_hash().as_str());
    }

    // Flag errors are usage errors whatever OpenBao's state.
    let retire = cli(config, "retire-versions", &["--before-version", "1"]);
    assert_eq!(retire.code, Some(2), "{retire:?}");
    assert_no_secrets(&e2e, &state, &[&text, &retire]);
}

#[test]
fn apply_while_the_provider_runs_is_refused_by_the_registry_lock() {
    let e2e = E2e::running();
    let state = wait_for_active(&e2e, 1, Duration::from_secs(20));
    let hash = state.current_hash().to_string();
    let run = cli(
        e2e.config_path(),
        "retire-versions",
        &[
            "--before-version",
            "2",
            "--apply",
            "--ignore-storage-references",
            "--expected-state-hash",
            &hash,
        ],
    );
    assert_eq!(run.code, Some(4), "{run:?}");
    assert!(run.stderr.contains(LOCKED), "{run:?}");
    let restore = cli(
        e2e.config_path(),
        "restore-versions",
        &["--versions", "1", "--apply", "--expected-state-hash", &hash],
    );
    assert_eq!(restore.code, Some(4), "{restore:?}");
    assert!(restore.stderr.contains(LOCKED), "{restore:?}");
    // Read-only commands do not need the lock.
    assert_eq!(cli(e2e.config_path(), "rotation-plan", &[]).code, Some(0));
}

#[test]
fn retire_then_restore_round_trips_through_plan_and_apply_after_a_rotation_was_promoted() {
    let mut e2e = E2e::running();
    wait_for_active(&e2e, 1, Duration::from_secs(20));
    assert_eq!(e2e.bao().rotate_key(), 2);
    let promoted = wait_for_active(
        &e2e,
        2,
        PROBE_INTERVAL * 4 + ACTIVATION_DELAY + Duration::from_secs(20),
    );
    assert_eq!(e2e.stop_plugin().code(), Some(0));
    let config = e2e.config_path().to_path_buf();
    let state = read_state(&e2e).unwrap();
    assert_eq!(state, promoted, "the stopped provider wrote nothing more");
    let v1 = state
        .records()
        .iter()
        .find(|record| record.version().get() == 1)
        .unwrap();
    assert_eq!(v1.state(), SnapshotState::Retired);
    let v1_hash = key_id_digest(v1.key_id().as_str());

    // Usage errors, before anything is read.
    for before in ["0", "1", "3"] {
        let run = cli(&config, "retire-versions", &["--before-version", before]);
        assert_eq!(run.code, Some(2), "--before-version {before}: {run:?}");
    }
    let no_hash = cli(
        &config,
        "retire-versions",
        &["--before-version", "2", "--apply"],
    );
    assert_eq!(no_hash.code, Some(2), "{no_hash:?}");
    assert!(
        no_hash.stderr.contains("--expected-state-hash"),
        "{no_hash:?}"
    );

    // The plan.
    let plan = cli(&config, "retire-versions", &["--before-version", "2"]);
    println!("{}", plan.stdout);
    assert_eq!(plan.code, Some(0), "{plan:?}");
    assert_eq!(plan.stdout.lines().next(), Some("retire-versions"));
    assert_eq!(plan.line("applied"), Some("false"));
    assert_eq!(plan.line("beforeVersion"), Some("2"));
    assert_eq!(plan.line("activeTransitVersion"), Some("2"));
    assert_eq!(
        plan.line("nextGeneration"),
        Some((state.generation() + 1).to_string().as_str())
    );
    assert_eq!(
        plan.line("remove"),
        Some(format!("transitVersion=1 keyIdHash={v1_hash}").as_str())
    );
    let printed_hash = plan.line("stateHash").unwrap().to_owned();
    assert_eq!(printed_hash, state.current_hash().as_str());
    let next_hash = plan.line("nextStateHash").unwrap().to_owned();

    // Without a storage report (or the explicit override) retiring is refused, nothing written.
    let blind = cli(
        &config,
        "retire-versions",
        &[
            "--before-version",
            "2",
            "--apply",
            "--expected-state-hash",
            &next_hash,
        ],
    );
    assert_eq!(blind.code, Some(4), "{blind:?}");
    assert!(blind.stderr.contains("storage-scan"), "{blind:?}");
    assert_eq!(read_state(&e2e).unwrap(), state);

    // A stale hash is refused and nothing is written.
    let stale = cli(
        &config,
        "retire-versions",
        &[
            "--before-version",
            "2",
            "--apply",
            "--ignore-storage-references",
            "--expected-state-hash",
            &next_hash,
        ],
    );
    assert_eq!(stale.code, Some(4), "{stale:?}");
    assert_eq!(read_state(&e2e).unwrap(), state);

    // Applied with the printed hash.
    let applied = cli(
        &config,
        "retire-versions",
        &[
            "--before-version",
            "2",
            "--apply",
            "--ignore-storage-references",
            "--expected-state-hash",
            &printed_hash,
            "--output",
            "json",
        ],
    );
    println!("{}", applied.stdout);
    assert_eq!(applied.code, Some(0), "{applied:?}");
    let value = applied.json();
    assert_eq!(value["applied"], true);
    assert_eq!(value["beforeVersion"], 2);
    assert_eq!(value["stateHash"], printed_hash.as_str());
    assert_eq!(value["nextStateHash"], next_hash.as_str());
    assert_eq!(value["removedVersions"][0]["transitVersion"], 1);
    assert_eq!(value["removedVersions"][0]["keyIdHash"], v1_hash.as_str());
    let retired = read_state(&e2e).unwrap();
    assert_eq!(retired.generation(), state.generation() + 1);
    assert_eq!(retired.previous_hash(), Some(state.current_hash()));
    assert_eq!(retired.current_hash().as_str(), next_hash);
    let states: Vec<_> = retired
        .records()
        .iter()
        .map(|record| (record.version().get(), record.state()))
        .collect();
    assert_eq!(
        states,
        [(2, SnapshotState::Active), (1, SnapshotState::Removed)]
    );
    assert_eq!(read_checkpoint(&e2e), Checkpoint::for_state(&retired));

    // Repeating it is a no-op.
    let again = cli(
        &config,
        "retire-versions",
        &[
            "--before-version",
            "2",
            "--apply",
            "--ignore-storage-references",
            "--expected-state-hash",
            &next_hash,
        ],
    );
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(again.line("changed"), Some("false"));
    assert_eq!(again.line("applied"), Some("false"));
    assert_eq!(read_state(&e2e).unwrap(), retired);

    // Restore: bad lists are usage errors, a version that is not removed fails the check.
    let not_below = cli(&config, "restore-versions", &["--versions", "2"]);
    assert_eq!(not_below.code, Some(2), "{not_below:?}");
    let twice = cli(&config, "restore-versions", &["--versions", "1,1"]);
    assert_eq!(twice.code, Some(2), "{twice:?}");
    let restore_plan = cli(&config, "restore-versions", &["--versions", "1"]);
    println!("{}", restore_plan.stdout);
    assert_eq!(restore_plan.code, Some(0), "{restore_plan:?}");
    assert_eq!(
        restore_plan.line("restore"),
        Some(format!("transitVersion=1 keyIdHash={v1_hash}").as_str())
    );
    let restored = cli(
        &config,
        "restore-versions",
        &[
            "--versions",
            "1",
            "--apply",
            "--expected-state-hash",
            &next_hash,
        ],
    );
    assert_eq!(restored.code, Some(0), "{restored:?}");
    assert_eq!(restored.line("applied"), Some("true"));
    let back = read_state(&e2e).unwrap();
    assert_eq!(back.generation(), state.generation() + 2);
    assert_eq!(
        back.record_by_key_id(v1.key_id()).unwrap().state(),
        SnapshotState::Retired
    );
    assert_eq!(read_checkpoint(&e2e), Checkpoint::for_state(&back));
    let not_removed = cli(&config, "restore-versions", &["--versions", "1"]);
    assert_eq!(not_removed.code, Some(4), "{not_removed:?}");

    // The provider starts on what the commands wrote, and the report agrees.
    e2e.start_plugin();
    let report = cli(&config, "rotation-plan", &["--output", "json"]);
    assert_eq!(report.code, Some(0), "{report:?}");
    assert_eq!(report.json()["activeTransitVersion"], 2);
    assert_eq!(e2e.stop_plugin().code(), Some(0));
    assert_no_secrets(
        &e2e,
        &back,
        &[&plan, &stale, &applied, &again, &restore_plan, &restored],
    );
}
