//! A flooding or scanning DUT never cuts off another DUT: the acceptance
//! tests of the per-network flow budgets (`nat_table_size` per network,
//! half of it per DUT, eviction of unreplied and closed flows when full).
//!
//! Each test is judged where the other DUTs' users would notice: their TCP
//! connections to the LAN host (an echo server that answers with the
//! request), their name lookups from dutnet's DNS and their pings, while
//! one DUT floods new UDP flows (frames from the shared generator), churns
//! through short connections or runs nmap. `dutnet stats` is checked as a
//! user reads it: flows never over the budget, evictions on the flooding
//! DUT's network only.
//!
//! Every load is bounded in packets (or connections, or ports) and in time,
//! and goes only from a DUT namespace of the test to its LAN host.
use std::{
    net::SocketAddrV4,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use dutnet_tests::{
    Netns, cmd,
    far_end::TcpEcho,
    generator::{self, Flows, Load, PacketSocket, Template},
    lab::Lab,
    nat::{GATEWAY, LAN_IP, dut_ip, try_tcp_exchange},
    prereq,
};
use serde_json::Value;

/// The flood and scan tests' `nat_table_size` for each network.
const BUDGET: u64 = 4096;
/// The smallest `nat_table_size` there is: the churn test's.
const SMALL_BUDGET: u64 = 1024;
/// A name dutnet answers itself (a `dns_entries` record).
const NAME: &str = "controller.lab.local";
const ECHO_PORT: u16 = 7001;
/// A DUT's run of exchanges gives up after this many failures: one is a
/// failed test already, and each may take a few seconds to time out.
const MAX_FAILURES: usize = 5;

/// A network's keys: eBPF (the budgets are its), `table` flows, and the
/// DNS record [`NAME`] pointing at the LAN host.
fn network(table: u64) -> String {
    format!(
        "datapath: ebpf\nnat_table_size: {table}\ndns_entries:\n  - hostname: {NAME}\n    ip: {LAN_IP}\n"
    )
}

fn require_clients() {
    prereq::require("dig", "dnsutils");
    prereq::require("ping", "iputils-ping");
}

/// A name lookup from `ns` to dutnet's DNS on the gateway: one query, one
/// try, the record's address as the only answer.
fn resolve(ns: &Netns) -> Result<(), String> {
    let out = ns.exec(
        "dig",
        &[
            &format!("@{GATEWAY}"),
            NAME,
            "A",
            "+short",
            "+time=2",
            "+tries=1",
        ],
    );
    if out.success() && out.stdout.trim() == LAN_IP.to_string() {
        Ok(())
    } else {
        Err(format!(
            "dig {NAME} from {}: exit {:?}, answer {:?} {}",
            ns.name,
            out.code,
            out.stdout.trim(),
            out.stderr.trim()
        ))
    }
}

/// One ping from `ns` to the LAN host, waiting 2 s for the reply.
fn ping(ns: &Netns) -> Result<(), String> {
    let out = ns.exec("ping", &["-n", "-c", "1", "-W", "2", &LAN_IP.to_string()]);
    if out.success() {
        Ok(())
    } else {
        Err(format!("ping from {}: {}", ns.name, out.stdout.trim()))
    }
}

/// Bounds of a run of TCP exchanges: whichever comes first ends it, or
/// [`MAX_FAILURES`] failures.
#[derive(Clone)]
struct Bounds {
    count: u32,
    limit: Duration,
    /// Between two exchanges.
    pause: Duration,
    stop: Option<Arc<AtomicBool>>,
}

impl Bounds {
    fn count(count: u32) -> Self {
        Self {
            count,
            limit: Duration::from_secs(60),
            pause: Duration::ZERO,
            stop: None,
        }
    }
}

/// What a run of exchanges got.
#[derive(Debug, Default)]
struct Exchanges {
    /// When each successful one completed.
    done: Vec<Instant>,
    failures: Vec<String>,
    elapsed: Duration,
}

impl Exchanges {
    fn ok(&self) -> usize {
        self.done.len()
    }

    fn add(&mut self, other: Self) {
        self.done.extend(other.done);
        self.failures.extend(other.failures);
    }
}

/// TCP exchanges (connect, a line, its echo, close) one after the other
/// from `ns` with the echo server at `echo`, within `bounds`. A thread in
/// the namespace runs them all: no thread per connection.
fn exchanges(ns: &Netns, echo: SocketAddrV4, bounds: Bounds) -> Exchanges {
    let tag = ns.name.clone();
    ns.enter(move || {
        let started = Instant::now();
        let mut run = Exchanges::default();
        let mut n = 0u32;
        while n < bounds.count
            && started.elapsed() < bounds.limit
            && run.failures.len() < MAX_FAILURES
            && !bounds
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            let attempt = Instant::now();
            match try_tcp_exchange(echo, &format!("{tag} {n}")) {
                Ok(_) => run.done.push(Instant::now()),
                Err(e) => run.failures.push(format!(
                    "TCP {n} from {tag} at {:?}: {e} after {:?}",
                    started.elapsed(),
                    attempt.elapsed()
                )),
            }
            n += 1;
            if !bounds.pause.is_zero() {
                std::thread::sleep(bounds.pause);
            }
        }
        run.elapsed = started.elapsed();
        run
    })
}

