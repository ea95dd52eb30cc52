//! Fuzz target `encrypted_object`.
//!
//! The check is [`bao_kms_fuzz::storage::encrypted_object`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::storage::encrypted_object(data));
