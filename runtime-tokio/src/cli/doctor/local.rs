//! The checks that need no network: files, the socket group, credentials and the local registry.

use std::time::{Duration, UNIX_EPOCH};

use bao_kms_core::compat::{Blocker, FormatsInUse};
use bao_kms_core::registry::{Checkpoint, SnapshotState, StateFile, admit_loaded};
use bao_kms_core::rotation::{self, BootstrapRefusal};
use bao_kms_core::{KeyMetadata, StoredState};

use super::{Outcome, fail, pass, warn};
use crate::clock;
use crate::config::{self, AuthMethod, Config, JwtSettings};
use crate::files::{RegistryPaths, read_stored};
use crate::openbao::auth::credentials::read_credential;
use crate::openbao::auth::jwt::{JwtExpectations, check_jwt};
use crate::socket;

/// `config.validate`: `serve`'s filesystem checks. Credential file paths are replaced by their
/// field name; no file content is ever read into a message.
pub(super) fn validate(config: &Config) -> Outcome {
    let problems = config::check_files(config);
    if problems.is_empty() {
        return pass(
            "config file, socket directory, CA bundle, credential files and state directory pass",
        );
    }
    let secret_paths: Vec<String> = config
        .auth
        .method
        .credential_files()
        .into_iter()
        .map(|(_, path)| path.display().to_string())
        .collect();
    let listed: Vec<String> = problems
        .iter()
        .map(|problem| {
            let message = redact_paths(problem.message(), &secret_paths);
            if problem.field().is_empty() {
                message
            } else {
                format!("{}: {message}", problem.field())
            }
        })
        .collect();
    fail(listed.join("; "))
}

/// Replaces every occurrence of the given paths with `the file`.
fn redact_paths(message: &str, paths: &[String]) -> String {
    paths
        .iter()
        .filter(|path| !path.is_empty())
        .fold(message.to_owned(), |message, path| {
            message.replace(path.as_str(), "the file")
        })
}

/// `config.compatibility`: keys an older release would refuse as unknown.
pub(super) fn compatibility(config: &Config) -> Outcome {
    let additions = config.additions_used();
    if additions.is_empty() {
        return pass("no keys beyond the preview releases' schema");
    }
    warn(format!(
        "uses keys an older release rejects as unknown: {}; roll back only to a release that \
         reads them (see upgrade-check)",
        additions.join(", ")
    ))
}

/// `socket.group`: the configured group resolves on this host.
pub(super) fn socket_group(config: &Config) -> Outcome {
    match &config.server.socket_group {
        None => pass(format!(
            "unset: the socket keeps the process group (gid {})",
            rustix::process::getegid().as_raw()
        )),
        Some(group) => match socket::resolve_group(group) {
            Ok(gid) => pass(format!("{group} resolves to gid {gid}")),
            Err(error) => fail(error.to_string()),
        },
    }
}

/// `auth.credentials`: every credential file of the method reads as one token; a JWT also
/// passes the local claim checks. Messages name fields, never paths or contents.
pub(super) fn credentials(config: &Config) -> Outcome {
    let mut problems = Vec::new();
    for (field, path) in config.auth.method.credential_files() {
        if let Err(error) = read_credential(path) {
            problems.push(format!("{field}: {error}"));
        }
    }
    if !problems.is_empty() {
        return fail(problems.join("; "));
    }
    match &config.auth.method {
        AuthMethod::Jwt(settings) => jwt(settings),
        AuthMethod::Token { .. } => pass("auth.token.tokenFile is readable"),
        AuthMethod::AppRole { .. } => {
            pass("auth.approle.roleIdFile and auth.approle.secretIdFile are readable")
        }
    }
}

fn jwt(settings: &JwtSettings) -> Outcome {
    let jwt = match read_credential(&settings.jwt_file) {
        Ok(jwt) => jwt,
        Err(error) => return fail(format!("auth.jwt.jwtFile: {error}")),
    };
    let expectations = JwtExpectations {
        min_remaining_ttl: settings.min_remaining_ttl,
        clock_skew_leeway: settings.clock_skew_leeway,
        expected_issuer: settings.expected_issuer.clone(),
        expected_audience: settings.expected_audience.clone(),
        expected_subject: settings.expected_subject.clone(),
    };
    let seconds = u64::try_from(clock::wall_clock_unix()).unwrap_or(0);
    let now = UNIX_EPOCH + Duration::from_secs(seconds);
    match check_jwt(&jwt, now, &expectations) {
        Ok(summary) => pass(format!(
            "jwt passes the local checks (signature is checked by OpenBao); expires in {}",
            config::format_duration(summary.remaining)
        )),
        Err(error) => fail(format!("{error} ({})", error.reason())),
    }
}

