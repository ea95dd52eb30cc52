//! Reading login material (token, AppRole ids, JWT) from files, fresh before every login.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

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
            Self::TooLarge => "file_too_large",
            Self::InvalidContent => "invalid_content",
        }
    }
}

/// Reads a one-token credential: trimmed, non-empty, printable ASCII without whitespace.
///
/// # Errors
/// [`CredentialError`] describing the problem.
pub fn read_credential(path: &Path) -> Result<String, CredentialError> {
    let file = File::open(path).map_err(|error| {
        if error.kind() == io::ErrorKind::NotFound {
            CredentialError::Missing
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
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIAL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| CredentialError::Unreadable)?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_CREDENTIAL_BYTES) {
        return Err(CredentialError::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| CredentialError::InvalidContent)?;
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialError::InvalidContent);
    }
    Ok(trimmed.to_owned())
}
