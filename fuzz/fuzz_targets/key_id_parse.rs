//! Fuzz target `key_id_parse`.
//!
//! The check is [`bao_kms_fuzz::wire::key_id_parse`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::wire::key_id_parse(data));
