//! The controller's side of the NAT maps: per-DUT configuration, the subnets
//! unsolicited traffic may not reach, and the connection table's sweeper.
use std::{collections::BTreeMap, net::Ipv4Addr, os::fd::AsFd as _, time::Duration};

use aya::maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key};
use dutnet_common::{
    flow_state::FlowState,
    maps::{
        DUT_CONFIG, DUT_FLOWS, DUT_SUBNETS, DUT_SWEPT, NAT_1TO1_IN, NAT_1TO1_OUT, NAT_BINDINGS,
        NAT_FLOWS, NET_FLOWS, NET_SWEPT,
    },
    nat::{
        Binding, BindingKey, DutConfig, FlowBudget, FlowCounts, FlowEntry, FlowKey, Mapping,
        PrivateKey, direction, mode,
    },
};

use super::{EbpfError, batch};
use crate::datapath::{DutNetwork, NatPlan, PublicAddress, expiry::FlowTimeouts};

/// An inbound half whose outbound half is missing is removed only once it has
/// been idle this long: the program creates the inbound half first, so a
/// younger one may be a flow being created right now.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |source| EbpfError::Map { name, source }
}

/// A removal of a key that is already gone succeeds.
pub(super) fn removed(
    name: &'static str,
    result: Result<(), aya::maps::MapError>,
) -> Result<(), EbpfError> {
    match result {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(map_error(name)(e)),
    }
}

/// Network-order `u32` of an address, as the programs compare it.
pub fn wire(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// The `DUT_CONFIG` value for `network`, whose flows are held to `budget`.
pub fn dut_config(network: &DutNetwork, upstream_ifindex: u32, budget: FlowBudget) -> DutConfig {
    let (external, ports, nat_mode) = match &network.nat {
        NatPlan::Disabled => (0, 0..=0, mode::DISABLED),
        NatPlan::Masquerade {
            external, ports, ..
        } => (wire(*external), ports.clone(), mode::MASQUERADE),
        NatPlan::OneToOne {
            external, ports, ..
        } => (wire(*external), ports.clone(), mode::ONE_TO_ONE),
    };
    DutConfig {
        gateway_addr: wire(network.gateway),
        subnet_addr: wire(network.subnet.network()),
        subnet_mask_addr: wire(network.subnet.netmask()),
        external_addr: external,
        upstream_ifindex,
        port_min: *ports.start(),
        port_max: *ports.end(),
        nat_mode,
        local_ntp: u8::from(network.local_ntp),
        _pad: [0; 2],
        reply_mark: network.reply_mark,
        budget,
    }
}

pub fn set_dut_config(
    map: &mut aya::maps::Map,
    ifindex: u32,
    config: DutConfig,
) -> Result<(), EbpfError> {
    let mut map: HashMap<_, u32, DutConfig> =
        HashMap::try_from(map).map_err(map_error(DUT_CONFIG))?;
    map.insert(ifindex, config, 0)
        .map_err(map_error(DUT_CONFIG))
}

pub fn remove_dut_config(map: &mut aya::maps::Map, ifindex: u32) -> Result<(), EbpfError> {
    let mut map: HashMap<_, u32, DutConfig> =
        HashMap::try_from(map).map_err(map_error(DUT_CONFIG))?;
    removed(DUT_CONFIG, map.remove(&ifindex))
}

/// Adds (or replaces) the 1:1 mapping `public` of DUT NIC `dut_ifindex`
/// (whose network is in budget slot `slot`), in both directions' maps.
pub fn set_mapping(
    out_map: &mut aya::maps::Map,
    in_map: &mut aya::maps::Map,
    dut_ifindex: u32,
    slot: u32,
    public: PublicAddress,
) -> Result<(), EbpfError> {
    let mapping = Mapping {
        private_addr: wire(public.private),
        public_addr: wire(public.public),
        dut_ifindex,
        slot,
        out_ifindex: public.out_ifindex,
        vlan_id: public.vlan_id.unwrap_or(0),
        _pad: [0; 2],
    };
    let key = PrivateKey {
        dut_ifindex,
        private_addr: mapping.private_addr,
    };
    let mut inbound: HashMap<_, u32, Mapping> =
        HashMap::try_from(in_map).map_err(map_error(NAT_1TO1_IN))?;
    inbound
        .insert(mapping.public_addr, mapping, 0)
        .map_err(map_error(NAT_1TO1_IN))?;
    let mut outbound: HashMap<_, PrivateKey, Mapping> =
        HashMap::try_from(out_map).map_err(map_error(NAT_1TO1_OUT))?;
    outbound
        .insert(key, mapping, 0)
        .map_err(map_error(NAT_1TO1_OUT))
}

/// Removes the 1:1 mapping `public` of DUT NIC `dut_ifindex` (if present).
pub fn remove_mapping(
    out_map: &mut aya::maps::Map,
    in_map: &mut aya::maps::Map,
    dut_ifindex: u32,
    public: PublicAddress,
) -> Result<(), EbpfError> {
    let mut outbound: HashMap<_, PrivateKey, Mapping> =
        HashMap::try_from(out_map).map_err(map_error(NAT_1TO1_OUT))?;
    removed(
        NAT_1TO1_OUT,
        outbound.remove(&PrivateKey {
            dut_ifindex,
            private_addr: wire(public.private),
        }),
    )?;
    let mut inbound: HashMap<_, u32, Mapping> =
        HashMap::try_from(in_map).map_err(map_error(NAT_1TO1_IN))?;
    removed(NAT_1TO1_IN, inbound.remove(&wire(public.public)))
}

fn subnet_key(network: &DutNetwork) -> Key<u32> {
    Key::new(
        u32::from(network.subnet.prefix_len()),
        wire(network.subnet.network()),
    )
}

/// Points the subnet's entry at `ifindex` (several DUT NICs may share a
/// subnet: the entry names one of them, for counting).
pub fn set_subnet(
    map: &mut aya::maps::Map,
    network: &DutNetwork,
    ifindex: u32,
) -> Result<(), EbpfError> {
    let mut map: LpmTrie<_, u32, u32> = LpmTrie::try_from(map).map_err(map_error(DUT_SUBNETS))?;
    map.insert(&subnet_key(network), ifindex, 0)
        .map_err(map_error(DUT_SUBNETS))
}

pub fn remove_subnet(map: &mut aya::maps::Map, network: &DutNetwork) -> Result<(), EbpfError> {
    let mut map: LpmTrie<_, u32, u32> = LpmTrie::try_from(map).map_err(map_error(DUT_SUBNETS))?;
    removed(DUT_SUBNETS, map.remove(&subnet_key(network)))
}

/// What a sweep found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Flows removed (both halves).
    pub expired: usize,
    /// Flows kept, per DUT ifindex.
    pub active: BTreeMap<u32, u64>,
    /// Flows removed, per DUT (DUT NIC and address): what the budgets'
    /// `swept` counts grow by.
    pub removed: BTreeMap<PrivateKey, u64>,
    /// Flows kept, per DUT: who holds a full budget.
    pub held: BTreeMap<PrivateKey, u64>,
    /// The last packet a DUT sent through NAT (`bpf_ktime_get_ns()`), over
    /// its kept flows: whether it is sending now.
    pub last_sent_ns: BTreeMap<PrivateKey, u64>,
    /// The endpoint-independent bindings the kept flows use.
    pub bindings: std::collections::HashSet<BindingKey>,
}

