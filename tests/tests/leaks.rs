//! Masquerade never lets a DUT-private address out: a battery of crafted
//! frames from a DUT (every protocol class, ICMP errors quoting every kind of
//! packet, IP options, TTL 0 and 1, fragments, spoofed and broadcast
//! sources) while tcpdump records what reaches the LAN host; any captured
//! packet carrying a DUT-subnet address, outside or inside an ICMP quote,
//! fails the test. On both datapaths, judged from the far end.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    time::Duration,
};

use dutnet_tests::{
    Netns, both_datapaths, cmd,
    far_end::TcpEcho,
    frames::{self, PROTO_UDP},
    lab::Lab,
    nat::{DUT_IP, GATEWAY, LAN_IP, tcp_exchange},
    netns::Process,
    prereq,
};

const PROTO_GRE: u8 = 47;
const PROTO_ESP: u8 = 50;
const PROTO_SCTP: u8 = 132;
/// RFC 3692's experimental protocol number: nothing tracks it.
const PROTO_EXPERIMENTAL: u8 = 253;

/// Writes `frames` onto the DUT's `eth0`, as the DUT would send them.
fn inject(dut: &Netns, frames: &[Vec<u8>]) {
    let hex: Vec<String> = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\nfor h in {hex:?}:\n    s.send(bytes.fromhex(h))\n    time.sleep(0.002)\n"
    );
    dut.exec("python3", &["-c", &script]).ok();
}

