//! Prometheus metrics (opt-in: `metrics_listen` / `--metrics-listen`).
//!
//! - [`exposition`]: one `stats` snapshot as OpenMetrics text, through the
//!   `prometheus-client` crate;
//! - [`http`]: a small HTTP/1.1 responder for `GET /metrics` on the
//!   daemon's runtime, which asks the daemon's loop for `stats` like
//!   `dutnet stats` does: the numbers have one source.
//!
//! Label cardinality is bounded by the config, not by traffic: `network`
//! and `interface` (one per configured network), plus fixed sets of
//! `direction`, `reason`, `type`, `source` and `rcode` values.
pub mod exposition;
pub mod http;

pub use exposition::render;
pub use http::{MetricsError, MetricsServer};
