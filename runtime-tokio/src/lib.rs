//! The tokio runtime of bao-kms-provider.
//!
//! It owns every IO the core asks for: the KMS v2 gRPC server on a Unix socket, the OpenBao HTTPS
//! client and its authentication, the registry state files, metrics and health endpoints, and the
//! command line. It holds no policy: every decision comes from `bao_kms_core`.

pub mod adapters;
pub mod cli;
pub mod clock;
pub mod config;
pub mod driver;
pub mod files;
pub mod grpc;
pub mod openbao;
pub mod socket;
pub mod telemetry;
