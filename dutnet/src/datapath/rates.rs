//! Per-second rates from two readings of the counters.
use std::net::Ipv4Addr;

use dutnet_common::stats::DirCounters;
use serde::Serialize;

use super::InterfaceStats;

/// Packets and bytes per second in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DirRate {
    pub packets_per_s: f64,
    pub bytes_per_s: f64,
}

/// The rates of one DUT interface between two readings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterfaceRates {
    pub ifindex: u32,
    pub from_dut: DirRate,
    pub to_dut: DirRate,
    pub nat_out: DirRate,
    pub nat_in: DirRate,
    pub new_flows_per_s: f64,
    /// Its DUTs' rates, the busiest sender first.
    pub duts: Vec<DutRates>,
}

/// The rates of one DUT between two readings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DutRates {
    /// Beside its counters in what `stats --by-dut --json` prints.
    #[serde(skip_serializing)]
    pub address: Ipv4Addr,
    pub from_dut: DirRate,
    pub to_dut: DirRate,
}

/// Rates of every interface present in both readings, taken `seconds`
/// apart. A counter that went backwards (the interface was re-attached in
/// between) counts from zero, and so does a DUT first seen in `after`.
#[must_use]
pub fn between(
    before: &[InterfaceStats],
    after: &[InterfaceStats],
    seconds: f64,
) -> Vec<InterfaceRates> {
    let per_s = |old: u64, new: u64| {
        let delta = if new >= old { new - old } else { new };
        delta as f64 / seconds.max(f64::EPSILON)
    };
    let dir = |old: DirCounters, new: DirCounters| DirRate {
        packets_per_s: per_s(old.packets, new.packets),
        bytes_per_s: per_s(old.bytes, new.bytes),
    };
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.ifindex == a.ifindex)?;
            let (o, n) = (b.counters, a.counters);
            let mut duts: Vec<DutRates> = a
                .duts
                .iter()
                .map(|d| {
                    let old = b
                        .duts
                        .iter()
                        .find(|old| old.address == d.address)
                        .map(|old| old.traffic)
                        .unwrap_or_default();
                    DutRates {
                        address: d.address,
                        from_dut: dir(old.from_dut, d.traffic.from_dut),
                        to_dut: dir(old.to_dut, d.traffic.to_dut),
                    }
                })
                .collect();
            duts.sort_by(|x, y| y.from_dut.bytes_per_s.total_cmp(&x.from_dut.bytes_per_s));
            Some(InterfaceRates {
                ifindex: a.ifindex,
                from_dut: dir(o.ingress, n.ingress),
                to_dut: dir(o.egress, n.egress),
                nat_out: dir(o.nat_out, n.nat_out),
                nat_in: dir(o.nat_in, n.nat_in),
                new_flows_per_s: per_s(o.new_flows, n.new_flows),
                duts,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dutnet_common::stats::{DutTraffic, IfaceCounters};

    use super::*;
    use crate::datapath::DutStats;

    fn reading(ifindex: u32, packets: u64, new_flows: u64) -> InterfaceStats {
        let counters = IfaceCounters {
            ingress: DirCounters {
                packets,
                bytes: packets * 100,
            },
            new_flows,
            ..IfaceCounters::default()
        };
        InterfaceStats {
            ifindex,
            name: None,
            counters,
            active_flows: 0,
            flow_budget: 0,
            evictions: 0,
            filter: None,
            duts: Vec::new(),
        }
    }

    #[test]
    fn rates_are_the_difference_over_the_interval() {
        let rates = between(&[reading(3, 100, 1)], &[reading(3, 300, 5)], 2.0);
        assert_eq!(rates.len(), 1);
        assert_eq!(rates[0].from_dut.packets_per_s, 100.0);
        assert_eq!(rates[0].from_dut.bytes_per_s, 10_000.0);
        assert_eq!(rates[0].new_flows_per_s, 2.0);
    }

    #[test]
    fn a_reattached_interface_counts_from_zero_and_a_new_one_is_skipped() {
        let rates = between(
            &[reading(3, 500, 0)],
            &[reading(3, 40, 0), reading(4, 9, 0)],
            1.0,
        );
        assert_eq!(rates.len(), 1);
        assert_eq!(rates[0].from_dut.packets_per_s, 40.0);
    }

    fn dut(address: [u8; 4], bytes: u64) -> DutStats {
        DutStats {
            address: address.into(),
            traffic: DutTraffic {
                from_dut: DirCounters {
                    packets: bytes / 100,
                    bytes,
                },
                to_dut: DirCounters::default(),
            },
        }
    }

    #[test]
    fn duts_are_ranked_by_what_they_sent_in_the_interval() {
        let mut before = reading(3, 0, 0);
        before.duts = vec![dut([10, 0, 0, 2], 1_000_000), dut([10, 0, 0, 3], 0)];
        let mut after = reading(3, 0, 0);
        // .2 sent more in all, .3 more in the interval; .4 is new.
        after.duts = vec![
            dut([10, 0, 0, 2], 1_000_100),
            dut([10, 0, 0, 3], 5_000),
            dut([10, 0, 0, 4], 700),
        ];
        let rates = between(&[before], &[after], 1.0);
        let ranked: Vec<(Ipv4Addr, f64)> = rates[0]
            .duts
            .iter()
            .map(|d| (d.address, d.from_dut.bytes_per_s))
            .collect();
        assert_eq!(
            ranked,
            [
                ([10, 0, 0, 3].into(), 5_000.0),
                ([10, 0, 0, 4].into(), 700.0),
                ([10, 0, 0, 2].into(), 100.0),
            ]
        );
    }
}
