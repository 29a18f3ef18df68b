//! `dutnet leases`: the DHCP leases the daemon handed out.
use anyhow::Result;
use dutnet::control::{Reply, Request, protocol::NatActivity};

use super::control::{Common, ask, or_dash, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::Leases {
        network: args.common.network.clone(),
    };
    let networks = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::Leases { networks }) => networks,
        Some(other) => return Err(unexpected(&other)),
    };
    println!(
        "{:<16} {:<17} {:<15} {:<24} {:<7} {:<32} {:<12} NAT",
        "NETWORK", "MAC", "IP", "HOSTNAME", "STATIC", "EXPIRES", "LAST ACK"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for lease in networks.iter().flat_map(|n| &n.leases) {
        println!(
            "{:<16} {:<17} {:<15} {:<24} {:<7} {:<32} {:<12} {}",
            lease.network,
            lease.mac,
            lease.ip,
            or_dash(lease.hostname.as_ref()),
            if lease.is_static { "yes" } else { "no" },
            expiry(lease.expires, now),
            lease.last_ack.map_or_else(
                || "-".to_owned(),
                |at| format!("{}s ago", now.saturating_sub(at))
            ),
            nat_column(lease.nat)
        );
    }
    Ok(())
}

/// When a lease ends, for people: `2026-12-03 20:59:12 UTC (in 11h59m)`,
/// or `expired 5m ago`.
fn expiry(expires: u64, now: u64) -> String {
    let at = utc(expires);
    if expires <= now {
        let ago = std::time::Duration::from_secs(now - expires);
        return format!(
            "{at} (expired {} ago)",
            dutnet::config::duration::format(ago)
        );
    }
    let left = std::time::Duration::from_secs(expires - now);
    format!("{at} (in {})", dutnet::config::duration::format(left))
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil
/// date from the day count, as in Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `12 flows, sent 3s ago`, `idle` (no flow) or `-` (no fast path).
fn nat_column(nat: Option<NatActivity>) -> String {
    match nat {
        None => "-".to_owned(),
        Some(NatActivity {
            last_sent_secs_ago: None,
            ..
        }) => "idle".to_owned(),
        Some(NatActivity {
            flows,
            last_sent_secs_ago: Some(ago),
        }) => {
            let plural = if flows == 1 { "" } else { "s" };
            format!("{flows} flow{plural}, sent {ago}s ago")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_as_a_date_and_a_duration() {
        // 2026-12-03 20:59:12 UTC.
        let at = 1_796_331_552;
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(at), "2026-12-03 20:59:12 UTC");
        assert_eq!(
            expiry(at, at - 43_140),
            "2026-12-03 20:59:12 UTC (in 11h59m)"
        );
        assert_eq!(
            expiry(at, at + 300),
            "2026-12-03 20:59:12 UTC (expired 5m ago)"
        );
    }
}
