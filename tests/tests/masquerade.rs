//! Masquerade (issue #7) on both datapaths (issue #10: each case runs as
//! `<case>::on_ebpf` and `<case>::on_nft`), judged from the far end: echo
//! servers in the LAN namespace record the source they saw and answer with
//! it, real clients (ping, traceroute) run in DUT namespaces, and the DUTs
//! check they got the reply to their own request. Nothing here reads
//! dutnet's maps or rules back; `dutnet stats` is checked as the user sees it
//! (on eBPF only: its counters are the eBPF maps').
//!
//! The LAN host (10.99.0.1) has no route to the DUT subnet: a reply can only
//! reach a DUT if dutnet translated the request to the exporter's upstream
//! address (10.99.0.2) and the reply back.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use dutnet_tests::{
    both_datapaths, cli, cmd,
    far_end::{self, IcmpRecorder, TcpEcho},
    lab::Lab,
    nat::{
        DUT_IP, EXPORTER_UP, FAR_IP, LAN_IP, NAT_PORTS, REPLY_WAIT, add_docker_forward_chain,
        docker_forward_chain, lan_udp_echo, tcp_exchange, udp_exchange, udp_reply, udp_socket,
    },
    prereq,
};
use serde_json::Value;

both_datapaths!(tcp_udp_and_ping_reach_a_lan_host_without_a_route_back_as_the_exporter);
fn tcp_udp_and_ping_reach_a_lan_host_without_a_route_back_as_the_exporter(datapath: &str) {
    prereq::require("ping", "iputils-ping");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on(datapath, "");
    let udp = lan_udp_echo(&lab);
    let tcp = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7001));
    let icmp = IcmpRecorder::start(lab.lan());
    let dut = lab.dut(1);

    let socket = udp_socket(dut, SocketAddrV4::new(DUT_IP, 0));
    let seen = udp_exchange(&lab, &socket, &udp, b"hello over udp");
    assert_eq!(seen.ip(), EXPORTER_UP, "the LAN host saw the DUT itself");
    assert_eq!(udp.peers(), vec![seen]);

    let seen = tcp_exchange(dut, tcp.addr, "hello over tcp");
    assert_eq!(seen.ip(), EXPORTER_UP);
    assert_eq!(tcp.peers(), vec![seen]);

    let ping = dut.exec(
        "ping",
        &["-c", "2", "-i", "0.2", "-W", "2", &LAN_IP.to_string()],
    );
    assert!(ping.success(), "{ping:#?}\n{}", lab.log());
    assert!(ping.stdout.contains("2 received"), "{}", ping.stdout);
    // The recorder reads its copies on its own thread: give it a moment.
    let sources = cmd::wait_for(Duration::from_secs(1), || {
        Some(icmp.sources()).filter(|s| s.len() >= 2)
    });
    assert_eq!(
        sources,
        Some(vec![EXPORTER_UP; 2]),
        "echo requests the LAN host saw"
    );

    if datapath != "ebpf" {
        return;
    }
    let stats = lab.stats_of("dn-dut1");
    let at = |p: &str| stats.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    assert!(at("/new_flows") >= 3, "{stats:#}");
    assert!(at("/nat_out/packets") > 0, "{stats:#}");
    assert!(at("/nat_in/packets") > 0, "{stats:#}");
    assert!(at("/active_flows") > 0, "{stats:#}");
}

/// The hops `traceroute -n` printed: (hop, address or None for `*`).
fn traceroute_hops(stdout: &str) -> Vec<(u32, Option<String>)> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let hop = words.next()?.parse().ok()?;
            let address = words.next().filter(|w| *w != "*").map(str::to_owned);
            Some((hop, address))
        })
        .collect()
}

both_datapaths!(traceroute_from_a_dut_shows_the_gateway_the_router_and_the_far_host);
fn traceroute_from_a_dut_shows_the_gateway_the_router_and_the_far_host(datapath: &str) {
    prereq::require("traceroute", "traceroute");
    let mut lab = Lab::builder()
        .upstream()
        .static_duts(1)
        .far_host(1500)
        .build();
    lab.load_nat_on(datapath, "");
    let out = lab.dut(1).exec(
        "traceroute",
        &["-n", "-q", "1", "-w", "1", "-m", "5", &FAR_IP.to_string()],
    );
    let hops = traceroute_hops(&out.stdout);
    let address = |n: usize| hops.get(n).and_then(|(_, a)| a.clone());
    let report = format!("{out:#?}\n{}", lab.report());
    assert_eq!(address(0).as_deref(), Some("192.168.100.1"), "{report}");
    assert_eq!(address(1).as_deref(), Some("10.99.0.1"), "{report}");
    assert_eq!(hops.len(), 3, "{report}");
    assert_eq!(address(2), Some(FAR_IP.to_string()), "{report}");
}

