//! Writing the state and checkpoint files, atomically and durably.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{DirCheck, Entry, FILE_MODE, FileError, RegistryPaths, open_dir};

/// Writes the state file, then the checkpoint, each atomically and durably.
///
/// For each file: remove a stale `.<name>.tmp`, create it with
/// `O_CREAT | O_EXCL | O_NOFOLLOW` and mode `0640`, write everything, `fchmod 0640` (the umask
/// may have narrowed it), `fsync`, close, rename it over the target, and `fsync` the directory.
/// On failure the temporary file is removed (best effort) and the target is untouched; when the
/// checkpoint fails, the new state is already in place, which the core's load rules accept
/// (state one generation ahead of the checkpoint).
///
/// The caller holds the [`RegistryLock`](super::RegistryLock).
pub fn write_registry(
    paths: &RegistryPaths,
    state: &str,
    checkpoint: &str,
) -> Result<(), FileError> {
    let dir = open_dir(paths.dir(), DirCheck::Mode)?;
    write_atomic(&dir, &paths.state_temp, &paths.state, state.as_bytes())?;
    write_atomic(
        &dir,
        &paths.checkpoint_temp,
        &paths.checkpoint,
        checkpoint.as_bytes(),
    )?;
    Ok(())
}

fn write_atomic(
    dir: &OwnedFd,
    temp: &Entry,
    target: &Entry,
    bytes: &[u8],
) -> Result<(), FileError> {
    remove_if_present(dir, temp)
        .map_err(|errno| FileError::io("remove stale", temp.path(), errno.into()))?;
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, temp.name(), flags, Mode::from_raw_mode(FILE_MODE))
        .map_err(|errno| FileError::io("create", temp.path(), errno.into()))?;
    let written = fill(File::from(fd), bytes, temp);
    let renamed = written.and_then(|()| {
        rustix::fs::renameat(dir, temp.name(), dir, target.name())
            .map_err(|errno| FileError::io("rename", target.path(), errno.into()))
    });
    if let Err(error) = renamed {
        // Best effort: the next write removes it anyway.
        let _ignored = remove_if_present(dir, temp);
        return Err(error);
    }
    rustix::fs::fsync(dir)
        .map_err(|errno| FileError::io("sync directory of", target.path(), errno.into()))
}

/// Writes, fixes the mode, syncs and closes the temporary file.
fn fill(mut file: File, bytes: &[u8], temp: &Entry) -> Result<(), FileError> {
    file.write_all(bytes)
        .map_err(|error| FileError::io("write", temp.path(), error))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(|error| FileError::io("chmod", temp.path(), error))?;
    file.sync_all()
        .map_err(|error| FileError::io("sync", temp.path(), error))?;
    drop(file);
    Ok(())
}

/// Unlinks `entry` (never following a symbolic link); a missing entry is fine.
fn remove_if_present(dir: &OwnedFd, entry: &Entry) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, entry.name(), AtFlags::empty()) {
        Err(errno) if errno == Errno::NOENT => Ok(()),
        other => other,
    }
}
