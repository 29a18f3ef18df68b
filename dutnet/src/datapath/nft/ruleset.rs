//! The text of dutnet's fallback table (pure: tested without nft).
use std::{fmt::Write as _, net::Ipv4Addr, ops::RangeInclusive};

use ipnet::Ipv4Net;

use crate::datapath::{
    PublicAddress,
    filter::{Direction, DirectionFilter, Filter, Rule},
};

/// The family and name of dutnet's table.
pub const TABLE: &str = "ip dutnet";

/// What the fallback rules need to know about one DUT network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackNetwork {
    pub name: String,
    pub dut_interface: String,
    pub subnet: Ipv4Net,
    /// `None`: NAT disabled, nothing is forwarded.
    pub upstream_interface: Option<String>,
    /// 1:1 mappings.
    pub public: Vec<PublicAddress>,
    /// The VLAN sub-interfaces (`vlan_id`) its 1:1 DUTs' policy routes
    /// leave by: treated as the upstream.
    pub vlan_interfaces: Vec<String>,
    /// What its DUTs may open and be opened (`None`: no filter).
    pub filter: Option<Filter>,
    /// `local_ntp`: the gateway, where the DUTs' NTP to any address goes.
    pub ntp_redirect: Option<Ipv4Addr>,
}

/// The whole table: `nft -f` input that creates it from nothing (the caller
/// deletes any previous one in the same transaction). `ports` is the range
/// the kernel's masquerade translates TCP and UDP into, disjoint from the
/// fast path's; `None` (no fast path at all) lets the kernel keep the DUT's
/// source port when it is free.
#[must_use]
pub fn ruleset(networks: &[FallbackNetwork], ports: Option<&RangeInclusive<u16>>) -> String {
    // Every network's accepts come before any network's drops: a DUT reaching
    // another DUT's public address crosses both networks.
    let mut accepts = String::new();
    let mut drops = String::new();
    let mut snat = String::new();
    let mut dnat = String::new();
    let mut guard = String::new();
    let mut ntp = String::new();
    let mut zones = String::new();
    let mut zones_out = String::new();
    let dut_subnets = networks
        .iter()
        .map(|n| n.subnet.trunc().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    for (i, n) in networks.iter().enumerate() {
        let dut = quote(&n.dut_interface);
        let comment = quote(&format!("dutnet network {}", n.name));
        if let Some(gateway) = n.ntp_redirect {
            // A conntrack zone per DUT NIC keeps two DUTs with the same
            // address on NICs with the same subnet apart: without it, the
            // second one's request would match the first one's entry and
            // take its translation (to the other NIC's gateway). The
            // exporter's answers leave through the NIC (its socket is bound
            // there) and join the zone on the way out.
            let zone = i + 1;
            let _ = writeln!(
                zones,
                "    iifname {dut} udp dport 123 ct zone set {zone} comment {comment}"
            );
            let _ = writeln!(
                zones_out,
                "    oifname {dut} udp sport 123 ct zone set {zone} comment {comment}"
            );
            let _ = writeln!(
                ntp,
                "    iifname {dut} udp dport 123 dnat to {gateway}:123 comment {comment}"
            );
        }
        if let Some(upstream) = &n.upstream_interface {
            // The upstream, and the VLAN sub-interfaces 1:1 DUTs are
            // routed to by policy: what may leave, what is translated, what
            // the leak guard watches.
            let up = if n.vlan_interfaces.is_empty() {
                quote(upstream)
            } else {
                let names: Vec<String> = std::iter::once(upstream)
                    .chain(&n.vlan_interfaces)
                    .map(|i| quote(i))
                    .collect();
                format!("{{ {} }}", names.join(", "))
            };
            let filter = n.filter.clone().unwrap_or_default();
            let outwards = format!("iifname {dut} oifname {up} ip saddr {}", n.subnet.trunc());
            match &filter.egress {
                // From the DUT subnet only: a spoofed source falls to the
                // isolation drop below.
                None => {
                    let _ = writeln!(accepts, "    {outwards} accept comment {comment}");
                }
                Some(egress) => {
                    // Answers to what the ingress let in are not new flows.
                    let _ = writeln!(
                        accepts,
                        "    iifname {dut} oifname {up} ct state established,related accept comment {comment}"
                    );
                    judged(&mut accepts, &outwards, &n.name, Direction::Egress, egress);
                }
            }
            let _ = writeln!(
                accepts,
                "    oifname {dut} ct state established,related accept comment {comment}"
            );
            for p in &n.public {
                let _ = writeln!(
                    snat,
                    "    oifname {up} ip saddr {} snat to {} comment {comment}",
                    p.private, p.public
                );
                let _ = writeln!(
                    dnat,
                    "    ip daddr {} dnat to {} comment {comment}",
                    p.public, p.private
                );
            }
            if !n.public.is_empty() {
                // Connections to a public address: from the LAN, from the
                // exporter itself (hairpin), from another DUT. The DUT
                // sees a LAN host as itself (as on the fast path); the
                // exporter and DUTs are masqueraded behind the gateway, or
                // the DUT would answer them directly (same subnet) or the
                // reply would miss the translation back.
                match &filter.ingress {
                    None => {
                        let _ = writeln!(
                            accepts,
                            "    oifname {dut} ct status dnat accept comment {comment}"
                        );
                    }
                    Some(ingress) => {
                        let inwards = format!("oifname {dut} ct status dnat");
                        judged(&mut accepts, &inwards, &n.name, Direction::Ingress, ingress);
                    }
                }
                let _ = writeln!(
                    snat,
                    "    oifname {dut} ct status dnat fib saddr type local masquerade comment {comment}"
                );
                let _ = writeln!(
                    snat,
                    "    oifname {dut} ct status dnat ip saddr {{ {dut_subnets} }} masquerade comment {comment}"
                );
            }
            let subnet = n.subnet.trunc();
            if let Some(ports) = ports {
                let _ = writeln!(
                    snat,
                    "    oifname {up} ip saddr {subnet} meta l4proto {{ tcp, udp }} masquerade to :{}-{} comment {comment}",
                    ports.start(),
                    ports.end()
                );
            }
            let _ = writeln!(
                snat,
                "    oifname {up} ip saddr {subnet} masquerade comment {comment}"
            );
            // The last word, after every translation: a DUT-private source
            // never leaves upstream (what conntrack could not translate,
            // such as an ICMP error about no connection or a malformed
            // SCTP packet, is `invalid` and skips the NAT chains).
            let _ = writeln!(
                guard,
                "    oifname {up} ip saddr {subnet} counter drop comment {comment}"
            );
        }
        // Whatever was not accepted crosses the isolation: a new connection
        // towards a DUT, or a DUT reaching past its upstream.
        let _ = writeln!(drops, "    oifname {dut} counter drop comment {comment}");
        let _ = writeln!(drops, "    iifname {dut} counter drop comment {comment}");
    }
    format!(
        "table {TABLE} {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
{accepts}{drops}  }}
  chain ntp_zone {{
    type filter hook prerouting priority raw; policy accept;
{zones}  }}
  chain ntp_zone_out {{
    type filter hook output priority raw; policy accept;
{zones_out}  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
{ntp}{dnat}  }}
  chain output {{
    type nat hook output priority -100; policy accept;
{dnat}  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{snat}  }}
  chain leak_guard {{
    type filter hook postrouting priority srcnat + 1; policy accept;
{guard}  }}
}}
"
    )
}

