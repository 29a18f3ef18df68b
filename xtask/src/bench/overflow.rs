//! New flows far past a full table: the DUT floods never-seen 5-tuples
//! (`Flows::Scattered`) at the generator's full rate into a table that is
//! already full, while a second DUT, on a network of its own, measures its
//! UDP round trip through the same exporter.
//!
//! What is compared is what each path does with a flow it has no room for:
//! conntrack's early drop (nft masquerade), dutnet's eviction of unreplied
//! flows (eBPF), or dutnet's `ct count` budget on top of conntrack (dutnet on
//! nft). Both tables hold the same number of flows: dutnet's network gets
//! `nat_table_size` = `nat_flows_per_dut` = `nf_conntrack_max`.
//!
//! The LAN host has no listener on the flood's ports, so packets are counted
//! where they arrive: its NIC's `rx_packets`.
use std::{path::Path as FsPath, time::Duration};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::generator::{Flows, Load};
use serde_json::json;

use super::{
    lab::{Lab, Path},
    rtt::{self, Probe, RttResult},
    udp::{self, RECEIVER_CPU},
};

/// The paths whose table can overflow. Plain routing keeps no flows; the 1:1
/// paths translate each DUT to its own public address without ports, so a
/// flood of new flows fills no table on eBPF 1:1 (a stateless map) and only
/// conntrack on nft 1:1, the nft masquerade case again.
pub const PATHS: [Path; 3] = [Path::NftMasquerade, Path::EbpfMasquerade, Path::DutnetNft];

/// One order of the 4.2 billion 5-tuples for the fill's slices and the
/// flood, each going on where the last stopped (`Flows::ScatteredFrom`): no
/// flood packet is a filled flow.
const SEED: u32 = 0x0f11;
/// The fill goes in slices of an eighth of the table, one more than fills
/// it (a few packets may be lost on the way), each with its share of the
/// fill's time: a path that cannot fill its table in time shows it in the
/// first slice and is not given the rest.
const FILL_SLICES: u32 = 9;
/// After the flood, the LAN host's NIC is read once this has passed.
const DRAIN: Duration = Duration::from_millis(200);
/// The second DUT probes once a millisecond, a steady small flow of its own,
/// on the receiving core (which the flood leaves idle: nothing listens), so
/// what delays it is the exporter, not a CPU it shares with the generator.
const PROBE: Probe = Probe {
    client_cpu: RECEIVER_CPU,
    echo_cpu: RECEIVER_CPU,
    every: Duration::from_millis(1),
};

/// How much load: every part bounded in packets and in time.
#[derive(Clone, Copy, Debug)]
pub struct OverflowBudget {
    /// Packets of the flood at most (its `limit` ends it first at full rate).
    pub packets: u64,
    pub limit: Duration,
    /// Time the fill may take at most.
    pub fill_limit: Duration,
}

/// The outcome of one flood.
#[derive(Clone, Debug)]
pub struct OverflowResult {
    /// Table state once filled, and after the flood.
    pub before: TableState,
    pub after: TableState,
    pub sent: u64,
    /// Packets per second the generator sent.
    pub offered: f64,
    /// Flood packets that reached the LAN host's NIC.
    pub delivered: u64,
    /// `delivered` per second of the flood.
    pub rate: f64,
    /// Sending core's CPU time per delivered packet, in ns (None: none was).
    pub cpu_ns_per_packet: Option<f64>,
    /// The second DUT's round trips during the flood.
    pub rtt: Result<RttResult, String>,
    /// `dutnet stats --json` after the flood (dutnet's eBPF path).
    pub dutnet_stats: Option<serde_json::Value>,
}

/// What a table held and did, from the kernel's conntrack and dutnet's own
/// counters; every count is since the lab came up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    /// Flows of the flooding DUT's network in the table (conntrack: all of
    /// the exporter's).
    pub held: u64,
    /// conntrack's `early_drop`: entries freed for a new connection.
    pub early_drop: u64,
    /// conntrack's `drop`: new connections refused, no entry could go.
    pub conntrack_drop: u64,
    /// dutnet's `evictions` of the flooding DUT's network.
    pub evictions: u64,
    /// dutnet's refusals: `drops.table_full` + `drops.dut_flow_limit` on
    /// eBPF, the `ct count` budget rules' counters on nft.
    pub refused: u64,
}

