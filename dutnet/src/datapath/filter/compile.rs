//! One direction's rules as the fast path's tables (see
//! `dutnet_common::filter`): a cell per distinct rule prefix, holding the
//! first rule that matches there for each protocol, and the cell's named
//! ports. Pure, and tested against [`DirectionFilter::judge`].
use std::collections::BTreeSet;

use dutnet_common::filter::{FilterDecision, POLICY, action};
use ipnet::Ipv4Net;

use super::{Action, Decider, DirectionFilter, Protocol, Rule};

/// One cell: the addresses whose longest containing rule prefix is `prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub prefix: Ipv4Net,
    pub tcp: FilterDecision,
    pub udp: FilterDecision,
    pub other: FilterDecision,
    /// (protocol, port in host order, decision) for the ports the cell's
    /// rules name, where the decision differs from the protocol's.
    pub ports: Vec<(Protocol, u16, FilterDecision)>,
}

/// The cells of `filter`, 0.0.0.0/0 always among them.
#[must_use]
pub fn cells(filter: &DirectionFilter) -> Vec<Cell> {
    let any = Ipv4Net::default();
    let prefixes: BTreeSet<Ipv4Net> = filter
        .rules
        .iter()
        .filter_map(|r| r.peer.map(|n| n.trunc()))
        .chain([any])
        .collect();
    prefixes
        .into_iter()
        .map(|prefix| {
            // The rules that match somewhere in the cell match everywhere
            // in it: those whose prefix contains the cell's.
            let here: Vec<(usize, &Rule)> = filter
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.peer.is_none_or(|n| n.trunc().contains(&prefix)))
                .collect();
            let first = |protocol: Option<Protocol>, port: Option<u16>| {
                here.iter()
                    .find(|(_, r)| {
                        r.protocol.is_none()
                            || (r.protocol == protocol && r.port.is_none_or(|p| Some(p) == port))
                    })
                    .map_or(decision(filter.policy, Decider::Policy), |(i, r)| {
                        decision(r.action, Decider::Rule(*i))
                    })
            };
            let tcp = first(Some(Protocol::Tcp), None);
            let udp = first(Some(Protocol::Udp), None);
            let named: BTreeSet<(Protocol, u16)> = here
                .iter()
                .filter_map(|(_, r)| Some((r.protocol?, r.port?)))
                .collect();
            let ports = named
                .into_iter()
                .filter_map(|(protocol, port)| {
                    let d = first(Some(protocol), Some(port));
                    let default = if protocol == Protocol::Tcp { tcp } else { udp };
                    (d != default).then_some((protocol, port, d))
                })
                .collect();
            Cell {
                prefix,
                tcp,
                udp,
                other: first(None, None),
                ports,
            }
        })
        .collect()
}

