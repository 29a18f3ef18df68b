//! Reading the per-DUT counters and flow counts, from the loaded object or
//! from the pins.
use std::collections::BTreeMap;

use aya::maps::{HashMap, Map, MapData, PerCpuHashMap};
use dutnet_common::{
    maps::{IFACE_STATS, NAT_FLOWS},
    nat::{FlowEntry, FlowKey},
    stats::IfaceCounters,
};

use super::{EbpfError, nat_maps};
use crate::{
    datapath::{InterfaceStats, interface_name},
    state::paths::Paths,
};

fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |source| EbpfError::Map { name, source }
}

/// Sums each interface's per-CPU copies and adds its flow count.
fn merge<T: std::borrow::Borrow<MapData>>(
    counters: &PerCpuHashMap<T, u32, IfaceCounters>,
    flows: &BTreeMap<u32, u64>,
) -> Result<Vec<InterfaceStats>, EbpfError> {
    let mut stats = Vec::new();
    for entry in counters.iter() {
        let (ifindex, per_cpu) = entry.map_err(map_error(IFACE_STATS))?;
        let counters = per_cpu
            .iter()
            .fold(IfaceCounters::default(), |sum, cpu| sum.merged(*cpu));
        stats.push(InterfaceStats {
            ifindex,
            name: interface_name(ifindex),
            counters,
            active_flows: flows.get(&ifindex).copied().unwrap_or(0),
        });
    }
    stats.sort_by_key(|s| s.ifindex);
    Ok(stats)
}

/// The counters of the loaded object.
pub fn collect(ebpf: &aya::Ebpf) -> Result<Vec<InterfaceStats>, EbpfError> {
    let map = |name| ebpf.map(name).ok_or(EbpfError::MissingMap { name });
    let counters: PerCpuHashMap<_, u32, IfaceCounters> =
        PerCpuHashMap::try_from(map(IFACE_STATS)?).map_err(map_error(IFACE_STATS))?;
    let flows: HashMap<_, FlowKey, FlowEntry> =
        HashMap::try_from(map(NAT_FLOWS)?).map_err(map_error(NAT_FLOWS))?;
    merge(&counters, &nat_maps::count_flows(&flows)?)
}

/// Reads the counters a running dutnet pinned under `paths`: what
/// `dutnet stats` shows, from any process that sees the same bpffs.
pub fn read_pinned(paths: &Paths) -> Result<Vec<InterfaceStats>, EbpfError> {
    let path = paths.pinned_map(IFACE_STATS);
    if path.symlink_metadata().is_err() {
        return Err(EbpfError::NotRunning { path });
    }
    let data = MapData::from_pin(&path).map_err(map_error(IFACE_STATS))?;
    let counters: PerCpuHashMap<MapData, u32, IfaceCounters> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(data)).map_err(map_error(IFACE_STATS))?;
    let flows_data =
        MapData::from_pin(paths.pinned_map(NAT_FLOWS)).map_err(map_error(NAT_FLOWS))?;
    let flows: HashMap<MapData, FlowKey, FlowEntry> =
        HashMap::try_from(Map::HashMap(flows_data)).map_err(map_error(NAT_FLOWS))?;
    merge(&counters, &nat_maps::count_flows(&flows)?)
}
