//! 1:1 NAT and `nat_mode: disabled` (issue #8), on both datapaths (issue
//! #10: each case runs as `<case>::on_ebpf` and `<case>::on_nft`), judged
//! from the far end. The
//! LAN host (10.99.0.1) has no route to the DUT subnet: it reaches a DUT only
//! through the public address dutnet gives it.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use dutnet_tests::{
    both_datapaths, cli, clients,
    far_end::{self, TcpEcho, UdpEcho},
    lab::Lab,
    nat::{
        DUT_IP, EXPORTER_UP, LAN_IP, REPLY_WAIT, lan_udp_echo, tcp_exchange, udp_exchange,
        udp_socket,
    },
    prereq,
};

const PUBLIC_1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 51);
const PUBLIC_2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 52);
/// A second address of DUT 1 without a public address: masqueraded.
const UNMAPPED: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);

/// `nat_mode: 1to1` with DUT `n` at [`DUT_IP`] published as `PUBLIC_n`.
fn one_to_one(n: usize) -> String {
    let public = if n == 1 { PUBLIC_1 } else { PUBLIC_2 };
    format!("nat_mode: 1to1\naddresses:\n  - ip: {DUT_IP}\n    public_ip: {public}\n")
}

/// Sends one datagram from the LAN host to `to` and returns (the peer the
/// DUT's echo server saw, the address the reply came from).
fn lan_udp_to(lab: &Lab, to: SocketAddrV4) -> (SocketAddr, SocketAddr) {
    let socket = udp_socket(lab.lan(), SocketAddrV4::new(LAN_IP, 0));
    socket.send_to(b"from the lan", to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no reply from {to} ({e})\n{}", lab.report()));
    let (seen, echoed) = far_end::parse_echo(&buf[..n]).unwrap();
    assert_eq!(echoed, b"from the lan");
    (seen, from)
}

both_datapaths!(the_lan_reaches_a_dut_at_its_public_address_and_sees_it_there);
fn the_lan_reaches_a_dut_at_its_public_address_and_sees_it_there(datapath: &str) {
    prereq::require("ping", "iputils-ping");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_each_on(datapath, one_to_one);
    let dut = lab.dut(1);
    let tcp = TcpEcho::start(dut, SocketAddrV4::new(DUT_IP, 2222));
    let udp = UdpEcho::start(dut, SocketAddrV4::new(DUT_IP, 5353));

    // New connections from the LAN, on any port: the DUT sees the LAN host.
    let seen = tcp_exchange(lab.lan(), SocketAddrV4::new(PUBLIC_1, 2222), "hello dut");
    assert_eq!(seen.ip(), LAN_IP, "the DUT saw {seen}");
    assert_eq!(tcp.peers(), vec![seen]);
    let (seen, reply_from) = lan_udp_to(&lab, SocketAddrV4::new(PUBLIC_1, 5353));
    assert_eq!(seen.ip(), LAN_IP);
    assert_eq!(reply_from, SocketAddrV4::new(PUBLIC_1, 5353).into());
    assert_eq!(udp.peers(), vec![seen]);
    let ping = lab.lan().exec(
        "ping",
        &["-c", "2", "-i", "0.2", "-W", "2", &PUBLIC_1.to_string()],
    );
    assert!(
        ping.stdout.contains("2 received"),
        "{ping:#?}\n{}",
        lab.report()
    );

    // The DUT's own connections leave from its public address; its other,
    // unmapped address is masqueraded behind the upstream address.
    let echo = lan_udp_echo(&lab);
    let socket = udp_socket(dut, SocketAddrV4::new(DUT_IP, 0));
    assert_eq!(udp_exchange(&lab, &socket, &echo, b"mapped").ip(), PUBLIC_1);
    dut.ip(&format!("addr add {UNMAPPED}/24 dev eth0"));
    let socket = udp_socket(dut, SocketAddrV4::new(UNMAPPED, 0));
    assert_eq!(
        udp_exchange(&lab, &socket, &echo, b"unmapped").ip(),
        EXPORTER_UP
    );
}

both_datapaths!(the_exporter_reaches_a_dut_at_its_public_address);
fn the_exporter_reaches_a_dut_at_its_public_address(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_each_on(datapath, one_to_one);
    let _tcp = TcpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 2222));
    let seen = tcp_exchange(&lab.exporter, SocketAddrV4::new(PUBLIC_1, 2222), "hairpin");
    // The exporter's own connection arrives from an exporter address.
    assert!(
        [Ipv4Addr::new(192, 168, 100, 1), PUBLIC_1, EXPORTER_UP].contains(&match seen.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }),
        "the DUT saw {seen}"
    );
}

