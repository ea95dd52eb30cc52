//! `fleet-check` (being implemented).

use super::{ExitCode, Output};

pub(super) fn run(_metrics_urls: &[String], _output: Output) -> ExitCode {
    eprintln!("fleet-check is not implemented in this build");
    ExitCode::Failure
}
