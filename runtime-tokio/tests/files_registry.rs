//! Registry files: atomic writes, safe reads.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bao_kms_runtime_tokio::files::{
    FileError, MAX_FILE_BYTES, RegistryPaths, check_state_parent, read_stored, write_registry,
};

const STATE: &str = "{\"schemaVersion\":\"state\",\"generation\":1}";
const CHECKPOINT: &str = "{\"schemaVersion\":\"checkpoint\",\"generation\":1}";

fn paths_in(dir: &Path) -> RegistryPaths {
    RegistryPaths::new(&dir.join("state.json")).unwrap()
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn paths_are_derived_from_the_state_path() {
    let paths = RegistryPaths::new(Path::new("/var/lib/kms/state.json")).unwrap();
    assert_eq!(paths.dir(), Path::new("/var/lib/kms"));
    assert_eq!(paths.state(), Path::new("/var/lib/kms/state.json"));
    assert_eq!(
        paths.checkpoint(),
        Path::new("/var/lib/kms/state.json.checkpoint")
    );
    assert_eq!(paths.lock(), Path::new("/var/lib/kms/state.json.lock"));
    assert_eq!(
        paths.state_temp(),
        Path::new("/var/lib/kms/.state.json.tmp")
    );
    assert_eq!(
        paths.checkpoint_temp(),
        Path::new("/var/lib/kms/.state.json.checkpoint.tmp")
    );
    assert!(RegistryPaths::new(Path::new("/")).is_err());
}

#[test]
fn what_is_written_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    let stored = read_stored(&paths).unwrap();
    assert_eq!(stored.state.as_deref(), Some(STATE.as_bytes()));
    assert_eq!(stored.checkpoint.as_deref(), Some(CHECKPOINT.as_bytes()));

    write_registry(&paths, "second state", "second checkpoint").unwrap();
    let stored = read_stored(&paths).unwrap();
    assert_eq!(stored.state.as_deref(), Some(&b"second state"[..]));
    assert_eq!(
        stored.checkpoint.as_deref(),
        Some(&b"second checkpoint"[..])
    );
}

#[test]
fn missing_files_are_read_as_absent() {
    let dir = tempfile::tempdir().unwrap();
    let stored = read_stored(&paths_in(dir.path())).unwrap();
    assert_eq!(stored.state, None);
    assert_eq!(stored.checkpoint, None);
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(&dir.path().join("absent"));
    assert!(matches!(read_stored(&paths), Err(FileError::Io { .. })));
    assert!(write_registry(&paths, STATE, CHECKPOINT).is_err());
}

#[test]
fn written_files_have_mode_0640() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    assert_eq!(mode_of(paths.state()), 0o640);
    assert_eq!(mode_of(paths.checkpoint()), 0o640);
}

#[test]
fn writing_leaves_no_temporary_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    assert_eq!(
        names_in(dir.path()),
        vec!["state.json".to_owned(), "state.json.checkpoint".to_owned()]
    );
}

#[test]
fn a_stale_temporary_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    fs::write(
        paths.state_temp(),
        "leftover from a crash, longer than the new state",
    )
    .unwrap();
    fs::set_permissions(paths.state_temp(), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(paths.checkpoint_temp(), "leftover").unwrap();
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    assert!(!paths.state_temp().exists());
    assert!(!paths.checkpoint_temp().exists());
    let stored = read_stored(&paths).unwrap();
    assert_eq!(stored.state.as_deref(), Some(STATE.as_bytes()));
    assert_eq!(stored.checkpoint.as_deref(), Some(CHECKPOINT.as_bytes()));
}

#[test]
fn a_stale_temporary_symlink_is_removed_without_touching_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("precious");
    fs::write(&target, "precious").unwrap();
    let paths = paths_in(dir.path());
    symlink(&target, paths.state_temp()).unwrap();
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    assert!(
        !fs::symlink_metadata(paths.state())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(paths.state()).unwrap(), STATE);
}

