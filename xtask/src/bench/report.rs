//! The bench's results: samples per metric and path, a Markdown table with
//! the eBPF/nft ratios and the targets, and a JSON copy.
use std::collections::BTreeMap;

use serde_json::json;

use super::lab::Path;

/// What is measured, one row of the table each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    UdpOneFlow,
    UdpTenThousandFlows,
    UdpNewFlows,
    CostOneFlow,
    CostTenThousandFlows,
    CostNewFlows,
    CpuBusyOneFlow,
    RttP50,
    RttP99,
    TcpOffloaded,
    TcpPerPacket,
    TcpFourStreams,
    TcpConnections,
    UdpOverflow,
    CostOverflow,
    RttP99Overflow,
    SweepFlows,
    SweepInterval,
    SweepCpuPerSweep,
    SweepCoreShare,
    SweepIdleCoreShare,
}

/// What a metric must reach for the claim to hold.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// eBPF / nft masquerade at least this.
    TimesNft(f64),
    /// eBPF no higher than nft masquerade.
    NotAboveNft,
    /// A cost: nft masquerade's over eBPF's at least this.
    CheaperThanNft(f64),
    /// eBPF at least plain routing.
    NotBelowRouting,
}

impl Metric {
    /// Every metric, for the JSON.
    pub const ALL: [Self; 21] = [
        Self::UdpOneFlow,
        Self::UdpTenThousandFlows,
        Self::UdpNewFlows,
        Self::CostOneFlow,
        Self::CostTenThousandFlows,
        Self::CostNewFlows,
        Self::CpuBusyOneFlow,
        Self::RttP50,
        Self::RttP99,
        Self::TcpOffloaded,
        Self::TcpPerPacket,
        Self::TcpFourStreams,
        Self::TcpConnections,
        Self::UdpOverflow,
        Self::CostOverflow,
        Self::RttP99Overflow,
        Self::SweepFlows,
        Self::SweepInterval,
        Self::SweepCpuPerSweep,
        Self::SweepCoreShare,
        Self::SweepIdleCoreShare,
    ];

    /// The rows of the sweeper's table (dutnet's eBPF masquerade only); the
    /// others are the data-path table's.
    pub const SWEEPER: [Self; 5] = [
        Self::SweepFlows,
        Self::SweepInterval,
        Self::SweepCpuPerSweep,
        Self::SweepCoreShare,
        Self::SweepIdleCoreShare,
    ];

