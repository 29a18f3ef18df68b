//! `dutnet ntp-status`: each network's local NTP server and the clock it
//! serves.
use anyhow::Result;
use dutnet::control::{Reply, Request};

use super::control::{Common, ask, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::NtpStatus {
        network: args.common.network.clone(),
    };
    let (networks, clock) = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::NtpStatus { networks, clock }) => (networks, clock),
        Some(other) => return Err(unexpected(&other)),
    };
    println!(
        "clock: {} (LI {}, stratum {}), offset {} ns, maxerror {} us, esterror {} us",
        if clock.synchronized {
            "synchronized"
        } else {
            "unsynchronized"
        },
        clock.leap,
        clock.stratum,
        clock.offset_ns,
        clock.maxerror_us,
        clock.esterror_us
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for n in &networks {
        let c = n.counters.unwrap_or_default();
        println!(
            "{}: enabled {}, running {}, served {}, kod {}, ignored {}, clients {}",
            n.network,
            n.enabled,
            n.running,
            c.requests_served,
            c.kod_sent,
            c.ignored,
            n.clients.len()
        );
        for client in &n.clients {
            println!(
                "  {:<15} {} requests, last {}s ago{}",
                client.ip,
                client.requests,
                now.saturating_sub(client.last_seen),
                if client.limited { ", rate-limited" } else { "" }
            );
        }
    }
    Ok(())
}
