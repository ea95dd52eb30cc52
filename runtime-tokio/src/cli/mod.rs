//! The command line: argument parsing and dispatch. Every command runs core code; the only
//! CLI-specific logic is parsing arguments and rendering reports.

mod config_cmd;
mod doctor;
mod exit;
mod fleet;
mod init;
mod out;
mod policy;
mod probe;
pub mod report;
mod rotation;
mod serve;
pub mod session;
mod storage_scan;
mod upgrade;
mod version;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use exit::ExitCode;
pub use storage_scan::StorageScanArgs;

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
    /// Log level: debug, info, warn or error (overrides logging.level; serve and config only).
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        value_parser = ["debug", "info", "warn", "error"]
    )]
    pub log_level: Option<String>,
    /// Metrics listener host:port; empty disables it (overrides server.metricsAddress; serve
    /// and config only).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub metrics_address: Option<String>,
    /// Health listener host:port; empty disables it (overrides server.healthAddress; serve and
    /// config only).
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
    /// Check configuration, files, OpenBao, the Transit key and the data path.
    Doctor {
        /// A Kubernetes EncryptionConfiguration to cross-check against the configuration.
        #[arg(long, value_name = "PATH")]
        encryption_config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show where rotation stands: local registry, checkpoint and live Transit metadata.
    RotationPlan {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Like rotation-plan, with the limits of what a local check can prove.
    VerifyRotation {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Mark retired Transit versions below a version as removed (one-way for older releases).
    RetireVersions {
        /// Versions strictly below this one are removed.
        #[arg(long, value_name = "N")]
        before_version: u32,
        /// Write the change (the provider must be stopped); without it, only plan.
        #[arg(long)]
        apply: bool,
        /// The current state hash, as printed by the plan (required with --apply).
        #[arg(long, value_name = "HASH")]
        expected_state_hash: Option<String>,
        /// A `storage-scan --output json` report: shows the objects per retired version, and
        /// --apply refuses while any remain.
        #[arg(long, value_name = "FILE")]
        storage_report: Option<PathBuf>,
        /// Retire even though the storage report shows objects still referencing the versions.
        #[arg(long)]
        ignore_storage_references: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Restore removed versions to retired.
    RestoreVersions {
        /// Comma-separated versions to restore.
        #[arg(long, value_name = "N,N", value_delimiter = ',', required = true)]
        versions: Vec<u32>,
        /// Write the change (the provider must be stopped); without it, only plan.
        #[arg(long)]
        apply: bool,
        /// The current state hash, as printed by the plan (required with --apply).
        #[arg(long, value_name = "HASH")]
        expected_state_hash: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Probe a running provider through its socket, as kube-apiserver would.
    Probe {
        /// The provider's socket [default: server.socketPath of --config, else
        /// /run/openbao-kms/kms.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Time limit for the whole probe, e.g. 10s.
        #[arg(long, default_value = "10s")]
        timeout: String,
        /// The key_id the other control-plane nodes report.
        #[arg(long)]
        expected_key_id: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print policies for other systems.
    Policy {
        /// Which policy.
        #[command(subcommand)]
        kind: PolicyKind,
    },
    /// Print the resolved configuration and the identity fingerprint.
    Config {
        /// `schema` prints the JSON Schema of the configuration file.
        #[command(subcommand)]
        action: Option<ConfigAction>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Generate configuration, policy and deployment files from one values file.
    Init {
        /// Values file (provider configuration format).
        #[arg(long, value_name = "PATH")]
        values: PathBuf,
        /// Output directory (absent or empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Deployment model.
        #[arg(long, value_enum, default_value_t = InitModel::Systemd)]
        model: InitModel,
        /// Generate a new key lineage id.
        #[arg(long)]
        new_key: bool,
        /// OpenBao policy name.
        #[arg(long)]
        policy_name: Option<String>,
        /// Container image pinned by digest (static-pod only).
        #[arg(long)]
        image: Option<String>,
        /// Socket group id (static-pod only).
        #[arg(long)]
        socket_gid: Option<u32>,
    },
    /// Is it safe to upgrade to, or roll back to, another release on this node?
    UpgradeCheck {
        /// Another release's binary (its `version --output json` is read).
        #[arg(long, value_name = "PATH", conflicts_with = "target_manifest")]
        target_binary: Option<PathBuf>,
        /// Another release's compatibility manifest (TOML or the JSON of `version --output json`).
        #[arg(long, value_name = "PATH")]
        target_manifest: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Compare the key_id hash, Transit version, rotation state and readiness of every node.
    FleetCheck {
        /// A node's metrics URL (repeat for every control-plane node).
        #[arg(long = "metrics-url", value_name = "URL", required = true)]
        metrics_urls: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Count, read-only, which key every value in etcd is stored under (gates retire-versions).
    StorageScan(StorageScanArgs),
    /// Print shell completion.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the build version.
    Version {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyKind {
    /// The least-privilege OpenBao ACL policy for this configuration.
    Openbao {
        /// Include `auth/token/renew-self`.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        include_token_renewal: bool,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the JSON Schema of the configuration file.
    Schema,
}

/// `init` deployment models.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum InitModel {
    /// A hardened systemd service.
    Systemd,
    /// A kubelet static pod.
    StaticPod,
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

impl Command {
    /// The command's name as typed.
    fn name(&self) -> &'static str {
        match self {
            Self::Serve => "serve",
            Self::Doctor { .. } => "doctor",
            Self::RotationPlan { .. } => "rotation-plan",
            Self::VerifyRotation { .. } => "verify-rotation",
            Self::RetireVersions { .. } => "retire-versions",
            Self::RestoreVersions { .. } => "restore-versions",
            Self::Probe { .. } => "probe",
            Self::Policy { .. } => "policy openbao",
            Self::Config { .. } => "config",
            Self::Init { .. } => "init",
            Self::UpgradeCheck { .. } => "upgrade-check",
            Self::FleetCheck { .. } => "fleet-check",
            Self::StorageScan(_) => "storage-scan",
            Self::Completion { .. } => "completion",
            Self::Version { .. } => "version",
        }
    }

    /// Which global flags change what this command does: `(--config, the listener and log
    /// flags)`. A flag a command would accept and then ignore is refused instead.
    fn uses_global_flags(&self) -> (bool, bool) {
        match self {
            Self::Serve | Self::Config { action: None, .. } => (true, true),
            Self::Doctor { .. }
            | Self::RotationPlan { .. }
            | Self::VerifyRotation { .. }
            | Self::RetireVersions { .. }
            | Self::RestoreVersions { .. }
            | Self::Policy { .. }
            | Self::UpgradeCheck { .. }
            | Self::StorageScan(_)
            | Self::Probe { .. } => (true, false),
            Self::Config {
                action: Some(ConfigAction::Schema),
                ..
            }
            | Self::Init { .. }
            | Self::FleetCheck { .. }
            | Self::Completion { .. }
            | Self::Version { .. } => (false, false),
        }
    }
}

impl Cli {
    /// The global flags given that `command` would ignore.
    fn ignored_flags(&self) -> Vec<&'static str> {
        let (config, runtime) = self.command.uses_global_flags();
        let mut ignored = Vec::new();
        if !config && self.config.is_some() {
            ignored.push("--config");
        }
        if !runtime {
            for (flag, given) in [
                ("--log-level", self.log_level.is_some()),
                ("--metrics-address", self.metrics_address.is_some()),
                ("--health-address", self.health_address.is_some()),
            ] {
                if given {
                    ignored.push(flag);
                }
            }
        }
        ignored
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let ignored = cli.ignored_flags();
    if !ignored.is_empty() {
        eprintln!(
            "error: {} {} no effect on `{}`; remove {}",
            ignored.join(", "),
            if ignored.len() == 1 { "has" } else { "have" },
            cli.command.name(),
            if ignored.len() == 1 { "it" } else { "them" },
        );
        return ExitCode::Usage;
    }
    match &cli.command {
        Command::Serve => serve::run(&cli),
        Command::Doctor {
            encryption_config,
            output,
        } => doctor::run(&cli, encryption_config.as_deref(), *output),
        Command::RotationPlan { output } => rotation::plan(&cli, *output, false),
        Command::VerifyRotation { output } => rotation::plan(&cli, *output, true),
        Command::RetireVersions {
            before_version,
            apply,
            expected_state_hash,
            storage_report,
            ignore_storage_references,
            output,
        } => rotation::retire(
            &cli,
            *before_version,
            *apply,
            expected_state_hash.as_deref(),
            rotation::StorageGate {
                report: storage_report.as_deref(),
                ignore: *ignore_storage_references,
            },
            *output,
        ),
        Command::RestoreVersions {
            versions,
            apply,
            expected_state_hash,
            output,
        } => rotation::restore(
            &cli,
            versions,
            *apply,
            expected_state_hash.as_deref(),
            *output,
        ),
        Command::Probe {
            socket,
            timeout,
            expected_key_id,
            output,
        } => probe::run(
            &cli,
            socket.as_deref(),
            timeout,
            expected_key_id.as_deref(),
            *output,
        ),
        Command::Policy {
            kind: PolicyKind::Openbao {
                include_token_renewal,
            },
        } => policy::openbao(&cli, *include_token_renewal),
        Command::Config {
            action: Some(ConfigAction::Schema),
            ..
        } => config_cmd::schema(),
        Command::Config {
            action: None,
            output,
        } => config_cmd::run(&cli, *output),
        Command::Init {
            values,
            out,
            model,
            new_key,
            policy_name,
            image,
            socket_gid,
        } => init::run(&init::InitArgs {
            values,
            out,
            model: *model,
            new_key: *new_key,
            policy_name: policy_name.as_deref(),
            image: image.as_deref(),
            socket_gid: *socket_gid,
        }),
        Command::UpgradeCheck {
            target_binary,
            target_manifest,
            output,
        } => upgrade::run(
            &cli,
            target_binary.as_deref(),
            target_manifest.as_deref(),
            *output,
        ),
        Command::FleetCheck {
            metrics_urls,
            output,
        } => fleet::run(metrics_urls, *output),
        Command::StorageScan(args) => storage_scan::run(&cli, args),
        Command::Completion { shell } => completion(*shell),
        Command::Version { output } => version::run(*output),
    }
}

fn completion(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    // Rendered into memory first: the generator panics on a failed write, and a closed pipe
    // (`completion zsh | head`) is not a failure.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, BIN_NAME, &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Bash {
        script = fix_bash_subcommand_names(&script);
    }
    out::text_then(&script, ExitCode::Success)
}

/// The binary's name, as completion scripts register it.
const BIN_NAME: &str = "bao-kms-provider";

/// clap_complete 4.6 escapes the hyphens of the binary name in two different ways in the bash
/// script: the word-walking loop sets `cmd=bao__kms__provider__subcmd__doctor`, while the
/// option table is keyed `bao__subcmd__kms__subcmd__provider__subcmd__doctor`, so no
/// subcommand's flags ever complete. Rewriting the table keys to the loop's spelling restores
/// them; `cli_completion.rs` checks the result in a real bash with `compgen`.
fn fix_bash_subcommand_names(script: &str) -> String {
    let loop_name = BIN_NAME.replace('-', "__");
    let table_name = BIN_NAME.replace('-', "__subcmd__");
    script.replace(&table_name, &loop_name)
}
