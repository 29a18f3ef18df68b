//! The masquerade programs over crafted frames (`BPF_PROG_TEST_RUN`): the
//! rewritten bytes and every checksum are checked by an independent parser
//! (`dutnet_tests::frames`), and malformed frames are passed or dropped
//! whole, never half-rewritten. The bench: `common/nat_bench.rs`.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::net::Ipv4Addr;

use dutnet::datapath::Datapath as _;
use dutnet_common::stats::drop;
use dutnet_tests::frames::{self, PROTO_ICMP, PROTO_TCP};

#[path = "common/nat_bench.rs"]
mod nat_bench;

use nat_bench::*;

#[test]
fn udp_is_translated_out_and_back_with_valid_checksums() {
    with_bench(|b| {
        let out = b.outbound(
            b.dut0,
            &from_board(
                frames::udp((DUT, 40000), (FAR, 53), b"query"),
                BOARD_A,
                DUT0_MAC,
            ),
        );
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let p = parsed(&out);
        assert_eq!((p.src, p.sport, p.dst, p.dport), (EXTERNAL, 40000, FAR, 53));
        assert_eq!(p.ttl, 63, "a router decrements the TTL");
        assert_checksums(&p);
        assert_eq!(&out.frame[42..], b"query", "payload untouched");

        let back = b.inbound(&from_router(frames::udp(
            (FAR, 53),
            (EXTERNAL, 40000),
            b"answer",
        )));
        assert_eq!(back.verdict, TC_ACT_REDIRECT);
        let p = parsed(&back);
        assert_eq!((p.src, p.sport, p.dst, p.dport), (FAR, 53, DUT, 40000));
        assert_eq!(p.ttl, 63);
        assert_checksums(&p);
        assert_eq!(&back.frame[0..6], &BOARD_A, "to the DUT's MAC");
        assert_eq!(&back.frame[6..12], &DUT0_MAC, "from the DUT NIC's MAC");
    });
}

#[test]
fn a_zero_udp_checksum_stays_zero() {
    with_bench(|b| {
        let frame = frames::udp_without_checksum((DUT, 40001), (FAR, 9), b"no sum");
        let out = b.outbound(b.dut0, &from_board(frame, BOARD_A, DUT0_MAC));
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let p = parsed(&out);
        assert_eq!(p.src, EXTERNAL);
        assert!(p.udp_checksum_zero, "{p:?}");
        assert!(p.ip_checksum_ok);
    });
}

#[test]
fn tcp_handshake_is_translated_with_valid_checksums() {
    with_bench(|b| {
        let syn = frames::tcp((DUT, 50000), (FAR, 80), 0x02, b"");
        let out = b.outbound(b.dut0, &from_board(syn, BOARD_A, DUT0_MAC));
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let p = parsed(&out);
        assert_eq!((p.src, p.sport, p.protocol), (EXTERNAL, 50000, PROTO_TCP));
        assert_checksums(&p);

        let syn_ack = frames::tcp((FAR, 80), (EXTERNAL, 50000), 0x12, b"");
        let back = b.inbound(&from_router(syn_ack));
        assert_eq!(back.verdict, TC_ACT_REDIRECT);
        let p = parsed(&back);
        assert_eq!((p.dst, p.dport), (DUT, 50000));
        assert_checksums(&p);

        let data = frames::tcp((DUT, 50000), (FAR, 80), 0x18, b"GET / HTTP/1.0\r\n\r\n");
        let out = b.outbound(b.dut0, &from_board(data, BOARD_A, DUT0_MAC));
        let p = parsed(&out);
        assert_eq!((p.src, p.sport), (EXTERNAL, 50000));
        assert_checksums(&p);
    });
}

