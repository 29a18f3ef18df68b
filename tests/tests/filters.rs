//! jumpstarter 0.9's `filter:` (issue #19), on both datapaths, judged from
//! the far end: what a DUT can open, what the LAN can open towards a 1:1
//! DUT, that replies to allowed flows always pass, and that the rules'
//! counters move.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::net::{Ipv4Addr, SocketAddrV4};

use dutnet_tests::{
    both_datapaths,
    far_end::{TcpEcho, UdpEcho},
    lab::Lab,
    nat::{DUT_IP, LAN_IP, tcp_exchange, try_tcp_exchange, udp_socket},
};

/// A second LAN host: an address of the LAN namespace the exporter reaches
/// on the same link (the LAN answers ARP for it).
const OTHER_LAN: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 7);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 51);

fn second_lan_host(lab: &Lab) {
    lab.lan().ip(&format!("addr add {OTHER_LAN}/32 dev lo"));
}

/// Whether a TCP exchange from the DUT to `to` works.
fn dut_reaches(lab: &Lab, to: SocketAddrV4) -> bool {
    lab.dut(1).enter(move || try_tcp_exchange(to, "hi")).is_ok()
}

/// Whether one UDP datagram from the DUT to `to` is echoed.
fn dut_udp_answered(lab: &Lab, to: SocketAddrV4) -> bool {
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    socket.send_to(b"ping", to).unwrap();
    let mut buf = [0u8; 1500];
    socket.recv(&mut buf).is_ok()
}

/// A filter counter of the (only) network in `dutnet stats --json`, e.g.
/// `/egress/rules/0/hits`.
fn hits(lab: &Lab, pointer: &str) -> u64 {
    let stats = lab.stats();
    stats
        .pointer(&format!("/networks/0/filter{pointer}"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no filter counter {pointer}:\n{stats:#}"))
}

both_datapaths!(a_drop_policy_egress_lets_only_the_accepted_host_through);
fn a_drop_policy_egress_lets_only_the_accepted_host_through(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    second_lan_host(&lab);
    let allowed = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 8080));
    let _other = TcpEcho::start(lab.lan(), SocketAddrV4::new(OTHER_LAN, 8080));
    lab.load_nat_each_on(datapath, |_| {
        format!(
            "filter:\n  egress:\n    policy: drop\n    rules:\n      - action: accept\n        destination: {LAN_IP}/32\n"
        )
    });
    assert!(
        dut_reaches(&lab, SocketAddrV4::new(LAN_IP, 8080)),
        "the accepted host is unreachable\n{}",
        lab.report()
    );
    assert_eq!(allowed.peers().len(), 1);
    assert!(
        !dut_reaches(&lab, SocketAddrV4::new(OTHER_LAN, 8080)),
        "the drop policy let the DUT reach {OTHER_LAN}\n{}",
        lab.report()
    );
    // Nothing but the filter stands in the way: the DUT still resolves
    // and talks to its gateway (not beyond it).
    let ping = lab
        .dut(1)
        .exec("ping", &["-c", "1", "-W", "2", "192.168.100.1"]);
    assert!(ping.stdout.contains("1 received"), "{ping:#?}");
    assert!(hits(&lab, "/egress/rules/0/hits") >= 1, "{}", lab.report());
    assert!(hits(&lab, "/egress/policy_hits") >= 1, "{}", lab.report());
    if datapath == "ebpf" {
        assert!(lab.total("/drops/filtered") >= 1, "{}", lab.report());
    }
}

both_datapaths!(an_accept_policy_egress_drops_only_the_named_port);
fn an_accept_policy_egress_drops_only_the_named_port(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let _tcp = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 5001));
    let _blocked = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 5001));
    let _open = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 5002));
    lab.load_nat_each_on(datapath, |_| {
        "filter:\n  egress:\n    policy: accept\n    rules:\n      - action: drop\n        protocol: udp\n        port: 5001\n".to_owned()
    });
    assert!(
        !dut_udp_answered(&lab, SocketAddrV4::new(LAN_IP, 5001)),
        "UDP 5001 passed the drop rule\n{}",
        lab.report()
    );
    assert!(
        dut_udp_answered(&lab, SocketAddrV4::new(LAN_IP, 5002)),
        "UDP 5002 was dropped\n{}",
        lab.report()
    );
    // The rule names UDP: TCP to the same port is not its business.
    assert!(dut_reaches(&lab, SocketAddrV4::new(LAN_IP, 5001)));
    assert!(hits(&lab, "/egress/rules/0/hits") >= 1, "{}", lab.report());
    assert!(hits(&lab, "/egress/policy_hits") >= 2, "{}", lab.report());
}

