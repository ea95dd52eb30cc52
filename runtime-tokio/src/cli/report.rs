//! The report format shared by the diagnostic commands (`doctor`, `probe`, ...).
//!
//! Text: the report name, then one `[status] id: title - message` line per check, then a
//! `verdict: <verdict> (<n> pass, <n> warn, <n> fail, <n> skip)` line. JSON:
//! `{"name", "verdict", "summary": {"pass", "warn", "fail", "skip"}, "checks": [{"id", "title",
//! "status", "message", "details"?}]}` with two-space indentation; `details` is an object of
//! structured facts some checks add (fleet-check: hash, version, readiness).
//!
//! The verdict is `fail` when any check failed, else `warn` when any warned, else `pass` when
//! any passed, else `skip` (nothing could be checked). A report fails (exit 4) when any check
//! failed; warnings do not fail it; a skipped check is never a pass.

use serde::Serialize;

use super::{ExitCode, Output, out};

/// The outcome of one check.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check passed.
    Pass,
    /// Worth attention, not a failure.
    Warn,
    /// The check failed.
    Fail,
    /// Not run (a prerequisite failed or it does not apply).
    Skip,
}

impl CheckStatus {
    /// The status word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

/// One check of a report.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
pub struct Check {
    /// Stable check id, e.g. `config.load`.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Outcome.
    pub status: CheckStatus,
    /// Redacted detail; never secrets, never paths of secret files.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Structured facts behind the message, for scripts (JSON only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// A named list of checks.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Report {
    /// Report name, e.g. `doctor`.
    pub name: String,
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
}

/// How many checks ended in each status.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Summary {
    /// Passed checks.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failed checks.
    pub fail: usize,
    /// Checks not run.
    pub skip: usize,
}

/// The JSON shape of a report: name, verdict, summary, checks.
#[derive(Serialize)]
struct Wire<'a> {
    name: &'a str,
    verdict: &'static str,
    summary: Summary,
    checks: &'a [Check],
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            name: &self.name,
            verdict: self.verdict().as_str(),
            summary: self.summary(),
            checks: &self.checks,
        }
        .serialize(serializer)
    }
}

impl Report {
    /// An empty report.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            checks: Vec::new(),
        }
    }

    /// Adds a check.
    pub fn push(
        &mut self,
        id: impl Into<String>,
        title: impl Into<String>,
        status: CheckStatus,
        message: impl Into<String>,
    ) {
        self.checks.push(Check {
            id: id.into(),
            title: title.into(),
            status,
            message: message.into(),
            details: None,
        });
    }

    /// Adds a check with structured details.
    pub fn push_with_details(
        &mut self,
        id: impl Into<String>,
        title: impl Into<String>,
        status: CheckStatus,
        message: impl Into<String>,
        details: serde_json::Value,
    ) {
        self.push(id, title, status, message);
        if let Some(check) = self.checks.last_mut() {
            check.details = Some(details);
        }
    }

    /// Counts of each status.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for check in &self.checks {
            match check.status {
                CheckStatus::Pass => summary.pass += 1,
                CheckStatus::Warn => summary.warn += 1,
                CheckStatus::Fail => summary.fail += 1,
                CheckStatus::Skip => summary.skip += 1,
            }
        }
        summary
    }

    /// The overall outcome: the worst status, and `skip` only when nothing was checked.
    pub fn verdict(&self) -> CheckStatus {
        let summary = self.summary();
        if summary.fail > 0 {
            CheckStatus::Fail
        } else if summary.warn > 0 {
            CheckStatus::Warn
        } else if summary.pass > 0 {
            CheckStatus::Pass
        } else {
            CheckStatus::Skip
        }
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks
            .iter()
            .any(|check| check.status == CheckStatus::Fail)
    }

    /// Renders the report as text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.name);
        for check in &self.checks {
            out.push_str(&format!(
                "[{}] {}: {}",
                check.status.as_str(),
                check.id,
                check.title
            ));
            if !check.message.is_empty() {
                out.push_str(&format!(" - {}", check.message));
            }
            out.push('\n');
        }
        let summary = self.summary();
        out.push_str(&format!(
            "verdict: {} ({} pass, {} warn, {} fail, {} skip)\n",
            self.verdict().as_str(),
            summary.pass,
            summary.warn,
            summary.fail,
            summary.skip
        ));
        out
    }

    /// Prints the report in `output` format and returns the exit code (4 when a check failed).
    pub fn emit(&self, output: Output) -> ExitCode {
        let code = if self.failed() {
            ExitCode::CheckFailed
        } else {
            ExitCode::Success
        };
        match output {
            Output::Text => out::text_then(&self.to_text(), code),
            Output::Json => match serde_json::to_string_pretty(self) {
                Ok(json) => out::line_then(&json, code),
                Err(_) => ExitCode::Failure,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_follow_the_documented_shape_and_a_failure_fails_the_report() {
        let mut report = Report::new("doctor");
        report.push("config.load", "configuration loads", CheckStatus::Pass, "");
        report.push(
            "openbao.auth",
            "login succeeds",
            CheckStatus::Fail,
            "permission denied",
        );
        assert_eq!(
            report.to_text(),
            "doctor\n[pass] config.load: configuration loads\n\
             [fail] openbao.auth: login succeeds - permission denied\n\
             verdict: fail (1 pass, 0 warn, 1 fail, 0 skip)\n"
        );
        assert!(report.failed());
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["checks"][1]["status"], "fail");
        assert!(json["checks"][0].get("message").is_none());
        assert_eq!(json["verdict"], "fail");
        assert_eq!(json["summary"]["pass"], 1);
        assert_eq!(json["summary"]["fail"], 1);
    }

    #[test]
    fn the_verdict_is_the_worst_status_and_skip_only_when_nothing_was_checked() {
        let mut report = Report::new("r");
        assert_eq!(report.verdict(), CheckStatus::Skip);
        report.push("a", "a", CheckStatus::Skip, "");
        assert_eq!(report.verdict(), CheckStatus::Skip);
        report.push("b", "b", CheckStatus::Pass, "");
        assert_eq!(report.verdict(), CheckStatus::Pass);
        report.push("c", "c", CheckStatus::Warn, "");
        assert_eq!(report.verdict(), CheckStatus::Warn);
        report.push("d", "d", CheckStatus::Fail, "");
        assert_eq!(report.verdict(), CheckStatus::Fail);
    }
}
