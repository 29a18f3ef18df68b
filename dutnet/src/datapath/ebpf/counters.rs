//! Reading the per-DUT-NIC and per-DUT counters and flow counts, from the
//! loaded object or from the pins.
use std::{collections::BTreeMap, net::Ipv4Addr};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuHashMap};
use dutnet_common::{
    maps::{DUT_CONFIG, DUT_TRAFFIC, IFACE_STATS, NET_FLOWS, NET_SWEPT},
    nat::{DutConfig, FlowCounts, PrivateKey},
    stats::{DirCounters, DutTraffic, IfaceCounters},
};

use super::{
    EbpfError,
    nat_maps::{self, NetworkFlows},
    transmitted,
};
use crate::{
    datapath::{DutStats, InterfaceStats, interface_name},
    state::paths::Paths,
};

fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |source| EbpfError::Map { name, source }
}

/// Sums each interface's per-CPU copies and adds its network's flows and
/// its DUTs' traffic.
fn merge<T: std::borrow::Borrow<MapData>>(
    counters: &PerCpuHashMap<T, u32, IfaceCounters>,
    flows: &BTreeMap<u32, NetworkFlows>,
    traffic: &PerCpuHashMap<T, PrivateKey, DutTraffic>,
) -> Result<Vec<InterfaceStats>, EbpfError> {
    let mut duts = by_interface(traffic)?;
    let mut stats = Vec::new();
    let nics = transmitted::Asker::open();
    for entry in counters.iter() {
        let (ifindex, per_cpu) = entry.map_err(map_error(IFACE_STATS))?;
        let mut counters = per_cpu
            .iter()
            .fold(IfaceCounters::default(), |sum, cpu| sum.merged(*cpu));
        // `egress` holds the NIC's transmit counters at attach time.
        counters.egress = nics
            .transmitted(ifindex)
            .map_or_else(DirCounters::default, |now| {
                transmitted::since(now, counters.egress)
            });
        let network = flows.get(&ifindex).copied().unwrap_or_default();
        stats.push(InterfaceStats {
            ifindex,
            name: interface_name(ifindex),
            counters,
            active_flows: network.in_use,
            flow_budget: network.budget,
            evictions: network.evicted,
            filter: None,
            duts: duts.remove(&ifindex).unwrap_or_default(),
        });
    }
    stats.sort_by_key(|s| s.ifindex);
    Ok(stats)
}

/// Each DUT NIC's DUTs, their per-CPU copies summed, the busiest sender
/// first.
fn by_interface<T: std::borrow::Borrow<MapData>>(
    traffic: &PerCpuHashMap<T, PrivateKey, DutTraffic>,
) -> Result<BTreeMap<u32, Vec<DutStats>>, EbpfError> {
    let mut duts: BTreeMap<u32, Vec<DutStats>> = BTreeMap::new();
    for entry in traffic.iter() {
        let (key, per_cpu) = entry.map_err(map_error(DUT_TRAFFIC))?;
        let traffic = per_cpu
            .iter()
            .fold(DutTraffic::default(), |sum, cpu| sum.merged(*cpu));
        duts.entry(key.dut_ifindex).or_default().push(DutStats {
            // Network order in the map: its bytes are the address's octets.
            address: Ipv4Addr::from(key.private_addr.to_ne_bytes()),
            traffic,
        });
    }
    for list in duts.values_mut() {
        list.sort_by_key(|d| (std::cmp::Reverse(d.traffic.from_dut.bytes), d.address));
    }
    Ok(duts)
}

/// Removes the DUTs of DUT NIC `dut_ifindex` from `DUT_TRAFFIC`, when the
/// programs leave it: a NIC attached again counts from zero.
pub fn forget_dut_traffic(map: &mut Map, dut_ifindex: u32) -> Result<(), EbpfError> {
    let mut traffic: PerCpuHashMap<_, PrivateKey, DutTraffic> =
        PerCpuHashMap::try_from(map).map_err(map_error(DUT_TRAFFIC))?;
    let keys: Vec<PrivateKey> = traffic
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.dut_ifindex == dut_ifindex)
        .collect();
    for key in keys {
        nat_maps::removed(DUT_TRAFFIC, traffic.remove(&key))?;
    }
    Ok(())
}

/// The counters of the loaded object.
pub fn collect(ebpf: &aya::Ebpf) -> Result<Vec<InterfaceStats>, EbpfError> {
    let map = |name| ebpf.map(name).ok_or(EbpfError::MissingMap { name });
    let counters: PerCpuHashMap<_, u32, IfaceCounters> =
        PerCpuHashMap::try_from(map(IFACE_STATS)?).map_err(map_error(IFACE_STATS))?;
    let configs: HashMap<_, u32, DutConfig> =
        HashMap::try_from(map(DUT_CONFIG)?).map_err(map_error(DUT_CONFIG))?;
    let net_flows: Array<_, FlowCounts> =
        Array::try_from(map(NET_FLOWS)?).map_err(map_error(NET_FLOWS))?;
    let net_swept: Array<_, u64> =
        Array::try_from(map(NET_SWEPT)?).map_err(map_error(NET_SWEPT))?;
    let traffic: PerCpuHashMap<_, PrivateKey, DutTraffic> =
        PerCpuHashMap::try_from(map(DUT_TRAFFIC)?).map_err(map_error(DUT_TRAFFIC))?;
    merge(
        &counters,
        &nat_maps::network_flows(&configs, &net_flows, &net_swept)?,
        &traffic,
    )
}

/// When the counters under `paths` were pinned (the daemon that loaded
/// them started then; pins a killed daemon left stay with that time).
pub fn pinned_since(paths: &Paths) -> Result<std::time::SystemTime, EbpfError> {
    let path = paths.pinned_map(IFACE_STATS);
    // bpffs stamps an inode with its creation time and never touches it.
    path.symlink_metadata()
        .and_then(|m| m.modified())
        .map_err(|_| EbpfError::NotRunning { path })
}

/// Reads the counters pinned under `paths` without asking the daemon
/// (`dutnet stats --offline`): names are this namespace's, and the numbers
/// are frozen if the daemon died.
pub fn read_pinned(paths: &Paths) -> Result<Vec<InterfaceStats>, EbpfError> {
    let path = paths.pinned_map(IFACE_STATS);
    if path.symlink_metadata().is_err() {
        return Err(EbpfError::NotRunning { path });
    }
    let pinned =
        |name: &'static str| MapData::from_pin(paths.pinned_map(name)).map_err(map_error(name));
    let counters: PerCpuHashMap<MapData, u32, IfaceCounters> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(pinned(IFACE_STATS)?))
            .map_err(map_error(IFACE_STATS))?;
    let configs: HashMap<MapData, u32, DutConfig> =
        HashMap::try_from(Map::HashMap(pinned(DUT_CONFIG)?)).map_err(map_error(DUT_CONFIG))?;
    let net_flows: Array<MapData, FlowCounts> =
        Array::try_from(Map::Array(pinned(NET_FLOWS)?)).map_err(map_error(NET_FLOWS))?;
    let net_swept: Array<MapData, u64> =
        Array::try_from(Map::Array(pinned(NET_SWEPT)?)).map_err(map_error(NET_SWEPT))?;
    let traffic: PerCpuHashMap<MapData, PrivateKey, DutTraffic> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(pinned(DUT_TRAFFIC)?))
            .map_err(map_error(DUT_TRAFFIC))?;
    merge(
        &counters,
        &nat_maps::network_flows(&configs, &net_flows, &net_swept)?,
        &traffic,
    )
}
