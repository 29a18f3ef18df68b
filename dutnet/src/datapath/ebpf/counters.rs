//! Reading the per-interface counters, from the loaded object or from the pins.
use aya::maps::{Map, MapData, PerCpuHashMap};
use dutnet_common::{maps::IFACE_STATS, stats::IfaceCounters};

use super::EbpfError;
use crate::{
    datapath::{InterfaceStats, interface_name},
    state::paths::Paths,
};

fn map_error(source: aya::maps::MapError) -> EbpfError {
    EbpfError::Map {
        name: IFACE_STATS,
        source,
    }
}

/// Sums each interface's per-CPU copies.
pub fn collect<T: std::borrow::Borrow<MapData>>(
    map: &PerCpuHashMap<T, u32, IfaceCounters>,
) -> Result<Vec<InterfaceStats>, EbpfError> {
    let mut stats = Vec::new();
    for entry in map.iter() {
        let (ifindex, per_cpu) = entry.map_err(map_error)?;
        let counters = per_cpu
            .iter()
            .fold(IfaceCounters::default(), |sum, cpu| sum.merged(*cpu));
        stats.push(InterfaceStats {
            ifindex,
            name: interface_name(ifindex),
            counters,
        });
    }
    stats.sort_by_key(|s| s.ifindex);
    Ok(stats)
}

/// Reads the counters a running dutnet pinned under `paths`: what
/// `dutnet stats` shows, from any process that sees the same bpffs.
pub fn read_pinned(paths: &Paths) -> Result<Vec<InterfaceStats>, EbpfError> {
    let path = paths.pinned_map(IFACE_STATS);
    if path.symlink_metadata().is_err() {
        return Err(EbpfError::NotRunning { path });
    }
    let data = MapData::from_pin(&path).map_err(map_error)?;
    let map: PerCpuHashMap<MapData, u32, IfaceCounters> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(data)).map_err(map_error)?;
    collect(&map)
}