/// `nft list table` output with only the rules of `networks`: every rule of
/// a network carries a `dutnet network NAME` comment (`... filter ...` for
/// its filter's); the table's and chains' own lines stay.
#[must_use]
pub fn rules_of(listing: &str, networks: &[&str]) -> String {
    const TAG: &str = "comment \"dutnet network ";
    let network_of = |line: &str| -> Option<String> {
        let rest = &line[line.find(TAG)? + TAG.len()..];
        let name = rest.split(['"', ' ']).next()?;
        Some(name.to_owned())
    };
    listing
        .lines()
        .filter(|line| network_of(line).is_none_or(|n| networks.contains(&n.as_str())))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The comment of a filter rule's (or policy's) nft rule, by which its
/// counter is read back.
#[must_use]
pub fn filter_comment(network: &str, which: Direction, rule: Option<usize>) -> String {
    match rule {
        Some(i) => format!("dutnet network {network} filter {} rule {i}", which.key()),
        None => format!("dutnet network {network} filter {} policy", which.key()),
    }
}

/// A direction's rules in order, then its policy, each with a counter,
/// matching packets `scope` selects (the new flows of that direction: the
/// established ones were accepted before).
fn judged(out: &mut String, scope: &str, network: &str, which: Direction, f: &DirectionFilter) {
    let peer = match which {
        Direction::Egress => "ip daddr",
        Direction::Ingress => "ip saddr",
    };
    for (i, rule) in f.rules.iter().enumerate() {
        let Rule {
            action,
            peer: net,
            protocol,
            port,
        } = rule;
        let mut line = format!("    {scope}");
        if let Some(net) = net {
            let _ = write!(line, " {peer} {net}");
        }
        match (protocol, port) {
            (Some(p), Some(port)) => {
                let _ = write!(line, " {} dport {port}", p.key());
            }
            (Some(p), None) => {
                let _ = write!(line, " meta l4proto {}", p.key());
            }
            _ => {}
        }
        let comment = quote(&filter_comment(network, which, Some(i)));
        let _ = writeln!(out, "{line} counter {} comment {comment}", action.key());
    }
    let comment = quote(&filter_comment(network, which, None));
    let _ = writeln!(
        out,
        "    {scope} counter {} comment {comment}",
        f.policy.key()
    );
}

