//! Fuzz target `aad_canonical`.
//!
//! The check is [`bao_kms_fuzz::wire::aad_canonical`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::wire::aad_canonical(data));
