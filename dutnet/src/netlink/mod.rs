//! Links, addresses and routes over rtnetlink (no `ip` subprocesses).
mod links;
mod policy;

pub use links::{Link, Netlink, NetlinkError, link_events};
