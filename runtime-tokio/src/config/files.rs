//! Filesystem checks of the files and directories a configuration names.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::error::{Problem, sort_problems};
use super::settings::Config;

/// Checks every file and directory the configuration names, without changing anything.
///
/// - the config file (when the configuration came from [`load`](super::load)): a regular file
///   whose mode has none of the bits `0037` (no group write, nothing for others);
/// - `server.socketPath`: its parent is an existing directory, not a symbolic link, not group-
///   or world-writable; an existing entry at the path must be a socket;
/// - `openbao.caCertFile`: exists, regular, not a symbolic link, mode without `0022`, at most
///   1 MiB, with at least one PEM `CERTIFICATE` block;
/// - credential files of the selected auth method (`jwtFile`, `tokenFile`, `roleIdFile`,
///   `secretIdFile`): regular, not a symbolic link, mode without `0037`, at most 1 MiB, readable;
/// - `state.path`: its parent is an existing directory, not a symbolic link, not group- or
///   world-writable.
///
/// `serve` refuses to start on any problem; `doctor` reports them.
pub fn check_files(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(path) = config.config_path() {
        check_config_file(path, &mut problems);
    }
    check_socket(&config.server.socket_path, &mut problems);
    check_ca_file(&config.openbao.ca_cert_file, &mut problems);
    for (field, path) in config.auth.method.credential_files() {
        check_credential_file(field, path, &mut problems);
    }
    check_private_parent("state.path", &config.state_path, &mut problems);
    sort_problems(&mut problems);
    problems
}

fn check_config_file(path: &Path, problems: &mut Vec<Problem>) {
    const FIELD: &str = "configFile";
    let shown = path.display();
    // The config file may be reached through a symbolic link (a mounted ConfigMap is one), so
    // the target is what gets checked.
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            problems.push(Problem::new(
                FIELD,
                format!("{shown}: {}", describe(&error)),
            ));
            return;
        }
    };
    if !metadata.is_file() {
        problems.push(Problem::new(
            FIELD,
            format!("{shown} must be a regular file"),
        ));
        return;
    }
    if let Some(message) = forbidden_bits(&metadata, CONFIG_FORBIDDEN_BITS) {
        problems.push(Problem::new(FIELD, format!("{shown} {message}")));
    }
}

fn check_socket(path: &Path, problems: &mut Vec<Problem>) {
    const FIELD: &str = "server.socketPath";
    check_private_parent(FIELD, path, problems);
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => problems.push(Problem::new(
            FIELD,
            format!("{} must not be a symbolic link", path.display()),
        )),
        Ok(metadata) if !metadata.file_type().is_socket() => problems.push(Problem::new(
            FIELD,
            format!("{} exists and is not a socket", path.display()),
        )),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            problems.push(Problem::new(
                FIELD,
                format!("{}: {}", path.display(), describe(&error)),
            ));
        }
    }
}

fn check_ca_file(path: &Path, problems: &mut Vec<Problem>) {
    const FIELD: &str = "openbao.caCertFile";
    let Some(contents) = read_checked_file(FIELD, path, CA_FORBIDDEN_BITS, problems) else {
        return;
    };
    if !contains_pem_certificate(&contents) {
        problems.push(Problem::new(
            FIELD,
            format!("{} contains no PEM CERTIFICATE block", path.display()),
        ));
    }
}

fn check_credential_file(field: &str, path: &Path, problems: &mut Vec<Problem>) {
    read_checked_file(field, path, CREDENTIAL_FORBIDDEN_BITS, problems);
}

