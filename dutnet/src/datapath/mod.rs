//! The packet path, behind one seam.
//!
//! The daemon talks to the [`Datapath`] trait and never asks which backend
//! runs: [`Datapaths`] owns the loaded eBPF programs (the fast path), the
//! nftables table (the fallback, and what the fast path punts) and the port
//! plan, and sends each network to the backend chosen for it.
pub mod ebpf;
pub mod expiry;
#[cfg(test)]
pub mod fake;
pub mod filter;
pub mod nft;
mod owner;
pub mod ports;
pub mod rates;
pub mod select;

pub use self::owner::Datapaths;

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
    /// Flows each filter rule decided on the fast path (`None`: no filter).
    pub filter: Option<filter::FilterHits>,
    /// Each DUT's traffic, by address (those `DUT_TRAFFIC` had room for).
    pub duts: Vec<DutStats>,
}

/// One DUT's traffic on the fast path, since its NIC was attached (see
/// [`dutnet_common::stats::DutTraffic`] for what each way counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DutStats {
    pub address: std::net::Ipv4Addr,
    pub traffic: dutnet_common::stats::DutTraffic,
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
    /// Non-zero: the mark for what this NIC hands to the stack (policy
    /// routing sends the exporter's replies back out of this NIC).
    pub reply_mark: u32,
    /// Its share of the connection table.
    pub flows: FlowLimits,
    /// What its DUTs may open and be opened; `None`: no filter.
    pub filter: Option<filter::FilterPlan>,
    /// `local_ntp`: the DUTs' NTP goes to the stack (and the gateway).
    pub local_ntp: bool,
}

/// A DUT reachable at its own public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublicAddress {
    pub private: Ipv4Addr,
    pub public: Ipv4Addr,
    /// `vlan_id`: the traffic leaves tagged, by the VLAN sub-interface of
    /// the public interface (`eth0.905`).
    pub vlan_id: Option<u16>,
    /// The interface its policy route (`public_gateway`) leaves by, once
    /// the host has it (the VLAN sub-interface or the public interface);
    /// 0: none, the network's upstream only. Not part of its identity.
    pub out_ifindex: u32,
}

impl PublicAddress {
    /// A plain 1:1 mapping: no VLAN, no policy route.
    #[must_use]
    pub fn new(private: Ipv4Addr, public: Ipv4Addr) -> Self {
        Self {
            private,
            public,
            vlan_id: None,
            out_ifindex: 0,
        }
    }

    /// The same DUT published at the same address (whatever its route).
    #[must_use]
    pub fn same(&self, other: &Self) -> bool {
        (self.private, self.public) == (other.private, other.public)
    }
}

/// How a DUT network reaches the world: the config's `nat_mode`, with what
/// the host resolved for it. The same three modes as the programs'
/// `dutnet_common::nat::mode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatPlan {
    /// Nothing is forwarded: DHCP and DNS on an isolated segment.
    Disabled,
    /// DUT connections leave from `external` (the upstream interface's
    /// address; unspecified when it has none, which the nft datapath's
    /// kernel masquerade copes with and the fast path refuses), with ports
    /// from `ports` when the DUT's own is taken.
    Masquerade {
        upstream: String,
        external: Ipv4Addr,
        ports: RangeInclusive<u16>,
    },
    /// DUTs listed in `public` leave from and are reachable at their own
    /// public address; the others are masqueraded as above.
    OneToOne {
        upstream: String,
        external: Ipv4Addr,
        ports: RangeInclusive<u16>,
        public: Vec<PublicAddress>,
    },
}

impl NatPlan {
    /// The interface DUT traffic leaves through (`None`: NAT disabled).
    #[must_use]
    pub fn upstream(&self) -> Option<&str> {
        match self {
            Self::Disabled => None,
            Self::Masquerade { upstream, .. } | Self::OneToOne { upstream, .. } => Some(upstream),
        }
    }

    /// The 1:1 mappings (empty unless 1:1).
    #[must_use]
    pub fn public(&self) -> &[PublicAddress] {
        match self {
            Self::OneToOne { public, .. } => public,
            Self::Disabled | Self::Masquerade { .. } => &[],
        }
    }

    /// Mutable 1:1 mappings; `None` unless 1:1 (a runtime change of a
    /// masquerade network has nowhere to go).
    pub fn public_mut(&mut self) -> Option<&mut Vec<PublicAddress>> {
        match self {
            Self::OneToOne { public, .. } => Some(public),
            Self::Disabled | Self::Masquerade { .. } => None,
        }
    }
}