    fn in_data_table(self) -> bool {
        !Self::SWEEPER.contains(&self)
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::UdpOneFlow => "udp64_1_flow_pps",
            Self::UdpTenThousandFlows => "udp64_10000_flows_pps",
            Self::UdpNewFlows => "udp64_new_flow_per_packet_pps",
            Self::CostOneFlow => "udp64_1_flow_sender_cpu_ns_per_packet",
            Self::CostTenThousandFlows => "udp64_10000_flows_sender_cpu_ns_per_packet",
            Self::CostNewFlows => "udp64_new_flow_per_packet_sender_cpu_ns_per_packet",
            Self::CpuBusyOneFlow => "cpu_busy_percent_udp64_1_flow",
            Self::RttP50 => "udp_rtt_p50_us",
            Self::RttP99 => "udp_rtt_p99_us",
            Self::TcpOffloaded => "tcp_1_stream_gso_gbps",
            Self::TcpPerPacket => "tcp_1_stream_no_gso_gbps",
            Self::TcpFourStreams => "tcp_4_streams_gso_gbps",
            Self::TcpConnections => "tcp_connections_per_s",
            Self::UdpOverflow => "udp64_table_overflow_delivered_pps",
            Self::CostOverflow => "udp64_table_overflow_sender_cpu_ns_per_delivered_packet",
            Self::RttP99Overflow => "udp_rtt_p99_us_second_dut_during_overflow",
            Self::SweepFlows => "sweeper_flows",
            Self::SweepInterval => "sweeper_interval_s",
            Self::SweepCpuPerSweep => "sweeper_cpu_ms_per_sweep",
            Self::SweepCoreShare => "sweeper_daemon_cpu_percent_of_one_core",
            Self::SweepIdleCoreShare => "sweeper_daemon_cpu_percent_of_one_core_table_empty",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::UdpOneFlow => "64-byte UDP, 1 flow (kpps)",
            Self::UdpTenThousandFlows => "64-byte UDP, 10 000 flows (kpps)",
            Self::UdpNewFlows => "64-byte UDP, new flow per packet (kpps)",
            Self::CostOneFlow => "sending core's CPU per packet, 1 flow (ns)",
            Self::CostTenThousandFlows => "sending core's CPU per packet, 10 000 flows (ns)",
            Self::CostNewFlows => "sending core's CPU per packet, new flows (ns)",
            Self::CpuBusyOneFlow => "whole machine busy during 1-flow UDP (%)",
            Self::RttP50 => "UDP round trip p50 (µs)",
            Self::RttP99 => "UDP round trip p99 (µs)",
            Self::TcpOffloaded => "TCP 1 stream, GSO/TSO on (Gbit/s)",
            Self::TcpPerPacket => "TCP 1 stream, GSO/TSO off (Gbit/s)",
            Self::TcpFourStreams => "TCP 4 streams, GSO/TSO on (Gbit/s)",
            Self::TcpConnections => "TCP connect/request/response/close (per s)",
            Self::UdpOverflow => "64-byte UDP, new flows past a full table, delivered (kpps)",
            Self::CostOverflow => "sending core's CPU per delivered packet, table overflow (ns)",
            Self::RttP99Overflow => "second DUT's UDP round trip p99 during that flood (µs)",
            Self::SweepFlows => "flows in the table",
            Self::SweepInterval => "sweep interval (s)",
            Self::SweepCpuPerSweep => "daemon CPU per sweep (ms)",
            Self::SweepCoreShare => "daemon CPU, share of one core (%)",
            Self::SweepIdleCoreShare => "the same with the table empty (%)",
        }
    }

    /// Stored value → displayed value (packets/s are shown in kpps).
    fn display_scale(self) -> f64 {
        match self {
            Self::UdpOneFlow
            | Self::UdpTenThousandFlows
            | Self::UdpNewFlows
            | Self::UdpOverflow => 1e-3,
            _ => 1.0,
        }
    }

    fn target(self) -> Option<Target> {
        match self {
            Self::UdpOneFlow | Self::UdpTenThousandFlows => Some(Target::TimesNft(1.4)),
            Self::UdpNewFlows | Self::UdpOverflow => Some(Target::TimesNft(2.0)),
            Self::CostOneFlow | Self::CostTenThousandFlows => Some(Target::CheaperThanNft(1.4)),
            Self::CostNewFlows | Self::CostOverflow => Some(Target::CheaperThanNft(2.0)),
            Self::RttP99 => Some(Target::NotAboveNft),
            Self::TcpPerPacket | Self::TcpConnections => Some(Target::NotBelowRouting),
            _ => None,
        }
    }
}

/// Min, median and max of a metric's samples on one path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
        };
        Some(Self {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        })
    }
}

/// Every sample of a bench, by metric and path.
#[derive(Debug, Default)]
pub struct Results {
    samples: BTreeMap<(Metric, Path), Vec<f64>>,
    /// Why a measurement gave no number (the path broke the load).
    failures: BTreeMap<(Metric, Path), String>,
    /// Lines for under the table (what the tables held after a flood).
    notes: Vec<String>,
}

impl Results {
    pub fn add(&mut self, metric: Metric, path: Path, value: f64) {
        self.samples.entry((metric, path)).or_default().push(value);
    }

    /// Records that `metric` could not be measured on `path`, and why.
    pub fn fail(&mut self, metric: Metric, path: Path, reason: String) {
        self.failures.insert((metric, path), reason);
    }

    /// A line for under the table.
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    pub fn spread(&self, metric: Metric, path: Path) -> Option<Spread> {
        Spread::of(self.samples.get(&(metric, path))?)
    }

    /// Median on `path` over median on `base`.
    fn ratio(&self, metric: Metric, path: Path, base: Path) -> Option<f64> {
        let a = self.spread(metric, path)?.median;
        let b = self.spread(metric, base)?.median;
        (b > 0.0).then(|| a / b)
    }

