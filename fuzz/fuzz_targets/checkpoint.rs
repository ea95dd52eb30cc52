//! Fuzz target `checkpoint`.
//!
//! The check is [`bao_kms_fuzz::wire::checkpoint`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::wire::checkpoint(data));
