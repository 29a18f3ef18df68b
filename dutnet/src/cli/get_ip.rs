//! `dutnet get-ip MAC`: the address a DUT was leased.
use anyhow::Result;
use dutnet::control::{Reply, Request};

use super::control::{Common, ask, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The DUT's MAC address (`aa:bb:cc:dd:ee:ff`).
    mac: String,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::GetIp {
        network: args.common.network.clone(),
        mac: args.mac.clone(),
    };
    match ask(&args.common, &request)? {
        None => Ok(()),
        Some(Reply::Ip(lease)) => {
            println!("{}", lease.ip);
            Ok(())
        }
        Some(other) => Err(unexpected(&other)),
    }
}
