//! `dutnet stats`: the datapath's counters, for people and for scripts.
//!
//! The numbers come from the daemon, which names the interfaces as it sees
//! them; with no daemon there are no numbers (exit code 5). `--offline`
//! reads the pins instead, for a post-mortem.
use std::{
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use anyhow::Result;
use dutnet::{
    control::{
        Reply, Request,
        counters::{DutCounters, InterfaceCounters, NetworkCounters},
    },
    datapath::{
        InterfaceStats, ebpf, nft,
        rates::{self, DutRates, InterfaceRates},
    },
    state::paths::Paths,
};
use dutnet_common::stats::{drop, punt};
use serde_json::json;

use super::control::unexpected;

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
    /// One line per DUT (address, MAC, host name) with its rates over
    /// `--interval` and its totals, the busiest senders first.
    #[arg(long)]
    by_dut: bool,
    /// Seconds between readings for `--rates` and `--watch` (0.1 to 3600).
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    interval: f64,
    /// Read the pinned maps instead of asking the daemon (after a crash):
    /// the numbers may be frozen and the names are this namespace's.
    #[arg(long)]
    offline: bool,
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

/// One reading of the counters.
struct Reading {
    interfaces: Vec<InterfaceCounters>,
    /// Each network's DHCP and DNS counters (none offline).
    networks: Vec<NetworkCounters>,
    /// `--offline`: how long ago the pins were made, and where they are.
    offline: Option<(Duration, String)>,
}

impl Reading {
    fn stats(&self) -> Vec<InterfaceStats> {
        self.interfaces
            .iter()
            .map(InterfaceCounters::to_stats)
            .collect()
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.watch {
        return watch(args);
    }
    let Some(reading) = read(args)? else {
        return Ok(());
    };
    if !args.rates && !args.by_dut {
        return print(args, &reading, None);
    }
    std::thread::sleep(Duration::from_secs_f64(args.interval));
    let Some(later) = read(args)? else {
        return Ok(());
    };
    let rates = rates::between(&reading.stats(), &later.stats(), args.interval);
    print(args, &later, Some(&rates[..]))
}

/// `--watch`: the table and the rates, refreshed in place.
fn watch(args: &Args) -> Result<()> {
    let period = Duration::from_secs_f64(args.interval);
    let Some(mut before) = read(args)? else {
        return Ok(());
    };
    loop {
        std::thread::sleep(period);
        // A daemon that stops ends the watch with its error (exit code 5),
        // not with its last numbers left on screen as if current.
        let now = match read(args) {
            Ok(Some(now)) => now,
            Ok(None) => return Ok(()),
            Err(e) => {
                if !args.json {
                    print!("\x1b[H\x1b[2J");
                }
                return Err(e);
            }
        };
        let rates = rates::between(&before.stats(), &now.stats(), args.interval);
        if !args.json {
            // Home the cursor and clear the screen: refresh in place.
            print!("\x1b[H\x1b[2J");
        }
        print(args, &now, Some(&rates[..]))?;
        before = now;
    }
}

fn print(args: &Args, reading: &Reading, rates: Option<&[InterfaceRates]>) -> Result<()> {
    if args.by_dut {
        let duts = by_dut(reading, rates.unwrap_or_default());
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "datapath": "ebpf", "duts": duts }))?
            );
        } else {
            print!("{}", dut_table(&duts));
        }
        return Ok(());
    }
    if args.json {
        let mut out = json!({
            "datapath": "ebpf",
            "interfaces": reading.interfaces,
            "networks": reading.networks,
        });
        if let Some((age, pins)) = &reading.offline {
            out["offline"] = json!({ "pins": pins, "pinned_seconds_ago": age.as_secs() });
        }
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
        if let Some((age, pins)) = &reading.offline {
            println!(
                "offline: read from the pins in {pins}, made {}s ago; a daemon that died since left them frozen, and the names are this namespace's",
                age.as_secs()
            );
        }
        let stats = reading.stats();
        print!("{}", table(&stats));
        if let Some(rates) = rates {
            print!("{}", rate_table(&stats, rates));
        }
        print!("{}", filter_table(&reading.networks));
    }
    Ok(())
}

/// The counters, or `None` after telling the user the nft datapath runs.
fn read(args: &Args) -> Result<Option<Reading>> {
    let paths = Paths::from_env();
    if args.offline {
        return read_pins(args, &paths);
    }
    let reply = dutnet::control::request(&paths.control_socket(), &Request::Stats)?;
    match reply {
        Reply::Stats {
            datapath, networks, ..
        } if datapath == "nft" => {
            say_nft_only(args, &networks)?;
            Ok(None)
        }
        Reply::Stats {
            interfaces,
            networks,
            ..
        } => Ok(Some(Reading {
            interfaces,
            networks,
            offline: None,
        })),
        other => Err(unexpected(&other)),
    }
}

