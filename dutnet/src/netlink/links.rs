//! The rtnetlink connection, links, the default route, and link/address
//! events.
use std::net::Ipv4Addr;

use futures::{StreamExt as _, TryStreamExt as _, channel::mpsc::UnboundedReceiver};
use rtnetlink::{
    Handle, LinkUnspec, RouteMessageBuilder,
    packet_core::NetlinkMessage,
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkFlags, LinkMessage},
        route::{RouteAttribute, RouteMessage},
    },
    sys::{AsyncSocket as _, SocketAddr},
};

/// A netlink request that failed, naming what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {call} ({subject}) failed: {source}")]
pub struct NetlinkError {
    pub call: &'static str,
    pub subject: String,
    #[source]
    pub source: std::io::Error,
}

pub(super) fn error(
    call: &'static str,
    subject: impl ToString,
    source: impl std::fmt::Display,
) -> NetlinkError {
    NetlinkError {
        call,
        subject: subject.to_string(),
        source: std::io::Error::other(source.to_string()),
    }
}

/// What the controller needs to know about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
}

/// An rtnetlink connection of the daemon.
#[derive(Clone, Debug)]
pub struct Netlink {
    pub(super) handle: Handle,
}

/// EEXIST / ENOENT / ENODEV as rtnetlink reports them.
pub(super) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

impl Netlink {
    /// Opens a connection; its I/O task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| error("open socket", "rtnetlink", e))?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The link called `name`, if it exists.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let request = self.handle.link().get().match_name(name.to_owned());
        first_link(request.execute(), name).await
    }

    /// The link with index `index`, if it exists.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, NetlinkError> {
        first_link(self.handle.link().get().match_index(index).execute(), index).await
    }

    /// Sets the administrative state of `link`.
    pub async fn set_up(&self, link: &Link, up: bool) -> Result<(), NetlinkError> {
        let builder = LinkUnspec::new_with_index(link.index);
        let message = if up { builder.up() } else { builder.down() }.build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| {
                error(
                    if up { "set link up" } else { "set link down" },
                    &link.name,
                    e,
                )
            })
    }

    /// The IPv4 routes a get-route `request` returns.
    pub(super) async fn ipv4_routes(
        &self,
        request: RouteMessage,
        subject: impl ToString,
    ) -> Result<Vec<RouteMessage>, NetlinkError> {
        self.handle
            .route()
            .get(request)
            .execute()
            .try_collect()
            .await
            .map_err(|e| error("list routes", subject, e))
    }

    /// The output interface of the main table's IPv4 default route.
    pub async fn default_route_interface(&self) -> Result<Option<u32>, NetlinkError> {
        let routes = self
            .ipv4_routes(RouteMessageBuilder::<Ipv4Addr>::new().build(), "ipv4")
            .await?;
        Ok(routes
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0 && r.header.table == 254)
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(index) => Some(*index),
                    _ => None,
                })
            }))
    }
}

/// The first link of a get-link reply; "no such device" is `None`.
async fn first_link(
    links: impl futures::Stream<Item = Result<LinkMessage, rtnetlink::Error>>,
    subject: impl ToString,
) -> Result<Option<Link>, NetlinkError> {
    let mut links = std::pin::pin!(links);
    match links.try_next().await {
        Ok(message) => Ok(message.as_ref().map(link_from)),
        Err(e) if matches!(errno(&e), Some(libc::ENODEV | libc::ENOENT)) => Ok(None),
        Err(e) => Err(error("get link", subject, e)),
    }
}

fn link_from(message: &LinkMessage) -> Link {
    let name = message
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default();
    Link {
        index: message.header.index,
        name,
        up: message.header.flags.contains(LinkFlags::Up),
    }
}

/// A stream that yields whenever a link or an IPv4 address changes (added,
/// removed, up/down): the reconcile loop's trigger.
pub fn link_events() -> Result<impl futures::Stream<Item = ()> + Unpin, NetlinkError> {
    let (mut connection, _handle, messages) =
        rtnetlink::new_connection().map_err(|e| error("open socket", "rtnetlink events", e))?;
    let groups = rtnetlink::constants::RTMGRP_LINK | rtnetlink::constants::RTMGRP_IPV4_IFADDR;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .map_err(|e| error("subscribe", "link and address events", e))?;
    tokio::spawn(connection);
    let messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)> = messages;
    Ok(messages.map(|_| ()))
}
