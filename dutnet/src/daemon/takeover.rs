//! Taking a DUT interface over, idempotently: each call brings the host to
//! the desired state and changes only what differs, journaling how to undo a
//! change before making it (see `host::change`). The reconcile loop calls it
//! again after link events, so a re-plugged USB NIC is configured again.
use ipnet::Ipv4Net;

use crate::{
    config::{NatMode, Network},
    host::{HostCause, HostChange, HostError, InterfaceProblem, LocalChange, journal::Journal},
    netlink::{Link, Netlink},
};

/// What a successful takeover found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakenOver {
    pub link: Link,
    /// The upstream interface (None when NAT is disabled).
    pub upstream: Option<Link>,
}

/// The one address dutnet leaves on the DUT interface.
#[must_use]
pub fn gateway_address(net: &Network) -> Ipv4Net {
    // The model guarantees the gateway lies in the subnet.
    Ipv4Net::new(net.gateway_ip, net.subnet.prefix_len()).unwrap_or(net.subnet)
}

/// Takes `net`'s interface over. `Ok(None)`: the interface does not exist
/// (yet): nothing was changed. `known`: the index of the link already taken
/// over, whose NetworkManager state is not asked again.
pub async fn apply(
    net: &Network,
    known: Option<u32>,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<Option<TakenOver>, HostError> {
    let Some(link) = prepare(net, known, netlink, journal).await? else {
        return Ok(None);
    };
    let upstream = resolve_upstream(net, netlink).await?;

    // Forwarding only where dutnet needs it, never the global ip_forward; in
    // `disabled` mode the DUT interface must not forward at all.
    let dut_forwarding = net.nat_mode != NatMode::Disabled;
    journal.apply_local(
        &net.name,
        &LocalChange::forwarding(&net.interface, dut_forwarding),
    )?;
    if let Some(upstream) = &upstream {
        // Shared by every network using this upstream: undone at full teardown.
        journal
            .apply_local("", &LocalChange::forwarding(&upstream.name, true))
            .map_err(|e| e.for_network(&net.name))?;
    }
    Ok(Some(TakenOver { link, upstream }))
}

/// The steps of [`apply`] that make nothing forward: NetworkManager let go,
/// the gateway address on, the link up. Done while the eBPF programs load
/// (before the datapath and its leak guard exist); `apply` finds them done.
/// `Ok(None)`: the interface does not exist (yet).
pub async fn prepare(
    net: &Network,
    known: Option<u32>,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<Option<Link>, HostError> {
    let Some(link) = netlink.link_by_name(&net.interface).await.map_err(|e| {
        HostError::new("finding the DUT interface", Some(&net.interface), e).for_network(&net.name)
    })?
    else {
        return Ok(None);
    };
    // Asking NetworkManager costs two nmcli runs; the reconcile tick would
    // pay them every second for every network. A link NetworkManager was
    // told to leave stays left, so only a new link (a re-plugged NIC) is
    // asked.
    if known != Some(link.index) {
        journal.apply_local(
            &net.name,
            &LocalChange::NmUnmanaged {
                interface: net.interface.clone(),
            },
        )?;
    }
    let gateway = HostChange::GatewayAddress {
        link: link.clone(),
        address: gateway_address(net),
    };
    journal.apply(&net.name, &gateway, netlink).await?;
    let up = HostChange::LinkUp { link: link.clone() };
    journal.apply(&net.name, &up, netlink).await?;
    Ok(Some(link))
}

/// The configured upstream, or the default route's interface. None when NAT
/// is disabled (nothing is forwarded).
pub async fn resolve_upstream(net: &Network, netlink: &Netlink) -> Result<Option<Link>, HostError> {
    if net.nat_mode == NatMode::Disabled {
        return Ok(None);
    }
    let fail = |interface: Option<&str>, e: HostCause| {
        HostError::new("finding the upstream interface", interface, e).for_network(&net.name)
    };
    let link = match &net.upstream_interface {
        Some(name) => netlink
            .link_by_name(name)
            .await
            .map_err(|e| fail(Some(name), e.into()))?
            .ok_or_else(|| {
                fail(
                    None,
                    InterfaceProblem::UpstreamMissing { name: name.clone() }.into(),
                )
            })?,
        None => {
            let index = netlink
                .default_route_interface()
                .await
                .map_err(|e| fail(None, e.into()))?
                .ok_or_else(|| fail(None, InterfaceProblem::NoDefaultRoute.into()))?;
            netlink
                .link_by_index(index)
                .await
                .map_err(|e| fail(None, e.into()))?
                .ok_or_else(|| {
                    fail(
                        None,
                        InterfaceProblem::DefaultRouteVanished { index }.into(),
                    )
                })?
        }
    };
    if link.name == net.interface {
        return Err(fail(
            None,
            InterfaceProblem::UpstreamIsDut { name: link.name }.into(),
        ));
    }
    Ok(Some(link))
}
