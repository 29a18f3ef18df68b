//! NAT, masquerade and 1:1: per-DUT-NIC configuration, the connection table,
//! the 1:1 mappings and the fragment table.
//!
//! Byte order: every field named `*_addr` or `*_port` is in network byte order
//! (as on the wire, so the programs copy it without swapping); every other
//! integer is in host byte order.

/// `nat_mode` of a [`DutConfig`].
pub mod mode {
    /// DUTs share the upstream address (port-translated).
    pub const MASQUERADE: u8 = 0;
    /// Addresses with a public IP are translated 1:1, the others masqueraded.
    pub const ONE_TO_ONE: u8 = 1;
    /// No forwarding at all: DHCP/DNS on an isolated segment.
    pub const DISABLED: u8 = 2;
}

/// Value of the `DUT_CONFIG` map, keyed by the DUT NIC's ifindex (`u32`, host
/// order). Written by the controller before it attaches the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DutConfig {
    /// The gateway address on the DUT NIC (network order).
    pub gateway_addr: u32,
    /// The DUT subnet's network address and netmask (network order).
    pub subnet_addr: u32,
    pub subnet_mask_addr: u32,
    /// The masquerade source address: the upstream interface's (network order).
    pub external_addr: u32,
    /// Where masqueraded traffic leaves (host order).
    pub upstream_ifindex: u32,
    /// Translated ports are taken from `port_min..=port_max` (host order) when
    /// the DUT's own source port is already taken.
    pub port_min: u16,
    pub port_max: u16,
    /// One of [`mode`].
    pub nat_mode: u8,
    /// Non-zero: the network serves NTP (`local_ntp`); the DUTs' UDP to
    /// port 123 of any address goes to the stack, whose nft rule redirects
    /// it to the gateway.
    pub local_ntp: u8,
    pub _pad: [u8; 2],
    /// When non-zero, `skb->mark` for what the DUT NIC hands to the stack, so
    /// the exporter's replies route back out of this NIC even when another
    /// DUT NIC carries the same subnet (host order).
    pub reply_mark: u32,
    /// This network's flow budget ([`FlowBudget`]), host order.
    pub budget: FlowBudget,
}

/// A network's share of the connection table, and where its eviction ring
/// lies. Part of [`DutConfig`]; every field in host order.
///
/// Flows are counted per network (index `slot` of `NET_FLOWS` and
/// `NET_SWEPT`) and per DUT (`DUT_FLOWS`/`DUT_SWEPT`, keyed by
/// [`PrivateKey`]). A new flow that would exceed the DUT's or the network's
/// budget replaces one the ring offers (an unreplied or closed flow first),
/// or is dropped when none may go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowBudget {
    /// Index of the network's counters.
    pub slot: u32,
    /// Flows the network may hold (`nat_table_size`).
    pub flows: u32,
    /// Flows one DUT (source address) may hold (`nat_flows_per_dut`).
    pub per_dut: u32,
    /// The network's slice of `FLOW_RING`: `ring_base..ring_base + ring_len`.
    pub ring_base: u32,
    pub ring_len: u32,
}

/// Value of `NET_FLOWS` (by [`FlowBudget::slot`]) and of `DUT_FLOWS` (by
/// [`PrivateKey`]): written by the programs only, with atomic adds, so the
/// controller never overwrites a count a CPU is adding to. The flows in use
/// are `created - evicted - swept`, with `swept` from `NET_SWEPT` /
/// `DUT_SWEPT`, which only the controller's sweeper writes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    /// Flows created (their outbound half inserted).
    pub created: u64,
    /// Flows the programs removed to make room for a new one.
    pub evicted: u64,
    /// `NET_FLOWS` only: the ring position the next flow is written to.
    pub ring_next: u64,
    /// `NET_FLOWS` only: the ring position the next eviction starts
    /// looking at (the oldest flow not yet looked at).
    pub evict_next: u64,
}

impl FlowCounts {
    /// Flows still in the table, given how many the sweeper removed.
    #[must_use]
    pub fn in_use(&self, swept: u64) -> u64 {
        self.created
            .saturating_sub(self.evicted)
            .saturating_sub(swept)
    }
}

/// `protocol` values of a [`FlowKey`] (IANA protocol numbers).
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// One direction of a flow, as its packets carry it. For ICMP echo the DUT
/// side's "port" is the echo identifier and the remote side's is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The interface the packets arrive on: the DUT NIC for an outbound key,
    /// the upstream NIC for an inbound one (host order).
    pub ifindex: u32,
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

/// Key of `NAT_BINDINGS`: a DUT's source address and port (or echo
/// identifier) on its DUT NIC, whatever the destination. Its value is the
/// external port (network order) the DUT's flows from it get, so every
/// destination sees the same one: endpoint-independent mapping (RFC 4787
/// REQ-1, RFC 5382 REQ-1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindingKey {
    /// Host order.
    pub ifindex: u32,
    /// Network order.
    pub src_addr: u32,
    pub src_port: u16,
    pub protocol: u8,
    pub _pad: u8,
}

/// Value of `NAT_BINDINGS`. The controller's sweeper removes a binding
/// once no flow uses it any more (and it is older than the sweep), so a
/// mapping lives exactly as long as its flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// The external port (network order).
    pub port: u16,
    pub _pad: [u8; 6],
    /// `bpf_ktime_get_ns()` when a new flow last took it (host order).
    pub refreshed_ns: u64,
}

/// `direction` of a [`FlowEntry`].
pub mod direction {
    /// From the DUT: translate the source, route out the upstream NIC.
    pub const OUTBOUND: u8 = 0;
    /// From the far end: translate the destination, redirect to the DUT NIC.
    pub const INBOUND: u8 = 1;
}