/// An nft string literal. Interface and network names are validated by the
/// config (no quotes), this only guards the syntax.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace(['"', '\\', '\n'], "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How an isolation drop rule reads (`oifname "dn-dut1" counter drop`),
    /// unlike the leak guard's (`ip saddr ... counter drop`).
    const ISOLATION_DROP: &str = "\" counter drop";

    fn net(name: &str, dut: &str, upstream: Option<&str>) -> FallbackNetwork {
        FallbackNetwork {
            name: name.to_owned(),
            dut_interface: dut.to_owned(),
            subnet: "192.168.100.0/24".parse().unwrap(),
            upstream_interface: upstream.map(str::to_owned),
            public: Vec::new(),
            vlan_interfaces: Vec::new(),
            filter: None,
            ntp_redirect: None,
        }
    }

    #[test]
    fn local_ntp_redirects_each_nics_ntp_to_its_gateway_in_its_own_zone() {
        let gw = Ipv4Addr::new(192, 168, 100, 1);
        let mut a = net("a", "dn-dut1", None);
        a.ntp_redirect = Some(gw);
        let mut b = net("b", "dn-dut2", Some("dn-up"));
        b.ntp_redirect = Some(gw);
        let text = ruleset(&[a, b, net("c", "dn-dut3", None)], None);
        for (dut, zone) in [("dn-dut1", 1), ("dn-dut2", 2)] {
            for rule in [
                format!(r#"iifname "{dut}" udp dport 123 ct zone set {zone} comment"#),
                format!(r#"oifname "{dut}" udp sport 123 ct zone set {zone} comment"#),
                format!(r#"iifname "{dut}" udp dport 123 dnat to 192.168.100.1:123 comment"#),
            ] {
                assert_eq!(text.matches(&rule).count(), 1, "{rule}\n{text}");
            }
        }
        assert!(!text.contains(r#""dn-dut3" udp"#), "{text}");
        // Only in prerouting: the exporter's own NTP is not redirected.
        let output = text.find("chain output").unwrap();
        assert!(text.rfind("dnat to 192.168.100.1:123").unwrap() < output);
    }

    #[test]
    fn a_masqueraded_network_forwards_outwards_and_masquerades_in_the_fallback_range() {
        let text = ruleset(
            &[net("a", "dn-dut1", Some("dn-up"))],
            Some(&(64512..=65535)),
        );
        assert!(
            text.contains(r#"iifname "dn-dut1" oifname "dn-up" ip saddr 192.168.100.0/24 accept"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ip saddr 192.168.100.0/24 meta l4proto { tcp, udp } masquerade to :64512-65535"#
            ),
            "{text}"
        );
        // The accepts come before the isolation drops.
        let accept = text.find("accept comment").unwrap();
        let drop = text.find(ISOLATION_DROP).unwrap();
        assert!(accept < drop, "{text}");
    }

    #[test]
    fn an_untranslated_dut_source_is_dropped_after_the_nat_chains() {
        let text = ruleset(&[net("a", "dn-dut1", Some("dn-up"))], None);
        let guard = text
            .find("priority srcnat + 1")
            .unwrap_or_else(|| panic!("{text}"));
        let rule = text
            .find(r#"oifname "dn-up" ip saddr 192.168.100.0/24 counter drop"#)
            .unwrap_or_else(|| panic!("{text}"));
        assert!(guard < rule, "{text}");
    }

    #[test]
    fn without_a_fast_path_masquerade_keeps_the_kernels_port_choice() {
        let text = ruleset(&[net("a", "dn-dut1", Some("dn-up"))], None);
        assert!(!text.contains("masquerade to"), "{text}");
        assert!(
            text.contains(r#"oifname "dn-up" ip saddr 192.168.100.0/24 masquerade comment"#),
            "{text}"
        );
    }

    #[test]
    fn a_vlan_sub_interface_is_treated_as_the_upstream() {
        let mut n = net("a", "dn-dut1", Some("dn-up"));
        n.public.push(PublicAddress {
            vlan_id: Some(905),
            ..PublicAddress::new(
                "192.168.100.10".parse().unwrap(),
                "10.9.5.20".parse().unwrap(),
            )
        });
        n.vlan_interfaces.push("dn-up.905".to_owned());
        let text = ruleset(&[n], Some(&(64512..=65535)));
        let up = r#"oifname { "dn-up", "dn-up.905" }"#;
        for rule in [
            format!("iifname \"dn-dut1\" {up} ip saddr 192.168.100.0/24 accept"),
            format!("{up} ip saddr 192.168.100.10 snat to 10.9.5.20"),
            format!("{up} ip saddr 192.168.100.0/24 counter drop"),
        ] {
            assert!(text.contains(&rule), "{rule} missing:\n{text}");
        }
    }

    #[test]
    fn a_network_without_nat_forwards_nothing() {
        let text = ruleset(&[net("iso", "dn-dut2", None)], Some(&(64512..=65535)));
        assert!(!text.contains("masquerade"), "{text}");
        assert!(text.contains(r#"oifname "dn-dut2" counter drop"#), "{text}");
        assert!(text.contains(r#"iifname "dn-dut2" counter drop"#), "{text}");
    }

    #[test]
    fn a_public_address_is_translated_both_ways_and_reachable_from_the_exporter() {
        let mut n = net("a", "dn-dut1", Some("dn-up"));
        n.public.push(PublicAddress::new(
            "192.168.100.10".parse().unwrap(),
            "10.99.0.50".parse().unwrap(),
        ));
        let text = ruleset(&[n], Some(&(64512..=65535)));
        assert_eq!(
            text.matches("ip daddr 10.99.0.50 dnat to 192.168.100.10")
                .count(),
            2,
            "{text}"
        );
        assert!(
            text.contains(r#"oifname "dn-up" ip saddr 192.168.100.10 snat to 10.99.0.50"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"oifname "dn-dut1" ct status dnat ip saddr { 192.168.100.0/24 } masquerade"#
            ),
            "hairpin from a DUT subnet is masqueraded: {text}"
        );
        assert!(
            !text.contains(r#"oifname "dn-dut1" ct status dnat masquerade"#),
            "a LAN host reaches the DUT as itself: {text}"
        );
        let snat = text.find("snat to").unwrap();
        let masquerade = text.find("masquerade to").unwrap();
        assert!(
            snat < masquerade,
            "the 1:1 rule wins over masquerade: {text}"
        );
    }

    #[test]
    fn every_accept_comes_before_any_drop() {
        let text = ruleset(
            &[
                net("a", "dn-dut1", Some("dn-up")),
                net("b", "dn-dut2", Some("dn-up")),
            ],
            Some(&(64512..=65535)),
        );
        let last_accept = text.rfind("accept comment").unwrap();
        let first_drop = text.find(ISOLATION_DROP).unwrap();
        assert!(last_accept < first_drop, "{text}");
    }

    #[test]
    fn names_cannot_break_out_of_their_string() {
        assert_eq!(quote("a\"b"), "\"a_b\"");
    }

    #[test]
    fn one_networks_rules_are_its_own_only() {
        let mut a = net("dut1", "dn-dut1", Some("dn-up"));
        a.subnet = "192.168.100.0/24".parse().unwrap();
        let mut b = net("dut10", "dn-dut10", Some("dn-up"));
        b.subnet = "192.168.110.0/24".parse().unwrap();
        let text = ruleset(&[a, b], None);
        let only = rules_of(&text, &["dut1"]);
        assert!(only.contains("dn-dut1\""), "{only}");
        assert!(!only.contains("dn-dut10"), "{only}");
        assert!(!only.contains("192.168.110.0"), "{only}");
        assert!(only.contains("chain forward {"), "{only}");
        assert_eq!(rules_of(&text, &["dut1", "dut10"]), text);
    }
}
