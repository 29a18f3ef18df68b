//! The control plane's table: dutnet against dnsmasq where both serve the
//! same thing, dutnet alone for bring-up and memory, with the targets.
use std::collections::BTreeMap;

use serde_json::json;

use super::Server;
use crate::bench::report::{Spread, cell, samples_json, spread_note};

/// One row of the control-plane table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ControlMetric {
    /// Leases per second for this many clients.
    DhcpLeases(usize),
    DnsQueries,
    /// Milliseconds from `dutnet load` to "dutnet is up" with this many networks.
    BringUp(usize),
    /// VmRSS in MiB once up with this many networks.
    Resident(usize),
}

/// Networks up in under this many milliseconds, by network count (the
/// lifecycle issue's targets on a 2-core machine).
const BRING_UP_TARGETS_MS: [(usize, f64); 2] = [(64, 300.0), (256, 1000.0)];
const RESIDENT_TARGET_MIB: f64 = 40.0;

impl ControlMetric {
    fn key(self) -> String {
        match self {
            Self::DhcpLeases(n) => format!("dhcp_leases_per_s_{n}_clients"),
            Self::DnsQueries => "dns_local_name_queries_per_s".to_owned(),
            Self::BringUp(n) => format!("bring_up_ms_{n}_networks"),
            Self::Resident(n) => format!("resident_mib_{n}_networks"),
        }
    }

    fn title(self) -> String {
        match self {
            Self::DhcpLeases(n) => format!("DHCP, {n} clients at once (leases/s)"),
            Self::DnsQueries => "DNS, local name (queries/s)".to_owned(),
            Self::BringUp(n) => format!("bring-up, {n} networks (ms)"),
            Self::Resident(n) => format!("resident memory once up, {n} networks (MiB)"),
        }
    }

    /// The target's text and whether `dutnet` (against `dnsmasq`) meets it.
    fn verdict(self, dutnet: Option<f64>, dnsmasq: Option<f64>) -> String {
        let (text, met) = match self {
            Self::DhcpLeases(_) | Self::DnsQueries => (
                "≥ dnsmasq".to_owned(),
                dutnet.zip(dnsmasq).map(|(d, m)| d >= m),
            ),
            Self::BringUp(networks) => {
                let Some((_, target)) = BRING_UP_TARGETS_MS.iter().find(|(n, _)| *n == networks)
                else {
                    return String::new();
                };
                (format!("< {target:.0} ms"), dutnet.map(|d| d < *target))
            }
            Self::Resident(_) => (
                format!("< {RESIDENT_TARGET_MIB:.0} MiB"),
                dutnet.map(|d| d < RESIDENT_TARGET_MIB),
            ),
        };
        let met = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "–",
        };
        format!("{text}: {met}")
    }
}

/// Every control-plane sample of a bench.
#[derive(Debug, Default)]
pub struct ControlResults {
    samples: BTreeMap<(ControlMetric, Server), Vec<f64>>,
    failures: BTreeMap<(ControlMetric, Server), String>,
    /// What qualifies a number (marked `*` in its cell).
    notes: BTreeMap<(ControlMetric, Server), String>,
}

impl ControlResults {
    pub fn add(&mut self, metric: ControlMetric, server: Server, value: f64) {
        self.samples
            .entry((metric, server))
            .or_default()
            .push(value);
    }

    pub fn fail(&mut self, metric: ControlMetric, server: Server, reason: String) {
        self.failures.insert((metric, server), reason);
    }

    pub fn note(&mut self, metric: ControlMetric, server: Server, text: String) {
        self.notes.insert((metric, server), text);
    }

    fn spread(&self, metric: ControlMetric, server: Server) -> Option<Spread> {
        Spread::of(self.samples.get(&(metric, server))?)
    }

    fn median(&self, metric: ControlMetric, server: Server) -> Option<f64> {
        self.spread(metric, server).map(|s| s.median)
    }

    /// Rows in a fixed order: DHCP, DNS, bring-up and memory by network count.
    fn metrics(&self) -> Vec<ControlMetric> {
        let mut metrics: Vec<ControlMetric> = self
            .samples
            .keys()
            .chain(self.failures.keys())
            .map(|(m, _)| *m)
            .collect();
        metrics.sort();
        metrics.dedup();
        metrics
    }

