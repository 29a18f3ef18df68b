//! Each network's share of the connection table, and each DUT's share of
//! its network's: a new flow is admitted while both are under budget, or
//! when a flow of theirs can be evicted to make room, as conntrack's early
//! drop does. The victims come from the network's eviction ring, its flows
//! in creation order: the oldest few are looked at, and one nobody answered
//! or that is over goes first, then the least recently used one that is not
//! an established TCP connection. Established connections are never
//! evicted. Both halves of a victim go together.
#[cfg(not(target_arch = "bpf"))]
use core::sync::atomic::{AtomicU64, Ordering};

use aya_ebpf::bindings::BPF_NOEXIST;
use dutnet_common::{
    flow_state::{Eviction, FlowState},
    nat::{DutConfig, FlowCounts, FlowKey, PrivateKey, direction},
    stats::drop,
};

use crate::maps::{DUT_FLOWS, DUT_SWEPT, FLOW_RING, NAT_FLOWS, NET_FLOWS, NET_SWEPT};

/// Ring positions looked at for a victim per new flow: enough to step over
/// a few established connections, few enough to keep the worst case of a
/// new flow at a couple of dozen lookups.
const EVICT_TRIES: u64 = 8;

/// Makes sure flow `out` fits its DUT's and its network's budget, evicting
/// one flow if it would not. `Err` is the `stats::drop` reason when nothing
/// may go.
#[inline(always)]
pub fn make_room(out: &FlowKey, cfg: &DutConfig) -> Result<(), usize> {
    let budget = &cfg.budget;
    let Some(net) = NET_FLOWS.get_ptr_mut(budget.slot) else {
        return Err(drop::TABLE_FULL);
    };
    let dut = dut_key(out);
    if let Some(counts) = copied(DUT_FLOWS.get_ptr(dut)) {
        let swept = copied(DUT_SWEPT.get_ptr(dut)).unwrap_or(0);
        if counts.in_use(swept) >= u64::from(budget.per_dut) {
            return evict(cfg, net, Some(&dut)).map_err(|()| drop::DUT_LIMIT);
        }
    }
    let swept = NET_SWEPT.get(budget.slot).copied().unwrap_or(0);
    // SAFETY: a valid array element for this program run; a plain read of
    // counters other CPUs add to atomically.
    let in_use = unsafe { (*net).in_use(swept) };
    if in_use >= u64::from(budget.flows) {
        return evict(cfg, net, None).map_err(|()| drop::TABLE_FULL);
    }
    Ok(())
}

/// Counts the new flow `out` (both halves inserted) against its DUT and
/// network, and writes it to the network's ring.
#[inline(always)]
pub fn admitted(out: &FlowKey, cfg: &DutConfig) {
    let budget = &cfg.budget;
    let Some(net) = NET_FLOWS.get_ptr_mut(budget.slot) else {
        return;
    };
    // SAFETY: valid element pointers for this program run.
    unsafe {
        add(&raw mut (*net).created);
        if let Some(dut) = dut_counts(&dut_key(out)) {
            add(&raw mut (*dut).created);
        }
        if budget.ring_len == 0 {
            return;
        }
        // Not atomic: two CPUs taking the same position at once cost one
        // flow its place in the ring (it then only expires), nothing more.
        let next = (*net).ring_next;
        (*net).ring_next = next.wrapping_add(1);
        let position = budget.ring_base + (next % u64::from(budget.ring_len)) as u32;
        let _ = FLOW_RING.set(position, out, 0);
    }
}

/// Evicts one flow of the network (of DUT `only` when given) from the
/// oldest positions of its ring.
#[inline(always)]
fn evict(cfg: &DutConfig, net: *mut FlowCounts, only: Option<&PrivateKey>) -> Result<(), ()> {
    let budget = &cfg.budget;
    if budget.ring_len == 0 {
        return Err(());
    }
    let len = u64::from(budget.ring_len);
    // SAFETY: a valid array element for this program run.
    let start = unsafe { (*net).evict_next };
    // The ring offset and last packet time of the least recently used
    // `Eviction::Later` flow seen, if no `First` one turns up.
    let mut later: Option<(u64, u64)> = None;
    for i in 0..EVICT_TRIES {
        let position = budget.ring_base + (start.wrapping_add(i) % len) as u32;
        let Some(key) = copied(FLOW_RING.get_ptr(position)) else {
            continue;
        };
        if key.ifindex == 0
            || only.is_some_and(|d| key.ifindex != d.dut_ifindex || key.src_addr != d.private_addr)
        {
            continue;
        }
        // Swept or evicted already: a stale position.
        let Some(victim) = judge(&key) else {
            continue;
        };
        match victim.eviction {
            Eviction::First => {
                if remove(net, &key, &victim.peer) {
                    resume_after(net, start.wrapping_add(i));
                    return Ok(());
                }
            }
            Eviction::Later => {
                if later.is_none_or(|(_, oldest)| victim.last_seen_ns < oldest) {
                    later = Some((i, victim.last_seen_ns));
                }
            }
            Eviction::Never => {}
        }
    }
    if let Some((i, _)) = later {
        let position = budget.ring_base + (start.wrapping_add(i) % len) as u32;
        if let Some(key) = copied(FLOW_RING.get_ptr(position))
            && let Some(victim) = judge(&key)
            && remove(net, &key, &victim.peer)
        {
            resume_after(net, start.wrapping_add(i));
            return Ok(());
        }
    }
    // Nothing here may go: the next eviction looks further round the ring
    // (the flows looked at keep their places, for the next time round).
    resume_after(net, start.wrapping_add(EVICT_TRIES - 1));
    Err(())
}

