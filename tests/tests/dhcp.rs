//! The DHCP server's acceptance (issue #5) with real clients in DUT
//! namespaces: renew and release, DECLINE, restarts after SIGTERM and
//! SIGKILL, 200 clients on one bridge, range exhaustion, two networks on one
//! subnet, malformed packets. Every check is on what a client got: the lease
//! dhclient or udhcpc wrote, or the reply a raw DHCP client received.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use dhcproto::{
    Encodable as _,
    v4::{DhcpOption, Message, MessageType},
};
use dutnet_tests::{
    Netns,
    clients::{self, Dhclient},
    cmd,
    lab::{
        Lab,
        config::{self, GATEWAY as SERVER, Network, SUBNET},
    },
    prereq,
};

#[path = "common/raw_dhcp.rs"]
mod raw_dhcp;

use raw_dhcp::{RawClient, request};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 100, last)
}

/// One DUT network of the config: `interface` serves `first..=last` of
/// 192.168.100.0/24 (same subnet and gateway for every network).
struct Net {
    interface: &'static str,
    first: u8,
    last: u8,
}

/// An exporter namespace (no upstream) with the config for `networks`
/// written; nothing runs yet.
fn lab_for(networks: &[Net]) -> Lab {
    prereq::require("dhclient", "isc-dhcp-client");
    prereq::require("udhcpc", "udhcpc");
    let lab = Lab::builder().build();
    let yaml = config::networks(networks.iter().enumerate().map(|(i, net)| {
        let network = Network::on(net.interface).set(&format!(
            "subnet: {SUBNET}\ngateway_ip: {SERVER}\nnat_mode: disabled\nlease_time: 1h\ndhcp_range_start: {}\ndhcp_range_end: {}",
            ip(net.first),
            ip(net.last)
        ));
        (format!("net{i}"), network)
    }));
    lab.write_config(&yaml);
    lab
}

/// One network serving `.first..=.last`, `clients` client NICs on a
/// switch, dutnet running.
fn one_network(first: u8, last: u8, clients: usize) -> (Lab, Netns) {
    let mut lab = lab_for(&[Net {
        interface: "dn-dut1",
        first,
        last,
    }]);
    let sw = switch(&mut lab, "sw", "dn-dut1", clients);
    lab.start();
    (lab, sw)
}

/// A "switch" namespace `name`: bridge `br0` cabled to the exporter's
/// `exporter_if`, and `clients` DUT NICs `c0..` on it (veth pairs whose
/// other end is a bridge port), `c<i>` with MAC [`client_mac`]`(i)`.
/// Clients share the namespace; each binds to its own NIC.
fn switch(lab: &mut Lab, name: &str, exporter_if: &str, clients: usize) -> Netns {
    let ns = lab.topology.netns(name);
    lab.topology
        .veth((&lab.exporter, exporter_if), (&ns, "uplink"));
    let mut batch =
        String::from("link add br0 type bridge\nlink set br0 up\nlink set uplink master br0\n");
    for i in 0..clients {
        let mac = client_mac(i).map(|b| format!("{b:02x}")).join(":");
        batch.push_str(&format!(
            "link add c{i} address {mac} type veth peer name p{i}\nlink set p{i} master br0 up\nlink set c{i} up\n"
        ));
    }
    let file = lab.topology.path(&format!("{name}.batch"));
    std::fs::write(&file, batch).unwrap();
    ns.ip(&format!("-batch {}", file.display()));
    ns
}

/// Stops dutnet with SIGTERM (`crash`: SIGKILL).
fn stop(lab: &mut Lab, crash: bool) {
    if crash {
        lab.kill();
    } else {
        assert_eq!(lab.stop(), Some(0), "{}", lab.log());
    }
}

/// dhclient on `c<i>` of `switch`, its files named after both.
fn dhclient(lab: &Lab, switch: &Netns, i: usize) -> Dhclient {
    let name = format!("{}-c{i}", switch.name);
    Dhclient::new(switch, &format!("c{i}"), &lab.topology.dir, &name, "")
}

/// Runs `client` and returns the address it holds afterwards.
fn lease(lab: &Lab, client: &Dhclient) -> Ipv4Addr {
    run(lab, client).1
}