    /// dutnet's median over `other`'s.
    fn ratio(&self, metric: ControlMetric, other: Server) -> Option<f64> {
        let (d, m) = (
            self.median(metric, Server::Dutnet)?,
            self.median(metric, other)?,
        );
        (m > 0.0).then(|| d / m)
    }

    pub fn markdown(&self, runs: usize) -> String {
        if self.samples.is_empty() && self.failures.is_empty() {
            return String::new();
        }
        let spread_note = spread_note(runs);
        let mut out = format!(
            "| control plane ({spread_note}) | dutnet | dnsmasq | dnsmasq --no-ping | dutnet / dnsmasq | dutnet / dnsmasq --no-ping | target |\n|---|---:|---:|---:|---:|---:|---|\n"
        );
        for metric in self.metrics() {
            let cells: Vec<String> = Server::ALL
                .iter()
                .map(|&s| match cell(self.spread(metric, s), 1.0, runs) {
                    text if self.failures.contains_key(&(metric, s)) => {
                        if text == "–" {
                            "**fails**".to_owned()
                        } else {
                            format!("{text} (**fails** in a run)")
                        }
                    }
                    text if self.notes.contains_key(&(metric, s)) => format!("{text} \\*"),
                    text => text,
                })
                .collect();
            let ratio = |other| {
                self.ratio(metric, other)
                    .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                metric.title(),
                cells.join(" | "),
                ratio(Server::Dnsmasq),
                ratio(Server::DnsmasqNoPing),
                metric.verdict(
                    self.median(metric, Server::Dutnet),
                    self.median(metric, Server::Dnsmasq)
                ),
            ));
        }
        out.extend(
            self.notes
                .iter()
                .map(|((m, s), text)| format!("- \\* {} on {}: {text}\n", m.title(), s.title())),
        );
        out.extend(
            self.failures
                .iter()
                .map(|((m, s), reason)| format!("- {} on {}: {reason}\n", m.title(), s.title())),
        );
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let rows: Vec<_> = self
            .metrics()
            .into_iter()
            .map(|metric| {
                let servers: serde_json::Map<_, _> = Server::ALL
                    .iter()
                    .filter_map(|&s| {
                        let samples = self.samples.get(&(metric, s))?;
                        Some((s.key().to_owned(), samples_json(samples)?))
                    })
                    .collect();
                json!({
                    "key": metric.key(),
                    "title": metric.title(),
                    "servers": servers,
                    "dutnet_over_dnsmasq": self.ratio(metric, Server::Dnsmasq),
                    "dutnet_over_dnsmasq_no_ping": self.ratio(metric, Server::DnsmasqNoPing),
                    "target": metric.verdict(
                        self.median(metric, Server::Dutnet),
                        self.median(metric, Server::Dnsmasq)
                    ),
                })
            })
            .collect();
        let failures: Vec<_> = self
            .failures
            .iter()
            .map(|((m, s), reason)| json!({ "metric": m.key(), "server": s.key(), "reason": reason }))
            .collect();
        let notes: Vec<_> = self
            .notes
            .iter()
            .map(|((m, s), text)| json!({ "metric": m.key(), "server": s.key(), "note": text }))
            .collect();
        json!({ "metrics": rows, "failures": failures, "notes": notes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_compares_with_dnsmasq_and_checks_the_targets() {
        let mut results = ControlResults::default();
        results.add(ControlMetric::DnsQueries, Server::Dutnet, 30_000.0);
        results.add(ControlMetric::DnsQueries, Server::Dnsmasq, 20_000.0);
        results.add(ControlMetric::BringUp(64), Server::Dutnet, 1500.0);
        results.add(ControlMetric::Resident(64), Server::Dutnet, 12.0);
        results.fail(
            ControlMetric::DhcpLeases(200),
            Server::Dnsmasq,
            "x".to_owned(),
        );
        let table = results.markdown(1);
        let row = |what: &str| table.lines().find(|l| l.contains(what)).unwrap().to_owned();
        assert!(
            row("DNS").contains("| 30000 | 20000 | – | 1.50× | – | ≥ dnsmasq: met |"),
            "{table}"
        );
        assert!(
            row("bring-up, 64").contains("< 300 ms: **missed**"),
            "{table}"
        );
        assert!(row("resident").contains("< 40 MiB: met"), "{table}");
        assert!(row("DHCP").contains("**fails**"), "{table}");
        // DHCP first, then DNS, bring-up, memory.
        assert!(table.find("DHCP").unwrap() < table.find("DNS").unwrap());
    }
}
