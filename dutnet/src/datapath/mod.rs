//! The packet path, behind one seam.
//!
//! The daemon talks to the [`Datapath`] trait; the eBPF programs are one
//! implementation (the fast path), nftables will be the other (the fallback).
//! `detach` undoes exactly what `attach` did.
pub mod ebpf;
pub mod expiry;
pub mod nft;
pub mod ports;
pub mod rates;

use std::{net::Ipv4Addr, ops::RangeInclusive};

use dutnet_common::stats::IfaceCounters;
use ipnet::Ipv4Net;

/// Counters of one DUT interface the datapath is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceStats {
    pub ifindex: u32,
    /// The interface name, when it still exists in this network namespace.
    pub name: Option<String>,
    pub counters: IfaceCounters,
    /// Connections currently in the NAT table for this DUT interface.
    pub active_flows: u64,
    /// Flows its network may hold (0: not on the fast path's table).
    pub flow_budget: u32,
    /// Flows evicted to make room for new ones since the network came up.
    pub evictions: u64,
}

/// How much of the connection table a network may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLimits {
    /// Flows of the whole network (`nat_table_size`).
    pub flows: u32,
    /// Flows of one DUT, by source address (`nat_flows_per_dut`).
    pub per_dut: u32,
}

impl FlowLimits {
    /// `flows` for the network, half of them at most for one DUT (the
    /// `nat_flows_per_dut` default): a DUT that floods new flows keeps the
    /// other half free for the others, and recycles its own share.
    #[must_use]
    pub fn new(flows: u32) -> Self {
        Self {
            flows,
            per_dut: (flows / 2).max(1),
        }
    }
}

/// What the datapath does for one DUT network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DutNetwork {
    /// The DUT NIC.
    pub iface: String,
    /// The exporter's address on it.
    pub gateway: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub nat: NatPlan,
    /// DUTs with a public address of their own (1:1 NAT); the others are
    /// masqueraded.
    pub public: Vec<PublicAddress>,
    /// Non-zero: the mark for what this NIC hands to the stack (policy
    /// routing sends the exporter's replies back out of this NIC).
    pub reply_mark: u32,
    /// Its share of the connection table.
    pub flows: FlowLimits,
}

/// A DUT reachable at its own public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublicAddress {
    pub private: Ipv4Addr,
    pub public: Ipv4Addr,
}

/// How a DUT network reaches the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatPlan {
    /// DUT connections leave from `external` (the upstream interface's
    /// address), with ports from `ports` when the DUT's own is taken.
    Masquerade {
        upstream: String,
        external: Ipv4Addr,
        ports: RangeInclusive<u16>,
    },
    /// Nothing is forwarded: DHCP and DNS on an isolated segment.
    Disabled,
}

/// What the daemon needs from a datapath.
pub trait Datapath {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Starts handling the traffic of a DUT network.
    fn attach(&mut self, network: &DutNetwork) -> Result<(), Self::Error>;

    /// Stops handling `iface`, removing everything `attach` added to it.
    fn detach(&mut self, iface: &str) -> Result<(), Self::Error>;

    /// Current counters of every attached interface.
    fn stats(&self) -> Result<Vec<InterfaceStats>, Self::Error>;
}

/// The name of interface `ifindex` in this network namespace, if it exists.
#[must_use]
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` is IF_NAMESIZE bytes, as if_indextoname requires.
    let ret = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if ret.is_null() {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// The index of interface `name` in this network namespace.
pub fn interface_index(name: &str) -> std::io::Result<u32> {
    let c_name = std::ffi::CString::new(name).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in interface name")
    })?;
    // SAFETY: `c_name` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        index => Ok(index),
    }
}
