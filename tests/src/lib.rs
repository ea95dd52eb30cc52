//! Test kit of bao-kms-provider.
//!
//! - [`transit_model`]: a sans-IO model of OpenBao Transit for one key, with real AES-256-GCM
//!   (so a wrong AAD really fails), versions with creation times, rotation, the `min_*` versions,
//!   soft delete and failure injection.
//! - [`sim`]: a deterministic simulation that drives one or more `Provider`s (one per
//!   control-plane node) against one shared Transit model, with simulated time and disks.
//! - [`apiserver`]: a kube-apiserver emulator that polls Status, encrypts a fresh seed whenever
//!   the key_id changes, checks the protocol limits of every answer and decrypts what it stored.
//!
//! The model is for the core's simulations only; integration tests use a real OpenBao.

pub mod apiserver;
pub mod invariants;
pub mod kube_apiserver;
pub mod sim;
pub mod transit_model;
