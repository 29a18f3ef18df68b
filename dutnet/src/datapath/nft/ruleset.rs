//! The text of dutnet's fallback table (pure: tested without nft).
use std::{fmt::Write as _, ops::RangeInclusive};

use ipnet::Ipv4Net;

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
}

/// The whole table: `nft -f` input that creates it from nothing (the caller
/// deletes any previous one in the same transaction). `ports` is the range
/// the kernel's masquerade translates into, disjoint from the fast path's.
#[must_use]
pub fn ruleset(networks: &[FallbackNetwork], ports: &RangeInclusive<u16>) -> String {
    let mut forward = String::new();
    let mut nat = String::new();
    for n in networks {
        let dut = quote(&n.dut_interface);
        let comment = quote(&format!("dutnet network {}", n.name));
        if let Some(upstream) = &n.upstream_interface {
            let up = quote(upstream);
            let _ = writeln!(
                forward,
                "    iifname {dut} oifname {up} accept comment {comment}"
            );
            let _ = writeln!(
                forward,
                "    oifname {dut} ct state established,related accept comment {comment}"
            );
            let subnet = n.subnet.trunc();
            let _ = writeln!(
                nat,
                "    oifname {up} ip saddr {subnet} meta l4proto {{ tcp, udp }} masquerade to :{}-{} comment {comment}",
                ports.start(),
                ports.end()
            );
            let _ = writeln!(
                nat,
                "    oifname {up} ip saddr {subnet} masquerade comment {comment}"
            );
        }
        // Whatever was not accepted above crosses the isolation: a new
        // connection towards a DUT, or a DUT reaching past its upstream.
        let _ = writeln!(forward, "    oifname {dut} counter drop comment {comment}");
        let _ = writeln!(forward, "    iifname {dut} counter drop comment {comment}");
    }
    format!(
        "table {TABLE} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{forward}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{nat}  }}\n}}\n"
    )
}

/// An nft string literal. Interface and network names are validated by the
/// config (no quotes), this only guards the syntax.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace(['"', '\\', '\n'], "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, dut: &str, upstream: Option<&str>) -> FallbackNetwork {
        FallbackNetwork {
            name: name.to_owned(),
            dut_interface: dut.to_owned(),
            subnet: "192.168.100.0/24".parse().unwrap(),
            upstream_interface: upstream.map(str::to_owned),
        }
    }

    #[test]
    fn a_masqueraded_network_forwards_outwards_and_masquerades_in_the_fallback_range() {
        let text = ruleset(&[net("a", "dn-dut1", Some("dn-up"))], &(64512..=65535));
        assert!(
            text.contains(r#"iifname "dn-dut1" oifname "dn-up" accept"#),
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
        let drop = text.find("counter drop").unwrap();
        assert!(accept < drop, "{text}");
    }

    #[test]
    fn a_network_without_nat_forwards_nothing() {
        let text = ruleset(&[net("iso", "dn-dut2", None)], &(64512..=65535));
        assert!(!text.contains("masquerade"), "{text}");
        assert!(text.contains(r#"oifname "dn-dut2" counter drop"#), "{text}");
        assert!(text.contains(r#"iifname "dn-dut2" counter drop"#), "{text}");
    }

    #[test]
    fn names_cannot_break_out_of_their_string() {
        assert_eq!(quote("a\"b"), "\"a_b\"");
    }
}
