//! `dutnet remove-address IP`: drop an address entry (from the config file
//! or added at run time) until `dutnet down`.
use anyhow::Result;
use dutnet::control::Request;

use super::control::{Common, ask, print_done};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The entry's DUT address.
    ip: String,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::RemoveAddress {
        network: args.common.network.clone(),
        ip: args.ip.clone(),
    };
    print_done(ask(&args.common, &request)?)
}
