//! `dutnet stats`: the datapath's counters, for people and for scripts.
use anyhow::Result;
use dutnet::{
    datapath::{InterfaceStats, ebpf},
    state::paths::Paths,
};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let stats = ebpf::read_pinned(&Paths::from_env())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&stats))?);
    } else {
        print!("{}", table(&stats));
    }
    Ok(())
}

fn to_json(stats: &[InterfaceStats]) -> serde_json::Value {
    let interfaces: Vec<_> = stats
        .iter()
        .map(|s| {
            let c = s.counters;
            json!({
                "interface": s.name,
                "ifindex": s.ifindex,
                "from_dut": { "packets": c.ingress.packets, "bytes": c.ingress.bytes },
                "to_dut": { "packets": c.egress.packets, "bytes": c.egress.bytes },
            })
        })
        .collect();
    json!({ "interfaces": interfaces })
}

fn table(stats: &[InterfaceStats]) -> String {
    let mut out = format!(
        "{:<16} {:>14} {:>16} {:>14} {:>16}\n",
        "INTERFACE", "FROM-DUT PKTS", "FROM-DUT BYTES", "TO-DUT PKTS", "TO-DUT BYTES"
    );
    for s in stats {
        let name = s.name.clone().unwrap_or_else(|| format!("#{}", s.ifindex));
        let c = s.counters;
        out.push_str(&format!(
            "{name:<16} {:>14} {:>16} {:>14} {:>16}\n",
            c.ingress.packets, c.ingress.bytes, c.egress.packets, c.egress.bytes
        ));
    }
    if stats.is_empty() {
        out.push_str("(no interface attached)\n");
    }
    out
}
