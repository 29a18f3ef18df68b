//! The lab's addresses and interface names, and the dutnet config text for
//! them: every test and the bench take them from here, so a lab drawn in a
//! test is the lab the config describes.
//!
//! ```text
//! dut<n>  eth0 192.168.100.10/24 ── dn-dut<n> 192.168.100.1/24  exporter
//!                                   dn-up     10.99.0.2/24   ── eth0 10.99.0.1/24  lan
//! ```
use std::{fmt::Write as _, net::Ipv4Addr};

/// The DUT subnet every lab network uses (each DUT NIC is a segment of its
/// own, so they may all share it).
pub const SUBNET: &str = "192.168.100.0/24";
/// The first DUT's address.
pub const DUT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
/// dutnet's address on every DUT NIC.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
/// The LAN host of [`crate::Topology::exporter_and_lan`]; the router on the
/// way to [`FAR_IP`] in the labs that have one.
pub const LAN_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The exporter's upstream address: every masqueraded DUT hides behind it.
pub const EXPORTER_UP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// A host one router further than the LAN host.
pub const FAR_IP: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);
/// The exporter's upstream NIC.
pub const UPSTREAM_NIC: &str = "dn-up";
/// The MAC with the static lease `board1` ([`DUT_IP`]) of
/// [`Network::services`].
pub const BOARD1_MAC: &str = "02:00:00:00:01:0a";

/// The exporter's DUT NIC `n` (from 1).
#[must_use]
pub fn dut_nic(n: usize) -> String {
    format!("dn-dut{n}")
}

/// The address of DUT `k` (from 1) behind one DUT NIC: [`DUT_IP`] and the
/// addresses after it.
#[must_use]
pub fn dut_ip(k: usize) -> Ipv4Addr {
    let offset = u32::try_from(k - 1).expect("a handful of DUTs");
    Ipv4Addr::from(u32::from(DUT_IP) + offset)
}

/// Network `dut<n>` of the `networks:` list on DUT NIC `dn-dut<n>`
/// ([`Network::nat`]). A top-level key of `extra` replaces the default one.
#[must_use]
pub fn nat_entry(n: usize, extra: &str) -> String {
    Network::nat(&dut_nic(n))
        .set(extra)
        .entry(&format!("dut{n}"))
}

/// One network of dutnet's config, as YAML keys. [`Network::set`] merges
/// more keys in: a top-level key given again replaces the earlier one with
/// every line indented under it.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// `(key, lines)`: a top-level key and its lines, the first one being
    /// `key: ...`.
    keys: Vec<(String, Vec<String>)>,
}

impl Network {
    /// A network with nothing but its `interface`.
    #[must_use]
    pub fn on(interface: &str) -> Self {
        Self::default().set(&format!("interface: {interface}"))
    }

    /// The NAT labs' network on DUT NIC `interface`: the lab [`SUBNET`]
    /// with [`GATEWAY`], masqueraded to [`UPSTREAM_NIC`], no DHCP, the LAN
    /// host as DNS upstream.
    #[must_use]
    pub fn nat(interface: &str) -> Self {
        Self::on(interface).set(&format!(
            "subnet: {SUBNET}
gateway_ip: {GATEWAY}
upstream_interface: {UPSTREAM_NIC}
nat_mode: masquerade
dhcp_enabled: false
dns_servers: [\"{LAN_IP}\"]"
        ))
    }

    /// The services lab's network on `dn-dut1` (DHCP, DNS, control
    /// verbs): domain `lab.local`, one static lease (`board1`, [`DUT_IP`]
    /// for [`BOARD1_MAC`]) and one DNS record (`controller.lab.local`, the
    /// LAN host).
    #[must_use]
    pub fn services() -> Self {
        Self::on(&dut_nic(1)).set(&format!(
            "upstream_interface: {UPSTREAM_NIC}
domain: lab.local
dns_servers: [\"{LAN_IP}\"]
lease_time: 1h
addresses:
  - mac: \"{BOARD1_MAC}\"
    ip: {DUT_IP}
    hostname: board1
dns_entries:
  - hostname: controller.lab.local
    ip: {LAN_IP}"
        ))
    }

    /// Merges the keys of `yaml` (top-level lines, with lines indented or
    /// starting with `-` belonging to the key above them).
    #[must_use]
    pub fn set(mut self, yaml: &str) -> Self {
        let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
        for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
            match blocks.last_mut() {
                Some((_, lines)) if line.starts_with(' ') || line.starts_with('-') => {
                    lines.push(line.to_owned());
                }
                _ => {
                    let key = line.split(':').next().unwrap_or(line).trim().to_owned();
                    blocks.push((key, vec![line.to_owned()]));
                }
            }
        }
        for (key, lines) in blocks {
            match self.keys.iter_mut().find(|(k, _)| *k == key) {
                Some(existing) => existing.1 = lines,
                None => self.keys.push((key, lines)),
            }
        }
        self
    }

    /// The network as the whole config file: its keys at the top level
    /// (dutnet's one-network form).
    #[must_use]
    pub fn single(&self) -> String {
        let mut yaml = String::new();
        for line in self.lines() {
            let _ = writeln!(yaml, "{line}");
        }
        yaml
    }

    /// The network as entry `name` of the `networks:` list.
    #[must_use]
    pub fn entry(&self, name: &str) -> String {
        let mut yaml = format!("  - name: {name}\n");
        for line in self.lines() {
            let _ = writeln!(yaml, "    {line}");
        }
        yaml
    }

    fn lines(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .flat_map(|(_, lines)| lines.iter().map(String::as_str))
    }
}

/// A config file with a `networks:` list of `(name, network)`.
#[must_use]
pub fn networks(list: impl IntoIterator<Item = (String, Network)>) -> String {
    let mut yaml = "networks:\n".to_owned();
    for (name, network) in list {
        yaml.push_str(&network.entry(&name));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::Network;

    #[test]
    fn a_key_given_again_replaces_the_earlier_one_with_its_block() {
        let net = Network::services()
            .set("dns_entries:\n  - hostname: a.lab.local\n    ip: 10.0.0.1\ndns_timeout: 1s");
        let yaml = net.single();
        assert_eq!(yaml.matches("dns_entries:").count(), 1, "{yaml}");
        assert!(!yaml.contains("controller.lab.local"), "{yaml}");
        assert!(
            yaml.contains("  - hostname: a.lab.local\n    ip: 10.0.0.1\n"),
            "{yaml}"
        );
        assert!(yaml.ends_with("dns_timeout: 1s\n"), "{yaml}");
        assert!(yaml.contains("    hostname: board1\n"), "{yaml}");
    }

    #[test]
    fn an_entry_indents_every_line_under_its_name() {
        let entry = Network::nat("dn-dut2")
            .set("nat_mode: 1to1\naddresses:\n- ip: 192.168.100.10")
            .entry("dut2");
        assert!(
            entry.starts_with("  - name: dut2\n    interface: dn-dut2\n"),
            "{entry}"
        );
        assert!(entry.contains("    nat_mode: 1to1\n"), "{entry}");
        assert!(!entry.contains("masquerade"), "{entry}");
        assert!(
            entry.ends_with("    addresses:\n    - ip: 192.168.100.10\n"),
            "{entry}"
        );
    }
}
