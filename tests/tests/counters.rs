//! The first slice of the packet path: TC counters on a DUT interface,
//! checked against what the receiver actually got.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};

use dutnet::{
    datapath::{
        Datapath as _, DutNetwork, FlowLimits, NatPlan,
        ebpf::{EbpfDatapath, tcx_program_names},
    },
    state::paths::Paths,
};
use dutnet_common::programs;
use dutnet_tests::{Netns, Topology, bpf_test_run, cli, cmd, frames, prereq};
use serde_json::Value;

const UDP_PAYLOAD: usize = 100;
const UDP_COUNT: usize = 50;
const PINGS: usize = 5;
/// Ethernet + IPv4 + UDP headers + payload, as TC counts it (skb->len).
const UDP_FRAME: u64 = (14 + 20 + 8 + UDP_PAYLOAD) as u64;
/// Ethernet + IPv4 + ICMP header + ping's default 56 bytes.
const PING_FRAME: u64 = 14 + 20 + 8 + 56;

struct Pair {
    topology: Topology,
    tx: Netns,
    rx: Netns,
}

/// Two namespaces joined by a veth pair with static neighbours, so the only
/// frames on the wire are the ones the test sends.
fn pair() -> Pair {
    let mut topology = Topology::new();
    let tx = topology.netns("tx");
    let rx = topology.netns("rx");
    topology.veth((&tx, "eth0"), (&rx, "eth0"));
    tx.ip("link set eth0 address 02:00:00:00:00:01");
    rx.ip("link set eth0 address 02:00:00:00:00:02");
    tx.ip("addr add 10.200.0.1/24 dev eth0");
    rx.ip("addr add 10.200.0.2/24 dev eth0");
    tx.ip("neigh replace 10.200.0.2 lladdr 02:00:00:00:00:02 dev eth0 nud permanent");
    rx.ip("neigh replace 10.200.0.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent");
    Pair { topology, tx, rx }
}

fn stats_json(topology: &Topology, ns: &Netns) -> Option<Value> {
    let out = cli::run(topology, ns, &["stats", "--json"]);
    if !out.success() {
        return None;
    }
    serde_json::from_str(&out.stdout).ok()
}

fn interface_entry<'a>(stats: &'a Value, iface: &str) -> Option<&'a Value> {
    stats["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["interface"] == iface)
}

fn counters_match_what_the_receiver_got(attach_mode: &str) {
    prereq::require("ping", "iputils-ping");
    prereq::require("tc", "iproute2");
    let Pair { topology, tx, rx } = pair();
    let mut daemon = {
        let mut env = cli::env(&topology);
        env.push(("DUTNET_TC_ATTACH", attach_mode.to_owned()));
        rx.spawn(
            &cli::binary().to_string_lossy(),
            &["attach", "--interface", "eth0"],
            &env,
            topology.path("attach.log"),
        )
    };
    // The counters entry exists before the programs are attached (they only
    // update it): wait for the attach itself.
    let attached = cmd::wait_for(Duration::from_secs(10), || {
        daemon.log().contains("attached; stop with").then_some(())
    });
    assert!(
        attached.is_some()
            && stats_json(&topology, &rx).is_some_and(|s| interface_entry(&s, "eth0").is_some()),
        "counters never appeared; dutnet log:\n{}",
        daemon.log()
    );

    // Receiver: a real UDP socket in rx; it counts what arrives.
    let receiver = rx.enter(|| {
        let socket = UdpSocket::bind((Ipv4Addr::new(10, 200, 0, 2), 9999)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        socket
    });
    tx.enter(|| {
        let socket = UdpSocket::bind((Ipv4Addr::new(10, 200, 0, 1), 0)).unwrap();
        for i in 0..UDP_COUNT {
            let payload = [i as u8; UDP_PAYLOAD];
            socket
                .send_to(&payload, (Ipv4Addr::new(10, 200, 0, 2), 9999))
                .unwrap();
        }
    });
    let mut received = 0usize;
    let mut buf = [0u8; 2048];
    while let Ok(n) = receiver.recv(&mut buf) {
        assert_eq!(n, UDP_PAYLOAD);
        received += 1;
    }
    let ping = tx.exec(
        "ping",
        &[
            "-c",
            &PINGS.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            "10.200.0.2",
        ],
    );
    let replies = ping
        .stdout
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("cannot read ping's summary: {ping:#?}"));
    assert_eq!(
        received, UDP_COUNT,
        "the receiver lost datagrams on a quiet veth"
    );
    assert_eq!(replies, PINGS as u64, "{ping:#?}");

    let stats = stats_json(&topology, &rx).expect("stats after traffic");
    let eth0 = interface_entry(&stats, "eth0").expect("eth0 in stats");
    let received = received as u64;
    // rx's eth0 received the datagrams and the echo requests ("from DUT"
    // is the interface's ingress) and sent the echo replies.
    assert_eq!(eth0["from_dut"]["packets"], received + replies, "{stats:#}");
    assert_eq!(
        eth0["from_dut"]["bytes"],
        received * UDP_FRAME + replies * PING_FRAME,
        "{stats:#}"
    );
    assert_eq!(eth0["to_dut"]["packets"], replies, "{stats:#}");
    assert_eq!(eth0["to_dut"]["bytes"], replies * PING_FRAME, "{stats:#}");

    assert_eq!(daemon.terminate(), Some(0), "dutnet log:\n{}", daemon.log());

    // Nothing of dutnet's remains: no TCX program, no tc filter or clsact
    // qdisc (netlink mode), no pins.
    let left = rx.enter(|| tcx_program_names("eth0").unwrap());
    assert!(left.is_empty(), "TCX programs left on eth0: {left:?}");
    for hook in ["ingress", "egress"] {
        let filters = rx.exec("tc", &["filter", "show", "dev", "eth0", hook]);
        assert!(
            filters.stdout.trim().is_empty(),
            "tc filters left: {filters:#?}"
        );
    }
    let qdiscs = rx.exec("tc", &["qdisc", "show", "dev", "eth0"]).ok();
    assert!(
        !qdiscs.stdout.contains("clsact"),
        "clsact qdisc left: {qdiscs:#?}"
    );
    assert!(
        topology.dutnet_pins().is_empty(),
        "pin directory left behind"
    );
}