/// The registry files as found on disk, loaded the way the provider loads them.
pub(super) struct LocalState {
    /// The raw bytes, handed to the in-process provider.
    pub(super) stored: StoredState,
    /// The decoded state, when there is one.
    pub(super) state: Option<StateFile>,
}

/// Reads the registry files read-only and applies the core's load checks (decode, checkpoint
/// admission, identity scope).
pub(super) fn read_state(paths: &RegistryPaths, config: &Config) -> Result<LocalState, String> {
    let stored = read_stored(paths).map_err(|error| error.to_string())?;
    let state = stored
        .state
        .as_deref()
        .map(StateFile::decode)
        .transpose()
        .map_err(|error| error.to_string())?;
    let checkpoint = stored
        .checkpoint
        .as_deref()
        .map(Checkpoint::decode)
        .transpose()
        .map_err(|error| error.to_string())?;
    admit_loaded(state.as_ref(), checkpoint.as_ref()).map_err(|error| error.to_string())?;
    if let Some(state) = &state {
        state
            .check_scope(config.identity())
            .map_err(|error| error.to_string())?;
    }
    Ok(LocalState { stored, state })
}

/// `rotation.in_progress`: a pending record, or Transit ahead of the local active version,
/// means a rotation is under way and no node should change release now.
pub(super) fn rotation_in_progress(
    local: &Result<LocalState, String>,
    metadata: Option<&KeyMetadata>,
    config: &Config,
) -> Outcome {
    let state = match local {
        Err(error) => {
            return fail(format!(
                "the local registry state cannot be loaded ({error}); serve would refuse to start"
            ));
        }
        Ok(LocalState { state: None, .. }) => {
            return match metadata {
                None => pass("no local registry state yet"),
                Some(metadata) => {
                    match rotation::bootstrap(config.identity(), metadata, clock::wall_clock_unix())
                    {
                        Ok(_) => pass("no local registry state yet; serve bootstraps version 1"),
                        // transit.profile reports that one.
                        Err(BootstrapRefusal::ProfileInvalid) => {
                            pass("no local registry state yet")
                        }
                        Err(refusal) => fail(format!(
                            "no local registry state and bootstrap is refused: {refusal}; \
                             restore the state from a backup or a healthy peer"
                        )),
                    }
                }
            };
        }
        Ok(LocalState {
            state: Some(state), ..
        }) => state,
    };
    let active = state.active().version();
    let mut warnings = Vec::new();
    let pending = FormatsInUse::from_state(state).rotation_pending;
    if pending {
        let pending: Vec<String> = state
            .records()
            .iter()
            .filter(|record| record.state() == SnapshotState::Pending)
            .map(|record| {
                format!(
                    "version {} observed {} time(s)",
                    record.version(),
                    record.observation().stable_observation_count
                )
            })
            .collect();
        warnings.push(format!(
            "{} (pending: {}); do not upgrade now",
            Blocker::RotationPending,
            pending.join(", ")
        ));
    }
    // A pending record already says it; otherwise Transit is ahead of what this node saw.
    if let Some(metadata) = metadata
        && !pending
        && metadata.latest_version > u64::from(active.get())
    {
        warnings.push(format!(
            "Transit latest_version={} is newer than the local active version {active}: a \
             rotation is in progress; do not upgrade now",
            metadata.latest_version
        ));
    }
    if warnings.is_empty() {
        pass(format!(
            "active version {active}, generation {}; nothing pending",
            state.generation()
        ))
    } else {
        warn(warnings.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_paths_are_redacted_from_problem_messages() {
        let secret = "/etc/openbao-kms/secret-id";
        let message = format!("{secret} has mode 0644; it must have none of the bits 0037");
        let redacted = redact_paths(&message, &[secret.to_owned()]);
        assert!(!redacted.contains(secret), "{redacted}");
        assert!(redacted.starts_with("the file has mode 0644"), "{redacted}");
    }
}
