//! From a network's configuration to what the datapath does for it.
use std::{net::Ipv4Addr, ops::RangeInclusive, time::Duration};

use ipnet::Ipv4Net;

use crate::{
    config::{NatMode, Network},
    datapath::{
        DutNetwork, FlowLimits, NatPlan, PublicAddress, expiry::FlowTimeouts, filter::FilterPlan,
        nft::FallbackNetwork,
    },
    host::{HostChange, HostError, InterfaceProblem, LocalChange, journal::Journal},
    netlink::{Link, Netlink},
};

/// How often idle flows are looked for: every half of the shortest timeout of
/// any network, so that a flow outlives its timeout by at most half of it;
/// at most once a second (a sweep reads the whole table) and at least every
/// 10 s.
pub fn sweep_interval<'a>(networks: impl Iterator<Item = &'a Network>) -> Duration {
    networks
        .map(|n| n.nat_timeouts.shortest() / 2)
        .min()
        .unwrap_or(Duration::MAX)
        .clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// The network's share of the connection table, and one DUT's share of it.
pub fn flow_limits(network: &Network) -> FlowLimits {
    FlowLimits {
        flows: network.nat_table_size,
        per_dut: network.nat_flows_per_dut,
    }
}

/// The network's idle timeouts by flow state (`udp_timeout`, `nat_timeouts`).
pub fn timeouts(network: &Network) -> FlowTimeouts {
    network.nat_timeouts
}

/// The datapath's view of `network`: NAT through `upstream` (resolved at
/// takeover; `None` when NAT is disabled), hiding DUTs behind `external`
/// (the upstream's first IPv4 address, when it has one) with source ports
/// from `ports`.
pub fn dut_network(
    network: &Network,
    upstream: Option<&Link>,
    external: Option<Ipv4Addr>,
    ports: RangeInclusive<u16>,
    reply_mark: Option<u32>,
    routes: &[PolicyRoute],
) -> Result<DutNetwork, HostError> {
    let upstream = match (network.nat_mode, upstream) {
        (NatMode::Disabled, _) => None,
        (_, Some(upstream)) => Some(upstream.name.clone()),
        (_, None) => {
            return Err(HostError::new(
                "choosing the masquerade address",
                None,
                InterfaceProblem::NoUpstream,
            )
            .for_network(&network.name));
        }
    };
    // No address: the kernel's masquerade (nft) picks one per packet; the
    // fast path refuses to attach, saying so.
    let external = external.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let nat = match (network.nat_mode, upstream) {
        (NatMode::Masquerade, Some(upstream)) => NatPlan::Masquerade {
            upstream,
            external,
            ports,
        },
        (NatMode::OneToOne, Some(upstream)) => NatPlan::OneToOne {
            upstream,
            external,
            ports,
            public: with_routes(public_addresses(network), routes),
        },
        _ => NatPlan::Disabled,
    };
    Ok(DutNetwork {
        iface: network.interface.clone(),
        gateway: network.gateway_ip,
        subnet: network.subnet,
        reply_mark: reply_mark.unwrap_or(0),
        flows: flow_limits(network),
        nat,
        filter: filter_plan(network),
        local_ntp: network.local_ntp,
    })
}

/// The network's filter as the datapaths enforce it.
pub fn filter_plan(network: &Network) -> Option<FilterPlan> {
    network.filter.clone().map(|filter| FilterPlan {
        filter,
        udp_idle: network.nat_timeouts.udp,
        tcp_idle: network.nat_timeouts.tcp_established,
    })
}

/// Base of the marks and routing tables dutnet uses for replies ("du").
const REPLY_MARK_BASE: u32 = 0x6475_0000;

/// The reply mark (= routing table) of each network, by position: only for
/// networks whose subnet another network shares; the others need none.
pub fn reply_marks(networks: &[&Network]) -> Vec<Option<u32>> {
    networks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let shared = networks
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && other.subnet.trunc() == n.subnet.trunc());
            shared.then(|| REPLY_MARK_BASE + u32::try_from(i).unwrap_or(0xffff) + 1)
        })
        .collect()
}

