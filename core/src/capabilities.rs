//! The least-privilege rule for the provider's OpenBao token: what it must hold on each Transit
//! path, and what it must not (anything that could export, rotate, reconfigure, back up,
//! restore, rewrap or delete the key, or let encrypt create one).
//!
//! `doctor` asks `sys/capabilities-self` about [`checked_paths`] and hands the answer to
//! [`judge`]; the rule lives here so every command applies the same one.

use crate::identity::IdentityScope;

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

/// The paths to ask `sys/capabilities-self` about, in the order [`judge`] expects them.
///
/// Key names are OpenBao names (`[A-Za-z0-9_.-]`), so they need no escaping in a path.
pub fn checked_paths(scope: &IdentityScope) -> Vec<String> {
    let (mount, key) = (scope.transit_mount_path(), scope.transit_key_name());
    RULES.iter().map(|rule| rule.path(mount, key)).collect()
}

/// How many paths are checked.
pub fn checked_path_count() -> usize {
    RULES.len()
}

/// What is wrong with a token's capabilities; every list empty means least privilege.
///
/// Entries name paths as `<mount>/…/<key>` patterns, never the configured names.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct CapabilityVerdict {
    /// `"<path> <capability>"` for each required capability that is absent.
    pub missing: Vec<String>,
    /// `"<path> <cap>+<cap>"` for each path holding prohibited capabilities.
    pub prohibited: Vec<String>,
    /// Paths the answer left out (an incomplete answer is never a pass).
    pub unanswered: Vec<String>,
}

impl CapabilityVerdict {
    /// Whether the token is exactly as privileged as it should be.
    pub fn is_least_privilege(&self) -> bool {
        self.missing.is_empty() && self.prohibited.is_empty() && self.unanswered.is_empty()
    }
}

/// Judges the capabilities answered for each path of [`checked_paths`], in that order
/// (`None`: not answered). `root` counts as every capability, `deny` as none.
pub fn judge(answered: &[Option<&Vec<String>>]) -> CapabilityVerdict {
    let mut verdict = CapabilityVerdict::default();
    for (rule, capabilities) in RULES.iter().zip(answered) {
        let Some(capabilities) = capabilities else {
            verdict.unanswered.push(rule.shown());
            continue;
        };
        let root = capabilities.iter().any(|c| c == "root");
        let deny = capabilities.iter().any(|c| c == "deny");
        let has = |wanted: &str| root || (!deny && capabilities.iter().any(|c| c == wanted));
        for wanted in rule.required {
            if !has(wanted) {
                verdict.missing.push(format!("{} {wanted}", rule.shown()));
            }
        }
        let offending: Vec<&str> = match rule.prohibited {
            Prohibited::Some(names) => names.iter().copied().filter(|name| has(name)).collect(),
            Prohibited::Any if root => vec!["root"],
            Prohibited::Any if deny => Vec::new(),
            Prohibited::Any => capabilities.iter().map(String::as_str).collect(),
        };
        if !offending.is_empty() {
            verdict
                .prohibited
                .push(format!("{} {}", rule.shown(), offending.join("+")));
        }
    }
    if answered.len() != RULES.len() {
        verdict
            .unanswered
            .push("(answer has the wrong number of paths)".to_owned());
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn judged(answers: &[Vec<String>]) -> CapabilityVerdict {
        let lookup: Vec<Option<&Vec<String>>> = answers.iter().map(Some).collect();
        judge(&lookup)
    }

    #[test]
    fn the_shipped_policy_passes() {
        assert!(judged(&least_privilege()).is_least_privilege());
    }

    #[test]
    fn a_root_token_and_encrypt_create_are_prohibited_with_the_capability_names() {
        let root = vec![caps(&["root"]); RULES.len()];
        let verdict = judged(&root);
        assert!(
            verdict
                .prohibited
                .contains(&"<mount>/backup/<key> root".to_owned())
        );

        let mut upsert = least_privilege();
        upsert[1] = caps(&["create", "update"]);
        let verdict = judged(&upsert);
        assert_eq!(verdict.prohibited, ["<mount>/encrypt/<key> create"]);
        assert!(verdict.missing.is_empty() && verdict.unanswered.is_empty());
    }

    #[test]
    fn a_missing_capability_or_path_fails() {
        let mut narrow = least_privilege();
        narrow[2] = caps(&["deny"]);
        assert_eq!(judged(&narrow).missing, ["<mount>/decrypt/<key> update"]);

        let answers = least_privilege();
        let mut lookup: Vec<Option<&Vec<String>>> = answers.iter().map(Some).collect();
        lookup[7] = None;
        assert_eq!(
            judge(&lookup).unanswered,
            ["<mount>/export/encryption-key/<key>"]
        );
    }
}
