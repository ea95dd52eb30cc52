//! `policy openbao`: the least-privilege OpenBao ACL policy for the loaded configuration.
//!
//! The policy grants exactly the calls the provider and `doctor` make on the configured Transit
//! key, and nothing that could create, rotate, reconfigure, trim, export, back up, restore or
//! delete a key. `init` writes the same text into `openbao-policy.hcl`.

use super::session::load_config;
use super::{Cli, ExitCode, out};
use crate::config::{AuthMethod, Config, ConfigError, Problem};

pub(super) fn openbao(cli: &Cli, include_token_renewal: bool) -> ExitCode {
    let config = match load_config(cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match render(&config, include_token_renewal) {
        Ok(policy) => out::text_then(&policy, ExitCode::Success),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::Config
        }
    }
}

/// Characters an OpenBao policy path would read as a glob or segment wildcard, or that an HCL
/// string cannot hold without escaping: a mount path with one of them cannot be granted exactly.
const UNSAFE_PATH_CHARACTERS: &[char] = &['*', '+', '"', '\\', '{', '}', '$'];

/// The policy text, one `# comment` before each stanza.
///
/// # Errors
/// A configuration error when the Transit mount path holds a character that a policy path
/// would read as a wildcard (the key name cannot: its syntax excludes them).
pub(super) fn render(config: &Config, include_token_renewal: bool) -> Result<String, ConfigError> {
    let identity = config.identity();
    let mount = identity.transit_mount_path();
    let key = identity.transit_key_name();
    if let Some(bad) = mount.chars().find(|c| UNSAFE_PATH_CHARACTERS.contains(c)) {
        return Err(ConfigError::new(vec![Problem::new(
            "transit.mountPath",
            format!(
                "contains {bad:?}, which an OpenBao policy path reads as a wildcard or cannot \
                 hold; rename the mount"
            ),
        )]));
    }
    let mut stanzas: Vec<(&str, String, &str)> = vec![
        (
            "Read Transit key metadata (versions, minimums, key type) for Status and rotation.",
            format!("{mount}/keys/{key}"),
            "read",
        ),
        (
            "Encrypt with the existing key. update only: create would let encrypt create a \
             missing key (upsert).",
            format!("{mount}/encrypt/{key}"),
            "update",
        ),
        (
            "Decrypt ciphertext written with this key.",
            format!("{mount}/decrypt/{key}"),
            "update",
        ),
        (
            "Read the mount's key configuration, so doctor can confirm disable_upsert=true.",
            format!("{mount}/config/keys"),
            "read",
        ),
        (
            "Let doctor check this token's own capabilities.",
            "sys/capabilities-self".to_owned(),
            "update",
        ),
    ];
    if include_token_renewal {
        stanzas.push((
            "Renew this token before it expires (leave out with --include-token-renewal=false).",
            "auth/token/renew-self".to_owned(),
            "update",
        ));
    }
    match &config.auth.method {
        AuthMethod::Token { .. } => stanzas.push((
            "Look up the token read from auth.token.tokenFile (its TTL and renewability).",
            "auth/token/lookup-self".to_owned(),
            "read",
        )),
        AuthMethod::Jwt(_) | AuthMethod::AppRole { .. } => {}
    }

    let mut out = String::from(
        "# Least-privilege OpenBao policy for bao-kms-provider.\n\
         # It never grants create, rotate, key or mount configuration, trim, restore, rewrap,\n\
         # delete, export, backup or sudo.\n",
    );
    if let Some(namespace) = &config.openbao.namespace {
        out.push_str(&format!(
            "# Write it in namespace {namespace:?}: the paths are relative to it.\n"
        ));
    }
    for (comment, path, capability) in stanzas {
        out.push_str(&format!(
            "\n# {comment}\npath \"{path}\" {{\n  capabilities = [\"{capability}\"]\n}}\n"
        ));
    }
    Ok(out)
}
