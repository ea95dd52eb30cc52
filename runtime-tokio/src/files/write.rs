//! Writing the state and checkpoint files, atomically and durably.

use std::collections::BTreeMap;
use std::fs::{File, Permissions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{DirCheck, Entry, FILE_MODE, FileError, MAX_FILE_BYTES, RegistryPaths, open_dir};
use crate::clock;

/// A write slower than this is logged when it finally returns.
const SLOW_WRITE: Duration = Duration::from_secs(1);

/// State files with a write in progress, and since when. A write that hangs (a frozen
/// filesystem, a dead disk) keeps its entry until it returns; every other write to the same
/// registry fails at once meanwhile, instead of queueing another blocked thread behind it or
/// racing it on the temporary file.
static IN_PROGRESS: Mutex<BTreeMap<PathBuf, Instant>> = Mutex::new(BTreeMap::new());

/// The entry of a write in progress; removed when the write returns, however it returns.
struct InProgress {
    path: PathBuf,
    started: Instant,
}

impl InProgress {
    fn enter(path: &Path) -> Result<Self, FileError> {
        let now = clock::now();
        let mut writes = IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(started) = writes.get(path) {
            return Err(FileError::WriteInProgress {
                path: path.to_path_buf(),
                seconds: now.saturating_duration_since(*started).as_secs(),
            });
        }
        writes.insert(path.to_path_buf(), now);
        Ok(Self {
            path: path.to_path_buf(),
            started: now,
        })
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        IN_PROGRESS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.path);
        let took = clock::now().saturating_duration_since(self.started);
        if took >= SLOW_WRITE {
            tracing::warn!(
                message = "state.write_slow",
                path = %self.path.display(),
                millis = u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
            );
        }
    }
}

/// Writes the state file, then the checkpoint, each atomically and durably.
///
/// For each file: remove a stale `.<name>.tmp`, create it with
/// `O_CREAT | O_EXCL | O_NOFOLLOW` and mode `0640`, write everything, `fchmod 0640` (the umask
/// may have narrowed it), `fsync`, close, rename it over the target, and `fsync` the directory.
/// On failure the temporary file is removed (best effort) and the target is untouched; when the
/// checkpoint fails, the new state is already in place, which the core's load rules accept
/// (state one generation ahead of the checkpoint).
///
/// Like the read path, a file larger than [`MAX_FILE_BYTES`] is refused (and nothing is
/// written): a state written past the limit could not be read back at the next start. While an
/// earlier write to the same registry has not returned, this one fails at once with
/// [`FileError::WriteInProgress`].
///
/// The caller holds the [`RegistryLock`](super::RegistryLock).
pub fn write_registry(
    paths: &RegistryPaths,
    state: &str,
    checkpoint: &str,
) -> Result<(), FileError> {
    for (entry, bytes) in [(&paths.state, state), (&paths.checkpoint, checkpoint)] {
        if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_FILE_BYTES) {
            return Err(FileError::TooLarge {
                path: entry.path().to_path_buf(),
                limit: MAX_FILE_BYTES,
            });
        }
    }
    let _in_progress = InProgress::enter(paths.state())?;
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