#[test]
fn icmp_echo_is_translated_with_its_identifier() {
    with_bench(|b| {
        let ping = frames::icmp_echo(DUT, FAR, 8, 0x4242, 1);
        let out = b.outbound(b.dut0, &from_board(ping, BOARD_A, DUT0_MAC));
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let p = parsed(&out);
        assert_eq!((p.src, p.sport, p.protocol), (EXTERNAL, 0x4242, PROTO_ICMP));
        assert_checksums(&p);

        let pong = frames::icmp_echo(FAR, EXTERNAL, 0, 0x4242, 1);
        let back = b.inbound(&from_router(pong));
        assert_eq!(back.verdict, TC_ACT_REDIRECT);
        let p = parsed(&back);
        assert_eq!((p.dst, p.sport), (DUT, 0x4242));
        assert_checksums(&p);
    });
}

#[test]
fn two_duts_with_the_same_address_and_port_get_distinct_ports_and_their_own_replies() {
    with_bench(|b| {
        let a = b.outbound(
            b.dut0,
            &from_board(frames::udp((DUT, 4444), (FAR, 7), b"a"), BOARD_A, DUT0_MAC),
        );
        let bb = b.outbound(
            b.dut1,
            &from_board(frames::udp((DUT, 4444), (FAR, 7), b"b"), BOARD_B, DUT1_MAC),
        );
        let (pa, pb) = (parsed(&a), parsed(&bb));
        assert_eq!(pa.sport, 4444, "the first keeps its port");
        assert!(
            NAT_PORTS.contains(&pb.sport),
            "the second is translated: {pb:?}"
        );
        assert_checksums(&pb);

        for (port, board, nic) in [(pa.sport, BOARD_A, DUT0_MAC), (pb.sport, BOARD_B, DUT1_MAC)] {
            let back = b.inbound(&from_router(frames::udp((FAR, 7), (EXTERNAL, port), b"r")));
            assert_eq!(back.verdict, TC_ACT_REDIRECT);
            let p = parsed(&back);
            assert_eq!((p.dst, p.dport), (DUT, 4444));
            assert_checksums(&p);
            assert_eq!(
                &back.frame[0..6],
                &board,
                "reply to port {port} goes to its own DUT"
            );
            assert_eq!(&back.frame[6..12], &nic);
        }
    });
}

#[test]
fn a_time_exceeded_about_a_udp_packet_reaches_the_dut_translated() {
    with_bench(|b| {
        let out = b.outbound(
            b.dut0,
            &from_board(
                frames::udp((DUT, 33434), (FAR, 33434), b"probe"),
                BOARD_A,
                DUT0_MAC,
            ),
        );
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        // The router quotes the packet as it saw it: translated, whole.
        let quoted = frames::ip_packet(&out.frame).to_vec();
        let error = frames::icmp_error(ROUTER, EXTERNAL, (11, 0), 0, &quoted, quoted.len());
        let back = b.inbound(&from_router(error));
        assert_eq!(back.verdict, TC_ACT_REDIRECT);
        let outer = parsed(&back);
        assert_eq!(
            (outer.src, outer.dst, outer.protocol),
            (ROUTER, DUT, PROTO_ICMP)
        );
        assert_checksums(&outer);
        let inner = frames::parse(&frames::ip_packet(&back.frame)[28..]);
        assert_eq!(
            (inner.src, inner.sport, inner.dst, inner.dport),
            (DUT, 33434, FAR, 33434)
        );
        assert_checksums(&inner);
    });
}

#[test]
fn a_fragmentation_needed_about_a_translated_tcp_port_reaches_the_dut() {
    with_bench(|b| {
        // Two DUTs with the same address and port: the second flow's port
        // is translated, and the error quotes that port.
        let syn = frames::tcp((DUT, 5354), (FAR, 7), 0x02, &[0u8; 64]);
        let first = b.outbound(b.dut0, &from_board(syn.clone(), BOARD_B, DUT0_MAC));
        assert_eq!(parsed(&first).sport, 5354);
        let out = b.outbound(b.dut1, &from_board(syn, BOARD_A, DUT1_MAC));
        let translated = parsed(&out);
        assert!(NAT_PORTS.contains(&translated.sport), "{translated:?}");
        // Routers may quote only the IP header and 8 bytes: no TCP checksum.
        let quoted = frames::ip_packet(&out.frame).to_vec();
        let error = frames::icmp_error(ROUTER, EXTERNAL, (3, 4), 1280, &quoted, 28);
        let back = b.inbound(&from_router(error));
        assert_eq!(back.verdict, TC_ACT_REDIRECT);
        let outer = parsed(&back);
        assert_eq!(outer.dst, DUT);
        assert_checksums(&outer);
        let ip = frames::ip_packet(&back.frame);
        assert_eq!(
            u16::from_be_bytes([ip[26], ip[27]]),
            1280,
            "the MTU is kept"
        );
        let inner = &ip[28..];
        assert!(
            frames::internet_checksum(&inner[..20], 0) == 0,
            "quoted IP checksum"
        );
        assert_eq!(&inner[12..16], &DUT.octets());
        assert_eq!(
            u16::from_be_bytes([inner[20], inner[21]]),
            5354,
            "quoted source port"
        );
        assert_eq!(&back.frame[0..6], &BOARD_A, "to the DUT on dut1");
    });
}

