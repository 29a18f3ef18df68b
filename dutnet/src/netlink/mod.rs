//! Links, addresses and routes over rtnetlink (no `ip` subprocesses).
mod addresses;
mod links;
mod policy;
mod vlan;

pub use addresses::{Ipv4Address, monotonic_now};
pub use links::{Link, Netlink, NetlinkError, link_events};
pub use vlan::SOURCE_RULE_PRIORITY;
