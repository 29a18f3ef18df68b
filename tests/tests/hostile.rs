//! Hostile DUTs (issue #25 item 4): a DUT on the same segment as a
//! legitimate one sends what no DHCP client should, and after each case
//! the legitimate DUT still gets a lease (a real dhclient), a DNS answer
//! (dig) and a TCP connection through NAT to the LAN host (the source the
//! LAN host saw is the exporter's).
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use dhcproto::{
    Encodable as _,
    v4::{DhcpOption, MessageType},
};
use dutnet_tests::{
    clients::Dhclient,
    far_end::TcpEcho,
    lab::{Dut, Lab},
    nat::{self, EXPORTER_UP, GATEWAY, LAN_IP},
    prereq,
};

// Only sending and collecting replies here (`lease` is dhcp.rs's).
#[allow(dead_code)]
#[path = "common/raw_dhcp.rs"]
mod raw_dhcp;

use raw_dhcp::{RawClient, request};

/// The legitimate DUT's MAC (behind dn-dut1, namespace `dut1`); the
/// hostile one is `dut1-2` on the same switch.
const GOOD_MAC: &str = "02:00:00:00:0a:01";
const POOL: (u8, u8) = (100, 140);

struct Segment {
    lab: Lab,
    /// The legitimate DUT's DHCP client identities made so far.
    clients: std::cell::Cell<usize>,
    echo: TcpEcho,
}

impl Segment {
    fn new() -> Self {
        prereq::require("dhclient", "isc-dhcp-client");
        prereq::require("dig", "dnsutils");
        let mut lab = Lab::builder()
            .upstream()
            .dut(Dut::on(1).mac(GOOD_MAC).switched(2))
            .build();
        let config = lab.nat_config(|_| {
            format!(
                "datapath: ebpf\ndhcp_enabled: true\ndhcp_range_start: 192.168.100.{}\ndhcp_range_end: 192.168.100.{}\ndns_servers: [\"{LAN_IP}\"]\ndns_timeout: 1s\ndns_entries:\n  - {{hostname: controller.lab.local, ip: {LAN_IP}}}\n",
                POOL.0, POOL.1
            )
        });
        lab.load(&config);
        let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7007));
        Self {
            lab,
            clients: std::cell::Cell::new(0),
            echo,
        }
    }

    fn hostile(&self) -> RawClient {
        RawClient::open(self.lab.dut_behind(1, 2), "eth0")
    }

    /// The legitimate DUT: a fresh dhclient identity gets a lease in the
    /// pool, which goes on its NIC; dig gets dutnet's answer; TCP reaches
    /// the LAN host through NAT.
    fn still_served(&self, case: &str) -> Ipv4Addr {
        self.clients.set(self.clients.get() + 1);
        let dut = self.lab.dut(1);
        let client = Dhclient::new(
            dut,
            "eth0",
            &self.lab.topology.dir,
            &format!("good{}", self.clients.get()),
            "",
        );
        let out = client.run();
        let ip: Ipv4Addr = client
            .address()
            .unwrap_or_else(|| {
                panic!(
                    "{case}: no lease for the good DUT: {out:#?}\n{}",
                    self.lab.log()
                )
            })
            .parse()
            .unwrap();
        let last = ip.octets()[3];
        assert!((POOL.0..=POOL.1).contains(&last), "{case}: leased {ip}");
        dut.ip("addr flush dev eth0");
        dut.ip(&format!("addr add {ip}/24 dev eth0"));
        dut.ip(&format!("route replace default via {GATEWAY}"));
        let dig = dut.exec(
            "dig",
            &[
                "+short",
                "+time=2",
                "+tries=1",
                &format!("@{GATEWAY}"),
                "controller.lab.local",
            ],
        );
        assert_eq!(dig.stdout.trim(), LAN_IP.to_string(), "{case}: {dig:#?}");
        let peer = nat::tcp_exchange(dut, self.echo.addr, case);
        assert_eq!(peer.ip(), std::net::IpAddr::V4(EXPORTER_UP), "{case}");
        ip
    }
}

fn random_mac(k: u32) -> [u8; 6] {
    let [a, b, c, d] = k.wrapping_mul(0x9e37_79b9).to_be_bytes();
    // Locally administered, unicast.
    [0x06, a, b, c, d, 0x5a]
}

