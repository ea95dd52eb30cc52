//! Fuzz target `decrypt_request`.
//!
//! The check is [`bao_kms_fuzz::sim::decrypt_request`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::sim::decrypt_request(data));
