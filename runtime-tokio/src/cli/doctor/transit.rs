//! The OpenBao and Transit checks: health, login, metadata, the key profile, `disable_upsert`,
//! the encrypt/decrypt probe and the key_id derivation.

use bao_kms_core::cluster::{self, ClusterVerdict};
use bao_kms_core::profile::{self, FindingImpact};
use bao_kms_core::{
    KeyId, KeyMetadata, KeyVersion, Plaintext, TransitCiphertext, TransitRequest, TransitResponse,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::local::LocalState;
use super::{Outcome, fail, pass, warn};
use crate::cli::probe::random_bytes;
use crate::cli::report::CheckStatus;
use crate::config::Config;
use crate::openbao::OpenBaoClient;

/// The AAD of the doctor's probe; never the AAD of Kubernetes data.
const PROBE_AAD: &str = "openbao-kubernetes-kms/doctor-probe/v1";

/// `openbao.health`: sealed or uninitialized fails, a standby node warns. With several
/// `openbao.addresses` the answer is the active node's, and the message lists every node's role
/// (a cluster with no active node fails, one with sealed or unreachable nodes warns).
pub(super) fn health(client: &OpenBaoClient) -> Outcome {
    let outcome = node_health(client);
    let roles = client.node_roles();
    let listing = roles
        .iter()
        .map(|(address, role)| format!("{address} {}", role.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let role_values: Vec<_> = roles.iter().map(|(_, role)| *role).collect();
    match (cluster::verdict(&role_values), outcome) {
        (ClusterVerdict::SingleNode, outcome) => outcome,
        (ClusterVerdict::NoActive, _) => fail(format!("no OpenBao node is active: {listing}")),
        (ClusterVerdict::Degraded { unhealthy }, (status, message)) => {
            let message =
                format!("{message}; {unhealthy} node(s) sealed or unreachable: {listing}");
            if status == CheckStatus::Fail {
                fail(message)
            } else {
                warn(message)
            }
        }
        (ClusterVerdict::Healthy, (status, message)) => {
            (status, format!("{message}; nodes: {listing}"))
        }
    }
}

fn node_health(client: &OpenBaoClient) -> Outcome {
    let info = match client.health() {
        Ok(info) => info,
        Err(failure) => return fail(format!("sys/health failed ({})", failure.class)),
    };
    let version = if info.version.is_empty() {
        "unknown version".to_owned()
    } else {
        format!("version {}", info.version)
    };
    if !info.initialized {
        fail(format!("OpenBao is not initialized ({version})"))
    } else if info.sealed {
        fail(format!("OpenBao is sealed ({version})"))
    } else if info.standby {
        warn(format!(
            "this node is a standby (HTTP {}); requests are forwarded to the active node \
             ({version})",
            info.http_status
        ))
    } else {
        pass(format!("active, unsealed, {version}"))
    }
}

/// `openbao.auth`: a token is obtained (or the configured one is accepted).
pub(super) fn auth(client: &OpenBaoClient) -> Outcome {
    match client.ensure_token() {
        Ok(()) => {
            let method = client.token_manager().method_name();
            match client.token_ttl_seconds() {
                Some(ttl) if ttl.is_finite() => pass(format!(
                    "token obtained with method {method}, ttl {}s",
                    ttl.floor()
                )),
                Some(_) => pass(format!(
                    "token obtained with method {method}, without expiry"
                )),
                None => pass(format!("token obtained with method {method}")),
            }
        }
        Err(failure) => fail(format!("login failed ({})", failure.class)),
    }
}

/// `transit.metadata`: the metadata, with its outcome.
pub(super) fn metadata(client: &OpenBaoClient) -> Result<(Outcome, KeyMetadata), Outcome> {
    match client.execute(&TransitRequest::ReadKeyMetadata) {
        Ok(TransitResponse::KeyMetadata(metadata)) => {
            let outcome = pass(format!(
                "type {}, latest_version={}, min_decryption_version={}, \
                 min_encryption_version={}, min_available_version={}",
                metadata.key_type,
                metadata.latest_version,
                metadata.min_decryption_version,
                metadata.min_encryption_version,
                metadata.min_available_version
            ));
            Ok((outcome, metadata))
        }
        Ok(_) => Err(fail("unexpected answer to the metadata read")),
        Err(failure) => Err(fail(format!("metadata read failed ({})", failure.class))),
    }
}

/// `transit.profile`: the core's findings, each with the promise it breaks.
pub(super) fn profile(metadata: &KeyMetadata) -> Outcome {
    let findings = profile::findings(metadata);
    if findings.is_empty() {
        return pass("no findings");
    }
    let listed: Vec<String> = findings
        .iter()
        .map(|finding| format!("{} ({})", finding.code(), impact_label(finding.impact())))
        .collect();
    fail(format!(
        "{}; the provider refuses to serve with this key",
        listed.join(", ")
    ))
}

fn impact_label(impact: FindingImpact) -> &'static str {
    match impact {
        FindingImpact::CryptographicSafety => "cryptographic_safety",
        FindingImpact::ApiServerAvailability => "api_server_availability",
    }
}

/// `transit.disable_upsert`: the mount refuses encrypt to a missing key.
pub(super) fn disable_upsert(client: &OpenBaoClient) -> Outcome {
    match client.execute(&TransitRequest::ReadKeysConfig) {
        Ok(TransitResponse::KeysConfig {
            disable_upsert: true,
        }) => pass("disable_upsert=true"),
        Ok(TransitResponse::KeysConfig {
            disable_upsert: false,
        }) => fail(
            "disable_upsert=false: encrypt may create a missing key with fresh key material; \
             set <mount>/config/keys disable_upsert=true",
        ),
        Ok(_) => fail("unexpected answer to the config/keys read"),
        Err(failure) => fail(format!("config/keys read failed ({})", failure.class)),
    }
}

/// `transit.probe`: 32 random bytes encrypted at the latest version with the doctor's AAD,
/// decrypted, compared.
pub(super) fn probe(client: &OpenBaoClient, metadata: &KeyMetadata) -> Outcome {
    let Ok(version) = KeyVersion::new(metadata.latest_version) else {
        return fail("the key has no usable latest version");
    };
    let bytes = match random_bytes(32) {
        Ok(bytes) => bytes,
        Err(error) => return fail(format!("no randomness for the probe: {error}")),
    };
    let associated_data = STANDARD.encode(PROBE_AAD);
    let encrypted = client.execute(&TransitRequest::Encrypt {
        plaintext: Plaintext::new(bytes.clone()),
        key_version: version,
        associated_data: associated_data.clone(),
    });
    let (ciphertext, used) = match encrypted {
        Ok(TransitResponse::Encrypted {
            ciphertext,
            key_version,
        }) => (ciphertext, key_version),
        Ok(_) => return fail("unexpected answer to encrypt"),
        Err(failure) => return fail(format!("encrypt failed ({})", failure.class)),
    };
    if used != metadata.latest_version {
        return fail(format!(
            "encrypt used version {used}, not the requested version {version}"
        ));
    }
    let Ok(ciphertext) = TransitCiphertext::parse(ciphertext.as_bytes()) else {
        return fail("encrypt returned a malformed ciphertext");
    };
    if ciphertext.version() != version {
        return fail(format!(
            "the ciphertext names version {}, not {version}",
            ciphertext.version()
        ));
    }
    match client.execute(&TransitRequest::Decrypt {
        ciphertext,
        associated_data,
    }) {
        Ok(TransitResponse::Decrypted { plaintext }) if plaintext.expose() == bytes.as_slice() => {
            pass(format!("32 bytes round-tripped at version {version}"))
        }
        Ok(TransitResponse::Decrypted { .. }) => fail("decrypt returned different bytes"),
        Ok(_) => fail("unexpected answer to decrypt"),
        Err(failure) => fail(format!("decrypt failed ({})", failure.class)),
    }
}

/// `key_id.deterministic`: the latest version's key_id, derived twice by the core, is the same,
/// and equals the local registry's record for that version when there is one.
pub(super) fn key_id_deterministic(
    metadata: &KeyMetadata,
    config: &Config,
    local: &Result<LocalState, String>,
) -> Outcome {
    let Ok(version) = KeyVersion::new(metadata.latest_version) else {
        return super::skip("the key has no versions");
    };
    let Some(&created) = metadata.versions.get(&metadata.latest_version) else {
        return super::skip("the latest version has no creation time");
    };
    let scope = config.identity().key_scope();
    let first = KeyId::derive(scope, version, created);
    let second = KeyId::derive(scope, version, created);
    if first != second {
        return fail(format!(
            "two derivations of version {version} differ ({} vs {})",
            first.digest(),
            second.digest()
        ));
    }
    let stored = match local {
        Ok(LocalState {
            state: Some(state), ..
        }) => state.record_by_version(version),
        Ok(LocalState { state: None, .. }) | Err(_) => None,
    };
    match stored {
        None => pass(format!(
            "version {version} derives key_id digest {} (no local record to compare)",
            first.digest()
        )),
        Some(record) if record.key_id() == &first => pass(format!(
            "version {version} derives key_id digest {}, as in the local registry",
            first.digest()
        )),
        Some(record) => fail(format!(
            "version {version} derives key_id digest {} but the local registry has {}: the \
             key's creation time changed (was the key re-created?)",
            first.digest(),
            record.key_id().digest()
        )),
    }
}
