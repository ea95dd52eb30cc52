//! The `krs1.` state hash that chains one registry generation to the next.

use std::fmt;

use crate::digest::{decode_digest, encode_url, sha256};
use crate::gojson::GoValue;

/// Prefix of every state hash.
const HASH_PREFIX: &str = "krs1.";

/// `krs1.` + base64url-nopad(SHA-256 of the compact Go JSON of the state minus `currentHash`).
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct StateHash(String);

impl StateHash {
    /// Parses `krs1.` followed by a canonical 43-character digest.
    ///
    /// # Errors
    /// [`StateHashError`] for any other text.
    pub fn parse(text: &str) -> Result<Self, StateHashError> {
        let body = text.strip_prefix(HASH_PREFIX).ok_or(StateHashError)?;
        decode_digest(body).map_err(|_| StateHashError)?;
        Ok(Self(text.to_owned()))
    }

    /// Hashes the compact rendering of `content`, the exact bytes Go's `json.Marshal` produces.
    pub(crate) fn of(content: &GoValue) -> Self {
        let canonical = content.to_compact();
        Self(format!(
            "{HASH_PREFIX}{}",
            encode_url(&sha256(canonical.as_bytes()))
        ))
    }

    /// The encoded hash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a state hash was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("state hash must be krs1. followed by 43 base64url characters")]
pub struct StateHashError;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hash_of_a_value_parses_back() {
        let hash = StateHash::of(&GoValue::Object(vec![("a", GoValue::Unsigned(1))]));
        assert!(hash.as_str().starts_with("krs1."));
        assert_eq!(hash.as_str().len(), 48);
        assert_eq!(StateHash::parse(hash.as_str()).unwrap(), hash);
    }

    #[test]
    fn hash_covers_the_go_escaped_bytes() {
        // Go writes `<` as \u003c, so the hash must be taken over the escaped form.
        let escaped = StateHash::of(&GoValue::str("<"));
        let expected = format!("krs1.{}", encode_url(&sha256(br#""\u003c""#)));
        assert_eq!(escaped.as_str(), expected);
    }

    #[test]
    fn other_prefixes_and_bodies_are_refused() {
        let good = StateHash::of(&GoValue::Unsigned(7));
        let other_prefix = good.as_str().replacen("krs1.", "krs2.", 1);
        for bad in ["", "krs1.", "krs1.abc", other_prefix.as_str()] {
            assert!(StateHash::parse(bad).is_err(), "{bad}");
        }
    }
}
