//! Every kind of change dutnet makes to the host, each with what it reads
//! first (the state it replaces, kept as an [`UndoStep`]), how it is made,
//! and how that step puts the host back: adding a kind of change touches
//! this file (and the step's serde shape in the journal) only.
//!
//! [`Journal::apply`](super::journal::Journal::apply) and
//! [`Journal::apply_local`](super::journal::Journal::apply_local) run a
//! change: read the prior state, record the undo durably, then make the
//! change where the host differs. The daemon says *what* it wants (a plan of
//! changes); this module says *how*.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde_json::Value;
use tracing::info;

use super::{
    error::{HostCause, HostError},
    journal::UndoStep,
    netmgr, sysctl,
};
use crate::{
    datapath::nft::{self, docker::ForeignChain},
    netlink::{Ipv4Address, Link, Netlink},
    state::paths::remove_pin_dir,
};

/// A change made through netlink, or a [`LocalChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostChange {
    /// Leave `address` as the only IPv4 address of `link` (a DUT
    /// interface's gateway address). Undo: its addresses from before.
    GatewayAddress { link: Link, address: Ipv4Net },
    /// Set `link` up. Undo: down again, if it was down.
    LinkUp { link: Link },
    /// Mark rule `mark` → table `mark`, and the table's one route: what
    /// DUT NIC `interface` (`ifindex`) handed the stack goes back out of it
    /// (subnet `subnet`, source `gateway`). Undo: rule removed, table
    /// flushed.
    ReplyRoute {
        interface: String,
        ifindex: u32,
        mark: u32,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
    },
    /// Add `address` to `link` (a 1:1 public IP; the caller found it
    /// absent). Undo: removed.
    AddressAlias { link: Link, address: Ipv4Net },
    /// Create VLAN `vlan_id` of `parent` as `name` (`eth0.905`), unless a
    /// link of that name exists (then it is used as it is, and kept).
    /// Undo: deleted, which takes its addresses and routes with it.
    VlanLink {
        parent: Link,
        name: String,
        vlan_id: u16,
    },
    /// `default via <gateway> dev <out> onlink` in route table `table` (a
    /// 1:1 DUT's `public_gateway`). Undo: the table flushed.
    PolicyTable {
        table: u32,
        gateway: Ipv4Addr,
        out: Link,
    },
    /// Rule `from <source> iif <iif> lookup <table>`: what DUT `source`
    /// sends through DUT NIC `iif` follows its policy route. Undo: removed.
    SourceRule {
        source: Ipv4Addr,
        iif: String,
        table: u32,
    },
    /// A change that needs no netlink.
    Local(LocalChange),
}

/// A change made through files and subprocesses (sysctls, nmcli, nft,
/// bpffs): usable where no netlink connection is at hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalChange {
    /// Write `value` to sysctl `key` (of `interface`, when it is one's).
    /// Undo: the value from before.
    Sysctl {
        interface: Option<String>,
        key: String,
        value: String,
    },
    /// Take `interface` from NetworkManager, if it manages it. Undo:
    /// handed back. Asked once per run: once recorded, NetworkManager is
    /// not asked again.
    NmUnmanaged { interface: String },
    /// Replace dutnet's nftables table ([`nft::TABLE`]) with `ruleset`.
    /// Undo: the table deleted.
    NftTable { ruleset: String },
    /// dutnet's bpffs pin directory, created by the eBPF datapath when it
    /// loads: only recorded. Undo: removed with every pin in it.
    PinDir { path: PathBuf },
    /// Insert `rules`, commented `comment`, at the top of another table's
    /// `chain`, replacing any set of the same comment. Undo: every rule of
    /// the chain with that comment deleted.
    ForeignChainRules {
        chain: ForeignChain,
        comment: String,
        rules: Vec<Vec<Value>>,
    },
}

/// What a change found before it was made.
#[derive(Debug, PartialEq, Eq)]
pub struct Prior {
    /// How to put back what the change replaces; `None`: nothing to put
    /// back (the host already was as wanted before dutnet).
    pub undo: Option<UndoStep>,
    /// False when the host is already as the change wants it.
    pub needed: bool,
}

