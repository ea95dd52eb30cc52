//! bao-kms-runtime-tokio (work in progress).