#[test]
fn what_the_fast_path_does_not_handle_is_passed_unchanged() {
    with_bench(|b| {
        let udp = frames::udp((DUT, 40100), (FAR, 53), b"q");
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut ttl1 = udp.clone();
        ttl1[22] = 1;
        cases.push(("TTL 1", fix_ip_checksum(ttl1)));
        let mut fragment = udp.clone();
        fragment[20] = 0x20; // more fragments,
        fragment[21] = 0x10; // at offset 128: no first fragment was seen
        cases.push((
            "a later fragment without its first",
            fix_ip_checksum(fragment),
        ));
        cases.push((
            "to the gateway",
            frames::udp((DUT, 40101), (GATEWAY, 53), b"q"),
        ));
        cases.push((
            "a broadcast",
            frames::udp((DUT, 68), (Ipv4Addr::BROADCAST, 67), b"q"),
        ));
        let mut gre = udp.clone();
        gre[23] = 47;
        cases.push(("another protocol", fix_ip_checksum(gre)));
        for (what, frame) in cases {
            let frame = from_board(frame, BOARD_A, DUT0_MAC);
            let run = b.outbound(b.dut0, &frame);
            assert_eq!(run.verdict, TC_ACT_UNSPEC, "{what}");
            assert_eq!(run.frame, frame, "{what} must not be modified");
        }
        // Addressed to another host's MAC: not ours to route.
        let frame = from_board(udp, BOARD_A, BOARD_B);
        let run = b.outbound(b.dut0, &frame);
        assert_eq!((run.verdict, &run.frame), (TC_ACT_UNSPEC, &frame));
    });
}

#[test]
fn truncated_and_lying_headers_are_dropped_whole() {
    with_bench(|b| {
        let udp = from_board(
            frames::udp((DUT, 40200), (FAR, 53), b"q"),
            BOARD_A,
            DUT0_MAC,
        );
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut long = udp.clone();
        long[16..18].copy_from_slice(&500u16.to_be_bytes());
        cases.push(("total length beyond the frame", fix_ip_checksum(long)));
        cases.push(("cut inside the UDP header", udp[..14 + 20 + 4].to_vec()));
        let mut short_ihl = udp.clone();
        short_ihl[14] = 0x44;
        cases.push(("header length below 20", fix_ip_checksum(short_ihl)));
        // (The kernel refuses to test-run a frame cut inside the IPv4 header.)
        let mut version = udp.clone();
        version[14] = 0x65;
        cases.push(("version 6 in an IPv4 frame", fix_ip_checksum(version)));
        for (what, frame) in cases {
            let run = b.outbound(b.dut0, &frame);
            assert_eq!(run.verdict, TC_ACT_SHOT, "{what}");
            assert_eq!(run.frame, frame, "{what} must not be modified");
        }
    });
}

