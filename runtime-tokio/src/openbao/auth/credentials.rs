//! Reading login material (token, AppRole ids, JWT) from files, fresh before every login.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use zeroize::Zeroizing;

/// Largest credential file read (the JWT bound; tokens and AppRole ids are far smaller).
pub const MAX_CREDENTIAL_BYTES: u64 = 1024 * 1024;

/// Why a credential file was refused. The message names neither the path nor the content.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The file does not exist.
    #[error("credential file is missing")]
    Missing,
    /// The file exists but could not be read.
    #[error("credential file is unreadable")]
    Unreadable,
    /// The path is not a regular file.
    #[error("credential file is not a regular file")]
    NotRegularFile,
    /// The path is a symbolic link; it was refused at start-up and is refused on every re-read.
    #[error("credential file must not be a symbolic link")]
    Symlink,
    /// The file is larger than [`MAX_CREDENTIAL_BYTES`].
    #[error("credential file is too large")]
    TooLarge,
    /// Empty after trimming, not UTF-8, or with interior whitespace or control characters.
    #[error("credential file content is invalid")]
    InvalidContent,
}

impl CredentialError {
    /// A stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "file_missing",
            Self::Unreadable => "file_unreadable",
            Self::NotRegularFile => "regular_file_required",
            Self::Symlink => "symlink_unsupported",
            Self::TooLarge => "file_too_large",
            Self::InvalidContent => "invalid_content",
        }
    }
}

/// Reads a one-token credential: trimmed, non-empty, printable ASCII without whitespace. The
/// value and every buffer it passed through are wiped when dropped.
///
/// # Errors
/// [`CredentialError`] describing the problem.
pub fn read_credential(path: &Path) -> Result<Zeroizing<String>, CredentialError> {
    // O_NOFOLLOW: a file swapped for a symlink after start-up is refused, as at start-up;
    // O_NONBLOCK: a FIFO put in its place cannot hang the login.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| {
            if error.kind() == io::ErrorKind::NotFound {
                CredentialError::Missing
            } else if error.raw_os_error() == Some(libc::ELOOP) {
                CredentialError::Symlink
            } else {
                CredentialError::Unreadable
            }
        })?;
    let metadata = file.metadata().map_err(|_| CredentialError::Unreadable)?;
    if !metadata.is_file() {
        return Err(CredentialError::NotRegularFile);
    }
    if metadata.len() > MAX_CREDENTIAL_BYTES {
        return Err(CredentialError::TooLarge);
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_CREDENTIAL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| CredentialError::Unreadable)?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_CREDENTIAL_BYTES) {
        return Err(CredentialError::TooLarge);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| CredentialError::InvalidContent)?;
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialError::InvalidContent);
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

#[cfg(test)]
mod symlink_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_credential_file_replaced_by_a_symlink_is_refused_on_re_read() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "s.token\n").unwrap();
        assert_eq!(read_credential(&real).unwrap().as_str(), "s.token");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            read_credential(&link).unwrap_err(),
            CredentialError::Symlink
        );
    }
}