both_datapaths!(a_drop_policy_ingress_closes_a_public_dut_but_not_its_own_connections);
fn a_drop_policy_ingress_closes_a_public_dut_but_not_its_own_connections(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let _closed = TcpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 2222));
    let _open = TcpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 2223));
    let _lan_tcp = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 8080));
    let _lan_udp = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 5002));
    lab.load_nat_each_on(datapath, |_| {
        format!(
            "nat_mode: 1to1\naddresses:\n  - ip: {DUT_IP}\n    public_ip: {PUBLIC}\nfilter:\n  ingress:\n    policy: drop\n    rules:\n      - action: accept\n        source: {LAN_IP}\n        protocol: tcp\n        port: 2223\n"
        )
    });
    let lan = lab.lan();
    assert!(
        lan.enter(|| try_tcp_exchange(SocketAddrV4::new(PUBLIC, 2222), "in"))
            .is_err(),
        "the LAN opened a connection through a drop-policy ingress\n{}",
        lab.report()
    );
    tcp_exchange(lan, SocketAddrV4::new(PUBLIC, 2223), "allowed in");
    // What the DUT opens gets its replies, both protocols.
    assert!(
        dut_reaches(&lab, SocketAddrV4::new(LAN_IP, 8080)),
        "{}",
        lab.report()
    );
    assert!(
        dut_udp_answered(&lab, SocketAddrV4::new(LAN_IP, 5002)),
        "{}",
        lab.report()
    );
    assert!(hits(&lab, "/ingress/rules/0/hits") >= 1, "{}", lab.report());
    assert!(hits(&lab, "/ingress/policy_hits") >= 1, "{}", lab.report());
}

both_datapaths!(a_reloaded_filter_judges_new_flows_and_keeps_open_ones);
fn a_reloaded_filter_judges_new_flows_and_keeps_open_ones(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    second_lan_host(&lab);
    let _allowed = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 8080));
    let _other = TcpEcho::start(lab.lan(), SocketAddrV4::new(OTHER_LAN, 8080));
    let udp = UdpEcho::start(lab.lan(), SocketAddrV4::new(OTHER_LAN, 5002));
    let on = |filter: &str| format!("datapath: {datapath}\n{filter}");
    lab.load_nat_each(|_| on(""));
    // A flow open before the change: one UDP socket, one 4-tuple.
    let open = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    let mut buf = [0u8; 1500];
    open.send_to(b"before", udp.addr).unwrap();
    assert!(open.recv(&mut buf).is_ok(), "{}", lab.report());
    assert!(dut_reaches(&lab, SocketAddrV4::new(OTHER_LAN, 8080)));

    let filtered = lab.nat_config(|_| {
        on(&format!(
            "filter:\n  egress:\n    policy: drop\n    rules:\n      - action: accept\n        destination: {LAN_IP}\n"
        ))
    });
    lab.write_config(&filtered);
    let reload = lab.dutnet(&["reload"]);
    assert!(reload.success(), "{reload:#?}\n{}", lab.log());
    assert!(
        !dut_reaches(&lab, SocketAddrV4::new(OTHER_LAN, 8080)),
        "a new connection passed the reloaded drop policy\n{}",
        lab.report()
    );
    assert!(dut_reaches(&lab, SocketAddrV4::new(LAN_IP, 8080)));
    open.send_to(b"after", udp.addr).unwrap();
    assert!(
        open.recv(&mut buf).is_ok(),
        "the flow open before the change was cut\n{}",
        lab.report()
    );

    lab.write_config(&lab.nat_config(|_| on("")));
    let reload = lab.dutnet(&["reload"]);
    assert!(reload.success(), "{reload:#?}\n{}", lab.log());
    assert!(
        dut_reaches(&lab, SocketAddrV4::new(OTHER_LAN, 8080)),
        "the filter outlived its removal\n{}",
        lab.report()
    );
}
