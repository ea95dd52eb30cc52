//! `doctor`: checks everything `serve` needs, in the order `serve` needs it, and reports every
//! check in the shared report format.
//!
//! Checks (ids are stable):
//!
//! | id | what |
//! |---|---|
//! | `config.load` | the typed configuration loads (file, environment, flags) |
//! | `config.validate` | the files and directories it names pass `serve`'s checks |
//! | `config.compatibility` | warns about keys an older release rejects |
//! | `socket.group` | `server.socketGroup` resolves locally |
//! | `auth.credentials` | credential files are readable; a JWT passes the local claim checks |
//! | `kubernetes.encryption_config` | with `--encryption-config`: the KMS v2 provider matches |
//! | `openbao.tls` | the CA bundle and TLS settings load (the client is built) |
//! | `openbao.health` | `sys/health`: initialized and unsealed (standby warns) |
//! | `openbao.auth` | a token is obtained with the configured method |
//! | `transit.capabilities` | required capabilities present, prohibited ones absent |
//! | `transit.metadata` | the key metadata is readable |
//! | `transit.profile` | the core's key profile findings (each with its impact) |
//! | `transit.disable_upsert` | the mount has `disable_upsert=true` |
//! | `rotation.in_progress` | warns when a rotation is pending (do not upgrade now) |
//! | `transit.probe` | encrypt/decrypt round trip at the latest version |
//! | `key_id.deterministic` | the latest version's key_id derives the same twice, and as stored |
//! | `kms.status_encrypt` | an in-process provider's Status and Encrypt agree on the key_id |
//!
//! A check whose prerequisite failed is reported as `skip` with the reason. Exit codes: 3 when
//! the configuration cannot be loaded (the report is still printed, with `config.load` failed
//! and every other check skipped), 4 when any check failed, 0 otherwise (warnings included).
//!
//! `doctor` never writes: not the registry state (the in-process provider runs with a writer
//! that discards saves), not the socket (it never connects to or binds the running one).
//! Messages carry no token, no credential, no path of a credential file and, where avoidable,
//! no Transit key name.

mod capabilities;
mod encryption_config;
mod kms;
mod local;
mod transit;

use std::path::Path;

use bao_kms_core::KeyMetadata;

use super::report::{CheckStatus, Report};
use super::{Cli, ExitCode, Output};
use crate::adapters::client_settings;
use crate::config::{self, Config};
use crate::files::RegistryPaths;
use crate::openbao::OpenBaoClient;

/// Every check of the report, in order.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Check {
    ConfigLoad,
    ConfigValidate,
    ConfigCompatibility,
    SocketGroup,
    AuthCredentials,
    KubernetesEncryptionConfig,
    OpenBaoTls,
    OpenBaoHealth,
    OpenBaoAuth,
    TransitCapabilities,
    TransitMetadata,
    TransitProfile,
    TransitDisableUpsert,
    RotationInProgress,
    TransitProbe,
    KeyIdDeterministic,
    KmsStatusEncrypt,
}

impl Check {
    const ALL: [Self; 17] = [
        Self::ConfigLoad,
        Self::ConfigValidate,
        Self::ConfigCompatibility,
        Self::SocketGroup,
        Self::AuthCredentials,
        Self::KubernetesEncryptionConfig,
        Self::OpenBaoTls,
        Self::OpenBaoHealth,
        Self::OpenBaoAuth,
        Self::TransitCapabilities,
        Self::TransitMetadata,
        Self::TransitProfile,
        Self::TransitDisableUpsert,
        Self::RotationInProgress,
        Self::TransitProbe,
        Self::KeyIdDeterministic,
        Self::KmsStatusEncrypt,
    ];

