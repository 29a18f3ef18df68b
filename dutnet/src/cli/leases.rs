//! `dutnet leases`: the DHCP leases the daemon handed out.
use anyhow::Result;
use dutnet::control::{Reply, Request};

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
        "{:<16} {:<17} {:<15} {:<24} {:<7} EXPIRES",
        "NETWORK", "MAC", "IP", "HOSTNAME", "STATIC"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for lease in networks.iter().flat_map(|n| &n.leases) {
        println!(
            "{:<16} {:<17} {:<15} {:<24} {:<7} in {}s",
            lease.network,
            lease.mac,
            lease.ip,
            or_dash(lease.hostname.as_ref()),
            if lease.is_static { "yes" } else { "no" },
            lease.expires.saturating_sub(now)
        );
    }
    Ok(())
}