/// A hash map's data (its file descriptor, for batches).
fn hash_data<'a>(map: &'a aya::maps::Map, name: &'static str) -> Result<&'a MapData, EbpfError> {
    match map {
        aya::maps::Map::HashMap(data) | aya::maps::Map::LruHashMap(data) => Ok(data),
        _ => Err(map_error(name)(aya::maps::MapError::InvalidMapType {
            map_type: 0,
        })),
    }
}

fn batch_error(name: &'static str) -> impl Fn(std::io::Error) -> EbpfError {
    move |source| {
        map_error(name)(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_*_batch",
            io_error: source,
        }))
    }
}

/// Reads every entry of the connection table, a batch at a time.
pub fn entries(map: &aya::maps::Map) -> Result<Vec<(FlowKey, FlowEntry)>, EbpfError> {
    batch::read_all(hash_data(map, NAT_FLOWS)?.fd().as_fd()).map_err(batch_error(NAT_FLOWS))
}

/// Hands every entry of the connection table to `each`, a batch at a time,
/// without holding the table.
pub fn each_entry(
    map: &aya::maps::Map,
    each: impl FnMut(FlowKey, FlowEntry),
) -> Result<(), EbpfError> {
    batch::read_each(hash_data(map, NAT_FLOWS)?.fd().as_fd(), each).map_err(batch_error(NAT_FLOWS))
}

/// Deletes `keys` from the connection table; whether each was there.
fn delete(map: &aya::maps::Map, keys: &[FlowKey]) -> Result<Vec<bool>, EbpfError> {
    batch::delete(hash_data(map, NAT_FLOWS)?.fd().as_fd(), keys).map_err(batch_error(NAT_FLOWS))
}

