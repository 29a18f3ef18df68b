//! dutnet's TC programs. Entry points only: each calls into a module and maps
//! its outcome to a deliberate TC verdict.
#![no_std]
#![no_main]

mod maps;
mod stats;

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};

use crate::stats::Direction;

/// TC ingress on a DUT NIC: frames coming from the DUT.
#[classifier]
pub fn dut_ingress(ctx: TcContext) -> i32 {
    stats::count(&ctx, Direction::Ingress);
    // TC_ACT_UNSPEC is TCX_NEXT: let any later program and the stack decide.
    TC_ACT_UNSPEC
}

/// TC egress on a DUT NIC: frames going to the DUT.
#[classifier]
pub fn dut_egress(ctx: TcContext) -> i32 {
    stats::count(&ctx, Direction::Egress);
    TC_ACT_UNSPEC
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