#[test]
fn what_the_kernels_ip_input_would_refuse_is_dropped_and_counted() {
    with_bench(|b| {
        let cases = frames::malformed(DUT, FAR);
        for (what, frame) in &cases {
            let frame = from_board(frame.clone(), BOARD_A, DUT0_MAC);
            let run = b.outbound(b.dut0, &frame);
            assert_eq!(run.verdict, TC_ACT_SHOT, "{what}");
            assert_eq!(run.frame, frame, "{what} must not be modified");
        }
        let stats = dut0_stats(b);
        assert_eq!(stats.counters.drops[drop::MALFORMED], cases.len() as u64);
        assert_eq!(
            stats.counters.new_flows, 0,
            "no flow for a malformed packet"
        );
    });
}

#[test]
fn unsolicited_traffic_to_a_dut_is_dropped_and_the_hosts_own_is_passed() {
    with_bench(|b| {
        let to_dut = from_router(frames::tcp((ROUTER, 40000), (DUT, 22), 0x02, b""));
        let run = b.inbound(&to_dut);
        assert_eq!(run.verdict, TC_ACT_SHOT);
        assert_eq!(run.frame, to_dut);
        let ping_dut = from_router(frames::icmp_echo(ROUTER, DUT, 8, 7, 1));
        assert_eq!(b.inbound(&ping_dut).verdict, TC_ACT_SHOT);

        let to_host = from_router(frames::tcp((ROUTER, 40000), (EXTERNAL, 22), 0x02, b""));
        let run = b.inbound(&to_host);
        assert_eq!((run.verdict, &run.frame), (TC_ACT_UNSPEC, &to_host));
        let ping_host = from_router(frames::icmp_echo(ROUTER, EXTERNAL, 8, 7, 1));
        assert_eq!(b.inbound(&ping_host).verdict, TC_ACT_UNSPEC);
        let stats = b.datapath.stats().unwrap();
        let unsolicited: u64 = stats
            .iter()
            .map(|s| s.counters.drops[dutnet_common::stats::drop::UNSOLICITED])
            .sum();
        assert_eq!(unsolicited, 2);
    });
}

/// Recomputes the IPv4 header checksum of a frame edited by a test.
fn fix_ip_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    frames::fix_ip_checksum(&mut frame);
    frame
}

#[test]
fn counters_show_new_flows_and_translated_packets() {
    with_bench(|b| {
        for port in 41000..41005 {
            let frame = from_board(frames::udp((DUT, port), (FAR, 53), b"q"), BOARD_A, DUT0_MAC);
            assert_eq!(b.outbound(b.dut0, &frame).verdict, TC_ACT_REDIRECT);
        }
        let stats = b.datapath.stats().unwrap();
        let dut0 = stats.iter().find(|s| s.ifindex == b.dut0).unwrap();
        assert_eq!(dut0.counters.new_flows, 5);
        assert_eq!(dut0.counters.nat_out.packets, 5);
        assert_eq!(dut0.active_flows, 5);
    });
}

#[test]
fn a_public_address_takes_new_connections_on_any_port_and_translates_replies() {
    with_bench(|b| {
        // The LAN opens a connection to the public address: no flow needed.
        let syn = frames::tcp((FAR, 40000), (PUBLIC, 22), 0x02, b"");
        let run = b.inbound(&from_router(syn));
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let p = parsed(&run);
        assert_eq!((p.src, p.sport, p.dst, p.dport), (FAR, 40000, MAPPED, 22));
        assert_eq!(p.ttl, 63);
        assert_checksums(&p);

        // The DUT answers from its private address; it leaves as the public one.
        let syn_ack = frames::tcp((MAPPED, 22), (FAR, 40000), 0x12, b"");
        let run = b.outbound(b.dut0, &from_board(syn_ack, BOARD_A, DUT0_MAC));
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        let p = parsed(&run);
        assert_eq!((p.src, p.sport, p.dst, p.dport), (PUBLIC, 22, FAR, 40000));
        assert_checksums(&p);

        // A ping to the public address, and the DUT's echo reply.
        let ping = b.inbound(&from_router(frames::icmp_echo(FAR, PUBLIC, 8, 99, 1)));
        assert_eq!(ping.verdict, TC_ACT_REDIRECT);
        assert_eq!(parsed(&ping).dst, MAPPED);
        assert_checksums(&parsed(&ping));
        let pong = frames::icmp_echo(MAPPED, FAR, 0, 99, 1);
        let run = b.outbound(b.dut0, &from_board(pong, BOARD_A, DUT0_MAC));
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(parsed(&run).src, PUBLIC);
        assert_checksums(&parsed(&run));
    });
}

