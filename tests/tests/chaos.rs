//! kill -9 at random moments (issue #25 item 3): during bring-up, during a
//! runtime change through the control socket, during a reload and during
//! teardown, with DHCP clients holding leases on two networks. After each
//! kill the host is restored exactly (addresses, links, forwarding and
//! fwmark sysctls, policy rules and routes, the nft ruleset, TCX
//! attachments, pins), by `dutnet down` or by the next `dutnet load`
//! (alternately), and every lease a client was ACKed is still its own.
//!
//! `CHAOS_RUNS` sets the number of kills (default 4, what `cargo xtask
//! test` runs; `cargo xtask chaos --runs 50` for the figures in
//! docs/reliability.md), `CHAOS_SEED` the seed (printed; a failure names
//! it).
use std::time::{Duration, Instant};

use dutnet_tests::{
    cli,
    clients::Dhclient,
    lab::{
        Dut, Lab,
        config::{self, DUT_IP, LAN_IP, Network, UPSTREAM_NIC},
    },
    netns::Process,
    prereq,
};

const NICS: [&str; 2] = ["dn-dut1", "dn-dut2"];
const WATCHED: [&str; 3] = ["dn-dut1", "dn-dut2", "dn-up"];
const DEFAULT_RUNS: u64 = 4;

/// Everything dutnet changes on the host, as `ip`, `sysctl`, `nft` and the
/// kernel's TCX query show it.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    addresses: Vec<(String, String)>,
    links_up: Vec<(String, bool)>,
    sysctls: Vec<(String, String)>,
    rules: String,
    routes: String,
    ruleset: String,
    tcx: Vec<(String, Vec<String>)>,
    pins: Vec<String>,
}

fn host_state(lab: &Lab) -> HostState {
    let ns = &lab.exporter;
    let text = |args: &[&str]| ns.exec(args[0], &args[1..]).ok().stdout;
    let mut addresses = Vec::new();
    let mut links_up = Vec::new();
    let mut sysctls = Vec::new();
    for iface in WATCHED {
        for line in text(&["ip", "-o", "addr", "show", "dev", iface]).lines() {
            // Lifetimes count down: compare the rest.
            let kept: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.ends_with("sec") && *w != "valid_lft" && *w != "preferred_lft")
                .collect();
            addresses.push((iface.to_owned(), kept.join(" ")));
        }
        let link = text(&["ip", "-o", "link", "show", "dev", iface]);
        links_up.push((
            iface.to_owned(),
            link.contains(",UP") || link.contains("<UP"),
        ));
        let key = format!("net.ipv4.conf.{iface}.forwarding");
        sysctls.push((key.clone(), ns.sysctl_get(&key)));
    }
    for key in [
        "net.ipv4.ip_forward",
        "net.ipv4.fwmark_reflect",
        "net.ipv4.tcp_fwmark_accept",
    ] {
        sysctls.push((key.to_owned(), ns.sysctl_get(key)));
    }
    let tcx = WATCHED
        .iter()
        .map(|iface| {
            let name = (*iface).to_owned();
            let programs = ns.enter(move || {
                dutnet::datapath::ebpf::tcx_program_names(&name).unwrap_or_default()
            });
            ((*iface).to_owned(), programs)
        })
        .collect();
    HostState {
        addresses,
        links_up,
        sysctls,
        rules: text(&["ip", "rule", "show"]),
        routes: text(&["ip", "route", "show", "table", "all"]),
        ruleset: text(&["nft", "list", "ruleset"]),
        tcx,
        pins: lab.topology.dutnet_pins(),
    }
}

/// xorshift64*: reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// Two masquerade networks with DHCP on the two DUT NICs; `extra` DNS
/// entries make a changed file for a reload.
fn config(extra_dns: usize) -> String {
    config::networks(NICS.iter().enumerate().map(|(i, nic)| {
        let mut dns = format!("dns_entries:\n  - {{hostname: controller.lab.local, ip: {LAN_IP}}}\n");
        for k in 0..extra_dns {
            dns.push_str(&format!("  - {{hostname: extra{k}.lab, ip: 10.0.0.{}}}\n", k + 10));
        }
        let network = Network::on(nic).set(&format!(
            "upstream_interface: {UPSTREAM_NIC}\ndatapath: ebpf\ndhcp_range_start: 192.168.100.100\ndhcp_range_end: 192.168.100.120\ndns_servers: [\"{LAN_IP}\"]\n{dns}"
        ));
        (format!("net{i}"), network)
    }))
}

/// Where the kill lands.
#[derive(Clone, Copy, Debug)]
enum Moment {
    BringUp,
    RuntimeChange,
    Reload,
    Teardown,
}

/// The DHCP clients, one per DUT NIC, and the address each was ACKed.
struct Clients {
    clients: Vec<Dhclient>,
    acked: Vec<Option<String>>,
}

impl Clients {
    fn new(lab: &Lab) -> Self {
        prereq::require("dhclient", "isc-dhcp-client");
        let clients: Vec<Dhclient> = (1..=NICS.len())
            .map(|n| {
                Dhclient::new(
                    lab.dut(n),
                    "eth0",
                    &lab.topology.dir,
                    &format!("chaos{n}"),
                    "",
                )
            })
            .collect();
        let acked = vec![None; clients.len()];
        Self { clients, acked }
    }