/// 10 000 DISCOVERs from random MACs, as fast as the hostile DUT can send
/// them, while the good DUT asks: offers are short reservations, so the
/// flood never leaves it without an address.
#[test]
fn a_discover_flood_from_random_macs_does_not_starve_the_pool() {
    let segment = Segment::new();
    let hostile = segment.hostile();
    let started = Instant::now();
    for k in 0..10_000u32 {
        let discover = request(random_mac(k), MessageType::Discover, &[]);
        hostile.send(&discover.to_vec().unwrap());
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    // Its offers are pending: the pool is all offered now.
    segment.still_served("during a DISCOVER flood");
    // And again with a flood running beside the good DUT's exchange.
    let flood = std::thread::spawn(move || {
        for k in 10_000..20_000u32 {
            hostile.send(
                &request(random_mac(k), MessageType::Discover, &[])
                    .to_vec()
                    .unwrap(),
            );
        }
    });
    segment.still_served("beside a DISCOVER flood");
    flood.join().unwrap();
}

/// A RELEASE and a DECLINE naming the good DUT's address, from another
/// MAC: the good DUT keeps its lease (a renewal gets the same address).
#[test]
fn another_duts_release_or_decline_does_not_free_a_lease() {
    let segment = Segment::new();
    let good = segment.still_served("before");
    let hostile = segment.hostile();
    for kind in [MessageType::Release, MessageType::Decline] {
        let mut msg = request(
            random_mac(7),
            kind,
            &[
                DhcpOption::RequestedIpAddress(good),
                DhcpOption::ServerIdentifier(GATEWAY),
            ],
        );
        msg.set_ciaddr(good);
        hostile.send(&msg.to_vec().unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    let leases = segment.lab.json(&["leases"]);
    let holders: Vec<&serde_json::Value> = leases["networks"][0]["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ip"] == good.to_string())
        .collect();
    assert_eq!(holders.len(), 1, "{leases:#}");
    assert_eq!(holders[0]["mac"], GOOD_MAC, "{leases:#}");
    // A new identity of the good DUT gets another address: the old one
    // is still taken (neither freed nor quarantined for others' sake).
    let next = segment.still_served("after another DUT's RELEASE and DECLINE");
    assert_ne!(next, good);
}

/// Messages no client sends: hlen 0 and 16, giaddr set (a relay dutnet
/// does not serve), a REQUEST for an address outside the subnet, option
/// overload (option 52) and an option whose length runs past the end.
/// Each gets no reply or a NAK, never an ACK, and the good DUT is served.
#[test]
fn malformed_and_out_of_subnet_requests_get_no_lease() {
    let segment = Segment::new();
    let hostile = segment.hostile();
    let mac = random_mac(11);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for hlen in [0u8, 16] {
        let mut bytes = request(mac, MessageType::Discover, &[]).to_vec().unwrap();
        bytes[2] = hlen;
        cases.push((if hlen == 0 { "hlen 0" } else { "hlen 16" }, bytes));
    }
    let mut relayed = request(mac, MessageType::Discover, &[]);
    relayed.set_giaddr(Ipv4Addr::new(10, 1, 2, 3));
    cases.push(("giaddr set", relayed.to_vec().unwrap()));
    let outside = request(
        mac,
        MessageType::Request,
        &[DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 77, 0, 5))],
    );
    cases.push(("REQUEST outside the subnet", outside.to_vec().unwrap()));
    let mut overload = request(mac, MessageType::Discover, &[]).to_vec().unwrap();
    // Option 52 (overload: file and sname carry options), then end.
    let end = overload.len() - 1;
    overload.splice(end..end, [52, 1, 3]);
    cases.push(("option overload", overload));
    let mut past_end = request(mac, MessageType::Discover, &[]).to_vec().unwrap();
    past_end.pop();
    past_end.extend_from_slice(&[12, 200, b'x', b'y']);
    cases.push(("option length past the end", past_end));
    for (case, bytes) in &cases {
        let xid = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        hostile.send(bytes);
        for reply in hostile.replies(xid, Duration::from_millis(400)) {
            let kind = reply.opts().msg_type();
            assert!(
                kind != Some(MessageType::Ack),
                "{case}: ACKed {}\n{reply:?}",
                reply.yiaddr()
            );
            if *case == "REQUEST outside the subnet" {
                assert_eq!(kind, Some(MessageType::Nak), "{case}: {reply:?}");
            }
        }
        segment.still_served(case);
    }
    let leases = segment.lab.json(&["leases"]);
    let text = leases.to_string();
    assert!(!text.contains("10.77.0.5"), "{leases:#}");
}

/// A query for `name` A with `id`, RD set, and `extra` after the question
/// (an OPT record, say) counted in ARCOUNT.
fn query(id: u16, name: &str, arcount: u16, extra: &[u8]) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0]);
    q.extend_from_slice(&arcount.to_be_bytes());
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q.extend_from_slice(extra);
    q
}

