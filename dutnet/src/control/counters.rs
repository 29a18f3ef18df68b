//! The datapath's counters as the control socket carries them, and back.
//!
//! The JSON shape is the one `dutnet stats --json` has always printed (one
//! object per DUT interface, reasons by name), so scripts that read it see
//! the same fields whether the numbers came from the daemon or the pins.
use std::{collections::BTreeMap, net::Ipv4Addr};

use dutnet_common::stats::{DirCounters, DutTraffic, IfaceCounters, drop, punt};
use serde::{Deserialize, Serialize};

use crate::{
    datapath::{
        DutStats, InterfaceStats,
        filter::{Direction, Filter, FilterHits},
    },
    dhcp::{DhcpCounters, message_type},
    dns::{DnsCounters, latency::UpstreamLatency, query_type},
};

/// Packets and bytes one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// The counters of one DUT interface the eBPF datapath is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCounters {
    /// Its name in the daemon's network namespace (`None`: it is gone).
    pub interface: Option<String>,
    pub ifindex: u32,
    /// The network it belongs to (`None` for `dutnet attach`).
    #[serde(default)]
    pub network: Option<String>,
    pub from_dut: Traffic,
    pub to_dut: Traffic,
    pub nat_out: Traffic,
    pub nat_in: Traffic,
    pub active_flows: u64,
    pub flow_budget: u32,
    pub evictions: u64,
    pub new_flows: u64,
    /// By reason ([`punt::NAMES`]); every reason is present.
    pub punts: BTreeMap<String, u64>,
    /// By reason ([`drop::NAMES`]); every reason is present.
    pub drops: BTreeMap<String, u64>,
    /// Each DUT's traffic, the busiest sender first.
    #[serde(default)]
    pub duts: Vec<DutCounters>,
}

/// One DUT's traffic since its NIC was attached: `from_dut` every IPv4
/// packet from its address, `to_dut` what the fast path delivered to it
/// (see `dutnet_common::stats::DutTraffic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutCounters {
    pub address: Ipv4Addr,
    /// From its lease or its `addresses` entry; `None` for a DUT dutnet
    /// gave no address (configured by hand).
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    pub from_dut: Traffic,
    pub to_dut: Traffic,
}

impl From<DirCounters> for Traffic {
    fn from(d: DirCounters) -> Self {
        Self {
            packets: d.packets,
            bytes: d.bytes,
        }
    }
}

impl From<Traffic> for DirCounters {
    fn from(t: Traffic) -> Self {
        Self {
            packets: t.packets,
            bytes: t.bytes,
        }
    }
}

fn by_name(names: &[&str], values: &[u64]) -> BTreeMap<String, u64> {
    names
        .iter()
        .zip(values)
        .map(|(name, n)| ((*name).to_owned(), *n))
        .collect()
}

/// The values in `names` order; a reason this build does not know is
/// dropped, one the daemon did not send counts 0.
fn by_index<const N: usize>(names: &[&str; N], values: &BTreeMap<String, u64>) -> [u64; N] {
    core::array::from_fn(|i| values.get(names[i]).copied().unwrap_or(0))
}

impl InterfaceCounters {
    /// `stats` as sent, labelled with its network.
    #[must_use]
    pub fn new(stats: &InterfaceStats, network: Option<String>) -> Self {
        let c = stats.counters;
        Self {
            interface: stats.name.clone(),
            ifindex: stats.ifindex,
            network,
            from_dut: c.ingress.into(),
            to_dut: c.egress.into(),
            nat_out: c.nat_out.into(),
            nat_in: c.nat_in.into(),
            active_flows: stats.active_flows,
            flow_budget: stats.flow_budget,
            evictions: stats.evictions,
            new_flows: c.new_flows,
            punts: by_name(&punt::NAMES, &c.punts),
            drops: by_name(&drop::NAMES, &c.drops),
            duts: stats
                .duts
                .iter()
                .map(|d| DutCounters {
                    address: d.address,
                    mac: None,
                    hostname: None,
                    from_dut: d.traffic.from_dut.into(),
                    to_dut: d.traffic.to_dut.into(),
                })
                .collect(),
        }
    }

    /// Back to the datapath's shape (for tables and rates).
    #[must_use]
    pub fn to_stats(&self) -> InterfaceStats {
        InterfaceStats {
            ifindex: self.ifindex,
            name: self.interface.clone(),
            counters: IfaceCounters {
                ingress: self.from_dut.into(),
                egress: self.to_dut.into(),
                nat_out: self.nat_out.into(),
                nat_in: self.nat_in.into(),
                new_flows: self.new_flows,
                punts: by_index(&punt::NAMES, &self.punts),
                drops: by_index(&drop::NAMES, &self.drops),
            },
            active_flows: self.active_flows,
            flow_budget: self.flow_budget,
            evictions: self.evictions,
            // By network, in [`NetworkCounters::filter`].
            filter: None,
            duts: self
                .duts
                .iter()
                .map(|d| DutStats {
                    address: d.address,
                    traffic: DutTraffic {
                        from_dut: d.from_dut.into(),
                        to_dut: d.to_dut.into(),
                    },
                })
                .collect(),
        }
    }
}

