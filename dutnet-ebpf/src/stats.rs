//! Per-interface packet and byte counters.
use aya_ebpf::programs::TcContext;

use crate::maps::IFACE_STATS;

#[derive(Clone, Copy)]
pub enum Direction {
    Ingress,
    Egress,
}

/// Counts the frame against the interface it is on. Interfaces the controller
/// did not register are not counted.
#[inline(always)]
pub fn count(ctx: &TcContext, direction: Direction) {
    // SAFETY: `skb` points at the kernel's __sk_buff for this program run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(counters) = IFACE_STATS.get_ptr_mut(ifindex) else {
        return;
    };
    let bytes = u64::from(ctx.len());
    // SAFETY: a per-CPU map value is only touched by this CPU while it runs
    // this program, and the pointer is valid for the whole program run.
    let dir = unsafe {
        match direction {
            Direction::Ingress => &mut (*counters).ingress,
            Direction::Egress => &mut (*counters).egress,
        }
    };
    dir.packets += 1;
    dir.bytes += bytes;
}