    fn id(self) -> &'static str {
        match self {
            Self::ConfigLoad => "config.load",
            Self::ConfigValidate => "config.validate",
            Self::ConfigCompatibility => "config.compatibility",
            Self::SocketGroup => "socket.group",
            Self::AuthCredentials => "auth.credentials",
            Self::KubernetesEncryptionConfig => "kubernetes.encryption_config",
            Self::OpenBaoTls => "openbao.tls",
            Self::OpenBaoHealth => "openbao.health",
            Self::OpenBaoAuth => "openbao.auth",
            Self::TransitCapabilities => "transit.capabilities",
            Self::TransitMetadata => "transit.metadata",
            Self::TransitProfile => "transit.profile",
            Self::TransitDisableUpsert => "transit.disable_upsert",
            Self::RotationInProgress => "rotation.in_progress",
            Self::TransitProbe => "transit.probe",
            Self::KeyIdDeterministic => "key_id.deterministic",
            Self::KmsStatusEncrypt => "kms.status_encrypt",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::ConfigLoad => "configuration loads",
            Self::ConfigValidate => "configured files and directories are valid",
            Self::ConfigCompatibility => "configuration is readable by older releases",
            Self::SocketGroup => "socket group resolves",
            Self::AuthCredentials => "credentials are readable and locally valid",
            Self::KubernetesEncryptionConfig => "EncryptionConfiguration uses this provider",
            Self::OpenBaoTls => "CA bundle and TLS settings load",
            Self::OpenBaoHealth => "OpenBao is initialized and unsealed",
            Self::OpenBaoAuth => "login succeeds",
            Self::TransitCapabilities => "token capabilities are least-privilege",
            Self::TransitMetadata => "Transit key metadata is readable",
            Self::TransitProfile => "Transit key profile is safe",
            Self::TransitDisableUpsert => "Transit mount has disable_upsert=true",
            Self::RotationInProgress => "no key rotation in progress",
            Self::TransitProbe => "Transit encrypt/decrypt round trip",
            Self::KeyIdDeterministic => "key_id derivation is deterministic",
            Self::KmsStatusEncrypt => "in-process Status and Encrypt agree on key_id",
        }
    }
}

/// An outcome of one check: status and redacted message.
type Outcome = (CheckStatus, String);

fn pass(message: impl Into<String>) -> Outcome {
    (CheckStatus::Pass, message.into())
}

fn warn(message: impl Into<String>) -> Outcome {
    (CheckStatus::Warn, message.into())
}

fn fail(message: impl Into<String>) -> Outcome {
    (CheckStatus::Fail, message.into())
}

fn skip(message: impl Into<String>) -> Outcome {
    (CheckStatus::Skip, message.into())
}

/// Names the OpenBao server in a failure, so a fleet with several servers shows which one.
fn at_address((status, message): Outcome, address: &str) -> Outcome {
    if status == CheckStatus::Fail && !message.contains(address) {
        (status, format!("{message} (OpenBao at {address})"))
    } else {
        (status, message)
    }
}

/// The report under construction.
struct Doctor {
    report: Report,
}

impl Doctor {
    fn new() -> Self {
        Self {
            report: Report::new("doctor"),
        }
    }

    /// Records `check` and returns whether it did not fail (pass or warn).
    fn record(&mut self, check: Check, (status, message): Outcome) -> bool {
        self.report.push(check.id(), check.title(), status, message);
        matches!(status, CheckStatus::Pass | CheckStatus::Warn)
    }

    fn skip(&mut self, check: Check, reason: &str) {
        self.record(check, skip(reason));
    }

    /// Skips every check after `after`.
    fn skip_rest(&mut self, after: Check, reason: &str) {
        for check in Check::ALL
            .into_iter()
            .skip_while(|check| *check != after)
            .skip(1)
        {
            self.skip(check, reason);
        }
    }
}

