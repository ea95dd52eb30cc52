//! `transit.capabilities`: the token holds what the provider needs and nothing that could
//! export, rotate, reconfigure, back up, restore or delete the key.
//!
//! One `sys/capabilities-self` call asks about every path below; an answer that leaves a path
//! out fails the check. `root` counts as every capability, `deny` as none. Messages show paths
//! as `<mount>/…/<key>` patterns, never the configured names.

use bao_kms_core::capabilities::{self, CapabilityVerdict};
use bao_kms_core::{TransitRequest, TransitResponse};

use super::{Outcome, fail, pass};
use crate::config::Config;
use crate::openbao::OpenBaoClient;

/// Asks OpenBao for the token's capabilities on every checked path and judges the answer.
pub(super) fn check(client: &OpenBaoClient, config: &Config) -> Outcome {
    // The rule and the paths come from the core; this module only asks and words the answer.
    let paths = capabilities::checked_paths(config.identity());
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

/// Words the core's verdict on the answer (in `checked_paths` order; `None`: not answered).
fn judge(answered: &[Option<&Vec<String>>]) -> Outcome {
    let CapabilityVerdict {
        missing,
        prohibited,
        unanswered,
    } = capabilities::judge(answered);
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
            capabilities::checked_path_count()
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

    /// What the repository's `kms-plugin` policy grants, in `checked_paths` order.
    fn least_privilege() -> Vec<Vec<String>> {
        (0..capabilities::checked_path_count())
            .map(|index| match index {
                0 | 3 => caps(&["read"]),
                1 | 2 => caps(&["update"]),
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
        let root = vec![caps(&["root"]); capabilities::checked_path_count()];
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
