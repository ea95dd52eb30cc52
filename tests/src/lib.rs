//! bao-kms-testkit (work in progress).
