//! What the operator commands share with `serve`: load and check the configuration, build the
//! OpenBao client, locate the registry files. One place, so no command grows its own loader.

use super::{Cli, ExitCode};
use crate::adapters::client_settings;
use crate::config::{self, Config, ConfigError};
use crate::files::RegistryPaths;
use crate::openbao::OpenBaoClient;

/// A loaded configuration with its client and registry paths.
#[derive(Debug)]
pub struct Session {
    /// The validated configuration.
    pub config: Config,
    /// The OpenBao client (no request made yet).
    pub client: OpenBaoClient,
    /// The registry files.
    pub paths: RegistryPaths,
}

/// Loads the configuration named by the global flags, printing the error and returning
/// exit code 3 when it is invalid.
pub fn load_config(cli: &Cli) -> Result<Config, ExitCode> {
    config::load(&cli.overrides(), &config::process_env).map_err(|error| {
        eprintln!("{error}");
        ExitCode::Config
    })
}

impl Session {
    /// Loads the configuration, builds the client and the registry paths; every failure here
    /// is a configuration problem (exit 3).
    pub fn open(cli: &Cli) -> Result<Self, ExitCode> {
        let config = load_config(cli)?;
        let client = OpenBaoClient::new(client_settings(&config)).map_err(|error| {
            eprintln!(
                "{}",
                ConfigError::new(vec![config::Problem::general(error.to_string())])
            );
            ExitCode::Config
        })?;
        let paths = RegistryPaths::new(&config.state_path).map_err(|error| {
            eprintln!(
                "{}",
                ConfigError::new(vec![config::Problem::new("state.path", error.to_string())])
            );
            ExitCode::Config
        })?;
        Ok(Self {
            config,
            client,
            paths,
        })
    }
}
