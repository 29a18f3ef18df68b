//! `dutnet remove-dns HOST`: drop a custom DNS record until `dutnet down`.
use anyhow::Result;
use dutnet::control::Request;

use super::control::{Common, ask, print_done};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The record's name.
    hostname: String,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::RemoveDns {
        network: args.common.network.clone(),
        hostname: args.hostname.clone(),
    };
    print_done(ask(&args.common, &request)?)
}
