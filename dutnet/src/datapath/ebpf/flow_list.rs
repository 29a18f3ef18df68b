//! The connection table as `dutnet flows` lists it: one record per flow (its
//! outbound half, with its inbound peer), without copying the table.
//!
//! The table may hold a million entries. The walk goes key by key
//! (`bpf_map_get_next_key`) and looks at every key to count the wanted DUT
//! NICs' flows, but reads only the first `limit` flows it meets (two lookups
//! each) and keeps nothing else: memory grows with `limit`, not with the
//! table. Which flows are shown when there are more is the table's order
//! (like `conntrack -L | head`), not the most recent ones: finding those
//! would take two more lookups for every flow.
use std::{collections::BTreeSet, net::SocketAddrV4, time::Duration};

use aya::maps::{HashMap, Map, MapError};
use dutnet_common::{
    flow_state::FlowState,
    maps::NAT_FLOWS,
    nat::{FlowEntry, FlowKey, direction},
};

use super::{EbpfError, nat_maps};

/// One flow of a DUT, as `conntrack -L` would show a masqueraded connection.
/// For ICMP echo the DUT's and the translated "port" is the echo
/// identifier, the remote's is 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The DUT NIC it came in on.
    pub dut_ifindex: u32,
    /// IANA protocol number ([`dutnet_common::nat::protocol`]).
    pub protocol: u8,
    /// The DUT's own address and port.
    pub dut: SocketAddrV4,
    /// What the far end sees instead.
    pub translated: SocketAddrV4,
    /// The far end.
    pub remote: SocketAddrV4,
    pub state: FlowState,
    /// Since the last packet either way.
    pub idle: Duration,
    /// Packets from the DUT, and back to it.
    pub packets_out: u32,
    pub packets_in: u32,
}

/// What a walk over the table found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowListing {
    /// At most `limit` flows, in the table's order.
    pub flows: Vec<Flow>,
    /// Flows of the wanted DUT NICs in the table.
    pub total: u64,
    /// False when the walk had to stop early, so `total` is a lower bound:
    /// a key removed under the walk makes the kernel start it again from
    /// the first key, and counting on would count flows twice.
    pub complete: bool,
}

/// Lists the flows of DUT NICs `dut_ifindexes` in `map` (`NAT_FLOWS`, which
/// holds at most `max_entries` keys); `now_ns` is CLOCK_MONOTONIC.
pub fn list(
    map: &Map,
    dut_ifindexes: &BTreeSet<u32>,
    limit: usize,
    max_entries: u32,
    now_ns: u64,
) -> Result<FlowListing, EbpfError> {
    let map_error = |source| EbpfError::Map {
        name: NAT_FLOWS,
        source,
    };
    let table: HashMap<_, FlowKey, FlowEntry> = HashMap::try_from(map).map_err(map_error)?;
    let lookup = |key: &FlowKey| match table.get(key, 0) {
        Ok(entry) => Ok(Some(entry)),
        // Removed by the programs or the sweeper since the key was listed.
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e),
    };
    let wanted = Wanted {
        dut_ifindexes,
        limit,
        max_entries,
        now_ns,
    };
    walk(table.keys(), lookup, &wanted).map_err(map_error)
}

/// What to collect from a walk.
struct Wanted<'a> {
    dut_ifindexes: &'a BTreeSet<u32>,
    limit: usize,
    max_entries: u32,
    now_ns: u64,
}

