//! `fleet-check`: do all control-plane nodes serve the same key?
//!
//! Every node's `/metrics` is scraped once (plain HTTP on the metrics listener, 5 s each) and
//! four series are read: the active key's hash (`openbao_kms_status_key_id_hash{hash}` at 1),
//! its Transit version (`openbao_kms_key_version`), the one-hot rotation state
//! (`openbao_kms_rotation_state{state}` at 1) and readiness (`openbao_kms_ready`). The report
//! has one `node.<n>` check per URL, in the order given, then `fleet.key_id_hash` (every node
//! reports one and the same hash) and `fleet.rotation` (a warning while any node has a
//! rotation pending; `skip` when no node answered, since nothing was seen). It fails (exit 4)
//! unless every node is reachable, ready and agrees.
//!
//! Every `node.<n>` check carries `details` in JSON: `url`, `reachable`, `keyIdHash`,
//! `keyVersion`, `rotationState` and `ready` (null where the node did not say), so scripts need
//! not parse the message.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::report::{CheckStatus, Report};
use super::{ExitCode, Output};

/// Time limit of one scrape, connection included.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest metrics body read.
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Longest label value shown in a message.
const MAX_SHOWN_CHARS: usize = 96;

const KEY_ID_HASH: &str = "openbao_kms_status_key_id_hash";
const KEY_VERSION: &str = "openbao_kms_key_version";
const ROTATION_STATE: &str = "openbao_kms_rotation_state";
const READY: &str = "openbao_kms_ready";

pub(super) fn run(metrics_urls: &[String], output: Output) -> ExitCode {
    let mut urls = Vec::with_capacity(metrics_urls.len());
    for raw in metrics_urls {
        match metrics_url(raw) {
            Ok(url) => urls.push(url),
            Err(reason) => {
                eprintln!("--metrics-url {raw:?}: {reason}");
                return ExitCode::Usage;
            }
        }
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(SCRAPE_TIMEOUT))
        .user_agent(concat!("bao-kms-provider/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let nodes: Vec<Scrape> = urls.iter().map(|url| scrape(&agent, url)).collect();
    report(&urls, &nodes).emit(output)
}

/// What one node's metrics said.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub(super) struct NodeMetrics {
    /// `hash` labels of `openbao_kms_status_key_id_hash` samples at 1.
    pub(super) hashes: Vec<String>,
    /// `openbao_kms_key_version`.
    pub(super) key_version: Option<String>,
    /// `state` label of the `openbao_kms_rotation_state` sample at 1.
    pub(super) rotation: Option<String>,
    /// `openbao_kms_ready` is 1.
    pub(super) ready: Option<bool>,
}

/// A scrape: the metrics, or why there are none.
type Scrape = Result<NodeMetrics, String>;

/// Checks a `--metrics-url` and adds `/metrics` when it names no path.
fn metrics_url(raw: &str) -> Result<String, &'static str> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))
        .ok_or("must be an http:// or https:// URL")?;
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("must name a host");
    }
    if rest.len() == host.len() || rest.len() == host.len() + 1 {
        let base = raw.trim_end_matches('/');
        return Ok(format!("{base}/metrics"));
    }
    Ok(raw.to_owned())
}

fn scrape(agent: &ureq::Agent, url: &str) -> Scrape {
    let mut response = agent
        .get(url)
        .header(
            "Accept",
            "application/openmetrics-text; version=1.0.0, text/plain; version=0.0.4",
        )
        .call()
        .map_err(|error| format!("unreachable: {}", clip(&error.to_string())))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("metrics answered HTTP {status}"));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()
        .map_err(|error| format!("metrics body unreadable: {}", clip(&error.to_string())))?;
    Ok(parse_metrics(&body))
}

/// Reads the four series from Prometheus or OpenMetrics text; other lines are ignored.
pub(super) fn parse_metrics(text: &str) -> NodeMetrics {
    let mut metrics = NodeMetrics::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        let is_one = sample.value == 1.0;
        match sample.name {
            KEY_ID_HASH if is_one => {
                if let Some(hash) = sample.label("hash") {
                    metrics.hashes.push(clip(hash));
                }
            }
            KEY_VERSION => metrics.key_version = Some(clip(sample.raw_value)),
            ROTATION_STATE if is_one => {
                metrics.rotation = sample.label("state").map(clip);
            }
            READY => metrics.ready = Some(is_one),
            _ => {}
        }
    }
    metrics.hashes.sort();
    metrics.hashes.dedup();
    metrics
}