both_datapaths!(a_smaller_mtu_beyond_the_router_reaches_the_dut_as_fragmentation_needed);
fn a_smaller_mtu_beyond_the_router_reaches_the_dut_as_fragmentation_needed(datapath: &str) {
    prereq::require("ping", "iputils-ping");
    let mut lab = Lab::builder()
        .upstream()
        .static_duts(1)
        .far_host(1280)
        .build();
    lab.load_nat_on(datapath, "");
    let dut = lab.dut(1);
    // The path works for packets that fit.
    let small = dut.exec("ping", &["-c", "1", "-W", "2", &FAR_IP.to_string()]);
    assert!(small.success(), "{small:#?}\n{}", lab.log());
    let big = dut.exec(
        "ping",
        &[
            "-M",
            "do",
            "-s",
            "1400",
            "-c",
            "1",
            "-W",
            "2",
            &FAR_IP.to_string(),
        ],
    );
    let text = format!("{}{}", big.stdout, big.stderr);
    assert!(
        text.contains("mtu = 1280") || text.contains("mtu=1280"),
        "the router's fragmentation-needed did not reach the DUT: {big:#?}\n{}",
        lab.report()
    );
    // The DUT's kernel learned the path MTU from the translated error.
    let route = dut.ip(&format!("route get {FAR_IP}"));
    assert!(route.stdout.contains("mtu 1280"), "{route:#?}");
    if which("tracepath") {
        let out = dut.exec("tracepath", &["-n", "-m", "5", &FAR_IP.to_string()]);
        assert!(out.stdout.contains("pmtu 1280"), "{out:#?}");
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

both_datapaths!(a_9000_byte_datagram_fragmented_by_the_dut_arrives_whole);
fn a_9000_byte_datagram_fragmented_by_the_dut_arrives_whole(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on(datapath, "");
    let udp = lan_udp_echo(&lab);
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    let payload: Vec<u8> = (0..9000u32).map(|i| b'a' + (i % 26) as u8).collect();
    socket.send_to(&payload, udp.addr).unwrap();
    let arrived = cmd::wait_for(REPLY_WAIT, || udp.datagrams().first().copied());
    assert_eq!(
        arrived.map(|(peer, len)| (peer.ip(), len)),
        Some((EXPORTER_UP.into(), payload.len())),
        "{}",
        lab.report()
    );
    // The echo, fragmented by the LAN host, comes back whole too.
    udp_reply(&lab, &socket, &udp, &payload);
}

// eBPF only: two DUT NICs with the same subnet, which nft refuses by design
// (nft_datapath.rs tests the refusal).
#[test]
fn two_dut_nics_with_the_same_address_and_source_port_each_get_their_own_replies() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat_on("ebpf", "");
    let udp = lan_udp_echo(&lab);
    let bind = SocketAddrV4::new(DUT_IP, 4444);
    let sockets = [udp_socket(lab.dut(1), bind), udp_socket(lab.dut(2), bind)];
    // Both flows are open before either gets its reply.
    for (n, socket) in sockets.iter().enumerate() {
        socket
            .send_to(format!("from dut{}", n + 1).as_bytes(), udp.addr)
            .unwrap();
    }
    let seen: Vec<SocketAddr> = sockets
        .iter()
        .enumerate()
        .map(|(n, socket)| udp_reply(&lab, socket, &udp, format!("from dut{}", n + 1).as_bytes()))
        .collect();
    let report = format!("server saw {seen:?}\nstats: {:#}", lab.stats());
    assert!(seen.iter().all(|p| p.ip() == EXPORTER_UP), "{report}");
    let mut ports: Vec<u16> = seen.iter().map(SocketAddr::port).collect();
    ports.sort_unstable();
    assert_eq!(ports[0], 4444, "{report}");
    assert!(NAT_PORTS.contains(&ports[1]), "{report}");
    // The flows stay apart for their lifetime, not just their first packet.
    for (n, socket) in sockets.iter().enumerate() {
        let again = udp_exchange(&lab, socket, &udp, format!("again dut{}", n + 1).as_bytes());
        assert_eq!(again, seen[n], "dut{} moved to another mapping", n + 1);
    }
    // TCP from both at once, too.
    let tcp = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7001));
    for n in 1..=2 {
        let peer = tcp_exchange(lab.dut(n), tcp.addr, &format!("tcp from dut{n}"));
        assert_eq!(peer.ip(), EXPORTER_UP);
    }
}

