//! Policy routing for the exporter's own replies to DUTs.
//!
//! Several DUT NICs may carry the same subnet: the main table then holds the
//! same connected route once per NIC and the kernel sends every reply out of
//! the first. dutnet marks what a DUT NIC hands to the stack, the kernel
//! reflects the mark onto its replies (`fwmark_reflect`,
//! `tcp_fwmark_accept`), and one rule per NIC sends marked replies to a table
//! holding only that NIC's connected route.
use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use ipnet::Ipv4Net;
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::{
        route::{RouteScope, RouteType},
        rule::RuleAction,
    },
};

use super::links::{Netlink, NetlinkError, errno, error};

/// Preference of dutnet's rules: before the main table (32766).
pub const RULE_PRIORITY: u32 = 1000;

impl Netlink {
    /// `ip rule add fwmark <mark> lookup <table> pref 1000`; present is fine.
    pub async fn add_mark_rule(&self, mark: u32, table: u32) -> Result<(), NetlinkError> {
        let request = self
            .handle
            .rule()
            .add()
            .v4()
            .fw_mark(mark)
            .table_id(table)
            .priority(RULE_PRIORITY)
            .action(RuleAction::ToTable);
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(error(
                "add rule",
                format!("fwmark {mark:#x} table {table}"),
                e,
            )),
        }
    }

    /// Removes the rules [`Self::add_mark_rule`] added for `mark`.
    pub async fn remove_mark_rule(&self, mark: u32, table: u32) -> Result<(), NetlinkError> {
        let rules: Vec<_> = self
            .handle
            .rule()
            .get(rtnetlink::IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(|e| error("list rules", "ipv4", e))?;
        for rule in rules {
            let ours = rule.attributes.iter().any(|a| {
                matches!(a, rtnetlink::packet_route::rule::RuleAttribute::FwMark(m) if *m == mark)
            }) && rule.attributes.iter().any(|a| {
                matches!(a, rtnetlink::packet_route::rule::RuleAttribute::Table(t) if *t == table)
            });
            if ours {
                match self.handle.rule().del(rule).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::ENOENT) => {}
                    Err(e) => return Err(error("remove rule", format!("fwmark {mark:#x}"), e)),
                }
            }
        }
        Ok(())
    }

    /// Puts `subnet dev <ifindex> src <source>` into `table` (replacing it).
    pub async fn set_table_route(
        &self,
        table: u32,
        subnet: Ipv4Net,
        ifindex: u32,
        source: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(subnet.network(), subnet.prefix_len())
            .output_interface(ifindex)
            .pref_source(source)
            .scope(RouteScope::Link)
            .kind(RouteType::Unicast)
            .table_id(table)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| error("add route", format!("{subnet} table {table}"), e))
    }

    /// Removes every route of `table`.
    pub async fn flush_table(&self, table: u32) -> Result<(), NetlinkError> {
        let request = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(table)
            .build();
        let routes = self.ipv4_routes(request, format!("table {table}")).await?;
        for route in routes {
            // A table id above 255 is only in the Table attribute; the
            // header's byte then says RT_TABLE_COMPAT for every such table.
            let route_table = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    rtnetlink::packet_route::route::RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(route.header.table));
            let in_table = route_table == table;
            if !in_table {
                continue;
            }
            match self.handle.route().del(route).execute().await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(libc::ESRCH | libc::ENOENT | libc::ENODEV)) => {}
                Err(e) => return Err(error("remove route", format!("table {table}"), e)),
            }
        }
        Ok(())
    }
}
