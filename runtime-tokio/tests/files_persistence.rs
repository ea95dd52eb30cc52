//! The registry writer on real failing filesystems: a full tmpfs (ENOSPC), a frozen ext4
//! (a write that blocks), and the size cap shared with the read path.
#![allow(clippy::unwrap_used)]

mod files_support;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bao_kms_runtime_tokio::files::{
    FileError, MAX_FILE_BYTES, RegistryPaths, read_stored, write_registry,
};
use files_support::TestMount;

const STATE_1: &str = "{\"generation\":1}";
const CHECKPOINT_1: &str = "{\"checkpoint\":1}";

#[test]
fn a_full_filesystem_fails_the_write_with_enospc_and_keeps_the_previous_files() {
    let Some(mount) = TestMount::tmpfs(64) else {
        return;
    };
    let paths = RegistryPaths::new(&mount.path().join("state.json")).unwrap();
    write_registry(&paths, STATE_1, CHECKPOINT_1).unwrap();
    // Fill the rest of the filesystem.
    let filler = mount.path().join("filler");
    let _ = std::fs::write(&filler, vec![0_u8; 64 * 1024]);

    let bigger = format!("{{\"generation\":2,\"pad\":\"{}\"}}", "x".repeat(16 * 1024));
    let error = write_registry(&paths, &bigger, CHECKPOINT_1).unwrap_err();
    let FileError::Io { error: io, .. } = &error else {
        panic!("expected an IO error, got {error}");
    };
    assert_eq!(io.raw_os_error(), Some(libc::ENOSPC), "{error}");
    let stored = read_stored(&paths).unwrap();
    assert_eq!(stored.state.unwrap(), STATE_1.as_bytes());
    assert!(
        !paths.state_temp().exists(),
        "the temporary file is removed"
    );

    std::fs::remove_file(&filler).unwrap();
    write_registry(&paths, &bigger, CHECKPOINT_1).unwrap();
    assert_eq!(
        read_stored(&paths).unwrap().state.unwrap(),
        bigger.as_bytes()
    );
}

#[test]
fn a_write_larger_than_the_read_limit_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let paths = RegistryPaths::new(&dir.path().join("state.json")).unwrap();
    write_registry(&paths, STATE_1, CHECKPOINT_1).unwrap();
    let huge = "x".repeat(usize::try_from(MAX_FILE_BYTES).unwrap() + 1);
    let error = write_registry(&paths, &huge, CHECKPOINT_1).unwrap_err();
    assert!(
        matches!(error, FileError::TooLarge { limit, .. } if limit == MAX_FILE_BYTES),
        "{error}"
    );
    let at_limit = "y".repeat(usize::try_from(MAX_FILE_BYTES).unwrap());
    write_registry(&paths, &at_limit, CHECKPOINT_1).unwrap();
    assert_eq!(
        read_stored(&paths).unwrap().state.unwrap().len(),
        at_limit.len(),
        "what the writer accepts, the reader reads back"
    );
}

#[test]
fn while_a_write_blocks_on_a_frozen_filesystem_the_next_one_fails_at_once() {
    let Some(mut mount) = TestMount::ext4(16) else {
        return;
    };
    let paths = RegistryPaths::new(&mount.path().join("state.json")).unwrap();
    write_registry(&paths, STATE_1, CHECKPOINT_1).unwrap();
    mount.freeze();

    let (done, finished) = mpsc::channel();
    let blocked_paths = paths.clone();
    let writer = thread::spawn(move || {
        let result = write_registry(&blocked_paths, "{\"generation\":2}", CHECKPOINT_1);
        done.send(result.map_err(|error| error.to_string()))
            .unwrap();
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(1)).is_err(),
        "the write blocks while the filesystem is frozen"
    );
    let error = write_registry(&paths, "{\"generation\":2}", CHECKPOINT_1).unwrap_err();
    assert!(
        matches!(error, FileError::WriteInProgress { .. }),
        "{error}"
    );

    mount.thaw();
    let first = finished.recv_timeout(Duration::from_secs(10)).unwrap();
    writer.join().unwrap();
    assert_eq!(first, Ok(()));
    write_registry(&paths, "{\"generation\":3}", CHECKPOINT_1).unwrap();
    assert_eq!(
        read_stored(&paths).unwrap().state.unwrap(),
        b"{\"generation\":3}"
    );
}
