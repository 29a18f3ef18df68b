//! Traffic filters in the fast path: the controller compiles each network's
//! ordered rules into tables the programs judge a new flow with in two
//! lookups, never a loop over rules.
//!
//! The rules' address prefixes are nested or disjoint, so the rules that can
//! match an address are those whose prefix contains the longest rule prefix
//! containing it. `FILTER_CELLS`, an LPM trie keyed by (filter, address),
//! finds that prefix (its "cell") and holds the decision for TCP, UDP and
//! other protocols on ports no rule names; `FILTER_PORTS` holds the cell's
//! decisions for the ports rules do name. Every filter has a cell for
//! 0.0.0.0/0, so a lookup always finds one.
//!
//! A filter is replaced atomically: the controller writes the new tables
//! under the other generation, flips [`FilterHead::generation`], then
//! removes the old ones.

/// Direction numbers, in [`filter_id`] and [`hit_key`].
pub mod direction {
    /// Flows a DUT opens, judged on their destination.
    pub const EGRESS: u32 = 0;
    /// Flows the far side opens towards a DUT, judged on their source.
    pub const INGRESS: u32 = 1;
}

/// [`FilterDecision::action`].
pub mod action {
    pub const ACCEPT: u8 = 0;
    pub const DROP: u8 = 1;
}

/// [`FilterDecision::rule`] when no rule matched: the policy decided.
pub const POLICY: u16 = 0x7ff;
/// Rules a direction may have (rule numbers must stay below [`POLICY`]).
pub const MAX_RULES: usize = 1024;

/// The table identity of a network's direction in a generation: the first
/// word of a [`FilterAddr`].
#[must_use]
pub const fn filter_id(slot: u32, direction: u32, generation: u8) -> u32 {
    (slot << 2) | (direction << 1) | (generation as u32 & 1)
}

/// Key of `FILTER_HITS`: a rule's (or the policy's) counter.
#[must_use]
pub const fn hit_key(slot: u32, direction: u32, generation: u8, rule: u16) -> u32 {
    (filter_id(slot, direction, generation) << 11) | (rule as u32 & POLICY as u32)
}

/// Value of `FILTER_HEADS`, by the network's budget slot (host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterHead {
    /// Which generation of the tables is live (0 or 1).
    pub generation: u8,
    /// Non-zero: egress flows are judged.
    pub egress: u8,
    /// Non-zero: ingress flows are judged.
    pub ingress: u8,
    pub _pad: u8,
    /// A 1:1 DUT's judged flows (no connection table entry of their own)
    /// are remembered this long after their last packet: the network's
    /// `udp_timeout` for UDP and ICMP, `nat_timeouts.tcp_established` for
    /// TCP (seconds, host order).
    pub udp_idle_secs: u32,
    pub tcp_idle_secs: u32,
}

/// Key data of `FILTER_CELLS` (the LPM trie compares bytes from the first):
/// the [`filter_id`] in network order, then the address (network order).
/// The prefix length counts the 32 bits of the id too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterAddr {
    pub filter_be: u32,
    pub addr: u32,
}

/// What one rule decided.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterDecision {
    /// One of [`action`].
    pub action: u8,
    pub _pad: u8,
    /// The deciding rule's number, or [`POLICY`] (host order).
    pub rule: u16,
}

/// Value of `FILTER_CELLS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterCell {
    /// Unique among the live cells: the first word of a [`FilterPortKey`]
    /// (host order).
    pub cell: u32,
    /// Non-zero: `FILTER_PORTS` has TCP (resp. UDP) ports of this cell.
    pub tcp_ports: u8,
    pub udp_ports: u8,
    pub _pad: u16,
    /// The decision for TCP and UDP on ports no rule of the cell names, and
    /// for every other protocol.
    pub tcp: FilterDecision,
    pub udp: FilterDecision,
    pub other: FilterDecision,
}

/// Key of `FILTER_PORTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterPortKey {
    /// [`FilterCell::cell`] (host order).
    pub cell: u32,
    /// The destination port (network order).
    pub port: u16,
    /// The IP protocol number.
    pub protocol: u8,
    pub _pad: u8,
}

/// Value of `FILTER_FLOWS`: a 1:1 DUT's flow a filter accepted (the key is
/// the flow's outbound [`crate::nat::FlowKey`] on the DUT NIC, whichever
/// side opened it), so its packets both ways pass unjudged.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterFlow {
    /// `bpf_ktime_get_ns()` of its last packet (refreshed at most once a
    /// second; host order).
    pub last_seen_ns: u64,
}

const _: () = assert!(core::mem::size_of::<FilterHead>() == 12);
const _: () = assert!(core::mem::size_of::<FilterAddr>() == 8);
const _: () = assert!(core::mem::size_of::<FilterDecision>() == 4);
const _: () = assert!(core::mem::size_of::<FilterCell>() == 20);
const _: () = assert!(core::mem::size_of::<FilterPortKey>() == 8);
const _: () = assert!(core::mem::size_of::<FilterFlow>() == 8);
const _: () = assert!(MAX_RULES < POLICY as usize);

// SAFETY: plain `#[repr(C)]` integers with explicit padding fields, so no
// uninitialised bytes and no invalid bit patterns.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterHead {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterAddr {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterDecision {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterCell {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterPortKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FilterFlow {}
