//! What a capture may see, as a pcap-filter(7) expression, and the check of
//! the user's expression (compiled by libpcap, the same compiler tcpdump
//! uses, so an expression means what it means there).
use std::net::{Ipv4Addr, SocketAddrV4};

/// An expression no packet matches (none is shorter than a byte): the
/// upstream scope of a DUT that has no flow yet.
pub const NOTHING: &str = "less 1";

/// One translated flow as the upstream NIC carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamFlow {
    /// IANA protocol number: 1 (ICMP echo), 6, 17.
    pub protocol: u8,
    /// The address and port (echo identifier) the far end sees.
    pub translated: SocketAddrV4,
    pub remote: SocketAddrV4,
}

/// `scope` and the user's `filter`, both applied; empty for every packet.
#[must_use]
pub fn combine(scope: Option<&str>, filter: Option<&str>) -> String {
    let filter = filter.map(str::trim).filter(|f| !f.is_empty());
    match (scope, filter) {
        (Some(s), Some(f)) => format!("({s}) and ({f})"),
        (Some(s), None) => s.to_owned(),
        (None, Some(f)) => f.to_owned(),
        (None, None) => String::new(),
    }
}

/// Any of `hosts`.
#[must_use]
pub fn hosts(hosts: &[Ipv4Addr]) -> Option<String> {
    if hosts.is_empty() {
        return None;
    }
    let terms: Vec<String> = hosts.iter().map(|h| format!("host {h}")).collect();
    Some(terms.join(" or "))
}

/// The packets of `flows`, both ways; [`NOTHING`] without a flow.
#[must_use]
pub fn flows(flows: &[UpstreamFlow]) -> String {
    let terms: Vec<String> = flows
        .iter()
        .filter_map(|f| {
            let (t, r) = (f.translated, f.remote);
            match f.protocol {
                // The echo identifier stands for the port; replies carry it too.
                1 => Some(format!(
                    "(icmp and host {} and host {} and icmp[4:2] = {})",
                    t.ip(),
                    r.ip(),
                    t.port()
                )),
                6 | 17 => {
                    let proto = if f.protocol == 6 { "tcp" } else { "udp" };
                    Some(format!(
                        "({proto} and ((src host {ta} and src port {tp} and dst host {ra} and dst port {rp}) or (src host {ra} and src port {rp} and dst host {ta} and dst port {tp})))",
                        ta = t.ip(),
                        tp = t.port(),
                        ra = r.ip(),
                        rp = r.port()
                    ))
                }
                _ => None,
            }
        })
        .collect();
    if terms.is_empty() {
        NOTHING.to_owned()
    } else {
        terms.join(" or ")
    }
}

/// Compiles `expression` for Ethernet (what DUT and upstream NICs carry);
/// the error is libpcap's.
pub fn check(expression: &str) -> Result<(), String> {
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
    dead.compile(expression, true)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_and_filter_are_both_applied() {
        assert_eq!(combine(None, None), "");
        assert_eq!(combine(None, Some(" icmp ")), "icmp");
        assert_eq!(combine(Some("host 1.2.3.4"), Some("")), "host 1.2.3.4");
        assert_eq!(
            combine(Some("host 1.2.3.4"), Some("tcp or udp")),
            "(host 1.2.3.4) and (tcp or udp)"
        );
    }

    #[test]
    fn flow_filters_compile_and_an_empty_scope_matches_nothing() {
        let a = Ipv4Addr::new(10, 0, 0, 2);
        let r = Ipv4Addr::new(10, 0, 0, 9);
        let expr = flows(&[
            UpstreamFlow {
                protocol: 1,
                translated: SocketAddrV4::new(a, 77),
                remote: SocketAddrV4::new(r, 0),
            },
            UpstreamFlow {
                protocol: 6,
                translated: SocketAddrV4::new(a, 40000),
                remote: SocketAddrV4::new(r, 80),
            },
        ]);
        assert!(expr.contains("icmp[4:2] = 77"), "{expr}");
        check(&expr).unwrap();
        assert_eq!(flows(&[]), NOTHING);
        check(NOTHING).unwrap();
        check(&hosts(&[a, r]).unwrap()).unwrap();
        assert_eq!(hosts(&[]), None);
    }

    #[test]
    fn a_bad_expression_is_refused_by_libpcap() {
        let e = check("icmp and and").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
    }
}