fn read_pins(args: &Args, paths: &Paths) -> Result<Option<Reading>> {
    let stats = match ebpf::read_pinned(paths) {
        Ok(stats) => stats,
        Err(ebpf::EbpfError::NotRunning { .. }) if nft::table_exists() => {
            say_nft_only(args, &[])?;
            return Ok(None);
        }
        // Still NotRunning underneath (exit code 5), with the reason on top.
        Err(e @ ebpf::EbpfError::NotRunning { .. }) => {
            let e = anyhow::Error::new(e);
            return Err(match other_abi(paths) {
                Some(why) => e.context(why),
                None => e,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let since = ebpf::pinned_since(paths)?;
    let age = SystemTime::now().duration_since(since).unwrap_or_default();
    Ok(Some(Reading {
        interfaces: stats
            .iter()
            .map(|s| InterfaceCounters::new(s, None))
            .collect(),
        networks: Vec::new(),
        offline: Some((age, paths.pin_dir().display().to_string())),
    }))
}

/// What to say when no pins of this build's ABI exist but another build's
/// do: their layout may differ, so they are not read.
fn other_abi(paths: &Paths) -> Option<String> {
    let found = paths.other_abi_pins();
    let (dir, version) = found.first()?;
    let version = version.map_or_else(|| "before 4".to_owned(), |v| v.to_string());
    Some(format!(
        "the pins in {} are of eBPF ABI version {version}, and this dutnet reads version {} (under {}); run `dutnet stats --offline` of the dutnet build that made them, or ask the running daemon with `dutnet stats`",
        dir.display(),
        dutnet_common::ABI_VERSION,
        paths.pin_dir().display()
    ))
}

fn say_nft_only(args: &Args, networks: &[NetworkCounters]) -> Result<()> {
    if args.json {
        let out =
            json!({ "datapath": "nft", "interfaces": [], "networks": networks, "note": NFT_ONLY });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{NFT_ONLY}");
        print!("{}", filter_table(networks));
    }
    Ok(())
}

/// One DUT's line of `--by-dut`.
#[derive(Debug, serde::Serialize)]
struct DutLine<'a> {
    network: Option<&'a str>,
    interface: Option<&'a str>,
    #[serde(flatten)]
    counters: &'a DutCounters,
    rates: Option<&'a DutRates>,
}

/// Every DUT of every interface, each interface's busiest senders first
/// (by rate, then by total).
fn by_dut<'a>(reading: &'a Reading, rates: &'a [InterfaceRates]) -> Vec<DutLine<'a>> {
    let mut lines = Vec::new();
    for i in &reading.interfaces {
        let rates = rates.iter().find(|r| r.ifindex == i.ifindex);
        let mut duts: Vec<DutLine> = i
            .duts
            .iter()
            .map(|d| DutLine {
                network: i.network.as_deref(),
                interface: i.interface.as_deref(),
                counters: d,
                rates: rates.and_then(|r| r.duts.iter().find(|r| r.address == d.address)),
            })
            .collect();
        let rate = |l: &DutLine| {
            l.rates
                .map_or(0.0, |r| r.from_dut.bytes_per_s + r.to_dut.bytes_per_s)
        };
        let total = |l: &DutLine| l.counters.from_dut.bytes + l.counters.to_dut.bytes;
        duts.sort_by(|a, b| rate(b).total_cmp(&rate(a)).then(total(b).cmp(&total(a))));
        lines.extend(duts);
    }
    lines
}

fn dut_table(duts: &[DutLine]) -> String {
    let mut out = format!(
        "{:<12} {:<15} {:<17} {:<16} {:>10} {:>12} {:>10} {:>12} {:>10} {:>12} {:>10} {:>12}\n",
        "NETWORK",
        "ADDRESS",
        "MAC",
        "HOSTNAME",
        "SENT PKT/S",
        "SENT BIT/S",
        "RECV PKT/S",
        "RECV BIT/S",
        "SENT PKTS",
        "SENT BYTES",
        "RECV PKTS",
        "RECV BYTES"
    );
    for d in duts {
        let c = d.counters;
        let rate = |f: fn(&DutRates) -> f64| d.rates.map_or(0.0, f);
        out.push_str(&format!(
            "{:<12} {:<15} {:<17} {:<16} {:>10.0} {:>12.0} {:>10.0} {:>12.0} {:>10} {:>12} {:>10} {:>12}\n",
            d.network.or(d.interface).unwrap_or("-"),
            c.address.to_string(),
            c.mac.as_deref().unwrap_or("-"),
            c.hostname.as_deref().unwrap_or("-"),
            rate(|r| r.from_dut.packets_per_s),
            rate(|r| r.from_dut.bytes_per_s * 8.0),
            rate(|r| r.to_dut.packets_per_s),
            rate(|r| r.to_dut.bytes_per_s * 8.0),
            c.from_dut.packets,
            c.from_dut.bytes,
            c.to_dut.packets,
            c.to_dut.bytes,
        ));
    }
    if duts.is_empty() {
        out.push_str("(no DUT has sent a packet on the eBPF datapath yet)\n");
    } else {
        out.push_str("(SENT: every IPv4 packet from the DUT; RECV: what the fast path delivered to it, not the gateway's own DHCP/DNS answers)\n");
    }
    out
}

/// Each filter rule beside the flows it decided, by network.
fn filter_table(networks: &[NetworkCounters]) -> String {
    let mut out = String::new();
    for n in networks {
        let Some(filter) = &n.filter else { continue };
        for (which, d) in [("egress", &filter.egress), ("ingress", &filter.ingress)] {
            let Some(d) = d else { continue };
            let _ = writeln!(out, "\n{} filter {which}:", n.network);
            let _ = writeln!(out, "  {:>10}  RULE", "FLOWS");
            for r in &d.rules {
                let _ = writeln!(out, "  {:>10}  {}", r.hits, r.rule);
            }
            let _ = writeln!(out, "  {:>10}  policy {}", d.policy_hits, d.policy);
        }
    }
    out
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