/// What a DUT on the lab does in one go: `connections` TCP exchanges,
/// `pause` apart, with a name lookup and a ping after each quarter of them.
fn round(ns: &Netns, echo: SocketAddrV4, connections: u32, pause: Duration) -> Exchanges {
    let started = Instant::now();
    let mut run = Exchanges::default();
    for _ in 0..4 {
        let bounds = Bounds {
            pause,
            ..Bounds::count(connections / 4)
        };
        run.add(exchanges(ns, echo, bounds));
        run.failures.extend(resolve(ns).err());
        run.failures.extend(ping(ns).err());
        if run.failures.len() >= MAX_FAILURES {
            break;
        }
    }
    run.elapsed = started.elapsed();
    run
}

/// One DUT NIC's flows as `dutnet stats --json` shows them (`None`: the
/// field is missing).
#[derive(Clone, Debug)]
struct NicFlows {
    interface: String,
    active: Option<u64>,
    budget: Option<u64>,
    evictions: Option<u64>,
}

fn flows_of(stats: &Value) -> Vec<NicFlows> {
    stats["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| NicFlows {
            interface: i["interface"].as_str().unwrap_or_default().to_owned(),
            active: i["active_flows"].as_u64(),
            budget: i["flow_budget"].as_u64(),
            evictions: i["evictions"].as_u64(),
        })
        .collect()
}

/// Reads the stats every `every` until `stop` (at most 10 minutes' worth).
fn sample(lab: &Lab, stop: &AtomicBool, every: Duration) -> Vec<NicFlows> {
    let mut samples = Vec::new();
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) {
        samples.extend(flows_of(&lab.stats()));
        std::thread::sleep(every);
    }
    samples
}

/// Every sample shows the configured budget and no more flows than it.
#[track_caller]
fn assert_within_budget(samples: &[NicFlows], budget: u64, lab: &Lab) {
    assert!(!samples.is_empty(), "no stats sampled");
    for s in samples {
        assert_eq!(
            s.budget,
            Some(budget),
            "{}: flow_budget in {s:?}\n{}",
            s.interface,
            lab.report()
        );
        assert!(
            s.active.is_some_and(|a| a <= budget),
            "{}: more flows than the budget: {s:?}\n{}",
            s.interface,
            lab.report()
        );
    }
}

/// The most flows any sample of `interface` showed.
fn peak(samples: &[NicFlows], interface: &str) -> u64 {
    samples
        .iter()
        .filter(|s| s.interface == interface)
        .filter_map(|s| s.active)
        .max()
        .unwrap_or(0)
}

/// The most evictions any sample of `interface` showed (`None`: a sample
/// had no such field).
fn evictions(samples: &[NicFlows], interface: &str) -> Option<u64> {
    samples
        .iter()
        .filter(|s| s.interface == interface)
        .map(|s| s.evictions)
        .try_fold(0, |most, e| e.map(|e| e.max(most)))
}

