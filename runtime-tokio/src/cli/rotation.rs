//! `rotation-plan`, `verify-rotation`, `retire-versions`, `restore-versions` (being implemented).

use super::{Cli, ExitCode, Output};

pub(super) fn plan(_cli: &Cli, _output: Output, _verify: bool) -> ExitCode {
    eprintln!("rotation-plan is not implemented in this build");
    ExitCode::Failure
}

pub(super) fn retire(
    _cli: &Cli,
    _before: u32,
    _apply: bool,
    _expected: Option<&str>,
    _output: Output,
) -> ExitCode {
    eprintln!("retire-versions is not implemented in this build");
    ExitCode::Failure
}

pub(super) fn restore(
    _cli: &Cli,
    _versions: &[u32],
    _apply: bool,
    _expected: Option<&str>,
    _output: Output,
) -> ExitCode {
    eprintln!("restore-versions is not implemented in this build");
    ExitCode::Failure
}
