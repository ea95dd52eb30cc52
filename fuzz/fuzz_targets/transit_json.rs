//! Fuzz target `transit_json`.
//!
//! The check is [`bao_kms_fuzz::runtime::transit_json`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::runtime::transit_json(data));
