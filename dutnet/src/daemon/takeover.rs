//! Taking a DUT interface over, idempotently: each call brings the host to
//! the desired state and changes only what differs, journaling how to undo a
//! change before making it. The reconcile loop calls it again after link
//! events, so a re-plugged USB NIC is configured again.
use ipnet::Ipv4Net;
use tracing::info;

use crate::{
    config::{NatMode, Network},
    host::{
        journal::{Journal, UndoStep},
        netmgr, sysctl,
    },
    netlink::{Ipv4Address, Link, Netlink},
};

/// The bring-up step of a network that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("network `{network}`: {step} failed: {message}")]
pub struct TakeoverError {
    pub network: String,
    pub step: &'static str,
    pub message: String,
}

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
/// (yet): nothing was changed.
pub async fn apply(
    net: &Network,
    netlink: &Netlink,
    journal: &mut Journal,
) -> Result<Option<TakenOver>, TakeoverError> {
    let fail = |step: &'static str| {
        let network = net.name.clone();
        move |e: &dyn std::fmt::Display| TakeoverError {
            network: network.clone(),
            step,
            message: e.to_string(),
        }
    };
    let Some(link) = netlink
        .link_by_name(&net.interface)
        .await
        .map_err(|e| fail("finding the DUT interface")(&e))?
    else {
        return Ok(None);
    };
    let upstream = resolve_upstream(net, netlink)
        .await
        .map_err(|e| fail("finding the upstream interface")(&e))?;

    if !journal.has(&UndoStep::NmManaged {
        interface: net.interface.clone(),
    }) && netmgr::manages(&net.interface)
    {
        let step = UndoStep::NmManaged {
            interface: net.interface.clone(),
        };
        journal
            .record(&net.name, step)
            .map_err(|e| fail("journaling")(&e))?;
        netmgr::set_managed(&net.interface, false);
        info!(network = %net.name, interface = %net.interface, "marked unmanaged for NetworkManager");
    }

    let wanted = [gateway_address(net)];
    let current = netlink
        .exact_ipv4_addresses(link.index)
        .await
        .map_err(|e| fail("reading the DUT interface's addresses")(&e))?;
    journal
        .record(
            &net.name,
            UndoStep::Ipv4Addresses {
                interface: net.interface.clone(),
                addresses: current.clone(),
            },
        )
        .map_err(|e| fail("journaling")(&e))?;
    if current.iter().map(Ipv4Address::net).ne(wanted) {
        netlink
            .replace_ipv4_addresses(link.index, &wanted.map(Ipv4Address::with_broadcast))
            .await
            .map_err(|e| fail("setting the gateway address")(&e))?;
        info!(network = %net.name, interface = %net.interface, address = %wanted[0], "gateway address set");
    }

    if !link.up {
        journal
            .record(
                &net.name,
                UndoStep::LinkDown {
                    interface: net.interface.clone(),
                },
            )
            .map_err(|e| fail("journaling")(&e))?;
        netlink
            .set_up(&link, true)
            .await
            .map_err(|e| fail("setting the DUT interface up")(&e))?;
        info!(network = %net.name, interface = %net.interface, "link up");
    }

    // Forwarding only where dutnet needs it, never the global ip_forward; in
    // `disabled` mode the DUT interface must not forward at all.
    let dut_forwarding = if net.nat_mode == NatMode::Disabled {
        "0"
    } else {
        "1"
    };
    set_sysctl(
        journal,
        &net.name,
        &sysctl::forwarding_key(&net.interface),
        dut_forwarding,
    )
    .map_err(|e| fail("setting forwarding on the DUT interface")(&e))?;
    if let Some(upstream) = &upstream {
        // Shared by every network using this upstream: undone at full teardown.
        set_sysctl(journal, "", &sysctl::forwarding_key(&upstream.name), "1")
            .map_err(|e| fail("setting forwarding on the upstream interface")(&e))?;
    }
    Ok(Some(TakenOver { link, upstream }))
}

pub fn set_sysctl(
    journal: &mut Journal,
    network: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let current = sysctl::read(key).map_err(|e| e.to_string())?;
    journal
        .record(
            network,
            UndoStep::Sysctl {
                key: key.to_owned(),
                value: current.clone(),
            },
        )
        .map_err(|e| e.to_string())?;
    if current != value {
        sysctl::write(key, value).map_err(|e| e.to_string())?;
        info!(%key, %value, "sysctl set");
    }
    Ok(())
}

/// The configured upstream, or the default route's interface. None when NAT
/// is disabled (nothing is forwarded).
pub async fn resolve_upstream(net: &Network, netlink: &Netlink) -> Result<Option<Link>, String> {
    if net.nat_mode == NatMode::Disabled {
        return Ok(None);
    }
    let link = match &net.upstream_interface {
        Some(name) => netlink
            .link_by_name(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("upstream_interface `{name}` does not exist"))?,
        None => {
            let index = netlink
                .default_route_interface()
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    "there is no IPv4 default route to pick the upstream from; set `upstream_interface`".to_owned()
                })?;
            netlink
                .link_by_index(index)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the default route's interface (index {index}) vanished"))?
        }
    };
    if link.name == net.interface {
        return Err(format!(
            "the upstream interface is the DUT interface `{}`; set `upstream_interface`",
            link.name
        ));
    }
    Ok(Some(link))
}
