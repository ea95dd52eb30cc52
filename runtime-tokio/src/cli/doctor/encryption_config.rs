//! `kubernetes.encryption_config`: does the apiserver's EncryptionConfiguration point at this
//! provider?
//!
//! The file usually holds secrets of other providers (`aescbc`, `aesgcm`, `secretbox` keys), so
//! neither its path nor any of its values except the KMS providers' names, API versions and
//! endpoints ever appear in a message; parse errors report a line and column only.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use serde_norway::Value;

use super::{Outcome, fail, pass, warn};

/// Largest EncryptionConfiguration read.
const MAX_BYTES: u64 = 1024 * 1024;

const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const KIND: &str = "EncryptionConfiguration";

/// Reads and checks the file at `path` against the configured provider name and socket.
pub(super) fn check(path: &Path, provider_name: &str, socket_path: &Path) -> Outcome {
    let text = match read(path) {
        Ok(text) => text,
        Err(reason) => return fail(format!("the --encryption-config file {reason}")),
    };
    let endpoint = format!("unix://{}", socket_path.display());
    evaluate(&text, provider_name, &endpoint)
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
fn evaluate(text: &str, provider_name: &str, endpoint: &str) -> Outcome {
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
        let (status, message) = evaluate(&text, "kms-a", ENDPOINT);
        assert_eq!(status, CheckStatus::Pass, "{message}");
        assert!(!message.contains(SECRET));
    }

    #[test]
    fn an_identity_fallback_after_the_provider_warns() {
        let text = config(&kms("kms-a", "v2", ENDPOINT), "  - identity: {}\n");
        let (status, message) = evaluate(&text, "kms-a", ENDPOINT);
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
            let (status, message) = evaluate(&text, "kms-a", ENDPOINT);
            assert_eq!(status, CheckStatus::Fail, "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains(SECRET), "{message}");
        }
    }

    #[test]
    fn parse_errors_report_a_position_only() {
        let text = format!("apiVersion: [\nsecret: {SECRET}\n  bad: : :");
        let (status, message) = evaluate(&text, "kms-a", ENDPOINT);
        assert_eq!(status, CheckStatus::Fail);
        assert!(!message.contains(SECRET), "{message}");
        let other_kind = "apiVersion: v1\nkind: ConfigMap\n";
        assert_eq!(evaluate(other_kind, "kms-a", ENDPOINT).0, CheckStatus::Fail);
    }
}
