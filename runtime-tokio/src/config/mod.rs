//! Configuration: the `configVersion: v1alpha1` YAML file, its environment variables and flags.
//!
//! Loading happens in three steps with one error type:
//!
//! ```text
//!  defaults ─┐
//!  YAML file ├─ decode (strict) ─ merge ─ validate ──> Config ──> check_files (serve, doctor)
//!  env vars  │                     ▲
//!  flags ────┘─────────────────────┘
//! ```
//!
//! - **Decode** with `serde_norway` into structs that refuse unknown keys at every level and
//!   refuse implicit scalar coercion: a string field given an unquoted number or boolean is an
//!   error, and durations are strings in Go syntax with a unit (`"2s"`, `"1m30s"`).
//! - **Merge** with precedence defaults < file < environment < flags. Only the variables named
//!   by the `ENV_*` constants are read, and only through the lookup function the caller passes,
//!   so tests stay hermetic ([`process_env`] reads the real environment).
//! - **Validate** the effective values, including cross-field rules, collecting every problem
//!   into one [`ConfigError`]: `config invalid; <field>: <message>; …`. Value rules reuse the
//!   core's checks (`check_label`, `check_relative_path`, [`IdentityScope::new`]).
//! - [`check_files`] inspects the files and directories the configuration names. [`load`] does
//!   not call it: `serve` and `doctor` do.
//!
//! The CLI exits with [`EXIT_CONFIG`] on any of these errors.
//!
//! [`IdentityScope::new`]: bao_kms_core::identity::IdentityScope::new

use std::io::Read;
use std::path::PathBuf;

mod address;
mod bounds;
mod duration;
mod error;
mod files;
mod schema;
mod settings;
mod validate;

pub use bounds::{DURATION_BOUNDS, DurationBounds};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{ConfigError, Problem};
pub use files::check_files;
pub use settings::{
    AuthMethod, AuthSettings, BootstrapSettings, CONFIG_VERSION, Config, JwtSettings, LogFormat,
    LogLevel, LoggingSettings, OpenBaoSettings, ResolvedSummary, RotationSettings, ServerSettings,
    StatusSettings,
};

/// Process exit code for a configuration load or validation error.
pub const EXIT_CONFIG: i32 = 3;

/// Conventional location of the configuration file (never read implicitly).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/openbao-kms/config.yaml";

/// Variables naming the config file; the first one set wins.
pub const ENV_CONFIG_PATH: [&str; 2] = ["BAO_KMS_PROVIDER_CONFIG", "BAO_KMS_PROVIDER_CONFIG_PATH"];
/// Variables overriding `logging.level`; the first one set wins.
pub const ENV_LOG_LEVEL: [&str; 2] = [
    "BAO_KMS_PROVIDER_LOG_LEVEL",
    "BAO_KMS_PROVIDER_LOGGING_LEVEL",
];
/// Variables overriding `server.metricsAddress`; the first one set wins.
pub const ENV_METRICS_ADDRESS: [&str; 2] = [
    "BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS",
    "BAO_KMS_PROVIDER_SERVER_METRICSADDRESS",
];
/// Variables overriding `server.healthAddress`; the first one set wins.
pub const ENV_HEALTH_ADDRESS: [&str; 2] = [
    "BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS",
    "BAO_KMS_PROVIDER_SERVER_HEALTHADDRESS",
];

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// How the loader reads an environment variable: `None` when unset.
type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Values given on the command line; each one wins over the file and the environment.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Overrides {
    /// `--config`.
    pub config_path: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--metrics-address`; an empty value disables the metrics listener.
    pub metrics_address: Option<String>,
    /// `--health-address`; an empty value disables the health listener.
    pub health_address: Option<String>,
}

/// Reads the configuration file named by `--config` or the environment, then merges and
/// validates it.
///
/// The result remembers the file path for [`check_files`].
///
/// # Errors
/// [`ConfigError`] when no path is given, the file cannot be read or decoded, or any value is
/// invalid (every problem is listed).
pub fn load(
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let path = overrides
        .config_path
        .clone()
        .filter(|path| !path.as_os_str().is_empty())
        .or_else(|| first_env(env, ENV_CONFIG_PATH).map(|(_, value)| PathBuf::from(value)));
    let Some(path) = path else {
        return Err(ConfigError::single(Problem::general(
            "--config is required (or BAO_KMS_PROVIDER_CONFIG)",
        )));
    };
    let text = read_config(&path).map_err(|message| {
        ConfigError::single(Problem::general(format!(
            "cannot read config file {}: {message}",
            path.display()
        )))
    })?;
    let mut config = parse_str(&text, overrides, env)?;
    config.config_path = Some(path);
    Ok(config)
}

/// Decodes, merges and validates configuration text (the file contents).
///
/// `overrides.config_path` is ignored here.
///
/// # Errors
/// [`ConfigError`] with the decoder's message (and its line and column) when the YAML is
/// malformed or has an unknown key or a wrongly typed value; otherwise every validation problem.
pub fn parse_str(
    yaml: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file: schema::FileConfig = serde_norway::from_str(yaml)
        .map_err(|error| ConfigError::single(Problem::general(error.to_string())))?;
    let config = validate::validate(file, overrides, env)?;
    Ok(config)
}

/// Reads a variable from the process environment; pass it to [`load`] in the binary.
///
/// A variable that is not valid Unicode counts as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The first of `names` that is set to a non-empty value, with its name.
fn first_env(env: EnvLookup<'_>, names: [&'static str; 2]) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|name| {
        env(name)
            .filter(|value| !value.is_empty())
            .map(|value| (name, value))
    })
}

fn read_config(path: &std::path::Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err("file is larger than 1 MiB".into());
    }
    String::from_utf8(bytes).map_err(|_| "file is not UTF-8".into())
}