pub(super) fn run(cli: &Cli, encryption_config: Option<&Path>, output: Output) -> ExitCode {
    let mut doctor = Doctor::new();
    let config = match config::load(&cli.overrides(), &config::process_env) {
        Ok(config) => config,
        Err(error) => {
            doctor.record(Check::ConfigLoad, fail(error.to_string()));
            doctor.skip_rest(Check::ConfigLoad, "config.load failed");
            // The report goes to stdout; the exit code says the configuration is the problem.
            let _ = doctor.report.emit(output);
            return ExitCode::Config;
        }
    };
    doctor.record(
        Check::ConfigLoad,
        pass(format!(
            "auth method {}, identity {}",
            config.auth.method.name(),
            config.identity_fingerprint().as_str()
        )),
    );
    doctor.record(Check::ConfigValidate, local::validate(&config));
    doctor.record(Check::ConfigCompatibility, local::compatibility(&config));
    doctor.record(Check::SocketGroup, local::socket_group(&config));
    let credentials_ok = doctor.record(Check::AuthCredentials, local::credentials(&config));
    let outcome = match encryption_config {
        Some(path) => encryption_config::check(
            path,
            &encryption_config::Expected {
                provider_name: config.identity().key_scope().provider_name(),
                endpoint: format!("unix://{}", config.server.socket_path.display()),
                openbao_timeout: config.openbao.timeout,
            },
        ),
        None => skip("no --encryption-config given"),
    };
    doctor.record(Check::KubernetesEncryptionConfig, outcome);

    let client = match OpenBaoClient::new(client_settings(&config)) {
        Ok(client) => {
            doctor.record(
                Check::OpenBaoTls,
                pass("client built with the configured CA"),
            );
            Some(client)
        }
        Err(error) => {
            doctor.record(
                Check::OpenBaoTls,
                at_address(fail(error.to_string()), &config.openbao.address),
            );
            None
        }
    };
    let online = match client {
        Some(client) => online_checks(&mut doctor, &client, &config, credentials_ok),
        None => {
            for check in [
                Check::OpenBaoHealth,
                Check::OpenBaoAuth,
                Check::TransitCapabilities,
                Check::TransitMetadata,
                Check::TransitProfile,
                Check::TransitDisableUpsert,
            ] {
                doctor.skip(check, "openbao.tls failed");
            }
            Online::default()
        }
    };

    let local_state = RegistryPaths::new(&config.state_path)
        .map_err(|error| error.to_string())
        .and_then(|paths| local::read_state(&paths, &config));
    let state_ok = doctor.record(
        Check::RotationInProgress,
        local::rotation_in_progress(&local_state, online.metadata.as_ref(), &config),
    );

    let probe_ok = match (&online.client, &online.metadata, online.profile_ok) {
        (Some(client), Some(metadata), true) => doctor.record(
            Check::TransitProbe,
            at_address(transit::probe(client, metadata), &config.openbao.address),
        ),
        (Some(_), Some(_), false) => {
            doctor.skip(Check::TransitProbe, "transit.profile failed");
            false
        }
        (_, None, _) | (None, _, _) => {
            doctor.skip(Check::TransitProbe, "no Transit key metadata");
            false
        }
    };
    let outcome = match &online.metadata {
        Some(metadata) => transit::key_id_deterministic(metadata, &config, &local_state),
        None => skip("no Transit key metadata"),
    };
    doctor.record(Check::KeyIdDeterministic, outcome);

    let outcome = match (&online.client, &local_state) {
        (None, _) => skip("no authenticated OpenBao client"),
        (Some(_), _) if online.metadata.is_none() => skip("transit.metadata failed"),
        (Some(_), _) if !online.profile_ok => skip("transit.profile failed"),
        (Some(_), _) if !online.upsert_ok => skip("transit.disable_upsert failed"),
        (Some(_), _) if !probe_ok => skip("transit.probe failed"),
        (Some(_), Err(_)) => skip("the local registry state cannot be loaded"),
        (Some(_), Ok(_)) if !state_ok => skip("rotation.in_progress failed"),
        (Some(client), Ok(state)) => kms::status_encrypt(&config, client, &state.stored),
    };
    doctor.record(Check::KmsStatusEncrypt, outcome);
    doctor.report.emit(output)
}

/// What the OpenBao checks established, for the checks after them.
#[derive(Default)]
struct Online {
    /// The client, once authenticated.
    client: Option<OpenBaoClient>,
    metadata: Option<KeyMetadata>,
    profile_ok: bool,
    upsert_ok: bool,
}

fn online_checks(
    doctor: &mut Doctor,
    client: &OpenBaoClient,
    config: &Config,
    credentials_ok: bool,
) -> Online {
    let mut online = Online::default();
    let address = config.openbao.address.as_str();
    let rest = [
        Check::OpenBaoAuth,
        Check::TransitCapabilities,
        Check::TransitMetadata,
        Check::TransitProfile,
        Check::TransitDisableUpsert,
    ];
    if !doctor.record(
        Check::OpenBaoHealth,
        at_address(transit::health(client), address),
    ) {
        for check in rest {
            doctor.skip(check, "openbao.health failed");
        }
        return online;
    }
    if !credentials_ok {
        for check in rest {
            doctor.skip(check, "auth.credentials failed");
        }
        return online;
    }
    if !doctor.record(
        Check::OpenBaoAuth,
        at_address(transit::auth(client), address),
    ) {
        for check in &rest[1..] {
            doctor.skip(*check, "openbao.auth failed");
        }
        return online;
    }
    doctor.record(
        Check::TransitCapabilities,
        at_address(capabilities::check(client, config), address),
    );
    match transit::metadata(client) {
        Ok((outcome, metadata)) => {
            doctor.record(Check::TransitMetadata, outcome);
            online.profile_ok = doctor.record(Check::TransitProfile, transit::profile(&metadata));
            online.metadata = Some(metadata);
        }
        Err(outcome) => {
            doctor.record(Check::TransitMetadata, at_address(outcome, address));
            doctor.skip(Check::TransitProfile, "transit.metadata failed");
        }
    }
    online.upsert_ok = doctor.record(
        Check::TransitDisableUpsert,
        at_address(transit::disable_upsert(client), address),
    );
    online.client = Some(client.clone());
    online
}
