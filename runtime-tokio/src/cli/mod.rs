//! The command line: argument parsing and dispatch. Every command runs core code; the only
//! CLI-specific logic is parsing arguments and rendering reports.

mod config_cmd;
mod exit;
mod serve;
mod version;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use exit::ExitCode;

use crate::config::Overrides;

/// The `bao-kms-provider` command line.
#[derive(Debug, Parser)]
#[command(
    name = "bao-kms-provider",
    version,
    about = "Kubernetes KMS v2 plugin backed by OpenBao Transit"
)]
pub struct Cli {
    /// Configuration file (default from BAO_KMS_PROVIDER_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log level: debug, info, warn or error (overrides logging.level).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Metrics listener host:port; empty disables it (overrides server.metricsAddress).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub metrics_address: Option<String>,
    /// Health listener host:port; empty disables it (overrides server.healthAddress).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub health_address: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the KMS v2 API on the configured Unix socket.
    Serve,
    /// Print the resolved configuration and the identity fingerprint.
    Config {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the build version.
    Version {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Report output formats.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON with a stable shape.
    Json,
}

impl Cli {
    /// The configuration overrides the global flags carry.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_path: self.config.clone(),
            log_level: self.log_level.clone(),
            metrics_address: self.metrics_address.clone(),
            health_address: self.health_address.clone(),
        }
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Serve => serve::run(&cli),
        Command::Config { output } => config_cmd::run(&cli, *output),
        Command::Version { output } => version::run(*output),
    }
}
