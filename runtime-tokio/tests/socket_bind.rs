//! Binding the KMS socket, its mode and group, and removing it on shutdown.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use bao_kms_runtime_tokio::socket::{
    SocketError, SocketGuard, SocketPolicy, bind, resolve_group_in, validate_mode_string,
};

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
async fn bind_sets_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let listener = bind(&policy).unwrap();
    let metadata = fs::symlink_metadata(&policy.path).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.mode() & 0o7777, 0o660);

    let accept = tokio::spawn(async move { listener.accept().await.map(drop) });
    tokio::net::UnixStream::connect(&policy.path).await.unwrap();
    accept.await.unwrap().unwrap();
}

#[tokio::test]
async fn bind_sets_a_stricter_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = policy(dir.path());
    policy.mode = 0o600;
    let _listener = bind(&policy).unwrap();
    let metadata = fs::symlink_metadata(&policy.path).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o600);
}

#[tokio::test]
async fn bind_sets_a_numeric_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = policy(dir.path());
    let gid = rustix::process::getegid().as_raw();
    policy.group = Some(gid.to_string());
    let _listener = bind(&policy).unwrap();
    assert_eq!(fs::symlink_metadata(&policy.path).unwrap().gid(), gid);
}

#[tokio::test]
async fn bind_refuses_an_unknown_group_before_creating_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = policy(dir.path());
    policy.group = Some("no-such-group-bao-kms-test".to_owned());
    let error = bind(&policy).unwrap_err();
    assert!(matches!(error, SocketError::UnknownGroup { .. }), "{error}");
    assert!(!policy.path.exists());
}

#[tokio::test]
async fn bind_refuses_a_mode_with_access_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = policy(dir.path());
    policy.mode = 0o666;
    assert!(matches!(
        bind(&policy),
        Err(SocketError::ForbiddenModeBits { mode: 0o666 })
    ));
    assert!(!policy.path.exists());
}

#[tokio::test]
async fn bind_refuses_a_path_that_exists() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    fs::write(&policy.path, "x").unwrap();
    assert!(bind(&policy).is_err());
    assert_eq!(fs::read_to_string(&policy.path).unwrap(), "x");
}

#[tokio::test]
async fn the_guard_unlinks_the_socket_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let listener = bind(&policy).unwrap();
    let guard = SocketGuard::new(&policy.path).unwrap();
    assert_eq!(guard.path(), policy.path);
    drop(guard);
    assert!(!policy.path.exists());
    drop(listener);
}

#[tokio::test]
async fn the_guard_does_not_unlink_a_different_socket_bound_later_at_the_same_path() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let first = bind(&policy).unwrap();
    let guard = SocketGuard::new(&policy.path).unwrap();
    // Someone removes ours and binds their own while ours is still open.
    fs::remove_file(&policy.path).unwrap();
    let second = bind(&policy).unwrap();
    drop(guard);
    assert!(
        is_socket(&policy.path),
        "the successor's socket must survive"
    );
    drop(first);
    drop(second);
}

#[tokio::test]
async fn the_guard_does_not_unlink_a_regular_file_put_in_place_of_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let listener = bind(&policy).unwrap();
    let guard = SocketGuard::new(&policy.path).unwrap();
    fs::remove_file(&policy.path).unwrap();
    fs::write(&policy.path, "x").unwrap();
    drop(guard);
    assert_eq!(fs::read_to_string(&policy.path).unwrap(), "x");
    drop(listener);
}

#[tokio::test]
async fn an_explicit_removal_reports_whether_it_removed_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let _listener = bind(&policy).unwrap();
    let guard = SocketGuard::new(&policy.path).unwrap();
    assert!(guard.remove().unwrap());
    assert!(!policy.path.exists());
}

#[test]
fn a_guard_needs_a_socket_at_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    fs::write(&path, "x").unwrap();
    assert!(SocketGuard::new(&path).is_err());
    assert!(SocketGuard::new(&dir.path().join("absent")).is_err());
}

#[test]
fn mode_strings_are_four_octal_digits_without_execute_or_other_bits() {
    assert_eq!(validate_mode_string("0660").unwrap(), 0o660);
    assert_eq!(validate_mode_string("0600").unwrap(), 0o600);
    assert_eq!(validate_mode_string("0000").unwrap(), 0);
    for invalid in [
        "660", "00660", "0680", "0x660", "", "0", " 0660", "+660", "0660\n",
    ] {
        assert!(
            matches!(
                validate_mode_string(invalid),
                Err(SocketError::InvalidMode { .. })
            ),
            "{invalid:?}"
        );
    }
    for forbidden in ["0666", "0770", "0661", "0760", "0700", "0777"] {
        assert!(
            matches!(
                validate_mode_string(forbidden),
                Err(SocketError::ForbiddenModeBits { .. })
            ),
            "{forbidden:?}"
        );
    }
}

#[test]
fn groups_resolve_by_name_or_decimal_gid() {
    let etc_group = "root:x:0:\n# comment\n+nis\nkms:x:990:apiserver\nother:x:991:\nbroken:x:\n";
    assert_eq!(resolve_group_in("kms", etc_group).unwrap(), 990);
    assert_eq!(resolve_group_in("root", etc_group).unwrap(), 0);
    assert_eq!(resolve_group_in("65532", etc_group).unwrap(), 65532);
    assert_eq!(resolve_group_in("0", "").unwrap(), 0);
    for unknown in ["missing", "", "broken", "4294967295", "99999999999", "km"] {
        assert!(
            matches!(
                resolve_group_in(unknown, etc_group),
                Err(SocketError::UnknownGroup { .. })
            ),
            "{unknown:?}"
        );
    }
}
