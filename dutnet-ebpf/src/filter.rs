//! A network's traffic filter, judging the packet that opens a flow in two
//! lookups (see `dutnet_common::filter`). A masqueraded flow is judged once,
//! when the connection table creates it; a 1:1 DUT's flows have no table
//! entry, so the ones a filter accepted are remembered in `FILTER_FLOWS`
//! and their packets both ways pass unjudged while they are active.
use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key};
use dutnet_common::{
    filter::{
        FilterAddr, FilterDecision, FilterFlow, FilterHead, FilterPortKey, action, direction,
        filter_id, hit_key,
    },
    nat::{FlowKey, protocol},
};

use crate::maps::{FILTER_CELLS, FILTER_FLOWS, FILTER_HEADS, FILTER_HITS, FILTER_PORTS};

const NS_PER_SEC: u64 = 1_000_000_000;

pub type Head = FilterHead;

/// The filter of the network in budget slot `slot`, if it judges anything.
#[inline(always)]
pub fn head(slot: u32) -> Option<FilterHead> {
    // SAFETY: copied out at once; the controller replaces it whole.
    let head = FILTER_HEADS.get(slot).copied()?;
    (head.egress != 0 || head.ingress != 0).then_some(head)
}

/// Whether a flow opened in direction `dir` (one of `direction`) towards
/// or from `peer` (network order), with `protocol` and destination `port`
/// (network order; 0 for ICMP), may go. Counts the deciding rule.
#[inline(always)]
pub fn allows(slot: u32, head: &FilterHead, dir: u32, peer: u32, proto: u8, port: u16) -> bool {
    let judged = if dir == direction::EGRESS {
        head.egress
    } else {
        head.ingress
    };
    if judged == 0 {
        return true;
    }
    let id = filter_id(slot, dir, head.generation);
    let key = Key::new(
        64,
        FilterAddr {
            filter_be: id.to_be(),
            addr: peer,
        },
    );
    // Every filter has a 0.0.0.0/0 cell; a miss is a filter being
    // replaced or removed right now: let the flow go, as without one.
    let Some(cell) = FILTER_CELLS.get(&key).copied() else {
        return true;
    };
    let named = |has_ports: u8| -> Option<FilterDecision> {
        if has_ports == 0 {
            return None;
        }
        let key = FilterPortKey {
            cell: cell.cell,
            port,
            protocol: proto,
            _pad: 0,
        };
        // SAFETY: copied out at once.
        unsafe { FILTER_PORTS.get(key).copied() }
    };
    let decision = match proto {
        protocol::TCP => named(cell.tcp_ports).unwrap_or(cell.tcp),
        protocol::UDP => named(cell.udp_ports).unwrap_or(cell.udp),
        _ => cell.other,
    };
    if let Some(hits) = FILTER_HITS.get_ptr_mut(hit_key(slot, dir, head.generation, decision.rule))
    {
        // SAFETY: a per-CPU value, only this CPU touches it during the run.
        unsafe { *hits += 1 };
    }
    decision.action == action::ACCEPT
}

/// Whether the 1:1 flow `key` (its outbound key on the DUT NIC) was
/// accepted and is still active; refreshes it.
#[inline(always)]
pub fn remembered(key: &FlowKey, head: &FilterHead) -> bool {
    let Some(flow) = FILTER_FLOWS.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let idle_secs = if key.protocol == protocol::TCP {
        head.tcp_idle_secs
    } else {
        head.udp_idle_secs
    };
    // SAFETY: valid for this program run; another CPU may write the same
    // timestamp, and either value is right.
    let last = unsafe { (*flow).last_seen_ns };
    if now.saturating_sub(last) > u64::from(idle_secs) * NS_PER_SEC {
        return false;
    }
    if now.saturating_sub(last) > NS_PER_SEC {
        // SAFETY: as above.
        unsafe { (*flow).last_seen_ns = now };
    }
    true
}

/// Remembers an accepted 1:1 flow. An LRU: a full map forgets the least
/// recently used flow, whose next packet is judged again.
#[inline(always)]
pub fn remember(key: &FlowKey) {
    let flow = FilterFlow {
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        last_seen_ns: unsafe { bpf_ktime_get_ns() },
    };
    let _ = FILTER_FLOWS.insert(key, flow, 0);
}
