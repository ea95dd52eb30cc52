//! Exit codes, stable across releases.

/// A process exit code with its documented meaning.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ExitCode {
    /// 0: success.
    Success,
    /// 1: an unclassified error.
    Failure,
    /// 2: invalid usage (unknown command or flag, bad flag value).
    Usage,
    /// 3: the configuration cannot be loaded or is invalid.
    Config,
    /// 4: a diagnostic check failed.
    CheckFailed,
    /// 5: the provider failed at runtime (after its configuration was accepted).
    Runtime,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Config => 3,
            Self::CheckFailed => 4,
            Self::Runtime => 5,
        }
    }
}
