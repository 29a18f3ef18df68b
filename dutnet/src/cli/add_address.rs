//! `dutnet add-address IP`: a DUT address entry, at run time (it replaces
//! the entry of the same address, as jumpstarter's does).
use anyhow::Result;
use dutnet::control::Request;

use super::control::{Common, ask, print_done};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The DUT's address inside the network's subnet.
    ip: String,
    /// Give this MAC the address as a static DHCP lease.
    #[arg(long, short = 'm')]
    mac: Option<String>,
    /// Answer this name in DNS (and send it to the DUT by DHCP).
    #[arg(long, short = 'n')]
    hostname: Option<String>,
    /// With `nat_mode: 1to1`: the DUT's own public address.
    #[arg(long, value_name = "IP")]
    public_ip: Option<String>,
    /// With --public-ip: its traffic leaves tagged on this VLAN (1-4094)
    /// of the public interface.
    #[arg(long, value_name = "ID")]
    vlan_id: Option<u64>,
    /// With --public-ip: route its traffic to this router (the VLAN's).
    #[arg(long, value_name = "IP")]
    public_gateway: Option<String>,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::AddAddress {
        network: args.common.network.clone(),
        ip: args.ip.clone(),
        mac: args.mac.clone(),
        hostname: args.hostname.clone(),
        public_ip: args.public_ip.clone(),
        vlan_id: args.vlan_id,
        public_gateway: args.public_gateway.clone(),
    };
    print_done(ask(&args.common, &request)?)
}