impl Prior {
    const NOTHING: Self = Self {
        undo: None,
        needed: false,
    };

    fn change(undo: UndoStep) -> Self {
        Self {
            undo: Some(undo),
            needed: true,
        }
    }
}

impl HostChange {
    /// The interface the change is about, for error messages.
    #[must_use]
    pub fn interface(&self) -> Option<&str> {
        match self {
            Self::GatewayAddress { link, .. }
            | Self::LinkUp { link }
            | Self::AddressAlias { link, .. } => Some(&link.name),
            Self::ReplyRoute { interface, .. } => Some(interface),
            Self::VlanLink { name, .. } => Some(name),
            Self::PolicyTable { out, .. } => Some(&out.name),
            Self::SourceRule { iif, .. } => Some(iif),
            Self::Local(local) => local.interface(),
        }
    }

    /// Reads the state the change replaces.
    pub async fn prior(&self, netlink: &Netlink) -> Result<Prior, HostError> {
        match self {
            Self::GatewayAddress { link, address } => {
                let current = netlink
                    .exact_ipv4_addresses(link.index)
                    .await
                    .map_err(|e| {
                        HostError::new("reading the DUT interface's addresses", Some(&link.name), e)
                    })?;
                let needed = current.iter().map(Ipv4Address::net).ne([*address]);
                Ok(Prior {
                    undo: Some(UndoStep::Ipv4Addresses {
                        interface: link.name.clone(),
                        addresses: current,
                    }),
                    needed,
                })
            }
            Self::LinkUp { link } if link.up => Ok(Prior::NOTHING),
            Self::LinkUp { link } => Ok(Prior::change(UndoStep::LinkDown {
                interface: link.name.clone(),
            })),
            Self::ReplyRoute { mark, .. } => Ok(Prior::change(UndoStep::MarkRule {
                mark: *mark,
                table: *mark,
            })),
            Self::AddressAlias { link, address } => Ok(Prior::change(UndoStep::AddressAlias {
                interface: link.name.clone(),
                address: *address,
            })),
            Self::VlanLink { name, .. } => {
                let existing = netlink.link_by_name(name).await.map_err(|e| {
                    HostError::new("looking for the VLAN sub-interface", Some(name), e)
                })?;
                Ok(match existing {
                    Some(_) => Prior::NOTHING,
                    None => Prior::change(UndoStep::VlanLink {
                        interface: name.clone(),
                    }),
                })
            }
            Self::PolicyTable { table, .. } => {
                Ok(Prior::change(UndoStep::PolicyTable { table: *table }))
            }
            Self::SourceRule { source, iif, table } => Ok(Prior::change(UndoStep::SourceRule {
                source: *source,
                iif: iif.clone(),
                table: *table,
            })),
            Self::Local(local) => local.prior(),
        }
    }