/// A value of DUT NIC `iface`'s stats (JSON pointer), 0 when missing.
fn counter(lab: &Lab, iface: &str, pointer: &str) -> u64 {
    lab.stats_of(iface)
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Two DUTs (A = .10, B = .11) behind one switch on `dn-dut1`, a third (C)
/// alone on `dn-dut2`, both networks with [`BUDGET`] flows, the LAN host's
/// TCP echo, and every DUT shown to reach the LAN host.
fn two_networks() -> (Lab, TcpEcho) {
    require_clients();
    let mut lab = Lab::builder().upstream().switched_duts(&[2, 1]).build();
    lab.load_nat(&network(BUDGET));
    let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, ECHO_PORT));
    for dut in [lab.dut_behind(1, 1), lab.dut_behind(1, 2), lab.dut(2)] {
        if let Err(e) = ping(dut) {
            panic!("before any load: {e}\n{}", lab.report());
        }
    }
    (lab, echo)
}

/// Every exchange of every run succeeded, at least `at_least` in each:
/// fails with all the runs' failures, so one report shows who was cut off.
#[track_caller]
fn assert_all_succeeded(runs: &[(&str, &Exchanges)], at_least: usize, lab: &Lab) {
    let shortfalls: Vec<String> = runs
        .iter()
        .filter(|(_, run)| !run.failures.is_empty() || run.ok() < at_least)
        .map(|(who, run)| {
            format!(
                "{who}: {} TCP exchanges succeeded (at least {at_least} due); failures:\n{}",
                run.ok(),
                run.failures.join("\n")
            )
        })
        .collect();
    assert!(
        shortfalls.is_empty(),
        "{}\n{}",
        shortfalls.join("\n"),
        lab.report()
    );
}