/// Removes the endpoint-independent bindings no flow kept by a sweep
/// uses (`live`), unless a new flow refreshed them at or after
/// `sweep_start_ns` (it may not be in the sweep's snapshot). Returns how
/// many went.
pub fn forget_unused_bindings(
    map: &aya::maps::Map,
    live: &std::collections::HashSet<BindingKey>,
    sweep_start_ns: u64,
) -> Result<usize, EbpfError> {
    let fd = hash_data(map, NAT_BINDINGS)?.fd().as_fd();
    let all: Vec<(BindingKey, Binding)> = batch::read_all(fd).map_err(batch_error(NAT_BINDINGS))?;
    let unused: Vec<BindingKey> = all
        .into_iter()
        .filter(|(key, b)| !live.contains(key) && b.refreshed_ns < sweep_start_ns)
        .map(|(key, _)| key)
        .collect();
    batch::delete(fd, &unused).map_err(batch_error(NAT_BINDINGS))?;
    Ok(unused.len())
}

/// Removes every flow of DUT NIC `dut_ifindex` (both halves carry it), when
/// its network goes away.
pub fn forget_interface(map: &mut aya::maps::Map, dut_ifindex: u32) -> Result<(), EbpfError> {
    let keys: Vec<FlowKey> = entries(map)?
        .into_iter()
        .filter(|(_, entry)| entry.dut_ifindex == dut_ifindex)
        .map(|(key, _)| key)
        .collect();
    delete(map, &keys).map(drop)
}

/// What the sweeper needs of an inbound half.
struct InboundHalf {
    tcp_flags: u8,
    packets: u32,
    last_seen_ns: u64,
    /// Its outbound half was seen.
    paired: bool,
}

/// Removes every flow idle for longer than its timeout, and every flow of a
/// DUT ifindex `timeouts` does not know (its network went away), both halves
/// together. `now_ns` is CLOCK_MONOTONIC, the programs' clock. Reads and
/// deletes in batches, holding only what it needs of each inbound half.
pub fn sweep(
    map: &mut aya::maps::Map,
    now_ns: u64,
    timeouts: impl Fn(u32) -> Option<FlowTimeouts>,
) -> Result<SweepReport, EbpfError> {
    let all = entries(map)?;
    let idle = |seen: u64| Duration::from_nanos(now_ns.saturating_sub(seen));
    let mut inbound: std::collections::HashMap<FlowKey, InboundHalf> = all
        .iter()
        .filter(|(_, e)| e.direction == direction::INBOUND)
        .map(|(k, e)| {
            (
                *k,
                InboundHalf {
                    tcp_flags: e.tcp_flags,
                    packets: e.packets,
                    last_seen_ns: e.last_seen_ns,
                    paired: false,
                },
            )
        })
        .collect();
    let mut report = SweepReport::default();
    let mut doomed_outbound = Vec::new();
    let mut doomed_inbound = Vec::new();
    for (key, entry) in all
        .iter()
        .filter(|(_, e)| e.direction == direction::OUTBOUND)
    {
        let peer = inbound.get_mut(&entry.peer);
        let (in_flags, in_packets, in_seen) = match peer {
            Some(half) => {
                half.paired = true;
                (half.tcp_flags, half.packets, half.last_seen_ns)
            }
            None => (0, 0, 0),
        };
        let idle_for = idle(entry.last_seen_ns.max(in_seen));
        let state = FlowState::of(key.protocol, entry.tcp_flags, in_flags, in_packets);
        let expired = match timeouts(entry.dut_ifindex) {
            Some(t) => idle_for > t.idle_limit(key.protocol, state),
            None => true,
        };
        if expired {
            doomed_outbound.push(*key);
            doomed_inbound.push(entry.peer);
        } else {
            *report.active.entry(entry.dut_ifindex).or_default() += 1;
            *report.held.entry(dut_of(key)).or_default() += 1;
            let sent = report.last_sent_ns.entry(dut_of(key)).or_default();
            *sent = (*sent).max(entry.last_seen_ns);
            report.bindings.insert(BindingKey {
                ifindex: key.ifindex,
                src_addr: key.src_addr,
                src_port: key.src_port,
                protocol: key.protocol,
                _pad: 0,
            });
        }
    }
    // Inbound halves whose outbound half is gone, once past the grace.
    doomed_inbound.extend(
        inbound
            .iter()
            .filter(|(_, half)| !half.paired && idle(half.last_seen_ns) > ORPHAN_GRACE)
            .map(|(key, _)| *key),
    );
    // Outbound first: a packet arriving in between starts a new flow,
    // which cannot take the port while the old inbound half still holds it.
    // Counted only when this removal took it: the programs may have evicted
    // it meanwhile, and counted that.
    for (key, deleted) in doomed_outbound.iter().zip(delete(map, &doomed_outbound)?) {
        if deleted {
            *report.removed.entry(dut_of(key)).or_default() += 1;
        }
    }
    delete(map, &doomed_inbound)?;
    report.expired = doomed_outbound.len();
    Ok(report)
}

