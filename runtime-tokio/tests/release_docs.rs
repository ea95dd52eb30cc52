//! The pictures in docs/diagrams are rendered from their committed Graphviz sources: a changed
//! source without a re-rendered SVG (or the reverse) fails here. Needs `dot` (Debian package
//! `graphviz`); without it the check says so and passes, except under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_rendered_diagrams_match_their_sources() {
    let dot = Command::new("dot")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !dot {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "graphviz is required in CI (apt-get install graphviz)"
        );
        println!("note: dot not found (Debian package `graphviz`); skipping");
        return;
    }
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/render-diagrams.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_diagram_is_shown_in_the_documentation() {
    let root = repo_root();
    let mut docs = String::new();
    for page in [
        "docs/operations/upgrade.md",
        "docs/architecture.md",
        "docs/install.md",
        "docs/rotation-safety.md",
    ] {
        docs.push_str(&std::fs::read_to_string(root.join(page)).unwrap_or_default());
    }
    for entry in std::fs::read_dir(root.join("docs/diagrams")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".dot") {
            assert!(
                docs.contains(&format!("diagrams/{stem}.svg")),
                "{stem}.svg is not referenced by any operator page"
            );
        }
    }
}
