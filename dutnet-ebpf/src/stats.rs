//! Counters, per DUT NIC: what its NIC carried, what the fast path
//! translated, and why it left packets to the kernel or dropped them.
use aya_ebpf::bindings::BPF_NOEXIST;
use aya_ebpf::programs::TcContext;
use dutnet_common::{
    nat::PrivateKey,
    stats::{DirCounters, DutTraffic, IfaceCounters},
};

use crate::maps::{DUT_TRAFFIC, IFACE_STATS};

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
        add(dir, bytes);
    });
}

/// Counts a frame the DUT at `addr` (network order) behind DUT NIC
/// `ifindex` sent.
#[inline(always)]
pub fn sent_by_dut(ifindex: u32, addr: u32, bytes: u32) {
    with_dut(ifindex, addr, |t| add(&mut t.from_dut, bytes));
}

/// Counts a frame the fast path delivers to the DUT at `addr` behind DUT
/// NIC `ifindex`, on the NIC (`nat_in`) and on the DUT.
#[inline(always)]
pub fn delivered(ifindex: u32, addr: u32, bytes: u32) {
    count(ifindex, Direction::NatIn, bytes);
    with_dut(ifindex, addr, |t| add(&mut t.to_dut, bytes));
}

#[inline(always)]
fn add(dir: &mut DirCounters, bytes: u32) {
    dir.packets += 1;
    dir.bytes += u64::from(bytes);
}

/// Applies `update` to the DUT's counters, made on its first packet; with
/// the map full the DUT is counted on its NIC only.
#[inline(always)]
fn with_dut(ifindex: u32, addr: u32, update: impl FnOnce(&mut DutTraffic)) {
    let key = PrivateKey {
        dut_ifindex: ifindex,
        private_addr: addr,
    };
    let counters = match DUT_TRAFFIC.get_ptr_mut(key) {
        Some(c) => c,
        None => {
            let _ = DUT_TRAFFIC.insert(key, DutTraffic::default(), u64::from(BPF_NOEXIST));
            match DUT_TRAFFIC.get_ptr_mut(key) {
                Some(c) => c,
                None => return,
            }
        }
    };
    // SAFETY: this CPU's copy of a per-CPU value, valid for the whole run.
    update(unsafe { &mut *counters });
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
