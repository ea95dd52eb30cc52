//! Transit ciphertexts: `vault:v<N>:` followed by padded standard base64.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::version::KeyVersion;

/// Smallest decoded payload of an AES-256-GCM96 ciphertext: a 12-byte nonce and a 16-byte tag.
const MIN_PAYLOAD_BYTES: usize = 12 + 16;

/// A well-formed Transit ciphertext, with the key version from its prefix.
///
/// OpenBao still writes the `vault:` prefix. Parsing it locally lets Decrypt refuse garbage and
/// version mismatches without a Transit round trip.
#[derive(Clone, Eq, PartialEq)]
pub struct TransitCiphertext {
    text: String,
    version: KeyVersion,
}

impl TransitCiphertext {
    /// Parses the bytes kube-apiserver stored (they are the ASCII text Transit returned).
    ///
    /// # Errors
    /// [`CiphertextError`] when the prefix, version or base64 body is malformed, or the body is
    /// too short to be an AES-GCM ciphertext.
    pub fn parse(bytes: &[u8]) -> Result<Self, CiphertextError> {
        let text = std::str::from_utf8(bytes).map_err(|_| CiphertextError::NotAscii)?;
        let rest = text
            .strip_prefix("vault:v")
            .ok_or(CiphertextError::Prefix)?;
        let (digits, body) = rest.split_once(':').ok_or(CiphertextError::Prefix)?;
        let version = KeyVersion::parse(digits).map_err(|_| CiphertextError::Version)?;
        let payload = STANDARD.decode(body).map_err(|_| CiphertextError::Body)?;
        if payload.len() < MIN_PAYLOAD_BYTES {
            return Err(CiphertextError::Body);
        }
        Ok(Self {
            text: text.to_owned(),
            version,
        })
    }

    /// The key version named by the prefix.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The full ciphertext text, as Transit expects it back.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Always false: a parsed ciphertext has a prefix and a body.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

// Ciphertexts are not secret, but logs carry only their size and version.
impl fmt::Debug for TransitCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TransitCiphertext(v{}, {} bytes)",
            self.version,
            self.text.len()
        )
    }
}

/// Why a ciphertext was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CiphertextError {
    /// Not valid text.
    #[error("ciphertext is not text")]
    NotAscii,
    /// Missing `vault:v<N>:` prefix.
    #[error("ciphertext prefix is malformed")]
    Prefix,
    /// The version in the prefix is not canonical decimal.
    #[error("ciphertext version is malformed")]
    Version,
    /// The body is not padded standard base64 of at least 28 bytes.
    #[error("ciphertext body is malformed")]
    Body,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const REAL: &str =
        "vault:v1:fneq8VV1WxqdrAC3htKtj7a9ncQQql2rpI2K1fnz2TDCTgY2dTOu+4W9VDB7SR8xe10pSOy5wGzzk/s3";

    #[test]
    fn a_real_openbao_ciphertext_parses_with_its_version() {
        let parsed = TransitCiphertext::parse(REAL.as_bytes()).unwrap();
        assert_eq!(parsed.version().get(), 1);
        assert_eq!(parsed.as_str(), REAL);
        assert_eq!(parsed.len(), 89);
    }

    #[test]
    fn malformed_ciphertexts_are_refused_with_a_reason() {
        let cases: [(&[u8], CiphertextError); 7] = [
            (b"garbage", CiphertextError::Prefix),
            (b"vault:v1", CiphertextError::Prefix),
            (b"vault:vX:abcd", CiphertextError::Version),
            (b"vault:v01:abcd", CiphertextError::Version),
            (b"vault:v1:!!!notbase64", CiphertextError::Body),
            (b"vault:v1:zzzz", CiphertextError::Body),
            (b"vault:v1:\xff", CiphertextError::NotAscii),
        ];
        for (input, expected) in cases {
            assert_eq!(TransitCiphertext::parse(input).unwrap_err(), expected);
        }
    }
}
