//! The names dutnet answers itself: custom records (`dns_entries`) and DUT
//! hostnames (static addresses and DHCP leases), forward and reverse.
//!
//! Names are kept normalised (ASCII lowercase, no trailing dot) so lookups
//! are case-insensitive as RFC 4343 requires. The zone is a plain value: the
//! server swaps in a new one on every change, so a query sees either the old
//! or the new set, never half of an update.

use std::net::Ipv4Addr;

use super::DnsError;

/// Longest presentation-format name (RFC 1035 §2.3.4: 255 octets on the
/// wire, which is 253 characters without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// RFC 1035 §2.3.4.
const MAX_LABEL_LEN: usize = 63;

/// What the zone knows about a query name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not ours: forward it.
    NotLocal,
    /// Ours, with these IPv4 addresses (never empty).
    Addresses(Vec<Ipv4Addr>),
    /// A reverse name (`in-addr.arpa`) of one of our addresses, with the
    /// name to return as PTR.
    Pointer(String),
}

/// The local names of one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    domain: Option<String>,
    /// Custom records in insertion order; names are unique.
    entries: Vec<(String, Ipv4Addr)>,
    static_hosts: Vec<(String, Ipv4Addr)>,
    dynamic_hosts: Vec<(String, Ipv4Addr)>,
}

impl Zone {
    /// An empty zone; DUT hostnames also answer under `domain` when set.
    pub fn new(domain: Option<&str>) -> Result<Self, DnsError> {
        let domain = domain.map(normalize_name).transpose()?;
        Ok(Self {
            domain,
            ..Self::default()
        })
    }

    /// Adds a custom record, replacing the address of an existing one with
    /// the same name (re-adding is how a user moves a name).
    pub fn upsert_entry(&mut self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        let name = normalize_name(name)?;
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = ip,
            None => self.entries.push((name, ip)),
        }
        Ok(())
    }

    /// Removes a custom record.
    pub fn remove_entry(&mut self, name: &str) -> Result<(), DnsError> {
        let normalized = normalize_name(name)?;
        let before = self.entries.len();
        self.entries.retain(|(n, _)| *n != normalized);
        if self.entries.len() == before {
            return Err(DnsError::NotFound {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// The custom records, normalised names, in insertion order.
    pub fn entries(&self) -> Vec<(String, Ipv4Addr)> {
        self.entries.clone()
    }

    /// Replaces the static DUT hostnames; returns the names it rejected.
    pub fn set_static_hosts(&mut self, hosts: Vec<(String, Ipv4Addr)>) -> Vec<String> {
        let (valid, rejected) = normalize_hosts(hosts);
        self.static_hosts = valid;
        rejected
    }

    /// Replaces the hostnames learnt from DHCP leases; returns the names it
    /// rejected (a DHCP client can send anything as its hostname).
    pub fn set_dynamic_hosts(&mut self, hosts: Vec<(String, Ipv4Addr)>) -> Vec<String> {
        let (valid, rejected) = normalize_hosts(hosts);
        self.dynamic_hosts = valid;
        rejected
    }

    /// Looks a query name up (any case, with or without trailing dot).
    ///
    /// Precedence: custom records, then static hosts, then DHCP hosts, so a
    /// DUT cannot take over a name the lab configured.
    pub fn lookup(&self, qname: &str) -> Lookup {
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ip) = parse_reverse_v4(&qname) {
            return match self.reverse(ip) {
                Some(name) => Lookup::Pointer(name),
                None => Lookup::NotLocal,
            };
        }
        let exact: Vec<Ipv4Addr> = self
            .entries
            .iter()
            .filter(|(n, _)| *n == qname)
            .map(|(_, ip)| *ip)
            .collect();
        if !exact.is_empty() {
            return Lookup::Addresses(exact);
        }
        for hosts in [&self.static_hosts, &self.dynamic_hosts] {
            let mut found: Vec<Ipv4Addr> = Vec::new();
            for (host, ip) in hosts {
                if self.host_matches(host, &qname) && !found.contains(ip) {
                    found.push(*ip);
                }
            }
            if !found.is_empty() {
                return Lookup::Addresses(found);
            }
        }
        Lookup::NotLocal
    }

    /// The name to return for a PTR query on `ip`, same precedence as
    /// [`Zone::lookup`]; DUT hostnames come back qualified with the domain.
    fn reverse(&self, ip: Ipv4Addr) -> Option<String> {
        if let Some((name, _)) = self.entries.iter().find(|(_, a)| *a == ip) {
            return Some(name.clone());
        }
        self.static_hosts
            .iter()
            .chain(&self.dynamic_hosts)
            .find(|(_, a)| *a == ip)
            .map(|(host, _)| match &self.domain {
                Some(domain) => format!("{host}.{domain}"),
                None => host.clone(),
            })
    }

    fn host_matches(&self, host: &str, qname: &str) -> bool {
        if host == qname {
            return true;
        }
        match &self.domain {
            Some(domain) => qname
                .strip_suffix(domain.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|rest| rest == host),
            None => false,
        }
    }
}

/// Validates and normalises a name given by the config, the control API or
/// a DHCP client: letters, digits, `-`, `_` and dots between non-empty
/// labels (the set jumpstarter's `dns_entries` accepted), any case, one
/// optional trailing dot.
pub fn normalize_name(name: &str) -> Result<String, DnsError> {
    let invalid = |reason: &'static str| DnsError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(invalid("empty name"));
    }
    if trimmed.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 253 characters"));
    }
    if !trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            "only letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label (leading or doubled dot)"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(invalid("a label is longer than 63 characters"));
        }
    }
    Ok(trimmed.to_ascii_lowercase())
}