    /// Every client asks (a new one DISCOVERs, an old one REQUESTs its
    /// address); each must keep the address it was ACKed before.
    fn check_and_renew(&mut self, lab: &Lab, context: &str) {
        for (client, acked) in self.clients.iter().zip(&mut self.acked) {
            let out = client.run();
            let now = client.address();
            assert!(
                out.success() && now.is_some(),
                "{context}: no lease for {}: {out:#?}\n{}",
                client.ns.name,
                lab.log()
            );
            if let Some(before) = acked.as_ref() {
                assert_eq!(
                    now.as_ref(),
                    Some(before),
                    "{context}: {} lost its lease\n{}",
                    client.ns.name,
                    lab.log()
                );
            }
            *acked = now;
        }
    }
}

/// Starts dutnet on the current file and waits until it serves.
fn start(lab: &Lab, log: &str) -> Process {
    let daemon = lab.spawn(&[], log);
    cli::wait_until_up(&lab.topology, &daemon);
    daemon
}

#[test]
fn kill_9_at_random_moments_leaves_no_trace_and_loses_no_lease() {
    let runs = env_number("CHAOS_RUNS").unwrap_or(DEFAULT_RUNS);
    let seed = env_number("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            .into()
    }) | 1;
    eprintln!("chaos: CHAOS_SEED={seed}, {runs} kills");
    let mut rng = Rng(seed);
    let mut builder = Lab::builder().upstream();
    for n in 1..=NICS.len() {
        builder = builder.dut(Dut::on(n).ip(DUT_IP));
    }
    let lab = builder.build();
    lab.exporter.ip(&format!("route add default via {LAN_IP}"));
    for (n, nic) in (1..).zip(NICS) {
        lab.exporter
            .ip(&format!("addr add 10.50.{n}.7/24 dev {nic}"));
        lab.exporter.ip(&format!("link set {nic} down"));
    }
    lab.write_config(&config(0));
    let before = host_state(&lab);
    // What a kill must not leave: a running dutnet changes each part.
    let mut first = start(&lab, "baseline");
    let running = host_state(&lab);
    for (part, same) in [
        ("addresses", running.addresses == before.addresses),
        ("links", running.links_up == before.links_up),
        ("sysctls", running.sysctls == before.sysctls),
        ("rules", running.rules == before.rules),
        ("ruleset", running.ruleset == before.ruleset),
        ("tcx", running.tcx == before.tcx),
        ("pins", running.pins == before.pins),
    ] {
        assert!(
            !same,
            "a running dutnet leaves the {part} as they were: {running:#?}"
        );
    }
    assert_eq!(first.terminate(), Some(0), "{}", first.log());
    assert_eq!(host_state(&lab), before, "after SIGTERM");
    let mut clients = Clients::new(&lab);
    let started = Instant::now();
    let mut tally = std::collections::BTreeMap::<String, u64>::new();
    for run in 0..runs {
        let moment = [
            Moment::BringUp,
            Moment::RuntimeChange,
            Moment::Reload,
            Moment::Teardown,
        ][usize::try_from(rng.below(4)).unwrap()];
        let context = format!("CHAOS_SEED={seed} run {run} ({moment:?})");
        let mut daemon = match moment {
            Moment::BringUp => {
                let daemon = lab.spawn(&[], &format!("run{run}"));
                std::thread::sleep(rng.millis(700));
                daemon
            }
            _ => {
                let daemon = start(&lab, &format!("run{run}"));
                clients.check_and_renew(&lab, &context);
                daemon
            }
        };
        match moment {
            Moment::BringUp => {}
            Moment::RuntimeChange => {
                let _change = cli::spawn(
                    &lab.topology,
                    &lab.exporter,
                    &[
                        "add-address",
                        "--network",
                        "net0",
                        "--ip",
                        "192.168.100.60",
                        "-m",
                        "02:00:00:00:06:00",
                        "-n",
                        "chaos-board",
                    ],
                    &format!("change{run}"),
                );
                std::thread::sleep(rng.millis(60));
            }
            Moment::Reload => {
                lab.write_config(&config(1 + usize::try_from(rng.below(20)).unwrap()));
                // SAFETY: kill with the PID of the dutnet this test started.
                unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
                std::thread::sleep(rng.millis(80));
            }
            Moment::Teardown => {
                // SAFETY: as above.
                unsafe { libc::kill(daemon.pid(), libc::SIGTERM) };
                std::thread::sleep(rng.millis(80));
            }
        }
        daemon.kill9();
        // Alternately: `dutnet down` restores, or the next load does.
        lab.write_config(&config(0));
        let recovery = if run % 2 == 0 { "down" } else { "load" };
        *tally
            .entry(format!("{moment:?} then {recovery}"))
            .or_default() += 1;
        if recovery == "down" {
            let down = lab.dutnet(&["down"]);
            assert!(down.success(), "{context}: {down:#?}");
            assert_eq!(
                host_state(&lab),
                before,
                "{context}: after `dutnet down`\n{}",
                lab.log()
            );
        }
        let mut again = start(&lab, &format!("again{run}"));
        clients.check_and_renew(&lab, &context);
        assert_eq!(again.terminate(), Some(0), "{context}\n{}", again.log());
        assert_eq!(
            host_state(&lab),
            before,
            "{context}: after a {recovery} and a clean stop\n{}",
            again.log()
        );
    }
    eprintln!(
        "chaos: {runs} kills in {:.0} s, host restored and leases kept each time: {tally:?}",
        started.elapsed().as_secs_f64()
    );
}