/// The DUT an outbound key belongs to.
fn dut_of(key: &FlowKey) -> PrivateKey {
    PrivateKey {
        dut_ifindex: key.ifindex,
        private_addr: key.src_addr,
    }
}

/// Starts network `slot`'s counts from zero (before its programs run).
pub fn reset_counts(
    net_flows: &mut aya::maps::Map,
    net_swept: &mut aya::maps::Map,
    slot: u32,
) -> Result<(), EbpfError> {
    let mut flows: Array<_, FlowCounts> =
        Array::try_from(net_flows).map_err(map_error(NET_FLOWS))?;
    flows
        .set(slot, FlowCounts::default(), 0)
        .map_err(map_error(NET_FLOWS))?;
    set_swept(net_swept, slot, 0)
}

/// Tells the programs how many of network `slot`'s flows the sweeper has
/// removed in all.
pub fn set_swept(net_swept: &mut aya::maps::Map, slot: u32, total: u64) -> Result<(), EbpfError> {
    let mut swept: Array<_, u64> = Array::try_from(net_swept).map_err(map_error(NET_SWEPT))?;
    swept.set(slot, total, 0).map_err(map_error(NET_SWEPT))
}

/// Tells the programs how many of `dut`'s flows the sweeper has removed.
pub fn set_dut_swept(
    dut_swept: &mut aya::maps::Map,
    dut: PrivateKey,
    total: u64,
) -> Result<(), EbpfError> {
    let mut swept: HashMap<_, PrivateKey, u64> =
        HashMap::try_from(dut_swept).map_err(map_error(DUT_SWEPT))?;
    swept.insert(dut, total, 0).map_err(map_error(DUT_SWEPT))
}

/// Removes the per-DUT counts of DUT NIC `dut_ifindex` from `DUT_FLOWS`
/// and `DUT_SWEPT`, when its network goes away.
pub fn forget_duts(
    dut_flows: &mut aya::maps::Map,
    dut_swept: &mut aya::maps::Map,
    dut_ifindex: u32,
) -> Result<(), EbpfError> {
    forget_keys::<FlowCounts>(dut_flows, DUT_FLOWS, dut_ifindex)?;
    forget_keys::<u64>(dut_swept, DUT_SWEPT, dut_ifindex)
}

fn forget_keys<V: aya::Pod>(
    map: &mut aya::maps::Map,
    name: &'static str,
    dut_ifindex: u32,
) -> Result<(), EbpfError> {
    let mut map: HashMap<_, PrivateKey, V> = HashMap::try_from(map).map_err(map_error(name))?;
    let keys: Vec<PrivateKey> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.dut_ifindex == dut_ifindex)
        .collect();
    for key in keys {
        removed(name, map.remove(&key))?;
    }
    Ok(())
}

/// A network's flows as its counters tell them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkFlows {
    pub in_use: u64,
    pub budget: u32,
    pub evicted: u64,
}

/// Each attached DUT interface's flows, by ifindex, from its budget's
/// counters (no walk over the table: cheap with a million flows).
pub fn network_flows<T: std::borrow::Borrow<MapData>>(
    configs: &HashMap<T, u32, DutConfig>,
    net_flows: &Array<T, FlowCounts>,
    net_swept: &Array<T, u64>,
) -> Result<BTreeMap<u32, NetworkFlows>, EbpfError> {
    let mut all = BTreeMap::new();
    for item in configs.iter() {
        let (ifindex, config) = item.map_err(map_error(DUT_CONFIG))?;
        if config.nat_mode == mode::DISABLED {
            continue;
        }
        let slot = config.budget.slot;
        let counts = net_flows.get(&slot, 0).map_err(map_error(NET_FLOWS))?;
        let swept = net_swept.get(&slot, 0).map_err(map_error(NET_SWEPT))?;
        all.insert(
            ifindex,
            NetworkFlows {
                in_use: counts.in_use(swept),
                budget: config.budget.flows,
                evicted: counts.evicted,
            },
        );
    }
    Ok(all)
}
/// The state of the flow whose outbound half is `outbound` (and inbound half
/// `inbound`, if it still exists).
#[must_use]
pub fn flow_state(protocol: u8, outbound: &FlowEntry, inbound: Option<&FlowEntry>) -> FlowState {
    FlowState::of(
        protocol,
        outbound.tcp_flags,
        inbound.map_or(0, |p| p.tcp_flags),
        inbound.map_or(0, |p| p.packets),
    )
}

/// CLOCK_MONOTONIC in nanoseconds: `bpf_ktime_get_ns()`'s clock.
#[must_use]
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
