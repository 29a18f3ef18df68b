//! Where each network's flow budget lives in the maps: its counters' slot
//! and its slice of the eviction ring. The maps are sized once, at load,
//! for the networks dutnet loads; a network keeps its place across a
//! detach and re-attach (a USB NIC that comes back), so they never run out.
use std::collections::BTreeMap;

use dutnet_common::{nat::FlowBudget, stats::MAX_INTERFACES};

use super::EbpfError;
use crate::{config::DEFAULT_NAT_TABLE_SIZE, datapath::FlowLimits};

/// Networks of the default size a reload may add without a restart: the
/// maps cannot grow once loaded, so they keep this much room (1 MiB of
/// kernel memory each).
pub const SPARE_NETWORKS: usize = 4;

/// A network's eviction ring holds at most this many flows: the ring is
/// preallocated (20 bytes a flow), and a flood cycles through 16 384 flows
/// in a few tens of milliseconds at most, far longer than a connection
/// takes to be answered, so answered flows are never the oldest candidates.
const RING_MAX: u32 = 16_384;

/// Extra connection-table entries beyond the networks' budgets: every CPU
/// may be inserting a flow while another one counts it (the budget check
/// and the insert are not one atomic step), and a new flow's inbound half
/// is inserted before its outbound half is checked against the table.
pub const HEADROOM_ENTRIES: u32 = 4096;

/// Ring positions a network with `limits` uses.
#[must_use]
pub fn ring_len(limits: FlowLimits) -> u32 {
    limits.flows.clamp(1, RING_MAX)
}

/// What the maps were sized for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Flows of every network together (two table entries each).
    pub flows: u32,
    /// Ring positions of every network together.
    pub ring: u32,
}

impl Capacity {
    /// Room for `networks` and [`SPARE_NETWORKS`] more of the default size.
    #[must_use]
    pub fn for_networks(networks: &[FlowLimits]) -> Self {
        let spare = FlowLimits::new(DEFAULT_NAT_TABLE_SIZE);
        let all = networks
            .iter()
            .chain(std::iter::repeat_n(&spare, SPARE_NETWORKS));
        all.fold(Self::default(), |sum, limits| Self {
            flows: sum.flows.saturating_add(limits.flows),
            ring: sum.ring.saturating_add(ring_len(*limits)),
        })
    }

    /// `NAT_FLOWS` entries: two per flow, plus the headroom.
    #[must_use]
    pub fn table_entries(&self) -> u32 {
        self.flows
            .max(1)
            .saturating_mul(2)
            .saturating_add(HEADROOM_ENTRIES)
    }
}

/// The places given out so far.
#[derive(Debug)]
pub struct Budgets {
    capacity: Capacity,
    by_iface: BTreeMap<String, FlowBudget>,
}

impl Budgets {
    #[must_use]
    pub fn new(capacity: Capacity) -> Self {
        Self {
            capacity,
            by_iface: BTreeMap::new(),
        }
    }

    /// The budget of DUT interface `iface` with `limits`: its old place if
    /// it had one of the same size, else a new one.
    pub fn place(&mut self, iface: &str, limits: FlowLimits) -> Result<FlowBudget, EbpfError> {
        let len = ring_len(limits);
        if let Some(budget) = self.by_iface.get_mut(iface)
            && budget.ring_len == len
        {
            budget.flows = limits.flows;
            budget.per_dut = limits.per_dut;
            return Ok(*budget);
        }
        let used_flows: u32 = self.by_iface.values().map(|b| b.flows).sum();
        let slot = (0..MAX_INTERFACES).find(|s| self.by_iface.values().all(|b| b.slot != *s));
        let ring_base = self.free_ring(len);
        let fits = used_flows.saturating_add(limits.flows) <= self.capacity.flows;
        let (Some(slot), Some(ring_base), true) = (slot, ring_base, fits) else {
            return Err(EbpfError::NoFlowCapacity {
                iface: iface.to_owned(),
                flows: limits.flows,
                free: self.capacity.flows.saturating_sub(used_flows),
            });
        };
        let budget = FlowBudget {
            slot,
            flows: limits.flows,
            per_dut: limits.per_dut,
            ring_base,
            ring_len: len,
        };
        self.by_iface.insert(iface.to_owned(), budget);
        Ok(budget)
    }

