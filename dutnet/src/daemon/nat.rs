//! From a network's configuration to what the datapath does for it.
use std::time::Duration;

use crate::{
    config::{NatMode, Network},
    datapath::{DutNetwork, NatPlan, expiry::FlowTimeouts, nft::FallbackNetwork, ports::PortPlan},
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
        nat,
    })
}

/// The fallback rules' view of `network`, whose upstream (`None` when NAT is
/// disabled) was resolved by the caller.
pub fn fallback_network(network: &Network, upstream: Option<String>) -> FallbackNetwork {
    FallbackNetwork {
        name: network.name.clone(),
        dut_interface: network.interface.clone(),
        subnet: network.subnet,
        upstream_interface: upstream,
    }
}
