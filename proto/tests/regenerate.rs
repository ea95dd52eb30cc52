//! Keeps the checked-in generated code (`src/generated/v2.rs`) in sync with the `.proto` file.
//!
//! The code is generated with `protox` (a pure-Rust protobuf compiler, so no `protoc` binary is
//! needed) and `tonic-prost-build`, exactly as a `build.rs` would, but into a temporary directory.
//! The result is compared byte for byte with the committed file.
//!
//! To (re)generate the committed file after changing the `.proto` or bumping tonic/prost:
//!
//! ```text
//! BAO_KMS_REGENERATE=1 cargo test -p bao-kms-proto --test regenerate
//! ```

use std::fs;
use std::path::{Path, PathBuf};

/// Name of the environment variable that switches the test from "compare" to "overwrite".
const REGENERATE_ENV: &str = "BAO_KMS_REGENERATE";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory under the system temp dir, removed again on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "bao-kms-proto-regenerate-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("main")
                .replace("::", "-"),
        ));
        if path.exists() {
            fs::remove_dir_all(&path).expect("remove stale scratch dir");
        }
        fs::create_dir_all(&path).expect("create scratch dir");
        Self(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir is harmless.
        let _ignored = fs::remove_dir_all(&self.0);
    }
}

/// Runs the code generator and returns the bytes of the produced `v2.rs`.
fn generate(out_dir: &Path) -> Vec<u8> {
    let include_dir = crate_dir().join("proto");
    let proto_file = include_dir.join("k8s/kms/v2/api.proto");
    let fds = protox::compile([&proto_file], [&include_dir]).expect("protox compiles api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .btree_map(".")
        .emit_rerun_if_changed(false)
        .out_dir(out_dir)
        .compile_fds(fds)
        .expect("tonic-prost-build generates code");
    fs::read(out_dir.join("v2.rs")).expect("generator wrote v2.rs")
}

#[test]
fn generated_code_matches_the_proto() {
    let scratch = ScratchDir::new();
    let fresh = generate(&scratch.0);
    let checked_in_path = crate_dir().join("src/generated/v2.rs");

    if std::env::var(REGENERATE_ENV).is_ok_and(|v| v == "1") {
        fs::write(&checked_in_path, &fresh).expect("write src/generated/v2.rs");
        return;
    }

    let checked_in = fs::read(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is out of date with proto/k8s/kms/v2/api.proto (or with the tonic/prost versions).\n\
         Regenerate it with:\n\n    \
         {REGENERATE_ENV}=1 cargo test -p bao-kms-proto --test regenerate\n\n\
         and commit the result.",
        checked_in_path.display(),
    );
}
