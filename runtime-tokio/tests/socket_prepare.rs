//! Checks before binding the KMS socket, and stale-socket removal.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use bao_kms_runtime_tokio::socket::{Prepared, SocketError, SocketPolicy, prepare};

fn policy(dir: &Path) -> SocketPolicy {
    SocketPolicy {
        path: dir.join("kms.sock"),
        mode: 0o660,
        group: None,
        approved_dirs: vec![dir.to_path_buf()],
    }
}

fn is_socket(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|metadata| metadata.file_type().is_socket())
        .unwrap_or(false)
}

#[tokio::test]
async fn a_free_path_is_reported_absent() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(prepare(&policy(dir.path())).unwrap(), Prepared::Absent);
}

#[tokio::test]
async fn a_stale_socket_is_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    drop(UnixListener::bind(&policy.path).unwrap());
    assert!(
        is_socket(&policy.path),
        "the dropped listener leaves its file"
    );
    assert_eq!(prepare(&policy).unwrap(), Prepared::StaleRemoved);
    assert!(!policy.path.exists());
    assert_eq!(prepare(&policy).unwrap(), Prepared::Absent);
}

#[tokio::test]
async fn a_live_socket_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let listener = UnixListener::bind(&policy.path).unwrap();
    let error = prepare(&policy).unwrap_err();
    assert!(matches!(error, SocketError::LiveSocket { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("another process is serving on the socket; refusing to steal it")
    );
    assert!(is_socket(&policy.path));
    // Still the same, working socket.
    std::os::unix::net::UnixStream::connect(&policy.path).unwrap();
    drop(listener);
}

#[tokio::test]
async fn a_regular_file_at_the_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    fs::write(&policy.path, "not a socket").unwrap();
    let error = prepare(&policy).unwrap_err();
    assert!(
        matches!(
            error,
            SocketError::NotSocket {
                kind: "regular file",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(fs::read_to_string(&policy.path).unwrap(), "not a socket");
}

#[tokio::test]
async fn a_directory_at_the_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    fs::create_dir(&policy.path).unwrap();
    let error = prepare(&policy).unwrap_err();
    assert!(
        matches!(
            error,
            SocketError::NotSocket {
                kind: "directory",
                ..
            }
        ),
        "{error}"
    );
    assert!(policy.path.is_dir());
}

#[tokio::test]
async fn a_symlink_at_the_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let other = dir.path().join("other.sock");
    drop(UnixListener::bind(&other).unwrap());
    symlink(&other, &policy.path).unwrap();
    let error = prepare(&policy).unwrap_err();
    assert!(matches!(error, SocketError::Symlink { .. }), "{error}");
    assert!(fs::symlink_metadata(&policy.path).is_ok());
    assert!(is_socket(&other));
}

#[tokio::test]
async fn a_path_outside_the_approved_directories_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let approved = tempfile::tempdir().unwrap();
    let mut policy = policy(dir.path());
    policy.approved_dirs = vec![approved.path().to_path_buf()];
    let error = prepare(&policy).unwrap_err();
    assert!(matches!(error, SocketError::NotApproved { .. }), "{error}");

    policy.approved_dirs = Vec::new();
    assert!(matches!(
        prepare(&policy),
        Err(SocketError::NotApproved { .. })
    ));
}

#[tokio::test]
async fn an_approved_directory_named_through_a_symlink_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    let alias = links.path().join("alias");
    symlink(dir.path(), &alias).unwrap();
    let mut policy = policy(dir.path());
    policy.approved_dirs = vec![alias];
    assert_eq!(prepare(&policy).unwrap(), Prepared::Absent);
}

#[tokio::test]
async fn a_socket_directory_that_is_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    let alias: PathBuf = links.path().join("alias");
    symlink(dir.path(), &alias).unwrap();
    let mut policy = policy(&alias);
    policy.approved_dirs = vec![dir.path().to_path_buf(), alias];
    let error = prepare(&policy).unwrap_err();
    assert!(
        matches!(error, SocketError::ParentSymlink { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_group_writable_socket_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o770)).unwrap();
    let error = prepare(&policy(dir.path())).unwrap_err();
    assert!(
        matches!(error, SocketError::ParentUnsafeMode { mode: 0o770, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_relative_socket_path_is_refused() {
    let mut policy = policy(Path::new("/tmp"));
    policy.path = PathBuf::from("kms.sock");
    assert!(matches!(
        prepare(&policy),
        Err(SocketError::NotAbsolute { .. })
    ));
}

#[tokio::test]
async fn a_socket_path_with_dot_dot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = policy(dir.path());
    policy.path = dir.path().join("sub/../kms.sock");
    assert!(matches!(
        prepare(&policy),
        Err(SocketError::InvalidPath { .. })
    ));
}

#[tokio::test]
async fn a_socket_that_cannot_be_probed_is_indeterminate_and_left_intact() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    // A datagram socket: a stream connection fails with neither success nor refusal.
    let datagram = std::os::unix::net::UnixDatagram::bind(&policy.path).unwrap();
    let error = prepare(&policy).unwrap_err();
    assert!(
        matches!(error, SocketError::Indeterminate { .. }),
        "{error}"
    );
    assert!(is_socket(&policy.path));
    drop(datagram);
}
