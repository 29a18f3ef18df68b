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
pub use model::{
    AddressEntry, DatapathChoice, DhcpSettings, DnsEntry, MacAddr, NatMode, Network,
    RESERVED_ROUTE_TABLES,
};
pub use validate::{
    MIN_LEASE_TIME, MIN_NAT_TIMEOUT, MIN_UDP_TIMEOUT, NAT_TABLE_SIZES, address_notes,
    check_datapaths,
};

/// The networks of a config file, plus notes about what was ignored (the
/// other exports of a jumpstarter exporter file, for instance). Serialized
/// as a `networks:` file that loads again (`config check` prints it); the
/// notes go to stderr instead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedConfig {
    pub networks: Vec<Network>,
    #[serde(skip)]
    pub notes: Vec<String>,
    /// `metrics_listen:` at the top of the file: where the Prometheus
    /// endpoint listens (`None`: no endpoint). A setting of the daemon, not
    /// of a network, so one per file whatever its shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The largest config file dutnet reads: a lab of 256 networks with a
/// thousand commented DUT entries each fits in a tenth of it, and the limit
/// bounds the time and memory a check takes (the YAML tree costs tens of
/// bytes of memory per byte of input). Checked before anything is parsed.
pub const MAX_FILE_SIZE: usize = 4 * 1024 * 1024;

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    use std::io::Read;
    let cannot =
        |e: std::io::Error| ConfigError::single("", format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    // Read at most one byte past the limit: the file's size as reported by
    // metadata can lie (a pipe, /proc, a file still growing).
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_FILE_SIZE {
        return Err(too_big());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::single(
            "",
            format!(
                "cannot read {}: not UTF-8 text (byte {} is not valid UTF-8); save the file as UTF-8",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    parse_str(&text)
}

fn too_big() -> ConfigError {
    ConfigError::single(
        "",
        format!(
            "the file is larger than {} MiB, the most dutnet reads; split the lab into several files (one daemon each) or remove unused entries",
            MAX_FILE_SIZE / (1024 * 1024)
        ),
    )
}

/// Validates config text in any of the three shapes.
pub fn parse_str(text: &str) -> Result<LoadedConfig, ConfigError> {
    if text.len() > MAX_FILE_SIZE {
        return Err(too_big());
    }
    // A UTF-8 byte order mark (Windows editors write one) is not content.
    shape::load(text.strip_prefix('\u{feff}').unwrap_or(text))
}

#[cfg(test)]
mod tests;
