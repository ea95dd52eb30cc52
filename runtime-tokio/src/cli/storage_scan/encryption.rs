//! Which resources an EncryptionConfiguration encrypts: those whose first provider (the one
//! kube-apiserver writes with) is not `identity`.
//!
//! The file holds other providers' keys, so nothing of it but resource names is kept, and a
//! parse error reports its position only.

use std::io::Read as _;
use std::path::Path;

use serde_norway::Value;

/// Largest file read.
const MAX_BYTES: u64 = 1024 * 1024;

/// The resource names (`secrets`, `deployments.apps`, `*.*`, ...) written encrypted.
pub(super) fn encrypted_resources(path: &Path) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(path).map_err(|_| "cannot be opened".to_owned())?;
    let mut text = String::new();
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|_| "cannot be read as UTF-8".to_owned())?;
    parse(&text)
}

fn parse(text: &str) -> Result<Vec<String>, String> {
    let document: Value = serde_norway::from_str(text).map_err(|error| match error.location() {
        Some(at) => format!(
            "is not valid YAML (line {}, column {})",
            at.line(),
            at.column()
        ),
        None => "is not valid YAML".to_owned(),
    })?;
    let Some(entries) = document.get("resources").and_then(Value::as_sequence) else {
        return Err("has no resources list".to_owned());
    };
    let mut out = Vec::new();
    for entry in entries {
        let first_is_identity = entry
            .get("providers")
            .and_then(Value::as_sequence)
            .and_then(|providers| providers.first())
            .is_none_or(|provider| provider.get("identity").is_some());
        if first_is_identity {
            continue;
        }
        let names = entry.get("resources").and_then(Value::as_sequence);
        out.extend(
            names
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned),
        );
    }
    Ok(out)
}

/// Whether a scanned resource type (`secrets`, `widgets.example.com` as
/// [`bao_kms_core::storage_scan::resource_type`] names them) is among `encrypted`.
pub(super) fn covers(encrypted: &[String], resource: &str) -> bool {
    encrypted.iter().any(|name| {
        name == "*.*"
            || name == resource
            // `deployments.apps` is stored under `/registry/deployments/`.
            || name.split('.').next() == Some(resource)
            // `*.` is every resource of the core group (stored without a group segment).
            || (name == "*." && !resource.contains('.'))
            || name
                .strip_prefix("*.")
                .is_some_and(|group| !group.is_empty() && resource.ends_with(&format!(".{group}")))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resources_whose_first_provider_encrypts_are_listed_and_matched() {
        let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
                    resources:\n- resources: [secrets, deployments.apps]\n  providers:\n  \
                    - kms: {name: bao-kms, apiVersion: v2}\n  - identity: {}\n\
                    - resources: [configmaps]\n  providers:\n  - identity: {}\n";
        let encrypted = parse(text).unwrap();
        assert_eq!(encrypted, ["secrets", "deployments.apps"]);
        assert!(covers(&encrypted, "secrets"));
        assert!(covers(&encrypted, "deployments"));
        assert!(!covers(&encrypted, "configmaps"));
        assert!(covers(&["*.*".to_owned()], "widgets.example.com"));
        assert!(covers(&["*.example.com".to_owned()], "widgets.example.com"));
        assert!(!covers(&["*.".to_owned()], "widgets.example.com"));
        assert!(parse("resources: 3").is_err());
    }
}