#[test]
fn an_icmp_error_about_a_public_address_reaches_its_dut() {
    with_bench(|b| {
        let out = b.outbound(
            b.dut0,
            &from_board(
                frames::udp((MAPPED, 5000), (FAR, 33434), b"probe"),
                BOARD_A,
                DUT0_MAC,
            ),
        );
        assert_eq!(parsed(&out).src, PUBLIC);
        let quoted = frames::ip_packet(&out.frame).to_vec();
        let error = frames::icmp_error(ROUTER, PUBLIC, (3, 3), 0, &quoted, quoted.len());
        let back = b.inbound(&from_router(error));
        assert_eq!(back.verdict, TC_ACT_REDIRECT);
        let outer = parsed(&back);
        assert_eq!(outer.dst, MAPPED);
        assert_checksums(&outer);
        let inner = frames::parse(&frames::ip_packet(&back.frame)[28..]);
        assert_eq!((inner.src, inner.sport), (MAPPED, 5000));
        assert_checksums(&inner);
    });
}

#[test]
fn the_later_fragments_of_a_datagram_follow_its_first() {
    with_bench(|b| {
        // A first fragment (more fragments, offset 0) opens the flow...
        let mut first = frames::udp((DUT, 40300), (FAR, 53), &[7u8; 64]);
        first[20] = 0x20;
        let first = fix_ip_checksum(first);
        let out = b.outbound(b.dut0, &from_board(first, BOARD_A, DUT0_MAC));
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        assert_eq!(parsed(&out).src, EXTERNAL);
        // ...and a later one of the same datagram (same id) takes its source.
        let mut later = frames::udp((DUT, 40300), (FAR, 53), &[7u8; 64]);
        later[20] = 0x00;
        later[21] = 0x09; // offset 72 bytes, last fragment
        let later = fix_ip_checksum(later);
        let out = b.outbound(b.dut0, &from_board(later.clone(), BOARD_A, DUT0_MAC));
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let ip = frames::ip_packet(&out.frame);
        assert_eq!(&ip[12..16], &EXTERNAL.octets());
        assert_eq!(ip[8], 63);
        assert_eq!(frames::internet_checksum(&ip[..20], 0), 0, "IPv4 checksum");
        assert_eq!(
            &ip[20..],
            &frames::ip_packet(&later)[20..],
            "the payload is untouched"
        );
    });
}

/// The bench's networks hold 1024 flows, 512 of them for one DUT.
const PER_DUT: u16 = 512;
const OTHER_DUT: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);

/// Opens TCP connection `port` from `dut` to FAR:80 through dut0 and
/// completes its handshake, so the flow is established.
fn establish(b: &Bench, dut: Ipv4Addr, port: u16) -> u16 {
    let syn = frames::tcp((dut, port), (FAR, 80), 0x02, b"");
    let out = b.outbound(b.dut0, &from_board(syn, BOARD_A, DUT0_MAC));
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "SYN from {dut}:{port}");
    let translated = parsed(&out).sport;
    let syn_ack = frames::tcp((FAR, 80), (EXTERNAL, translated), 0x12, b"");
    assert_eq!(b.inbound(&from_router(syn_ack)).verdict, TC_ACT_REDIRECT);
    let ack = frames::tcp((dut, port), (FAR, 80), 0x10, b"");
    assert_eq!(
        b.outbound(b.dut0, &from_board(ack, BOARD_A, DUT0_MAC))
            .verdict,
        TC_ACT_REDIRECT
    );
    translated
}

/// An unreplied UDP flow from `dut`; its verdict.
fn unreplied(b: &Bench, dut: Ipv4Addr, port: u16) -> i32 {
    let frame = from_board(frames::udp((dut, port), (FAR, 9), b"x"), BOARD_A, DUT0_MAC);
    b.outbound(b.dut0, &frame).verdict
}