both_datapaths!(a_lan_host_with_a_route_to_the_dut_subnet_cannot_reach_a_dut);
fn a_lan_host_with_a_route_to_the_dut_subnet_cannot_reach_a_dut(datapath: &str) {
    prereq::require("ping", "iputils-ping");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on(datapath, "");
    let dut = lab.dut(1).clone();
    lab.lan()
        .ip(&format!("route add 192.168.100.0/24 via {EXPORTER_UP}"));
    let listener = dut.enter(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8080)).unwrap());
    listener.set_nonblocking(true).unwrap();
    // The DUT itself reaches the LAN: the lab works, dutnet is up.
    let udp = lan_udp_echo(&lab);
    udp_exchange(
        &lab,
        &udp_socket(&dut, SocketAddrV4::new(DUT_IP, 0)),
        &udp,
        b"outbound works",
    );

    let connect = lab.lan().enter(|| {
        TcpStream::connect_timeout(
            &SocketAddrV4::new(DUT_IP, 8080).into(),
            Duration::from_secs(2),
        )
    });
    assert!(connect.is_err(), "the LAN host connected to the DUT");
    assert!(
        listener.accept().is_err(),
        "the DUT's listener accepted a connection from the LAN"
    );
    let ping = lab.lan().exec(
        "ping",
        &["-c", "2", "-i", "0.2", "-W", "1", &DUT_IP.to_string()],
    );
    assert!(!ping.success(), "the LAN host pinged the DUT: {ping:#?}");
    // The drop counter is an eBPF map's.
    if datapath != "ebpf" {
        return;
    }
    let drops = lab.total("/drops/unsolicited");
    assert!(drops > 0, "no unsolicited drop counted: {:#}", lab.stats());
}