fn run(lab: &Lab, client: &Dhclient) -> (dutnet_tests::Output, Ipv4Addr) {
    let out = client.run();
    assert!(
        out.success(),
        "dhclient failed: {out:#?}\ndutnet log:\n{}",
        lab.log()
    );
    let address = client
        .address()
        .unwrap_or_else(|| panic!("no lease in:\n{}", client.leases()));
    (out, address.parse().unwrap())
}

/// Runs a client that already holds a lease: it must REQUEST the address
/// it remembers (INIT-REBOOT), be ACKed, and never need a DISCOVER.
fn renew(lab: &Lab, client: &Dhclient) -> Ipv4Addr {
    let before = client.address();
    let (out, address) = run(lab, client);
    assert_eq!(before, Some(address.to_string()), "{out:#?}");
    assert!(
        out.stderr.contains(&format!("DHCPREQUEST for {address}"))
            && !out.stderr.contains("DHCPDISCOVER"),
        "the client did not simply renew its address:\n{}",
        out.stderr
    );
    address
}

/// The MAC of client NIC `c<i>`.
fn client_mac(i: usize) -> [u8; 6] {
    let [hi, lo] = u16::try_from(i).unwrap().to_be_bytes();
    [0x02, 0, 0, 0x01, hi, lo]
}

/// A MAC no NIC has, for the raw client.
fn raw_mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0x09, 0, n]
}

/// Waits up to `limit` for a line `<event> <iface> <ip>` in a udhcpc
/// script's record; returns the address.
fn udhcpc_event(
    record: &std::path::Path,
    event: &str,
    iface: &str,
    limit: Duration,
) -> Option<Ipv4Addr> {
    cmd::wait_for(limit, || {
        let text = std::fs::read_to_string(record).unwrap_or_default();
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(event) && words.next() == Some(iface))
                .then(|| words.next().and_then(|a| a.parse().ok()))
                .flatten()
        })
    })
}

#[test]
fn renew_keeps_the_address_and_release_frees_it() {
    let (lab, sw) = one_network(100, 110, 3);

    // dhclient leases, then REQUESTs the address it remembers.
    let a = dhclient(&lab, &sw, 0);
    assert_eq!(lease(&lab, &a), ip(100));
    assert_eq!(renew(&lab, &a), ip(100));

    // udhcpc renews for real on SIGUSR1 (RENEWING: a unicast REQUEST from
    // its address, which its script puts on the NIC).
    let record = lab.topology.path("udhcpc.events");
    let script = lab.topology.path("udhcpc.sh");
    clients::udhcpc_script(&script, &record, true);
    let mut udhcpc = sw.spawn(
        "udhcpc",
        &[
            "-i",
            "c1",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            &script.display().to_string(),
        ],
        &[],
        lab.topology.path("udhcpc.log"),
    );
    let bound = udhcpc_event(&record, "bound", "c1", Duration::from_secs(10));
    assert_eq!(bound, Some(ip(101)), "{}\n{}", udhcpc.log(), lab.log());
    // SAFETY: kill with the PID of the udhcpc this test started.
    unsafe { libc::kill(udhcpc.pid(), libc::SIGUSR1) };
    let renewed = udhcpc_event(&record, "renew", "c1", Duration::from_secs(10));
    assert_eq!(renewed, Some(ip(101)), "{}\n{}", udhcpc.log(), lab.log());
    // Without -R, udhcpc exits without releasing.
    udhcpc.terminate();

    // RELEASE frees .100: the next new client (new MAC, no lease file) gets
    // it, not .102.
    let out = a.release();
    assert!(out.success(), "dhclient -r failed: {out:#?}");
    let c = dhclient(&lab, &sw, 2);
    assert_eq!(lease(&lab, &c), ip(100), "{}", lab.log());
}

#[test]
fn a_declined_address_is_not_offered_again() {
    let (lab, sw) = one_network(100, 110, 2);
    let raw = RawClient::open(&sw, "c0");
    let declined = raw.lease(raw_mac(1), SERVER);
    assert_eq!(declined, ip(100));
    let decline = request(
        raw_mac(1),
        MessageType::Decline,
        &[
            DhcpOption::RequestedIpAddress(declined),
            DhcpOption::ServerIdentifier(SERVER),
        ],
    );
    raw.send(&decline.to_vec().unwrap());
    let discover = request(raw_mac(1), MessageType::Discover, &[]);
    let offer = raw.exchange(&discover, MessageType::Offer);
    assert_eq!(offer.yiaddr(), ip(101), "{}", lab.log());
    // Quarantined for everyone: a real client gets neither .100 nor the
    // address just offered.
    let client = dhclient(&lab, &sw, 1);
    assert_eq!(lease(&lab, &client), ip(102), "{}", lab.log());
}

