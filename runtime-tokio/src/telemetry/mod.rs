//! Metrics, health endpoints and logs (in progress).
