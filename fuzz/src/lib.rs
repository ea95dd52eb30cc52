//! Fuzzing of bao-kms-provider: the checks behind the cargo-fuzz targets in `fuzz_targets/`.
//!
//! Each target is one line that hands libFuzzer's bytes to a check here, so the committed
//! corpora (`corpus/<target>/`) can be replayed through the very same checks by `cargo test`
//! on stable, without cargo-fuzz ([`TARGETS`], and the tests below). The checks for the core's
//! wire format live in [`wire`], which `core/tests/fuzz_regressions.rs` also includes.
//!
//! See `docs/fuzzing.md` for the targets, their invariants and how to run them.

pub mod runtime;
pub mod seeds;
pub mod sim;
pub mod storage;
pub mod wire;

/// A fuzz target: its name (the file in `fuzz_targets/` and the corpus directory) and check.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: [Target; 11] = [
    ("key_id_parse", wire::key_id_parse),
    ("annotations_parse", wire::annotations_parse),
    ("ciphertext_prefix", wire::ciphertext_prefix),
    ("aad_canonical", wire::aad_canonical),
    ("state_file", wire::state_file),
    ("checkpoint", wire::checkpoint),
    ("config_yaml", runtime::config_yaml),
    ("transit_json", runtime::transit_json),
    ("decrypt_request", sim::decrypt_request),
    ("provider_ops", sim::provider_ops),
    ("encrypted_object", storage::encrypted_object),
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus_dir(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target)
    }

    /// Runs every file of one corpus through its check, naming the file that fails.
    fn replay(target: &str, check: fn(&[u8])) -> usize {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for file in &files {
            let data = std::fs::read(file).expect("corpus file is readable");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{target}: corpus file {} fails its check", file.display());
            }
        }
        files.len()
    }

    #[test]
    fn every_committed_corpus_passes_its_check() {
        for (target, check) in TARGETS {
            let files = replay(target, check);
            assert!(files >= 3, "{target}: only {files} corpus files");
        }
    }

    #[test]
    fn every_target_has_a_source_file() {
        for (target, _) in TARGETS {
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz_targets")
                .join(format!("{target}.rs"));
            assert!(source.is_file(), "{} is missing", source.display());
        }
    }

    #[test]
    fn scenario_seeds_decode_to_the_scenarios_they_encode() {
        use sim::{Op, Scenario};
        let scenario = Scenario {
            nodes: 2,
            ops: vec![
                Op::Status(1),
                Op::Encrypt(2),
                Op::DecryptStored(3, 4),
                Op::DecryptTampered(5, 6, 7),
                Op::Rotate,
                Op::Advance(200),
                Op::Restart(1),
                Op::FailNextSave(0),
                Op::Outage(true),
                Op::Outage(false),
                Op::WallClockJump(-1234),
                Op::WallClockJump(i16::MAX),
                Op::Stop(2),
                Op::Restart(2),
            ],
        };
        assert_eq!(Scenario::decode(&scenario.encode()), scenario);
        for (name, bytes) in sim::provider_ops_seeds() {
            let decoded = Scenario::decode(&bytes);
            assert_eq!(decoded.encode(), bytes, "{name}");
        }
    }

    #[test]
    fn decrypt_request_seeds_reach_the_paths_they_are_named_after() {
        let outcomes: std::collections::BTreeMap<_, _> = sim::decrypt_request_seeds()
            .into_iter()
            .map(|(name, bytes)| (name, sim::decrypt_request_outcome(&bytes)))
            .collect();
        let real = sim::DecryptOutcome {
            valid: true,
            transit_decrypts: 1,
            decrypted: true,
        };
        assert_eq!(outcomes["real-request-spelled-out"], real);
        assert_eq!(outcomes["real-request-by-flags"], real);
        let edited = &outcomes["real-with-ciphertext-edit"];
        assert!(edited.valid && edited.transit_decrypts == 1 && !edited.decrypted);
        for refused_locally in [
            "real-with-version-annotation-2",
            "unknown-key-id",
            "garbage",
        ] {
            let outcome = &outcomes[refused_locally];
            assert!(
                !outcome.valid && outcome.transit_decrypts == 0,
                "{refused_locally}"
            );
        }
    }

    #[test]
    fn provider_ops_seeds_reach_rotation_and_decrypt_their_seeds() {
        for (name, bytes) in sim::provider_ops_seeds() {
            let outcome = sim::provider_ops_outcome(&bytes);
            assert!(outcome.seeds >= 1, "{name}: {outcome:?}");
            assert!(outcome.decrypted >= outcome.seeds, "{name}: {outcome:?}");
            if name != "one-node-encrypt-decrypt" {
                assert!(
                    outcome.active_versions.iter().any(|version| *version >= 2),
                    "{name} promotes no rotation: {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn annotation_maps_round_trip_through_the_seed_layout() {
        let map = wire::golden_scope();
        let key_id = wire::golden_key_id();
        let version = bao_kms_core::KeyVersion::new(3).expect("version");
        let annotations =
            bao_kms_core::Annotations::for_encrypt(map.key_scope(), &key_id, version, "v0.1.0");
        let bytes = wire::encode_annotation_map(&annotations);
        let decoded = wire::decode_annotation_map(&mut wire::Bytes::new(&bytes));
        assert_eq!(decoded, annotations);
    }

    /// Regenerates the seed corpora from the project's vectors, fixtures and reference
    /// answers: `cargo test -p bao-kms-fuzz -- --ignored write_seed_corpora`.
    #[test]
    #[ignore = "writes files: run by hand after a wire-format or simulation change"]
    fn write_seed_corpora() {
        for (target, seeds) in seeds::all() {
            let dir = corpus_dir(target);
            std::fs::create_dir_all(&dir).expect("create corpus directory");
            for (name, bytes) in seeds {
                std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
            }
        }
    }

    #[test]
    fn generated_seeds_pass_their_checks() {
        for (target, seeds) in seeds::all() {
            let (_, check) = TARGETS
                .iter()
                .find(|(name, _)| *name == target)
                .expect("seeds of a known target");
            for (name, bytes) in seeds {
                if std::panic::catch_unwind(|| check(&bytes)).is_err() {
                    panic!("{target}: generated seed {name} fails its check");
                }
            }
        }
    }
}
