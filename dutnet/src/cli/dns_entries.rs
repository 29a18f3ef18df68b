//! `dutnet dns-entries`: the names each network's DNS server answers.
use anyhow::Result;
use dutnet::control::{Reply, Request};

use super::control::{Common, ask, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::DnsEntries {
        network: args.common.network.clone(),
    };
    let networks = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::DnsEntries { networks }) => networks,
        Some(other) => return Err(unexpected(&other)),
    };
    println!("{:<16} {:<32} {:<15} KIND", "NETWORK", "HOSTNAME", "IP");
    for n in &networks {
        for (records, kind) in [(&n.entries, "entry"), (&n.hosts, "dut")] {
            for r in records {
                println!("{:<16} {:<32} {:<15} {kind}", n.network, r.hostname, r.ip);
            }
        }
    }
    Ok(())
}
