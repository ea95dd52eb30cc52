//! Fuzz target `provider_ops`.
//!
//! The check is [`bao_kms_fuzz::sim::provider_ops`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::sim::provider_ops(data));
