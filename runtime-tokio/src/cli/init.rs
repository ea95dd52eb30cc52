//! `init` (being implemented).

use std::path::Path;

use super::{ExitCode, InitModel};

/// The arguments of `init`.
#[derive(Debug)]
pub(super) struct InitArgs<'a> {
    pub(super) values: &'a Path,
    pub(super) out: &'a Path,
    pub(super) model: InitModel,
    pub(super) new_key: bool,
    pub(super) policy_name: Option<&'a str>,
    pub(super) image: Option<&'a str>,
    pub(super) socket_gid: Option<u32>,
}

pub(super) fn run(_args: &InitArgs<'_>) -> ExitCode {
    eprintln!("init is not implemented in this build");
    ExitCode::Failure
}
