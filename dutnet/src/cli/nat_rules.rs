//! `dutnet nat-rules`: what the datapath translates now.
use anyhow::Result;
use dutnet::control::{Reply, Request, protocol::PortRange};

use super::control::{Common, ask, or_dash, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::NatRules {
        network: args.common.network.clone(),
    };
    let networks = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::NatRules { networks }) => networks,
        Some(other) => return Err(unexpected(&other)),
    };
    let range = |r: Option<PortRange>| or_dash(r.map(|r| format!("{}-{}", r.first, r.last)));
    for (i, n) in networks.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("network {}", n.network);
        println!("  nat            {}", n.nat_mode);
        println!("  upstream       {}", or_dash(n.upstream.as_ref()));
        println!("  masquerade as  {}", or_dash(n.masquerade_address));
        println!("  ports          {} (fast path)", range(n.ports));
        println!(
            "                 {} (kernel fallback)",
            range(n.fallback_ports)
        );
        println!("  active flows   {}", n.active_flows);
        if n.mappings.is_empty() {
            println!("  1:1            -");
        }
        for m in &n.mappings {
            println!("  1:1            {} <-> {}", m.private, m.public);
        }
    }
    Ok(())
}
