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

/// Value of the `IFACE_STATS` map, keyed by interface index (`u32`, host byte
/// order). Per-CPU: userspace sums the CPUs' copies.
///
/// `ingress` is what the interface received (for a DUT NIC: from the DUT),
/// `egress` what it sent (to the DUT).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub ingress: DirCounters,
    pub egress: DirCounters,
}

const _: () = assert!(core::mem::size_of::<DirCounters>() == 16);
const _: () = assert!(core::mem::size_of::<IfaceCounters>() == 32);

impl IfaceCounters {
    /// Adds another CPU's copy (used when reading a per-CPU map).
    #[must_use]
    pub fn merged(self, other: Self) -> Self {
        let add = |a: DirCounters, b: DirCounters| DirCounters {
            packets: a.packets.wrapping_add(b.packets),
            bytes: a.bytes.wrapping_add(b.bytes),
        };
        Self {
            ingress: add(self.ingress, other.ingress),
            egress: add(self.egress, other.egress),
        }
    }
}

// SAFETY: plain `#[repr(C)]` integers with no padding and no invalid bit patterns.
#[cfg(feature = "user")]
unsafe impl aya::Pod for IfaceCounters {}
