//! The control plane: DHCP leases/s and DNS queries/s against dnsmasq, each
//! server on a fresh lab of its own; dutnet's bring-up time and memory.
mod bringup;
mod dhcp;
mod dns;
pub mod report;

use std::{path::Path as FsPath, time::Duration};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::{Netns, Topology, cmd, netns::Process};
use report::{ControlMetric, ControlResults};

use super::lab;

/// Who serves DHCP or DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Server {
    Dutnet,
    /// dnsmasq as jumpstarter runs it: defaults, so its DHCP pings an
    /// address before offering it.
    Dnsmasq,
    /// dnsmasq's DHCP with `--no-ping`, as dutnet (which relies on DECLINE).
    DnsmasqNoPing,
}

impl Server {
    pub const ALL: [Self; 3] = [Self::Dutnet, Self::Dnsmasq, Self::DnsmasqNoPing];

    pub fn key(self) -> &'static str {
        match self {
            Self::Dutnet => "dutnet",
            Self::Dnsmasq => "dnsmasq",
            Self::DnsmasqNoPing => "dnsmasq_no_ping",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::DnsmasqNoPing => "dnsmasq --no-ping",
            other => other.key(),
        }
    }

    fn tag(self) -> char {
        match self {
            Self::Dutnet => 'd',
            Self::Dnsmasq => 'm',
            Self::DnsmasqNoPing => 'n',
        }
    }
}

/// How much load the control plane gets, bounded in count and time.
#[derive(Clone, Copy, Debug)]
pub struct ControlBudget {
    pub dhcp_clients: usize,
    pub dhcp_limit: Duration,
    pub dns_queries: u64,
    pub dns_limit: Duration,
    pub networks: &'static [usize],
}

impl ControlBudget {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                dhcp_clients: 10,
                dhcp_limit: Duration::from_secs(10),
                dns_queries: 20_000,
                dns_limit: Duration::from_secs(2),
                networks: &[1, 64, 256],
            }
        } else {
            Self {
                dhcp_clients: 200,
                dhcp_limit: Duration::from_secs(60),
                dns_queries: 300_000,
                dns_limit: Duration::from_secs(10),
                networks: &[1, 64, 256],
            }
        }
    }
}

/// Every control-plane measurement of one run, each on fresh labs. A
/// server that fails a load is a result, not a reason to stop the bench.
pub fn measure(dutnet: &FsPath, run: usize, budget: ControlBudget, results: &mut ControlResults) {
    let metric = ControlMetric::DhcpLeases(budget.dhcp_clients);
    for server in Server::ALL {
        match dhcp::measure(server, dutnet, run, budget.dhcp_clients, budget.dhcp_limit) {
            Ok(result) => {
                eprintln!(
                    "    DHCP, {} clients, {}: {:.1} leases/s ({} bound, {} NAKs)",
                    budget.dhcp_clients,
                    server.title(),
                    result.rate,
                    result.bound,
                    result.naks,
                );
                results.add(metric, server, result.rate);
                if result.bound < budget.dhcp_clients {
                    results.note(
                        metric,
                        server,
                        format!(
                            "only {} of {} clients had a lease after {:?} ({} NAKs): the rate is those over the whole limit",
                            result.bound, budget.dhcp_clients, budget.dhcp_limit, result.naks
                        ),
                    );
                }
            }
            Err(error) => {
                eprintln!("    DHCP, {} FAILED: {error:#}", server.title());
                results.fail(metric, server, format!("{error:#}"));
            }
        }
    }
    for server in [Server::Dutnet, Server::Dnsmasq] {
        match dns::measure(server, dutnet, run, budget.dns_queries, budget.dns_limit) {
            Ok(result) => {
                eprintln!(
                    "    DNS, {}: {:.0} queries/s ({} answered, {} lost)",
                    server.title(),
                    result.rate,
                    result.answered,
                    result.lost
                );
                results.add(ControlMetric::DnsQueries, server, result.rate);
            }
            Err(error) => {
                eprintln!("    DNS, {} FAILED: {error:#}", server.title());
                results.fail(ControlMetric::DnsQueries, server, format!("{error:#}"));
            }
        }
    }
    for &networks in budget.networks {
        match bringup::measure(dutnet, run, networks) {
            Ok(up) => {
                eprintln!(
                    "    bring-up, {networks} networks: {:.0} ms, {:.1} MiB resident",
                    up.millis, up.rss_mib
                );
                results.add(ControlMetric::BringUp(networks), Server::Dutnet, up.millis);
                results.add(
                    ControlMetric::Resident(networks),
                    Server::Dutnet,
                    up.rss_mib,
                );
            }
            Err(error) => {
                eprintln!("    bring-up, {networks} networks FAILED: {error:#}");
                let reason = format!("{error:#}");
                results.fail(ControlMetric::BringUp(networks), Server::Dutnet, reason);
            }
        }
    }
}

/// Starts `dutnet load <config>` in `exporter` and waits for "dutnet is up".
/// Returns the daemon and how long that took from the spawn.
pub(super) fn start_dutnet(
    topology: &Topology,
    exporter: &Netns,
    dutnet: &FsPath,
    yaml: &str,
    limit: Duration,
) -> Result<(Process, Duration)> {
    let config = topology.path("dutnet.yaml");
    std::fs::write(&config, yaml)?;
    let env = lab::daemon_env(topology);
    let started = std::time::Instant::now();
    let daemon = exporter.spawn(
        &dutnet.to_string_lossy(),
        &["load", &config.to_string_lossy()],
        &env,
        topology.path("dutnet.log"),
    );
    let up = poll(limit, || {
        daemon
            .log()
            .contains("dutnet is up")
            .then(|| started.elapsed())
    });
    match up {
        Some(took) => Ok((daemon, took)),
        None => bail!("dutnet did not come up within {limit:?}:\n{}", daemon.log()),
    }
}

/// Starts dnsmasq in `ns` with `args` (no config file, logging to stderr
/// only) and waits until `ready` holds.
fn start_dnsmasq(
    topology: &Topology,
    ns: &Netns,
    args: &[String],
    mut ready: impl FnMut() -> bool,
) -> Result<Process> {
    let mut all = vec![
        "--no-daemon".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--log-facility=-".to_owned(),
    ];
    all.extend_from_slice(args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut process = ns.spawn("dnsmasq", &all, &[], topology.path("dnsmasq.log"));
    if cmd::wait_for(Duration::from_secs(10), || ready().then_some(())).is_none() {
        let running = process.is_running();
        bail!(
            "dnsmasq did not get ready (running: {running}):\n{}",
            process.log()
        );
    }
    Ok(process)
}

/// Like `cmd::wait_for`, but every 2 ms: the times measured here are tens
/// of milliseconds.
fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// True when something in `ns` listens on UDP `port`.
pub(super) fn listens_udp(ns: &Netns, port: u16) -> bool {
    let ss = ns.exec("ss", &["-Hlun", &format!("sport = :{port}")]);
    !ss.stdout.trim().is_empty()
}

/// VmRSS of `pid` in MiB, from /proc/<pid>/status.
fn resident_mib(pid: i32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm_rss_kib(&status)
        .map(|kib| kib as f64 / 1024.0)
        .context("no VmRSS line in /proc/<pid>/status")
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tdutnet\nVmPeak:\t  100 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12_345));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }
}
