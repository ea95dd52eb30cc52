//! Build facts for `version` and `openbao_kms_build_info`: the source commit, whether tracked
//! files had local changes, and the build date.
//!
//! Each fact may be given explicitly (`BAO_KMS_BUILD_COMMIT`, `BAO_KMS_BUILD_DIRTY`,
//! `BAO_KMS_BUILD_DATE`), for builds from a source tarball. Otherwise the commit and the dirty
//! flag come from `git`, and the date from `SOURCE_DATE_EPOCH`, else from the commit's own
//! date, so two builds of one commit embed the same bytes (reproducible builds). Without git
//! and without the variables the facts read `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    for var in [
        "BAO_KMS_BUILD_COMMIT",
        "BAO_KMS_BUILD_DIRTY",
        "BAO_KMS_BUILD_DATE",
        "SOURCE_DATE_EPOCH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    watch_head(&dir);

    let commit = explicit("BAO_KMS_BUILD_COMMIT")
        .or_else(|| git(&dir, &["rev-parse", "--verify", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = explicit("BAO_KMS_BUILD_DIRTY")
        .or_else(|| {
            git(&dir, &["status", "--porcelain", "--untracked-files=no"])
                .map(|changes| (!changes.is_empty()).to_string())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let date = explicit("BAO_KMS_BUILD_DATE")
        .or_else(|| {
            explicit("SOURCE_DATE_EPOCH")
                .or_else(|| git(&dir, &["log", "-1", "--format=%ct", "HEAD"]))
                .and_then(|epoch| epoch.trim().parse::<i64>().ok())
                .map(rfc3339_utc)
        })
        .unwrap_or_else(|| "unknown".to_owned());

    println!("cargo:rustc-env=BAO_KMS_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=BAO_KMS_BUILD_DIRTY={dirty}");
    println!("cargo:rustc-env=BAO_KMS_BUILD_DATE={date}");
}

/// A non-empty variable, without characters that would break a `cargo:` line.
fn explicit(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty() && !value.contains(['\n', '\r']))
}

/// The trimmed stdout of a successful `git` command run in `dir`.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    String::from_utf8(output.stdout)
        .ok()
        .map(|text| text.trim().to_owned())
}

/// Re-runs this script when HEAD moves (checkout, commit), also in a linked worktree and with
/// packed refs. Working-tree edits alone do not re-run it: the index changes too often (even
/// `git status` may rewrite it) and every re-run recompiles the crate.
fn watch_head(dir: &Path) {
    let path = |args: &[&str]| git(dir, args).map(|found| dir.join(found));
    if let Some(git_dir) = path(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    }
    if let (Some(common), Some(reference)) = (
        path(&["rev-parse", "--git-common-dir"]),
        git(dir, &["symbolic-ref", "-q", "HEAD"]),
    ) {
        let loose = common.join(reference);
        if loose.exists() {
            println!("cargo:rerun-if-changed={}", loose.display());
        }
        let packed = common.join("packed-refs");
        if packed.exists() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (proleptic Gregorian, UTC).
fn rfc3339_utc(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let seconds = epoch.rem_euclid(86_400);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3_600,
        seconds % 3_600 / 60,
        seconds % 60
    )
}