    /// Makes the change (after [`Self::prior`] found it needed and its undo
    /// was recorded). `network` is for the logs.
    pub async fn make(&self, network: &str, netlink: &Netlink) -> Result<(), HostError> {
        match self {
            Self::GatewayAddress { link, address } => {
                netlink
                    .replace_ipv4_addresses(link.index, &[Ipv4Address::with_broadcast(*address)])
                    .await
                    .map_err(|e| {
                        HostError::new("setting the gateway address", Some(&link.name), e)
                    })?;
                info!(%network, interface = %link.name, %address, "gateway address set");
            }
            Self::LinkUp { link } => {
                netlink.set_up(link, true).await.map_err(|e| {
                    HostError::new("setting the DUT interface up", Some(&link.name), e)
                })?;
                info!(%network, interface = %link.name, "link up");
            }
            Self::ReplyRoute {
                interface,
                ifindex,
                mark,
                subnet,
                gateway,
            } => {
                netlink.add_mark_rule(*mark, *mark).await.map_err(|e| {
                    HostError::new("adding the reply routing rule", Some(interface), e)
                })?;
                netlink
                    .set_table_route(*mark, *subnet, *ifindex, *gateway)
                    .await
                    .map_err(|e| {
                        HostError::new("routing replies back to the DUT NIC", Some(interface), e)
                    })?;
            }
            Self::AddressAlias { link, address } => {
                netlink
                    .add_address(link.index, *address)
                    .await
                    .map_err(|e| HostError::new("adding a public address", Some(&link.name), e))?;
            }
            Self::VlanLink {
                parent,
                name,
                vlan_id,
            } => {
                netlink
                    .add_vlan(name, parent.index, *vlan_id)
                    .await
                    .map_err(|e| {
                        HostError::new("creating the VLAN sub-interface", Some(name), e)
                    })?;
                info!(%network, interface = %name, parent = %parent.name, vlan = vlan_id, "VLAN sub-interface created");
            }
            Self::PolicyTable {
                table,
                gateway,
                out,
            } => {
                netlink
                    .set_default_route(*table, *gateway, out.index)
                    .await
                    .map_err(|e| {
                        HostError::new("routing to the public gateway", Some(&out.name), e)
                    })?;
                info!(%network, table, %gateway, interface = %out.name, "policy route set");
            }
            Self::SourceRule { source, iif, table } => {
                netlink
                    .add_source_rule(*source, iif, *table)
                    .await
                    .map_err(|e| HostError::new("adding a DUT's routing rule", Some(iif), e))?;
                info!(%network, %source, %iif, table, "policy rule added");
            }
            Self::Local(local) => local.make(network)?,
        }
        Ok(())
    }
}

impl LocalChange {
    /// Per-interface IPv4 forwarding on `interface`, on or off.
    #[must_use]
    pub fn forwarding(interface: &str, on: bool) -> Self {
        Self::Sysctl {
            interface: Some(interface.to_owned()),
            key: sysctl::forwarding_key(interface),
            value: if on { "1" } else { "0" }.to_owned(),
        }
    }