/// Routes the exporter's replies to what DUT NIC `ifindex` handed the stack
/// back out of that NIC: the kernel reflects the mark onto replies, a rule
/// sends marked packets to table `mark`, which holds only this NIC's
/// connected route. Idempotent; journaled before each change.
pub async fn route_replies(
    network: &Network,
    mark: u32,
    ifindex: u32,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<(), HostError> {
    for key in ["net.ipv4.fwmark_reflect", "net.ipv4.tcp_fwmark_accept"] {
        journal
            .apply_local("", &LocalChange::sysctl(key, "1"))
            .map_err(|e| e.for_network(&network.name))?;
    }
    let route = HostChange::ReplyRoute {
        interface: network.interface.clone(),
        ifindex,
        mark,
        subnet: network.subnet.trunc(),
        gateway: network.gateway_ip,
    };
    journal.apply(&network.name, &route, netlink).await?;
    Ok(())
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
                vlan_id: a.vlan_id,
                ..PublicAddress::new(a.ip, public)
            })
        })
        .collect()
}

/// Where a 1:1 DUT's policy route (`public_gateway`) sends its traffic:
/// the interface the fast path must accept as its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRoute {
    pub private: Ipv4Addr,
    pub out_ifindex: u32,
}

/// `public` with the interface each one's policy route leaves by.
pub fn with_routes(mut public: Vec<PublicAddress>, routes: &[PolicyRoute]) -> Vec<PublicAddress> {
    for p in &mut public {
        if let Some(r) = routes.iter().find(|r| r.private == p.private) {
            p.out_ifindex = r.out_ifindex;
        }
    }
    public
}

/// The public interface of `network`: `public_interface`, else the upstream.
async fn public_link(
    network: &Network,
    upstream: Option<&Link>,
    netlink: &Netlink,
) -> Result<Link, HostError> {
    let step = "finding the public interface";
    let fail = |step, interface: Option<&str>, e: crate::host::HostCause| {
        HostError::new(step, interface, e).for_network(&network.name)
    };
    match (&network.public_interface, upstream) {
        (Some(name), _) => netlink
            .link_by_name(name)
            .await
            .map_err(|e| fail(step, Some(name), e.into()))?
            .ok_or_else(|| {
                fail(
                    step,
                    None,
                    InterfaceProblem::PublicMissing { name: name.clone() }.into(),
                )
            }),
        (None, Some(upstream)) => Ok(upstream.clone()),
        (None, None) => Err(fail(step, None, InterfaceProblem::NoPublicInterface.into())),
    }
}

/// The name of VLAN `vlan_id`'s sub-interface of `parent` (`eth0.905`, as
/// `ip link add link eth0 name eth0.905 type vlan id 905` would name it).
pub fn vlan_name(parent: &str, vlan_id: u16) -> String {
    format!("{parent}.{vlan_id}")
}

