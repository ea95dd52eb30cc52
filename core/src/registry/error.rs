//! Why registry state, a checkpoint or a transition was refused.
//!
//! Every reason is a `&'static str` on purpose: a message built only from static text and
//! numbers cannot leak identity values, key names or paths, whatever the input contained.

use std::fmt;

use crate::version::KeyVersion;

/// Which persisted document an error is about.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Document {
    /// The registry state file.
    State,
    /// The `.checkpoint` file beside it.
    Checkpoint,
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::State => "registry state",
            Self::Checkpoint => "registry checkpoint",
        })
    }
}

/// A refused registry document, record, transition or operator request.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The bytes are not JSON of the expected shape (syntax, unknown or missing field, wrong
    /// type, trailing content). Line and column locate the problem without quoting it.
    #[error("{document} is malformed at line {line}, column {column}: {reason}")]
    Malformed {
        /// The document that failed to parse.
        document: Document,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The kind of problem.
        reason: &'static str,
    },
    /// The schema version is not one this release reads.
    #[error("{0}")]
    UnsupportedSchema(&'static str),
    /// The state violates a registry invariant (read from disk or offered to `build`).
    #[error("registry state is corrupt: {0}")]
    Corrupt(&'static str),
    /// One state record is invalid.
    #[error("registry state is corrupt: snapshot {index}: {field}: {reason}")]
    CorruptRecord {
        /// Position of the record in `snapshots`, starting at 0.
        index: usize,
        /// The record field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The checkpoint is well-formed JSON but its values are invalid.
    #[error("registry checkpoint is corrupt: {0}")]
    CorruptCheckpoint(&'static str),
    /// The document parses and validates, but its bytes are not the ones this provider (and the
    /// Go provider) would write for that content: it was edited by hand or damaged.
    #[error("{0} is not in canonical form")]
    NotCanonical(Document),
    /// A record could not be constructed.
    #[error("invalid registry record: {field}: {reason}")]
    InvalidRecord {
        /// The record field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The state is older than, or forked from, the state the checkpoint vouches for.
    #[error("registry state rollback detected: {0}")]
    Rollback(&'static str),
    /// The state belongs to another identity scope than the configuration.
    #[error("registry state does not belong to this configuration: {0}")]
    ScopeMismatch(&'static str),
    /// The next state is not an allowed successor of the previous one.
    #[error("invalid registry transition: {0}")]
    InvalidTransition(&'static str),
    /// An operator retire or restore request cannot be applied.
    #[error("invalid operator request: {reason}{}", version_suffix(.version))]
    InvalidOperatorRequest {
        /// The requested version at fault, if the problem is about one version.
        version: Option<KeyVersion>,
        /// What is wrong with the request.
        reason: &'static str,
    },
}

impl StateError {
    pub(crate) fn operator(reason: &'static str) -> Self {
        Self::InvalidOperatorRequest {
            version: None,
            reason,
        }
    }

    pub(crate) fn operator_version(version: KeyVersion, reason: &'static str) -> Self {
        Self::InvalidOperatorRequest {
            version: Some(version),
            reason,
        }
    }

    /// Maps a serde_json failure without its message, which may quote the offending input.
    pub(crate) fn malformed(document: Document, error: &serde_json::Error) -> Self {
        let reason = match error.classify() {
            serde_json::error::Category::Syntax => "not valid JSON or trailing content",
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Data => "unknown field, missing field or wrong type",
            serde_json::error::Category::Io => "unreadable input",
        };
        Self::Malformed {
            document,
            line: error.line(),
            column: error.column(),
            reason,
        }
    }
}

/// Key versions are not identity-bearing, so operator errors may name the one at fault.
fn version_suffix(version: &Option<KeyVersion>) -> String {
    version
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serde_messages_are_replaced_by_a_category() {
        let error = serde_json::from_str::<u64>("\"secret-cluster-name\"").unwrap_err();
        let message = StateError::malformed(Document::State, &error).to_string();
        assert!(!message.contains("secret"), "{message}");
        assert!(
            message.starts_with("registry state is malformed at line 1"),
            "{message}"
        );
    }

    #[test]
    fn operator_errors_name_the_version_only_when_given() {
        let version = KeyVersion::new(4).unwrap();
        assert_eq!(
            StateError::operator_version(version, "not removed").to_string(),
            "invalid operator request: not removed (version 4)"
        );
        assert_eq!(
            StateError::operator("empty").to_string(),
            "invalid operator request: empty"
        );
    }
}
