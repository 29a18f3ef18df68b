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
    net::{Ipv4Addr, SocketAddrV4},
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
    clients: usize,
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
                "datapath: ebpf\ndhcp_enabled: true\ndhcp_range_start: 192.168.100.{}\ndhcp_range_end: 192.168.100.{}\ndns_entries:\n  - {{hostname: controller.lab.local, ip: {LAN_IP}}}\n",
                POOL.0, POOL.1
            )
        });
        lab.load(&config);
        let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7007));
        Self {
            lab,
            clients: 0,
            echo,
        }
    }

    fn hostile(&self) -> RawClient {
        RawClient::open(self.lab.dut_behind(1, 2), "eth0")
    }

    /// The legitimate DUT: a fresh dhclient identity gets a lease in the
    /// pool, which goes on its NIC; dig gets dutnet's answer; TCP reaches
    /// the LAN host through NAT.
    fn still_served(&mut self, case: &str) -> Ipv4Addr {
        self.clients += 1;
        let dut = self.lab.dut(1);
        let client = Dhclient::new(
            dut,
            "eth0",
            &self.lab.topology.dir,
            &format!("good{}", self.clients),
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
    let mut segment = Segment::new();
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
    let mut segment = Segment::new();
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
    let mut segment = Segment::new();
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
