//! A real upstream resolver for the DNS tests: dnsmasq in a test namespace,
//! answering a fixed set of names from its command line only (no
//! resolv.conf, no /etc/hosts, no config file, no upstreams of its own) and
//! logging every query it receives, so a test can tell which queries dutnet
//! forwarded.
use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{Netns, cmd, netns::Process, prereq};

/// A name only the upstream knows, with [`ONLY_UPSTREAM_IP`].
pub const ONLY_UPSTREAM: &str = "only.upstream.test";
pub const ONLY_UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 77);
/// A name with [`BIG_COUNT`] A records: its answer needs more than the
/// 1232 bytes of an EDNS UDP payload, let alone the classic 512.
pub const BIG: &str = "big.upstream.test";
pub const BIG_COUNT: usize = 100;
/// TTL of every positive answer (dnsmasq's default for its own names is 0,
/// which nobody may cache).
pub const TTL: u32 = 300;
/// Domains the upstream is authoritative for: any other name under them is
/// NXDOMAIN (e.g. `nx.upstream.test`, or a `*.lab.local` name dutnet no
/// longer answers itself).
pub const LOCAL_DOMAINS: [&str; 2] = ["upstream.test", "lab.local"];

/// dnsmasq running in a test namespace; stopped by its PID on drop.
#[derive(Debug)]
pub struct Dnsmasq {
    process: Process,
    query_log: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq on `listen`:53 (UDP and TCP) in `ns`, files under
    /// `dir`, and waits until it serves.
    pub fn start(ns: &Netns, listen: Ipv4Addr, dir: &Path) -> Self {
        prereq::require("dnsmasq", "dnsmasq");
        let file = |suffix: &str| dir.join(format!("{}-dnsmasq.{suffix}", ns.name));
        let (hosts, query_log, pid) = (file("hosts"), file("queries"), file("pid"));
        let mut big = String::new();
        for i in 1..=BIG_COUNT {
            let _ = writeln!(big, "10.99.1.{i} {BIG}");
        }
        std::fs::write(&hosts, big).unwrap_or_else(|e| panic!("write {}: {e}", hosts.display()));
        let mut args = vec![
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--no-poll".to_owned(),
            "--bind-interfaces".to_owned(),
            format!("--listen-address={listen}"),
            // Files stay writable without a switch to `nobody`.
            "--user=root".to_owned(),
            format!("--pid-file={}", pid.display()),
            "--log-queries".to_owned(),
            format!("--log-facility={}", query_log.display()),
            format!("--local-ttl={TTL}"),
            format!("--address=/{ONLY_UPSTREAM}/{ONLY_UPSTREAM_IP}"),
            format!("--addn-hosts={}", hosts.display()),
        ];
        args.extend(LOCAL_DOMAINS.iter().map(|d| format!("--local=/{d}/")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut process = ns.spawn("dnsmasq", &args, &[], file("out"));
        let dnsmasq = cmd::wait_for(Duration::from_secs(10), || {
            assert!(process.is_running(), "dnsmasq exited:\n{}", process.log());
            let log = std::fs::read_to_string(&query_log).unwrap_or_default();
            // Logged after the listening sockets are bound.
            log.contains("started, version").then_some(())
        });
        assert!(
            dnsmasq.is_some(),
            "dnsmasq did not start:\n{}",
            process.log()
        );
        Self { process, query_log }
    }

    /// Everything dnsmasq logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.query_log).unwrap_or_default()
    }

    /// How many `qtype` queries for `qname` dnsmasq received (`qtype` as
    /// dnsmasq logs it: `A`, `AAAA`, `PTR`).
    #[must_use]
    pub fn queries(&self, qtype: &str, qname: &str) -> usize {
        let needle = format!("query[{qtype}] {qname} from ");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Every query dnsmasq received, for messages and for "nothing else
    /// arrived" checks.
    #[must_use]
    pub fn all_queries(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(": query["))
            .map(str::to_owned)
            .collect()
    }

    /// Stops dnsmasq now (SIGTERM, then SIGKILL), e.g. to make it a dead
    /// upstream.
    pub fn stop(&mut self) {
        self.process.terminate();
    }
}