fn normalize_hosts(hosts: Vec<(String, Ipv4Addr)>) -> (Vec<(String, Ipv4Addr)>, Vec<String>) {
    let mut valid = Vec::with_capacity(hosts.len());
    let mut rejected = Vec::new();
    for (name, ip) in hosts {
        match normalize_name(&name) {
            Ok(n) => valid.push((n, ip)),
            Err(_) => rejected.push(name),
        }
    }
    (valid, rejected)
}

/// `d.c.b.a.in-addr.arpa` (already lowercase, no trailing dot) -> a.b.c.d.
/// Anything else, including partial names such as `c.b.a.in-addr.arpa`, is
/// not a host address.
fn parse_reverse_v4(qname: &str) -> Option<Ipv4Addr> {
    let rest = qname.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('.');
    for slot in octets.iter_mut().rev() {
        let part = parts.next()?;
        // Reject "01" and "+1": only the canonical spelling names the address.
        if part.is_empty() || (part.len() > 1 && part.starts_with('0')) {
            return None;
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP1: Ipv4Addr = Ipv4Addr::new(10, 26, 28, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
    const IP3: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);

    fn zone() -> Zone {
        let mut z = Zone::new(Some("lab.local")).unwrap();
        z.upsert_entry("Controller.Lab.Local", IP1).unwrap();
        z.set_static_hosts(vec![("sa8775p".into(), IP2)]);
        z.set_dynamic_hosts(vec![("rpi4".into(), IP3)]);
        z
    }

    #[test]
    fn custom_entries_match_case_insensitively_with_or_without_dot() {
        let z = zone();
        for q in [
            "controller.lab.local",
            "CONTROLLER.LAB.LOCAL.",
            "cOnTrOlLeR.lab.local",
        ] {
            assert_eq!(z.lookup(q), Lookup::Addresses(vec![IP1]), "{q}");
        }
        assert_eq!(z.lookup("other.lab.local"), Lookup::NotLocal);
        assert_eq!(z.lookup("controller"), Lookup::NotLocal);
    }

    #[test]
    fn hosts_answer_bare_and_under_domain() {
        let z = zone();
        assert_eq!(z.lookup("sa8775p"), Lookup::Addresses(vec![IP2]));
        assert_eq!(z.lookup("SA8775P.lab.local."), Lookup::Addresses(vec![IP2]));
        assert_eq!(z.lookup("rpi4.lab.local"), Lookup::Addresses(vec![IP3]));
        assert_eq!(z.lookup("rpi4.other.local"), Lookup::NotLocal);
        assert_eq!(z.lookup("xrpi4.lab.local"), Lookup::NotLocal);
        assert_eq!(z.lookup("lab.local"), Lookup::NotLocal);
    }

    #[test]
    fn without_domain_hosts_answer_bare_only() {
        let mut z = Zone::new(None).unwrap();
        z.set_static_hosts(vec![("dut".into(), IP2)]);
        assert_eq!(z.lookup("dut"), Lookup::Addresses(vec![IP2]));
        assert_eq!(z.lookup("dut.lab.local"), Lookup::NotLocal);
        assert_eq!(
            z.lookup("10.100.168.192.in-addr.arpa."),
            Lookup::Pointer("dut".into())
        );
    }

    #[test]
    fn precedence_custom_then_static_then_dynamic() {
        let mut z = zone();
        z.set_dynamic_hosts(vec![("sa8775p".into(), IP3), ("new".into(), IP3)]);
        assert_eq!(z.lookup("sa8775p"), Lookup::Addresses(vec![IP2]));
        z.upsert_entry("sa8775p", IP1).unwrap();
        assert_eq!(z.lookup("sa8775p"), Lookup::Addresses(vec![IP1]));
        assert_eq!(z.lookup("new"), Lookup::Addresses(vec![IP3]));
    }

    #[test]
    fn same_hostname_on_two_leases_returns_both_once() {
        let mut z = Zone::new(None).unwrap();
        z.set_dynamic_hosts(vec![
            ("dut".into(), IP2),
            ("dut".into(), IP3),
            ("DUT".into(), IP2),
        ]);
        assert_eq!(z.lookup("dut"), Lookup::Addresses(vec![IP2, IP3]));
    }

    #[test]
    fn reverse_names() {
        let z = zone();
        assert_eq!(
            z.lookup("1.28.26.10.in-addr.arpa"),
            Lookup::Pointer("controller.lab.local".into())
        );
        assert_eq!(
            z.lookup("10.100.168.192.IN-ADDR.ARPA."),
            Lookup::Pointer("sa8775p.lab.local".into())
        );
        assert_eq!(
            z.lookup("11.100.168.192.in-addr.arpa"),
            Lookup::Pointer("rpi4.lab.local".into())
        );
        for q in [
            "12.100.168.192.in-addr.arpa",
            "100.168.192.in-addr.arpa",
            "010.100.168.192.in-addr.arpa",
            "1.10.100.168.192.in-addr.arpa",
            "256.100.168.192.in-addr.arpa",
            "in-addr.arpa",
            "x.100.168.192.in-addr.arpa",
        ] {
            assert_eq!(z.lookup(q), Lookup::NotLocal, "{q}");
        }
    }

    #[test]
    fn upsert_replaces_and_remove_reports_missing() {
        let mut z = zone();
        z.upsert_entry("controller.lab.local.", IP2).unwrap();
        assert_eq!(z.entries(), vec![("controller.lab.local".into(), IP2)]);
        z.remove_entry("CONTROLLER.lab.local").unwrap();
        assert!(z.entries().is_empty());
        assert!(matches!(
            z.remove_entry("controller.lab.local"),
            Err(DnsError::NotFound { name }) if name == "controller.lab.local"
        ));
    }

    #[test]
    fn invalid_names_are_rejected() {
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a b",
            "a/b",
            "é.local",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_name("My_Host-1.Lab.").unwrap(), "my_host-1.lab");
    }

    #[test]
    fn invalid_hosts_are_skipped_and_reported() {
        let mut z = Zone::new(None).unwrap();
        let rejected = z.set_dynamic_hosts(vec![("ok".into(), IP2), ("bad name".into(), IP3)]);
        assert_eq!(rejected, vec!["bad name".to_string()]);
        assert_eq!(z.lookup("ok"), Lookup::Addresses(vec![IP2]));
    }
}
