//! `version`: the build identity.

use bao_kms_core::compat::Manifest;
use serde::Serialize;

use super::{ExitCode, Output, out};

/// This build's version, written into the `plugin-version` annotation.
pub(crate) const PLUGIN_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Build facts, set by the release build through environment variables at compile time.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BuildInfo {
    /// Version.
    pub(crate) version: &'static str,
    /// Source commit.
    pub(crate) commit: &'static str,
    /// Build date.
    pub(crate) build_date: &'static str,
    /// Whether the tree had uncommitted changes.
    pub(crate) dirty: &'static str,
}

/// The build facts of this binary.
pub(crate) fn build_info() -> BuildInfo {
    BuildInfo {
        version: PLUGIN_VERSION,
        commit: option_env!("BAO_KMS_BUILD_COMMIT").unwrap_or("unknown"),
        build_date: option_env!("BAO_KMS_BUILD_DATE").unwrap_or("unknown"),
        dirty: option_env!("BAO_KMS_BUILD_DIRTY").unwrap_or("unknown"),
    }
}

/// `version --output json`: the build facts and the compatibility manifest, so another
/// release's upgrade check can compare formats without reading release notes.
#[derive(Debug, Serialize)]
struct VersionReport {
    #[serde(flatten)]
    build: BuildInfo,
    compatibility: Manifest,
}

pub(super) fn run(output: Output) -> ExitCode {
    let info = build_info();
    match output {
        Output::Text => out::text_then(
            &format!(
                "version: {}\ncommit: {}\nbuildDate: {}\ndirty: {}\n",
                info.version, info.commit, info.build_date, info.dirty
            ),
            ExitCode::Success,
        ),
        Output::Json => match serde_json::to_string_pretty(&VersionReport {
            build: info,
            compatibility: Manifest::this_release(),
        }) {
            Ok(text) => out::line_then(&text, ExitCode::Success),
            Err(_) => ExitCode::Failure,
        },
    }
}