#[test]
fn a_symlinked_state_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    let real = dir.path().join("real.json");
    fs::write(&real, STATE).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&real, paths.state()).unwrap();
    let error = read_stored(&paths).unwrap_err();
    assert!(matches!(error, FileError::Symlink { .. }), "{error}");
}

#[test]
fn a_symlinked_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    fs::rename(paths.checkpoint(), dir.path().join("real")).unwrap();
    symlink(dir.path().join("real"), paths.checkpoint()).unwrap();
    let error = read_stored(&paths).unwrap_err();
    assert!(matches!(error, FileError::Symlink { .. }), "{error}");
}

#[test]
fn a_fifo_in_place_of_the_state_file_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    let handle = fs::File::open(dir.path()).unwrap();
    rustix::fs::mkfifoat(
        &handle,
        "state.json",
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let result = read_stored(&paths);
        sender.send(result.map(drop)).unwrap();
    });
    let result = receiver
        .recv_timeout(Duration::from_secs(5))
        .expect("read_stored hung on a FIFO");
    let error = result.unwrap_err();
    assert!(
        matches!(error, FileError::NotRegular { kind: "FIFO", .. }),
        "{error}"
    );
}

#[test]
fn a_directory_in_place_of_the_state_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    fs::create_dir(paths.state()).unwrap();
    let error = read_stored(&paths).unwrap_err();
    assert!(matches!(error, FileError::NotRegular { .. }), "{error}");
}

#[test]
fn a_group_writable_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o770)).unwrap();
    let error = read_stored(&paths).unwrap_err();
    assert!(
        matches!(error, FileError::UnsafeMode { mode: 0o770, .. }),
        "{error}"
    );
    assert!(write_registry(&paths, STATE, CHECKPOINT).is_err());
    assert!(check_state_parent(paths.state()).is_err());
}

#[test]
fn a_symlinked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.path().join("link");
    symlink(&real, &link).unwrap();
    let paths = paths_in(&link);
    let error = read_stored(&paths).unwrap_err();
    assert!(matches!(error, FileError::Symlink { .. }), "{error}");
    assert!(matches!(
        check_state_parent(paths.state()),
        Err(FileError::Symlink { .. })
    ));
    assert!(write_registry(&paths, STATE, CHECKPOINT).is_err());
    assert!(!real.join("state.json").exists());
}

#[test]
fn a_private_directory_owned_by_the_effective_user_passes_the_parent_check() {
    let dir = tempfile::tempdir().unwrap();
    check_state_parent(&dir.path().join("state.json")).unwrap();
}

#[test]
fn a_state_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    fs::set_permissions(paths.state(), fs::Permissions::from_mode(0o644)).unwrap();
    let error = read_stored(&paths).unwrap_err();
    assert!(
        matches!(
            error,
            FileError::UnsafeMode {
                mode: 0o644,
                forbidden: 0o137,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains("schemaVersion"));
}

#[test]
fn a_group_writable_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    fs::set_permissions(paths.checkpoint(), fs::Permissions::from_mode(0o660)).unwrap();
    assert!(matches!(
        read_stored(&paths),
        Err(FileError::UnsafeMode { mode: 0o660, .. })
    ));
}

#[test]
fn an_oversized_state_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    write_registry(&paths, STATE, CHECKPOINT).unwrap();
    // The writer refuses this size too, so the file is grown behind its back.
    let big = "x".repeat(usize::try_from(MAX_FILE_BYTES).unwrap() + 1);
    fs::write(paths.state(), &big).unwrap();
    let error = read_stored(&paths).unwrap_err();
    assert!(matches!(error, FileError::TooLarge { .. }), "{error}");
}

#[test]
fn a_state_file_of_exactly_the_limit_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths_in(dir.path());
    let big = "x".repeat(usize::try_from(MAX_FILE_BYTES).unwrap());
    write_registry(&paths, &big, CHECKPOINT).unwrap();
    let stored = read_stored(&paths).unwrap();
    assert_eq!(stored.state.map(|bytes| bytes.len()), Some(big.len()));
}
