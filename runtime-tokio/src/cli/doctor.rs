//! `doctor` (being implemented).

use std::path::Path;

use super::{Cli, ExitCode, Output};

pub(super) fn run(_cli: &Cli, _encryption_config: Option<&Path>, _output: Output) -> ExitCode {
    eprintln!("doctor is not implemented in this build");
    ExitCode::Failure
}