    /// A sysctl of no interface.
    #[must_use]
    pub fn sysctl(key: &str, value: &str) -> Self {
        Self::Sysctl {
            interface: None,
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    /// The interface the change is about, for error messages.
    #[must_use]
    pub fn interface(&self) -> Option<&str> {
        match self {
            Self::Sysctl { interface, .. } => interface.as_deref(),
            Self::NmUnmanaged { interface } => Some(interface),
            Self::NftTable { .. } | Self::PinDir { .. } | Self::ForeignChainRules { .. } => None,
        }
    }

    /// The undo step whose presence in the journal means the change was
    /// already made this run and is not looked at again.
    #[must_use]
    pub fn made_once(&self) -> Option<UndoStep> {
        match self {
            Self::NmUnmanaged { interface } => Some(UndoStep::NmManaged {
                interface: interface.clone(),
            }),
            _ => None,
        }
    }

    /// Reads the state the change replaces.
    pub fn prior(&self) -> Result<Prior, HostError> {
        match self {
            Self::Sysctl {
                interface,
                key,
                value,
            } => {
                let current = sysctl::read(key)
                    .map_err(|e| HostError::new("reading a sysctl", interface.as_deref(), e))?;
                let needed = current != *value;
                Ok(Prior {
                    undo: Some(UndoStep::Sysctl {
                        key: key.clone(),
                        value: current,
                    }),
                    needed,
                })
            }
            Self::NmUnmanaged { interface } if netmgr::manages(interface) => {
                Ok(Prior::change(UndoStep::NmManaged {
                    interface: interface.clone(),
                }))
            }
            Self::NmUnmanaged { .. } => Ok(Prior::NOTHING),
            Self::NftTable { .. } => Ok(Prior::change(UndoStep::NftTable {
                table: nft::TABLE.to_owned(),
            })),
            Self::PinDir { path } => Ok(Prior {
                undo: Some(UndoStep::PinDir { path: path.clone() }),
                needed: false,
            }),
            Self::ForeignChainRules { chain, comment, .. } => {
                // Keyed by chain and comment: a recreated chain adds nothing.
                Ok(Prior::change(UndoStep::NftRules {
                    family: chain.family.clone(),
                    table: chain.table.clone(),
                    chain: chain.chain.clone(),
                    comment: comment.clone(),
                }))
            }
        }
    }

    /// Makes the change (after [`Self::prior`] found it needed and its undo
    /// was recorded). `network` is for the logs.
    pub fn make(&self, network: &str) -> Result<(), HostError> {
        match self {
            Self::Sysctl {
                interface,
                key,
                value,
            } => {
                sysctl::write(key, value)
                    .map_err(|e| HostError::new("setting a sysctl", interface.as_deref(), e))?;
                info!(%key, %value, "sysctl set");
            }
            Self::NmUnmanaged { interface } => {
                netmgr::set_managed(interface, false);
                info!(%network, %interface, "marked unmanaged for NetworkManager");
            }
            Self::NftTable { ruleset } => nft::replace_table(ruleset)
                .map_err(|e| HostError::new("installing the nftables table", None, e))?,
            Self::PinDir { .. } => {}
            Self::ForeignChainRules {
                chain,
                comment,
                rules,
            } => {
                let fail = |e| HostError::new("opening another table's forward chain", None, e);
                // Rules a killed dutnet left, or the previous set at a
                // runtime change (same comment), go first, so the chain
                // holds one set.
                nft::docker::delete_rules(chain, comment).map_err(fail)?;
                nft::docker::insert_rules(chain, comment, rules).map_err(fail)?;
                info!(%network, %chain, rules = rules.len(), "accept rules inserted in a drop-policy forward chain");
            }
        }
        Ok(())
    }
}

impl UndoStep {
    /// The interface the step is about, for error messages.
    #[must_use]
    pub fn interface(&self) -> Option<&str> {
        match self {
            Self::Ipv4Addresses { interface, .. }
            | Self::LinkDown { interface }
            | Self::NmManaged { interface }
            | Self::AddressAlias { interface, .. }
            | Self::VlanLink { interface } => Some(interface),
            Self::SourceRule { iif, .. } => Some(iif),
            Self::PolicyTable { .. } => None,
            Self::Sysctl { .. }
            | Self::PinDir { .. }
            | Self::MarkRule { .. }
            | Self::NftTable { .. }
            | Self::NftRules { .. } => None,
        }
    }

    /// Puts back what the step recorded. An interface that is gone has
    /// nothing to put back: that is no error.
    pub async fn undo(&self, netlink: &Netlink) -> Result<(), HostError> {
        let fail = |step: &'static str| {
            let interface = self.interface();
            move |e: HostCause| HostError::new(step, interface, e)
        };
        match self {
            Self::Ipv4Addresses {
                interface,
                addresses,
            } => {
                let step = "restoring the addresses";
                let Some(link) = find(netlink, interface).await.map_err(fail(step))? else {
                    info!(%interface, "interface gone: no addresses to restore");
                    return Ok(());
                };
                netlink
                    .replace_ipv4_addresses(link.index, addresses)
                    .await
                    .map_err(|e| fail(step)(e.into()))?;
                let restored: Vec<_> = addresses.iter().map(Ipv4Address::net).collect();
                info!(%interface, ?restored, "addresses restored");
            }
            Self::LinkDown { interface } => {
                let step = "setting the link down again";
                if let Some(link) = find(netlink, interface).await.map_err(fail(step))? {
                    netlink
                        .set_up(&link, false)
                        .await
                        .map_err(|e| fail(step)(e.into()))?;
                    info!(%interface, "link set down again");
                }
            }
            Self::Sysctl { key, value } => match sysctl::write(key, value) {
                Ok(()) => info!(%key, %value, "sysctl restored"),
                // The interface (and so its sysctl) is gone.
                Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(fail("restoring a sysctl")(e.into())),
            },
            Self::NmManaged { interface } => {
                netmgr::set_managed(interface, true);
                info!(%interface, "handed back to NetworkManager");
            }
            Self::AddressAlias { interface, address } => {
                let step = "removing a public address";
                let Some(link) = find(netlink, interface).await.map_err(fail(step))? else {
                    return Ok(());
                };
                netlink
                    .remove_address(link.index, *address)
                    .await
                    .map_err(|e| fail(step)(e.into()))?;
                info!(%interface, %address, "public address removed");
            }
            Self::MarkRule { mark, table } => {
                let step = "removing the reply routing rule";
                netlink
                    .remove_mark_rule(*mark, *table)
                    .await
                    .map_err(|e| fail(step)(e.into()))?;
                netlink
                    .flush_table(*table)
                    .await
                    .map_err(|e| fail(step)(e.into()))?;
                info!(mark, table, "reply routing rule removed");
            }
            Self::VlanLink { interface } => {
                netlink
                    .delete_link(interface)
                    .await
                    .map_err(|e| fail("deleting the VLAN sub-interface")(e.into()))?;
                info!(%interface, "VLAN sub-interface deleted");
            }
            Self::PolicyTable { table } => {
                netlink
                    .flush_table(*table)
                    .await
                    .map_err(|e| fail("flushing a policy route table")(e.into()))?;
                info!(table, "policy route removed");
            }
            Self::SourceRule { source, iif, table } => {
                netlink
                    .remove_source_rule(*source, iif, *table)
                    .await
                    .map_err(|e| fail("removing a DUT's routing rule")(e.into()))?;
                info!(%source, %iif, table, "policy rule removed");
            }
            Self::NftTable { table } => {
                nft::delete_table(table)
                    .map_err(|e| fail("deleting the nftables table")(e.into()))?;
                info!(%table, "nftables table deleted");
            }
            Self::NftRules {
                family,
                table,
                chain,
                comment,
            } => {
                let chain = ForeignChain {
                    family: family.clone(),
                    table: table.clone(),
                    chain: chain.clone(),
                    // Unknown and not needed: removal goes by name and comment.
                    handle: 0,
                };
                let removed = nft::docker::delete_rules(&chain, comment)
                    .map_err(|e| fail("removing rules from another table's chain")(e.into()))?;
                info!(%chain, %comment, removed, "rules removed from another table's chain");
            }
            Self::PinDir { path } => {
                if remove_pins(path).map_err(fail("removing the pin directory"))? {
                    info!(path = %path.display(), "pins removed");
                }
            }
        }
        Ok(())
    }
}

async fn find(netlink: &Netlink, interface: &str) -> Result<Option<Link>, HostCause> {
    Ok(netlink.link_by_name(interface).await?)
}

fn remove_pins(path: &Path) -> Result<bool, HostCause> {
    remove_pin_dir(path).map_err(|source| HostCause::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dutnet-change-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A sysctl that can be read but not written, even by root (0444).
    const READ_ONLY_SYSCTL: &str = "kernel.random.boot_id";

    #[test]
    fn a_sysctl_already_as_wanted_is_recorded_but_not_written() {
        let current = sysctl::read(READ_ONLY_SYSCTL).unwrap();
        let prior = LocalChange::sysctl(READ_ONLY_SYSCTL, &current)
            .prior()
            .unwrap();
        assert_eq!(
            prior,
            Prior {
                undo: Some(UndoStep::Sysctl {
                    key: READ_ONLY_SYSCTL.into(),
                    value: current,
                }),
                needed: false,
            }
        );
    }

    #[test]
    fn a_forwarding_change_names_its_interface() {
        let change = LocalChange::forwarding("eth0.905", true);
        assert_eq!(change.interface(), Some("eth0.905"));
        let LocalChange::Sysctl { key, value, .. } = &change else {
            panic!("{change:?}");
        };
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("net.ipv4.conf.eth0/905.forwarding", "1")
        );
        // Its interface is gone: the read fails, naming step, interface
        // and key.
        let e = LocalChange::forwarding("dn-gone-unit", false)
            .prior()
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("reading a sysctl on `dn-gone-unit` failed: sysctl net.ipv4.conf.dn-gone-unit.forwarding:"),
            "{text}"
        );
        assert!(matches!(e.source, HostCause::Sysctl(_)));
    }

