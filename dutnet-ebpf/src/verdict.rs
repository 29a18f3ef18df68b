//! What a program decided for a frame, mapped to a TC return code in one place.
use aya_ebpf::bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC};

pub enum Verdict {
    /// Not the fast path's: the next program and the kernel stack handle it.
    Pass,
    /// Dropped on purpose (and counted by the caller).
    Drop,
    /// The return code of a redirect helper.
    Redirect(i32),
}

impl Verdict {
    #[inline(always)]
    // Only on the host: there the cast is a no-op, on bpf it is needed
    // (an `expect` on both would be unfulfilled on bpf).
    #[cfg_attr(
        not(target_arch = "bpf"),
        expect(
            clippy::unnecessary_cast,
            reason = "the bindings type TC_ACT_SHOT as u32 for bpf and i32 for the host"
        )
    )]
    pub fn tc_action(self) -> i32 {
        match self {
            // TC_ACT_UNSPEC is TCX_NEXT: a later program or the stack decides.
            Verdict::Pass => TC_ACT_UNSPEC,
            Verdict::Drop => TC_ACT_SHOT as i32,
            Verdict::Redirect(code) => code,
        }
    }
}

/// Leaves the packet to the kernel, counted by `dutnet_common::stats::punt`
/// reason against DUT NIC `ifindex`.
#[inline(always)]
pub fn punted(ifindex: u32, reason: usize) -> Verdict {
    crate::stats::punt(ifindex, reason);
    Verdict::Pass
}

/// Drops the packet, counted by `dutnet_common::stats::drop` reason against
/// DUT NIC `ifindex`.
#[inline(always)]
pub fn dropped(ifindex: u32, reason: usize) -> Verdict {
    crate::stats::drop(ifindex, reason);
    Verdict::Drop
}
