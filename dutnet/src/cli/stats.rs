//! `dutnet stats`: the datapath's counters, for people and for scripts.
use anyhow::Result;
use dutnet::{
    datapath::{InterfaceStats, ebpf, nft},
    state::paths::Paths,
};
use dutnet_common::stats::{DirCounters, drop, punt};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `dutnet stats` says when no eBPF program runs but dutnet does.
const NFT_ONLY: &str = "dutnet runs on the nftables datapath only: no eBPF counters; `nft list table ip dutnet` shows its rules and counters";

pub fn run(args: &Args) -> Result<()> {
    let stats = match ebpf::read_pinned(&Paths::from_env()) {
        Ok(stats) => stats,
        Err(ebpf::EbpfError::NotRunning { .. }) if nft::table_exists() => {
            if args.json {
                let out = json!({ "datapath": "nft", "interfaces": [], "note": NFT_ONLY });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{NFT_ONLY}");
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&stats))?);
    } else {
        print!("{}", table(&stats));
    }
    Ok(())
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
        "{:<16} {:>12} {:>12} {:>12} {:>12} {:>8} {:>10}  {:<24} {}\n",
        "INTERFACE",
        "FROM-DUT",
        "TO-DUT",
        "NAT-OUT",
        "NAT-IN",
        "FLOWS",
        "NEW-FLOWS",
        "PUNTS",
        "DROPS"
    );
    for s in stats {
        let name = s.name.clone().unwrap_or_else(|| format!("#{}", s.ifindex));
        let c = s.counters;
        out.push_str(&format!(
            "{name:<16} {:>12} {:>12} {:>12} {:>12} {:>8} {:>10}  {:<24} {}\n",
            c.ingress.packets,
            c.egress.packets,
            c.nat_out.packets,
            c.nat_in.packets,
            s.active_flows,
            c.new_flows,
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
