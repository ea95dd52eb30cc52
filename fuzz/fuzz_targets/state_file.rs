//! Fuzz target `state_file`.
//!
//! The check is [`bao_kms_fuzz::wire::state_file`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::wire::state_file(data));
