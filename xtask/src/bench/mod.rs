//! `cargo xtask bench`: the data path (plain routing, nft masquerade and
//! 1:1, dutnet's eBPF masquerade and 1:1, dutnet on nft) side by side, each
//! on a fresh lab, then a flood past a full flow table on the masquerading
//! paths and the sweeper's cost on a table of a million flows, each on a
//! fresh lab too, then the control plane (DHCP and DNS against dnsmasq,
//! bring-up time and memory), in one run.
//!
//! Only ratios between paths measured in the same run mean much: both ends
//! of every load run on this machine's cores, next to whatever else runs.
mod boot;
mod connections;
mod control;
mod cpu;
mod lab;
mod overflow;
mod receiver;
mod report;
mod rtt;
mod sweep;
mod tcp;
mod udp;

use std::{
    path::{Path as FsPath, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::{
    generator::{Flows, Load},
    prereq,
};
use lab::{Lab, Options, Path};
use overflow::OverflowBudget;
use report::{Metric, Results};
use serde_json::json;
use sweep::SweepBudget;

use crate::run;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A short smoke run (a few seconds per metric, under 2 min in all).
    #[arg(long)]
    quick: bool,
    /// Repeat every path this many times; the table shows min/median/max.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Measure only these paths (default: all; ratios need nft and eBPF).
    #[arg(long = "path", value_enum)]
    paths: Vec<Path>,
    /// Measure only these parts (default: both).
    #[arg(long = "part", value_enum)]
    parts: Vec<Part>,
    /// Use this dutnet executable instead of building a release one (the
    /// smoke run of `cargo xtask test` reuses the debug build it tested).
    #[arg(long, value_name = "PATH")]
    dutnet: Option<PathBuf>,
}

/// The two tables of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Packets, round trips and TCP through each path.
    Data,
    /// DHCP, DNS, bring-up and memory.
    Control,
    /// TFTP throughput against tftpd-hpa.
    Boot,
}

/// How much load each metric gets: every load is bounded in count and time.
#[derive(Clone, Copy, Debug)]
struct Budget {
    packets: u64,
    /// New flows per lab: with the 10 000 flows of the other load this must
    /// stay under dutnet's `nat_table_size` and nf_conntrack_max (262 144).
    new_flows: u64,
    udp_limit: Duration,
    round_trips: u32,
    rtt_limit: Duration,
    tcp_seconds: u32,
    /// The flood past a full table: it lasts `udp_limit`.
    overflow: OverflowBudget,
    sweep: SweepBudget,
}

impl Budget {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                packets: 200_000,
                new_flows: 50_000,
                udp_limit: Duration::from_secs(1),
                round_trips: 1_000,
                rtt_limit: Duration::from_secs(2),
                tcp_seconds: 1,
                overflow: OverflowBudget {
                    packets: 2_000_000,
                    limit: Duration::from_secs(1),
                    fill_limit: Duration::from_secs(9),
                },
                // Every 3 s: one interval empty, three sweeps, 12 s.
                sweep: SweepBudget {
                    flows: 200_000,
                    fill_limit: Duration::from_secs(5),
                    timeouts: sweep::timeouts(6),
                    sweeps: 3,
                },
            }
        } else {
            Self {
                packets: 3_000_000,
                new_flows: 200_000,
                udp_limit: Duration::from_secs(10),
                round_trips: 20_000,
                rtt_limit: Duration::from_secs(15),
                tcp_seconds: 10,
                overflow: OverflowBudget {
                    packets: 20_000_000,
                    limit: Duration::from_secs(10),
                    fill_limit: Duration::from_secs(27),
                },
                // Every 10 s (all timeouts 20 s or more): one interval
                // empty, three sweeps, 40 s.
                sweep: SweepBudget {
                    flows: 1_000_000,
                    fill_limit: Duration::from_secs(40),
                    timeouts: sweep::timeouts(20),
                    sweeps: 3,
                },
            }
        }
    }
}

