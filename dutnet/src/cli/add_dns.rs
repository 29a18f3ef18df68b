//! `dutnet add-dns HOST IP`: a custom DNS record, at run time.
use anyhow::Result;
use dutnet::control::Request;

use super::control::{Common, ask, print_done};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The name to answer, e.g. `controller.lab.local`.
    hostname: String,
    /// The IPv4 address to answer with.
    ip: String,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::AddDns {
        network: args.common.network.clone(),
        hostname: args.hostname.clone(),
        ip: args.ip.clone(),
    };
    print_done(ask(&args.common, &request)?)
}
