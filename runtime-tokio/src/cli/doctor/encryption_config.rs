//! `kubernetes.encryption_config`: does the apiserver's EncryptionConfiguration point at this
//! provider?
//!
//! The file usually holds secrets of other providers (`aescbc`, `aesgcm`, `secretbox` keys), so
//! neither its path nor any of its values except the KMS providers' names, API versions and
//! endpoints ever appear in a message; parse errors report a line and column only.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use serde_norway::Value;

use super::{Outcome, fail, pass, warn};
use crate::config::{format_duration, parse_duration};

/// Largest EncryptionConfiguration read.
const MAX_BYTES: u64 = 1024 * 1024;

const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const KIND: &str = "EncryptionConfiguration";
/// kube-apiserver's KMS `timeout` when the provider entry sets none.
const DEFAULT_KMS_TIMEOUT: Duration = Duration::from_secs(3);

/// What the EncryptionConfiguration must agree with.
pub(super) struct Expected<'a> {
    /// `transit.keyIdScope.providerName`.
    pub(super) provider_name: &'a str,
    /// `unix://` + `server.socketPath`.
    pub(super) endpoint: String,
    /// `openbao.timeout`: kube-apiserver must wait longer than one OpenBao call may take, or
    /// it gives up on calls that would have succeeded.
    pub(super) openbao_timeout: Duration,
}

/// Reads and checks the file at `path` against the configured provider name, socket and timeout.
pub(super) fn check(path: &Path, expected: &Expected<'_>) -> Outcome {
    let text = match read(path) {
        Ok(text) => text,
        Err(reason) => return fail(format!("the --encryption-config file {reason}")),
    };
    evaluate(&text, expected)
}

fn read(path: &Path) -> Result<String, &'static str> {
    let file = File::open(path).map_err(|error| {
        let kind = error.kind();
        if kind == std::io::ErrorKind::NotFound {
            "does not exist"
        } else if kind == std::io::ErrorKind::PermissionDenied {
            "is not readable (permission denied)"
        } else {
            "cannot be opened"
        }
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| "cannot be read")?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err("is larger than 1 MiB");
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8")
}