    /// Whether `ebpf` reaches the metric's target against `nft` (and plain
    /// routing): `None` when there is no target or a number is missing.
    fn met(&self, metric: Metric, ebpf: Path, nft: Path) -> Option<bool> {
        match metric.target()? {
            Target::TimesNft(times) => Some(self.ratio(metric, ebpf, nft)? >= times),
            Target::NotBelowRouting => Some(self.ratio(metric, ebpf, Path::Routing)? >= 1.0),
            Target::CheaperThanNft(times) => Some(self.ratio(metric, nft, ebpf)? >= times),
            Target::NotAboveNft => Some(self.ratio(metric, ebpf, nft)? <= 1.0),
        }
    }

    /// The target and whether masquerade (eBPF against nft) and 1:1 (eBPF
    /// 1:1 against nft 1:1) meet it.
    fn verdict(&self, metric: Metric) -> String {
        let text = match metric.target() {
            None => return String::new(),
            Some(Target::TimesNft(times)) => format!("≥ {times:.1}× nft"),
            Some(Target::NotBelowRouting) => "≥ routing".to_owned(),
            Some(Target::CheaperThanNft(times)) => format!("nft / eBPF ≥ {times:.1}×"),
            Some(Target::NotAboveNft) => "≤ nft".to_owned(),
        };
        let masquerade = self.met(metric, Path::EbpfMasquerade, Path::NftMasquerade);
        let one_to_one = self.met(metric, Path::Ebpf1to1, Path::Nft1to1);
        match (masquerade, one_to_one) {
            (m, None) => format!("{text}: {}", met_text(m)),
            (m, o) => format!("{text}: {}; 1:1 {}", met_text(m), met_text(o)),
        }
    }

    /// The Markdown table: one row per metric, one column per path, the
    /// ratios and the target.
    pub fn markdown(&self, runs: usize) -> String {
        let spread_note = spread_note(runs);
        let mut out = format!(
            "| metric ({spread_note}) | {} | eBPF / nft | eBPF / routing | eBPF 1:1 / nft 1:1 | target |\n|---|{}---:|---:|---:|---|\n",
            Path::ALL.map(Path::title).join(" | "),
            "---:|".repeat(Path::ALL.len()),
        );
        for metric in Metric::ALL.into_iter().filter(|m| m.in_data_table()) {
            let cells: Vec<String> = Path::ALL
                .iter()
                .map(|p| {
                    let failed = self.failures.contains_key(&(metric, *p));
                    match cell(self.spread(metric, *p), metric.display_scale(), runs) {
                        text if failed && text == "–" => "**fails**".to_owned(),
                        text if failed => format!("{text} (**fails** in a run)"),
                        text => text,
                    }
                })
                .collect();
            let ratio = |path, base| {
                self.ratio(metric, path, base)
                    .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                metric.title(),
                cells.join(" | "),
                ratio(Path::EbpfMasquerade, Path::NftMasquerade),
                ratio(Path::EbpfMasquerade, Path::Routing),
                ratio(Path::Ebpf1to1, Path::Nft1to1),
                self.verdict(metric),
            ));
        }
        out
    }

    /// The sweeper's table, dutnet's eBPF masquerade only (empty when it
    /// was not measured).
    pub fn sweeper_markdown(&self, runs: usize) -> String {
        let path = Path::EbpfMasquerade;
        if Metric::SWEEPER
            .iter()
            .all(|m| self.spread(*m, path).is_none() && !self.failures.contains_key(&(*m, path)))
        {
            return String::new();
        }
        let spread_note = spread_note(runs);
        let mut out = format!(
            "| the sweeper, {} ({spread_note}) | value |\n|---|---:|\n",
            path.title()
        );
        for metric in Metric::SWEEPER {
            let text = match cell(self.spread(metric, path), metric.display_scale(), runs) {
                text if text == "–" && self.failures.contains_key(&(metric, path)) => {
                    "**fails**".to_owned()
                }
                text => text,
            };
            out.push_str(&format!("| {} | {text} |\n", metric.title()));
        }
        out
    }

    /// Every failure and note, one line each, for under the table.
    pub fn failure_notes(&self) -> String {
        self.failures
            .iter()
            .map(|((metric, path), reason)| {
                format!("- {} on {}: {reason}\n", metric.title(), path.title())
            })
            .chain(self.notes.iter().map(|note| format!("- {note}\n")))
            .collect()
    }

    pub fn json(&self, runs: usize, quick: bool, extra: serde_json::Value) -> serde_json::Value {
        let metrics: Vec<_> = Metric::ALL
            .iter()
            .map(|&metric| {
                let paths: serde_json::Map<_, _> = Path::ALL
                    .iter()
                    .filter_map(|&path| {
                        let samples = self.samples.get(&(metric, path))?;
                        Some((path.key().to_owned(), samples_json(samples)?))
                    })
                    .collect();
                json!({
                    "key": metric.key(),
                    "title": metric.title(),
                    "paths": paths,
                    "ebpf_over_nft": self.ratio(metric, Path::EbpfMasquerade, Path::NftMasquerade),
                    "ebpf_over_routing": self.ratio(metric, Path::EbpfMasquerade, Path::Routing),
                    "ebpf_1to1_over_nft_1to1": self.ratio(metric, Path::Ebpf1to1, Path::Nft1to1),
                    "target": self.verdict(metric),
                })
            })
            .collect();
        let failures: Vec<_> = self
            .failures
            .iter()
            .map(|((metric, path), reason)| {
                json!({ "metric": metric.key(), "path": path.key(), "reason": reason })
            })
            .collect();
        json!({
            "runs": runs,
            "quick": quick,
            "metrics": metrics,
            "failures": failures,
            "notes": self.notes,
            "context": extra,
        })
    }
}

