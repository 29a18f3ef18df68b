//! `dutnet nat-rules`: what the datapath translates now. Networks on the
//! nft datapath are translated by dutnet's nftables table alone, so its
//! ruleset is printed after them (with `--json` it is always there, as the
//! string `ruleset`: on eBPF it holds what the fast path punts).
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
    let (networks, ruleset) = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::NatRules { networks, ruleset }) => (networks, ruleset),
        Some(other) => return Err(unexpected(&other)),
    };
    let range = |r: Option<PortRange>| or_dash(r.map(|r| format!("{}-{}", r.first, r.last)));
    for (i, n) in networks.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("network {}", n.network);
        let on_nft = n.datapath == "nft";
        println!("  nat            {}", n.nat_mode);
        println!(
            "  datapath       {}",
            or_dash(Some(&n.datapath).filter(|d| !d.is_empty()))
        );
        println!("  upstream       {}", or_dash(n.upstream.as_ref()));
        println!("  masquerade as  {}", or_dash(n.masquerade_address));
        if on_nft {
            let ports = match n.fallback_ports {
                Some(_) => range(n.fallback_ports),
                None if n.nat_mode == "disabled" => "-".to_owned(),
                None => "the DUT's own when free, else the kernel's choice".to_owned(),
            };
            println!("  ports          {ports} (nftables masquerade)");
            println!("  active flows   - (in conntrack: `conntrack -L`)");
        } else {
            println!("  ports          {} (fast path)", range(n.ports));
            println!(
                "                 {} (kernel fallback)",
                range(n.fallback_ports)
            );
            println!("  active flows   {}", n.active_flows);
        }
        if n.mappings.is_empty() {
            println!("  1:1            -");
        }
        for m in &n.mappings {
            let vlan = m.vlan_id.map_or_else(String::new, |v| format!(" vlan {v}"));
            let via = m
                .public_gateway
                .map_or_else(String::new, |g| format!(" via {g}"));
            println!("  1:1            {} <-> {}{vlan}{via}", m.private, m.public);
        }
    }
    if networks.iter().any(|n| n.datapath == "nft") {
        println!();
        match ruleset {
            Some(text) => {
                println!("nftables ruleset (nft list table ip dutnet):");
                print!("{text}");
            }
            None => println!("nftables ruleset: cannot list it (see the dutnet log)"),
        }
    }
    Ok(())
}
