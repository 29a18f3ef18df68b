//! Every map of the object, declared together. Pinned by name under dutnet's
//! bpffs directory so `dutnet stats` can read them from another process.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuHashMap},
};
use dutnet_common::{
    filter::{FilterAddr, FilterCell, FilterDecision, FilterFlow, FilterHead, FilterPortKey},
    nat::{
        Binding, BindingKey, DutConfig, FlowCounts, FlowEntry, FlowKey, FragEntry, FragKey,
        Mapping, PrivateKey,
    },
    stats::{DutTraffic, IfaceCounters, MAX_DUTS, MAX_INTERFACES},
};

/// DUT ifindex -> counters. Entries are created by the controller when it
/// attaches to an interface; the programs only update existing entries, so a
/// full map can never make a packet fail.
#[map(name = "IFACE_STATS")]
pub static IFACE_STATS: PerCpuHashMap<u32, IfaceCounters> =
    PerCpuHashMap::pinned(MAX_INTERFACES, 0);

/// (DUT NIC, DUT address) -> that DUT's traffic, made on its first packet.
/// A DUT that finds the map full is counted on its NIC only.
#[map(name = "DUT_TRAFFIC")]
pub static DUT_TRAFFIC: PerCpuHashMap<PrivateKey, DutTraffic> =
    PerCpuHashMap::pinned(MAX_DUTS, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// DUT ifindex -> how its network is translated. Filled by the controller.
#[map(name = "DUT_CONFIG")]
pub static DUT_CONFIG: HashMap<u32, DutConfig> = HashMap::pinned(MAX_INTERFACES, 0);

/// Both directions of every translated flow. A plain hash, not an LRU: the
/// kernel never evicts one half of a flow behind dutnet's back; the
/// controller's sweeper removes expired flows and `budget` evicts flows to
/// make room, both halves together. The size is set by the controller at
/// load time (the sum of the networks' `nat_table_size`, two entries per
/// flow, plus headroom for flows being created on every CPU at once); this
/// is only the default. No network can fill it: each stops at its own
/// budget.
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

/// Each network's flow counts, by `FlowBudget::slot` (programs write).
#[map(name = "NET_FLOWS")]
pub static NET_FLOWS: Array<FlowCounts> = Array::pinned(MAX_INTERFACES, 0);

/// Flows of each network the controller's sweeper removed, by slot.
#[map(name = "NET_SWEPT")]
pub static NET_SWEPT: Array<u64> = Array::pinned(MAX_INTERFACES, 0);

/// Each DUT's flow counts (programs write). A DUT address the map has no
/// room for is held to its network's budget only.
#[map(name = "DUT_FLOWS")]
pub static DUT_FLOWS: HashMap<PrivateKey, FlowCounts> =
    HashMap::pinned(65536, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Flows of each DUT the controller's sweeper removed.
#[map(name = "DUT_SWEPT")]
pub static DUT_SWEPT: HashMap<PrivateKey, u64> =
    HashMap::pinned(65536, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Every network's eviction ring (its slice is `FlowBudget::ring_base` and
/// `ring_len`): the outbound keys of its flows in creation order. Sized by
/// the controller at load time.
#[map(name = "FLOW_RING")]
pub static FLOW_RING: Array<FlowKey> = Array::pinned(65536, 0);

/// The external port each DUT (address, port) has, for every destination
/// (endpoint-independent mapping), while a flow uses it: refreshed by every
/// new flow from it, removed by the sweeper when no flow uses it. An LRU, so
/// a burst of new bindings can never fail a flow.
#[map(name = "NAT_BINDINGS")]
pub static NAT_BINDINGS: LruHashMap<BindingKey, Binding> = LruHashMap::pinned(65536, 0);

/// Each network's filter, by `FlowBudget::slot` (zero: none).
#[map(name = "FILTER_HEADS")]
pub static FILTER_HEADS: Array<FilterHead> = Array::pinned(MAX_INTERFACES, 0);

/// Every filter's cells (see `dutnet_common::filter`). Filled by the
/// controller; two generations of a filter live while it is replaced.
#[map(name = "FILTER_CELLS")]
pub static FILTER_CELLS: LpmTrie<FilterAddr, FilterCell> =
    LpmTrie::pinned(65536, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// The decisions of the ports filter rules name, by cell.
#[map(name = "FILTER_PORTS")]
pub static FILTER_PORTS: HashMap<FilterPortKey, FilterDecision> =
    HashMap::pinned(65536, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Flows each rule (and each policy) decided, by `hit_key`. Entries are
/// created by the controller with the filter; the programs only add.
#[map(name = "FILTER_HITS")]
pub static FILTER_HITS: PerCpuHashMap<u32, u64> =
    PerCpuHashMap::pinned(65536, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// 1:1 flows a filter accepted, by their outbound key on the DUT NIC.
#[map(name = "FILTER_FLOWS")]
pub static FILTER_FLOWS: LruHashMap<FlowKey, FilterFlow> = LruHashMap::pinned(65536, 0);