/// Creates the VLAN sub-interface of each `vlan_id` of `network`'s 1:1
/// entries (journaled, forwarding on), and returns where each policy
/// route (`public_gateway`) leaves: its VLAN's sub-interface, or the public
/// interface untagged. Idempotent. The routes themselves are set by
/// [`add_public_aliases`], once the public addresses are there.
pub async fn policy_links(
    network: &Network,
    upstream: Option<&Link>,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<Vec<PolicyRoute>, HostError> {
    let public = public_addresses(network);
    if public.iter().all(|p| p.vlan_id.is_none())
        && !network.addresses.iter().any(|a| a.public_gateway.is_some())
    {
        return Ok(Vec::new());
    }
    let parent = public_link(network, upstream, netlink).await?;
    let mut routes = Vec::new();
    for p in public {
        let link = match p.vlan_id {
            Some(vlan) => vlan_link(network, &parent, vlan, netlink, journal).await?,
            None => parent.clone(),
        };
        let routed = network
            .addresses
            .iter()
            .any(|a| a.ip == p.private && a.public_gateway.is_some());
        if routed {
            routes.push(PolicyRoute {
                private: p.private,
                out_ifindex: link.index,
            });
        }
    }
    Ok(routes)
}

/// VLAN `vlan`'s sub-interface of `parent`, created if missing, with
/// forwarding on (the kernel forwards what arrives on it to the DUT on
/// the nft datapath).
async fn vlan_link(
    network: &Network,
    parent: &Link,
    vlan: u16,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<Link, HostError> {
    let name = vlan_name(&parent.name, vlan);
    let fail = |step, e: crate::host::HostCause| {
        HostError::new(step, Some(&name), e).for_network(&network.name)
    };
    // IFNAMSIZ less its NUL.
    if name.len() > 15 {
        return Err(fail(
            "naming the VLAN sub-interface",
            InterfaceProblem::VlanNameTooLong { name: name.clone() }.into(),
        ));
    }
    let change = HostChange::VlanLink {
        parent: parent.clone(),
        name: name.clone(),
        vlan_id: vlan,
    };
    journal.apply(&network.name, &change, netlink).await?;
    let link = netlink
        .link_by_name(&name)
        .await
        .map_err(|e| fail("finding the VLAN sub-interface", e.into()))?
        .ok_or_else(|| {
            fail(
                "finding the VLAN sub-interface",
                InterfaceProblem::PublicMissing { name: name.clone() }.into(),
            )
        })?;
    if !link.up {
        journal
            .apply(
                &network.name,
                &HostChange::LinkUp { link: link.clone() },
                netlink,
            )
            .await?;
    }
    journal.apply_local(&network.name, &LocalChange::forwarding(&name, true))?;
    Ok(link)
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
) -> Result<(), HostError> {
    let public = public_addresses(network);
    if public.is_empty() {
        return Ok(());
    }
    let routes = policy_links(network, upstream, netlink, journal).await?;
    let parent = public_link(network, upstream, netlink).await?;
    for p in public {
        // On its VLAN's sub-interface (created above), as a /32: the
        // sub-interface has no address of its own to take a prefix from.
        let link = match p.vlan_id {
            Some(vlan) => {
                let name = vlan_name(&parent.name, vlan);
                netlink
                    .link_by_name(&name)
                    .await
                    .map_err(|e| {
                        HostError::new("finding the VLAN sub-interface", Some(&name), e)
                            .for_network(&network.name)
                    })?
                    .unwrap_or_else(|| parent.clone())
            }
            None => parent.clone(),
        };
        add_alias(network, &link, p, netlink, journal).await?;
        let entry = network.addresses.iter().find(|a| a.ip == p.private);
        if let (Some(entry), Some(route)) = (entry, routes.iter().find(|r| r.private == p.private))
            && let (Some(gateway), Some(table)) = (entry.public_gateway, entry.route_table())
        {
            let out = Link {
                index: route.out_ifindex,
                ..link.clone()
            };
            let table_change = HostChange::PolicyTable {
                table,
                gateway,
                out,
            };
            journal.apply(&network.name, &table_change, netlink).await?;
            let rule = HostChange::SourceRule {
                source: p.private,
                iif: network.interface.clone(),
                table,
            };
            journal.apply(&network.name, &rule, netlink).await?;
        }
    }
    Ok(())
}

/// Puts public address `p` on `link`, with the prefix of that link's own
/// address holding it (or /32).
async fn add_alias(
    network: &Network,
    link: &Link,
    p: PublicAddress,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<(), HostError> {
    let present = netlink.ipv4_addresses(link.index).await.map_err(|e| {
        HostError::new(
            "reading the public interface's addresses",
            Some(&link.name),
            e,
        )
        .for_network(&network.name)
    })?;
    if present.iter().any(|a| a.addr() == p.public) {
        return Ok(());
    }
    let prefix = present
        .iter()
        .find(|a| a.contains(&p.public))
        .map_or(32, Ipv4Net::prefix_len);
    // A prefix taken from an address of the kernel's is at most 32.
    let alias = Ipv4Net::new(p.public, prefix).unwrap_or_else(|_| p.public.into());
    let change = HostChange::AddressAlias {
        link: link.clone(),
        address: alias,
    };
    if journal.apply(&network.name, &change, netlink).await? {
        tracing::info!(network = %network.name, interface = %link.name, address = %alias, private = %p.private, "public address added");
    }
    Ok(())
}

/// The VLAN sub-interfaces `network`'s policy-routed 1:1 DUTs leave by,
/// each once (the public interface is `upstream` unless `public_interface`).
fn vlan_interfaces(network: &Network, upstream: Option<&str>) -> Vec<String> {
    let Some(parent) = network.public_interface.as_deref().or(upstream) else {
        return Vec::new();
    };
    let mut names: Vec<String> = public_addresses(network)
        .iter()
        .filter_map(|p| p.vlan_id.map(|v| vlan_name(parent, v)))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The fallback rules' view of `network`, whose upstream (`None` when NAT is
/// disabled) was resolved by the caller.
pub fn fallback_network(network: &Network, upstream: Option<String>) -> FallbackNetwork {
    FallbackNetwork {
        name: network.name.clone(),
        dut_interface: network.interface.clone(),
        subnet: network.subnet,
        vlan_interfaces: vlan_interfaces(network, upstream.as_deref()),
        upstream_interface: upstream,
        public: public_addresses(network),
        filter: network.filter.clone(),
        ntp_redirect: network.local_ntp.then_some(network.gateway_ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(subnet: &str) -> Network {
        let yaml = format!("interface: dn-x\nsubnet: {subnet}\n");
        crate::config::parse_str(&yaml).unwrap().networks.remove(0)
    }

    #[test]
    fn flow_limits_are_the_configured_shares() {
        let yaml = "interface: dn-x\nnat_table_size: 4096\nnat_flows_per_dut: 100\n";
        let net = crate::config::parse_str(yaml).unwrap().networks.remove(0);
        assert_eq!(
            flow_limits(&net),
            FlowLimits {
                flows: 4096,
                per_dut: 100
            }
        );
        assert_eq!(
            flow_limits(&network("10.0.0.0/24")),
            FlowLimits::new(16_384)
        );
    }

    #[test]
    fn timeouts_are_the_configured_ones() {
        let yaml = "interface: dn-x\nudp_timeout: 5m\nnat_timeouts: {tcp_close: 3s}\n";
        let net = crate::config::parse_str(yaml).unwrap().networks.remove(0);
        let t = timeouts(&net);
        assert_eq!(
            (t.udp, t.tcp_close, t.icmp),
            (
                Duration::from_secs(300),
                Duration::from_secs(3),
                Duration::from_secs(60)
            )
        );
    }

    #[test]
    fn the_sweep_follows_the_shortest_timeout_of_any_network() {
        let with = |extra: &str| {
            let yaml = format!("interface: dn-x\n{extra}");
            crate::config::parse_str(&yaml).unwrap().networks.remove(0)
        };
        // The default tcp_close (10 s) is the shortest: every 5 s.
        let default = with("");
        assert_eq!(
            sweep_interval([&default].into_iter()),
            Duration::from_secs(5)
        );
        let short = with("nat_timeouts: {unreplied: 4s}\n");
        assert_eq!(
            sweep_interval([&default, &short].into_iter()),
            Duration::from_secs(2)
        );
        // Never more often than every second, never rarer than every 10 s.
        let shortest = with("nat_timeouts: {icmp: 1s}\n");
        assert_eq!(
            sweep_interval([&shortest].into_iter()),
            Duration::from_secs(1)
        );
        let long = with(
            "udp_timeout: 1h\nnat_timeouts: {unreplied: 1h, icmp: 1h, tcp_syn: 1h, tcp_fin_wait: 1h, tcp_time_wait: 1h, tcp_close: 1h}\n",
        );
        assert_eq!(sweep_interval([&long].into_iter()), Duration::from_secs(10));
        assert_eq!(sweep_interval([].into_iter()), Duration::from_secs(10));
    }

    #[test]
    fn only_networks_sharing_a_subnet_get_a_reply_mark() {
        let a = network("192.168.100.0/24");
        let b = network("192.168.100.0/24");
        let c = network("192.168.101.0/24");
        let marks = reply_marks(&[&a, &b, &c]);
        assert!(marks[0].is_some() && marks[1].is_some());
        assert_ne!(marks[0], marks[1]);
        assert_eq!(marks[2], None);
    }
}
