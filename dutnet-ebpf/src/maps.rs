//! Every map of the object, declared together. Pinned by name under dutnet's
//! bpffs directory so `dutnet stats` can read them from another process.
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuHashMap},
};
use dutnet_common::{
    nat::{DutConfig, FlowEntry, FlowKey, FragEntry, FragKey, Mapping, PrivateKey},
    stats::{IfaceCounters, MAX_INTERFACES},
};

/// DUT ifindex -> counters. Entries are created by the controller when it
/// attaches to an interface; the programs only update existing entries, so a
/// full map can never make a packet fail.
#[map(name = "IFACE_STATS")]
pub static IFACE_STATS: PerCpuHashMap<u32, IfaceCounters> =
    PerCpuHashMap::pinned(MAX_INTERFACES, 0);

/// DUT ifindex -> how its network is translated. Filled by the controller.
#[map(name = "DUT_CONFIG")]
pub static DUT_CONFIG: HashMap<u32, DutConfig> = HashMap::pinned(MAX_INTERFACES, 0);

/// Both directions of every translated flow. A plain hash, not an LRU: the
/// kernel never evicts one half of a flow behind dutnet's back; the
/// controller's sweeper removes expired flows, both halves together. The size
/// is set by the controller at load time (the sum of the networks'
/// `nat_table_size`, two entries per flow); this is only the default.
/// Allocated on use (`BPF_F_NO_PREALLOC`): a preallocated table for 64 DUT
/// networks would pin gigabytes of kernel memory and take seconds to load,
/// while the kernel's BPF allocator keeps per-CPU caches for new flows.
#[map(name = "NAT_FLOWS")]
pub static NAT_FLOWS: HashMap<FlowKey, FlowEntry> =
    HashMap::pinned(2 * 65536, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Masqueraded DUT subnets -> the DUT ifindex drops are counted against.
#[map(name = "DUT_SUBNETS")]
pub static DUT_SUBNETS: LpmTrie<u32, u32> =
    LpmTrie::pinned(MAX_INTERFACES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// 1:1 mappings by DUT NIC and private address (outbound).
#[map(name = "NAT_1TO1_OUT")]
pub static NAT_1TO1_OUT: HashMap<PrivateKey, Mapping> = HashMap::pinned(65536, 0);

/// 1:1 mappings by public address (inbound).
#[map(name = "NAT_1TO1_IN")]
pub static NAT_1TO1_IN: HashMap<u32, Mapping> = HashMap::pinned(65536, 0);

/// Fragmented datagrams of translated flows: the first fragment records how
/// it was translated, the later ones (without ports) follow. An LRU: entries
/// are per datagram and die with it.
#[map(name = "NAT_FRAGS")]
pub static NAT_FRAGS: LruHashMap<FragKey, FragEntry> = LruHashMap::pinned(16384, 0);