#[test]
fn a_flooding_dut_never_cuts_off_another_dut() {
    let (lab, echo) = two_networks();
    let (a, b, c) = (lab.dut_behind(1, 1), lab.dut_behind(1, 2), lab.dut(2));
    let socket = a
        .enter(|| PacketSocket::open("eth0"))
        .expect("packet socket on A's NIC");
    let gateway_mac = lab.exporter.mac("dn-dut1").expect("MAC of dn-dut1");
    let template = Template::new(
        dut_ip(1),
        LAN_IP,
        gateway_mac,
        a.mac("eth0").expect("A's MAC"),
    );
    let flood = Load {
        flows: Flows::Scattered { seed: 0x00f1_00d5 },
        packets: 5_000_000,
        limit: Duration::from_secs(5),
    };
    const CONNECTIONS: u32 = 200;
    let stop_sampling = AtomicBool::new(false);

    let (sent, flood_ended, during, a_first, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample(&lab, &stop_sampling, Duration::from_millis(200)));
        let flooding = s.spawn(|| generator::send(&socket, &template, flood));
        // B and C start once A has sent a few budgets' worth of new flows
        // (counted by dutnet on both the new and the old datapath).
        cmd::wait_for(Duration::from_secs(3), || {
            (counter(&lab, "dn-dut1", "/from_dut/packets") > 3 * BUDGET).then_some(())
        });
        // Spread over the flood's seconds rather than done in a moment.
        let pause = Duration::from_millis(10);
        let during_b = s.spawn(move || round(b, echo.addr, CONNECTIONS, pause));
        let during_c = s.spawn(move || round(c, echo.addr, CONNECTIONS, pause));
        let sent = flooding.join().expect("flood thread").expect("flood");
        let flood_ended = Instant::now();
        let a_first = a.enter({
            let echo = echo.addr;
            move || {
                let started = Instant::now();
                (
                    try_tcp_exchange(echo, "A after its flood"),
                    started.elapsed(),
                )
            }
        });
        let during = [during_b, during_c].map(|t| t.join().expect("round thread"));
        stop_sampling.store(true, Ordering::Relaxed);
        let samples = sampler.join().expect("sampler thread");
        (sent, flood_ended, during, a_first, samples)
    });
    let [during_b, during_c] = during;
    let under_flood = |run: &Exchanges| run.done.iter().filter(|t| **t < flood_ended).count();
    eprintln!(
        "flood: {} new flows in {:?} ({:.0} kpps); B {} and C {} TCP exchanges done while it ran \
         (rounds took {:?} and {:?}); A's first connection after it: {:?} in {:?}",
        sent.packets,
        sent.elapsed,
        sent.packets as f64 / sent.elapsed.as_secs_f64() / 1e3,
        under_flood(&during_b),
        under_flood(&during_c),
        during_b.elapsed,
        during_c.elapsed,
        a_first.0.as_ref().map(|_| "ok"),
        a_first.1,
    );
    assert!(
        sent.packets > 10 * BUDGET,
        "the flood sent only {} packets",
        sent.packets
    );
    let all = CONNECTIONS as usize;
    assert_all_succeeded(
        &[
            ("B during A's flood", &during_b),
            ("C during A's flood", &during_c),
        ],
        all,
        &lab,
    );
    assert!(
        under_flood(&during_b) > 0 && under_flood(&during_c) > 0,
        "B or C did nothing while the flood ran: the test proves nothing"
    );
    assert!(
        a_first.0.is_ok() && a_first.1 < Duration::from_secs(1),
        "A's first TCP connection after its flood: {:?} after {:?}\n{}",
        a_first.0,
        a_first.1,
        lab.report()
    );

    let after = std::thread::scope(|s| {
        [b, c]
            .map(|dut| s.spawn(move || round(dut, echo.addr, CONNECTIONS, Duration::ZERO)))
            .map(|t| t.join().expect("round thread"))
    });
    assert_all_succeeded(
        &[
            ("B after A's flood", &after[0]),
            ("C after A's flood", &after[1]),
        ],
        all,
        &lab,
    );

    let mut samples = samples;
    samples.extend(flows_of(&lab.stats()));
    assert_within_budget(&samples, BUDGET, &lab);
    let evicted_a = counter(&lab, "dn-dut1", "/evictions");
    // Every sample, not only the last: C's network must never lose a flow.
    let evicted_c = evictions(&samples, "dn-dut2");
    eprintln!(
        "stats: dn-dut1 peak {} flows, {evicted_a} evictions, {} dut_flow_limit and {} table_full drops; \
         dn-dut2 peak {} flows, {evicted_c:?} evictions ({} samples)",
        peak(&samples, "dn-dut1"),
        counter(&lab, "dn-dut1", "/drops/dut_flow_limit"),
        counter(&lab, "dn-dut1", "/drops/table_full"),
        peak(&samples, "dn-dut2"),
        samples.len() / 2,
    );
    assert!(
        evicted_a > 0,
        "the flood evicted nothing on A's network\n{}",
        lab.report()
    );
    assert_eq!(
        evicted_c,
        Some(0),
        "a flow of C's network was evicted\n{}",
        lab.report()
    );
}

#[test]
fn a_churning_dut_gets_every_connection_and_stays_within_its_budget() {
    const LIMIT: Duration = Duration::from_secs(30);
    const MAX_CONNECTIONS: u32 = 400_000;
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat(&network(SMALL_BUDGET));
    let dut = lab.dut(1);
    // 2000 client ports, four times the DUT's share of the table: every
    // port comes round again many times, each time after its last flow
    // left the table or while it is still there closing.
    dut.sysctl("net.ipv4.ip_local_port_range=40000 41999");
    let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, ECHO_PORT));
    let stop_sampling = AtomicBool::new(false);

    let (run, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample(&lab, &stop_sampling, Duration::from_secs(1)));
        let run = exchanges(
            dut,
            echo.addr,
            Bounds {
                count: MAX_CONNECTIONS,
                limit: LIMIT,
                pause: Duration::ZERO,
                stop: None,
            },
        );
        stop_sampling.store(true, Ordering::Relaxed);
        (run, sampler.join().expect("sampler thread"))
    });
    let mut samples = samples;
    samples.extend(flows_of(&lab.stats()));
    eprintln!(
        "churn: {} connections in {:?} ({:.0}/s), {} failed; peak {} flows of {SMALL_BUDGET}, \
         {} evictions, {} samples",
        run.ok(),
        run.elapsed,
        run.ok() as f64 / run.elapsed.as_secs_f64(),
        run.failures.len(),
        peak(&samples, "dn-dut1"),
        counter(&lab, "dn-dut1", "/evictions"),
        samples.len(),
    );
    assert!(
        run.failures.is_empty(),
        "failed connections after {} good ones:\n{}\n{}",
        run.ok(),
        run.failures.join("\n"),
        lab.report()
    );
    assert!(
        run.ok() as u64 > 10 * SMALL_BUDGET,
        "only {} connections in {:?}: not ten budgets' worth",
        run.ok(),
        run.elapsed
    );
    assert_within_budget(&samples, SMALL_BUDGET, &lab);
}

