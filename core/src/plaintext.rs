//! Plaintext bytes: kube-apiserver's DEK seeds. Never printed, wiped on drop.

use std::fmt;

use zeroize::Zeroizing;

/// Secret bytes that must never reach a log, a metric or an error message.
#[derive(Clone, Eq, PartialEq)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_length_only() {
        let secret = Plaintext::new(b"hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "Plaintext(7 bytes)");
    }
}
