//! `upgrade-check` (being implemented).

use std::path::Path;

use super::{Cli, ExitCode, Output};

pub(super) fn run(
    _cli: &Cli,
    _target_binary: Option<&Path>,
    _target_manifest: Option<&Path>,
    _output: Output,
) -> ExitCode {
    eprintln!("upgrade-check is not implemented in this build");
    ExitCode::Failure
}