/// What one network's servers counted since they started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCounters {
    pub network: String,
    pub interface: String,
    /// `ebpf`, `nft`, or `none` while the interface is absent.
    pub datapath: String,
    /// `None` when its DHCP server does not run.
    pub dhcp: Option<DhcpStats>,
    /// `None` when its DNS server does not run.
    pub dns: Option<DnsStats>,
    /// `None` when it serves no `tftp_root`.
    #[serde(default)]
    pub tftp: Option<crate::tftp::TftpCounters>,
    /// Its `filter`'s rules with the flows each decided; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterCounters>,
    /// `None` without `local_ntp`.
    #[serde(default)]
    pub ntp: Option<crate::ntp::NtpCounters>,
}

/// A network's filter as `dutnet stats` shows it: each rule beside the new
/// flows it decided (on the fast path and in the kernel together; nft
/// counts each packet it judges, so a retransmitted SYN counts again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCounters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<DirectionCounters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<DirectionCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionCounters {
    pub rules: Vec<RuleCounter>,
    /// `accept` or `drop`.
    pub policy: String,
    /// Flows no rule matched.
    pub policy_hits: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounter {
    /// The rule, e.g. `drop tcp 10.0.0.0/8 port 22`.
    pub rule: String,
    pub hits: u64,
}

impl FilterCounters {
    /// `filter`'s rules with `hits`, the datapaths' counts summed.
    #[must_use]
    pub fn new(filter: &Filter, hits: &FilterHits) -> Self {
        let direction = |which: Direction| {
            let f = filter.direction(which)?;
            let counted = match which {
                Direction::Egress => hits.egress.as_ref(),
                Direction::Ingress => hits.ingress.as_ref(),
            };
            Some(DirectionCounters {
                rules: f
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RuleCounter {
                        rule: r.to_string(),
                        hits: counted.and_then(|c| c.rules.get(i)).copied().unwrap_or(0),
                    })
                    .collect(),
                policy: f.policy.key().to_owned(),
                policy_hits: counted.map_or(0, |c| c.policy),
            })
        };
        Self {
            egress: direction(Direction::Egress),
            ingress: direction(Direction::Ingress),
        }
    }
}

/// A DHCP server's pool and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpStats {
    /// Bound leases (static ones included).
    pub leases: u64,
    /// Addresses of the dynamic range (`dhcp_range_start`..=`dhcp_range_end`).
    pub pool_size: u64,
    /// Client messages by type ([`message_type::NAMES`]).
    pub received: BTreeMap<String, u64>,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    /// DISCOVERs left unanswered because the pool was full.
    pub exhausted: u64,
    /// Packets that did not parse.
    pub malformed: u64,
}

impl DhcpStats {
    #[must_use]
    pub fn new(counters: &DhcpCounters, leases: u64, pool_size: u64) -> Self {
        Self {
            leases,
            pool_size,
            received: by_name(&message_type::NAMES, &counters.received),
            offers: counters.offers,
            acks: counters.acks,
            naks: counters.naks,
            exhausted: counters.exhausted,
            malformed: counters.dropped_malformed,
        }
    }
}

/// A DNS server's counters: every query once in `queries`, then once by
/// where its answer came from, or by the error it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStats {
    pub queries: u64,
    /// Queries by question type ([`query_type::NAMES`]).
    #[serde(default)]
    pub by_type: BTreeMap<String, u64>,
    pub local_answers: u64,
    pub cache_hits: u64,
    /// Sent to the upstream servers.
    pub forwarded: u64,
    /// Dead upstreams show here first.
    pub servfail: u64,
    pub formerr: u64,
    pub notimp: u64,
    pub refused: u64,
    pub malformed: u64,
    /// How long the upstreams took for the forwarded queries they answered.
    #[serde(default)]
    pub upstream_latency: UpstreamLatency,
}

impl From<DnsCounters> for DnsStats {
    fn from(c: DnsCounters) -> Self {
        Self {
            queries: c.queries,
            by_type: by_name(&query_type::NAMES, &c.by_type),
            local_answers: c.local_answers,
            cache_hits: c.cache_hits,
            forwarded: c.forwarded,
            servfail: c.servfail,
            formerr: c.formerr,
            notimp: c.notimp,
            refused: c.refused,
            malformed: c.dropped_malformed,
            upstream_latency: c.upstream_latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_the_trip_and_keep_the_stats_json_fields() {
        let mut counters = IfaceCounters {
            ingress: DirCounters {
                packets: 3,
                bytes: 300,
            },
            ..IfaceCounters::default()
        };
        counters.drops[drop::TABLE_FULL] = 7;
        counters.punts[punt::MTU] = 2;
        let stats = InterfaceStats {
            ifindex: 9,
            name: Some("dn-dut1".into()),
            counters,
            active_flows: 4,
            flow_budget: 64,
            evictions: 1,
            filter: None,
            duts: Vec::new(),
        };
        let wire = InterfaceCounters::new(&stats, Some("lab".into()));
        let json = serde_json::to_value(&wire).unwrap();
        for field in [
            "interface",
            "ifindex",
            "from_dut",
            "to_dut",
            "nat_out",
            "nat_in",
            "active_flows",
            "flow_budget",
            "evictions",
            "new_flows",
            "punts",
            "drops",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert_eq!(json["drops"]["table_full"], 7);
        assert_eq!(json["from_dut"]["bytes"], 300);
        let back: InterfaceCounters = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_stats(), stats);
    }
}
