//! Reading the state and checkpoint files.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;

use bao_kms_core::StoredState;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::{
    DirCheck, Entry, FILE_FORBIDDEN_BITS, FileError, MAX_FILE_BYTES, RegistryPaths, check_mode,
    kind_of, open_dir,
};

/// Reads the state file and the checkpoint; a missing file is `None`.
///
/// The directory must be a directory (not a symbolic link) without group or world write. Each
/// file is opened relative to it with `O_NOFOLLOW | O_NONBLOCK`, so neither a symbolic link nor
/// a FIFO is followed or waited on; it must be a regular file with none of the mode bits `0137`
/// and at most [`MAX_FILE_BYTES`] long.
pub fn read_stored(paths: &RegistryPaths) -> Result<StoredState, FileError> {
    let dir = open_dir(paths.dir(), DirCheck::Mode)?;
    Ok(StoredState {
        state: read_file(&dir, &paths.state)?,
        checkpoint: read_file(&dir, &paths.checkpoint)?,
    })
}

fn read_file(dir: &OwnedFd, entry: &Entry) -> Result<Option<Vec<u8>>, FileError> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = match rustix::fs::openat(dir, entry.name(), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(errno) if errno == Errno::NOENT => return Ok(None),
        Err(errno) if errno == Errno::LOOP => {
            return Err(FileError::Symlink {
                path: entry.path().to_path_buf(),
            });
        }
        Err(errno) => return Err(FileError::io("open", entry.path(), errno.into())),
    };
    let file = File::from(fd);
    let metadata = file
        .metadata()
        .map_err(|error| FileError::io("stat", entry.path(), error))?;
    if !metadata.is_file() {
        return Err(FileError::NotRegular {
            path: entry.path().to_path_buf(),
            kind: kind_of(&metadata),
        });
    }
    check_mode(entry.path(), &metadata, FILE_FORBIDDEN_BITS)?;
    let too_large = || FileError::TooLarge {
        path: entry.path().to_path_buf(),
        limit: MAX_FILE_BYTES,
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // The file may grow between fstat and read: read one byte past the limit to notice.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| FileError::io("read", entry.path(), error))?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_FILE_BYTES) {
        return Err(too_large());
    }
    Ok(Some(bytes))
}
