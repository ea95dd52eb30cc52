//! Why a registry file operation failed.

use std::io;
use std::path::{Path, PathBuf};

/// Why reading, writing or locking the registry files failed.
///
/// Messages name paths (local, operator-owned) and never file contents. Keep them out of
/// anything that reaches a gRPC client.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// `state.path` has no file name.
    #[error("state path {} has no file name", path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
    },
    /// A path that must not be a symbolic link is one.
    #[error("{} must not be a symbolic link", path.display())]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// The registry directory is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A registry file is not a regular file (a FIFO, a directory, a device...).
    #[error("{} must be a regular file, found a {kind}", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What was found instead.
        kind: &'static str,
    },
    /// A file or directory has permission bits it must not have.
    #[error(
        "{} has mode {mode:04o}; it must have none of the bits {forbidden:04o}",
        path.display()
    )]
    UnsafeMode {
        /// The path.
        path: PathBuf,
        /// The mode found (permission bits only).
        mode: u32,
        /// The bits that must be clear.
        forbidden: u32,
    },
    /// A file or directory is owned by another user than the effective user.
    #[error("{} is owned by uid {uid}, not by the effective uid {euid}", path.display())]
    WrongOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The process's effective uid.
        euid: u32,
    },
    /// The lock file has more than one link.
    #[error("{} must have exactly one link, found {links}", path.display())]
    Links {
        /// The path.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },
    /// A registry file is larger than [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES).
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// An earlier write to the same registry has not returned yet (a hung disk or a frozen
    /// filesystem); nothing was written.
    #[error("an earlier write of {} has not returned for {seconds} s; nothing was written", path.display())]
    WriteInProgress {
        /// The state file.
        path: PathBuf,
        /// How long the earlier write has been running.
        seconds: u64,
    },
    /// Another process (or another [`RegistryLock`](super::RegistryLock) in this one) holds the
    /// lock.
    #[error("key registry state is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done, such as `open` or `rename`.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

impl FileError {
    pub(super) fn io(action: &'static str, path: &Path, error: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    }
}