fn dut0_stats(b: &Bench) -> dutnet::datapath::InterfaceStats {
    let stats = b.datapath.stats().unwrap();
    stats.into_iter().find(|s| s.ifindex == b.dut0).unwrap()
}

#[test]
fn a_dut_flooding_new_flows_recycles_its_unreplied_ones_and_keeps_its_connection() {
    with_bench(|b| {
        let translated = establish(b, DUT, 50000);
        // Three times the DUT's share of new flows nobody answers: every one
        // gets through, by taking the place of an older unreplied one.
        for port in 0..3 * PER_DUT {
            assert_eq!(
                unreplied(b, DUT, 1000 + port),
                TC_ACT_REDIRECT,
                "flow {port}"
            );
        }
        let stats = dut0_stats(b);
        assert_eq!(stats.active_flows, u64::from(PER_DUT), "{stats:?}");
        assert_eq!(stats.evictions, u64::from(2 * PER_DUT) + 1, "{stats:?}");
        assert_eq!(stats.counters.drops[drop::DUT_LIMIT], 0);
        // The established connection survived it, with its translation.
        let reply = frames::tcp((FAR, 80), (EXTERNAL, translated), 0x18, b"ok");
        let back = b.inbound(&from_router(reply));
        assert_eq!(back.verdict, TC_ACT_REDIRECT, "the connection was evicted");
        assert_eq!(parsed(&back).dport, 50000);
        // Another DUT on the same NIC still has the other half.
        for port in 0..PER_DUT {
            assert_eq!(unreplied(b, OTHER_DUT, 2000 + port), TC_ACT_REDIRECT);
        }
        assert_eq!(dut0_stats(b).active_flows, 1024);
    });
}

#[test]
fn established_connections_are_never_evicted_a_new_flow_is_refused_instead() {
    with_bench(|b| {
        let first = establish(b, DUT, 20000);
        for port in 1..PER_DUT {
            establish(b, DUT, 20000 + port);
        }
        assert_eq!(unreplied(b, DUT, 7), TC_ACT_SHOT);
        let stats = dut0_stats(b);
        assert_eq!(stats.counters.drops[drop::DUT_LIMIT], 1, "{stats:?}");
        assert_eq!(stats.evictions, 0);
        let reply = frames::tcp((FAR, 80), (EXTERNAL, first), 0x18, b"ok");
        assert_eq!(b.inbound(&from_router(reply)).verdict, TC_ACT_REDIRECT);
        // The network's other half is the other DUTs'.
        assert_eq!(unreplied(b, OTHER_DUT, 7), TC_ACT_REDIRECT);
    });
}

#[test]
fn a_closed_connection_is_evicted_before_a_replied_one_and_a_syn_reopens_it() {
    with_bench(|b| {
        // The DUT's share: one connection closed by a RST, the rest
        // established.
        let closed = establish(b, DUT, 30000);
        let rst = frames::tcp((FAR, 80), (EXTERNAL, closed), 0x04, b"");
        assert_eq!(b.inbound(&from_router(rst)).verdict, TC_ACT_REDIRECT);
        for port in 1..PER_DUT {
            establish(b, DUT, 30000 + port);
        }
        assert_eq!(unreplied(b, DUT, 7), TC_ACT_REDIRECT);
        assert_eq!(dut0_stats(b).evictions, 1);
        // The RST'd one went: a late segment of it reaches no DUT.
        let late = frames::tcp((FAR, 80), (EXTERNAL, closed), 0x10, b"");
        assert_ne!(b.inbound(&from_router(late)).verdict, TC_ACT_REDIRECT);
        // A connection reusing a closed one's ports starts afresh: closed
        // by a FIN from each side, then a new SYN from the DUT.
        let reused = 31000;
        let two_dut = OTHER_DUT;
        let port = establish(b, two_dut, reused);
        for (from_dut, flags) in [(true, 0x11), (false, 0x11)] {
            let frame = if from_dut {
                b.outbound(
                    b.dut0,
                    &from_board(
                        frames::tcp((two_dut, reused), (FAR, 80), flags, b""),
                        BOARD_A,
                        DUT0_MAC,
                    ),
                )
            } else {
                b.inbound(&from_router(frames::tcp(
                    (FAR, 80),
                    (EXTERNAL, port),
                    flags,
                    b"",
                )))
            };
            assert_eq!(frame.verdict, TC_ACT_REDIRECT);
        }
        assert_eq!(establish(b, two_dut, reused), port, "same translation");
    });
}

