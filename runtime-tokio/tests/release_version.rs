//! The build facts `build.rs` embeds: the commit and date in `version --output json` and in
//! `openbao_kms_build_info`, taken from git when the build did not name them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn version_json() -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_bao-kms-provider"))
        .args(["version", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[test]
fn version_json_shows_the_commit_of_the_checkout_it_was_built_from() {
    let report = version_json();
    let commit = report["commit"].as_str().unwrap();
    // The same facts the binary reports reach every target of the package.
    assert_eq!(commit, env!("BAO_KMS_BUILD_COMMIT"));
    let Some(head) = git(&["rev-parse", "HEAD"]) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI builds from a git checkout"
        );
        return;
    };
    // An explicit BAO_KMS_BUILD_COMMIT (a build from a tarball) wins over git.
    if std::env::var_os("BAO_KMS_BUILD_COMMIT").is_none() {
        assert_eq!(commit, head);
    }
    assert!(["true", "false"].contains(&report["dirty"].as_str().unwrap()));
}

#[test]
fn the_build_date_is_an_rfc3339_utc_timestamp_from_the_commit_or_source_date_epoch() {
    let report = version_json();
    let date = report["buildDate"].as_str().unwrap();
    let bytes = date.as_bytes();
    assert_eq!(bytes.len(), 20, "{date}");
    for (index, byte) in bytes.iter().enumerate() {
        let expected_separator = match index {
            4 | 7 => Some(b'-'),
            10 => Some(b'T'),
            13 | 16 => Some(b':'),
            19 => Some(b'Z'),
            _ => None,
        };
        match expected_separator {
            Some(separator) => assert_eq!(*byte, separator, "{date}"),
            None => assert!(byte.is_ascii_digit(), "{date}"),
        }
    }
    let explicit = ["SOURCE_DATE_EPOCH", "BAO_KMS_BUILD_DATE"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    if !explicit {
        // git prints the commit date in local time; TZ=UTC makes that UTC.
        let committed = Command::new("git")
            .args(["log", "-1", "--format=%cd"])
            .arg("--date=format-local:%Y-%m-%dT%H:%M:%SZ")
            .arg("HEAD")
            .env("TZ", "UTC")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        if committed.status.success() {
            assert_eq!(String::from_utf8_lossy(&committed.stdout).trim(), date);
        }
    }
}