/// The next eviction starts after ring offset `offset`.
#[inline(always)]
fn resume_after(net: *mut FlowCounts, offset: u64) {
    // SAFETY: a valid array element for this program run. Not atomic: two
    // CPUs evicting at once may look at the same positions, nothing more.
    unsafe { (*net).evict_next = offset.wrapping_add(1) };
}

/// What eviction needs to know of a flow in the table.
struct Candidate {
    peer: FlowKey,
    eviction: Eviction,
    /// The later of the two halves' last packets.
    last_seen_ns: u64,
}

/// The flow whose outbound key is `key`, if it is still in the table.
#[inline(always)]
fn judge(key: &FlowKey) -> Option<Candidate> {
    let outbound = NAT_FLOWS.get_ptr(key)?;
    // SAFETY: lookup pointers are valid for this program run; only the
    // fields needed are read, keeping the program's stack small.
    unsafe {
        if (*outbound).direction != direction::OUTBOUND {
            return None;
        }
        let peer = (*outbound).peer;
        let (in_flags, in_packets, in_seen) = match NAT_FLOWS.get_ptr(peer) {
            Some(p) => ((*p).tcp_flags, (*p).packets, (*p).last_seen_ns),
            None => (0, 0, 0),
        };
        let state = FlowState::of(key.protocol, (*outbound).tcp_flags, in_flags, in_packets);
        Some(Candidate {
            peer,
            eviction: state.eviction(),
            last_seen_ns: (*outbound).last_seen_ns.max(in_seen),
        })
    }
}

/// Removes both halves of flow `key` and counts the eviction. `false`: the
/// sweeper or another CPU removed it first (and counted it).
#[inline(always)]
fn remove(net: *mut FlowCounts, key: &FlowKey, peer: &FlowKey) -> bool {
    if NAT_FLOWS.remove(key).is_err() {
        return false;
    }
    let _ = NAT_FLOWS.remove(peer);
    // SAFETY: valid element pointers for this program run.
    unsafe {
        add(&raw mut (*net).evicted);
        if let Some(dut) = DUT_FLOWS.get_ptr_mut(dut_key(key)) {
            add(&raw mut (*dut).evicted);
        }
    }
    true
}

/// Whose flow `out` is: the DUT NIC and the DUT's address.
#[inline(always)]
fn dut_key(out: &FlowKey) -> PrivateKey {
    PrivateKey {
        dut_ifindex: out.ifindex,
        private_addr: out.src_addr,
    }
}

/// The DUT's counts, created on its first flow. `None`: the map is full, so
/// this DUT is held to its network's budget only.
#[inline(always)]
fn dut_counts(dut: &PrivateKey) -> Option<*mut FlowCounts> {
    if let Some(counts) = DUT_FLOWS.get_ptr_mut(dut) {
        return Some(counts);
    }
    let _ = DUT_FLOWS.insert(dut, FlowCounts::default(), u64::from(BPF_NOEXIST));
    DUT_FLOWS.get_ptr_mut(dut)
}

/// A copy of the map value a lookup found (the entry may be removed by
/// another CPU or the sweeper while this program runs).
#[inline(always)]
fn copied<T: Copy>(value: Option<*const T>) -> Option<T> {
    // SAFETY: a lookup's pointer is valid for this program run.
    value.map(|v| unsafe { *v })
}

/// An atomic add of one (other CPUs add to the same counters). The bpf
/// target has atomic adds but no compare-and-swap, so `core::sync::atomic`
/// offers no `fetch_add` there: the intrinsic is what it would lower to.
///
/// # Safety
/// `counter` points at a map value's `u64` field valid for this program run.
#[inline(always)]
unsafe fn add(counter: *mut u64) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: the caller's; map values are 8-byte aligned.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            counter, 1,
        );
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above.
    unsafe {
        AtomicU64::from_ptr(counter).fetch_add(1, Ordering::Relaxed);
    }
}
