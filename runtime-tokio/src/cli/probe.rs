//! `probe` (being implemented).

use std::path::Path;

use super::{ExitCode, Output};

pub(super) fn run(
    _socket: &Path,
    _timeout: &str,
    _expected_key_id: Option<&str>,
    _output: Output,
) -> ExitCode {
    eprintln!("probe is not implemented in this build");
    ExitCode::Failure
}
