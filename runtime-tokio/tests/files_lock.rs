//! The registry lock.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use bao_kms_runtime_tokio::files::{FileError, RegistryLock, RegistryPaths};

fn paths_in(dir: &Path) -> RegistryPaths {
    RegistryPaths::new(&dir.join("state.json")).unwrap()
}

#[test]
fn a_second_lock_is_refused_while_the_first_is_held_and_granted_after_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    let first = RegistryLock::acquire(&paths).unwrap();
    assert_eq!(first.path(), paths.lock());

    let error = RegistryLock::acquire(&paths).unwrap_err();
    assert!(matches!(error, FileError::Locked { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "key registry state is locked by another process"
    );

    drop(first);
    let again = RegistryLock::acquire(&paths).unwrap();
    drop(again);
}

#[test]
fn the_lock_file_is_created_private_and_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    drop(RegistryLock::acquire(&paths).unwrap());
    let metadata = fs::symlink_metadata(paths.lock()).unwrap();
    assert!(metadata.is_file());
    assert_eq!(metadata.mode() & 0o077, 0);
}

#[test]
fn a_lock_file_readable_by_the_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    fs::write(paths.lock(), "").unwrap();
    fs::set_permissions(paths.lock(), fs::Permissions::from_mode(0o640)).unwrap();
    let error = RegistryLock::acquire(&paths).unwrap_err();
    assert!(
        matches!(
            error,
            FileError::UnsafeMode {
                forbidden: 0o077,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_symlinked_lock_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    let real = dir.path().join("real.lock");
    fs::write(&real, "").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&real, paths.lock()).unwrap();
    let error = RegistryLock::acquire(&paths).unwrap_err();
    assert!(matches!(error, FileError::Symlink { .. }), "{error}");
}

#[test]
fn a_hard_linked_lock_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    drop(RegistryLock::acquire(&paths).unwrap());
    fs::hard_link(paths.lock(), dir.path().join("other")).unwrap();
    let error = RegistryLock::acquire(&paths).unwrap_err();
    assert!(
        matches!(error, FileError::Links { links: 2, .. }),
        "{error}"
    );
}

#[test]
fn a_lock_in_a_world_writable_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let paths = paths_in(dir.path());
    let error = RegistryLock::acquire(&paths).unwrap_err();
    assert!(matches!(error, FileError::UnsafeMode { .. }), "{error}");
    assert!(!paths.lock().exists());
}
