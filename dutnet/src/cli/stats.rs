//! `dutnet stats`: the datapath's counters, for people and for scripts.
use anyhow::Result;
use dutnet::{
    datapath::{
        InterfaceStats, ebpf, nft,
        rates::{self, InterfaceRates},
    },
    state::paths::Paths,
};
use dutnet_common::stats::{DirCounters, drop, punt};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also show per-second rates, from two readings `--interval` apart.
    #[arg(long)]
    rates: bool,
    /// Refresh in place every `--interval`, with rates, until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// Seconds between readings for `--rates` and `--watch` (0.1 to 3600).
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    interval: f64,
}

fn interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "`{text}` is not a number of seconds between 0.1 and 3600"
        )),
    }
}

/// What `dutnet stats` says when no eBPF program runs but dutnet does.
const NFT_ONLY: &str = "dutnet runs on the nftables datapath only: no eBPF counters; `nft list table ip dutnet` shows its rules and counters";

pub fn run(args: &Args) -> Result<()> {
    if args.watch {
        return watch(args);
    }
    let Some(stats) = read(args)? else {
        return Ok(());
    };
    if !args.rates {
        return print(args, &stats, None);
    }
    std::thread::sleep(std::time::Duration::from_secs_f64(args.interval));
    let Some(later) = read(args)? else {
        return Ok(());
    };
    let rates = rates::between(&stats, &later, args.interval);
    print(args, &later, Some(&rates[..]))
}

/// `--watch`: the table and the rates, refreshed in place.
fn watch(args: &Args) -> Result<()> {
    let period = std::time::Duration::from_secs_f64(args.interval);
    let Some(mut before) = read(args)? else {
        return Ok(());
    };
    loop {
        std::thread::sleep(period);
        let Some(now) = read(args)? else {
            return Ok(());
        };
        let rates = rates::between(&before, &now, args.interval);
        if !args.json {
            // Home the cursor and clear the screen: refresh in place.
            print!("\x1b[H\x1b[2J");
        }
        print(args, &now, Some(&rates[..]))?;
        before = now;
    }
}

fn print(args: &Args, stats: &[InterfaceStats], rates: Option<&[InterfaceRates]>) -> Result<()> {
    if args.json {
        let mut out = to_json(stats);
        if let (Some(rates), Some(list)) = (rates, out["interfaces"].as_array_mut()) {
            for entry in list {
                let ifindex = entry["ifindex"].as_u64();
                if let Some(r) = rates.iter().find(|r| Some(u64::from(r.ifindex)) == ifindex) {
                    entry["rates"] = serde_json::to_value(r)?;
                }
            }
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(stats));
        if let Some(rates) = rates {
            print!("{}", rate_table(stats, rates));
        }
    }
    Ok(())
}

/// The counters, or `None` after telling the user the nft datapath runs.
fn read(args: &Args) -> Result<Option<Vec<InterfaceStats>>> {
    let stats = match ebpf::read_pinned(&Paths::from_env()) {
        Ok(stats) => stats,
        Err(ebpf::EbpfError::NotRunning { .. }) if nft::table_exists() => {
            if args.json {
                let out = json!({ "datapath": "nft", "interfaces": [], "note": NFT_ONLY });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{NFT_ONLY}");
            }
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Some(stats))
}

fn rate_table(stats: &[InterfaceStats], rates: &[InterfaceRates]) -> String {
    let mut out = format!(
        "\n{:<16} {:>12} {:>14} {:>12} {:>12} {:>12} {:>12}\n",
        "PER SECOND", "FROM-DUT", "FROM-DUT BIT", "TO-DUT", "NAT-OUT", "NAT-IN", "NEW-FLOWS"
    );
    for r in rates {
        let name = stats
            .iter()
            .find(|s| s.ifindex == r.ifindex)
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| format!("#{}", r.ifindex));
        out.push_str(&format!(
            "{name:<16} {:>12.0} {:>14.0} {:>12.0} {:>12.0} {:>12.0} {:>12.1}\n",
            r.from_dut.packets_per_s,
            r.from_dut.bytes_per_s * 8.0,
            r.to_dut.packets_per_s,
            r.nat_out.packets_per_s,
            r.nat_in.packets_per_s,
            r.new_flows_per_s,
        ));
    }
    out
}

fn to_json(stats: &[InterfaceStats]) -> serde_json::Value {
    let dir = |d: DirCounters| json!({ "packets": d.packets, "bytes": d.bytes });
    let by_reason =
        |names: &[&str], values: &[u64]| -> serde_json::Map<String, serde_json::Value> {
            names
                .iter()
                .zip(values)
                .map(|(name, n)| ((*name).to_owned(), json!(n)))
                .collect()
        };
    let interfaces: Vec<_> = stats
        .iter()
        .map(|s| {
            let c = s.counters;
            json!({
                "interface": s.name,
                "ifindex": s.ifindex,
                "from_dut": dir(c.ingress),
                "to_dut": dir(c.egress),
                "nat_out": dir(c.nat_out),
                "nat_in": dir(c.nat_in),
                "active_flows": s.active_flows,
                "flow_budget": s.flow_budget,
                "evictions": s.evictions,
                "new_flows": c.new_flows,
                "punts": by_reason(&punt::NAMES, &c.punts),
                "drops": by_reason(&drop::NAMES, &c.drops),
            })
        })
        .collect();
    json!({ "interfaces": interfaces })
}

/// `reason=count` for the non-zero ones, `-` when there are none.
fn reasons(names: &[&str], values: &[u64]) -> String {
    let parts: Vec<String> = names
        .iter()
        .zip(values)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(",")
    }
}

fn table(stats: &[InterfaceStats]) -> String {
    let mut out = format!(
        "{:<16} {:>12} {:>12} {:>12} {:>12} {:>15} {:>10} {:>9}  {:<24} {}\n",
        "INTERFACE",
        "FROM-DUT",
        "TO-DUT",
        "NAT-OUT",
        "NAT-IN",
        "FLOWS/BUDGET",
        "NEW-FLOWS",
        "EVICTED",
        "PUNTS",
        "DROPS"
    );
    for s in stats {
        let name = s.name.clone().unwrap_or_else(|| format!("#{}", s.ifindex));
        let c = s.counters;
        out.push_str(&format!(
            "{name:<16} {:>12} {:>12} {:>12} {:>12} {:>15} {:>10} {:>9}  {:<24} {}\n",
            c.ingress.packets,
            c.egress.packets,
            c.nat_out.packets,
            c.nat_in.packets,
            format!("{}/{}", s.active_flows, s.flow_budget),
            c.new_flows,
            s.evictions,
            reasons(&punt::NAMES, &c.punts),
            reasons(&drop::NAMES, &c.drops),
        ));
    }
    if stats.is_empty() {
        out.push_str("(no interface attached)\n");
    } else {
        out.push_str("(packets; `--json` for bytes)\n");
    }
    out
}
