//! The controller's side of the filter maps: a network's compiled filter
//! written under a fresh generation, made live by one write of its head,
//! then the previous generation removed; and the rules' hit counters.
use aya::maps::{Array, HashMap, LpmTrie, Map, PerCpuHashMap, PerCpuValues, lpm_trie::Key};
use dutnet_common::{
    filter::{
        FilterAddr, FilterCell, FilterDecision, FilterHead, FilterPortKey, POLICY, filter_id,
        hit_key,
    },
    maps::{FILTER_CELLS, FILTER_HEADS, FILTER_HITS, FILTER_PORTS},
};

use super::{EbpfError, nat_maps::wire};
use crate::datapath::filter::{
    Direction, FilterHits, FilterPlan, Protocol, compile, protocol_number,
};

fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |source| EbpfError::Map { name, source }
}

fn direction_number(d: Direction) -> u32 {
    match d {
        Direction::Egress => dutnet_common::filter::direction::EGRESS,
        Direction::Ingress => dutnet_common::filter::direction::INGRESS,
    }
}

/// What one generation of a network's filter put in the maps, to remove it.
#[derive(Debug, Default)]
pub struct Installed {
    generation: u8,
    /// (prefix length, key data) of each cell.
    cells: Vec<(u32, FilterAddr)>,
    ports: Vec<FilterPortKey>,
    hits: Vec<u32>,
    /// Rules per direction (egress, ingress), for reading the counters.
    rules: [Option<usize>; 2],
}

/// The maps a filter lives in, borrowed from the object.
pub struct FilterMaps<'a> {
    pub heads: &'a mut Map,
    pub cells: &'a mut Map,
    pub ports: &'a mut Map,
    pub hits: &'a mut Map,
}

/// Hands out cell numbers, unique among the live cells of every network.
#[derive(Debug, Default)]
pub struct CellNumbers(u32);

impl CellNumbers {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
}

/// Makes `plan` (or no filter) the live filter of the network in `slot`,
/// replacing `current`'s tables (and `current` with the new ones). On an
/// error the current filter stays live, and `current` as it was.
pub fn replace(
    maps: FilterMaps<'_>,
    numbers: &mut CellNumbers,
    slot: u32,
    plan: Option<&FilterPlan>,
    current: &mut Option<Installed>,
) -> Result<(), EbpfError> {
    let FilterMaps {
        heads,
        cells,
        ports,
        hits,
    } = maps;
    let mut cells: LpmTrie<_, FilterAddr, FilterCell> =
        LpmTrie::try_from(cells).map_err(map_error(FILTER_CELLS))?;
    let mut ports: HashMap<_, FilterPortKey, FilterDecision> =
        HashMap::try_from(ports).map_err(map_error(FILTER_PORTS))?;
    let mut hits: PerCpuHashMap<_, u32, u64> =
        PerCpuHashMap::try_from(hits).map_err(map_error(FILTER_HITS))?;
    let mut heads: Array<_, FilterHead> =
        Array::try_from(heads).map_err(map_error(FILTER_HEADS))?;
    let generation = current.as_ref().map_or(0, |p| p.generation ^ 1);
    let mut installed = Installed {
        generation,
        ..Installed::default()
    };
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| EbpfError::PossibleCpus { source })?;
    let zero = || {
        PerCpuValues::try_from(vec![0u64; cpus]).map_err(|e| EbpfError::Map {
            name: FILTER_HITS,
            source: aya::maps::MapError::from(e),
        })
    };
    let mut head = FilterHead {
        generation,
        ..FilterHead::default()
    };
    let written = (|| -> Result<(), EbpfError> {
        let Some(plan) = plan else {
            return Ok(());
        };
        head.udp_idle_secs = u32::try_from(plan.udp_idle.as_secs()).unwrap_or(u32::MAX);
        head.tcp_idle_secs = u32::try_from(plan.tcp_idle.as_secs()).unwrap_or(u32::MAX);
        for which in Direction::BOTH {
            let Some(filter) = plan.filter.direction(which) else {
                continue;
            };
            let dir = direction_number(which);
            match which {
                Direction::Egress => head.egress = 1,
                Direction::Ingress => head.ingress = 1,
            }
            installed.rules[dir as usize] = Some(filter.rules.len());
            let id = filter_id(slot, dir, generation);
            for rule in (0..filter.rules.len()).map(|i| i as u16).chain([POLICY]) {
                let key = hit_key(slot, dir, generation, rule);
                hits.insert(key, zero()?, 0)
                    .map_err(map_error(FILTER_HITS))?;
                installed.hits.push(key);
            }
            for cell in compile::cells(filter) {
                let number = numbers.next();
                let named = |p: Protocol| u8::from(cell.ports.iter().any(|(q, ..)| *q == p));
                for (protocol, port, decision) in &cell.ports {
                    let key = FilterPortKey {
                        cell: number,
                        port: port.to_be(),
                        protocol: protocol_number(*protocol),
                        _pad: 0,
                    };
                    ports
                        .insert(key, decision, 0)
                        .map_err(map_error(FILTER_PORTS))?;
                    installed.ports.push(key);
                }
                let bits = 32 + u32::from(cell.prefix.prefix_len());
                let data = FilterAddr {
                    filter_be: id.to_be(),
                    addr: wire(cell.prefix.network()),
                };
                let value = FilterCell {
                    cell: number,
                    tcp_ports: named(Protocol::Tcp),
                    udp_ports: named(Protocol::Udp),
                    _pad: 0,
                    tcp: cell.tcp,
                    udp: cell.udp,
                    other: cell.other,
                };
                cells
                    .insert(&Key::new(bits, data), value, 0)
                    .map_err(map_error(FILTER_CELLS))?;
                installed.cells.push((bits, data));
            }
        }
        Ok(())
    })();
    let live = written.and_then(|()| heads.set(slot, head, 0).map_err(map_error(FILTER_HEADS)));
    // What is not live goes: the new tables after a failure, else the old.
    let stale = match live {
        Ok(()) => std::mem::replace(current, plan.is_some().then_some(installed)),
        Err(_) => Some(installed),
    };
    if let Some(stale) = stale {
        for (bits, data) in &stale.cells {
            let _ = cells.remove(&Key::new(*bits, *data));
        }
        for key in &stale.ports {
            let _ = ports.remove(key);
        }
        for key in &stale.hits {
            let _ = hits.remove(key);
        }
    }
    live
}

/// The flows each rule of `installed` decided, from the loaded object.
pub fn hits(map: &Map, slot: u32, installed: &Installed) -> Result<FilterHits, EbpfError> {
    let hits: PerCpuHashMap<_, u32, u64> =
        PerCpuHashMap::try_from(map).map_err(map_error(FILTER_HITS))?;
    let read = |dir: u32, rule: u16| -> u64 {
        hits.get(&hit_key(slot, dir, installed.generation, rule), 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    };
    let mut out = FilterHits::default();
    for which in Direction::BOTH {
        let dir = direction_number(which);
        let Some(rules) = installed.rules[dir as usize] else {
            continue;
        };
        let counts = crate::datapath::filter::DirectionHits {
            rules: (0..rules).map(|i| read(dir, i as u16)).collect(),
            policy: read(dir, POLICY),
        };
        match which {
            Direction::Egress => out.egress = Some(counts),
            Direction::Ingress => out.ingress = Some(counts),
        }
    }
    Ok(out)
}
