//! The in-process DHCPv4 server: one per DUT network, bound to its DUT NIC.
//!
//! Layers, from the wire inwards:
//! - [`socket`]: a UDP socket on `0.0.0.0:67` bound to one device
//!   (`SO_BINDTODEVICE`), so several DUT NICs may carry the same subnet and
//!   server IP without one server answering another network's clients;
//! - [`server`]: the task loop: receive, [`handler::parse`], [`handler::handle`],
//!   persist, send;
//! - [`handler`]: the pure RFC 2131 logic, `Message` in, [`Action`] out;
//! - [`leases`]: the allocation state (bindings, pending offers, quarantine);
//! - [`store`]: the dnsmasq-like lease file, written atomically.
//!
//! This module knows nothing of the YAML config: the caller builds a
//! [`DhcpConfig`].

pub mod handler;
pub mod leases;
pub mod options;
pub mod server;
pub mod socket;
pub mod store;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use handler::{Action, Destination, NoReplyReason, ReplyKind, handle, parse};
pub use leases::LeaseState;
pub use options::DhcpOptions;
pub use server::DhcpServer;

/// Everything one DHCP server needs, already validated by the config layer
/// (and checked again by [`DhcpServer::start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The DUT network's name, for logs.
    pub network: String,
    /// The DUT NIC the server is bound to.
    pub interface: String,
    pub subnet: ipnet::Ipv4Net,
    /// The gateway IP: server identifier, router option and DNS server option.
    pub server_ip: Ipv4Addr,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_time: Duration,
    pub domain: Option<String>,
    pub static_leases: Vec<StaticLease>,
    /// Other addresses never handed out dynamically (e.g. 1:1 entries without a MAC).
    pub reserved: Vec<Ipv4Addr>,
    /// Where leases persist across restarts; its directory is created if missing.
    pub lease_file: PathBuf,
    /// Boot and extra options for every client; a static lease's own
    /// options win over these.
    pub options: DhcpOptions,
}

/// A fixed address for one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticLease {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// Sent to the client as option 12 and published with its lease.
    pub hostname: Option<String>,
    /// This DUT's options, over the network's.
    pub options: DhcpOptions,
}

/// An address bound to a client (acknowledged, not merely offered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// The static entry's hostname if it has one, else the one the client sent.
    pub hostname: Option<String>,
    /// Option 61 as the client sent it; the lease key when present.
    pub client_id: Option<Vec<u8>>,
    pub expires: SystemTime,
    pub is_static: bool,
    /// When the client last got an ACK, this run (the lease file keeps the
    /// dnsmasq format, without it): when the DUT was last heard from.
    pub acked: Option<SystemTime>,
}

/// The client message types counted in [`DhcpCounters::received`].
pub mod message_type {
    pub const DISCOVER: usize = 0;
    pub const REQUEST: usize = 1;
    pub const DECLINE: usize = 2;
    pub const RELEASE: usize = 3;
    pub const INFORM: usize = 4;
    /// A server's message type (OFFER, ACK, ...) or one RFC 2132 does not
    /// define: never answered.
    pub const OTHER: usize = 5;
    pub const COUNT: usize = 6;
    /// Names, as metrics label them.
    pub const NAMES: [&str; COUNT] = [
        "discover", "request", "decline", "release", "inform", "other",
    ];
}

/// A snapshot of the server's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhcpCounters {
    /// Well-formed messages by the client's message type (option 53),
    /// indexed by [`message_type`], answered or not.
    pub received: [u64; message_type::COUNT],
    /// Well-formed requests the handler looked at.
    pub requests: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    /// Addresses a client declined (now quarantined).
    pub declines: u64,
    pub releases: u64,
    /// INFORM answers (ACK without a lease).
    pub informs: u64,
    /// Packets that failed to parse or carried nonsense (see [`NoReplyReason`]).
    pub dropped_malformed: u64,
    /// Well-formed packets deliberately left unanswered (another server's
    /// REQUEST, a relayed packet, a RELEASE for an unknown lease, ...).
    pub ignored: u64,
    /// DISCOVERs left unanswered because the range was full.
    pub exhausted: u64,
    /// Lease file writes that failed (the ACK is then not sent).
    pub persist_errors: u64,
    pub send_errors: u64,
}

/// Errors at the DHCP module's boundary.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("DHCP config of network {network}: {field} {problem}")]
    InvalidConfig {
        network: String,
        field: &'static str,
        problem: String,
    },
    #[error("DHCP socket on {interface}: {call} failed: {source}")]
    Socket {
        interface: String,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("lease file {path}: {source}")]
    LeaseFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "static lease {ip} is outside subnet {subnet}, or is its network, broadcast or server address"
    )]
    StaticOutsideSubnet {
        ip: Ipv4Addr,
        subnet: ipnet::Ipv4Net,
    },
    #[error(
        "static lease {ip} for {mac} conflicts with the static lease {other_ip} for {other_mac}"
    )]
    StaticConflict {
        ip: Ipv4Addr,
        mac: String,
        other_ip: Ipv4Addr,
        other_mac: String,
    },
    #[error("no static lease for {ip}")]
    StaticNotFound { ip: Ipv4Addr },
}