/// A runtime change of one 1:1 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicChange {
    Add(PublicAddress),
    Remove(PublicAddress),
}

/// Why a datapath could not do what the daemon asked; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Boxed: aya's errors are large, and this one travels up every
    /// `Result` of the daemon.
    #[error(transparent)]
    Ebpf(Box<ebpf::EbpfError>),
    #[error("updating dutnet's nftables table failed: {0}")]
    Nft(#[from] nft::NftError),
    #[error("{iface} is not a DUT interface of this datapath")]
    Unknown { iface: String },
}

impl From<ebpf::EbpfError> for DatapathError {
    fn from(e: ebpf::EbpfError) -> Self {
        Self::Ebpf(Box::new(e))
    }
}

/// How a DUT network's traffic is carried, for `dutnet status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// Not carried (its interface is missing, or not attached yet).
    None,
    /// The eBPF programs, attached this way.
    Ebpf(ebpf::TcAttachMode),
    /// The nftables table alone.
    Nft,
}

impl Carrier {
    /// `ebpf`, `nft` or `none`: the backend without the attach detail.
    #[must_use]
    pub fn backend(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Ebpf(_) => "ebpf",
            Self::Nft => "nft",
        }
    }
}

impl std::fmt::Display for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ebpf(ebpf::TcAttachMode::Tcx) => f.write_str("ebpf (tcx)"),
            Self::Ebpf(ebpf::TcAttachMode::Netlink) => f.write_str("ebpf (netlink)"),
            other => f.write_str(other.backend()),
        }
    }
}

/// The translation ranges a NAT network's flows get (`dutnet nat-rules`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatPorts {
    /// The fast path's masquerade range (eBPF networks).
    pub fast_path: Option<RangeInclusive<u16>>,
    /// The kernel masquerade's range beside a fast path (what it punts).
    pub kernel: Option<RangeInclusive<u16>>,
}

/// What the daemon needs from a datapath. Interfaces are DUT interfaces,
/// by name (one network each). `detach` undoes exactly what `attach` did.
pub trait Datapath {
    /// Starts carrying `network`, whose DUT interface exists. Does nothing
    /// if it is carried already.
    fn attach(&mut self, network: &DutNetwork) -> Result<(), DatapathError>;

    /// Stops carrying `iface` (also when the interface has vanished).
    fn detach(&mut self, iface: &str) -> Result<(), DatapathError>;

    /// A 1:1 mapping of `iface`'s network added or removed at run time.
    fn set_public(&mut self, iface: &str, change: PublicChange) -> Result<(), DatapathError>;

    /// Makes `filter` the filter of `iface`'s network at once (a reload):
    /// new flows are judged by it, open ones are kept. On an error the
    /// previous filter stays.
    fn set_filter(
        &mut self,
        iface: &str,
        filter: Option<&filter::FilterPlan>,
    ) -> Result<(), DatapathError>;

    /// Removes idle flows, by each DUT interface's `timeouts`. A datapath
    /// whose flows are conntrack's has none of its own to remove.
    fn sweep(
        &mut self,
        timeouts: &dyn Fn(&str) -> Option<expiry::FlowTimeouts>,
    ) -> Result<ebpf::SweepReport, DatapathError> {
        let _ = timeouts;
        Ok(ebpf::SweepReport::default())
    }

    /// How `iface`'s network is carried now.
    fn carrier(&self, iface: &str) -> Carrier;

    /// How `iface`'s network is carried once attached (its backend).
    fn planned(&self, iface: &str) -> Carrier;

    /// The ranges masquerade translates `iface`'s flows into.
    fn nat_ports(&self, iface: &str) -> NatPorts;

    /// Counters of every interface on the fast path (empty without one).
    fn stats(&self) -> Result<Vec<InterfaceStats>, DatapathError> {
        Ok(Vec::new())
    }

    /// The fast path's flows of DUT NICs `dut_ifindexes`: at most `limit`
    /// (none without a fast path: conntrack's are listed by `conntrack -L`).
    fn flows(
        &self,
        dut_ifindexes: &std::collections::BTreeSet<u32>,
        limit: usize,
    ) -> Result<ebpf::FlowListing, DatapathError> {
        let _ = (dut_ifindexes, limit);
        Ok(ebpf::FlowListing::default())
    }

    /// Detaches everything and releases what the datapath holds.
    fn shutdown(&mut self) -> Result<(), DatapathError>;
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