/// The battery: what a DUT may send towards the LAN host, as frames from
/// its MAC to the gateway's.
fn battery(dut_mac: [u8; 6], gateway_mac: [u8; 6]) -> Vec<(String, Vec<u8>)> {
    let lan = LAN_IP;
    let udp = frames::udp((DUT_IP, 6000), (lan, 5000), b"udp");
    let tcp = frames::tcp((DUT_IP, 6001), (lan, 5001), 0x02, b"");
    let echo = frames::icmp_echo(DUT_IP, lan, 8, 0x7777, 1);
    // Replies the DUT never got: what it quotes in its errors.
    let quoted_udp = frames::udp((lan, 5000), (DUT_IP, 6100), b"a reply");
    let quoted_tcp = frames::tcp((lan, 5001), (DUT_IP, 6101), 0x12, b"");
    let quoted_echo = frames::icmp_echo(lan, DUT_IP, 0, 0x7778, 1);
    let quoted_other = frames::ipv4(lan, DUT_IP, PROTO_SCTP, &[0; 16]);
    let mut all: Vec<(String, Vec<u8>)> = vec![
        ("udp".into(), udp.clone()),
        ("tcp syn".into(), tcp.clone()),
        ("icmp echo".into(), echo),
        (
            "sctp".into(),
            frames::ipv4(
                DUT_IP,
                lan,
                PROTO_SCTP,
                &[0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ),
        (
            "gre".into(),
            frames::ipv4(DUT_IP, lan, PROTO_GRE, &[0, 0, 0x08, 0, 0x45, 0, 0, 20]),
        ),
        (
            "esp".into(),
            frames::ipv4(
                DUT_IP,
                lan,
                PROTO_ESP,
                &[0, 0, 0, 1, 0, 0, 0, 1, 0xaa, 0xbb],
            ),
        ),
        (
            "protocol 253".into(),
            frames::ipv4(DUT_IP, lan, PROTO_EXPERIMENTAL, b"whatever"),
        ),
        ("udp with an ip option".into(), frames::with_ip_option(&udp)),
        ("tcp with an ip option".into(), frames::with_ip_option(&tcp)),
        ("udp ttl 0".into(), frames::with_ttl(udp.clone(), 0)),
        ("udp ttl 1".into(), frames::with_ttl(udp.clone(), 1)),
        ("tcp ttl 1".into(), frames::with_ttl(tcp.clone(), 1)),
        // Bytes past the IPv4 total length (Ethernet padding, or a DUT's
        // lie): translated as the datagram the header describes. The tail
        // holds the DUT's address, which must not be carried out.
        ("udp with a tail past its total length".into(), {
            let mut padded = frames::udp((DUT_IP, 6006), (lan, 5006), b"padded");
            padded.extend_from_slice(&DUT_IP.octets().repeat(4));
            padded
        }),
        (
            "first fragment".into(),
            frames::as_fragment(frames::udp((DUT_IP, 6002), (lan, 5002), &[7; 64]), 0, true),
        ),
        (
            "middle fragment".into(),
            frames::as_fragment(frames::ipv4(DUT_IP, lan, PROTO_UDP, &[8; 64]), 9, true),
        ),
        (
            "last fragment".into(),
            frames::as_fragment(frames::ipv4(DUT_IP, lan, PROTO_UDP, &[9; 64]), 18, false),
        ),
    ];
    for (name, quoted) in [
        ("udp", &quoted_udp),
        ("tcp", &quoted_tcp),
        ("echo reply", &quoted_echo),
        ("sctp", &quoted_other),
    ] {
        for (kind, code) in [(3, 3), (3, 1), (11, 0), (12, 0)] {
            all.push((
                format!("icmp {kind}/{code} quoting {name}"),
                frames::icmp_error(DUT_IP, lan, (kind, code), 0, frames::ip_packet(quoted), 28),
            ));
        }
    }
    for spoofed in [
        Ipv4Addr::new(8, 8, 8, 8),
        Ipv4Addr::new(10, 99, 0, 2),
        GATEWAY,
        Ipv4Addr::new(192, 168, 100, 255),
        Ipv4Addr::new(192, 168, 100, 0),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(224, 0, 0, 5),
    ] {
        all.push((
            format!("udp from {spoofed}"),
            frames::udp((spoofed, 6003), (lan, 5003), b"spoofed"),
        ));
    }
    for dst in [
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(10, 99, 0, 255),
    ] {
        all.push((
            format!("udp to {dst}"),
            frames::udp((DUT_IP, 6004), (dst, 5004), b"b"),
        ));
    }
    all.extend(frames::malformed(DUT_IP, lan));
    // A datagram whose second fragment overlaps its first (bytes 64..72):
    // the first goes through, the overlapping one must not ("offset 64").
    let with_id = |mut frame: Vec<u8>| {
        frame[18..20].copy_from_slice(&0x0bad_u16.to_be_bytes());
        frame
    };
    all.push((
        "first fragment of an overlapped datagram".into(),
        frames::as_fragment(
            with_id(frames::udp((DUT_IP, 6005), (lan, 5005), &[7; 64])),
            0,
            true,
        ),
    ));
    all.push((
        "overlapping fragment".into(),
        frames::as_fragment(
            with_id(frames::ipv4(DUT_IP, lan, PROTO_UDP, &[6; 64])),
            8,
            false,
        ),
    ));
    for (_, frame) in &mut all {
        frames::set_macs(frame, gateway_mac, dut_mac);
    }
    // Tagged on the untagged DUT network (after the MACs are set: the tag
    // goes behind them).
    let mut tagged = frames::udp((DUT_IP, 40302), (lan, 5300), b"tagged");
    frames::set_macs(&mut tagged, gateway_mac, dut_mac);
    all.push((
        "vlan 100 tagged udp".into(),
        frames::vlan_tagged(&tagged, 100),
    ));
    all
}

/// What tcpdump recorded, as `tcpdump -r -nn -v` shows it (quoted headers
/// of ICMP errors included).
fn capture_text(lab: &Lab, capture: &std::path::Path) -> String {
    capture_text_in(lab.lan(), capture)
}

/// Sources no packet reaching the LAN may carry: the DUT subnet's, and the
/// martians the battery spoofs.
const FORBIDDEN: [&str; 5] = [
    "192.168.100.",
    "8.8.8.8",
    "127.0.0.1",
    "0.0.0.0",
    "224.0.0.5",
];

/// Every packet of the capture (its header line and the line that shows
/// it) with a forbidden address, outside or inside an ICMP quote.
fn leaked(capture: &str) -> Vec<String> {
    let lines: Vec<&str> = capture.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| FORBIDDEN.iter().any(|f| l.contains(f)))
        .map(|(i, l)| {
            let header = lines[..i]
                .iter()
                .rev()
                .find(|p| p.contains(" IP "))
                .unwrap_or(&"");
            format!("{header}\n    {l}")
        })
        .collect()
}

fn nothing_dut_private_leaves(datapath: &str) {
    battery_leaks_nothing(datapath, "");
}

/// In 1:1 mode, a DUT without a public address of its own is masqueraded:
/// the same battery from it leaks nothing either.
fn nothing_leaves_from_an_unmapped_dut_in_1to1(datapath: &str) {
    battery_leaks_nothing(
        datapath,
        "nat_mode: 1to1\naddresses:\n  - ip: 192.168.100.20\n    public_ip: 10.99.0.50\n",
    );
}

both_datapaths!(nothing_leaves_from_an_unmapped_dut_in_1to1);

fn battery_leaks_nothing(datapath: &str, extra: &str) {
    prereq::require("tcpdump", "tcpdump");
    prereq::require("python3", "python3");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let _server = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7100));
    lab.load_nat_on(datapath, extra);
    // A live connection and flows, so errors and punts have something to
    // be confused with.
    tcp_exchange(lab.dut(1), SocketAddrV4::new(LAN_IP, 7100), "warm up");
    let capture = lab.topology.path("lan.pcap");
    let mut tcpdump = start_capture(&lab, lab.lan(), &capture, "ip");
    let dut_mac = lab.dut(1).mac("eth0").expect("the DUT's MAC");
    let gateway_mac = lab.exporter.mac("dn-dut1").expect("the DUT NIC's MAC");
    let battery = battery(dut_mac, gateway_mac);
    let frames: Vec<Vec<u8>> = battery.iter().map(|(_, f)| f.clone()).collect();
    inject(lab.dut(1), &frames);
    std::thread::sleep(Duration::from_millis(500));
    tcpdump.terminate();
    let seen = capture_text(&lab, &capture);
    assert!(
        seen.contains("10.99.0.2.6000 > 10.99.0.1.5000: UDP"),
        "the battery's plain UDP datagram never reached the LAN translated: the capture proves nothing:\n{seen}\n{}",
        tcpdump.log()
    );
    assert!(
        seen.contains("10.99.0.2.6006 > 10.99.0.1.5006: UDP, length 6"),
        "a datagram with a tail past its total length did not reach the LAN as the datagram its header describes:\n{seen}"
    );
    if datapath == "ebpf" {
        // The fast path itself refused these, and said so.
        for (counter, at_least) in [
            ("/drops/vlan_tagged", 1),
            ("/drops/malformed", 8),
            ("/drops/spoofed_source", 7),
        ] {
            let n = lab.total(counter);
            assert!(
                n >= at_least,
                "{counter} is {n}, expected >= {at_least}\n{}",
                lab.report()
            );
        }
    }
    let leaks = leaked(&seen);
    let malformed_seen: Vec<&str> = seen
        .lines()
        // (5004: the datagrams to broadcast and multicast destinations.)
        .filter(|l| {
            [".5300", ".5301", ".5004", "offset 64,"]
                .iter()
                .any(|port| l.contains(port))
        })
        .collect();
    assert!(
        malformed_seen.is_empty(),
        "malformed frames, or datagrams to broadcast or multicast, reached the LAN:\n{}",
        malformed_seen.join("\n")
    );
    assert!(
        leaks.is_empty(),
        "DUT-private addresses reached the LAN ({} lines):\n{}\n{}",
        leaks.len(),
        leaks.join("\n"),
        lab.report()
    );
}

