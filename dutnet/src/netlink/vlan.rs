//! VLAN sub-interfaces and per-DUT policy routes (`vlan_id`,
//! `public_gateway`): a 1:1 DUT's traffic is sent by a rule on its source
//! address and DUT NIC to a table whose one route goes to its VLAN's router.
use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use rtnetlink::{
    LinkVlan, RouteMessageBuilder,
    packet_route::{
        route::RouteType,
        rule::{RuleAction, RuleAttribute},
    },
};

use super::links::{Link, Netlink, NetlinkError, errno, error};

/// Preference of the per-DUT source rules: after the reply-mark rules
/// (1000), before the main table (32766).
pub const SOURCE_RULE_PRIORITY: u32 = 1100;

impl Netlink {
    /// Creates VLAN `vlan_id` of link `parent` as `name`, up.
    pub async fn add_vlan(
        &self,
        name: &str,
        parent: u32,
        vlan_id: u16,
    ) -> Result<Link, NetlinkError> {
        self.handle
            .link()
            .add(LinkVlan::new(name, parent, vlan_id).up().build())
            .execute()
            .await
            .map_err(|e| match errno(&e) {
                // What the kernel says when no "vlan" link kind is registered.
                Some(libc::EOPNOTSUPP) => error(
                    "add vlan link",
                    name,
                    "the kernel has no 802.1Q VLAN support: `modprobe 8021q` (CONFIG_VLAN_8021Q)",
                ),
                _ => error("add vlan link", name, e),
            })?;
        self.link_by_name(name)
            .await?
            .ok_or_else(|| error("add vlan link", name, "created, then not found"))
    }

    /// Deletes link `name`; one already gone is fine.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(libc::ENODEV | libc::ENOENT)) => Ok(()),
            Err(e) => Err(error("delete link", name, e)),
        }
    }

    /// `ip rule add from <source> iif <iif> lookup <table> pref 1100`;
    /// present is fine. The `iif` keeps two DUTs with the same address on
    /// NICs with the same subnet apart.
    pub async fn add_source_rule(
        &self,
        source: Ipv4Addr,
        iif: &str,
        table: u32,
    ) -> Result<(), NetlinkError> {
        let request = self
            .handle
            .rule()
            .add()
            .v4()
            .source_prefix(source, 32)
            .input_interface(iif.to_owned())
            .table_id(table)
            .priority(SOURCE_RULE_PRIORITY)
            .action(RuleAction::ToTable);
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(error(
                "add rule",
                format!("from {source} iif {iif} table {table}"),
                e,
            )),
        }
    }

    /// Removes the rules [`Self::add_source_rule`] added.
    pub async fn remove_source_rule(
        &self,
        source: Ipv4Addr,
        iif: &str,
        table: u32,
    ) -> Result<(), NetlinkError> {
        let rules: Vec<_> = self
            .handle
            .rule()
            .get(rtnetlink::IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(|e| error("list rules", "ipv4", e))?;
        for rule in rules {
            let has = |wanted: &RuleAttribute| rule.attributes.iter().any(|a| a == wanted);
            let ours = has(&RuleAttribute::Source(source.into()))
                && has(&RuleAttribute::Iifname(iif.to_owned()))
                && has(&RuleAttribute::Table(table))
                && has(&RuleAttribute::Priority(SOURCE_RULE_PRIORITY));
            if ours {
                match self.handle.rule().del(rule).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::ENOENT) => {}
                    Err(e) => {
                        return Err(error("remove rule", format!("from {source} iif {iif}"), e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts `default via <gateway> dev <ifindex> onlink` into `table`
    /// (replacing it). `onlink`: the public address on the sub-interface
    /// is a /32, so no connected route says the router is on the link.
    pub async fn set_default_route(
        &self,
        table: u32,
        gateway: Ipv4Addr,
        ifindex: u32,
    ) -> Result<(), NetlinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(ifindex)
            .onlink()
            .kind(RouteType::Unicast)
            .table_id(table)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                error(
                    "add route",
                    format!("default via {gateway} table {table}"),
                    e,
                )
            })
    }
}