    #[test]
    fn the_pin_dir_is_only_recorded_and_its_undo_removes_it() {
        let dir = temp_dir("pins");
        let prior = LocalChange::PinDir { path: dir.clone() }.prior().unwrap();
        assert_eq!(
            prior,
            Prior {
                undo: Some(UndoStep::PinDir { path: dir.clone() }),
                needed: false,
            }
        );
        std::fs::create_dir_all(dir.join("maps")).unwrap();
        std::fs::write(dir.join("maps").join("FLOWS"), b"pin").unwrap();
        assert!(remove_pins(&dir).unwrap());
        assert!(!dir.exists());
        // Already gone (the datapath removed it at shutdown): fine.
        assert!(!remove_pins(&dir).unwrap());
    }

    #[test]
    fn a_foreign_chain_change_is_keyed_by_chain_and_comment() {
        let change = LocalChange::ForeignChainRules {
            chain: ForeignChain {
                family: "ip".into(),
                table: "filter".into(),
                chain: "FORWARD".into(),
                handle: 7,
            },
            comment: "dutnet network lab".into(),
            rules: Vec::new(),
        };
        assert_eq!(
            change.prior().unwrap().undo,
            Some(UndoStep::NftRules {
                family: "ip".into(),
                table: "filter".into(),
                chain: "FORWARD".into(),
                comment: "dutnet network lab".into(),
            })
        );
        assert_eq!(
            LocalChange::NftTable {
                ruleset: String::new()
            }
            .prior()
            .unwrap()
            .undo,
            Some(UndoStep::NftTable {
                table: nft::TABLE.into()
            })
        );
    }