impl TableState {
    pub fn json(self) -> serde_json::Value {
        json!({
            "held": self.held,
            "conntrack_early_drop": self.early_drop,
            "conntrack_drop": self.conntrack_drop,
            "dutnet_evictions": self.evictions,
            "dutnet_refused": self.refused,
        })
    }
}

/// `nf_conntrack_max`, the size of the table nft masquerade relies on (one
/// for the whole host: a namespace cannot change it, so the bench reads it
/// and sizes dutnet's table the same).
pub fn conntrack_max() -> Result<u64> {
    const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
    if !FsPath::new(MAX).exists() {
        // Loaded by the first nft NAT rule; load it to read the size.
        let _ = std::process::Command::new("modprobe")
            .arg("nf_conntrack")
            .status();
    }
    std::fs::read_to_string(MAX)
        .with_context(|| format!("reading {MAX} (is nf_conntrack available?)"))?
        .trim()
        .parse()
        .with_context(|| format!("parsing {MAX}"))
}

/// Fills the table of `lab` past `capacity` flows, then floods it for
/// `budget.limit` while the second DUT measures its round trips.
pub fn measure(
    lab: &Lab,
    dutnet: &FsPath,
    capacity: u64,
    budget: OverflowBudget,
) -> Result<OverflowResult> {
    let Some(dut2) = lab.dut2.as_ref() else {
        bail!("{}: an overflow lab needs its second DUT", lab.path.title());
    };
    let slice = capacity.div_ceil(u64::from(FILL_SLICES - 1));
    let (mut filled, mut fill_time) = (0, Duration::ZERO);
    for k in 0..FILL_SLICES {
        let sent = udp::send_only(
            lab,
            Load {
                flows: Flows::ScatteredFrom {
                    seed: SEED,
                    first: u64::from(k) * slice,
                },
                packets: slice,
                limit: budget.fill_limit / FILL_SLICES,
            },
        )?;
        filled += sent.packets;
        fill_time += sent.elapsed;
        if sent.packets < slice {
            break;
        }
    }
    let before = table_state(lab, dutnet);
    eprintln!(
        "    table filled: {filled} flows sent in {:.1} s, {} held of {capacity}",
        fill_time.as_secs_f64(),
        before.held
    );

    let rx_before = lan_rx_packets(lab)?;
    let flood = Load {
        flows: Flows::ScatteredFrom {
            seed: SEED,
            first: u64::from(FILL_SLICES) * slice,
        },
        packets: budget.packets,
        limit: budget.limit,
    };
    // Round trips only as long as the flood lasts, one a millisecond at most.
    let probes = u32::try_from(budget.limit.as_millis()).unwrap_or(u32::MAX);
    let (sent, rtt) = std::thread::scope(|scope| {
        let rtt = scope.spawn(|| rtt::measure_from(lab, dut2, PROBE, probes, budget.limit));
        let sent = udp::send_only(lab, flood);
        let rtt = rtt
            .join()
            .map_err(|_| anyhow::anyhow!("the round-trip thread panicked"))
            .and_then(|r| r);
        (sent, rtt)
    });
    let sent = sent?;
    std::thread::sleep(DRAIN);
    let rx_after = lan_rx_packets(lab)?;
    let probes_sent = rtt.as_ref().map_or(0, |r| u64::from(r.probes));
    let delivered = rx_after
        .saturating_sub(rx_before)
        .saturating_sub(probes_sent);
    let seconds = sent.elapsed.as_secs_f64().max(1e-9);
    Ok(OverflowResult {
        before,
        after: table_state(lab, dutnet),
        sent: sent.packets,
        offered: sent.packets as f64 / seconds,
        delivered,
        rate: delivered as f64 / seconds,
        cpu_ns_per_packet: (delivered > 0).then(|| sent.cpu.as_nanos() as f64 / delivered as f64),
        rtt: rtt.map_err(|e| format!("{e:#}")),
        dutnet_stats: lab.dutnet_stats(dutnet),
    })
}

