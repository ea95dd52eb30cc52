//! Building blocks of `kms_bench`: load generation over the plugin's socket, the raw Transit
//! baseline (`wrk` with `scripts/bench/transit.lua`) and the corpus it reads, `/proc`
//! readings, restart timing, the report and the targets.

pub(crate) mod corpus;
pub(crate) mod load;
pub(crate) mod plugin;
pub(crate) mod procfs;
pub(crate) mod report;
pub(crate) mod startup;
pub(crate) mod targets;
pub(crate) mod wrk;

use std::time::Instant;

/// The monotonic clock every measurement reads.
#[expect(clippy::disallowed_methods, reason = "benchmark timing")]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A distinct, reproducible 32-byte seed (like the DEK seeds kube-apiserver encrypts) for
/// request `index` of the cell identified by `salt` (splitmix64; not secret, not random).
pub(crate) fn seed(salt: u64, index: usize) -> Vec<u8> {
    let mut state = salt ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut bytes = Vec::with_capacity(32);
    for _ in 0..4 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        bytes.extend_from_slice(&z.to_le_bytes());
    }
    bytes
}