/// Checks EncryptionConfiguration text: exactly what `check` does, without the file.
fn evaluate(text: &str, expected: &Expected<'_>) -> Outcome {
    let provider_name = expected.provider_name;
    let endpoint = expected.endpoint.as_str();
    let document: Value = match serde_norway::from_str(text) {
        Ok(document) => document,
        // The decoder's message may quote the offending text: report its position only.
        Err(error) => {
            return fail(match error.location() {
                Some(at) => format!(
                    "not valid YAML (line {}, column {})",
                    at.line(),
                    at.column()
                ),
                None => "not valid YAML".to_owned(),
            });
        }
    };
    let api_version = document.get("apiVersion").and_then(Value::as_str);
    let kind = document.get("kind").and_then(Value::as_str);
    if api_version != Some(API_VERSION) || kind != Some(KIND) {
        return fail(format!(
            "not an {KIND} of apiVersion {API_VERSION} (apiVersion and kind must match)"
        ));
    }
    let Some(resources) = document.get("resources").and_then(Value::as_sequence) else {
        return fail("has no resources list");
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut found = Vec::new();
    let mut other_kms = Vec::new();
    for (r, resource) in resources.iter().enumerate() {
        let covers = resource
            .get("resources")
            .and_then(Value::as_sequence)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let providers = resource
            .get("providers")
            .and_then(Value::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (p, provider) in providers.iter().enumerate() {
            let Some(kms) = provider.get("kms") else {
                continue;
            };
            let name = kms.get("name").and_then(Value::as_str).unwrap_or_default();
            if name != provider_name {
                other_kms.push(name.to_owned());
                continue;
            }
            let at = format!("resources[{r}].providers[{p}]");
            found.push(format!("{at} ({covers}, position {})", p + 1));
            // Kubernetes defaults an absent KMS apiVersion to v1.
            let version = kms
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("v1");
            if version != "v2" {
                problems.push(format!("{at}: kms apiVersion is {version}, must be v2"));
            }
            match kms.get("endpoint").and_then(Value::as_str) {
                Some(actual) if actual == endpoint => {}
                Some(actual) => problems.push(format!(
                    "{at}: endpoint is {actual}, server.socketPath needs {endpoint}"
                )),
                None => problems.push(format!("{at}: no endpoint, expected {endpoint}")),
            }
            if let Some(problem) = timeout_problem(kms, expected.openbao_timeout) {
                problems.push(format!("{at}: {problem}"));
            }
            let identity_after = providers
                .iter()
                .skip(p + 1)
                .any(|later| later.get("identity").is_some());
            if identity_after {
                warnings.push(format!(
                    "{at}: an identity provider follows it, so unencrypted data stays readable; \
                     remove it once every object is rewritten"
                ));
            }
        }
    }
    if found.is_empty() {
        other_kms.sort();
        other_kms.dedup();
        let others = if other_kms.is_empty() {
            "none".to_owned()
        } else {
            other_kms.join(", ")
        };
        return fail(format!(
            "no kms provider named {provider_name} (transit.keyIdScope.providerName); kms \
             providers found: {others}"
        ));
    }
    if !problems.is_empty() {
        return fail(problems.join("; "));
    }
    let summary = format!(
        "kms v2 provider {provider_name} at {endpoint}: {}",
        found.join(", ")
    );
    if warnings.is_empty() {
        pass(summary)
    } else {
        warn(format!("{summary}; {}", warnings.join("; ")))
    }
}

/// The provider entry's `timeout` (Go duration, default 3s) must exceed `openbao.timeout`.
fn timeout_problem(kms: &Value, openbao_timeout: Duration) -> Option<String> {
    let timeout = match kms.get("timeout") {
        None => DEFAULT_KMS_TIMEOUT,
        Some(value) => match value.as_str().map(parse_duration) {
            Some(Ok(timeout)) => timeout,
            Some(Err(_)) | None => {
                return Some("timeout is not a duration such as 10s".to_owned());
            }
        },
    };
    (timeout <= openbao_timeout).then(|| {
        format!(
            "timeout is {} (kube-apiserver's default is 3s when unset), which does not exceed \
             openbao.timeout {}: kube-apiserver would abandon calls OpenBao may still answer; \
             raise it above openbao.timeout",
            format_duration(timeout),
            format_duration(openbao_timeout)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::report::CheckStatus;

    const ENDPOINT: &str = "unix:///run/openbao-kms/kms.sock";
    const SECRET: &str = "c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcy0xMjM0NTY=";

    fn config(kms: &str, tail: &str) -> String {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
             - resources: [secrets]\n  providers:\n  - kms:\n{kms}\n{tail}"
        )
    }

    fn wanted(name: &str) -> Expected<'_> {
        Expected {
            provider_name: name,
            endpoint: ENDPOINT.to_owned(),
            openbao_timeout: Duration::from_secs(2),
        }
    }

    fn kms(name: &str, version: &str, endpoint: &str) -> String {
        format!(
            "      apiVersion: {version}\n      name: {name}\n      endpoint: {endpoint}\n      \
             timeout: 3s"
        )
    }

    fn aescbc() -> String {
        format!("  - aescbc:\n      keys:\n      - name: key1\n        secret: {SECRET}\n")
    }

    #[test]
    fn a_matching_v2_provider_passes_even_with_other_providers_after_it() {
        let text = config(&kms("kms-a", "v2", ENDPOINT), &aescbc());
        let (status, message) = evaluate(&text, &wanted("kms-a"));
        assert_eq!(status, CheckStatus::Pass, "{message}");
        assert!(!message.contains(SECRET));
    }

    #[test]
    fn an_identity_fallback_after_the_provider_warns() {
        let text = config(&kms("kms-a", "v2", ENDPOINT), "  - identity: {}\n");
        let (status, message) = evaluate(&text, &wanted("kms-a"));
        assert_eq!(status, CheckStatus::Warn, "{message}");
        assert!(message.contains("identity"), "{message}");
    }

    #[test]
    fn wrong_name_version_or_endpoint_fails_without_echoing_secrets() {
        let cases = [
            (kms("kms-b", "v2", ENDPOINT), "no kms provider named kms-a"),
            (kms("kms-a", "v1", ENDPOINT), "must be v2"),
            (kms("kms-a", "v2", "unix:///tmp/other.sock"), "endpoint is"),
        ];
        for (provider, expected) in cases {
            let text = config(&provider, &aescbc());
            let (status, message) = evaluate(&text, &wanted("kms-a"));
            assert_eq!(status, CheckStatus::Fail, "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains(SECRET), "{message}");
        }
    }

    #[test]
    fn parse_errors_report_a_position_only() {
        let text = format!("apiVersion: [\nsecret: {SECRET}\n  bad: : :");
        let (status, message) = evaluate(&text, &wanted("kms-a"));
        assert_eq!(status, CheckStatus::Fail);
        assert!(!message.contains(SECRET), "{message}");
        let other_kind = "apiVersion: v1\nkind: ConfigMap\n";
        assert_eq!(evaluate(other_kind, &wanted("kms-a")).0, CheckStatus::Fail);
    }

    #[test]
    fn a_kms_timeout_not_above_openbao_timeout_fails_and_an_unset_one_counts_as_3s() {
        let entry = |timeout: &str| {
            format!("      apiVersion: v2\n      name: kms-a\n      endpoint: {ENDPOINT}{timeout}")
        };
        let cases = [
            (
                "\n      timeout: 3s",
                Duration::from_secs(2),
                CheckStatus::Pass,
            ),
            (
                "\n      timeout: 5s",
                Duration::from_secs(5),
                CheckStatus::Fail,
            ),
            (
                "\n      timeout: 4s",
                Duration::from_secs(5),
                CheckStatus::Fail,
            ),
            ("", Duration::from_secs(2), CheckStatus::Pass),
            ("", Duration::from_secs(3), CheckStatus::Fail),
            (
                "\n      timeout: soon",
                Duration::from_secs(2),
                CheckStatus::Fail,
            ),
        ];
        for (timeout, openbao_timeout, status) in cases {
            let text = config(&entry(timeout), "");
            let mut want = wanted("kms-a");
            want.openbao_timeout = openbao_timeout;
            let (actual, message) = evaluate(&text, &want);
            assert_eq!(
                actual, status,
                "{timeout:?} vs {openbao_timeout:?}: {message}"
            );
            if status == CheckStatus::Fail {
                assert!(message.contains("timeout"), "{message}");
            }
        }
    }
}