/// The walk itself, over any source of keys and entries (the map, or a
/// test's table).
fn walk<E>(
    keys: impl Iterator<Item = Result<FlowKey, E>>,
    lookup: impl Fn(&FlowKey) -> Result<Option<FlowEntry>, E>,
    wanted: &Wanted<'_>,
) -> Result<FlowListing, E> {
    let mut listing = FlowListing {
        complete: true,
        ..FlowListing::default()
    };
    let mut first = None;
    let mut seen: u64 = 0;
    for key in keys {
        let key = key?;
        seen += 1;
        // Meeting the first key again, or more keys than the table holds:
        // the walk restarted (see `FlowListing::complete`).
        if first == Some(key) || seen > u64::from(wanted.max_entries) {
            listing.complete = false;
            break;
        }
        first.get_or_insert(key);
        // Outbound keys carry the DUT NIC, inbound ones the upstream NIC.
        if !wanted.dut_ifindexes.contains(&key.ifindex) {
            continue;
        }
        if listing.flows.len() >= wanted.limit {
            listing.total += 1;
            continue;
        }
        let Some(outbound) = lookup(&key)? else {
            continue;
        };
        if outbound.direction != direction::OUTBOUND {
            continue;
        }
        let inbound = lookup(&outbound.peer)?;
        listing
            .flows
            .push(flow(&key, &outbound, inbound.as_ref(), wanted.now_ns));
        listing.total += 1;
    }
    Ok(listing)
}

/// The record of the flow whose outbound half is `key` -> `outbound`.
fn flow(key: &FlowKey, outbound: &FlowEntry, inbound: Option<&FlowEntry>, now_ns: u64) -> Flow {
    let last_seen = inbound
        .map_or(0, |i| i.last_seen_ns)
        .max(outbound.last_seen_ns);
    Flow {
        dut_ifindex: key.ifindex,
        protocol: key.protocol,
        dut: socket(key.src_addr, key.src_port),
        translated: socket(outbound.rewrite_addr, outbound.rewrite_port),
        remote: socket(key.dst_addr, key.dst_port),
        state: nat_maps::flow_state(key.protocol, outbound, inbound),
        idle: Duration::from_nanos(now_ns.saturating_sub(last_seen)),
        packets_out: outbound.packets,
        packets_in: inbound.map_or(0, |i| i.packets),
    }
}

