//! dutnet's TC programs. Entry points only: each calls into a module and maps
//! its outcome to a deliberate TC verdict.
//!
//! Packet path (masquerade):
//!   DUT -> [dut_ingress: outbound] -> upstream NIC -> LAN
//!   LAN -> [upstream_ingress: inbound] -> DUT NIC -> DUT
#![no_std]
#![no_main]
// Atomic adds (budget.rs): the bpf target has no compare-and-swap, so no
// `AtomicU64::fetch_add`.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

mod budget;
mod conntrack;
mod filter;
mod forward;
mod fragments;
mod icmp_error;
mod inbound;
mod maps;
mod one_to_one;
mod outbound;
mod parse;
mod rewrite;
mod stats;
mod verdict;

use aya_ebpf::{macros::classifier, programs::TcContext};

/// TC ingress on a DUT NIC: frames coming from the DUT.
#[classifier]
pub fn dut_ingress(ctx: TcContext) -> i32 {
    outbound::handle(&ctx).tc_action()
}

// Nothing runs on a DUT NIC's egress: what it sends the DUT is the kernel's
// own transmit counters, and each TCX attachment costs an RCU grace period
// under the RTNL lock (two a NIC doubled the bring-up time).

/// TC ingress on an upstream NIC: replies to translated flows.
#[classifier]
pub fn upstream_ingress(ctx: TcContext) -> i32 {
    inbound::handle(&ctx).tc_action()
}

// Only the bpf target needs one: a host build (clippy over the workspace)
// links std through feature unification, which brings its own.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// bpf_redirect_neigh, bpf_fib_lookup and friends are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