/// Packets the LAN host's NIC received so far.
fn lan_rx_packets(lab: &Lab) -> Result<u64> {
    let out = lab
        .lan
        .exec("cat", &["/sys/class/net/eth0/statistics/rx_packets"]);
    out.stdout
        .trim()
        .parse()
        .with_context(|| format!("reading the LAN NIC's rx_packets: {out:?}"))
}

/// The table's state as the path keeps it.
fn table_state(lab: &Lab, dutnet: &FsPath) -> TableState {
    let mut state = TableState::default();
    if lab.path == Path::EbpfMasquerade {
        let stats = lab.dutnet_stats(dutnet).unwrap_or_default();
        let dut1 = stats["interfaces"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["interface"] == "dn-dut1"))
            .cloned()
            .unwrap_or_default();
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        state.held = n(&dut1["active_flows"]);
        state.evictions = n(&dut1["evictions"]);
        state.refused = n(&dut1["drops"]["table_full"]) + n(&dut1["drops"]["dut_flow_limit"]);
        return state;
    }
    state.held = lab
        .exporter
        .sysctl_get("net.netfilter.nf_conntrack_count")
        .parse()
        .unwrap_or(0);
    let stat = lab.exporter.exec("cat", &["/proc/net/stat/nf_conntrack"]);
    let sums = conntrack_stat_sums(&stat.stdout);
    let column = |name: &str| {
        sums.iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, value)| *value)
    };
    state.early_drop = column("early_drop");
    state.conntrack_drop = column("drop");
    if lab.path == Path::DutnetNft {
        let rules = lab.exporter.exec("nft", &["list", "ruleset"]);
        state.refused = budget_rule_drops(&rules.stdout);
    }
    state
}

/// `/proc/net/stat/nf_conntrack` (a header of column names, then one line of
/// hexadecimal counters per CPU) summed over the CPUs, by column.
fn conntrack_stat_sums(text: &str) -> Vec<(String, u64)> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let mut sums: Vec<(String, u64)> = header
        .split_whitespace()
        .map(|name| (name.to_owned(), 0))
        .collect();
    for line in lines {
        for (sum, value) in sums.iter_mut().zip(line.split_whitespace()) {
            sum.1 += u64::from_str_radix(value, 16).unwrap_or(0);
        }
    }
    // `entries` is the same global count on every CPU line, not a per-CPU one.
    if let Some(entries) = sums.iter_mut().find(|(n, _)| n == "entries") {
        let cpus = text.lines().count().saturating_sub(1).max(1) as u64;
        entries.1 /= cpus;
    }
    sums
}

/// Packets dropped by dutnet's `ct count` budget rules (nft datapath).
fn budget_rule_drops(ruleset: &str) -> u64 {
    ruleset
        .lines()
        .filter(|line| line.contains("ct count over"))
        .filter_map(|line| {
            let after = line.split("counter packets ").nth(1)?;
            after.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_stats_are_summed_over_cpus() {
        let text = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
            00040000  00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000010 000000ff 00000000  00000000 00000000 00000000 00000000\n\
            00040000  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000001 00000001 00000000  00000000 00000000 00000000 00000000\n";
        let sums = conntrack_stat_sums(text);
        let get = |name: &str| sums.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(get("early_drop"), 256);
        assert_eq!(get("drop"), 17);
        assert_eq!(get("invalid"), 4);
        assert_eq!(get("entries"), 0x40000);
        assert!(conntrack_stat_sums("").is_empty());
    }

    #[test]
    fn only_the_budget_rules_counters_count() {
        let ruleset = r#"table ip dutnet {
	chain forward {
		iifname "dn-dut1" oifname "dn-up" ct state new add @flows_dut_0 { ip saddr ct count over 262144 } counter packets 12 bytes 720 drop comment "dutnet:bench"
		iifname "dn-dut1" oifname "dn-up" ct state new add @flows_net_0 { iifname ct count over 262144 } counter packets 30 bytes 1800 drop comment "dutnet:bench"
		oifname "dn-dut1" counter packets 99 bytes 1 drop comment "dutnet:bench"
	}
}"#;
        assert_eq!(budget_rule_drops(ruleset), 42);
        assert_eq!(budget_rule_drops(""), 0);
    }
}