/// The resident memory of the daemon, from /proc.
fn resident_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// DNS no resolver should get: a compression pointer to itself and a loop
/// of two, QDCOUNT 0 and 65 535, an EDNS buffer of 65 535 and of 0 bytes,
/// a TCP length prefix that promises 65 535 bytes and sends 20, one that
/// says 2 and sends a whole query, then a burst of 3 000 random names to a
/// dead upstream. Each is answered (FORMERR, SERVFAIL, an answer) or
/// dropped; the daemon's memory stays bounded and the good DUT is served.
#[test]
fn hostile_dns_queries_get_an_error_or_nothing_and_the_server_stays_bounded() {
    let mut segment = Segment::new();
    let hostile = segment.lab.dut_behind(1, 2);
    hostile.ip("addr add 192.168.100.77/24 dev eth0");
    let socket = hostile.enter(|| {
        let socket = UdpSocket::bind((Ipv4Addr::new(192, 168, 100, 77), 0)).unwrap();
        socket.connect((GATEWAY, 53)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        socket
    });
    let ask = |bytes: &[u8]| -> Option<Vec<u8>> {
        socket.send(bytes).unwrap();
        let mut buf = [0u8; 65_535];
        socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    };
    let header = |id: u16, qdcount: u16| {
        let mut h = id.to_be_bytes().to_vec();
        h.extend_from_slice(&[0x01, 0x00]);
        h.extend_from_slice(&qdcount.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        h
    };
    let mut self_pointer = header(1, 1);
    self_pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut two_loop = header(2, 1);
    two_loop.extend_from_slice(&[1, b'a', 0xc0, 16, 0xc0, 12, 0, 1, 0, 1]);
    let mut qd_max = header(4, 65_535);
    qd_max.extend_from_slice(&query(0, "controller.lab.local", 0, &[])[12..]);
    // OPT: root name, type 41, class = UDP payload size, TTL 0, no data.
    let opt = |size: u16| {
        let mut o = vec![0, 0, 41];
        o.extend_from_slice(&size.to_be_bytes());
        o.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        o
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a compression pointer to itself", self_pointer),
        ("a compression loop of two", two_loop),
        ("QDCOUNT 0", header(3, 0)),
        ("QDCOUNT 65535", qd_max),
        (
            "EDNS buffer 65535",
            query(5, "controller.lab.local", 1, &opt(65_535)),
        ),
        (
            "EDNS buffer 0",
            query(6, "controller.lab.local", 1, &opt(0)),
        ),
    ];
    for (case, bytes) in &cases {
        if let Some(reply) = ask(bytes) {
            assert_eq!(&reply[..2], &bytes[..2], "{case}: the query's id");
            assert_eq!(reply[2] & 0x80, 0x80, "{case}: a response");
            assert!(reply.len() <= 4096, "{case}: {} bytes", reply.len());
        }
        segment.still_served(case);
    }
    // TCP: a length that promises more than comes, then one that says less.
    let tcp = |prefix: u16, body: &[u8]| {
        let body = body.to_vec();
        hostile.enter(move || {
            let mut stream = TcpStream::connect_timeout(
                &SocketAddrV4::new(GATEWAY, 53).into(),
                Duration::from_secs(2),
            )
            .unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(8)))
                .unwrap();
            stream.write_all(&prefix.to_be_bytes()).unwrap();
            let _ = stream.write_all(&body);
            let mut out = Vec::new();
            let started = Instant::now();
            let _ = stream.read_to_end(&mut out);
            (out, started.elapsed())
        })
    };
    let (_, waited) = tcp(65_535, &[0u8; 20]);
    assert!(
        waited < Duration::from_secs(8),
        "a lying length held the connection {waited:?}"
    );
    segment.still_served("a TCP length that promises 65535 bytes");
    let _ = tcp(2, &query(7, "controller.lab.local", 0, &[]));
    segment.still_served("a TCP length shorter than its query");

    // A burst of random names, forwarded to an upstream that never answers.
    let pid = segment.lab.daemon().pid();
    let before = resident_kib(pid);
    let started = Instant::now();
    for k in 0..3000u32 {
        let name = format!("r{:08x}.burst.example", k.wrapping_mul(0x9e37_79b9));
        socket
            .send(&query(u16::try_from(k % 65_000).unwrap(), &name, 0, &[]))
            .unwrap();
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = resident_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "3000 forwarded names grew dutnet from {before} to {after} KiB"
    );
    segment.still_served("after a burst of 3000 random names");
}

/// The control socket given garbage, then a 100 MB line: an error answer
/// (or the connection closed), never the daemon's end; a valid request
/// is answered after each.
#[test]
fn garbage_and_a_huge_line_on_the_control_socket_leave_it_answering() {
    let mut segment = Segment::new();
    let path = dutnet_tests::cli::control_socket(&segment.lab.topology);
    let answer = |line: &[u8]| -> String {
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(line);
        let mut reply = String::new();
        let _ = BufReader::new(&stream).read_line(&mut reply);
        reply
    };
    for garbage in [
        &b"\x00\xff\xfe not json at all\n"[..],
        b"{\"version\":1,\"request\":{\"verb\":\"rm -rf\"}}\n",
        b"[[[[[[[[[[[[\n",
    ] {
        let reply = answer(garbage);
        assert!(reply.contains("error"), "{reply}");
    }
    // 100 MB without a newline, written in 1 MiB pieces until the daemon
    // stops reading.
    let mut stream = UnixStream::connect(&path).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let piece = vec![b'a'; 1 << 20];
    let mut written = 0usize;
    while written < 100 << 20 {
        if stream.write_all(&piece).is_err() {
            break;
        }
        written += piece.len();
    }
    let mut reply = String::new();
    let _ = BufReader::new(&stream).read_line(&mut reply);
    assert!(
        reply.is_empty() || reply.contains("longer than"),
        "after {written} bytes: {reply}"
    );
    let status = segment.lab.json(&["status"]);
    assert!(status["networks"].is_array(), "{status:#}");
    assert!(segment.lab.daemon().is_running());
    segment.still_served("after garbage and a 100 MB line on the control socket");
}
