//! Fuzz regressions of the wire format, on stable and without cargo-fuzz.
//!
//! Every committed corpus file of the core's fuzz targets (`fuzz/corpus/<target>/`) is replayed
//! through exactly the check its target runs: the checks live in `fuzz/src/wire.rs`, included
//! here. A crash found by fuzzing becomes a named test below with its input inline.
//! The simulation and runtime targets are replayed by the fuzz crate's own tests
//! (`cargo test -p bao-kms-fuzz`, part of `cargo test --workspace`).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/src/wire.rs"]
mod wire;

/// A fuzz check: panics when an invariant breaks.
type Check = fn(&[u8]);

/// The core's fuzz targets and their checks.
const TARGETS: [(&str, Check); 6] = [
    ("key_id_parse", wire::key_id_parse),
    ("annotations_parse", wire::annotations_parse),
    ("ciphertext_prefix", wire::ciphertext_prefix),
    ("aad_canonical", wire::aad_canonical),
    ("state_file", wire::state_file),
    ("checkpoint", wire::checkpoint),
];

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn committed_corpora_pass_the_fuzz_checks() {
    for (target, check) in TARGETS {
        let files = corpus_files(target);
        assert!(
            files.len() >= 3,
            "{target}: only {} corpus files",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{target}: {} fails its fuzz check", file.display());
            }
        }
    }
}

#[test]
fn reference_go_escaping_matches_the_documented_rules() {
    assert_eq!(
        wire::reference::go_quote("<a&b>\u{2028}\u{2029}\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é"),
        "\"\\u003ca\\u0026b\\u003e\\u2028\\u2029\\\"\\\\\\n\\r\\t\\b\\f\\u0001\u{7f}é\""
    );
}

#[test]
fn edge_inputs_pass_the_fuzz_checks() {
    let golden_state = include_bytes!("fixtures/golden-one-record.json");
    let inputs: [(&str, &[u8]); 10] = [
        ("key_id_parse", b""),
        (
            "key_id_parse",
            "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQS\u{e9}".as_bytes(),
        ),
        ("annotations_parse", b"\xff"),
        (
            "ciphertext_prefix",
            b"vault:v4294967296:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
        ),
        (
            "ciphertext_prefix",
            b"vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB==",
        ),
        (
            "aad_canonical",
            "a\u{2028}<&>\0c\0i\0ns/x\0m\0l\x004294967295\0-9".as_bytes(),
        ),
        ("aad_canonical", b"\0\0\0\0\0\0\0"),
        ("state_file", &golden_state[..golden_state.len() - 1]),
        ("checkpoint", b"{}"),
        ("checkpoint", b"null"),
    ];
    for (target, data) in inputs {
        let (_, check) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
        check(data);
    }
}
