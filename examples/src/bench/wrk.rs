//! The raw Transit baseline: `wrk` (an HTTP load tool that shares no code with the plugin) runs
//! `scripts/bench/transit.lua` against OpenBao, and its `WRK_RESULT` line is read back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::now;
use super::report::Latency;

/// Where `wrk` and its script are, and what they talk to.
#[derive(Clone, Debug)]
pub(crate) struct WrkSetup {
    /// The `wrk` binary.
    pub(crate) binary: PathBuf,
    /// `scripts/bench/transit.lua`.
    pub(crate) script: PathBuf,
    /// OpenBao's base URL, e.g. `https://127.0.0.1:8200`.
    pub(crate) url: String,
    /// A file holding a token with the plugin's policy.
    pub(crate) token_file: PathBuf,
    /// The Transit mount path and key name, as the plugin's configuration names them.
    pub(crate) mount: String,
    pub(crate) key: String,
}

/// What each request carries.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// One Encrypt of one plaintext.
    Encrypt,
    /// One Decrypt of one ciphertext.
    Decrypt,
    /// One Decrypt of one ciphertext after this many milliseconds of think time per connection:
    /// how fast OpenBao answers a request that finds it idle.
    DecryptPaced(u64),
    /// One `batch_input` decrypt of this many ciphertexts.
    Batch(usize),
}

/// One `wrk` run.
#[derive(Clone, Debug)]
pub(crate) struct WrkRun {
    /// Answers that were a success with the expected body.
    pub(crate) good: u64,
    /// Everything else: error statuses, unexpected bodies, socket errors, timeouts.
    pub(crate) errors: u64,
    /// The first bad answer, for the log.
    pub(crate) first_error: Option<String>,
    /// `wrk`'s measured duration.
    pub(crate) wall: Duration,
    /// Latency of every answer (wrk's histogram).
    pub(crate) latency: Latency,
}

/// Runs `wrk` with `connections` keep-alive connections on one thread for `seconds`, each
/// request taking the next item of `corpus`.
pub(crate) fn run(
    setup: &WrkSetup,
    mode: Mode,
    corpus: &Path,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<WrkRun> {
    let (mode_name, items, think_ms) = match mode {
        Mode::Encrypt => ("encrypt", 1, 0),
        Mode::Decrypt => ("decrypt", 1, 0),
        Mode::DecryptPaced(think_ms) => ("decrypt", 1, think_ms),
        Mode::Batch(items) => ("batch", items, 0),
    };
    // One wrk thread: the load generator gets at most one of the machine's cores, like the
    // plugin's load generator (one tokio thread).
    let mut child = Command::new(&setup.binary)
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&setup.script)
        .arg(&setup.url)
        .arg("--")
        .arg(mode_name)
        .arg(corpus)
        .arg(&setup.token_file)
        .arg(&setup.mount)
        .arg(&setup.key)
        .arg(items.to_string())
        .arg(think_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", setup.binary.display()))?;
    // wrk stops itself after `seconds`; this deadline only guards against a hung run.
    let deadline = now() + Duration::from_secs(seconds + 30);
    loop {
        if child.try_wait().context("wait for wrk")?.is_some() {
            break;
        }
        if now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wrk did not finish within {} s", seconds + 30);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().context("read wrk's output")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse(&stdout)
}

/// Reads the `WRK_RESULT {json}` line the script prints when wrk is done.
fn parse(stdout: &str) -> anyhow::Result<WrkRun> {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("WRK_RESULT "))
        .context("wrk printed no WRK_RESULT line (wrong script?)")?;
    let value: Value = serde_json::from_str(line).context("wrk's WRK_RESULT is not JSON")?;
    let number = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_u64)
            .with_context(|| format!("WRK_RESULT has no {name}"))
    };
    let micros = |name: &str| number(name).map(Duration::from_micros);
    let good = number("good")?;
    let bad = number("bad")?;
    // Socket errors and timeouts get no answer, so the script's response() never sees them.
    let lost = number("connect_errors")?
        + number("read_errors")?
        + number("write_errors")?
        + number("timeouts")?;
    let first_error = value
        .get("first_bad")
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
        .or_else(|| (lost > 0).then(|| format!("{lost} socket errors or timeouts")));
    Ok(WrkRun {
        good,
        errors: bad + lost,
        first_error,
        wall: micros("duration_us")?,
        latency: Latency {
            p50: micros("p50_us")?,
            p90: micros("p90_us")?,
            p99: micros("p99_us")?,
            max: micros("max_us")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_is_parsed() {
        let stdout = "Running 5s test @ https://127.0.0.1:8200\n\
            WRK_RESULT {\"duration_us\":5000000,\"requests\":1003,\"good\":1000,\"bad\":3,\
            \"first_bad\":\"HTTP 400\",\"connect_errors\":0,\"read_errors\":1,\"write_errors\":0,\
            \"status_errors\":3,\"timeouts\":2,\"p50_us\":500,\"p90_us\":900,\"p99_us\":1500,\
            \"max_us\":9000}\n";
        let run = parse(stdout).expect("parses");
        assert_eq!(run.good, 1000);
        assert_eq!(run.errors, 6);
        assert_eq!(run.first_error.as_deref(), Some("HTTP 400"));
        assert_eq!(run.wall, Duration::from_secs(5));
        assert_eq!(run.latency.p50, Duration::from_micros(500));
        assert_eq!(run.latency.max, Duration::from_micros(9000));
        assert!(parse("no result here").is_err());
    }
}
