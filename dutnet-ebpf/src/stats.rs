//! Counters, per DUT NIC: what its NIC carried, what the fast path
//! translated, and why it left packets to the kernel or dropped them.
use aya_ebpf::programs::TcContext;
use dutnet_common::stats::{DirCounters, IfaceCounters};

use crate::maps::IFACE_STATS;

#[derive(Clone, Copy)]
pub enum Direction {
    /// Received on the DUT NIC (from the DUT).
    Ingress,
    /// Translated and forwarded from the DUT towards upstream.
    NatOut,
    /// Translated and forwarded from upstream to the DUT.
    NatIn,
}

/// Applies `update` to the counters of DUT NIC `ifindex`, if the controller
/// registered it.
#[inline(always)]
fn with_counters(ifindex: u32, update: impl FnOnce(&mut IfaceCounters)) {
    if let Some(counters) = IFACE_STATS.get_ptr_mut(ifindex) {
        // SAFETY: a per-CPU map value is only touched by this CPU while it
        // runs this program, and the pointer is valid for the whole run.
        update(unsafe { &mut *counters });
    }
}

#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` points at the kernel's __sk_buff for this program run.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Counts a frame of `bytes` bytes.
#[inline(always)]
pub fn count(ifindex: u32, direction: Direction, bytes: u32) {
    with_counters(ifindex, |c| {
        let dir: &mut DirCounters = match direction {
            Direction::Ingress => &mut c.ingress,
            Direction::NatOut => &mut c.nat_out,
            Direction::NatIn => &mut c.nat_in,
        };
        dir.packets += 1;
        dir.bytes += u64::from(bytes);
    });
}

#[inline(always)]
pub fn new_flow(ifindex: u32) {
    with_counters(ifindex, |c| c.new_flows += 1);
}

/// Counts a packet left to the kernel, by `dutnet_common::stats::punt` reason.
#[inline(always)]
pub fn punt(ifindex: u32, reason: usize) {
    with_counters(ifindex, |c| {
        if let Some(n) = c.punts.get_mut(reason) {
            *n += 1;
        }
    });
}

/// Counts a dropped packet, by `dutnet_common::stats::drop` reason.
#[inline(always)]
pub fn drop(ifindex: u32, reason: usize) {
    with_counters(ifindex, |c| {
        if let Some(n) = c.drops.get_mut(reason) {
            *n += 1;
        }
    });
}
