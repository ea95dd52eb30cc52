//! `config`: the resolved configuration (defaults, file, environment, flags) and the identity
//! fingerprint.

use super::{Cli, ExitCode, Output};
use crate::config;

pub(super) fn run(cli: &Cli, output: Output) -> ExitCode {
    let loaded = match config::load(&cli.overrides(), &config::process_env) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::Config;
        }
    };
    let summary = loaded.resolved_summary();
    let rendered = match output {
        Output::Text => Ok(summary.to_string()),
        Output::Json => serde_json::to_string_pretty(&summary),
    };
    match rendered {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::Success
        }
        Err(_) => ExitCode::Failure,
    }
}

#[path = "config_schema.rs"]
mod config_schema;

/// `config schema`: the JSON Schema (draft 2020-12) of the configuration file.
pub(super) fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&config_schema::schema()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::Success
        }
        Err(_) => ExitCode::Failure,
    }
}