/// `cargo xtask bench --quick`, for the end of `cargo xtask test`: CI checks
/// that the bench runs, not its numbers. Not root: re-runs this xtask under
/// `sudo -E`, as the test binaries are.
pub fn quick_smoke(dutnet: &std::path::Path) -> Result<()> {
    if run::is_root() {
        return run(&Args {
            quick: true,
            runs: 1,
            paths: Vec::new(),
            parts: Vec::new(),
            dutnet: Some(dutnet.to_owned()),
        });
    }
    let xtask = std::env::current_exe().context("locating the xtask executable")?;
    run::checked(
        std::process::Command::new("sudo")
            .args(["-E", "--"])
            .arg(xtask)
            .args(["bench", "--quick", "--dutnet"])
            .arg(dutnet),
    )
}

pub fn run(args: &Args) -> Result<()> {
    if !run::is_root() {
        bail!("the bench creates network namespaces: run it as root (`sudo -E cargo xtask bench`)");
    }
    for (program, package) in [
        ("iperf3", "iperf3"),
        ("nft", "nftables"),
        ("ethtool", "ethtool"),
        ("ping", "iputils-ping"),
        ("ss", "iproute2"),
        ("dnsmasq", "dnsmasq"),
        ("udhcpc", "udhcpc"),
        ("curl", "curl"),
    ] {
        prereq::require(program, package);
    }
    let dutnet = match &args.dutnet {
        Some(path) => path.clone(),
        None => build_dutnet()?,
    };
    let budget = Budget::new(args.quick);
    let runs = args.runs as usize;
    let load_before = load_average();
    eprintln!("==> load average before: {load_before}");

    let wants = |part| args.parts.is_empty() || args.parts.contains(&part);
    let mut results = Results::default();
    let mut control_results = control::report::ControlResults::default();
    let mut boot_results = boot::BootResults::default();
    let mut ebpf_stats = serde_json::Value::Null;
    let mut overflow_tables = serde_json::Map::new();
    let selected =
        |p: &Path| wants(Part::Data) && (args.paths.is_empty() || args.paths.contains(p));
    let conntrack_max = if overflow::PATHS.iter().any(selected) {
        Some(overflow::conntrack_max()?)
    } else {
        None
    };
    for run in 0..runs {
        for path in Path::ALL.into_iter().filter(selected) {
            eprintln!("\n==> run {}/{runs}: {}", run + 1, path.title());
            let lab = Lab::build(path, run, &dutnet)?;
            measure_path(&lab, budget, &mut results)?;
            if let Some(stats) = lab.dutnet_stats(&dutnet) {
                ebpf_stats = stats;
            }
        }
        if let Some(capacity) = conntrack_max {
            for path in overflow::PATHS.into_iter().filter(selected) {
                eprintln!(
                    "\n==> run {}/{runs}: {}, flood past a full table",
                    run + 1,
                    path.title()
                );
                let table = measure_overflow(path, run, &dutnet, capacity, budget, &mut results)?;
                overflow_tables.insert(format!("{}_run{}", path.key(), run + 1), table);
            }
        }
        if selected(&Path::EbpfMasquerade) {
            eprintln!("\n==> run {}/{runs}: the sweeper", run + 1);
            measure_sweeper(run, &dutnet, budget.sweep, &mut results)?;
        }
        if wants(Part::Control) {
            eprintln!("\n==> run {}/{runs}: control plane", run + 1);
            control::measure(
                &dutnet,
                run,
                control::ControlBudget::new(args.quick),
                &mut control_results,
            );
        }
        if wants(Part::Boot) {
            eprintln!("\n==> run {}/{runs}: network boot", run + 1);
            for server in boot::Server::ALL {
                match boot::measure(server, &dutnet, run, Duration::from_secs(120)) {
                    Ok(rate) => {
                        eprintln!("    TFTP 20 MiB, {server:?}: {rate:.1} MiB/s");
                        boot_results.add(server, rate);
                    }
                    Err(error) => {
                        eprintln!("    TFTP 20 MiB, {server:?} FAILED: {error:#}");
                        boot_results.fail(server, format!("{error:#}"));
                    }
                }
            }
        }
    }
    let load_after = load_average();

    let mut table = String::new();
    if wants(Part::Data) {
        table = format!(
            "{}\n{}\n{}",
            results.markdown(runs),
            results.failure_notes(),
            results.sweeper_markdown(runs)
        );
    }
    if wants(Part::Control) {
        table.push_str(&format!("\n{}", control_results.markdown(runs)));
    }
    if wants(Part::Boot) {
        table.push_str(&format!("\n{}", boot_results.markdown(runs)));
    }
    let header = format!(
        "dutnet bench ({} run{}, {}): kernel {}, {} cores, load average before {load_before}, after {load_after}\n\n",
        runs,
        if runs == 1 { "" } else { "s" },
        if args.quick { "quick" } else { "full" },
        kernel(),
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    );
    println!("\n{header}{table}");
    let workspace = FsPath::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let out_dir = workspace.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("bench.md"), format!("{header}{table}"))?;
    let context = json!({
        "kernel": kernel(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "dutnet_stats_last_ebpf_lab": ebpf_stats,
        "nf_conntrack_max": conntrack_max,
        "overflow_tables": overflow_tables,
    });
    let mut json = results.json(runs, args.quick, context);
    json["control_plane"] = control_results.json();
    json["network_boot"] = boot_results.json();
    std::fs::write(
        out_dir.join("bench.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    eprintln!("written: {}/bench.md and bench.json", out_dir.display());
    Ok(())
}

/// Every metric on one lab. The new-flow load goes last: it leaves the most
/// flows behind in conntrack or dutnet's table.
fn measure_path(lab: &Lab, budget: Budget, results: &mut Results) -> Result<()> {
    let path = lab.path;
    let udp_load = |flows| Load {
        flows,
        packets: budget.packets,
        limit: budget.udp_limit,
    };
    let one = udp::measure(lab, udp_load(Flows::One))?;
    report_udp("1 flow", one);
    results.add(Metric::UdpOneFlow, path, one.rate);
    results.add(Metric::CpuBusyOneFlow, path, one.cpu_busy);
    results.add(Metric::CostOneFlow, path, one.cpu_ns_per_packet);

    let many = udp::measure(lab, udp_load(Flows::Cycle(10_000)))?;
    report_udp("10 000 flows", many);
    results.add(Metric::UdpTenThousandFlows, path, many.rate);
    results.add(Metric::CostTenThousandFlows, path, many.cpu_ns_per_packet);

    let rtt = rtt::measure(lab, budget.round_trips, budget.rtt_limit)?;
    eprintln!(
        "    UDP round trip: p50 {:.1} µs, p99 {:.1} µs, {} lost",
        rtt.p50_us, rtt.p99_us, rtt.lost
    );
    results.add(Metric::RttP50, path, rtt.p50_us);
    results.add(Metric::RttP99, path, rtt.p99_us);

    for (segmentation, streams, metric) in [
        (tcp::Segmentation::Offloaded, 1, Metric::TcpOffloaded),
        (tcp::Segmentation::PerPacket, 1, Metric::TcpPerPacket),
        (tcp::Segmentation::Offloaded, 4, Metric::TcpFourStreams),
    ] {
        // A path that breaks TCP is a result, not a reason to stop the bench.
        match tcp::measure(lab, budget.tcp_seconds, segmentation, streams) {
            Ok(gbps) => {
                eprintln!("    TCP {streams} stream(s) ({segmentation:?}): {gbps:.2} Gbit/s");
                results.add(metric, path, gbps);
            }
            Err(error) => {
                eprintln!("    TCP {streams} stream(s) ({segmentation:?}) FAILED: {error:#}");
                results.fail(metric, path, format!("{error:#}"));
            }
        }
    }
    let limit = Duration::from_secs(u64::from(budget.tcp_seconds));
    match connections::measure(lab, limit, 20_000) {
        Ok(rate) => {
            eprintln!("    TCP connections: {rate:.0}/s");
            results.add(Metric::TcpConnections, path, rate);
        }
        Err(error) => {
            eprintln!("    TCP connections FAILED: {error:#}");
            results.fail(Metric::TcpConnections, path, format!("{error:#}"));
        }
    }

    let new_flows = Load {
        flows: Flows::NewPerPacket,
        packets: budget.new_flows.min(Flows::NewPerPacket.distinct()),
        limit: budget.udp_limit,
    };
    let fresh = udp::measure(lab, new_flows)?;
    report_udp("new flow per packet", fresh);
    results.add(Metric::UdpNewFlows, path, fresh.rate);
    results.add(Metric::CostNewFlows, path, fresh.cpu_ns_per_packet);
    Ok(())
}

/// The flood past a full table on a fresh lab of `path` with a second DUT;
/// returns what the table held and did, for the JSON.
fn measure_overflow(
    path: Path,
    run: usize,
    dutnet: &FsPath,
    capacity: u64,
    budget: Budget,
    results: &mut Results,
) -> Result<serde_json::Value> {
    // dutnet's table as big as conntrack's, and all of it for the one DUT
    // (conntrack has no per-source share either).
    let table = u32::try_from(capacity)
        .unwrap_or(u32::MAX)
        .clamp(1024, 4 << 20);
    let options = Options {
        tag: "o",
        nat_table_size: table,
        nat_flows_per_dut: table,
        second_dut: true,
        ..Options::default()
    };
    let lab = Lab::build_with(path, run, dutnet, options)?;
    let capacity = u64::from(table).min(capacity);
    let flood = match overflow::measure(&lab, dutnet, capacity, budget.overflow) {
        Ok(flood) => flood,
        Err(error) => {
            eprintln!("    flood past a full table FAILED: {error:#}");
            for metric in [
                Metric::UdpOverflow,
                Metric::CostOverflow,
                Metric::RttP99Overflow,
            ] {
                results.fail(metric, path, format!("{error:#}"));
            }
            return Ok(serde_json::Value::Null);
        }
    };
    eprintln!(
        "    64-byte UDP, new flows past a full table: {:.0} kpps delivered ({} of {} sent at {:.0} kpps)",
        flood.rate / 1e3,
        flood.delivered,
        flood.sent,
        flood.offered / 1e3
    );
    results.add(Metric::UdpOverflow, path, flood.rate);
    match flood.cpu_ns_per_packet {
        Some(ns) => results.add(Metric::CostOverflow, path, ns),
        None => results.fail(
            Metric::CostOverflow,
            path,
            "no flood packet reached the LAN host".to_owned(),
        ),
    }
    match &flood.rtt {
        Ok(rtt) => {
            eprintln!(
                "    second DUT's UDP round trip meanwhile: p50 {:.1} µs, p99 {:.1} µs, {} lost of {}",
                rtt.p50_us, rtt.p99_us, rtt.lost, rtt.probes
            );
            results.add(Metric::RttP99Overflow, path, rtt.p99_us);
        }
        Err(error) => {
            eprintln!("    second DUT's UDP round trip FAILED: {error}");
            results.fail(Metric::RttP99Overflow, path, error.clone());
        }
    }
    let (before, after) = (flood.before, flood.after);
    let state = match path {
        Path::EbpfMasquerade => format!(
            "{} of {capacity} flows held before, {} after; {} evicted, {} refused (table_full + dut_flow_limit)",
            before.held,
            after.held,
            after.evictions - before.evictions.min(after.evictions),
            after.refused - before.refused.min(after.refused),
        ),
        _ => {
            let refused = if path == Path::DutnetNft {
                format!(
                    ", {} refused by dutnet's ct count budget",
                    after.refused - before.refused.min(after.refused)
                )
            } else {
                String::new()
            };
            format!(
                "conntrack held {} of {capacity} before, {} after; early_drop {}, drop {}{refused}",
                before.held,
                after.held,
                after.early_drop - before.early_drop.min(after.early_drop),
                after.conntrack_drop - before.conntrack_drop.min(after.conntrack_drop),
            )
        }
    };
    if before.held < capacity * 99 / 100 {
        // A number, but not of an overflow: the cell says so.
        let reason = format!(
            "the table never filled ({} of {capacity} flows after the fill), so the flood did not overflow it",
            before.held
        );
        results.fail(Metric::UdpOverflow, path, reason.clone());
        results.fail(Metric::CostOverflow, path, reason);
    }
    eprintln!("    during the flood: {state}");
    let lost = flood.rtt.as_ref().map_or(0, |r| r.lost);
    results.note(format!(
        "flood past a full table on {} (run {}): {state}; the second DUT lost {lost} round trips",
        path.title(),
        run + 1
    ));
    Ok(json!({
        "capacity": capacity,
        "sent": flood.sent,
        "delivered": flood.delivered,
        "before_flood": before.json(),
        "after_flood": after.json(),
        "second_dut_rtt": flood.rtt.as_ref().ok().map(|r| json!({
            "p50_us": r.p50_us, "p99_us": r.p99_us, "lost": r.lost, "probes": r.probes,
        })),
        "dutnet_stats_after": flood.dutnet_stats,
    }))
}

/// The sweeper's cost on a fresh eBPF masquerade lab of a big table.
fn measure_sweeper(
    run: usize,
    dutnet: &FsPath,
    budget: SweepBudget,
    results: &mut Results,
) -> Result<()> {
    let path = Path::EbpfMasquerade;
    let lab = Lab::build_with(path, run, dutnet, budget.options())?;
    match sweep::measure(&lab, dutnet, budget) {
        Ok(sweep) => {
            eprintln!(
                "    sweeper: {} flows ({} after), every {} s: {:.1} ms of CPU per sweep, {:.2} % of one core over {:.1} s ({:.2} % with the table empty)",
                sweep.flows,
                sweep.flows_after,
                sweep.interval.as_secs(),
                sweep.ms_per_sweep(),
                sweep.core_percent(),
                sweep.window.as_secs_f64(),
                sweep.idle_core_percent(),
            );
            if sweep.flows < budget.flows * 9 / 10 {
                results.note(format!(
                    "the sweeper (run {}): the table held {} of the {} flows sent",
                    run + 1,
                    sweep.flows,
                    budget.flows
                ));
            }
            results.add(Metric::SweepFlows, path, sweep.flows as f64);
            results.add(Metric::SweepInterval, path, sweep.interval.as_secs_f64());
            results.add(Metric::SweepCpuPerSweep, path, sweep.ms_per_sweep());
            results.add(Metric::SweepCoreShare, path, sweep.core_percent());
            results.add(Metric::SweepIdleCoreShare, path, sweep.idle_core_percent());
        }
        Err(error) => {
            eprintln!("    sweeper FAILED: {error:#}");
            for metric in Metric::SWEEPER {
                results.fail(metric, path, format!("{error:#}"));
            }
        }
    }
    Ok(())
}

fn report_udp(what: &str, result: udp::UdpResult) {
    eprintln!(
        "    64-byte UDP, {what}: {:.0} kpps received ({} of {} sent at {:.0} kpps), {:.0} ns CPU/packet, machine busy {:.0} %",
        result.rate / 1e3,
        result.received,
        result.sent,
        result.offered / 1e3,
        result.cpu_ns_per_packet,
        result.cpu_busy
    );
}

/// Builds the release dutnet and returns the executable cargo reports.
fn build_dutnet() -> Result<PathBuf> {
    eprintln!("==> building dutnet (release)");
    let messages = run::stdout(run::cargo().args([
        "build",
        "--release",
        "--package",
        "dutnet",
        "--bin",
        "dutnet",
        "--message-format=json",
    ]))?;
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "dutnet")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .filter(|p| FsPath::is_file(p))
        .context("cargo built no dutnet executable")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned()
}