/// Bits of [`FlowEntry::tcp_flags`]: what each side sent. The sweeper ORs the
/// two halves' bits to pick the flow's timeout.
pub mod tcp_seen {
    pub const SYN: u8 = 1;
    pub const FIN: u8 = 2;
    pub const RST: u8 = 4;
    pub const ACK: u8 = 8;
}

/// Value of the `NAT_FLOWS` map. A flow is two entries, one per direction,
/// each naming the other in `peer`; they are created together by the program
/// and removed together by the controller's sweeper (never an LRU, which would
/// evict one half alone).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    /// `bpf_ktime_get_ns()` of the last packet this direction carried
    /// (CLOCK_MONOTONIC, host order).
    pub last_seen_ns: u64,
    /// The key of the other direction's entry.
    pub peer: FlowKey,
    /// What the translated address and port become: the new source for an
    /// outbound entry, the new destination for an inbound one.
    pub rewrite_addr: u32,
    pub rewrite_port: u16,
    /// One of [`direction`].
    pub direction: u8,
    /// [`tcp_seen`] bits this direction carried.
    pub tcp_flags: u8,
    /// The DUT NIC the flow belongs to (host order).
    pub dut_ifindex: u32,
    /// For an inbound entry: the MACs to put on frames redirected to the DUT
    /// (the DUT's and the DUT NIC's own).
    pub dut_mac: [u8; 6],
    pub gateway_mac: [u8; 6],
    /// Packets this direction carried (saturating; an inbound half with none
    /// is a flow nobody answered).
    pub packets: u32,
}

/// A 1:1 mapping: value of `NAT_1TO1_OUT` (keyed by [`PrivateKey`]) and of
/// `NAT_1TO1_IN` (keyed by `public_addr`, a network-order `u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// The DUT's address on its DUT NIC (network order).
    pub private_addr: u32,
    /// The address it has upstream (network order).
    pub public_addr: u32,
    /// The DUT NIC (host order).
    pub dut_ifindex: u32,
    /// Its network's [`FlowBudget::slot`], which also names its filter
    /// (host order).
    pub slot: u32,
    /// Where the DUT's policy route (`public_gateway`) sends its traffic:
    /// its VLAN sub-interface, or the public interface; 0 without one, and
    /// then only the network's upstream is accepted (host order).
    pub out_ifindex: u32,
    /// The VLAN (`vlan_id`) inbound frames to `public_addr` must arrive
    /// tagged with, and whose tag is taken off on the way to the DUT; 0:
    /// untagged (host order).
    pub vlan_id: u16,
    pub _pad: [u8; 2],
}

/// Key of `NAT_1TO1_OUT`: the DUT NIC and the DUT's address on it (DUT NICs
/// may share a subnet, so the address alone is ambiguous).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrivateKey {
    /// Host order.
    pub dut_ifindex: u32,
    /// Network order.
    pub private_addr: u32,
}

/// Key of `NAT_FRAGS`: one IP datagram in fragments, as its packets carry
/// it on the interface they arrive on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    /// Host order.
    pub ifindex: u32,
    /// Network order.
    pub src_addr: u32,
    pub dst_addr: u32,
    /// The IP identification (network order).
    pub id: u16,
    pub protocol: u8,
    pub _pad: u8,
}

/// Value of `NAT_FRAGS`: how the first fragment of a datagram was
/// translated, so its later fragments (no L4 header) follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragEntry {
    /// The new source (outbound) or destination (inbound) address (network
    /// order).
    pub rewrite_addr: u32,
    /// Where the fragments go: the upstream NIC (outbound) or the DUT NIC
    /// (inbound) (host order).
    pub out_ifindex: u32,
    /// Outbound: the neighbour to send to (network order).
    pub next_hop: u32,
    /// Inbound: the MACs for the DUT NIC.
    pub dut_mac: [u8; 6],
    pub gateway_mac: [u8; 6],
    /// The DUT NIC the datagram's flow belongs to, for counting (host order).
    pub dut_ifindex: u32,
    /// Bytes of the datagram's payload seen so far, in order from its start
    /// ([`FRAG_UNTRACKED`] once a fragment came out of order): a later
    /// fragment starting before it overlaps, and is dropped as the kernel's
    /// reassembly would (host order).
    pub covered: u16,
    pub _pad: u16,
}

/// [`FragEntry::covered`] of a datagram whose fragments came out of order:
/// overlaps are no longer looked for.
pub const FRAG_UNTRACKED: u16 = u16::MAX;

const _: () = assert!(core::mem::size_of::<DutConfig>() == 52);
const _: () = assert!(core::mem::size_of::<FlowBudget>() == 20);
const _: () = assert!(core::mem::size_of::<FlowCounts>() == 32);
const _: () = assert!(core::mem::size_of::<FragKey>() == 16);
const _: () = assert!(core::mem::size_of::<FragEntry>() == 32);
const _: () = assert!(core::mem::size_of::<Mapping>() == 24);
const _: () = assert!(core::mem::size_of::<PrivateKey>() == 8);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 20);
const _: () = assert!(core::mem::size_of::<BindingKey>() == 12);
const _: () = assert!(core::mem::size_of::<Binding>() == 16);
const _: () = assert!(core::mem::size_of::<FlowEntry>() == 56);

// SAFETY: plain `#[repr(C)]` integers and byte arrays with explicit padding
// fields, so no uninitialised bytes and no invalid bit patterns.
#[cfg(feature = "user")]
unsafe impl aya::Pod for DutConfig {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowCounts {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for BindingKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Binding {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowEntry {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Mapping {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FragKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FragEntry {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PrivateKey {}
