//! The registry lock, `<state>.lock`.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::{
    DirCheck, FileError, LOCK_FORBIDDEN_BITS, LOCK_MODE, RegistryPaths, check_mode, check_owner,
    kind_of, open_dir,
};

/// An exclusive advisory lock (`flock`) on `<state>.lock`, held until dropped.
///
/// `serve` takes it before anything can write the registry, and so do the commands that change
/// the registry. The lock is per open file: a second [`RegistryLock::acquire`] in the same
/// process fails too. Dropping it closes the file, which releases the lock; the lock file itself
/// is never deleted. It needs a local filesystem with working advisory locks.
#[derive(Debug)]
pub struct RegistryLock {
    /// Held only to keep the lock: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl RegistryLock {
    /// Opens (creating with mode `0600` if needed) and locks `<state>.lock`, without waiting.
    ///
    /// The directory must pass the same checks as [`check_state_parent`](super::check_state_parent).
    /// The lock file must be a regular file owned by the effective user, with no permission bits
    /// for group or others and exactly one link. When another open file holds the lock, this
    /// fails with [`FileError::Locked`].
    pub fn acquire(paths: &RegistryPaths) -> Result<Self, FileError> {
        let dir = open_dir(paths.dir(), DirCheck::OwnedByEuid)?;
        let entry = &paths.lock;
        let path = entry.path();
        // `O_NONBLOCK` as well: opening a FIFO put in its place must not wait.
        let flags = OFlags::RDWR
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK
            | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(&dir, entry.name(), flags, Mode::from_raw_mode(LOCK_MODE))
        {
            Ok(fd) => fd,
            Err(errno) if errno == Errno::LOOP => {
                return Err(FileError::Symlink {
                    path: path.to_path_buf(),
                });
            }
            Err(errno) => return Err(FileError::io("open", path, errno.into())),
        };
        let file = File::from(fd);
        let metadata = file
            .metadata()
            .map_err(|error| FileError::io("stat", path, error))?;
        if !metadata.is_file() {
            return Err(FileError::NotRegular {
                path: path.to_path_buf(),
                kind: kind_of(&metadata),
            });
        }
        check_mode(path, &metadata, LOCK_FORBIDDEN_BITS)?;
        check_owner(path, &metadata)?;
        let links = std::os::unix::fs::MetadataExt::nlink(&metadata);
        if links != 1 {
            return Err(FileError::Links {
                path: path.to_path_buf(),
                links,
            });
        }
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self {
                _file: file,
                path: path.to_path_buf(),
            }),
            Err(errno) if errno == Errno::WOULDBLOCK => Err(FileError::Locked {
                path: path.to_path_buf(),
            }),
            Err(errno) => Err(FileError::io("lock", path, errno.into())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