#[test]
fn a_scanning_dut_never_cuts_off_another_dut() {
    prereq::require("nmap", "nmap");
    let (lab, echo) = two_networks();
    let (a, b, c) = (lab.dut_behind(1, 1), lab.dut_behind(1, 2), lab.dut(2));
    let lan = LAN_IP.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    // Each exchange leaves a closing flow in the table for a while: 1800
    // stay under a DUT's share (half of the budget), so whatever C's
    // network evicts could only be the scan's doing.
    let bounds = Bounds {
        count: 1800,
        limit: Duration::from_secs(60),
        pause: Duration::from_millis(5),
        stop: Some(Arc::clone(&stop)),
    };
    let stop_sampling = AtomicBool::new(false);

    let (scans, runs, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample(&lab, &stop_sampling, Duration::from_millis(500)));
        let runs = [b, c].map(|dut| {
            let bounds = bounds.clone();
            s.spawn(move || exchanges(dut, echo.addr, bounds))
        });
        // Every scan is bounded by its rate, its retries and a host
        // timeout below the 30 s a command may take here.
        let common = ["-n", "-Pn", "--max-retries", "0", "--host-timeout", "25s"];
        let syn = a.exec(
            "nmap",
            &[
                &["-sS", "-p", "1-65535", "--max-rate", "20000"],
                &common[..],
                &[lan.as_str()],
            ]
            .concat(),
        );
        let udp = a.exec(
            "nmap",
            &[
                &[
                    "-sU",
                    "-p",
                    "1-5000",
                    "--min-rate",
                    "1000",
                    "--max-rate",
                    "5000",
                ],
                &common[..],
                &[lan.as_str()],
            ]
            .concat(),
        );
        stop.store(true, Ordering::Relaxed);
        let runs = runs.map(|t| t.join().expect("exchange thread"));
        stop_sampling.store(true, Ordering::Relaxed);
        ([syn, udp], runs, sampler.join().expect("sampler thread"))
    });
    let summary = |out: &dutnet_tests::Output| {
        out.stdout
            .lines()
            .filter(|l| l.starts_with("Nmap done") || l.contains("open"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    eprintln!(
        "scans: SYN {:?}: {}; UDP {:?}: {}; B {} and C {} TCP exchanges",
        scans[0].code,
        summary(&scans[0]),
        scans[1].code,
        summary(&scans[1]),
        runs[0].ok(),
        runs[1].ok(),
    );
    for scan in &scans {
        assert!(scan.success(), "nmap failed: {scan:#?}");
        assert!(
            scan.stdout.contains("Nmap done: 1 IP address (1 host up)"),
            "nmap did not scan the LAN host: {scan:#?}"
        );
    }
    assert_all_succeeded(
        &[
            ("B during A's scans", &runs[0]),
            ("C during A's scans", &runs[1]),
        ],
        100,
        &lab,
    );
    let mut samples = samples;
    samples.extend(flows_of(&lab.stats()));
    assert_within_budget(&samples, BUDGET, &lab);
    eprintln!(
        "stats: dn-dut1 peak {} flows, {} evictions; dn-dut2 {:?} evictions",
        peak(&samples, "dn-dut1"),
        counter(&lab, "dn-dut1", "/evictions"),
        evictions(&samples, "dn-dut2"),
    );
    assert_eq!(
        evictions(&samples, "dn-dut2"),
        Some(0),
        "a flow of C's network was evicted\n{}",
        lab.report()
    );
}