/// Samples with their min, median and max (None without samples).
/// What a table's cells are: the one run, or the median and spread of
/// several.
pub fn spread_note(runs: usize) -> String {
    if runs > 1 {
        format!("median of {runs} runs (min–max)")
    } else {
        "1 run".to_owned()
    }
}

pub fn samples_json(samples: &[f64]) -> Option<serde_json::Value> {
    let spread = Spread::of(samples)?;
    Some(json!({
        "samples": samples,
        "min": spread.min,
        "median": spread.median,
        "max": spread.max,
    }))
}

fn met_text(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "–",
    }
}

pub fn cell(spread: Option<Spread>, scale: f64, runs: usize) -> String {
    let Some(s) = spread else {
        return "–".to_owned();
    };
    let fmt = |v: f64| {
        let v = v * scale;
        if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    if runs > 1 {
        format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max))
    } else {
        fmt(s.median)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn table_shows_ratio_and_target() {
        let mut results = Results::default();
        results.add(Metric::UdpNewFlows, Path::Routing, 237_000.0);
        results.add(Metric::UdpNewFlows, Path::NftMasquerade, 115_000.0);
        results.add(Metric::UdpNewFlows, Path::EbpfMasquerade, 230_000.0);
        results.add(Metric::UdpOneFlow, Path::NftMasquerade, 200_000.0);
        results.add(Metric::UdpOneFlow, Path::EbpfMasquerade, 220_000.0);
        let table = results.markdown(1);
        let row = table
            .lines()
            .find(|l| l.contains("new flow per packet"))
            .unwrap();
        assert!(
            row.contains("| 237 | 115 | – | 230 | – | – | 2.00× | 0.97× | – | ≥ 2.0× nft: met |"),
            "{row}"
        );
        let row = table.lines().find(|l| l.contains(", 1 flow")).unwrap();
        assert!(row.contains("1.10×") && row.contains("**missed**"), "{row}");
        assert!(!table.contains("sweep"), "{table}");
        assert_eq!(results.sweeper_markdown(1), "");
    }

    #[test]
    fn the_sweeper_has_its_own_table() {
        let mut results = Results::default();
        results.add(Metric::SweepFlows, Path::EbpfMasquerade, 1_000_000.0);
        results.add(Metric::SweepCpuPerSweep, Path::EbpfMasquerade, 412.4);
        results.fail(
            Metric::SweepCoreShare,
            Path::EbpfMasquerade,
            "dutnet exited".to_owned(),
        );
        let table = results.sweeper_markdown(1);
        assert!(
            table.contains("| flows in the table | 1000000 |"),
            "{table}"
        );
        assert!(
            table.contains("| daemon CPU per sweep (ms) | 412 |"),
            "{table}"
        );
        assert!(table.contains("| sweep interval (s) | – |"), "{table}");
        assert!(
            table.contains("| daemon CPU, share of one core (%) | **fails** |"),
            "{table}"
        );
        assert!(!results.markdown(1).contains("flows in the table"));
    }
}
