//! `dutnet status`: what each network is doing now.
use anyhow::Result;
use dutnet::control::{Reply, Request, protocol::BootStatus};

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
        if !n.state.is_empty() {
            match &n.problem {
                Some(problem) => println!("  state       {}: {problem}", n.state),
                None => println!("  state       {}", n.state),
            }
        }
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
        println!("  dhcp        {dhcp}, {} leases", n.leases.len());
        println!(
            "  dns         {}, {} entries",
            running(n.dns_running),
            n.dns_entries.len()
        );
        println!("  addresses   {}", n.addresses);
        println!("  flows       {}", n.flows);
        if let Some(boot) = &n.boot {
            print_boot(boot);
        }
    }
    Ok(())
}

/// The boot lines: what DHCP hands out for booting, and the TFTP server.
fn print_boot(boot: &BootStatus) {
    let field =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
    let file = field(&boot.dhcp_options, "boot_file");
    let next = field(&boot.dhcp_options, "next_server");
    let rules = boot
        .dhcp_options
        .get("boot_rules")
        .and_then(|r| r.as_array())
        .map_or(0, Vec::len);
    println!(
        "  boot        file {}, next-server {}, {rules} rules, {} DUT overrides",
        or_dash(file.as_ref()),
        or_dash(next.as_ref()),
        boot.duts.len()
    );
    match (&boot.tftp_root, &boot.tftp) {
        (None, _) => println!("  tftp        off"),
        (Some(root), None) => println!("  tftp        {root} (stopped)"),
        (Some(root), Some(c)) => println!(
            "  tftp        {root}: {} ok, {} failed, {} refused, {} bytes",
            c.transfers_ok, c.transfers_failed, c.requests_refused, c.bytes_sent
        ),
    }
}
