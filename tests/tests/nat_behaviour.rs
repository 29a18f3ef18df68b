//! NAT behaviour as RFC 4787 defines it, judged from the LAN hosts: a DUT's
//! (address, port) keeps one external port for every destination
//! (endpoint-independent mapping, REQ-1), also when its own port was taken;
//! and only the destinations it sent to may answer (address-and-port-
//! dependent filtering, the isolation default).
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use dutnet_tests::{
    far_end::UdpEcho,
    lab::Lab,
    nat::{EXPORTER_UP, LAN_IP, udp_exchange, udp_socket},
};

/// A second LAN address (an alias on the LAN host), and a third that never
/// hears from any DUT.
const LAN_OTHER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 3);
const STRANGER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 4);
const DUT_PORT: u16 = 5000;

#[test]
fn a_duts_port_keeps_one_external_port_for_every_destination_and_strangers_are_filtered() {
    let mut lab = Lab::builder().upstream().switched_duts(&[2]).build();
    lab.lan().ip(&format!("addr add {LAN_OTHER}/24 dev eth0"));
    lab.lan().ip(&format!("addr add {STRANGER}/24 dev eth0"));
    let x = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7000));
    let y = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_OTHER, 7001));
    lab.load_nat_on("ebpf", "");
    let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let a = udp_socket(lab.dut_behind(1, 1), any(DUT_PORT));
    let b = udp_socket(lab.dut_behind(1, 2), any(DUT_PORT));

    // A takes the external port 5000 towards X; B, from the same port,
    // cannot have it there and gets another one...
    let a_at_x = udp_exchange(&lab, &a, &x, b"a to x");
    assert_eq!(a_at_x, SocketAddrV4::new(EXPORTER_UP, DUT_PORT).into());
    let b_at_x = udp_exchange(&lab, &b, &x, b"b to x");
    assert_ne!(b_at_x.port(), DUT_PORT, "two DUTs on one external port");
    // ...which it keeps towards Y, where 5000 would have been free.
    let b_at_y = udp_exchange(&lab, &b, &y, b"b to y");
    assert_eq!(
        b_at_y.port(),
        b_at_x.port(),
        "endpoint-dependent mapping: X saw {b_at_x}, Y saw {b_at_y}\n{}",
        lab.report()
    );
    let a_at_y = udp_exchange(&lab, &a, &y, b"a to y");
    assert_eq!(a_at_y.port(), DUT_PORT, "A's own binding");

    // Hairpinning through the masquerade address (RFC 4787 REQ-9) is
    // refused on purpose: A reaching B's external port reaches the
    // exporter itself, never B (docs/flow-table.md).
    a.send_to(b"hairpin", SocketAddrV4::new(EXPORTER_UP, b_at_x.port()))
        .unwrap();

    // A LAN address B never sent to gets nothing through to it.
    let stranger = lab.lan().enter(move || {
        std::net::UdpSocket::bind(SocketAddrV4::new(STRANGER, 9999)).expect("bind the stranger")
    });
    let target = SocketAddrV4::new(EXPORTER_UP, b_at_x.port());
    stranger.send_to(b"unsolicited", target).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        b.recv(&mut buf).is_err(),
        "a stranger or a hairpin reached B through {target}: {:?}",
        String::from_utf8_lossy(&buf)
    );
}
