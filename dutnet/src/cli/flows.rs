//! `dutnet flows`: the connections the eBPF fast path translates now, like
//! `conntrack -L`. Networks on the nft datapath are pointed at conntrack.
use std::time::Duration;

use anyhow::Result;
use dutnet::control::{Reply, Request, protocol::FlowInfo};

use super::control::{Common, ask, unexpected};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Show at most N flows, those the DUTs sent on last (default 100, at
    /// most 100000); the others are only counted.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

pub fn run(args: &Args) -> Result<()> {
    let request = Request::Flows {
        network: args.common.network.clone(),
        limit: args.limit,
    };
    let (flows, total, elsewhere) = match ask(&args.common, &request)? {
        None => return Ok(()),
        Some(Reply::Flows {
            flows,
            total,
            elsewhere,
            ..
        }) => (flows, total, elsewhere),
        Some(other) => return Err(unexpected(&other)),
    };
    for network in &elsewhere {
        println!("{}", network.message);
    }
    if !elsewhere.is_empty() && flows.is_empty() && total == 0 {
        // Only nft networks (or nothing on eBPF to show): no empty table.
        return Ok(());
    }
    print!("{}", table(&flows));
    println!("{}", summary(flows.len(), total));
    Ok(())
}

fn table(flows: &[FlowInfo]) -> String {
    let rows: Vec<[String; 9]> = flows
        .iter()
        .map(|f| {
            [
                f.network.clone(),
                f.protocol.clone(),
                f.dut.to_string(),
                f.translated.to_string(),
                f.remote.to_string(),
                f.state.clone(),
                idle(Duration::from_millis(f.idle_ms)),
                f.packets_out.to_string(),
                f.packets_in.to_string(),
            ]
        })
        .collect();
    let header = [
        "NETWORK",
        "PROTO",
        "DUT",
        "TRANSLATED",
        "REMOTE",
        "STATE",
        "IDLE",
        "PKTS-OUT",
        "PKTS-IN",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&header);
    for row in &rows {
        out.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    out
}

/// `(showing 100 of 5234 flows; --limit to see more)`.
fn summary(shown: usize, total: u64) -> String {
    if u64::try_from(shown).is_ok_and(|s| s == total) {
        let plural = if total == 1 { "" } else { "s" };
        return format!("({total} flow{plural})");
    }
    format!("(showing {shown} of {total} flows; --limit to see more)")
}

/// `0s`, `42s`, `3m07s`, `2h05m`: short enough for a column.
fn idle(idle: Duration) -> String {
    let s = idle.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(network: &str, idle_ms: u64) -> FlowInfo {
        FlowInfo {
            network: network.into(),
            protocol: "tcp".into(),
            dut: "192.168.100.10:40000".parse().unwrap(),
            translated: "10.99.0.2:40000".parse().unwrap(),
            remote: "10.99.0.1:7001".parse().unwrap(),
            state: "established".into(),
            idle_ms,
            packets_out: 12,
            packets_in: 9,
        }
    }

    #[test]
    fn the_table_has_a_header_and_one_aligned_line_per_flow() {
        let text = table(&[flow("lab", 1500), flow("lab-with-a-long-name", 75_000)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NETWORK"), "{text}");
        let remote = lines[0].find("REMOTE").unwrap();
        assert_eq!(lines[1].find("10.99.0.1:7001"), Some(remote), "{text}");
        assert_eq!(lines[2].find("10.99.0.1:7001"), Some(remote), "{text}");
        assert!(lines[1].contains("established") && lines[1].contains(" 1s "));
        assert!(lines[2].contains("1m15s"), "{text}");
    }

    #[test]
    fn the_last_line_says_how_many_were_left_out() {
        assert_eq!(
            summary(100, 5234),
            "(showing 100 of 5234 flows; --limit to see more)"
        );
        assert_eq!(summary(2, 2), "(2 flows)");
        assert_eq!(summary(1, 1), "(1 flow)");
        assert_eq!(summary(0, 0), "(0 flows)");
    }

    #[test]
    fn idle_times_are_short() {
        assert_eq!(idle(Duration::from_millis(999)), "0s");
        assert_eq!(idle(Duration::from_secs(187)), "3m07s");
        assert_eq!(idle(Duration::from_secs(2 * 3600 + 5 * 60 + 9)), "2h05m");
    }
}
