//! The report format shared by the diagnostic commands (`doctor`, `probe`, ...).
//!
//! Text: the report name, then one `[status] id: title - message` line per check. JSON:
//! `{"name", "checks": [{"id", "title", "status", "message"}]}` with two-space indentation.
//! A report fails (exit 4) when any check failed; warnings do not fail it; a skipped check is
//! never a pass.

use serde::Serialize;

use super::{ExitCode, Output};

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
}

/// A named list of checks.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Report {
    /// Report name, e.g. `doctor`.
    pub name: String,
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
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
        });
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
        out
    }

    /// Prints the report in `output` format and returns the exit code (4 when a check failed).
    pub fn emit(&self, output: Output) -> ExitCode {
        match output {
            Output::Text => print!("{}", self.to_text()),
            Output::Json => match serde_json::to_string_pretty(self) {
                Ok(json) => println!("{json}"),
                Err(_) => return ExitCode::Failure,
            },
        }
        if self.failed() {
            ExitCode::CheckFailed
        } else {
            ExitCode::Success
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
             [fail] openbao.auth: login succeeds - permission denied\n"
        );
        assert!(report.failed());
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["checks"][1]["status"], "fail");
        assert!(json["checks"][0].get("message").is_none());
    }
}
