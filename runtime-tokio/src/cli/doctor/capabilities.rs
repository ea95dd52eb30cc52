//! `transit.capabilities`: the token holds what the provider needs and nothing that could
//! export, rotate, reconfigure, back up, restore or delete the key.
//!
//! One `sys/capabilities-self` call asks about every path below; an answer that leaves a path
//! out fails the check. `root` counts as every capability, `deny` as none. Messages show paths
//! as `<mount>/…/<key>` patterns, never the configured names.

use bao_kms_core::{TransitRequest, TransitResponse};

use super::{Outcome, fail, pass};
use crate::config::Config;
use crate::openbao::OpenBaoClient;
use crate::openbao::http::{escape_path_segment, normalize_mount_path};

/// What is checked on one path.
#[derive(Clone, Copy, Debug)]
struct Rule {
    /// The path below the mount, with `{key}` standing for the key name.
    pattern: &'static str,
    /// Capabilities that must be present.
    required: &'static [&'static str],
    /// Capabilities that must be absent.
    prohibited: Prohibited,
}

#[derive(Clone, Copy, Debug)]
enum Prohibited {
    /// These capabilities.
    Some(&'static [&'static str]),
    /// Any capability at all.
    Any,
}

const RULES: [Rule; 11] = [
    Rule {
        pattern: "keys/{key}",
        required: &["read"],
        prohibited: Prohibited::Some(&["create", "update", "patch", "delete", "sudo"]),
    },
    Rule {
        pattern: "encrypt/{key}",
        required: &["update"],
        // `create` lets encrypt upsert (create) a missing key.
        prohibited: Prohibited::Some(&["create", "sudo"]),
    },
    Rule {
        pattern: "decrypt/{key}",
        required: &["update"],
        prohibited: Prohibited::Some(&["sudo"]),
    },
    Rule {
        pattern: "config/keys",
        required: &["read"],
        prohibited: Prohibited::Some(&["create", "update", "patch", "delete", "sudo"]),
    },
    Rule {
        pattern: "keys/{key}/rotate",
        required: &[],
        prohibited: Prohibited::Some(&["update", "sudo"]),
    },
    Rule {
        pattern: "keys/{key}/config",
        required: &[],
        prohibited: Prohibited::Some(&["update"]),
    },
    Rule {
        pattern: "keys/{key}/trim",
        required: &[],
        prohibited: Prohibited::Some(&["update"]),
    },
    Rule {
        pattern: "export/encryption-key/{key}",
        required: &[],
        prohibited: Prohibited::Any,
    },
    Rule {
        pattern: "backup/{key}",
        required: &[],
        prohibited: Prohibited::Any,
    },
    Rule {
        pattern: "restore/{key}",
        required: &[],
        prohibited: Prohibited::Some(&["update"]),
    },
    Rule {
        pattern: "rewrap/{key}",
        required: &[],
        prohibited: Prohibited::Some(&["update"]),
    },
];

impl Rule {
    fn path(&self, mount: &str, key: &str) -> String {
        format!("{mount}/{}", self.pattern.replace("{key}", key))
    }

    fn shown(&self) -> String {
        format!("<mount>/{}", self.pattern.replace("{key}", "<key>"))
    }
}

/// Asks OpenBao for the token's capabilities on every checked path and judges the answer.
pub(super) fn check(client: &OpenBaoClient, config: &Config) -> Outcome {
    let identity = config.identity();
    // The same normalisation and escaping the Transit client applies to its own paths.
    let Some(mount) = normalize_mount_path(identity.transit_mount_path()) else {
        return fail("transit.mountPath is invalid");
    };
    let key = escape_path_segment(identity.transit_key_name());
    let (mount, key) = (mount.as_str(), key.as_str());
    let paths: Vec<String> = RULES.iter().map(|rule| rule.path(mount, key)).collect();
    let answer = client.execute(&TransitRequest::CapabilitiesSelf {
        paths: paths.clone(),
    });
    match answer {
        Ok(TransitResponse::Capabilities { paths: answered }) => {
            let lookup: Vec<Option<&Vec<String>>> =
                paths.iter().map(|path| answered.get(path)).collect();
            judge(&lookup)
        }
        Ok(_) => fail("unexpected answer to sys/capabilities-self"),
        Err(failure) => fail(format!(
            "sys/capabilities-self failed ({}); the answer may be incomplete",
            failure.class
        )),
    }
}

