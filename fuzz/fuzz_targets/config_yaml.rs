//! Fuzz target `config_yaml`.
//!
//! The check is [`bao_kms_fuzz::runtime::config_yaml`], shared with the corpus replay tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bao_kms_fuzz::runtime::config_yaml(data));