both_datapaths!(nothing_dut_private_leaves);

/// A LAN echo server keeping each connection open, line by line.
fn line_echo(lan: &Netns, port: u16) -> SocketAddrV4 {
    let addr = SocketAddrV4::new(LAN_IP, port);
    let listener = lan.enter(move || TcpListener::bind(addr).expect("bind on the LAN"));
    std::thread::spawn(move || {
        // Bounded: a few connections (the test's and traceroute's probes).
        for stream in listener.incoming().take(16).flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                let mut writer = stream.try_clone().expect("clone stream");
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if writeln!(writer, "{line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One line out and its echo back on a live connection.
fn echo_line(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str) {
    writeln!(stream, "{line}").expect("write on the connection");
    let mut echoed = String::new();
    reader
        .read_line(&mut echoed)
        .unwrap_or_else(|e| panic!("no echo of {line:?} on the connection: {e}"));
    assert_eq!(echoed.trim_end(), line, "the connection broke");
}

/// What tcptraceroute does: a TTL-1 segment inside the DUT's live
/// connection. The DUT gets the gateway's time-exceeded, the LAN host sees
/// nothing of it (no RST from the exporter), and the connection lives on;
/// `traceroute -T` from the DUT shows both hops.
fn a_ttl_1_segment_inside_a_connection_gets_time_exceeded_and_breaks_nothing(datapath: &str) {
    prereq::require("tcpdump", "tcpdump");
    prereq::require("python3", "python3");
    prereq::require("traceroute", "traceroute");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let server = line_echo(lab.lan(), 7200);
    lab.load_nat_on(datapath, "");
    let dut = lab.dut(1).clone();
    let mut stream = dut.enter(move || {
        TcpStream::connect_timeout(&server.into(), Duration::from_secs(3)).expect("connect")
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    echo_line(&mut stream, &mut reader, "before");
    let local = stream.local_addr().unwrap().port();

    let lan_capture = lab.topology.path("lan.pcap");
    let dut_capture = lab.topology.path("dut.pcap");
    let mut lan_dump = start_capture(&lab, lab.lan(), &lan_capture, "tcp");
    let mut dut_dump = start_capture(&lab, &dut, &dut_capture, "icmp");
    let mut probe = frames::tcp((DUT_IP, local), (LAN_IP, 7200), 0x18, b"probe\n");
    probe = frames::with_ttl(probe, 1);
    frames::set_macs(
        &mut probe,
        lab.exporter.mac("dn-dut1").expect("the DUT NIC's MAC"),
        dut.mac("eth0").expect("the DUT's MAC"),
    );
    inject(&dut, &[probe]);
    std::thread::sleep(Duration::from_millis(500));
    echo_line(&mut stream, &mut reader, "after");
    lan_dump.terminate();
    dut_dump.terminate();

    let at_dut = capture_text_in(&dut, &dut_capture);
    assert!(
        at_dut.contains("192.168.100.1 > 192.168.100.10: ICMP time exceeded in-transit"),
        "the DUT got no time-exceeded from its gateway:\n{at_dut}\n{}",
        lab.report()
    );
    let at_lan = capture_text_in(lab.lan(), &lan_capture);
    assert!(
        !at_lan.contains("Flags [R"),
        "a reset reached the LAN host:\n{at_lan}\n{}",
        lab.report()
    );
    let trace = dut
        .exec(
            "traceroute",
            &[
                "-T",
                "-n",
                "-p",
                "7200",
                "-q",
                "1",
                "-w",
                "2",
                "-m",
                "3",
                &LAN_IP.to_string(),
            ],
        )
        .ok()
        .stdout;
    let hops: Vec<&str> = trace.lines().skip(1).collect();
    assert!(
        hops.first()
            .is_some_and(|h| h.contains(&GATEWAY.to_string()))
            && hops.get(1).is_some_and(|h| h.contains(&LAN_IP.to_string())),
        "traceroute -T shows no gateway then LAN host:\n{trace}"
    );
    echo_line(&mut stream, &mut reader, "after traceroute");
}

/// tcpdump on `ns`'s `eth0` writing what matches `filter` to `file`, once
/// it listens.
fn start_capture(lab: &Lab, ns: &Netns, file: &std::path::Path, filter: &str) -> Process {
    let name = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let dump = ns.spawn(
        "tcpdump",
        &[
            "-i",
            "eth0",
            "-nn",
            "-U",
            "--immediate-mode",
            "-w",
            &file.to_string_lossy(),
            filter,
        ],
        &[],
        lab.topology.path(&format!("{name}.log")),
    );
    cmd::wait_for(Duration::from_secs(5), || {
        dump.log().contains("listening").then_some(())
    })
    .unwrap_or_else(|| panic!("tcpdump on {} never listened: {}", ns.name, dump.log()));
    dump
}

fn capture_text_in(ns: &Netns, capture: &std::path::Path) -> String {
    ns.exec("tcpdump", &["-r", &capture.to_string_lossy(), "-nn", "-v"])
        .ok()
        .stdout
}

both_datapaths!(a_ttl_1_segment_inside_a_connection_gets_time_exceeded_and_breaks_nothing);
