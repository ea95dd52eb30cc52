//! gRPC interop over the Unix socket: the real plugin answers a gRPC C-core client (the PyPI
//! package `grpcio`, also what many health-check scripts use) whatever HTTP/2 `:authority` the
//! client sends: C-core's own choice for `unix://` targets (the percent-encoded socket path),
//! grpc-go's `localhost`, an empty one and the raw socket path.
//!
//! The client is `tests/interop/grpcio_client.py`, run by a Python from a virtualenv under
//! `<repo>/.work/` into which the test installs `grpcio` (pinned) when it is missing. Without
//! Python or grpcio the test fails under `CI=true` and says why elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2e_support::{E2e, repo_root};

/// The grpcio release the test installs (C-core inside).
const GRPCIO_VERSION: &str = "1.85.1";

/// Whether a missing tool fails the test instead of skipping it.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// `Ok(python)` of a virtualenv with grpcio installed, or why there is none.
fn python_with_grpcio() -> Result<PathBuf, String> {
    let venv = repo_root().join(".work/grpcio-venv");
    let python = venv.join("bin/python");
    let has_grpcio = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                &format!("import grpc, sys; sys.exit(grpc.__version__ != {GRPCIO_VERSION:?})"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if has_grpcio(&python) {
        return Ok(python);
    }
    if !python.exists() {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("python3 -m venv: {error}"))?;
        if !created.status.success() {
            return Err(format!(
                "python3 -m venv {} failed: {}",
                venv.display(),
                String::from_utf8_lossy(&created.stderr)
            ));
        }
    }
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            &format!("grpcio=={GRPCIO_VERSION}"),
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("pip install grpcio: {error}"))?;
    if !installed.status.success() || !has_grpcio(&python) {
        return Err(format!(
            "pip install grpcio=={GRPCIO_VERSION} failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        ));
    }
    Ok(python)
}

/// Runs the grpcio client against `socket` with `mode`; returns its JSON answer.
fn grpcio_call(python: &Path, socket: &Path, mode: &str) -> serde_json::Value {
    let script = repo_root().join("runtime-tokio/tests/interop/grpcio_client.py");
    // The script's own deadline is 10 s per call; `timeout` bounds the interpreter as a whole.
    let output = Command::new("timeout")
        .arg("60")
        .arg(python)
        .arg(&script)
        .arg(socket)
        .arg(mode)
        .stdin(Stdio::null())
        .output()
        .expect("run the grpcio client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| {
        panic!(
            "the grpcio client ({mode}) printed no JSON ({error}), exit {}: {stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn grpc_c_core_client_round_trips_status_encrypt_decrypt_with_every_common_authority() {
    let python = match python_with_grpcio() {
        Ok(python) => python,
        Err(why) if !in_ci() => {
            eprintln!("skipping: no Python with grpcio ({why}); CI=true makes this a failure");
            return;
        }
        Err(why) => panic!("no Python with grpcio under CI=true: {why}"),
    };
    let e2e = E2e::running();
    let mut key_ids = Vec::new();
    for mode in ["default", "localhost", "empty", "path"] {
        let answer = grpcio_call(&python, e2e.socket(), mode);
        assert!(
            answer.get("error").is_none(),
            "grpcio with the {mode} authority failed: {answer}"
        );
        let status = &answer["status"];
        assert_eq!(status["version"], "v2", "{mode}: {answer}");
        assert_eq!(status["healthz"], "ok", "{mode}: {answer}");
        let key_id = status["key_id"].as_str().unwrap().to_owned();
        assert!(!key_id.is_empty(), "{mode}: {answer}");
        assert_eq!(
            answer["encrypt"]["key_id"],
            key_id.as_str(),
            "{mode}: {answer}"
        );
        assert!(
            answer["encrypt"]["ciphertext_bytes"].as_u64().unwrap() > 0,
            "{mode}: {answer}"
        );
        assert_eq!(answer["roundtrip"], true, "{mode}: {answer}");
        key_ids.push(key_id);
    }
    key_ids.dedup();
    assert_eq!(key_ids.len(), 1, "one key_id throughout: {key_ids:?}");
}
