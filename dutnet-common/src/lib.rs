//! The contract between dutnet's TC programs and its controller.
//!
//! Every type here crosses the kernel/userspace boundary through a BPF map, so
//! each one is `#[repr(C)]`, has explicit padding, holds no `bool` or
//! `Option`, states the byte order of every address and port, and has its size
//! asserted at compile time. Changing a layout is an ABI change: the pinned maps
//! of a running older dutnet become unreadable, so bump [`ABI_VERSION`].
#![no_std]

pub mod csum;
pub mod filter;
pub mod flow_state;
pub mod nat;
pub mod stats;

/// Bumped whenever a map key or value layout changes. Pinned maps live under a
/// directory named after it (`<bpffs>/dutnet-v<ABI_VERSION>`, see
/// `dutnet::state::paths::Paths::pin_dir`), so a new dutnet never reads an
/// old layout, and `dutnet stats --offline` says so when it finds one.
///
/// 5: `IfaceCounters::egress` holds the NIC's transmit counters when it was
/// attached (no program counts egress any more).
/// 6: traffic filters (`FILTER_*` maps, [`nat::Mapping::slot`]).
/// 7: per-DUT traffic (`DUT_TRAFFIC`).
/// 8: a 1:1 mapping's own way out (`Mapping::out_ifindex`, `vlan_id`).
pub const ABI_VERSION: u32 = 8;

/// Names of the TC programs in the eBPF object, as the controller looks them up.
pub mod programs {
    /// TC ingress on a DUT interface: packets coming from the DUT.
    pub const DUT_INGRESS: &str = "dut_ingress";
    /// TC ingress on an upstream interface: replies to translated flows.
    pub const UPSTREAM_INGRESS: &str = "upstream_ingress";
}

/// Names of the maps in the eBPF object (at most 15 bytes: BPF_OBJ_NAME_LEN).
pub mod maps {
    /// Per-CPU hash: interface index -> [`crate::stats::IfaceCounters`].
    pub const IFACE_STATS: &str = "IFACE_STATS";
    /// Per-CPU hash: [`crate::nat::PrivateKey`] (DUT NIC, DUT address) ->
    /// [`crate::stats::DutTraffic`] (programs write).
    pub const DUT_TRAFFIC: &str = "DUT_TRAFFIC";
    /// Hash: DUT ifindex (`u32`) -> [`crate::nat::DutConfig`].
    pub const DUT_CONFIG: &str = "DUT_CONFIG";
    /// Hash: [`crate::nat::FlowKey`] -> [`crate::nat::FlowEntry`], both
    /// directions of every translated flow.
    pub const NAT_FLOWS: &str = "NAT_FLOWS";
    /// LPM trie: masqueraded DUT subnets, so unsolicited traffic towards them
    /// arriving upstream is dropped. Key: prefix length (`u32`, host order) then
    /// the network address (`u32`, network order); value: the DUT ifindex the
    /// drops are counted against (`u32`, host order).
    pub const DUT_SUBNETS: &str = "DUT_SUBNETS";
    /// Hash: [`crate::nat::PrivateKey`] -> [`crate::nat::Mapping`].
    pub const NAT_1TO1_OUT: &str = "NAT_1TO1_OUT";
    /// Hash: public address (`u32`, network order) -> [`crate::nat::Mapping`].
    pub const NAT_1TO1_IN: &str = "NAT_1TO1_IN";
    /// LRU hash: [`crate::nat::FragKey`] -> [`crate::nat::FragEntry`], the
    /// fragmented datagrams of translated flows (short-lived, one entry per
    /// datagram, so an LRU eviction never splits a flow).
    pub const NAT_FRAGS: &str = "NAT_FRAGS";
    /// Array: [`crate::nat::FlowBudget::slot`] ->
    /// [`crate::nat::FlowCounts`], each network's flows (programs write).
    pub const NET_FLOWS: &str = "NET_FLOWS";
    /// Array: slot -> flows of that network the sweeper removed (`u64`;
    /// only the controller writes).
    pub const NET_SWEPT: &str = "NET_SWEPT";
    /// Hash: [`crate::nat::PrivateKey`] (DUT NIC, DUT address) ->
    /// [`crate::nat::FlowCounts`], each DUT's flows (programs write).
    pub const DUT_FLOWS: &str = "DUT_FLOWS";
    /// Hash: [`crate::nat::PrivateKey`] -> flows of that DUT the sweeper
    /// removed (`u64`; only the controller writes).
    pub const DUT_SWEPT: &str = "DUT_SWEPT";
    /// LRU hash: [`crate::nat::BindingKey`] -> [`crate::nat::Binding`]: the
    /// mapping a DUT's address and port keeps for every destination while
    /// a flow uses it (the sweeper removes unused ones). An LRU: losing one
    /// only costs the next new flow of that port its old external port,
    /// never a flow.
    pub const NAT_BINDINGS: &str = "NAT_BINDINGS";
    /// Array of [`crate::nat::FlowKey`]: every network's eviction ring, the
    /// outbound keys of its flows in creation order.
    pub const FLOW_RING: &str = "FLOW_RING";
    /// Array: slot -> [`crate::filter::FilterHead`].
    pub const FILTER_HEADS: &str = "FILTER_HEADS";
    /// LPM trie: [`crate::filter::FilterAddr`] -> [`crate::filter::FilterCell`].
    pub const FILTER_CELLS: &str = "FILTER_CELLS";
    /// Hash: [`crate::filter::FilterPortKey`] -> [`crate::filter::FilterDecision`].
    pub const FILTER_PORTS: &str = "FILTER_PORTS";
    /// Per-CPU hash: [`crate::filter::hit_key`] -> flows the rule judged (`u64`).
    pub const FILTER_HITS: &str = "FILTER_HITS";
    /// LRU hash: [`crate::nat::FlowKey`] -> [`crate::filter::FilterFlow`].
    pub const FILTER_FLOWS: &str = "FILTER_FLOWS";
}