#[test]
fn leases_survive_sigterm_and_sigkill() {
    let (mut lab, sw) = one_network(100, 120, 5);
    let mut held: Vec<(Dhclient, Ipv4Addr)> = Vec::new();
    for i in 0..3 {
        let client = dhclient(&lab, &sw, i);
        let address = lease(&lab, &client);
        held.push((client, address));
    }
    assert_eq!(
        held.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
        [ip(100), ip(101), ip(102)]
    );
    for (crash, newcomer) in [(false, 3), (true, 4)] {
        stop(&mut lab, crash);
        lab.start();
        if crash {
            assert!(
                lab.log()
                    .contains("did not exit cleanly; undoing what it left"),
                "{}",
                lab.log()
            );
        }
        // A new client first: had the leases been lost, it would get .100.
        let client = dhclient(&lab, &sw, newcomer);
        let address = lease(&lab, &client);
        assert!(
            held.iter().all(|(_, a)| *a != address),
            "{address} handed out twice after a restart (crash: {crash})\n{}",
            lab.log()
        );
        assert_eq!(address, ip(100 + newcomer as u8));
        for (client, address) in &held {
            assert_eq!(renew(&lab, client), *address, "crash: {crash}");
        }
        held.push((client, address));
    }
}

#[test]
fn two_hundred_clients_on_one_bridge_get_unique_addresses_within_30s() {
    const CLIENTS: usize = 200;
    let (lab, sw) = one_network(10, 250, CLIENTS);
    let record = lab.topology.path("udhcpc.events");
    let script = lab.topology.path("udhcpc.sh");
    clients::udhcpc_script(&script, &record, false);
    let started = Instant::now();
    let out = cmd::run(
        sw.command(
            "sh",
            &[
                "-c",
                &format!(
                    "for i in $(seq 0 {}); do udhcpc -i c$i -n -q -f -t 10 -T 2 -s {} >/dev/null 2>&1 & done; wait",
                    CLIENTS - 1,
                    script.display()
                ),
            ],
        ),
        Duration::from_secs(45),
    );
    let elapsed = started.elapsed();
    assert!(out.success(), "{out:#?}");
    let text = std::fs::read_to_string(&record).unwrap_or_default();
    let bound: Vec<(String, Ipv4Addr)> = text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3 && w[0] == "bound").then(|| (w[1].to_owned(), w[2].parse().unwrap()))
        })
        .collect();
    let interfaces: BTreeSet<&String> = bound.iter().map(|(i, _)| i).collect();
    let addresses: BTreeSet<Ipv4Addr> = bound.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        interfaces.len(),
        CLIENTS,
        "not every client got a lease:\n{text}"
    );
    assert_eq!(bound.len(), CLIENTS, "{text}");
    assert_eq!(
        addresses.len(),
        CLIENTS,
        "an address was handed out twice:\n{text}"
    );
    assert!(
        addresses.iter().all(|a| (ip(10)..=ip(250)).contains(a)),
        "{addresses:?}"
    );
    assert!(
        elapsed <= Duration::from_secs(30),
        "{CLIENTS} leases took {elapsed:?}"
    );
    eprintln!("{CLIENTS} leases in {elapsed:?}");
}

#[test]
fn an_exhausted_range_gives_no_offer_and_one_warning() {
    let (lab, sw) = one_network(100, 101, 2);
    let raw = RawClient::open(&sw, "c0");
    assert_eq!(raw.lease(raw_mac(1), SERVER), ip(100));
    assert_eq!(raw.lease(raw_mac(2), SERVER), ip(101));
    let record = lab.topology.path("udhcpc.events");
    let script = lab.topology.path("udhcpc.sh");
    clients::udhcpc_script(&script, &record, false);
    // Three DISCOVERs, one second apart, then give up.
    let out = sw.exec(
        "udhcpc",
        &[
            "-i",
            "c1",
            "-n",
            "-q",
            "-f",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            &script.display().to_string(),
        ],
    );
    assert!(
        !out.success(),
        "udhcpc got a lease from a full range: {out:#?}"
    );
    assert_eq!(std::fs::read_to_string(&record).unwrap_or_default(), "");
    assert_eq!(
        out.stderr.matches("broadcasting discover").count(),
        3,
        "{out:#?}"
    );
    // The server heard all three; it warned once and noted the rest at debug.
    let log = lab.log();
    assert_eq!(log.matches("DHCP range exhausted").count(), 1, "{log}");
    assert_eq!(
        log.matches("DHCP range still exhausted").count(),
        2,
        "{log}"
    );
}