/// Judges the capabilities answered for each rule, in [`RULES`] order (`None`: not answered).
fn judge(answered: &[Option<&Vec<String>>]) -> Outcome {
    let mut missing = Vec::new();
    let mut prohibited = Vec::new();
    let mut unanswered = Vec::new();
    for (rule, capabilities) in RULES.iter().zip(answered) {
        let Some(capabilities) = capabilities else {
            unanswered.push(rule.shown());
            continue;
        };
        let root = capabilities.iter().any(|c| c == "root");
        let deny = capabilities.iter().any(|c| c == "deny");
        let has = |wanted: &str| root || (!deny && capabilities.iter().any(|c| c == wanted));
        for wanted in rule.required {
            if !has(wanted) {
                missing.push(format!("{} {wanted}", rule.shown()));
            }
        }
        let offending: Vec<&str> = match rule.prohibited {
            Prohibited::Some(names) => names.iter().copied().filter(|name| has(name)).collect(),
            Prohibited::Any if root => vec!["root"],
            Prohibited::Any if deny => Vec::new(),
            Prohibited::Any => capabilities.iter().map(String::as_str).collect(),
        };
        if !offending.is_empty() {
            prohibited.push(format!("{} {}", rule.shown(), offending.join("+")));
        }
    }
    if answered.len() != RULES.len() {
        unanswered.push("(answer has the wrong number of paths)".to_owned());
    }
    let mut problems = Vec::new();
    if !unanswered.is_empty() {
        problems.push(format!(
            "incomplete answer, nothing for: {}",
            unanswered.join(", ")
        ));
    }
    if !missing.is_empty() {
        problems.push(format!("missing: {}", missing.join(", ")));
    }
    if !prohibited.is_empty() {
        problems.push(format!("prohibited: {}", prohibited.join(", ")));
    }
    if problems.is_empty() {
        pass(format!(
            "required capabilities present; none of the prohibited ones on {} paths",
            RULES.len()
        ))
    } else {
        fail(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::report::CheckStatus;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    /// What the repository's `kms-plugin` policy grants.
    fn least_privilege() -> Vec<Vec<String>> {
        RULES
            .iter()
            .map(|rule| match rule.pattern {
                "keys/{key}" | "config/keys" => caps(&["read"]),
                "encrypt/{key}" | "decrypt/{key}" => caps(&["update"]),
                _ => caps(&["deny"]),
            })
            .collect()
    }

    fn judged(answers: &[Vec<String>]) -> Outcome {
        let lookup: Vec<Option<&Vec<String>>> = answers.iter().map(Some).collect();
        judge(&lookup)
    }

    #[test]
    fn the_shipped_policy_passes() {
        let (status, message) = judged(&least_privilege());
        assert_eq!(status, CheckStatus::Pass, "{message}");
    }

    #[test]
    fn a_root_token_and_encrypt_create_fail_with_the_capability_names() {
        let root = vec![caps(&["root"]); RULES.len()];
        let (status, message) = judged(&root);
        assert_eq!(status, CheckStatus::Fail);
        assert!(message.contains("<mount>/backup/<key> root"), "{message}");

        let mut upsert = least_privilege();
        upsert[1] = caps(&["create", "update"]);
        let (status, message) = judged(&upsert);
        assert_eq!(status, CheckStatus::Fail);
        assert_eq!(message, "prohibited: <mount>/encrypt/<key> create");
    }

    #[test]
    fn a_missing_capability_or_path_fails() {
        let mut narrow = least_privilege();
        narrow[2] = caps(&["deny"]);
        let (status, message) = judged(&narrow);
        assert_eq!(status, CheckStatus::Fail);
        assert_eq!(message, "missing: <mount>/decrypt/<key> update");

        let answers = least_privilege();
        let mut lookup: Vec<Option<&Vec<String>>> = answers.iter().map(Some).collect();
        lookup[7] = None;
        let (status, message) = judge(&lookup);
        assert_eq!(status, CheckStatus::Fail);
        assert!(message.contains("incomplete answer"), "{message}");
    }
}
