//! What a program decided for a frame, mapped to a TC return code in one place.
//!
//! The two ways off the fast path (a punt, a drop) are counted here and, when
//! `DUTNET_EBPF_LOG` asks for it, logged with aya-log. A record whose level is
//! off costs one read of aya-log's `AYA_LOG_LEVEL` global and a branch
//! (`level_enabled` in aya-log-ebpf 0.2); dutnet sets that global at load
//! time, in read-only data the kernel freezes, so the verifier knows its value
//! and drops the record's code altogether when logging is off.
use aya_ebpf::bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC};
use aya_log_ebpf::{debug, info};

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
    // The first argument is the program context, which aya-log-ebpf 0.2 does
    // not use (`let _ = ctx`); a verdict is decided far from the TcContext.
    debug!(
        &(),
        "punted to the kernel: ifindex={} reason={}", ifindex, reason
    );
    Verdict::Pass
}

/// Drops the packet, counted by `dutnet_common::stats::drop` reason against
/// DUT NIC `ifindex`.
#[inline(always)]
pub fn dropped(ifindex: u32, reason: usize) -> Verdict {
    crate::stats::drop(ifindex, reason);
    // Info, not warn: a drop is dutnet doing its job (an unsolicited packet,
    // a DUT over its share), not dutnet failing.
    info!(&(), "dropped: ifindex={} reason={}", ifindex, reason);
    Verdict::Drop
}