#[test]
fn counters_match_what_the_receiver_got_with_tcx() {
    counters_match_what_the_receiver_got("tcx");
}

#[test]
fn counters_match_what_the_receiver_got_with_a_netlink_clsact_qdisc() {
    counters_match_what_the_receiver_got("netlink");
}

#[test]
fn attach_shows_up_as_tcx_programs_while_running() {
    let Pair { topology, rx, .. } = pair();
    let mut daemon = cli::spawn(&topology, &rx, &["attach", "--interface", "eth0"], "attach");
    let names = cmd::wait_for(Duration::from_secs(10), || {
        let names = rx.enter(|| tcx_program_names("eth0").unwrap_or_default());
        (!names.is_empty()).then_some(names)
    });
    // One program: nothing runs on the NIC's egress.
    assert_eq!(
        names,
        Some(vec![programs::DUT_INGRESS.to_owned()]),
        "dutnet log:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.terminate(), Some(0));
}

#[test]
fn stats_says_clearly_when_nothing_runs() {
    let mut topology = Topology::new();
    let ns = topology.netns("idle");
    let out = cli::run(&topology, &ns, &["stats", "--json"]);
    assert!(!out.success(), "{out:#?}");
    assert!(out.stderr.contains("not running"), "{out:#?}");
    assert!(out.stdout.is_empty(), "no half output on stdout: {out:#?}");
}

#[test]
fn attach_to_a_missing_interface_fails_and_leaves_no_pins() {
    let mut topology = Topology::new();
    let ns = topology.netns("m");
    let out = cli::run(&topology, &ns, &["attach", "--interface", "nosuch0"]);
    assert!(!out.success(), "{out:#?}");
    assert!(
        out.stderr.contains("nosuch0"),
        "the error names the interface: {out:#?}"
    );
    assert!(topology.dutnet_pins().is_empty());
}

/// BPF_PROG_TEST_RUN: the DUT NIC's program passes a frame for the stack
/// through unchanged (TC_ACT_UNSPEC: the next program or the stack decides)
/// and counts it; what the NIC sends is counted by the kernel.
#[test]
fn test_run_counts_a_frame_and_passes_it_unchanged() {
    let mut topology = Topology::new();
    let ns = topology.netns("run");
    let paths = Paths {
        bpffs: topology.bpffs(),
        ..Paths::from_env()
    };
    ns.enter(move || {
        let mut datapath = EbpfDatapath::load(&paths, &[FlowLimits::new(16)]).unwrap();
        // BPF_PROG_TEST_RUN runs the skb on this namespace's loopback.
        datapath
            .attach(&DutNetwork {
                iface: "lo".to_owned(),
                gateway: Ipv4Addr::new(192, 168, 100, 1),
                subnet: "192.168.100.0/24".parse().unwrap(),
                nat: NatPlan::Disabled,
                reply_mark: 0,
                flows: FlowLimits::new(16),
                filter: None,
                local_ntp: false,
            })
            .unwrap();
        let frame = frames::udp(
            (Ipv4Addr::new(192, 168, 100, 10), 40000),
            (Ipv4Addr::new(10, 99, 0, 2), 53),
            b"hello",
        );
        let fd = datapath.program_fd(programs::DUT_INGRESS).unwrap();
        let run = bpf_test_run::run(fd, &frame).unwrap();
        assert_eq!(run.verdict, -1, "TC_ACT_UNSPEC expected");
        assert_eq!(run.frame, frame, "the program changed the frame");
        let lo_counters = |datapath: &EbpfDatapath| {
            let stats = datapath.stats().unwrap();
            stats
                .into_iter()
                .find(|s| s.name.as_deref() == Some("lo"))
                .unwrap()
                .counters
        };
        let before = lo_counters(&datapath);
        let len = frame.len() as u64;
        assert_eq!((before.ingress.packets, before.ingress.bytes), (1, len));
        // What the NIC sends is the kernel's count, from the attach on: one
        // datagram over loopback (to a bound socket: no ICMP error back).
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .send_to(b"counted", receiver.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(receiver.recv(&mut buf).unwrap(), 7);
        let after = lo_counters(&datapath);
        // IPv4, UDP, 7 bytes: loopback counts after taking its Ethernet
        // header off (a veth counts whole frames, as counters_match_* shows).
        assert_eq!(
            (
                after.egress.packets - before.egress.packets,
                after.egress.bytes - before.egress.bytes
            ),
            (1, 20 + 8 + 7)
        );
        datapath.shutdown().unwrap();
        assert!(!paths.pin_dir().exists());
    });
}
