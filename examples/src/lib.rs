//! bao-kms-examples (work in progress).
