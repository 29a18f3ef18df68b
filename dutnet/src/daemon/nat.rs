//! From a network's configuration to what the datapath does for it.
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::{
    config::{NatMode, Network},
    datapath::{
        DutNetwork, NatPlan, PublicAddress, expiry::FlowTimeouts, nft::FallbackNetwork,
        ports::PortPlan,
    },
    host::journal::{Journal, UndoStep},
    netlink::{Link, Netlink},
};

/// How often idle flows are looked for: often enough that a flow outlives its
/// timeout by at most half of it, never more than every 10 s (a sweep reads
/// the whole table).
pub fn sweep_interval<'a>(networks: impl Iterator<Item = &'a Network>) -> Duration {
    networks
        .map(|n| n.udp_timeout / 2)
        .min()
        .unwrap_or(Duration::MAX)
        .clamp(Duration::from_secs(1), Duration::from_secs(10))
}

pub fn timeouts(network: &Network) -> FlowTimeouts {
    FlowTimeouts::with_udp(network.udp_timeout)
}

/// The datapath's view of `network`, whose DUT interface was taken over with
/// `upstream` resolved. The masquerade address is the upstream's first IPv4
/// address.
pub async fn dut_network(
    network: &Network,
    upstream: Option<&Link>,
    netlink: &Netlink,
    ports: &PortPlan,
) -> Result<DutNetwork, String> {
    let nat = match (network.nat_mode, upstream) {
        (NatMode::Disabled, _) => NatPlan::Disabled,
        // 1:1 entries are translated by their own issue; until then every
        // DUT is masqueraded.
        (NatMode::Masquerade | NatMode::OneToOne, Some(upstream)) => {
            let addresses = netlink
                .ipv4_addresses(upstream.index)
                .await
                .map_err(|e| e.to_string())?;
            let external = addresses.first().map(|a| a.addr()).ok_or_else(|| {
                format!(
                    "the upstream interface `{}` has no IPv4 address to masquerade behind; \
                     give it one or set `upstream_interface`",
                    upstream.name
                )
            })?;
            NatPlan::Masquerade {
                upstream: upstream.name.clone(),
                external,
                ports: ports.fast_path.clone(),
            }
        }
        (NatMode::Masquerade | NatMode::OneToOne, None) => {
            return Err(
                "no upstream interface to masquerade through; set `upstream_interface`".to_owned(),
            );
        }
    };
    Ok(DutNetwork {
        iface: network.interface.clone(),
        gateway: network.gateway_ip,
        subnet: network.subnet,
        public: public_addresses(network),
        nat,
    })
}

/// The 1:1 mappings of `network` (none unless `nat_mode: 1to1`).
pub fn public_addresses(network: &Network) -> Vec<PublicAddress> {
    if network.nat_mode != NatMode::OneToOne {
        return Vec::new();
    }
    network
        .addresses
        .iter()
        .filter_map(|a| {
            a.public_ip.map(|public| PublicAddress {
                private: a.ip,
                public,
            })
        })
        .collect()
}

/// Puts every public address of `network` on its public interface (the
/// upstream unless `public_interface` says otherwise), so the exporter
/// answers ARP for it, with the prefix of that interface's own address (a
/// guessed /24 would install a bogus route). Idempotent; an address that
/// was there before dutnet is left there at exit.
pub async fn add_public_aliases(
    network: &Network,
    upstream: Option<&Link>,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<(), String> {
    let public = public_addresses(network);
    if public.is_empty() {
        return Ok(());
    }
    let link = match (&network.public_interface, upstream) {
        (Some(name), _) => netlink
            .link_by_name(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("public_interface `{name}` does not exist"))?,
        (None, Some(upstream)) => upstream.clone(),
        (None, None) => return Err("1:1 NAT needs an upstream interface".to_owned()),
    };
    let present = netlink
        .ipv4_addresses(link.index)
        .await
        .map_err(|e| e.to_string())?;
    for p in public {
        if present.iter().any(|a| a.addr() == p.public) {
            continue;
        }
        let prefix = present
            .iter()
            .find(|a| a.contains(&p.public))
            .map_or(32, Ipv4Net::prefix_len);
        let alias = Ipv4Net::new(p.public, prefix).map_err(|e| e.to_string())?;
        journal
            .record(
                &network.name,
                UndoStep::AddressAlias {
                    interface: link.name.clone(),
                    address: alias,
                },
            )
            .map_err(|e| e.to_string())?;
        netlink
            .add_address(link.index, alias)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(network = %network.name, interface = %link.name, address = %alias, private = %p.private, "public address added");
    }
    Ok(())
}

/// The fallback rules' view of `network`, whose upstream (`None` when NAT is
/// disabled) was resolved by the caller.
pub fn fallback_network(network: &Network, upstream: Option<String>) -> FallbackNetwork {
    FallbackNetwork {
        name: network.name.clone(),
        dut_interface: network.interface.clone(),
        subnet: network.subnet,
        upstream_interface: upstream,
        public: public_addresses(network),
    }
}