both_datapaths!(ten_thousand_concurrent_udp_flows_from_one_dut_each_get_their_reply);
fn ten_thousand_concurrent_udp_flows_from_one_dut_each_get_their_reply(datapath: &str) {
    // One run at a time: both datapaths' runs share this process's file
    // limit (the hard limit may be as low as 20000 and only root with
    // CAP_SYS_RESOURCE may raise it).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    const FLOWS: usize = 10_000;
    const DEADLINE: Duration = Duration::from_secs(20);
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    // Room for every flow at once: within the default share (8192 flows a
    // DUT) the oldest unanswered ones would be recycled for the newest.
    lab.load_nat_on(
        datapath,
        "nat_table_size: 65536\nnat_flows_per_dut: 65536\n",
    );
    let udp = lan_udp_echo(&lab);
    let server = udp.addr;
    // Neighbours on every hop resolved before the burst. The socket stays
    // open so that no flow socket reuses its port (and its mapping).
    let warm_up = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    udp_exchange(&lab, &warm_up, &udp, b"warm up");

    let missing = lab.dut(1).enter(move || {
        far_end::raise_nofile(FLOWS as u64 + 1024);
        let sockets: Vec<UdpSocket> = (0..FLOWS)
            .map(|_| {
                let s = UdpSocket::bind((DUT_IP, 0)).expect("bind flow socket");
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        for (i, socket) in sockets.iter().enumerate() {
            socket
                .send_to(format!("flow {i}").as_bytes(), server)
                .unwrap();
            // Paced a little, so no queue on the way overflows.
            if i % 200 == 199 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let mut pending: Vec<usize> = (0..FLOWS).collect();
        let deadline = Instant::now() + DEADLINE;
        let mut buf = [0u8; 256];
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|&i| match sockets[i].recv(&mut buf) {
                Ok(n) => {
                    let (peer, echoed) = far_end::parse_echo(&buf[..n]).expect("an echo");
                    assert_eq!(echoed, format!("flow {i}").as_bytes());
                    assert_eq!(peer.ip(), EXPORTER_UP);
                    false
                }
                Err(_) => true,
            });
            std::thread::sleep(Duration::from_millis(10));
        }
        pending.len()
    });
    let peers = udp.peers();
    let distinct: HashSet<_> = peers.iter().collect();
    assert_eq!(
        missing,
        0,
        "{missing} of {FLOWS} flows got no reply within {DEADLINE:?}; the server got {} datagrams \
         from {} sources\n{}",
        peers.len(),
        distinct.len(),
        lab.report()
    );
    assert_eq!(distinct.len(), FLOWS + 1, "every flow is its own mapping");
    // The flow count is an eBPF map's (on nft the flows are in conntrack).
    if datapath != "ebpf" {
        return;
    }
    let active = lab.stats_of("dn-dut1")["active_flows"]
        .as_u64()
        .unwrap_or(0);
    assert!(active > FLOWS as u64, "active_flows {active}");
}

// On eBPF here; nft_datapath.rs runs the same check on both datapaths, with
// a host flow the scoped rules must keep dropped.
#[test]
fn docker_style_forward_drop_policy_neither_blocks_dut_traffic_nor_is_left_changed() {
    prereq::require("nft", "nftables");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let before = add_docker_forward_chain(&lab.exporter);
    assert!(before.contains("policy drop"), "{before}");
    lab.load_nat_on("ebpf", "");
    let udp = lan_udp_echo(&lab);
    let tcp = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7001));
    let seen = udp_exchange(
        &lab,
        &udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0)),
        &udp,
        b"through docker's policy",
    );
    assert_eq!(seen.ip(), EXPORTER_UP);
    assert_eq!(
        tcp_exchange(lab.dut(1), tcp.addr, "tcp too").ip(),
        EXPORTER_UP
    );
    // dutnet's scoped accepts (for the packets it punts) leave with it.
    lab.stop();
    assert_eq!(
        docker_forward_chain(&lab.exporter),
        before,
        "dutnet left Docker's FORWARD chain changed"
    );
}

// eBPF only: two DUT NICs with the same subnet (refused on nft), flow
// expiry read from the eBPF flow table through `dutnet stats`, and
// `udp_timeout` is the fast path's (nft leaves timeouts to conntrack).
#[test]
fn an_expired_udp_flow_frees_its_port_for_the_next_flow() {
    /// `udp_timeout` plus a sweep interval (half of it) plus slack.
    const EXPIRY_WAIT: Duration = Duration::from_secs(6);
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat("udp_timeout: 2s");
    let udp = lan_udp_echo(&lab);
    let bind = SocketAddrV4::new(DUT_IP, 4444);
    let first = udp_exchange(&lab, &udp_socket(lab.dut(1), bind), &udp, b"dut1 first");
    assert_eq!(first, SocketAddr::from((EXPORTER_UP, 4444)));
    let dut2 = udp_socket(lab.dut(2), bind);
    let taken = udp_exchange(&lab, &dut2, &udp, b"dut2 while dut1's flow lives");
    assert!(
        NAT_PORTS.contains(&taken.port()),
        "4444 was taken; dut2 should get a NAT port, the server saw {taken}"
    );

    let expired = cmd::wait_for(EXPIRY_WAIT, || {
        (lab.total("/active_flows") == 0).then_some(())
    });
    assert!(
        expired.is_some(),
        "flows still active {EXPIRY_WAIT:?} after a 2 s udp_timeout: {:#}",
        lab.stats()
    );
    let again = udp_exchange(&lab, &dut2, &udp, b"dut2 after expiry");
    assert_eq!(
        again,
        SocketAddr::from((EXPORTER_UP, 4444)),
        "the expired flow's port was not reusable"
    );
}

