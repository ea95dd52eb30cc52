//! The OpenBao client (in progress).
