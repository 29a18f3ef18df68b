//! `local_ntp` (issue #19 item 2) from DUT namespaces, on both datapaths:
//! the exporter answers NTP on the gateway and at any address (the
//! redirect), its clock's offset is near zero, the leap indicator and
//! stratum are the host's adjtimex(2) state, a real client (ntpdig) gets the
//! answer and judges it by that state, and a flooding DUT gets a RATE
//! kiss-o'-death while another DUT is still answered. The host clock is
//! only read, never set.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dutnet_tests::{
    both_datapaths, cli, cmd,
    lab::{Lab, config::dut_ip},
    nat::udp_socket,
    prereq,
};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
/// Exists nowhere: only the redirect can answer it.
const NOWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const NTP_EPOCH: u64 = 2_208_988_800;

/// The host's leap indicator as an honest server reports it: 3 while the
/// kernel says unsynchronized, else from the leap-second flags.
fn host_leap() -> (u8, u8) {
    // SAFETY: a zeroed timex with modes 0 only reads the kernel's state.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 || state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        (3, 16)
    } else if tx.status & libc::STA_INS != 0 {
        (1, 3)
    } else if tx.status & libc::STA_DEL != 0 {
        (2, 3)
    } else {
        (0, 3)
    }
}

fn now_ntp() -> (u32, u32) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = u32::try_from((d.as_secs() + NTP_EPOCH) & 0xffff_ffff).unwrap();
    let frac = u32::try_from((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000).unwrap();
    (secs, frac)
}

fn seconds(b: &[u8]) -> f64 {
    let s = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let f = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    f64::from(s) + f64::from(f) / 4_294_967_296.0
}

/// One NTPv4 client exchange; the reply's 48 bytes and the clock offset
/// (RFC 5905 8: ((T2 - T1) + (T3 - T4)) / 2).
fn query(socket: &UdpSocket, server: Ipv4Addr) -> Option<([u8; 48], f64)> {
    let mut req = [0u8; 48];
    req[0] = 0x23; // LI 0, VN 4, mode 3
    let (s, f) = now_ntp();
    req[40..44].copy_from_slice(&s.to_be_bytes());
    req[44..48].copy_from_slice(&f.to_be_bytes());
    socket
        .send_to(&req, SocketAddrV4::new(server, 123))
        .unwrap();
    let mut buf = [0u8; 128];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    let (s4, f4) = now_ntp();
    let t4 = f64::from(s4) + f64::from(f4) / 4_294_967_296.0;
    assert_eq!(n, 48, "a bare header");
    let mut reply = [0u8; 48];
    reply.copy_from_slice(&buf[..48]);
    assert_eq!(
        &reply[24..32],
        &req[40..48],
        "origin = the request's transmit"
    );
    let (t1, t2, t3) = (
        seconds(&req[40..]),
        seconds(&reply[32..]),
        seconds(&reply[40..]),
    );
    Some((reply, ((t2 - t1) + (t3 - t4)) / 2.0))
}

both_datapaths!(duts_get_the_exporters_time_at_the_gateway_and_at_any_address);
fn duts_get_the_exporters_time_at_the_gateway_and_at_any_address(datapath: &str) {
    prereq::require("ntpdig", "ntpsec-ntpdate");
    let mut lab = Lab::builder().upstream().switched_duts(&[2]).build();
    lab.load_nat_on(datapath, "local_ntp: true\n");
    assert!(lab.log().contains("NTP server listening"), "{}", lab.log());
    let (leap, stratum) = host_leap();

    let a = udp_socket(lab.dut(1), SocketAddrV4::new(dut_ip(1), 0));
    for server in [GATEWAY, NOWHERE] {
        let (reply, offset) = query(&a, server)
            .unwrap_or_else(|| panic!("no NTP answer from {server}\n{}", lab.log()));
        assert_eq!(reply[0] >> 6, leap, "LI from {server}");
        assert_eq!(reply[0] & 7, 4, "server mode");
        assert_eq!(reply[1], stratum, "stratum from {server}");
        assert!(offset.abs() < 0.1, "offset {offset} s from {server}");
    }

    // A real client: it gets the answer from anywhere and judges it by the
    // host's state (ntpdig refuses an unsynchronized server's stratum).
    for server in [GATEWAY, NOWHERE] {
        let out = cmd::run(
            lab.dut(1)
                .command("ntpdig", &["-t", "2", &server.to_string()]),
            Duration::from_secs(10),
        );
        if stratum == 16 {
            assert!(
                out.stderr.contains("stratum too high"),
                "ntpdig {server}: {out:#?}"
            );
        } else {
            assert!(out.success(), "ntpdig {server}: {out:#?}");
            let offset: f64 = out
                .stdout
                .split_whitespace()
                .find(|w| w.starts_with('+') || w.starts_with('-'))
                .and_then(|w| w.parse().ok())
                .unwrap();
            assert!(offset.abs() < 0.1, "{}", out.stdout);
        }
    }

    // A flood from DUT 1: one RATE kiss, then silence; DUT 2 still served.
    let mut kisses = 0;
    let mut answers = 0;
    a.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for _ in 0..40 {
        match query(&a, NOWHERE) {
            Some((reply, _)) if reply[1] == 0 => {
                assert_eq!(&reply[12..16], b"RATE");
                assert_eq!(reply[0] >> 6, 3);
                kisses += 1;
            }
            Some(_) => answers += 1,
            None => {}
        }
    }
    assert_eq!(kisses, 1, "one kiss, then silence ({answers} answers)");
    assert!(answers < 20, "{answers} answers to a flood");
    let b = udp_socket(lab.dut_behind(1, 2), SocketAddrV4::new(dut_ip(2), 0));
    let (reply, _) = query(&b, GATEWAY).expect("the other DUT is still answered");
    assert_eq!(reply[1], stratum);

    // `dutnet ntp-status --json`: jumpstarter's keys, the counters, the
    // clients and the clock as the test read it.
    let out = cli::run(&lab.topology, &lab.exporter, &["ntp-status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let net = &status["networks"][0];
    assert_eq!(net["enabled"], true, "{status}");
    assert_eq!(net["running"], true, "{status}");
    assert_eq!(net["counters"]["kod_sent"], 1, "{status}");
    assert_eq!(net["clients"].as_array().unwrap().len(), 2, "{status}");
    assert_eq!(status["clock"]["leap"], leap, "{status}");
    assert_eq!(status["clock"]["stratum"], stratum, "{status}");

    // `dutnet stats --json` counts them, per network (its network section
    // is the eBPF datapath's: on nft alone it points at nft's counters).
    if datapath == "ebpf" {
        let out = cli::run(&lab.topology, &lab.exporter, &["stats", "--json"]).ok();
        let stats: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let ntp = &stats["networks"][0]["ntp"];
        assert_eq!(ntp["kod_sent"], 1, "{stats}");
        // The two first queries, the flood's answers, DUT 2's (and ntpdig's).
        assert!(
            ntp["requests_served"].as_u64().unwrap() >= answers + 3,
            "{stats}"
        );
    }
}
