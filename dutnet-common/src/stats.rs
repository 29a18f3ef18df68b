//! Per-interface traffic counters.

/// Maximum number of interfaces the counter map tracks at once.
pub const MAX_INTERFACES: u32 = 1024;

/// Packets and bytes seen in one direction. Bytes count the whole frame as TC
/// sees it (Ethernet header included, `skb->len`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Why a packet was left to the kernel (and dutnet's nft fallback rules)
/// instead of being translated by the fast path. Index into
/// [`IfaceCounters::punts`].
pub mod punt {
    /// An IP fragment: its ports are in the first fragment only.
    pub const FRAGMENT: usize = 0;
    /// An IPv4 header with options.
    pub const IP_OPTIONS: usize = 1;
    /// TTL <= 1: the kernel sends the time-exceeded error.
    pub const TTL_EXPIRED: usize = 2;
    /// Not TCP, UDP, ICMP echo or a translatable ICMP error.
    pub const PROTOCOL: usize = 3;
    /// Larger than the outgoing MTU: the kernel fragments or sends
    /// fragmentation-needed.
    pub const MTU: usize = 4;
    /// The route lookup gave no usable route (unreachable, prohibited,
    /// forwarding disabled): the kernel answers with the ICMP error.
    pub const NO_ROUTE: usize = 5;
    pub const COUNT: usize = 6;
    /// Names, as `dutnet stats` prints them.
    pub const NAMES: [&str; COUNT] = [
        "fragment",
        "ip_options",
        "ttl_expired",
        "protocol",
        "mtu",
        "no_route",
    ];
}

/// Why a packet was dropped. Index into [`IfaceCounters::drops`].
pub mod drop {
    /// A new connection from the upstream side towards a masqueraded DUT.
    pub const UNSOLICITED: usize = 0;
    /// Every port of the translation range is taken for that destination.
    pub const PORTS_EXHAUSTED: usize = 1;
    /// The connection table is full.
    pub const TABLE_FULL: usize = 2;
    /// The route leads out of an interface that is not this network's
    /// upstream: forwarding there would break the isolation.
    pub const NOT_UPSTREAM: usize = 3;
    /// A header the kernel's IP input would refuse: claiming more bytes
    /// than the frame has, a bad IPv4 header checksum, a TCP data offset or
    /// UDP length that does not fit the packet.
    pub const MALFORMED: usize = 4;
    /// The DUT holds its whole share of the network's flows
    /// (`nat_flows_per_dut`) and none of them may be evicted.
    pub const DUT_LIMIT: usize = 5;
    /// A source address no DUT of the subnet can have (outside it, its
    /// network or broadcast address, the gateway's): never translated.
    pub const SPOOFED: usize = 6;
    /// A VLAN-tagged frame on a DUT NIC, whose network is untagged.
    pub const VLAN_TAGGED: usize = 7;
    /// A new flow the network's `filter` refused.
    pub const FILTERED: usize = 8;
    pub const COUNT: usize = 9;
    /// Names, as `dutnet stats` prints them.
    pub const NAMES: [&str; COUNT] = [
        "unsolicited",
        "ports_exhausted",
        "table_full",
        "not_upstream",
        "malformed",
        "dut_flow_limit",
        "spoofed_source",
        "vlan_tagged",
        "filtered",
    ];
}

/// Value of the `IFACE_STATS` map, keyed by the DUT NIC's interface index
/// (`u32`, host byte order). Per-CPU: userspace sums the CPUs' copies.
///
/// `ingress` is what the DUT NIC received (from the DUT), counted by the
/// programs. `egress` is written by userspace only: the NIC's own transmit
/// counters when dutnet attached, so that what it sent the DUT since then is
/// the kernel's counters minus these (no program runs on a DUT NIC's
/// egress). `nat_out`/`nat_in` count what the fast path translated
/// and forwarded, from the DUT to upstream and back; what happened upstream
/// of a flow is counted against the DUT NIC the flow belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub ingress: DirCounters,
    pub egress: DirCounters,
    pub nat_out: DirCounters,
    pub nat_in: DirCounters,
    /// Connections the fast path created a mapping for.
    pub new_flows: u64,
    /// Indexed by [`punt`].
    pub punts: [u64; punt::COUNT],
    /// Indexed by [`drop`].
    pub drops: [u64; drop::COUNT],
}

/// Value of the `DUT_TRAFFIC` map, keyed by [`crate::nat::PrivateKey`] (DUT
/// NIC, DUT address): one DUT's traffic. Per-CPU, created by the programs on
/// the DUT's first packet; the controller removes a NIC's entries when it
/// detaches from it.
///
/// `from_dut` is every IPv4 packet the DUT NIC received from that address
/// (to the gateway's servers too; not the DHCP broadcasts of a client
/// without one yet). `to_dut` is what the fast path delivered to it:
/// translated replies, inbound 1:1 traffic, hairpins. What the kernel sends
/// the DUT itself (the gateway's DHCP, DNS and ping answers, punted flows)
/// is in its NIC's transmit counters only: no program runs on a DUT NIC's
/// egress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DutTraffic {
    pub from_dut: DirCounters,
    pub to_dut: DirCounters,
}

/// DUT addresses `DUT_TRAFFIC` holds at once, every DUT NIC together (a /24
/// on each of 256 NICs). A DUT whose address finds no room is counted on
/// its NIC only (`dutnet stats --by-dut` shows the rest as `other`).
pub const MAX_DUTS: u32 = 65536;

impl DutTraffic {
    /// Adds another CPU's copy.
    #[must_use]
    pub fn merged(self, other: Self) -> Self {
        Self {
            from_dut: self.from_dut.plus(other.from_dut),
            to_dut: self.to_dut.plus(other.to_dut),
        }
    }
}

impl DirCounters {
    /// Both counts added (wrapping, like the kernel's counters).
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

const _: () = assert!(core::mem::size_of::<DirCounters>() == 16);
const _: () = assert!(core::mem::size_of::<DutTraffic>() == 32);
const _: () =
    assert!(core::mem::size_of::<IfaceCounters>() == 64 + 8 + 8 * punt::COUNT + 8 * drop::COUNT);

impl IfaceCounters {
    /// Adds another CPU's copy (used when reading a per-CPU map).
    #[must_use]
    pub fn merged(self, other: Self) -> Self {
        let add = DirCounters::plus;
        let sum = |a: u64, b: u64| a.wrapping_add(b);
        Self {
            ingress: add(self.ingress, other.ingress),
            egress: add(self.egress, other.egress),
            nat_out: add(self.nat_out, other.nat_out),
            nat_in: add(self.nat_in, other.nat_in),
            new_flows: sum(self.new_flows, other.new_flows),
            punts: core::array::from_fn(|i| sum(self.punts[i], other.punts[i])),
            drops: core::array::from_fn(|i| sum(self.drops[i], other.drops[i])),
        }
    }
}

// SAFETY: plain `#[repr(C)]` integers with no padding and no invalid bit patterns.
#[cfg(feature = "user")]
unsafe impl aya::Pod for IfaceCounters {}

// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for DutTraffic {}