    #[test]
    fn only_network_manager_is_asked_once_per_run() {
        let nm = LocalChange::NmUnmanaged {
            interface: "eth1".into(),
        };
        assert_eq!(
            nm.made_once(),
            Some(UndoStep::NmManaged {
                interface: "eth1".into()
            })
        );
        assert_eq!(LocalChange::sysctl("a.b", "1").made_once(), None);
    }

    #[tokio::test]
    async fn undoing_what_is_gone_is_no_error() {
        let netlink = Netlink::connect().unwrap();
        let gone = "dn-gone-unit".to_owned();
        let dir = temp_dir("undo-gone");
        for step in [
            UndoStep::Ipv4Addresses {
                interface: gone.clone(),
                addresses: vec![Ipv4Address::plain("10.1.2.3/24".parse().unwrap())],
            },
            UndoStep::LinkDown {
                interface: gone.clone(),
            },
            UndoStep::AddressAlias {
                interface: gone.clone(),
                address: "10.1.2.4/24".parse().unwrap(),
            },
            UndoStep::Sysctl {
                key: sysctl::forwarding_key(&gone),
                value: "0".into(),
            },
            UndoStep::NmManaged {
                interface: gone.clone(),
            },
            UndoStep::PinDir { path: dir },
            // A chain that is gone (the other table was deleted) holds no
            // rules of dutnet's any more.
            UndoStep::NftRules {
                family: "ip".into(),
                table: "dutnet-unit-no-such-table".into(),
                chain: "FORWARD".into(),
                comment: "dutnet network unit".into(),
            },
        ] {
            step.undo(&netlink)
                .await
                .unwrap_or_else(|e| panic!("{step:?}: {e}"));
        }
    }

    #[tokio::test]
    async fn a_failed_undo_names_its_step_and_cause() {
        let netlink = Netlink::connect().unwrap();
        let step = UndoStep::Sysctl {
            key: READ_ONLY_SYSCTL.into(),
            value: "not-a-boot-id".into(),
        };
        let e = step.undo(&netlink).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "restoring a sysctl failed: sysctl {READ_ONLY_SYSCTL}:"
            )),
            "{text}"
        );
        assert!(matches!(e.source, HostCause::Sysctl(_)));
    }
}