#[test]
fn two_networks_with_the_same_subnet_each_answer_only_their_own_clients() {
    let mut lab = lab_for(&[
        Net {
            interface: "dn-dut1",
            first: 100,
            last: 110,
        },
        Net {
            interface: "dn-dut2",
            first: 200,
            last: 210,
        },
    ]);
    let sw1 = switch(&mut lab, "sw1", "dn-dut1", 2);
    let sw2 = switch(&mut lab, "sw2", "dn-dut2", 2);
    lab.start();
    assert_eq!(lease(&lab, &dhclient(&lab, &sw1, 0)), ip(100));
    assert_eq!(lease(&lab, &dhclient(&lab, &sw2, 0)), ip(200));
    // The same MAC on both networks: each hears one OFFER, from its own
    // network's range.
    for (sw, expected) in [(&sw1, ip(101)), (&sw2, ip(201))] {
        let raw = RawClient::open(sw, "c1");
        let discover = request(raw_mac(1), MessageType::Discover, &[]);
        raw.send(&discover.to_vec().unwrap());
        let offers: Vec<Ipv4Addr> = raw
            .replies(discover.xid(), Duration::from_secs(1))
            .iter()
            .map(Message::yiaddr)
            .collect();
        assert_eq!(offers, [expected], "on {}", sw.name);
    }
}

#[test]
fn malformed_packets_are_dropped_and_counted_while_clients_get_leases() {
    let (mut lab, sw) = one_network(100, 110, 2);
    let raw = RawClient::open(&sw, "c0");
    let good = request(raw_mac(1), MessageType::Discover, &[])
        .to_vec()
        .unwrap();
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        edit(&mut bytes);
        bytes
    };
    // Each would be a DISCOVER but for one defect; the log names the reason.
    let malformed: [(&str, Vec<u8>); 5] = [
        ("Truncated", good[..100].to_vec()),
        ("NotBootRequest", with(&|b| b[0] = 2)),
        ("BadMagicCookie", with(&|b| b[236] = 0)),
        // Option 61 claims 200 bytes, 3 follow.
        (
            "BadOption",
            with(&|b| {
                b.truncate(240);
                b.extend_from_slice(&[53, 1, 1, 61, 200, 1, 2, 3]);
            }),
        ),
        // A well-formed DISCOVER padded to 9000 bytes (IP fragments).
        ("Oversized", with(&|b| b.resize(9000, 0))),
    ];
    for (reason, bytes) in &malformed {
        raw.send(bytes);
        let answered = cmd::wait_for(Duration::from_millis(500), || {
            let mut buf = [0u8; 1500];
            raw.sock.recv_from(&mut buf).ok().map(|(n, _)| n)
        });
        assert_eq!(answered, None, "{reason}: the server answered");
    }
    let log_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("dropping malformed DHCP packet"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let dropped = cmd::wait_for(Duration::from_secs(5), || {
        let lines = log_lines(&lab.log());
        (lines.len() >= malformed.len()).then_some(lines)
    })
    .unwrap_or_else(|| log_lines(&lab.log()));
    assert_eq!(dropped.len(), malformed.len(), "{}", lab.log());
    for ((reason, _), line) in malformed.iter().zip(&dropped) {
        assert!(line.contains(reason), "expected {reason} in `{line}`");
    }
    assert!(lab.daemon().is_running());
    let offer = raw.exchange(
        &request(raw_mac(1), MessageType::Discover, &[]),
        MessageType::Offer,
    );
    assert_eq!(offer.yiaddr(), ip(100));
    let client = dhclient(&lab, &sw, 1);
    assert_eq!(lease(&lab, &client), ip(101), "{}", lab.log());
}