fn decision(a: Action, by: Decider) -> FilterDecision {
    FilterDecision {
        action: match a {
            Action::Accept => action::ACCEPT,
            Action::Drop => action::DROP,
        },
        _pad: 0,
        rule: match by {
            // Rules are at most MAX_RULES (config), below POLICY.
            Decider::Rule(i) => u16::try_from(i).unwrap_or(POLICY),
            Decider::Policy => POLICY,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use dutnet_common::nat::protocol;

    use super::*;
    use crate::datapath::filter::Opening;

    /// What the programs do with the cells: the longest prefix containing
    /// the address, then its named port or its protocol's decision.
    fn lookup(cells: &[Cell], packet: &Opening) -> FilterDecision {
        let cell = cells
            .iter()
            .filter(|c| c.prefix.contains(&packet.peer))
            .max_by_key(|c| c.prefix.prefix_len())
            .expect("0.0.0.0/0 is always a cell");
        let named = |p: Protocol| {
            cell.ports
                .iter()
                .find(|(q, port, _)| *q == p && *port == packet.port)
                .map(|(_, _, d)| *d)
        };
        match packet.protocol {
            protocol::TCP => named(Protocol::Tcp).unwrap_or(cell.tcp),
            protocol::UDP => named(Protocol::Udp).unwrap_or(cell.udp),
            _ => cell.other,
        }
    }

    fn rule(
        action: Action,
        peer: Option<&str>,
        protocol: Option<Protocol>,
        port: Option<u16>,
    ) -> Rule {
        Rule {
            action,
            peer: peer.map(|p| p.parse().unwrap()),
            protocol,
            port,
        }
    }

    /// A small xorshift, so the test needs no crate and repeats exactly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn first_match_in_order_then_policy() {
        let f = DirectionFilter {
            policy: Action::Drop,
            rules: vec![
                rule(
                    Action::Drop,
                    Some("10.0.0.5/32"),
                    Some(Protocol::Tcp),
                    Some(22),
                ),
                rule(Action::Accept, Some("10.0.0.0/8"), None, None),
                rule(Action::Accept, None, Some(Protocol::Udp), Some(53)),
            ],
        };
        let cells = cells(&f);
        let at = |peer: [u8; 4], protocol, port| Opening {
            peer: Ipv4Addr::from(peer),
            protocol,
            port,
        };
        for packet in [
            at([10, 0, 0, 5], protocol::TCP, 22),
            at([10, 0, 0, 5], protocol::TCP, 80),
            at([10, 0, 0, 6], protocol::TCP, 22),
            at([192, 0, 2, 1], protocol::UDP, 53),
            at([192, 0, 2, 1], protocol::UDP, 54),
            at([192, 0, 2, 1], protocol::ICMP, 0),
        ] {
            let (a, by) = f.judge(&packet);
            assert_eq!(lookup(&cells, &packet), decision(a, by), "{packet:?}");
        }
        assert_eq!(
            f.judge(&at([10, 0, 0, 5], protocol::TCP, 22)).1,
            Decider::Rule(0)
        );
        assert_eq!(
            f.judge(&at([10, 0, 0, 5], protocol::TCP, 80)).1,
            Decider::Rule(1)
        );
        assert_eq!(
            f.judge(&at([192, 0, 2, 1], protocol::ICMP, 0)).1,
            Decider::Policy
        );
    }

    /// Random rule lists over a few nested and disjoint prefixes and ports:
    /// the tables decide exactly as the rules read in order, rule number
    /// included (the counters depend on it).
    #[test]
    fn the_tables_decide_as_the_rules_in_order() {
        let prefixes = [
            None,
            Some("10.0.0.0/8"),
            Some("10.1.0.0/16"),
            Some("10.1.2.0/24"),
            Some("10.1.2.3/32"),
            Some("192.0.2.0/24"),
            Some("10.200.0.0/16"),
        ];
        let peers = [
            [10, 1, 2, 3],
            [10, 1, 2, 4],
            [10, 1, 9, 9],
            [10, 9, 9, 9],
            [192, 0, 2, 7],
            [10, 200, 1, 1],
            [8, 8, 8, 8],
        ];
        let ports = [22, 53, 80, 443];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let n = rng.below(8) as usize;
            let rules = (0..n)
                .map(|_| {
                    let protocol = match rng.below(3) {
                        0 => None,
                        1 => Some(Protocol::Tcp),
                        _ => Some(Protocol::Udp),
                    };
                    let port = protocol
                        .filter(|_| rng.below(2) == 0)
                        .map(|_| ports[rng.below(ports.len() as u64) as usize]);
                    let action = if rng.below(2) == 0 {
                        Action::Accept
                    } else {
                        Action::Drop
                    };
                    rule(
                        action,
                        prefixes[rng.below(prefixes.len() as u64) as usize],
                        protocol,
                        port,
                    )
                })
                .collect();
            let policy = if rng.below(2) == 0 {
                Action::Accept
            } else {
                Action::Drop
            };
            let f = DirectionFilter { policy, rules };
            let cells = cells(&f);
            for peer in peers {
                for protocol in [protocol::TCP, protocol::UDP, protocol::ICMP] {
                    for port in [22, 53, 80, 443, 8080] {
                        let packet = Opening {
                            peer: Ipv4Addr::from(peer),
                            protocol,
                            port: if protocol == protocol::ICMP { 0 } else { port },
                        };
                        let (a, by) = f.judge(&packet);
                        assert_eq!(lookup(&cells, &packet), decision(a, by), "{f:?} {packet:?}");
                    }
                }
            }
        }
    }
}