/// An address and port as the map holds them (both network order).
fn socket(addr: u32, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(addr.to_ne_bytes().into(), u16::from_be(port))
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::Ipv4Addr};

    use dutnet_common::nat::{protocol, tcp_seen};

    use super::*;

    const DUT_NIC: u32 = 7;
    const OTHER_DUT_NIC: u32 = 8;
    const UPSTREAM: u32 = 2;
    const SECOND: u64 = 1_000_000_000;

    fn wire(addr: Ipv4Addr) -> u32 {
        u32::from_ne_bytes(addr.octets())
    }

    /// Both halves of a flow from 192.168.100.10:`port` to 10.99.0.1:7000,
    /// leaving as 10.99.0.2:`port + 1`.
    fn flow_pair(dut_nic: u32, proto: u8, port: u16) -> [(FlowKey, FlowEntry); 2] {
        let dut = wire(Ipv4Addr::new(192, 168, 100, 10));
        let remote = wire(Ipv4Addr::new(10, 99, 0, 1));
        let exporter = wire(Ipv4Addr::new(10, 99, 0, 2));
        let out_key = FlowKey {
            ifindex: dut_nic,
            src_addr: dut,
            dst_addr: remote,
            src_port: port.to_be(),
            dst_port: 7000u16.to_be(),
            protocol: proto,
            _pad: [0; 3],
        };
        let in_key = FlowKey {
            ifindex: UPSTREAM,
            src_addr: remote,
            dst_addr: exporter,
            src_port: 7000u16.to_be(),
            dst_port: (port + 1).to_be(),
            protocol: proto,
            _pad: [0; 3],
        };
        let both = tcp_seen::SYN | tcp_seen::ACK;
        let out = FlowEntry {
            last_seen_ns: 10 * SECOND,
            peer: in_key,
            rewrite_addr: exporter,
            rewrite_port: (port + 1).to_be(),
            direction: direction::OUTBOUND,
            tcp_flags: both,
            dut_ifindex: dut_nic,
            packets: 5,
            ..FlowEntry::default()
        };
        let inb = FlowEntry {
            last_seen_ns: 12 * SECOND,
            peer: out_key,
            rewrite_addr: dut,
            rewrite_port: port.to_be(),
            direction: direction::INBOUND,
            tcp_flags: both,
            dut_ifindex: dut_nic,
            packets: 3,
            ..FlowEntry::default()
        };
        [(out_key, out), (in_key, inb)]
    }

    fn run(
        table: &BTreeMap<FlowKey, FlowEntry>,
        keys: Vec<FlowKey>,
        nics: &[u32],
        limit: usize,
    ) -> FlowListing {
        let nics: BTreeSet<u32> = nics.iter().copied().collect();
        let wanted = Wanted {
            dut_ifindexes: &nics,
            limit,
            max_entries: 1000,
            now_ns: 15 * SECOND,
        };
        walk(
            keys.into_iter().map(Ok::<_, ()>),
            |k| Ok(table.get(k).copied()),
            &wanted,
        )
        .unwrap()
    }

    #[test]
    fn a_flow_reads_as_the_dut_the_translation_and_the_remote_in_host_order() {
        let table: BTreeMap<_, _> = flow_pair(DUT_NIC, protocol::TCP, 40000).into();
        let listing = run(&table, table.keys().copied().collect(), &[DUT_NIC], 10);
        assert_eq!(listing.total, 1);
        assert!(listing.complete);
        assert_eq!(
            listing.flows,
            vec![Flow {
                dut_ifindex: DUT_NIC,
                protocol: protocol::TCP,
                dut: "192.168.100.10:40000".parse().unwrap(),
                translated: "10.99.0.2:40001".parse().unwrap(),
                remote: "10.99.0.1:7000".parse().unwrap(),
                state: FlowState::Established,
                // The inbound half was the later one.
                idle: Duration::from_secs(3),
                packets_out: 5,
                packets_in: 3,
            }]
        );
    }

    #[test]
    fn a_flow_whose_inbound_half_is_gone_is_unreplied_and_idle_since_its_outbound() {
        let [out, _] = flow_pair(DUT_NIC, protocol::UDP, 5000);
        let table = BTreeMap::from([out]);
        let listing = run(&table, vec![out.0], &[DUT_NIC], 10);
        assert_eq!(listing.flows[0].state, FlowState::Unreplied);
        assert_eq!(listing.flows[0].idle, Duration::from_secs(5));
        assert_eq!(listing.flows[0].packets_in, 0);
    }

    #[test]
    fn past_the_limit_flows_are_counted_not_read() {
        let mut table = BTreeMap::new();
        for port in (1000..1010).step_by(2) {
            table.extend(flow_pair(DUT_NIC, protocol::UDP, port));
            table.extend(flow_pair(OTHER_DUT_NIC, protocol::UDP, port));
        }
        let keys: Vec<FlowKey> = table.keys().copied().collect();
        let listing = run(&table, keys.clone(), &[DUT_NIC], 2);
        assert_eq!((listing.flows.len(), listing.total), (2, 5));
        assert!(listing.flows.iter().all(|f| f.dut_ifindex == DUT_NIC));
        let both = run(&table, keys, &[DUT_NIC, OTHER_DUT_NIC], 100);
        assert_eq!((both.flows.len(), both.total), (10, 10));
    }

    #[test]
    fn a_key_removed_under_the_walk_is_skipped() {
        let [out, inb] = flow_pair(DUT_NIC, protocol::UDP, 5000);
        let table = BTreeMap::from([inb]);
        let listing = run(&table, vec![out.0, inb.0], &[DUT_NIC], 10);
        assert_eq!(listing.total, 0);
        assert!(listing.flows.is_empty());
    }

    #[test]
    fn a_walk_that_restarts_stops_and_says_its_total_is_a_lower_bound() {
        let mut table = BTreeMap::new();
        table.extend(flow_pair(DUT_NIC, protocol::UDP, 1000));
        table.extend(flow_pair(DUT_NIC, protocol::UDP, 2000));
        // Inbound keys (on the upstream NIC) sort first, then the two
        // outbound ones.
        let keys: Vec<FlowKey> = table.keys().copied().collect();
        // The kernel's answer once the cursor's key was deleted: the
        // table again from its first key.
        let restarted = [&keys[..3], &keys[..]].concat();
        let listing = run(&table, restarted, &[DUT_NIC], 10);
        assert!(!listing.complete);
        assert_eq!(listing.total, 1, "{listing:?}");
    }
}
