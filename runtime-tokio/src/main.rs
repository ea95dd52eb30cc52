//! The `bao-kms-provider` binary: parse the command line, run the command, exit with its code.

use clap::Parser as _;

use bao_kms_runtime_tokio::cli::{self, Cli, ExitCode};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version requests are successes; every other parse error is a usage error.
            let _ = error.print();
            return if error.use_stderr() {
                std::process::ExitCode::from(ExitCode::Usage.code())
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    std::process::ExitCode::from(cli::run(cli).code())
}
