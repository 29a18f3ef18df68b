//! Configuration: a serde wire layer that mirrors the YAML ([`wire`]) and a
//! validated model built from it with `TryFrom` ([`Network`] and friends).
//!
//! The keys and defaults are jumpstarter DutNetwork's, plus dutnet's own
//! (`datapath`, `lease_time`, `domain`, `dns_timeout`, `udp_timeout`,
//! `nat_table_size`, `nat_flows_per_dut`, `nat_timeouts`). A file is one network mapping, a `networks:` list, or a
//! jumpstarter exporter file as is; see `docs/config.md`. Loading reports every
//! problem at once, each with its key path, the bad value and the fix.
mod convert;
mod dhcp_options;
pub mod duration;
mod error;
mod filter;
mod model;
pub mod names;
mod schema;
mod shape;
mod validate;
pub mod wire;

use std::path::Path;

use serde::Serialize;

pub use convert::{
    DEFAULT_DNS_SERVERS, DEFAULT_DNS_TIMEOUT, DEFAULT_LEASE_TIME, DEFAULT_NAT_TABLE_SIZE,
    DEFAULT_SUBNET, DEFAULT_UDP_TIMEOUT, resolve_public_ip, system_resolver,
};
pub use error::{ConfigError, Problem};
pub use model::{AddressEntry, DatapathChoice, DhcpSettings, DnsEntry, MacAddr, NatMode, Network};
pub use validate::{
    MIN_LEASE_TIME, MIN_NAT_TIMEOUT, MIN_UDP_TIMEOUT, NAT_TABLE_SIZES, check_datapaths,
};

/// The networks of a config file, plus notes about what was ignored (the
/// other exports of a jumpstarter exporter file, for instance).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedConfig {
    pub networks: Vec<Network>,
    pub notes: Vec<String>,
    /// `metrics_listen:` at the top of the file: where the Prometheus
    /// endpoint listens (`None`: no endpoint). A setting of the daemon, not
    /// of a network, so one per file whatever its shape.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single("", format!("cannot read {}: {e}", path.display())))?;
    parse_str(&text)
}

/// Validates config text in any of the three shapes.
pub fn parse_str(text: &str) -> Result<LoadedConfig, ConfigError> {
    shape::load(text)
}

#[cfg(test)]
mod tests;
