//! Filesystems a test mounts itself (the tests run as root): a small tmpfs to fill up for a
//! real ENOSPC, and a loop-mounted ext4 image to freeze with `fsfreeze` for a write that blocks.
//!
//! When mounting is impossible the constructors return `None` so a developer's unprivileged run
//! skips; under `CI=true` they panic instead, so CI never passes by skipping. Everything is
//! undone on drop (thaw first, so nothing stays blocked), and a watchdog shell thaws and
//! unmounts if the test process dies without unwinding.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A mounted test filesystem.
pub(crate) struct TestMount {
    dir: tempfile::TempDir,
    image: Option<PathBuf>,
    frozen: bool,
    watchdog: Option<Child>,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Runs a command; `Err` with its output when it fails or cannot start.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn unavailable(what: &str, error: &str) -> Option<TestMount> {
    assert!(!in_ci(), "CI=true: cannot mount {what}: {error}");
    eprintln!("skipping: cannot mount {what} ({error}); run as root, CI does");
    None
}

impl TestMount {
    /// A tmpfs of `kib` KiB.
    pub(crate) fn tmpfs(kib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().to_str().unwrap().to_owned();
        let options = format!("size={kib}k,mode=0750");
        if let Err(error) = run(
            "mount",
            &["-t", "tmpfs", "-o", &options, "tmpfs", &mountpoint],
        ) {
            return unavailable("a tmpfs", &error);
        }
        Some(Self::mounted(dir, None))
    }

    /// An ext4 filesystem of `mib` MiB in a loop-mounted image file (freezable).
    pub(crate) fn ext4(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let image = PathBuf::from(format!("{}.img", dir.path().display()));
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(mib * 1024 * 1024).unwrap();
        drop(file);
        let image_text = image.to_str().unwrap().to_owned();
        let mountpoint = dir.path().to_str().unwrap().to_owned();
        let made = run("mkfs.ext4", &["-q", "-F", &image_text])
            .and_then(|()| run("mount", &["-o", "loop", &image_text, &mountpoint]));
        if let Err(error) = made {
            let _ = std::fs::remove_file(&image);
            return unavailable("a loop ext4 image", &error);
        }
        let mount = Self::mounted(dir, Some(image));
        std::fs::set_permissions(mount.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        Some(mount)
    }

    fn mounted(dir: tempfile::TempDir, image: Option<PathBuf>) -> Self {
        let mountpoint = dir.path().display().to_string();
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
                 fsfreeze -u '{mountpoint}' 2>/dev/null; umount -l '{mountpoint}' 2>/dev/null",
                pid = std::process::id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the mount watchdog");
        Self {
            dir,
            image,
            frozen: false,
            watchdog: Some(watchdog),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Freezes the filesystem: every write to it blocks until [`Self::thaw`].
    pub(crate) fn freeze(&mut self) {
        run("fsfreeze", &["-f", self.path().to_str().unwrap()]).unwrap();
        self.frozen = true;
    }

    pub(crate) fn thaw(&mut self) {
        if self.frozen {
            run("fsfreeze", &["-u", self.path().to_str().unwrap()]).unwrap();
            self.frozen = false;
        }
    }
}

/// Thaws the filesystem when dropped: declare it after whatever may block on the frozen
/// filesystem (a plugin process), so it is thawed before that is stopped, even on a panic.
pub(crate) struct ThawGuard {
    path: PathBuf,
}

impl TestMount {
    pub(crate) fn thaw_guard(&self) -> ThawGuard {
        ThawGuard {
            path: self.path().to_path_buf(),
        }
    }
}

impl Drop for ThawGuard {
    fn drop(&mut self) {
        // Thawing a filesystem that is not frozen fails harmlessly.
        let _ = run("fsfreeze", &["-u", self.path.to_str().unwrap()]);
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if self.frozen {
            let _ = run("fsfreeze", &["-u", self.path().to_str().unwrap()]);
        }
        let mountpoint = self.path().to_str().unwrap().to_owned();
        if run("umount", &[&mountpoint]).is_err() {
            let _ = run("umount", &["-l", &mountpoint]);
        }
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}