// eBPF only: two DUT NICs with the same subnet, which nft refuses by design
// (nft_datapath.rs tests the refusal).
#[test]
fn two_dut_nics_with_the_same_address_are_each_reached_by_their_own_public_address() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat_each_on("ebpf", one_to_one);
    let servers: Vec<TcpEcho> = (1..=2)
        .map(|n| TcpEcho::start(lab.dut(n), SocketAddrV4::new(DUT_IP, 2222)))
        .collect();
    for (n, public) in [(1, PUBLIC_1), (2, PUBLIC_2)] {
        let seen = tcp_exchange(lab.lan(), SocketAddrV4::new(public, 2222), "which dut?");
        assert_eq!(seen.ip(), LAN_IP);
        assert_eq!(
            servers[n - 1].peers(),
            vec![seen],
            "DUT {n} answered for {public}"
        );
    }
    assert_eq!(servers[0].peers().len(), 1);
    assert_eq!(servers[1].peers().len(), 1);
}

both_datapaths!(public_addresses_are_aliases_on_the_upstream_while_dutnet_runs);
fn public_addresses_are_aliases_on_the_upstream_while_dutnet_runs(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_each_on(datapath, one_to_one);
    let addresses = lab.exporter.ip("-4 -o addr show dev dn-up");
    assert!(
        addresses.stdout.contains(&format!("{PUBLIC_1}/24")),
        "the alias has the upstream's prefix: {}",
        addresses.stdout
    );
    lab.stop();
    let addresses = lab.exporter.ip("-4 -o addr show dev dn-up");
    assert!(
        !addresses.stdout.contains(&PUBLIC_1.to_string()),
        "{}",
        addresses.stdout
    );
    // Nothing answers for the public address any more.
    let socket = udp_socket(lab.lan(), SocketAddrV4::new(LAN_IP, 0));
    socket
        .send_to(b"anyone?", SocketAddrV4::new(PUBLIC_1, 5353))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(socket.recv_from(&mut buf).is_err());
}

