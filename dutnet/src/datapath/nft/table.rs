//! The nftables datapath: dutnet's one table, kept in memory as the view of
//! every network and replaced whole when a view changes.
//!
//! The table holds every network from the start, on either datapath: its
//! rules name interfaces, so they hold across re-plugs, and a network on
//! the fast path needs them for what the programs punt. A network carried
//! by the table alone is "attached" once its DUT interface exists.
use std::{
    collections::{BTreeMap, BTreeSet},
    ops::RangeInclusive,
};

use super::{FallbackNetwork, replace_table, ruleset};
use crate::datapath::{
    Carrier, Datapath, DatapathError, DutNetwork, NatPorts, PublicChange, filter::FilterPlan,
};

/// The table's networks, by DUT interface.
#[derive(Debug, Default)]
pub struct NftTable {
    networks: BTreeMap<String, FallbackNetwork>,
    /// The kernel masquerade's range beside a fast path (`None`: no fast
    /// path, the kernel keeps a DUT's source port when it is free).
    kernel_ports: Option<RangeInclusive<u16>>,
    attached: BTreeSet<String>,
}

impl NftTable {
    /// A table for `networks`, not installed yet.
    #[must_use]
    pub fn new(networks: Vec<FallbackNetwork>, kernel_ports: Option<RangeInclusive<u16>>) -> Self {
        Self {
            networks: networks
                .into_iter()
                .map(|n| (n.dut_interface.clone(), n))
                .collect(),
            kernel_ports,
            attached: BTreeSet::new(),
        }
    }

    /// Adds (or replaces) a network's view; not installed yet.
    pub fn insert(&mut self, network: FallbackNetwork) {
        self.networks.insert(network.dut_interface.clone(), network);
    }

    /// Removes a network's view; not installed yet.
    pub fn remove(&mut self, iface: &str) {
        self.networks.remove(iface);
        self.attached.remove(iface);
    }

    /// The networks' views, as the table holds them.
    pub fn networks(&self) -> impl Iterator<Item = &FallbackNetwork> {
        self.networks.values()
    }

    /// The table's text.
    #[must_use]
    pub fn ruleset(&self) -> String {
        let networks: Vec<FallbackNetwork> = self.networks.values().cloned().collect();
        ruleset(&networks, self.kernel_ports.as_ref())
    }

    /// Replaces the kernel's table with this one, in one transaction.
    pub fn install(&self) -> Result<(), DatapathError> {
        Ok(replace_table(&self.ruleset())?)
    }

    /// Applies a 1:1 change to `iface`'s rules; `false`: nothing changed.
    fn change_public(&mut self, iface: &str, change: PublicChange) -> Result<bool, DatapathError> {
        let network = self
            .networks
            .get_mut(iface)
            .ok_or_else(|| DatapathError::Unknown {
                iface: iface.to_owned(),
            })?;
        let before = network.public.clone();
        match change {
            PublicChange::Add(public) if !network.public.contains(&public) => {
                network.public.push(public);
            }
            PublicChange::Add(_) => {}
            PublicChange::Remove(public) => network.public.retain(|p| *p != public),
        }
        Ok(before != network.public)
    }
}

impl Datapath for NftTable {
    fn attach(&mut self, network: &DutNetwork) -> Result<(), DatapathError> {
        if !self.networks.contains_key(&network.iface) {
            return Err(DatapathError::Unknown {
                iface: network.iface.clone(),
            });
        }
        self.attached.insert(network.iface.clone());
        Ok(())
    }

    fn detach(&mut self, iface: &str) -> Result<(), DatapathError> {
        self.attached.remove(iface);
        Ok(())
    }

    fn set_public(&mut self, iface: &str, change: PublicChange) -> Result<(), DatapathError> {
        let before = self.networks.get(iface).map(|n| n.public.clone());
        if !self.change_public(iface, change)? {
            return Ok(());
        }
        if let Err(e) = self.install() {
            // The kernel kept the old table: so does the view.
            if let (Some(network), Some(before)) = (self.networks.get_mut(iface), before) {
                network.public = before;
            }
            return Err(e);
        }
        Ok(())
    }

    fn set_filter(
        &mut self,
        iface: &str,
        filter: Option<&FilterPlan>,
    ) -> Result<(), DatapathError> {
        let network = self
            .networks
            .get_mut(iface)
            .ok_or_else(|| DatapathError::Unknown {
                iface: iface.to_owned(),
            })?;
        let wanted = filter.map(|f| f.filter.clone());
        if network.filter == wanted {
            return Ok(());
        }
        let before = std::mem::replace(&mut network.filter, wanted);
        if let Err(e) = self.install() {
            if let Some(network) = self.networks.get_mut(iface) {
                network.filter = before;
            }
            return Err(e);
        }
        Ok(())
    }

    /// The kernel's conntrack expires the table's flows itself.
    fn carrier(&self, iface: &str) -> Carrier {
        if self.attached.contains(iface) {
            Carrier::Nft
        } else {
            Carrier::None
        }
    }

    fn planned(&self, _iface: &str) -> Carrier {
        Carrier::Nft
    }

    fn nat_ports(&self, _iface: &str) -> NatPorts {
        NatPorts {
            fast_path: None,
            kernel: self.kernel_ports.clone(),
        }
    }

    /// The table itself goes with the undo journal (it was journaled
    /// before it was installed, so a crashed run's goes too).
    fn shutdown(&mut self) -> Result<(), DatapathError> {
        self.attached.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::PublicAddress;

    fn table() -> NftTable {
        NftTable::new(
            vec![FallbackNetwork {
                name: "a".to_owned(),
                dut_interface: "dn-a".to_owned(),
                subnet: "192.168.100.0/24".parse().unwrap(),
                upstream_interface: Some("dn-up".to_owned()),
                public: Vec::new(),
                vlan_interfaces: Vec::new(),
                filter: None,
                ntp_redirect: None,
            }],
            None,
        )
    }

    #[test]
    fn a_public_change_shows_in_the_rules_once() {
        let mut t = table();
        let p = PublicAddress::new(
            "192.168.100.10".parse().unwrap(),
            "10.0.0.10".parse().unwrap(),
        );
        assert!(t.change_public("dn-a", PublicChange::Add(p)).unwrap());
        assert!(!t.change_public("dn-a", PublicChange::Add(p)).unwrap());
        assert!(t.ruleset().contains("dnat to 192.168.100.10"));
        assert!(t.change_public("dn-a", PublicChange::Remove(p)).unwrap());
        assert!(!t.ruleset().contains("dnat to"));
        assert!(matches!(
            t.change_public("dn-x", PublicChange::Add(p)),
            Err(DatapathError::Unknown { .. })
        ));
    }
}
