//! Fuzz target `ciphertext_prefix`.
//!
//! The check is [`bao_kms_fuzz::wire::ciphertext_prefix`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::wire::ciphertext_prefix(data));