/// One sample line: `name{labels} value [timestamp]`.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    raw_value: &'a str,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    let raw_value = rest.split_whitespace().next()?;
    let value = raw_value.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        raw_value,
        value,
    })
}

/// Parses `key="value",...}` and returns the labels and the text after the closing brace.
fn parse_labels(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let equals = text.find('=')?;
        let key = text[..equals].trim();
        let quoted = text[equals + 1..].trim_start();
        let mut chars = quoted.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let mut end = None;
        for (index, c) in chars {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, other) => {
                    value.push(other);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(index);
                    break;
                }
                (false, other) => value.push(other),
            }
        }
        let end = end?;
        labels.push((key, value));
        text = &quoted[end + 1..];
    }
}

/// Printable ASCII only, bounded, so a node cannot inject text into the report.
fn clip(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_SHOWN_CHARS)
        .collect();
    if text.chars().count() > MAX_SHOWN_CHARS {
        shown.push_str("...");
    }
    shown
}

/// The report for the scraped nodes, in URL order.
pub(super) fn report(urls: &[String], nodes: &[Scrape]) -> Report {
    let mut report = Report::new("fleet-check");
    for (index, (url, node)) in urls.iter().zip(nodes).enumerate() {
        let id = format!("node.{}", index + 1);
        let title = format!("metrics at {url}");
        let details = node_details(url, node);
        match node {
            Err(reason) => {
                report.push_with_details(id, title, CheckStatus::Fail, reason.clone(), details);
            }
            Ok(metrics) => {
                let summary = summary(metrics);
                let problem = if metrics.ready.is_none() {
                    Some("no openbao_kms_ready sample: is this a bao-kms-provider metrics URL?")
                } else if metrics.ready == Some(false) {
                    Some("the node is not ready")
                } else if metrics.hashes.is_empty() {
                    Some("the node reports no active key hash")
                } else if metrics.hashes.len() > 1 {
                    Some("the node reports several active key hashes")
                } else {
                    None
                };
                match problem {
                    Some(problem) => report.push_with_details(
                        id,
                        title,
                        CheckStatus::Fail,
                        format!("{summary}; {problem}"),
                        details,
                    ),
                    None => {
                        report.push_with_details(id, title, CheckStatus::Pass, summary, details);
                    }
                }
            }
        }
    }

    let mut by_hash: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut without = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let name = format!("node.{}", index + 1);
        match node {
            Ok(metrics) if metrics.hashes.len() == 1 => {
                for hash in &metrics.hashes {
                    by_hash.entry(hash.clone()).or_default().push(name.clone());
                }
            }
            Ok(_) | Err(_) => without.push(name),
        }
    }
    let title = "every node reports the same key_id hash";
    if by_hash.len() == 1 && without.is_empty() {
        let hash = by_hash.keys().next().cloned().unwrap_or_default();
        report.push(
            "fleet.key_id_hash",
            title,
            CheckStatus::Pass,
            format!("all {} nodes report hash={hash}", nodes.len()),
        );
    } else {
        let mut parts: Vec<String> = by_hash
            .iter()
            .map(|(hash, names)| format!("hash={hash} on {}", names.join(", ")))
            .collect();
        if !without.is_empty() {
            parts.push(format!("no single hash from {}", without.join(", ")));
        }
        let lead = if by_hash.len() > 1 {
            "nodes disagree: "
        } else {
            "agreement not shown: "
        };
        report.push(
            "fleet.key_id_hash",
            title,
            CheckStatus::Fail,
            format!("{lead}{}", parts.join("; ")),
        );
    }

    let pending: Vec<String> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| {
            matches!(node, Ok(metrics) if metrics.rotation.as_deref() == Some("pending"))
        })
        .map(|(index, _)| format!("node.{}", index + 1))
        .collect();
    let title = "no rotation pending on any node";
    let answered = nodes.iter().filter(|node| node.is_ok()).count();
    if answered == 0 {
        report.push(
            "fleet.rotation",
            title,
            CheckStatus::Skip,
            "no node answered: the rotation state is unknown",
        );
    } else if pending.is_empty() {
        let message = if answered < nodes.len() {
            format!(
                "none pending on the {answered} of {} nodes that answered",
                nodes.len()
            )
        } else {
            String::new()
        };
        report.push("fleet.rotation", title, CheckStatus::Pass, message);
    } else {
        report.push(
            "fleet.rotation",
            title,
            CheckStatus::Warn,
            format!(
                "rotation pending on {}: wait for promotion on every node before changing \
                 releases",
                pending.join(", ")
            ),
        );
    }
    report
}

