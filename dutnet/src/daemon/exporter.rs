//! What a network needs from the exporter host: taking its DUT interface
//! over, policy routing for replies, public aliases, the upstream's address,
//! and its DHCP/DNS/TFTP sockets. A trait, so the network logic is tested
//! without root against a fake; [`SystemExporter`] is the real host, every
//! change journaled before it is made.
use std::net::Ipv4Addr;

use tracing::warn;

use super::{DaemonError, nat, servers::Servers, takeover};
use crate::{
    config::Network,
    host::{
        journal::{Journal, UndoStep},
        restore,
    },
    netlink::{Link, Netlink},
    state::paths::Paths,
};

pub use super::takeover::TakenOver;

/// The host side of one network's life.
pub trait Exporter {
    /// Takes `network`'s DUT interface over. `None`: it does not exist (yet).
    /// `known`: the index of the link the network already took over, whose
    /// one-time steps are not repeated.
    async fn take_over(
        &mut self,
        network: &Network,
        known: Option<u32>,
    ) -> Result<Option<TakenOver>, DaemonError>;

    /// Sends the exporter's replies to what DUT NIC `ifindex` handed the
    /// stack back out of that NIC (networks sharing a subnet).
    async fn route_replies(
        &mut self,
        network: &Network,
        mark: u32,
        ifindex: u32,
    ) -> Result<(), DaemonError>;

    /// The address masquerade hides DUTs behind: the upstream's first IPv4
    /// address.
    async fn masquerade_address(&self, upstream: &Link) -> Result<Option<Ipv4Addr>, DaemonError>;

    /// Puts each 1:1 public address of `network` on its public interface.
    async fn add_public_aliases(
        &mut self,
        network: &Network,
        upstream: Option<&Link>,
    ) -> Result<(), DaemonError>;

    /// Takes `public` off the public interface, if dutnet put it there.
    async fn remove_public_alias(&mut self, network: &str, public: Ipv4Addr);

    /// Creates the VLAN sub-interfaces of `network`'s 1:1 entries and says
    /// where each policy route leaves ([`nat::policy_links`]).
    async fn policy_links(
        &mut self,
        network: &Network,
        upstream: Option<&Link>,
    ) -> Result<Vec<nat::PolicyRoute>, DaemonError>;

    /// Removes the policy rule of DUT `private`, if dutnet added one.
    async fn remove_policy_rule(&mut self, network: &str, private: Ipv4Addr);

    /// The upstream `network` would use now (for status).
    async fn resolve_upstream(&self, network: &Network) -> Option<Link>;

    /// Starts the DHCP, DNS and TFTP servers of `network`.
    async fn start_servers(&self, network: &Network, paths: &Paths)
    -> Result<Servers, DaemonError>;
}

/// The real exporter: netlink, sysctls and the undo journal.
pub struct SystemExporter {
    pub netlink: Netlink,
    pub journal: Journal,
}

impl Exporter for SystemExporter {
    async fn take_over(
        &mut self,
        network: &Network,
        known: Option<u32>,
    ) -> Result<Option<TakenOver>, DaemonError> {
        Ok(takeover::apply(network, known, &self.netlink, &mut self.journal).await?)
    }

    async fn route_replies(
        &mut self,
        network: &Network,
        mark: u32,
        ifindex: u32,
    ) -> Result<(), DaemonError> {
        Ok(nat::route_replies(network, mark, ifindex, &self.netlink, &mut self.journal).await?)
    }

    async fn masquerade_address(&self, upstream: &Link) -> Result<Option<Ipv4Addr>, DaemonError> {
        let addresses = self.netlink.ipv4_addresses(upstream.index).await?;
        Ok(addresses.first().map(ipnet::Ipv4Net::addr))
    }

    async fn add_public_aliases(
        &mut self,
        network: &Network,
        upstream: Option<&Link>,
    ) -> Result<(), DaemonError> {
        Ok(nat::add_public_aliases(network, upstream, &self.netlink, &mut self.journal).await?)
    }

    async fn remove_public_alias(&mut self, network: &str, public: Ipv4Addr) {
        let alias = self.journal.entries().iter().find_map(|e| match &e.step {
            UndoStep::AddressAlias { interface, address }
                if e.network == network && address.addr() == public =>
            {
                Some((interface.clone(), *address))
            }
            _ => None,
        });
        let Some((interface, address)) = alias else {
            return;
        };
        let step = UndoStep::AddressAlias {
            interface: interface.clone(),
            address,
        };
        if let Err(e) = restore::undo_step(&step, &self.netlink).await {
            warn!(%network, %interface, %address, error = %e, "removing a public address failed");
        }
    }

    async fn policy_links(
        &mut self,
        network: &Network,
        upstream: Option<&Link>,
    ) -> Result<Vec<nat::PolicyRoute>, DaemonError> {
        Ok(nat::policy_links(network, upstream, &self.netlink, &mut self.journal).await?)
    }

    async fn remove_policy_rule(&mut self, network: &str, private: Ipv4Addr) {
        let rules: Vec<UndoStep> = self
            .journal
            .entries()
            .iter()
            .filter(|e| {
                e.network == network
                    && matches!(&e.step, UndoStep::SourceRule { source, .. } if *source == private)
            })
            .map(|e| e.step.clone())
            .collect();
        for step in rules {
            if let Err(e) = restore::undo_step(&step, &self.netlink).await {
                warn!(%network, %private, error = %e, "removing a policy rule failed");
            }
        }
    }

    async fn resolve_upstream(&self, network: &Network) -> Option<Link> {
        takeover::resolve_upstream(network, &self.netlink)
            .await
            .ok()
            .flatten()
    }

    async fn start_servers(
        &self,
        network: &Network,
        paths: &Paths,
    ) -> Result<Servers, DaemonError> {
        Servers::start(network, paths).await
    }
}
