//! Every map of the object, declared together. Pinned by name under dutnet's
//! bpffs directory so `dutnet stats` can read them from another process.
use aya_ebpf::{macros::map, maps::PerCpuHashMap};
use dutnet_common::stats::{IfaceCounters, MAX_INTERFACES};

/// Interface index -> counters. Entries are created by the controller when it
/// attaches to an interface; the programs only update existing entries, so a
/// full map can never make a packet fail.
#[map(name = "IFACE_STATS")]
pub static IFACE_STATS: PerCpuHashMap<u32, IfaceCounters> =
    PerCpuHashMap::pinned(MAX_INTERFACES, 0);