/// A fragment of datagram `id` from the DUT: the first (a UDP header and
/// 64 bytes, 72 bytes of payload) at offset 0, else 64 bytes of data at
/// `offset` 8-byte units.
fn fragment(id: u16, offset: u16, more: bool) -> Vec<u8> {
    let mut frame = if offset == 0 {
        frames::udp((DUT, 40400), (FAR, 53), &[7u8; 64])
    } else {
        frames::ipv4(DUT, FAR, frames::PROTO_UDP, &[8u8; 64])
    };
    frame[18..20].copy_from_slice(&id.to_be_bytes());
    from_board(frames::as_fragment(frame, offset, more), BOARD_A, DUT0_MAC)
}

#[test]
fn a_fragment_overlapping_what_came_before_is_dropped_an_out_of_order_one_is_not() {
    with_bench(|b| {
        let verdict = |frame: Vec<u8>| b.outbound(b.dut0, &frame).verdict;
        assert_eq!(verdict(fragment(1, 0, true)), TC_ACT_REDIRECT);
        assert_eq!(
            verdict(fragment(1, 8, true)),
            TC_ACT_SHOT,
            "overlaps bytes 64..72"
        );
        assert_eq!(
            verdict(fragment(1, 9, true)),
            TC_ACT_REDIRECT,
            "continues at 72"
        );
        assert_eq!(
            verdict(fragment(1, 9, false)),
            TC_ACT_SHOT,
            "a second copy of 72..136"
        );
        assert_eq!(dut0_stats(b).counters.drops[drop::MALFORMED], 2);
        // Out of order (a gap, then the part before it): both go on.
        assert_eq!(verdict(fragment(2, 0, true)), TC_ACT_REDIRECT);
        assert_eq!(verdict(fragment(2, 17, false)), TC_ACT_REDIRECT);
        assert_eq!(verdict(fragment(2, 9, true)), TC_ACT_REDIRECT);
    });
}

/// A 1:1 DUT's policy route (`public_gateway`) may take it out of the
/// interface its mapping names (its VLAN sub-interface), and only that DUT;
/// inbound, a mapping on a VLAN takes only frames tagged with it (these are
/// untagged: the host judges them).
#[test]
fn a_policy_routed_dut_leaves_by_its_own_way_out_and_only_it() {
    with_bench(|b| {
        let out = b.outbound(
            b.dut0,
            &from_board(
                frames::udp((ROUTED, 40000), (FAR, 53), b"q"),
                BOARD_A,
                DUT0_MAC,
            ),
        );
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let p = parsed(&out);
        assert_eq!(p.src, ROUTED_PUBLIC);
        assert_checksums(&p);
        // Routed the same way without a mapping that allows it: isolation.
        let out = b.outbound(
            b.dut0,
            &from_board(
                frames::udp((UNROUTED, 40000), (FAR, 53), b"q"),
                BOARD_A,
                DUT0_MAC,
            ),
        );
        assert_eq!(out.verdict, TC_ACT_SHOT);

        let untagged = from_router(frames::udp((FAR, 53), (ROUTED_PUBLIC, 40000), b"a"));
        let back = b.inbound(&untagged);
        assert_eq!((back.verdict, &back.frame), (TC_ACT_UNSPEC, &untagged));
        let plain = b.inbound(&from_router(frames::udp(
            (FAR, 53),
            (UNROUTED_PUBLIC, 40000),
            b"a",
        )));
        assert_eq!(plain.verdict, TC_ACT_REDIRECT);
        assert_eq!(parsed(&plain).dst, UNROUTED);
    });
}