/// Bulk TCP with the veth's segmentation offloads on: the DUT's stack hands
/// the exporter 64 KiB GSO packets, which the fast path must forward (the
/// NIC segments them), not mistake for packets over the MTU. On nft the
/// transfer must simply arrive whole.
fn a_bulk_tcp_transfer_with_offloads_on_stays_on_the_fast_path(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on(datapath, "");
    const BYTES: usize = 8 << 20;
    let listener = lab
        .lan()
        .enter(|| TcpListener::bind(SocketAddrV4::new(LAN_IP, 7100)).unwrap());
    let sink = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut received);
        (peer, received.len())
    });
    let sent = lab.dut(1).enter(move || -> std::io::Result<usize> {
        let mut stream =
            TcpStream::connect_timeout(&SocketAddrV4::new(LAN_IP, 7100).into(), REPLY_WAIT)?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        std::io::Write::write_all(&mut stream, &vec![0x5a; BYTES])?;
        Ok(BYTES)
    });
    assert_eq!(sent.ok(), Some(BYTES), "{}", lab.report());
    let (peer, received) = sink.join().unwrap();
    assert_eq!(peer.ip(), EXPORTER_UP);
    assert_eq!(received, BYTES, "{}", lab.report());
    // The punt counter is an eBPF map's.
    if datapath == "ebpf" {
        assert_eq!(lab.total("/punts/mtu"), 0, "{}", lab.report());
    }
}
both_datapaths!(a_bulk_tcp_transfer_with_offloads_on_stays_on_the_fast_path);

/// `dutnet stats --rates`: the per-second figures match traffic the test
/// paces itself (200 datagrams/s from the DUT) within 10 %.
// eBPF only: the rates come from the eBPF maps' counters.
#[test]
fn stats_rates_match_the_traffic_sent() {
    const PER_SECOND: u32 = 200;
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on("ebpf", "");
    let udp = lan_udp_echo(&lab);
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    let to = udp.addr;
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        let step = Duration::from_secs(1) / PER_SECOND;
        for i in 0..(PER_SECOND * 4) {
            let due = start + step * i;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = socket.send_to(b"paced", to);
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    let out = cli::run(
        &lab.topology,
        &lab.exporter,
        &["stats", "--json", "--rates", "--interval", "2"],
    );
    sender.join().unwrap();
    assert!(out.success(), "{out:#?}");
    let stats: Value = serde_json::from_str(&out.stdout).unwrap();
    let rate = stats["interfaces"][0]["rates"]["from_dut"]["packets_per_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no rate in {stats:#}"));
    let expected = f64::from(PER_SECOND);
    assert!(
        (rate - expected).abs() <= expected * 0.1,
        "from_dut {rate}/s, sent {expected}/s: {stats:#}"
    );
    let nat_out = stats["interfaces"][0]["rates"]["nat_out"]["packets_per_s"]
        .as_f64()
        .unwrap();
    assert!((nat_out - expected).abs() <= expected * 0.1, "{stats:#}");
}

/// Datagrams larger than the MTU within a flow the fast path translates:
/// the LAN host's 5000-byte reply to a small request arrives whole at the
/// DUT, and the DUT's own 5000-byte datagram leaves from the same port as
/// the flow's small ones (the fragments follow their first, not a
/// separate kernel mapping).
#[test]
fn fragmented_datagrams_of_a_fast_path_flow_keep_its_mapping_both_ways() {
    const BIG: usize = 5000;
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat("");
    let server = lab
        .lan()
        .enter(|| UdpSocket::bind(SocketAddrV4::new(LAN_IP, 7200)).unwrap());
    server.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    let responder = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..2 {
            let Ok((n, peer)) = server.recv_from(&mut buf) else {
                break;
            };
            seen.push((peer, n));
            if n < 100 {
                server.send_to(&vec![0x42; BIG], peer).unwrap();
            }
        }
        seen
    });
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    let to = SocketAddrV4::new(LAN_IP, 7200);
    socket.send_to(b"big one, please", to).unwrap();
    let mut buf = vec![0u8; 65536];
    let reply = socket.recv(&mut buf);
    assert_eq!(
        reply.ok(),
        Some(BIG),
        "the fragmented reply\n{}",
        lab.report()
    );
    socket.send_to(&vec![0x17; BIG], to).unwrap();
    let seen = responder.join().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}\n{}", lab.report());
    assert_eq!(seen[1].1, BIG, "the DUT's big datagram arrived whole");
    assert_eq!(
        seen[0].0, seen[1].0,
        "both left from the flow's address and port"
    );
    assert_eq!(seen[0].0.ip(), EXPORTER_UP);
}
