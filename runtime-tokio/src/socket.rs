//! The KMS Unix socket (in progress).
