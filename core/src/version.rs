//! Transit key versions.

use std::fmt;
use std::num::NonZeroU32;

/// A Transit key version: a positive integer, written in canonical decimal.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct KeyVersion(NonZeroU32);

impl KeyVersion {
    /// The first version of every Transit key.
    pub const FIRST: Self = Self(NonZeroU32::MIN);

    /// Builds a version from an integer.
    ///
    /// # Errors
    /// [`VersionError`] when `value` is zero or does not fit in 32 bits.
    pub fn new(value: u64) -> Result<Self, VersionError> {
        let narrow = u32::try_from(value).map_err(|_| VersionError)?;
        let positive = NonZeroU32::new(narrow).ok_or(VersionError)?;
        Ok(Self(positive))
    }

    /// Parses canonical decimal: digits only, no sign, no leading zero, not zero.
    ///
    /// Wire format v1 always writes versions this way, so anything else was not written by a
    /// provider and is refused.
    ///
    /// # Errors
    /// [`VersionError`] for any other text.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let canonical = !text.is_empty()
            && text.len() <= 10
            && text.bytes().all(|byte| byte.is_ascii_digit())
            && !text.starts_with('0');
        if !canonical {
            return Err(VersionError);
        }
        let value: u64 = text.parse().map_err(|_| VersionError)?;
        Self::new(value)
    }

    /// The version as an integer.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The next version, if it exists.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a key version was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("key version must be a positive integer in canonical decimal")]
pub struct VersionError;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_decimal_round_trips() {
        let version = KeyVersion::parse("42").unwrap();
        assert_eq!(version.get(), 42);
        assert_eq!(version.to_string(), "42");
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        for text in [
            "",
            "0",
            "03",
            "+3",
            "-3",
            " 3",
            "3 ",
            "3.0",
            "4294967296",
            "99999999999",
        ] {
            assert!(KeyVersion::parse(text).is_err(), "{text:?} must be refused");
        }
        assert_eq!(KeyVersion::parse("4294967295").unwrap().get(), u32::MAX);
    }
}