/// The structured facts of one node, null where unknown.
fn node_details(url: &str, node: &Scrape) -> serde_json::Value {
    match node {
        Err(_) => json!({
            "url": url,
            "reachable": false,
            "keyIdHash": null,
            "keyVersion": null,
            "rotationState": null,
            "ready": null,
        }),
        Ok(metrics) => json!({
            "url": url,
            "reachable": true,
            "keyIdHash": match metrics.hashes.as_slice() {
                [one] => Some(one.as_str()),
                _ => None,
            },
            "keyVersion": metrics
                .key_version
                .as_deref()
                .and_then(|version| version.parse::<u64>().ok()),
            "rotationState": metrics.rotation,
            "ready": metrics.ready,
        }),
    }
}

fn summary(metrics: &NodeMetrics) -> String {
    let hash = if metrics.hashes.is_empty() {
        "none".to_owned()
    } else {
        metrics.hashes.join(",")
    };
    let ready = match metrics.ready {
        Some(true) => "1",
        Some(false) => "0",
        None => "unknown",
    };
    format!(
        "hash={hash} version={} rotation={} ready={ready}",
        metrics.key_version.as_deref().unwrap_or("unknown"),
        metrics.rotation.as_deref().unwrap_or("unknown"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_text_yields_the_hash_version_rotation_and_readiness() {
        let text = "# TYPE openbao_kms_status_key_id_hash gauge\n\
            openbao_kms_status_key_id_hash{hash=\"AbC-_1\"} 1\n\
            openbao_kms_key_version 3\n\
            openbao_kms_rotation_state{state=\"active\"} 1\n\
            openbao_kms_rotation_state{state=\"pending\"} 0\n\
            openbao_kms_ready 1\n# EOF\n";
        let metrics = parse_metrics(text);
        assert_eq!(metrics.hashes, vec!["AbC-_1".to_owned()]);
        assert_eq!(metrics.key_version.as_deref(), Some("3"));
        assert_eq!(metrics.rotation.as_deref(), Some("active"));
        assert_eq!(metrics.ready, Some(true));
    }

    #[test]
    fn escaped_label_values_and_timestamps_are_read() {
        let metrics = parse_metrics(
            "openbao_kms_rotation_state{a=\"x\\\"}\",state=\"pending\"} 1 1700000000\n",
        );
        assert_eq!(metrics.rotation.as_deref(), Some("pending"));
    }

    #[test]
    fn no_reachable_node_skips_the_rotation_check_and_nodes_carry_structured_details() {
        let urls = vec!["http://127.0.0.1:1/metrics".to_owned()];
        let report = report(&urls, &[Err("unreachable: refused".to_owned())]);
        let rotation = report.checks.iter().find(|c| c.id == "fleet.rotation");
        assert_eq!(rotation.map(|c| c.status), Some(CheckStatus::Skip));
        assert_eq!(report.verdict(), CheckStatus::Fail);
        let details = report.checks[0].details.clone().unwrap_or_default();
        assert_eq!(details["reachable"], false);
        assert!(details["keyIdHash"].is_null());

        let ok = parse_metrics(
            "openbao_kms_status_key_id_hash{hash=\"h1\"} 1\nopenbao_kms_key_version 7\n\
             openbao_kms_rotation_state{state=\"active\"} 1\nopenbao_kms_ready 1\n",
        );
        let report = super::report(&urls, &[Ok(ok)]);
        let details = report.checks[0].details.clone().unwrap_or_default();
        assert_eq!(details["keyIdHash"], "h1");
        assert_eq!(details["keyVersion"], 7);
        assert_eq!(details["rotationState"], "active");
        assert_eq!(details["ready"], true);
        assert_eq!(report.verdict(), CheckStatus::Pass);
    }

    #[test]
    fn a_url_without_a_path_gets_metrics_appended() {
        assert_eq!(
            metrics_url("http://127.0.0.1:8081").as_deref(),
            Ok("http://127.0.0.1:8081/metrics")
        );
        assert_eq!(
            metrics_url("http://127.0.0.1:8081/").as_deref(),
            Ok("http://127.0.0.1:8081/metrics")
        );
        assert_eq!(
            metrics_url("http://h:1/custom").as_deref(),
            Ok("http://h:1/custom")
        );
        assert!(metrics_url("ftp://h/").is_err());
    }
}
