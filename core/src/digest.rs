//! The short SHA-256 digests used throughout wire format v1.
//!
//! Every identity value that must not appear in clear (cluster id, mount id, key lineage, key_id)
//! is published as `base64url-nopad(SHA-256(value))`: 43 characters that decode to 32 bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest rendered as 43 characters of unpadded base64url.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct IdentityDigest(String);

impl IdentityDigest {
    /// Hashes `value` with SHA-256 and encodes the result.
    pub fn of(value: &[u8]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(sha256(value)))
    }

    /// Parses an encoded digest: exactly 43 unpadded base64url characters decoding to 32 bytes.
    ///
    /// # Errors
    /// [`DigestError`] when the length, alphabet or decoded size is wrong.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        decode_digest(text)?;
        Ok(Self(text.to_owned()))
    }

    /// The encoded digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdentityDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a digest string was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("digest must be 43 base64url characters encoding 32 bytes")]
pub struct DigestError;

/// SHA-256 of `value` as a fixed array.
pub(crate) fn sha256(value: &[u8]) -> [u8; 32] {
    let mut out = [0_u8; 32];
    out.copy_from_slice(&Sha256::digest(value));
    out
}

/// Decodes 43 unpadded base64url characters into 32 bytes, refusing non-canonical encodings.
pub(crate) fn decode_digest(text: &str) -> Result<[u8; 32], DigestError> {
    if text.len() != ENCODED_LEN {
        return Err(DigestError);
    }
    let decoded = URL_SAFE_NO_PAD.decode(text).map_err(|_| DigestError)?;
    let bytes: [u8; 32] = decoded.try_into().map_err(|_| DigestError)?;
    // The base64 crate rejects non-zero trailing bits by default, so the encoding is canonical
    // and two different strings can never name the same digest.
    Ok(bytes)
}

/// Renders bytes as unpadded base64url.
pub(crate) fn encode_url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Length of an encoded 32-byte digest.
pub(crate) const ENCODED_LEN: usize = 43;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn digest_of_known_value_matches_golden_mount_hash() {
        let digest = IdentityDigest::of(b"transit-prod-primary");
        assert_eq!(
            digest.as_str(),
            "rXiCr_lOjsbykm0mDHAvUcVxQl_XcVnT61MesgcPnzc"
        );
    }

    #[test]
    fn parse_refuses_wrong_length_and_alphabet() {
        assert!(IdentityDigest::parse("not-base64url-sha256").is_err());
        assert!(IdentityDigest::parse(&"+".repeat(43)).is_err());
        assert!(IdentityDigest::parse(&"A".repeat(44)).is_err());
    }

    #[test]
    fn parse_refuses_non_canonical_trailing_bits() {
        let canonical = IdentityDigest::of(b"x");
        let mut text = canonical.as_str().to_owned();
        // The last character carries 2 padding bits; flipping a low bit makes it non-canonical.
        let last = text.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.find(last).unwrap();
        text.push(alphabet.as_bytes()[index ^ 1] as char);
        assert!(IdentityDigest::parse(&text).is_err());
        assert!(IdentityDigest::parse(canonical.as_str()).is_ok());
    }
}
