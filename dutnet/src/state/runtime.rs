//! Runtime changes: what the control socket added to or removed from a
//! network's `addresses` and `dns_entries`, kept on disk so a restarted
//! daemon applies them again, until `dutnet down` forgets them.
//!
//! Entries are stored the way the config file writes them and go through
//! the config's own checks again when applied, so a changed config file
//! cannot receive a saved entry that now conflicts with it.
use std::{
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::paths::Paths;
use crate::config::{
    AddressEntry, DnsEntry, Network,
    wire::{AddressWire, DnsEntryWire},
};

/// One network's changes since its config file was loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeChanges {
    /// Config-file `addresses` entries removed, by IP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_addresses: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_addresses: Vec<AddressWire>,
    /// Config-file `dns_entries` removed, by host name (any case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_dns: Vec<DnsEntryWire>,
}

#[derive(Debug, thiserror::Error)]
#[error("runtime changes file {path}: {reason}")]
pub struct RuntimeFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Where network `name`'s changes are kept.
#[must_use]
pub fn file(paths: &Paths, network: &str) -> PathBuf {
    paths.runtime_dir().join(format!("{network}.json"))
}

/// Forgets every network's changes (`dutnet down`).
pub fn forget_all(paths: &Paths) -> io::Result<()> {
    match std::fs::remove_dir_all(paths.runtime_dir()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl RuntimeChanges {
    /// The saved changes, or none when there is no file.
    pub fn load(path: &Path) -> Result<Self, RuntimeFileError> {
        let fail = |reason: String| RuntimeFileError {
            path: path.to_owned(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| fail(e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Writes the changes atomically and durably, readable by root only
    /// (see `state::private`); no changes left means no file.
    pub fn save(&self, path: &Path) -> Result<(), RuntimeFileError> {
        let fail = |e: io::Error| RuntimeFileError {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        if *self == Self::default() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fail(e)),
                _ => Ok(()),
            };
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| fail(e.into()))?;
        super::atomic_write(path, text.as_bytes()).map_err(fail)
    }

    /// Records that `entry` was added.
    pub fn add_address(&mut self, entry: &AddressEntry) {
        self.added_addresses.retain(|a| !same_ip(a, entry.ip));
        self.added_addresses.push(AddressWire {
            ip: Some(entry.ip.to_string()),
            mac: entry.mac.map(|m| m.to_string()),
            hostname: entry.hostname.clone(),
            public_ip: entry.public_ip.map(|p| p.to_string()),
            vlan_id: entry.vlan_id.map(u64::from),
            public_gateway: entry.public_gateway.map(|g| g.to_string()),
            // The control socket adds no DHCP options.
            dhcp_options: None,
        });
    }

    /// Records that the entry for `ip` was removed.
    pub fn remove_address(&mut self, ip: Ipv4Addr) {
        let before = self.added_addresses.len();
        self.added_addresses.retain(|a| !same_ip(a, ip));
        if self.added_addresses.len() == before && !self.removed_addresses.contains(&ip) {
            self.removed_addresses.push(ip);
        }
    }

    pub fn add_dns(&mut self, entry: &DnsEntry) {
        self.added_dns.retain(|d| !same_name(d, &entry.hostname));
        self.added_dns.push(DnsEntryWire {
            hostname: Some(entry.hostname.clone()),
            ip: Some(entry.ip.to_string()),
        });
    }

    pub fn remove_dns(&mut self, hostname: &str) {
        let before = self.added_dns.len();
        self.added_dns.retain(|d| !same_name(d, hostname));
        if self.added_dns.len() == before
            && !self
                .removed_dns
                .iter()
                .any(|n| n.eq_ignore_ascii_case(hostname))
        {
            self.removed_dns.push(hostname.to_owned());
        }
    }

    /// Applies the changes to `net` as loaded from its config file. Returns
    /// one message per saved entry that no longer fits (it is skipped).
    pub fn apply_to(&self, net: &mut Network) -> Vec<String> {
        let mut skipped = Vec::new();
        net.addresses
            .retain(|a| !self.removed_addresses.contains(&a.ip));
        net.dns_entries.retain(|d| {
            !self
                .removed_dns
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&d.hostname))
        });
        for wire in &self.added_addresses {
            let entry = AddressEntry::try_from(wire.clone())
                .and_then(|e| net.check_new_address(&e).map(|()| e));
            match entry {
                Ok(entry) => net.addresses.push(entry),
                Err(e) => skipped.push(format!(
                    "saved address {}: {}",
                    wire.ip.as_deref().unwrap_or("?"),
                    one_line(&e)
                )),
            }
        }
        for wire in &self.added_dns {
            let entry = DnsEntry::try_from(wire.clone())
                .and_then(|e| net.check_new_dns_entry(&e).map(|()| e));
            match entry {
                Ok(entry) => net.dns_entries.push(entry),
                Err(e) => skipped.push(format!(
                    "saved DNS entry {}: {}",
                    wire.hostname.as_deref().unwrap_or("?"),
                    one_line(&e)
                )),
            }
        }
        skipped
    }
}

/// A config error's problems on one line.
#[must_use]
pub fn one_line(e: &crate::config::ConfigError) -> String {
    e.problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn same_ip(wire: &AddressWire, ip: Ipv4Addr) -> bool {
    wire.ip.as_deref().and_then(|s| s.parse().ok()) == Some(ip)
}

fn same_name(wire: &DnsEntryWire, name: &str) -> bool {
    wire.hostname
        .as_deref()
        .is_some_and(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
interface: dut0
addresses:
  - { ip: 192.168.100.10, mac: \"02:00:00:00:00:0a\", hostname: board1 }
dns_entries:
  - { hostname: controller.lab, ip: 10.0.0.1 }
";

    fn network() -> Network {
        crate::config::parse_str(CONFIG).unwrap().networks.remove(0)
    }

    fn address(ip: &str, mac: Option<&str>) -> AddressEntry {
        AddressEntry::try_from(AddressWire {
            ip: Some(ip.into()),
            mac: mac.map(Into::into),
            ..AddressWire::default()
        })
        .unwrap()
    }

    #[test]
    fn adds_and_removes_replay_onto_the_config() {
        let mut changes = RuntimeChanges::default();
        changes.add_address(&address("192.168.100.50", Some("02:00:00:00:00:50")));
        changes.remove_address("192.168.100.10".parse().unwrap());
        changes.add_dns(&DnsEntry {
            hostname: "nas.lab".into(),
            ip: "10.0.0.2".parse().unwrap(),
        });
        changes.remove_dns("CONTROLLER.lab");
        let mut net = network();
        assert_eq!(changes.apply_to(&mut net), Vec::<String>::new());
        let ips: Vec<String> = net.addresses.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["192.168.100.50"]);
        let names: Vec<&str> = net
            .dns_entries
            .iter()
            .map(|d| d.hostname.as_str())
            .collect();
        assert_eq!(names, ["nas.lab"]);
    }

    #[test]
    fn removing_an_added_entry_forgets_it() {
        let mut changes = RuntimeChanges::default();
        changes.add_address(&address("192.168.100.50", None));
        changes.remove_address("192.168.100.50".parse().unwrap());
        changes.add_dns(&DnsEntry {
            hostname: "nas.lab".into(),
            ip: "10.0.0.2".parse().unwrap(),
        });
        changes.remove_dns("nas.lab");
        assert_eq!(changes, RuntimeChanges::default());
    }

    #[test]
    fn a_saved_entry_that_conflicts_with_the_config_is_skipped() {
        let mut changes = RuntimeChanges::default();
        // Same MAC as the config file's board1 (the file changed since).
        changes.add_address(&address("192.168.100.60", Some("02:00:00:00:00:0a")));
        let mut net = network();
        let skipped = changes.apply_to(&mut net);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].contains("192.168.100.60"), "{skipped:?}");
        assert_eq!(net, network());
    }

    #[test]
    fn saves_loads_and_deletes_when_empty() {
        let dir = std::env::temp_dir().join(format!("dutnet-runtime-{}", std::process::id()));
        let path = dir.join("runtime").join("lab.json");
        assert_eq!(
            RuntimeChanges::load(&path).unwrap(),
            RuntimeChanges::default()
        );
        let mut changes = RuntimeChanges::default();
        changes.add_address(&address("192.168.100.50", Some("02:00:00:00:00:50")));
        changes.save(&path).unwrap();
        assert_eq!(RuntimeChanges::load(&path).unwrap(), changes);
        RuntimeChanges::default().save(&path).unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
