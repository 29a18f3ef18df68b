//! `dutnet leases`: the DHCP leases the daemon handed out.
use anyhow::Result;
use dutnet::control::{Reply, Request, protocol::NatActivity};

use super::control::{Common, ask, or_dash, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::Leases {
        network: args.common.network.clone(),
    };
    let networks = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::Leases { networks }) => networks,
        Some(other) => return Err(unexpected(&other)),
    };
    println!(
        "{:<16} {:<17} {:<15} {:<24} {:<7} {:<12} {:<12} NAT",
        "NETWORK", "MAC", "IP", "HOSTNAME", "STATIC", "EXPIRES", "LAST ACK"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for lease in networks.iter().flat_map(|n| &n.leases) {
        println!(
            "{:<16} {:<17} {:<15} {:<24} {:<7} {:<12} {:<12} {}",
            lease.network,
            lease.mac,
            lease.ip,
            or_dash(lease.hostname.as_ref()),
            if lease.is_static { "yes" } else { "no" },
            format!("in {}s", lease.expires.saturating_sub(now)),
            lease.last_ack.map_or_else(
                || "-".to_owned(),
                |at| format!("{}s ago", now.saturating_sub(at))
            ),
            nat_column(lease.nat)
        );
    }
    Ok(())
}

/// `12 flows, sent 3s ago`, `idle` (no flow) or `-` (no fast path).
fn nat_column(nat: Option<NatActivity>) -> String {
    match nat {
        None => "-".to_owned(),
        Some(NatActivity {
            last_sent_secs_ago: None,
            ..
        }) => "idle".to_owned(),
        Some(NatActivity {
            flows,
            last_sent_secs_ago: Some(ago),
        }) => {
            let plural = if flows == 1 { "" } else { "s" };
            format!("{flows} flow{plural}, sent {ago}s ago")
        }
    }
}