/// Checks a regular file that is read at runtime and returns its contents when it passes.
fn read_checked_file(
    field: &str,
    path: &Path,
    forbidden: u32,
    problems: &mut Vec<Problem>,
) -> Option<Vec<u8>> {
    let shown = path.display();
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            problems.push(Problem::new(
                field,
                format!("{shown}: {}", describe(&error)),
            ));
            return None;
        }
    };
    if metadata.file_type().is_symlink() {
        problems.push(Problem::new(
            field,
            format!("{shown} must not be a symbolic link"),
        ));
        return None;
    }
    if !metadata.is_file() {
        problems.push(Problem::new(
            field,
            format!("{shown} must be a regular file"),
        ));
        return None;
    }
    let mut passed = true;
    if let Some(message) = forbidden_bits(&metadata, forbidden) {
        problems.push(Problem::new(field, format!("{shown} {message}")));
        passed = false;
    }
    if metadata.len() > MAX_FILE_BYTES {
        problems.push(Problem::new(
            field,
            format!("{shown} must be at most 1 MiB"),
        ));
        return None;
    }
    let mut contents = Vec::new();
    let read =
        File::open(path).and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut contents));
    if let Err(error) = read {
        problems.push(Problem::new(
            field,
            format!("{shown}: {}", describe(&error)),
        ));
        return None;
    }
    if contents.len() as u64 > MAX_FILE_BYTES {
        problems.push(Problem::new(
            field,
            format!("{shown} must be at most 1 MiB"),
        ));
        return None;
    }
    passed.then_some(contents)
}

/// The parent of `path` must be an existing real directory that only its owner can write.
fn check_private_parent(field: &str, path: &Path, problems: &mut Vec<Problem>) {
    let Some(parent) = path.parent() else {
        return;
    };
    let shown = parent.display();
    let metadata = match fs::symlink_metadata(parent) {
        Ok(metadata) => metadata,
        Err(error) => {
            problems.push(Problem::new(
                field,
                format!("parent directory {shown}: {}", describe(&error)),
            ));
            return;
        }
    };
    if metadata.file_type().is_symlink() {
        problems.push(Problem::new(
            field,
            format!("parent directory {shown} must not be a symbolic link"),
        ));
    } else if !metadata.is_dir() {
        problems.push(Problem::new(
            field,
            format!("parent {shown} must be a directory"),
        ));
    } else if let Some(message) = forbidden_bits(&metadata, DIRECTORY_FORBIDDEN_BITS) {
        problems.push(Problem::new(
            field,
            format!("parent directory {shown} {message}"),
        ));
    }
}

/// Whether `contents` holds at least one `BEGIN CERTIFICATE` … `END CERTIFICATE` block with a
/// non-empty base64 body.
fn contains_pem_certificate(contents: &[u8]) -> bool {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(contents);
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start + BEGIN.len()..];
        let Some(end) = after_begin.find(END) else {
            return false;
        };
        let body = &after_begin[..end];
        let is_base64 = body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b) || b.is_ascii_whitespace());
        if is_base64 && body.bytes().any(|b| b.is_ascii_alphanumeric()) {
            return true;
        }
        rest = &after_begin[end + END.len()..];
    }
    false
}

/// Describes the permission bits of `metadata` that are in `forbidden`, if any.
fn forbidden_bits(metadata: &Metadata, forbidden: u32) -> Option<String> {
    let mode = metadata.mode() & 0o7777;
    let found = mode & forbidden;
    (found != 0).then(|| {
        format!(
            "has mode {mode:04o}; it must have none of the bits {forbidden:04o} (found {found:04o})"
        )
    })
}

fn describe(error: &io::Error) -> String {
    let kind = error.kind();
    if kind == io::ErrorKind::NotFound {
        "does not exist".into()
    } else if kind == io::ErrorKind::PermissionDenied {
        "permission denied".into()
    } else {
        error.to_string()
    }
}

/// Group write and any access for others.
const CONFIG_FORBIDDEN_BITS: u32 = 0o037;
/// Credentials: group write and any access for others.
const CREDENTIAL_FORBIDDEN_BITS: u32 = 0o037;
/// Trust anchors may be world-readable but writable only by their owner.
const CA_FORBIDDEN_BITS: u32 = 0o022;
/// Socket and state directories: writable only by their owner.
const DIRECTORY_FORBIDDEN_BITS: u32 = 0o022;
/// Largest CA bundle or credential file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_detection_needs_a_complete_certificate_block() {
        let good = b"junk\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(contains_pem_certificate(good));
        assert!(!contains_pem_certificate(
            b"-----BEGIN CERTIFICATE-----\nMIIB\n"
        ));
        assert!(!contains_pem_certificate(
            b"-----BEGIN CERTIFICATE----------END CERTIFICATE-----"
        ));
        assert!(!contains_pem_certificate(
            b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
        ));
    }
}