/// `aa:bb:cc:dd:ee:ff`, the way lab engineers read MACs.
pub fn format_mac(mac: &[u8; 6]) -> String {
    format_hex(mac)
}

/// Colon-separated lowercase hex, as dnsmasq writes client identifiers.
pub(crate) fn format_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl DhcpConfig {
    /// Checks what the handler relies on, naming the field to fix.
    pub fn validate(&self) -> Result<(), DhcpError> {
        let bad = |field: &'static str, problem: String| DhcpError::InvalidConfig {
            network: self.network.clone(),
            field,
            problem,
        };
        let subnet = self.subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(bad(
                "subnet",
                format!(
                    "{} has no room for a server and a client (prefix must be /30 or shorter)",
                    self.subnet
                ),
            ));
        }
        if !self.is_host_addr(self.server_ip) {
            return Err(bad(
                "server_ip",
                format!("{} is not a host address of {subnet}", self.server_ip),
            ));
        }
        for (field, ip) in [
            ("range_start", self.range_start),
            ("range_end", self.range_end),
        ] {
            if !self.is_host_addr(ip) {
                return Err(bad(
                    field,
                    format!("{ip} is not a host address of {subnet}"),
                ));
            }
        }
        if self.range_start > self.range_end {
            return Err(bad(
                "range_start",
                format!("{} is after range_end {}", self.range_start, self.range_end),
            ));
        }
        if self.lease_time < Duration::from_secs(60)
            || self.lease_time.as_secs() > u64::from(u32::MAX)
        {
            return Err(bad(
                "lease_time",
                format!(
                    "{:?} must be between 60 s and {} s",
                    self.lease_time,
                    u32::MAX
                ),
            ));
        }
        for s in &self.static_leases {
            if !self.is_host_addr(s.ip) || s.ip == self.server_ip {
                return Err(DhcpError::StaticOutsideSubnet { ip: s.ip, subnet });
            }
        }
        for (i, a) in self.static_leases.iter().enumerate() {
            for b in &self.static_leases[i + 1..] {
                if a.ip == b.ip || a.mac == b.mac {
                    return Err(DhcpError::StaticConflict {
                        ip: b.ip,
                        mac: format_mac(&b.mac),
                        other_ip: a.ip,
                        other_mac: format_mac(&a.mac),
                    });
                }
            }
        }
        Ok(())
    }

    /// In the subnet and neither its network nor its broadcast address.
    pub(crate) fn is_host_addr(&self, ip: Ipv4Addr) -> bool {
        let net = self.subnet.trunc();
        net.contains(&ip) && ip != net.network() && ip != net.broadcast()
    }

    /// In `range_start..=range_end` and a host address of the subnet.
    pub(crate) fn in_dynamic_range(&self, ip: Ipv4Addr) -> bool {
        ip >= self.range_start && ip <= self.range_end && self.is_host_addr(ip)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn config() -> DhcpConfig {
        DhcpConfig {
            network: "lab1".into(),
            interface: "dut0".into(),
            subnet: "192.168.50.0/24".parse().unwrap(),
            server_ip: Ipv4Addr::new(192, 168, 50, 1),
            range_start: Ipv4Addr::new(192, 168, 50, 100),
            range_end: Ipv4Addr::new(192, 168, 50, 110),
            lease_time: Duration::from_secs(3600),
            domain: Some("lab.test".into()),
            static_leases: vec![StaticLease {
                mac: [0x02, 0, 0, 0, 0, 0x99],
                ip: Ipv4Addr::new(192, 168, 50, 10),
                hostname: Some("board-a".into()),
                options: Default::default(),
            }],
            reserved: vec![Ipv4Addr::new(192, 168, 50, 101)],
            lease_file: PathBuf::from("/nonexistent/leases"),
            options: Default::default(),
        }
    }

    /// A client message of type `ty` from `mac`, with no addresses yet.
    pub fn client_message(
        id: u32,
        ty: dhcproto::v4::MessageType,
        mac: [u8; 6],
    ) -> dhcproto::v4::Message {
        let mut m = dhcproto::v4::Message::new_with_id(
            id,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::MessageType(ty));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::config;
    use super::*;

    #[test]
    fn test_config_is_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn range_outside_subnet_names_the_field() {
        let mut c = config();
        c.range_end = Ipv4Addr::new(192, 168, 51, 5);
        let err = c.validate().unwrap_err();
        assert!(
            matches!(
                err,
                DhcpError::InvalidConfig {
                    field: "range_end",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn duplicate_static_mac_is_rejected() {
        let mut c = config();
        let mut dup = c.static_leases[0].clone();
        dup.ip = Ipv4Addr::new(192, 168, 50, 11);
        c.static_leases.push(dup);
        assert!(matches!(
            c.validate(),
            Err(DhcpError::StaticConflict { .. })
        ));
    }

    #[test]
    fn static_on_server_ip_is_rejected() {
        let mut c = config();
        c.static_leases[0].ip = c.server_ip;
        assert!(matches!(
            c.validate(),
            Err(DhcpError::StaticOutsideSubnet { .. })
        ));
    }
}
