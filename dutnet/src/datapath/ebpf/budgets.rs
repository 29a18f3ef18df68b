//! Where each network's flow budget lives in the maps: its counters' slot
//! and its slice of the eviction ring. The maps are sized once, at load,
//! for the networks dutnet loads; a network keeps its place across a
//! detach and re-attach (a USB NIC that comes back), so they never run out.
use std::collections::BTreeMap;

use dutnet_common::{nat::FlowBudget, stats::MAX_INTERFACES};

use super::EbpfError;
use crate::datapath::FlowLimits;

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
    #[must_use]
    pub fn for_networks(networks: &[FlowLimits]) -> Self {
        networks.iter().fold(Self::default(), |sum, limits| Self {
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
        let used_ring: u32 = self.by_iface.values().map(|b| b.ring_len).sum();
        let used_flows: u32 = self.by_iface.values().map(|b| b.flows).sum();
        let slot = (0..MAX_INTERFACES).find(|s| self.by_iface.values().all(|b| b.slot != *s));
        let fits = used_ring.saturating_add(len) <= self.capacity.ring
            && used_flows.saturating_add(limits.flows) <= self.capacity.flows;
        let (Some(slot), true) = (slot, fits) else {
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
            ring_base: used_ring,
            ring_len: len,
        };
        self.by_iface.insert(iface.to_owned(), budget);
        Ok(budget)
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
    fn a_network_the_maps_were_not_sized_for_is_refused() {
        let a = FlowLimits::new(1024);
        let mut budgets = Budgets::new(Capacity::for_networks(&[a]));
        budgets.place("dut1", a).unwrap();
        let err = budgets.place("dut2", a).unwrap_err().to_string();
        assert!(err.contains("dut2") && err.contains("restart"), "{err}");
    }

    #[test]
    fn the_table_has_room_for_both_halves_and_the_headroom() {
        let capacity = Capacity::for_networks(&[FlowLimits::new(1024), FlowLimits::new(2048)]);
        assert_eq!(capacity.table_entries(), 2 * 3072 + HEADROOM_ENTRIES);
    }
}
