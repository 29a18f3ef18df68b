//! One warning a minute at most per network whose flow budget is full: which
//! network, how full, how many flows were evicted or refused since the last
//! warning, and which DUT holds the most (the one flooding, usually).
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use dutnet_common::stats::drop;
use tracing::warn;

use crate::datapath::{InterfaceStats, ebpf::SweepReport};

/// How often one network's warning may repeat.
const EVERY: Duration = Duration::from_secs(60);

/// What was seen of one DUT interface at its last warning.
#[derive(Debug, Default)]
struct Seen {
    evicted: u64,
    refused: u64,
    warned: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct PressureWatch {
    by_ifindex: BTreeMap<u32, Seen>,
}

/// A network: its name, as the warning gives it, and its DUT interface.
pub struct NetworkName<'a> {
    pub name: &'a str,
    pub iface: &'a str,
}

impl PressureWatch {
    /// Looks at fresh counters after a sweep; warns for each network that
    /// evicted or refused flows (or is at its budget) since it last warned,
    /// once per [`EVERY`].
    pub fn observe(
        &mut self,
        networks: &[NetworkName<'_>],
        stats: &[InterfaceStats],
        sweep: &SweepReport,
        now: Instant,
    ) {
        for network in networks {
            let Some(s) = stats
                .iter()
                .find(|s| s.name.as_deref() == Some(network.iface))
            else {
                continue;
            };
            let refused = s.counters.drops[drop::TABLE_FULL] + s.counters.drops[drop::DUT_LIMIT];
            let seen = self.by_ifindex.entry(s.ifindex).or_default();
            let full = s.flow_budget > 0 && s.active_flows >= u64::from(s.flow_budget);
            let pressed = s.evictions > seen.evicted || refused > seen.refused || full;
            if !pressed || seen.warned.is_some_and(|at| now.duration_since(at) < EVERY) {
                continue;
            }
            let top = sweep
                .held
                .iter()
                .filter(|(dut, _)| dut.dut_ifindex == s.ifindex)
                .max_by_key(|(_, flows)| **flows)
                .map(|(dut, flows)| {
                    format!(
                        "{} holds {flows}",
                        Ipv4Addr::from(dut.private_addr.to_ne_bytes())
                    )
                })
                .unwrap_or_else(|| "-".to_owned());
            warn!(
                network = network.name,
                flows = s.active_flows,
                budget = s.flow_budget,
                evicted = s.evictions - seen.evicted,
                refused = refused - seen.refused,
                top_dut = %top,
                "NAT flow budget under pressure: new flows replace unanswered or closed ones (refused when only established connections are left); raise `nat_table_size` / `nat_flows_per_dut` if this is real traffic (`dutnet flows` lists them)"
            );
            *seen = Seen {
                evicted: s.evictions,
                refused,
                warned: Some(now),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use dutnet_common::{nat::PrivateKey, stats::IfaceCounters};

    use super::*;

    fn stats(active: u64, evictions: u64) -> InterfaceStats {
        InterfaceStats {
            ifindex: 7,
            name: Some("dn-dut1".to_owned()),
            counters: IfaceCounters::default(),
            active_flows: active,
            flow_budget: 100,
            evictions,
            filter: None,
            duts: Vec::new(),
        }
    }

    fn warned_at(watch: &PressureWatch) -> Option<Instant> {
        watch.by_ifindex.get(&7).and_then(|s| s.warned)
    }

    #[test]
    fn a_full_network_warns_once_a_minute_and_a_quiet_one_never() {
        let networks = [NetworkName {
            name: "dut1",
            iface: "dn-dut1",
        }];
        let mut sweep = SweepReport::default();
        sweep.held.insert(
            PrivateKey {
                dut_ifindex: 7,
                private_addr: u32::from_ne_bytes([192, 168, 100, 10]),
            },
            90,
        );
        let mut watch = PressureWatch::default();
        let t0 = Instant::now();
        watch.observe(&networks, &[stats(10, 0)], &sweep, t0);
        assert_eq!(warned_at(&watch), None, "a quiet network");
        watch.observe(&networks, &[stats(100, 5)], &sweep, t0);
        assert_eq!(warned_at(&watch), Some(t0));
        let t1 = t0 + Duration::from_secs(30);
        watch.observe(&networks, &[stats(100, 50)], &sweep, t1);
        assert_eq!(warned_at(&watch), Some(t0), "rate-limited");
        let t2 = t0 + Duration::from_secs(61);
        watch.observe(&networks, &[stats(100, 80)], &sweep, t2);
        assert_eq!(warned_at(&watch), Some(t2));
    }
}