    /// The first `len` ring positions no network holds. A removed
    /// network's slice is free again, and a slice is never shared: a
    /// network's evictions look only at its own positions.
    fn free_ring(&self, len: u32) -> Option<u32> {
        let mut taken: Vec<(u32, u32)> = self
            .by_iface
            .values()
            .map(|b| (b.ring_base, b.ring_base + b.ring_len))
            .collect();
        taken.sort_unstable();
        let mut start = 0u32;
        for (base, end) in taken {
            if base.saturating_sub(start) >= len {
                break;
            }
            start = start.max(end);
        }
        (start.saturating_add(len) <= self.capacity.ring).then_some(start)
    }

    /// Gives `iface`'s place back (its network was removed).
    pub fn release(&mut self, iface: &str) {
        self.by_iface.remove(iface);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_network_gets_its_own_slot_and_ring_slice() {
        let a = FlowLimits::new(1024);
        let b = FlowLimits::new(100_000);
        let mut budgets = Budgets::new(Capacity::for_networks(&[a, b]));
        let first = budgets.place("dut1", a).unwrap();
        let second = budgets.place("dut2", b).unwrap();
        assert_ne!(first.slot, second.slot);
        assert_eq!((first.ring_base, first.ring_len), (0, 1024));
        assert_eq!((second.ring_base, second.ring_len), (1024, RING_MAX));
        assert_eq!(second.per_dut, 50_000);
        // Coming back (a USB NIC replugged) keeps the place.
        assert_eq!(budgets.place("dut1", a).unwrap(), first);
    }

    #[test]
    fn a_reload_may_add_the_spare_networks_and_no_more() {
        let a = FlowLimits::new(1024);
        let mut budgets = Budgets::new(Capacity::for_networks(&[a]));
        budgets.place("dut1", a).unwrap();
        let spare = FlowLimits::new(DEFAULT_NAT_TABLE_SIZE);
        for n in 0..SPARE_NETWORKS {
            budgets.place(&format!("added{n}"), spare).unwrap();
        }
        let err = budgets.place("one-more", spare).unwrap_err().to_string();
        assert!(err.contains("one-more") && err.contains("restart"), "{err}");
    }

    #[test]
    fn a_removed_networks_ring_slice_is_reused_and_never_shared() {
        let small = FlowLimits::new(1024);
        let mut budgets = Budgets::new(Capacity::for_networks(&[small, small]));
        let first = budgets.place("dut1", small).unwrap();
        let second = budgets.place("dut2", small).unwrap();
        budgets.release("dut1");
        let third = budgets.place("dut3", small).unwrap();
        assert_eq!(third.ring_base, first.ring_base);
        // A bigger one does not fit in the hole: it goes after dut2.
        let big = budgets.place("dut4", FlowLimits::new(4096)).unwrap();
        assert_eq!(big.ring_base, second.ring_base + second.ring_len);
        let slices = [third, second, big].map(|b| b.ring_base..b.ring_base + b.ring_len);
        for (i, a) in slices.iter().enumerate() {
            for b in &slices[i + 1..] {
                assert!(a.end <= b.start || b.end <= a.start, "{slices:?}");
            }
        }
    }

    #[test]
    fn the_table_has_room_for_both_halves_the_spares_and_the_headroom() {
        let capacity = Capacity::for_networks(&[FlowLimits::new(1024), FlowLimits::new(2048)]);
        let spare = u32::try_from(SPARE_NETWORKS).unwrap() * DEFAULT_NAT_TABLE_SIZE;
        assert_eq!(
            capacity.table_entries(),
            2 * (3072 + spare) + HEADROOM_ENTRIES
        );
    }
}
