//! `policy openbao` (being implemented).

use super::{Cli, ExitCode};

pub(super) fn openbao(_cli: &Cli, _include_token_renewal: bool) -> ExitCode {
    eprintln!("policy openbao is not implemented in this build");
    ExitCode::Failure
}
