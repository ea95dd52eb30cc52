//! Registry files on disk: the state file, its checkpoint and the lock beside them.
//!
//! The core produces and checks the bytes; this module only moves them between memory and disk,
//! safely:
//!
//! - reads open the parent directory with `O_DIRECTORY | O_NOFOLLOW`, check it, and open each
//!   file relative to it with `O_NOFOLLOW | O_NONBLOCK`, so a symbolic link cannot redirect a
//!   read and a FIFO put in place of a file cannot hang it; a file must be regular, with none of
//!   the mode bits `0137`, and at most [`MAX_FILE_BYTES`] long;
//! - writes are atomic and durable: the state first, then the checkpoint, each through a
//!   temporary file `.<name>.tmp` in the same directory that is created exclusively with mode
//!   `0640`, synced, renamed over the target, and followed by a sync of the directory;
//! - [`RegistryLock`] holds an exclusive `flock` on `<state>.lock` for as long as it lives.
//!
//! Everything here is blocking std code; the runtime calls it through `spawn_blocking`.
//! Error messages name paths (the operator owns them) but never file contents; keep them out of
//! anything a gRPC client can see.

mod error;
mod lock;
mod read;
mod write;

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

pub use error::FileError;
pub use lock::RegistryLock;
pub use read::read_stored;
pub use write::write_registry;

/// The largest state or checkpoint file [`read_stored`] accepts and [`write_registry`] writes: 4 MiB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Mode bits a state or checkpoint file must not have (so at most `0640`).
pub const FILE_FORBIDDEN_BITS: u32 = 0o137;

/// Mode bits the directory holding the registry files must not have: group or world write.
pub const DIR_FORBIDDEN_BITS: u32 = 0o022;

/// Mode bits the lock file must not have: anything for group or others.
pub const LOCK_FORBIDDEN_BITS: u32 = 0o077;

/// The mode the state and checkpoint files are written with.
pub const FILE_MODE: u32 = 0o640;

/// The mode a new lock file is created with.
pub const LOCK_MODE: u32 = 0o600;

/// The paths of the registry files, all derived from `state.path`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RegistryPaths {
    dir: PathBuf,
    state: Entry,
    checkpoint: Entry,
    lock: Entry,
    state_temp: Entry,
    checkpoint_temp: Entry,
}

/// One file in the registry directory: its name (for `*at` calls) and full path (for messages).
#[derive(Clone, Debug, Eq, PartialEq)]
struct Entry {
    name: OsString,
    path: PathBuf,
}

impl Entry {
    fn new(dir: &Path, name: OsString) -> Self {
        let path = dir.join(&name);
        Self { name, path }
    }

    fn name(&self) -> &OsStr {
        &self.name
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl RegistryPaths {
    /// Derives the paths from the state file's path: the checkpoint `<path>.checkpoint`, the
    /// lock `<path>.lock`, and the temporary files `.<name>.tmp` in the same directory.
    ///
    /// Fails when the path has no file name (such as `/` or a path ending in `..`).
    pub fn new(state_path: &Path) -> Result<Self, FileError> {
        let Some(name) = state_path.file_name() else {
            return Err(FileError::InvalidPath {
                path: state_path.to_path_buf(),
            });
        };
        let dir = match state_path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            Some(_) | None => PathBuf::from("."),
        };
        let with_suffix = |suffix: &str| {
            let mut joined = name.to_os_string();
            joined.push(suffix);
            joined
        };
        let temp_of = |file: &OsStr| {
            let mut joined = OsString::from(".");
            joined.push(file);
            joined.push(".tmp");
            joined
        };
        let checkpoint = with_suffix(".checkpoint");
        Ok(Self {
            state: Entry::new(&dir, name.to_os_string()),
            lock: Entry::new(&dir, with_suffix(".lock")),
            state_temp: Entry::new(&dir, temp_of(name)),
            checkpoint_temp: Entry::new(&dir, temp_of(&checkpoint)),
            checkpoint: Entry::new(&dir, checkpoint),
            dir,
        })
    }

    /// The directory holding every registry file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file.
    pub fn state(&self) -> &Path {
        self.state.path()
    }

    /// The checkpoint file, `<state>.checkpoint`.
    pub fn checkpoint(&self) -> &Path {
        self.checkpoint.path()
    }

    /// The lock file, `<state>.lock`.
    pub fn lock(&self) -> &Path {
        self.lock.path()
    }

    /// The temporary file the state is written to before it is renamed, `.<state name>.tmp`.
    pub fn state_temp(&self) -> &Path {
        self.state_temp.path()
    }

    /// The temporary file the checkpoint is written to before it is renamed.
    pub fn checkpoint_temp(&self) -> &Path {
        self.checkpoint_temp.path()
    }
}

/// Checks the directory that holds the state file at `state_path` (the state path, not the
/// directory): it exists, is a directory and not a symbolic link, is not group- or
/// world-writable, and is owned by the effective user. `serve` calls it before it starts.
pub fn check_state_parent(state_path: &Path) -> Result<(), FileError> {
    let paths = RegistryPaths::new(state_path)?;
    open_dir(paths.dir(), DirCheck::OwnedByEuid).map(drop)
}

/// What [`open_dir`] checks beyond type and mode.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum DirCheck {
    /// Type and mode only.
    Mode,
    /// Also the owner: the effective user.
    OwnedByEuid,
}

/// Opens a directory without following a final symbolic link and checks it.
fn open_dir(dir: &Path, check: DirCheck) -> Result<OwnedFd, FileError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(errno) if errno == Errno::LOOP => {
            return Err(FileError::Symlink {
                path: dir.to_path_buf(),
            });
        }
        Err(errno) if errno == Errno::NOTDIR => {
            // `O_DIRECTORY | O_NOFOLLOW` on a symbolic link to a directory fails with either
            // error depending on the kernel; tell the two cases apart for the message.
            let is_symlink = std::fs::symlink_metadata(dir)
                .map(|metadata| metadata.file_type().is_symlink())
                .unwrap_or(false);
            return Err(if is_symlink {
                FileError::Symlink {
                    path: dir.to_path_buf(),
                }
            } else {
                FileError::NotADirectory {
                    path: dir.to_path_buf(),
                }
            });
        }
        Err(errno) => return Err(FileError::io("open directory", dir, errno.into())),
    };
    let file = File::from(fd);
    let metadata = file
        .metadata()
        .map_err(|error| FileError::io("stat directory", dir, error))?;
    if !metadata.is_dir() {
        return Err(FileError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    check_mode(dir, &metadata, DIR_FORBIDDEN_BITS)?;
    if check == DirCheck::OwnedByEuid {
        check_owner(dir, &metadata)?;
    }
    Ok(file.into())
}

fn check_mode(path: &Path, metadata: &Metadata, forbidden: u32) -> Result<(), FileError> {
    let mode = metadata.mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(FileError::UnsafeMode {
            path: path.to_path_buf(),
            mode,
            forbidden,
        });
    }
    Ok(())
}

fn check_owner(path: &Path, metadata: &Metadata) -> Result<(), FileError> {
    let euid = rustix::process::geteuid().as_raw();
    if metadata.uid() != euid {
        return Err(FileError::WrongOwner {
            path: path.to_path_buf(),
            uid: metadata.uid(),
            euid,
        });
    }
    Ok(())
}

/// A short name of a file's type, for messages.
fn kind_of(metadata: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else if kind.is_file() {
        "regular file"
    } else {
        "unknown file type"
    }
}
