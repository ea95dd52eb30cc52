//! The file the raw Transit baseline reads: ciphertexts the plugin wrote, each with the AAD the
//! plugin binds to it and the plaintext it hides, one per line, so that `wrk` sends Transit the
//! same work the plugin sends (see `scripts/bench/transit.lua` for the format).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use bao_kms_core::{Aad, KeyId, KeyVersion};
use bao_kms_runtime_tokio::config::Config;

use super::plugin::Sealed;

/// One corpus line per sealed item: `CIPHERTEXT AAD_BASE64 PLAINTEXT_BASE64 KEY_VERSION`.
///
/// The AAD is rebuilt here from the configuration and the key_id, the way the plugin rebuilds it
/// on Decrypt; Transit accepting the raw decrypts is the proof that the bytes are the same.
pub(crate) fn lines(config: &Config, items: &[Sealed]) -> anyhow::Result<Vec<String>> {
    let scope = config.identity().key_scope();
    let mut lines = Vec::with_capacity(items.len());
    let mut cached: Option<(String, u64, String)> = None;
    for item in items {
        let ciphertext =
            std::str::from_utf8(&item.ciphertext).context("a plugin ciphertext is not UTF-8")?;
        let version = transit_version(ciphertext)?;
        let aad = match &cached {
            Some((key_id, cached_version, aad))
                if key_id == &item.key_id && *cached_version == version =>
            {
                aad.clone()
            }
            _ => {
                let key_id = KeyId::parse(&item.key_id)
                    .map_err(|_| anyhow::anyhow!("the plugin returned a malformed key_id"))?;
                let key_version = KeyVersion::new(version).context("key version")?;
                let aad = Aad::v1(scope, &key_id, key_version).to_transit_base64();
                cached = Some((item.key_id.clone(), version, aad.clone()));
                aad
            }
        };
        lines.push(format!(
            "{ciphertext} {aad} {} {version}",
            base64_standard(&item.seed)
        ));
    }
    Ok(lines)
}

/// Writes `lines` to `path`, one per line.
pub(crate) fn write(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(lines.iter().map(|line| line.len() + 1).sum());
    for line in lines {
        let _ = writeln!(text, "{line}");
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The key version in a Transit ciphertext's `vault:v<N>:` prefix.
fn transit_version(ciphertext: &str) -> anyhow::Result<u64> {
    let Some(version) = ciphertext
        .strip_prefix("vault:v")
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(version, _)| version.parse::<u64>().ok())
    else {
        bail!("a plugin ciphertext has no vault:v<N>: prefix");
    };
    Ok(version)
}

/// Standard base64 with padding (what Transit's `plaintext` field takes).
fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (position, shift) in [18_u32, 12, 6, 0].into_iter().enumerate() {
            if position <= chunk.len() {
                let index = usize::try_from((n >> shift) & 0x3F).unwrap_or(0);
                out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64_standard(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64_standard(&[0xFB, 0xFF]), "+/8=");
    }

    #[test]
    fn transit_version_comes_from_the_prefix() {
        assert_eq!(transit_version("vault:v12:AAAA").ok(), Some(12));
        assert!(transit_version("vault:12:AAAA").is_err());
        assert!(transit_version("vault:vx:AAAA").is_err());
    }
}