both_datapaths!(a_disabled_network_serves_dhcp_and_dns_but_forwards_nothing);
fn a_disabled_network_serves_dhcp_and_dns_but_forwards_nothing(datapath: &str) {
    prereq::require("dhclient", "isc-dhcp-client");
    prereq::require("dig", "dnsutils");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on(
        datapath,
        "nat_mode: disabled\ndhcp_enabled: true\ndns_entries:\n  - hostname: controller.lab.local\n    ip: 10.99.0.1\n",
    );
    let dut = lab.dut(1);
    // The DUT gets its lease and its DNS answers from dutnet...
    dut.ip(&format!("addr del {DUT_IP}/24 dev eth0"));
    let (out, leases) = clients::dhclient(dut, "eth0", &lab.topology.dir, "");
    assert!(out.success(), "{out:#?}\n{}", lab.report());
    let leased = clients::leased_address(&leases).expect("a lease");
    dut.ip(&format!("addr add {leased}/24 dev eth0"));
    dut.ip("route replace default via 192.168.100.1");
    let dig = dut.exec(
        "dig",
        &[
            "+short",
            "+time=2",
            "@192.168.100.1",
            "controller.lab.local",
        ],
    );
    assert_eq!(dig.stdout.trim(), "10.99.0.1", "{dig:#?}");

    // ...but reaches nothing beyond the exporter,
    let echo = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7000));
    let socket: UdpSocket = udp_socket(dut, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    socket.send_to(b"out?", echo.addr).unwrap();
    let mut buf = [0u8; 64];
    assert!(socket.recv_from(&mut buf).is_err(), "the DUT got a reply");
    assert!(
        echo.peers().is_empty(),
        "the LAN host heard {:?}",
        echo.peers()
    );

    // ...and nothing beyond reaches it, even with a route to its subnet.
    let leased: Ipv4Addr = leased.parse().unwrap();
    let _tcp = TcpEcho::start(dut, SocketAddrV4::new(leased, 2222));
    lab.lan().ip("route add 192.168.100.0/24 via 10.99.0.2");
    lab.exporter.sysctl("net.ipv4.conf.all.forwarding=1");
    let reached = lab.lan().enter(move || {
        std::net::TcpStream::connect_timeout(&SocketAddrV4::new(leased, 2222).into(), REPLY_WAIT)
    });
    assert!(reached.is_err(), "the LAN host connected to the DUT");
}

// eBPF only: identical subnets on two DUT NICs (refused on nft).
#[test]
fn a_published_dut_reaches_another_at_its_public_address_across_identical_subnets() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat_each_on("ebpf", one_to_one);
    let target = TcpEcho::start(lab.dut(2), SocketAddrV4::new(DUT_IP, 2222));
    let decoy = TcpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 2222));
    let seen = tcp_exchange(
        lab.dut(1),
        SocketAddrV4::new(PUBLIC_2, 2222),
        "hello neighbour",
    );
    assert_eq!(
        seen.ip(),
        PUBLIC_1,
        "DUT 2 sees DUT 1 by its public address"
    );
    assert_eq!(target.peers(), vec![seen]);
    assert!(decoy.peers().is_empty(), "DUT 1 reached itself");
}

// eBPF only: the two DUT NICs share their subnet (refused on nft).
#[test]
fn removing_a_mapping_at_runtime_stops_it_and_leaves_the_other_duts_flows_alone() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat_each_on("ebpf", one_to_one);
    let _dut1 = UdpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 5353));
    let _dut2 = UdpEcho::start(lab.dut(2), SocketAddrV4::new(DUT_IP, 5353));
    // A flow to DUT 2 that lives across the change.
    let socket = udp_socket(lab.lan(), SocketAddrV4::new(LAN_IP, 0));
    let exchange = |to: Ipv4Addr, payload: &[u8]| -> Option<SocketAddr> {
        socket
            .send_to(payload, SocketAddrV4::new(to, 5353))
            .unwrap();
        let mut buf = [0u8; 1500];
        socket.recv_from(&mut buf).ok().map(|(_, from)| from)
    };
    assert!(exchange(PUBLIC_2, b"before").is_some(), "{}", lab.report());
    assert!(exchange(PUBLIC_1, b"before").is_some(), "{}", lab.report());

    let out = cli::run(
        &lab.topology,
        &lab.exporter,
        &["remove-address", &DUT_IP.to_string(), "--network", "dut1"],
    );
    assert!(out.success(), "{out:#?}");

    assert_eq!(exchange(PUBLIC_1, b"after"), None, "DUT 1 still reachable");
    let addresses = lab.exporter.ip("-4 -o addr show dev dn-up");
    assert!(
        !addresses.stdout.contains(&PUBLIC_1.to_string()),
        "{}",
        addresses.stdout
    );
    assert_eq!(
        exchange(PUBLIC_2, b"after"),
        Some(SocketAddrV4::new(PUBLIC_2, 5353).into()),
        "the other DUT's flow broke"
    );
}
