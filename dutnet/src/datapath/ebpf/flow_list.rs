//! The connection table as `dutnet flows` lists it: one record per flow (its
//! outbound half, with its inbound peer), without copying the table.
//!
//! The table may hold a million entries. They are read in batches
//! ([`nat_maps::each_entry`]): every outbound half of a wanted DUT NIC is
//! counted, and only the `limit` the DUT sent on most recently are kept;
//! their inbound halves are then looked up one by one. Memory grows with
//! `limit` and a batch, not with the table. Batches rather than a walk key
//! by key: that walk starts again from the first key whenever the key it
//! stands on is removed (an eviction, a sweep), and counts flows twice.
use std::{
    cmp::{Ordering, Reverse},
    collections::{BTreeSet, BinaryHeap},
    net::SocketAddrV4,
    time::Duration,
};

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

/// What a read of the table found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowListing {
    /// At most `limit` flows: those the DUTs sent on most recently, in no
    /// particular order.
    pub flows: Vec<Flow>,
    /// Flows of the wanted DUT NICs in the table.
    pub total: u64,
}

/// Lists the flows of DUT NICs `dut_ifindexes` in `map` (`NAT_FLOWS`);
/// `now_ns` is CLOCK_MONOTONIC.
pub fn list(
    map: &Map,
    dut_ifindexes: &BTreeSet<u32>,
    limit: usize,
    now_ns: u64,
) -> Result<FlowListing, EbpfError> {
    let mut pick = Pick::new(dut_ifindexes, limit);
    nat_maps::each_entry(map, |key, entry| pick.offer(key, entry))?;
    let map_error = |source| EbpfError::Map {
        name: NAT_FLOWS,
        source,
    };
    let table: HashMap<_, FlowKey, FlowEntry> = HashMap::try_from(map).map_err(map_error)?;
    let total = pick.total;
    let mut flows = Vec::new();
    for Candidate { key, outbound } in pick.into_chosen() {
        let inbound = match table.get(&outbound.peer, 0) {
            Ok(entry) => Some(entry),
            // Not created yet, or removed with its flow since the batch.
            Err(MapError::KeyNotFound) => None,
            Err(e) => return Err(map_error(e)),
        };
        flows.push(flow(&key, &outbound, inbound.as_ref(), now_ns));
    }
    Ok(FlowListing { flows, total })
}

/// An outbound half that may be shown.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    key: FlowKey,
    outbound: FlowEntry,
}

impl Candidate {
    /// The DUT's latest packet first; the key breaks ties, for a total order.
    fn rank(&self) -> (u64, FlowKey) {
        (self.outbound.last_seen_ns, self.key)
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// Counts the wanted flows and keeps the `limit` most recent of them.
struct Pick<'a> {
    dut_ifindexes: &'a BTreeSet<u32>,
    limit: usize,
    total: u64,
    /// The least recent kept one on top, to be replaced first.
    kept: BinaryHeap<Reverse<Candidate>>,
}

impl<'a> Pick<'a> {
    fn new(dut_ifindexes: &'a BTreeSet<u32>, limit: usize) -> Self {
        Self {
            dut_ifindexes,
            limit,
            total: 0,
            kept: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, key: FlowKey, outbound: FlowEntry) {
        // One flow is one outbound half; it is keyed on its DUT NIC.
        if outbound.direction != direction::OUTBOUND || !self.dut_ifindexes.contains(&key.ifindex) {
            return;
        }
        self.total += 1;
        let candidate = Candidate { key, outbound };
        if self.kept.len() < self.limit {
            self.kept.push(Reverse(candidate));
        } else if let Some(mut oldest) = self.kept.peek_mut()
            && oldest.0 < candidate
        {
            *oldest = Reverse(candidate);
        }
    }

    fn into_chosen(self) -> impl Iterator<Item = Candidate> {
        self.kept.into_iter().map(|Reverse(c)| c)
    }
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
    use std::net::Ipv4Addr;

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
    /// leaving as 10.99.0.2:`port + 1`, the DUT's last packet at second
    /// 10, the reply's at 12.
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

    #[test]
    fn a_flow_reads_as_the_dut_the_translation_and_the_remote_in_host_order() {
        let [(key, out), (_, inb)] = flow_pair(DUT_NIC, protocol::TCP, 40000);
        assert_eq!(
            flow(&key, &out, Some(&inb), 15 * SECOND),
            Flow {
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
            }
        );
    }

    #[test]
    fn a_flow_whose_inbound_half_is_gone_is_unreplied_and_idle_since_its_outbound() {
        let [(key, out), _] = flow_pair(DUT_NIC, protocol::UDP, 5000);
        let flow = flow(&key, &out, None, 15 * SECOND);
        assert_eq!(flow.state, FlowState::Unreplied);
        assert_eq!(flow.idle, Duration::from_secs(5));
        assert_eq!(flow.packets_in, 0);
    }

    /// Offers both halves of flows from ports `ports` on each NIC, the
    /// DUT's last packet at second `port`.
    fn pick(nics: &[u32], wanted: &[u32], ports: &[u16], limit: usize) -> (u64, Vec<u16>) {
        let wanted: BTreeSet<u32> = wanted.iter().copied().collect();
        let mut pick = Pick::new(&wanted, limit);
        for &nic in nics {
            for &port in ports {
                for (key, mut entry) in flow_pair(nic, protocol::UDP, port) {
                    entry.last_seen_ns = u64::from(port) * SECOND;
                    pick.offer(key, entry);
                }
            }
        }
        let total = pick.total;
        let mut kept: Vec<u16> = pick
            .into_chosen()
            .map(|c| u16::from_be(c.key.src_port))
            .collect();
        kept.sort_unstable();
        (total, kept)
    }

    #[test]
    fn every_outbound_half_of_a_wanted_nic_is_counted_once() {
        let ports = [1, 2, 3, 4, 5];
        assert_eq!(
            pick(&[DUT_NIC, OTHER_DUT_NIC], &[DUT_NIC], &ports, 100),
            (5, ports.to_vec())
        );
        let (total, kept) = pick(
            &[DUT_NIC, OTHER_DUT_NIC],
            &[DUT_NIC, OTHER_DUT_NIC],
            &ports,
            100,
        );
        assert_eq!((total, kept.len()), (10, 10));
        assert_eq!(pick(&[OTHER_DUT_NIC], &[DUT_NIC], &ports, 100), (0, vec![]));
    }

    #[test]
    fn past_the_limit_the_flows_the_dut_sent_on_last_are_kept() {
        assert_eq!(
            pick(&[DUT_NIC], &[DUT_NIC], &[4, 9, 1, 7, 3, 8], 3),
            (6, vec![7, 8, 9])
        );
    }
}
