//! Putting the host back: replaying undo journal entries, newest first.
use tracing::{info, warn};

use crate::{
    datapath::nft,
    host::{
        journal::{Entry, UndoStep},
        netmgr, sysctl,
    },
    netlink::{Ipv4Address, Netlink},
};

/// Undoes `entries` newest first. Best effort: a step that fails is logged and
/// returned, the others still run (an interface that is gone has nothing to
/// restore).
pub async fn undo(entries: &[Entry], netlink: &Netlink) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in entries.iter().rev() {
        if let Err(problem) = undo_step(&entry.step, netlink).await {
            warn!(network = %entry.network, step = ?entry.step, %problem, "undo step failed");
            problems.push(problem);
        }
    }
    problems
}

/// Undoes one step (also used at run time, e.g. to take a public alias away).
pub(super) async fn undo_step(step: &UndoStep, netlink: &Netlink) -> Result<(), String> {
    match step {
        UndoStep::Ipv4Addresses {
            interface,
            addresses,
        } => {
            let Some(link) = netlink
                .link_by_name(interface)
                .await
                .map_err(|e| e.to_string())?
            else {
                info!(%interface, "interface gone: no addresses to restore");
                return Ok(());
            };
            netlink
                .replace_ipv4_addresses(link.index, addresses)
                .await
                .map_err(|e| e.to_string())?;
            let restored: Vec<_> = addresses.iter().map(Ipv4Address::net).collect();
            info!(%interface, ?restored, "addresses restored");
        }
        UndoStep::LinkDown { interface } => {
            if let Some(link) = netlink
                .link_by_name(interface)
                .await
                .map_err(|e| e.to_string())?
            {
                netlink
                    .set_up(&link, false)
                    .await
                    .map_err(|e| e.to_string())?;
                info!(%interface, "link set down again");
            }
        }
        UndoStep::Sysctl { key, value } => match sysctl::write(key, value) {
            Ok(()) => info!(%key, %value, "sysctl restored"),
            // The interface (and so its sysctl) is gone.
            Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.to_string()),
        },
        UndoStep::NmManaged { interface } => {
            netmgr::set_managed(interface, true);
            info!(%interface, "handed back to NetworkManager");
        }
        UndoStep::AddressAlias { interface, address } => {
            let Some(link) = netlink
                .link_by_name(interface)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(());
            };
            netlink
                .remove_address(link.index, *address)
                .await
                .map_err(|e| e.to_string())?;
            info!(%interface, %address, "public address removed");
        }
        UndoStep::MarkRule { mark, table } => {
            netlink
                .remove_mark_rule(*mark, *table)
                .await
                .map_err(|e| e.to_string())?;
            netlink
                .flush_table(*table)
                .await
                .map_err(|e| e.to_string())?;
            info!(mark, table, "reply routing rule removed");
        }
        UndoStep::NftTable { table } => {
            nft::delete_table().map_err(|e| e.to_string())?;
            info!(%table, "nftables table deleted");
        }
        UndoStep::NftRules {
            family,
            table,
            chain,
            comment,
        } => {
            let chain = nft::docker::ForeignChain {
                family: family.clone(),
                table: table.clone(),
                chain: chain.clone(),
                // Unknown and not needed: removal goes by name and comment.
                handle: 0,
            };
            let removed = nft::docker::delete_rules(&chain, comment).map_err(|e| e.to_string())?;
            info!(%chain, %comment, removed, "rules removed from another table's chain");
        }
        UndoStep::PinDir { path } => match std::fs::remove_dir_all(path) {
            Ok(()) => info!(path = %path.display(), "pins removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", path.display())),
        },
    }
    Ok(())
}
