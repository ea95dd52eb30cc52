//! Protocol limits of the KMS v2 API, checked on every request and response.
//!
//! kube-apiserver validates every EncryptResponse and every stored object with inclusive bounds:
//! a key_id or ciphertext of exactly 1024 bytes passes, 1025 fails, and annotations pass while the
//! sum of key and value lengths is at most 32768 bytes. This provider uses exactly those bounds,
//! so it accepts everything the apiserver can have stored and never returns what the apiserver
//! would reject. (The preview releases refused the boundary values themselves; neither writer can
//! produce a value that large, so the difference never shows on real data.)

/// Largest ciphertext, in bytes, on Encrypt responses and Decrypt requests.
pub const MAX_CIPHERTEXT_BYTES: usize = 1024;
/// Largest key_id, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 1024;
/// Largest sum of annotation key and value lengths, in bytes.
pub const MAX_ANNOTATIONS_BYTES: usize = 32 * 1024;
/// Largest gRPC message the server accepts or sends.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 64 * 1024;
/// Bytes an AES-256-GCM96 ciphertext adds to its plaintext (12-byte nonce, 16-byte tag).
const GCM_OVERHEAD: usize = 12 + 16;

/// Largest plaintext whose Transit ciphertext (`vault:v<version>:` + base64) fits the limit.
///
/// Encrypt refuses larger plaintexts before calling Transit instead of discovering afterwards
/// that the response would break the protocol.
pub fn max_plaintext_bytes(version_digits: usize) -> usize {
    let prefix = "vault:v:".len() + version_digits;
    let base64_chars = MAX_CIPHERTEXT_BYTES.saturating_sub(prefix);
    (base64_chars / 4 * 3).saturating_sub(GCM_OVERHEAD)
}

/// Size of the Transit ciphertext for a plaintext of `len` bytes at a version with the given
/// number of decimal digits.
pub fn transit_ciphertext_len(len: usize, version_digits: usize) -> usize {
    "vault:v:".len() + version_digits + (len + GCM_OVERHEAD).div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dek_seed_ciphertext_is_89_bytes_at_version_one() {
        assert_eq!(transit_ciphertext_len(32, 1), 89);
    }

    #[test]
    fn the_largest_allowed_plaintext_fits_and_one_more_byte_might_not() {
        for digits in 1..=10 {
            let max = max_plaintext_bytes(digits);
            assert!(transit_ciphertext_len(max, digits) <= MAX_CIPHERTEXT_BYTES);
            assert!(transit_ciphertext_len(max + 3, digits) > MAX_CIPHERTEXT_BYTES);
        }
    }
}
