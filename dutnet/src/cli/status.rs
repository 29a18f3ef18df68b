//! `dutnet status`: what each network is doing now.
use anyhow::Result;
use dutnet::control::{Reply, Request};

use super::control::{Common, ask, or_dash, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::Status {
        network: args.common.network.clone(),
    };
    let networks = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::Status { networks }) => networks,
        Some(other) => return Err(unexpected(&other)),
    };
    for (i, n) in networks.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let state = if n.interface_up { "up" } else { "absent" };
        let running = |on: bool| if on { "running" } else { "stopped" };
        println!("network {}", n.name);
        println!("  interface   {} ({state})", n.interface);
        println!("  gateway     {}", n.gateway);
        println!("  subnet      {}", n.subnet);
        println!("  upstream    {}", or_dash(n.upstream.as_ref()));
        println!("  nat         {}", n.nat_mode);
        println!("  datapath    {}", n.datapath);
        let dhcp = if n.dhcp_enabled {
            running(n.dhcp_running)
        } else {
            "disabled"
        };
        println!("  dhcp        {dhcp}, {} leases", n.leases);
        println!(
            "  dns         {}, {} entries",
            running(n.dns_running),
            n.dns_entries
        );
        println!("  addresses   {}", n.addresses);
        println!("  flows       {}", n.flows);
    }
    Ok(())
}
