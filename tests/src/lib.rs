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
//! - [`openbao_dev`]: a real OpenBao dev server for a test, port picking, watchdog shells.
//! - [`control_plane`]: a real Kubernetes control plane (etcd, kube-apiserver with a KMS v2
//!   `EncryptionConfiguration`) in front of real plugins and a real OpenBao.
//!
//! The model is for the core's simulations only; integration tests use a real OpenBao.

pub mod apiserver;
pub mod control_plane;
pub mod invariants;
pub mod kube_apiserver;
pub mod openbao_dev;
pub mod sim;
pub mod transit_model;
