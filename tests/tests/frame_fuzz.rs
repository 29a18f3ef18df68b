//! A frame fuzzer for the TC programs (issue #25 item 2): mutated frames
//! from a corpus of real ones go through `dut_ingress` and
//! `upstream_ingress` by `BPF_PROG_TEST_RUN`, and every output is checked
//! against what the programs promise, by the independent parser of
//! `dutnet_tests::frames`:
//!
//! - the verdict is one the programs return (pass, drop, redirect);
//! - a passed frame is the frame that came in, byte for byte (the kernel
//!   gets what the wire carried; nothing half-rewritten);
//! - a redirected frame is a plain IPv4 packet whose header checksum
//!   verifies, whose TTL went down by one, and whose TCP/UDP/ICMP checksum
//!   verifies whenever the input's did;
//! - towards the upstream, no DUT-private address in the source, nor in
//!   the header an ICMP error quotes; towards a DUT, a DUT address as
//!   destination.
//!
//! `FRAME_FUZZ_FRAMES` sets the frames per program (default 20 000, a few
//! seconds; docs/reliability.md has the figures of longer runs) and
//! `FRAME_FUZZ_SEED` the seed (default: from the clock, printed; a failure
//! names it, so the run can be repeated).
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use dutnet_common::programs::{DUT_INGRESS, UPSTREAM_INGRESS};
use dutnet_tests::{
    bpf_test_run::{self, TestRun},
    frames::{self, ETH_HLEN, IPV4_HLEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
};

#[path = "common/nat_bench.rs"]
mod nat_bench;

use nat_bench::{
    BOARD_A, BOARD_B, Bench, DUT, DUT0_MAC, DUT1_MAC, EXTERNAL, FAR, GATEWAY, MAPPED, PUBLIC,
    ROUTER, TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC, from_board, from_router, with_bench,
};

const DEFAULT_FRAMES: u64 = 20_000;
/// Stops a run that takes far longer than its frames should (a hung
/// program or a slow machine), with what it did so far.
const TIME_LIMIT: Duration = Duration::from_secs(600);
const ETHERTYPE_IPV4: u16 = 0x0800;
/// Frames shorter than an Ethernet minimum frame (60 bytes without FCS).
const RUNT: usize = 60;
const SUBNET: (Ipv4Addr, u32) = (Ipv4Addr::new(192, 168, 100, 0), 24);

/// xorshift64*: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

fn in_subnet(addr: Ipv4Addr) -> bool {
    u32::from(addr) >> (32 - SUBNET.1) == u32::from(SUBNET.0) >> (32 - SUBNET.1)
}

/// Which program a frame goes through, and on which NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Way {
    /// `dut_ingress` on DUT NIC dut0 (1:1 and masquerade) or dut1.
    FromDut(u32),
    /// `upstream_ingress` on up0.
    FromUpstream,
}

/// The seeds: what DUTs and the LAN really send, both ways, including the
/// replies to the flows the outbound seeds open (so mutations reach the
/// translation code, not only the "unknown flow" exits).
fn corpus(b: &Bench) -> Vec<(Way, Vec<u8>)> {
    let board = |frame: Vec<u8>| from_board(frame, BOARD_A, DUT0_MAC);
    let outbound = vec![
        board(frames::udp((DUT, 40000), (FAR, 53), b"query")),
        board(frames::tcp((DUT, 40001), (FAR, 80), 0x02, b"")),
        board(frames::tcp(
            (DUT, 40001),
            (FAR, 80),
            0x10,
            b"GET / HTTP/1.1\r\n",
        )),
        board(frames::icmp_echo(DUT, FAR, 8, 0x4242, 1)),
        board(frames::udp((MAPPED, 41000), (FAR, 5000), b"mapped")),
        board(frames::tcp((MAPPED, 41001), (PUBLIC, 22), 0x02, b"")),
        board(frames::udp((DUT, 40002), (GATEWAY, 53), b"local")),
        board(frames::udp_without_checksum(
            (DUT, 40003),
            (FAR, 69),
            b"tftp",
        )),
        board(frames::icmp_error(
            DUT,
            FAR,
            (3, 3),
            0,
            frames::ip_packet(&frames::udp((FAR, 53), (DUT, 40000), b"reply")),
            28,
        )),
        board(frames::as_fragment(
            frames::udp((DUT, 40004), (FAR, 9000), &[7u8; 64]),
            0,
            true,
        )),
        board(frames::as_fragment(
            frames::udp((DUT, 40004), (FAR, 9000), &[7u8; 64]),
            9,
            false,
        )),
        board(frames::with_ip_option(&frames::udp(
            (DUT, 40005),
            (FAR, 53),
            b"options",
        ))),
        board(frames::with_ttl(
            frames::udp((DUT, 40006), (FAR, 53), b"ttl"),
            1,
        )),
        board(frames::vlan_tagged(
            &frames::udp((DUT, 40007), (FAR, 53), b"tagged"),
            905,
        )),
        board(frames::ipv4(DUT, FAR, 132, b"sctp chunk")),
        board(ipv6_frame()),
    ];
    let mut seeds: Vec<(Way, Vec<u8>)> = outbound
        .iter()
        .map(|f| (Way::FromDut(b.dut0), f.clone()))
        .collect();
    seeds.push((
        Way::FromDut(b.dut1),
        from_board(
            frames::udp((DUT, 40000), (FAR, 53), b"same address"),
            BOARD_B,
            DUT1_MAC,
        ),
    ));
    // The ports the flows got: replies to them are inbound seeds.
    let port = |frame: &[u8]| -> Option<u16> {
        let out = b.outbound(b.dut0, frame);
        (out.verdict == TC_ACT_REDIRECT).then(|| frames::parse(frames::ip_packet(&out.frame)).sport)
    };
    let udp_port = port(&outbound[0]).unwrap();
    let tcp_port = port(&outbound[1]).unwrap();
    let echo_id = port(&outbound[3]).unwrap();
    let router = |frame: Vec<u8>| (Way::FromUpstream, from_router(frame));
    seeds.extend([
        router(frames::udp((FAR, 53), (EXTERNAL, udp_port), b"answer")),
        router(frames::tcp((FAR, 80), (EXTERNAL, tcp_port), 0x12, b"")),
        router(frames::tcp(
            (FAR, 80),
            (EXTERNAL, tcp_port),
            0x18,
            b"HTTP/1.1 200 OK\r\n",
        )),
        router(frames::icmp_echo(FAR, EXTERNAL, 0, echo_id, 1)),
        router(frames::udp((FAR, 5000), (PUBLIC, 41000), b"to mapped")),
        router(frames::tcp((ROUTER, 50000), (PUBLIC, 22), 0x02, b"")),
        router(frames::icmp_error(
            ROUTER,
            EXTERNAL,
            (11, 0),
            0,
            frames::ip_packet(&frames::udp((EXTERNAL, udp_port), (FAR, 53), b"query")),
            28,
        )),
        router(frames::icmp_error(
            ROUTER,
            EXTERNAL,
            (3, 4),
            1280,
            frames::ip_packet(&frames::tcp((EXTERNAL, tcp_port), (FAR, 80), 0x10, b"")),
            48,
        )),
        router(frames::as_fragment(
            frames::udp((FAR, 53), (EXTERNAL, udp_port), &[9u8; 64]),
            0,
            true,
        )),
        router(frames::udp((FAR, 53), (EXTERNAL, 4444), b"unsolicited")),
        router(frames::udp((FAR, 53), (DUT, 40000), b"routed to a dut")),
        router(ipv6_frame()),
    ]);
    seeds
}

/// An IPv6 UDP frame (the programs are IPv4-only and must pass it).
fn ipv6_frame() -> Vec<u8> {
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&0x86ddu16.to_be_bytes());
    frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 17, 64]);
    frame.extend_from_slice(&[0xfd; 32]);
    frame.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 16, 0, 0]);
    frame.extend_from_slice(b"ipv6 dat");
    frame
}

/// Changes `frame` in 1 to 4 ways, the IPv4 header checksum fixed after in
/// most runs (else nearly every mutant stops at the checksum check).
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>, seeds: &[(Way, Vec<u8>)]) {
    const INTERESTING: [u8; 8] = [0, 1, 4, 5, 0x3f, 0x7f, 0x80, 0xff];
    const IP: usize = ETH_HLEN;
    const L4: usize = ETH_HLEN + IPV4_HLEN;
    // Header fields whose values steer the programs.
    const FIELDS: [usize; 14] = [
        IP,         // version and IHL
        IP + 2,     // total length
        IP + 3,     //
        IP + 6,     // flags and fragment offset
        IP + 7,     //
        IP + 8,     // TTL
        IP + 9,     // protocol
        L4,         // ICMP type, port high byte
        L4 + 1,     // ICMP code
        L4 + 4,     // UDP length, echo id
        L4 + 5,     //
        L4 + 12,    // TCP data offset
        L4 + 13,    // TCP flags
        L4 + 8 + 9, // a quoted header's protocol
    ];
    for _ in 0..=rng.below(4) {
        let len = frame.len();
        match rng.below(8) {
            0 => {
                let at = rng.below(len);
                frame[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(len);
                frame[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 | 3 => {
                let at = FIELDS[rng.below(FIELDS.len())];
                if at < len {
                    frame[at] = if rng.chance(50) {
                        INTERESTING[rng.below(INTERESTING.len())]
                    } else {
                        rng.byte()
                    };
                }
            }
            4 => frame.truncate(ETH_HLEN + rng.below(len.saturating_sub(ETH_HLEN) + 1)),
            5 => {
                for _ in 0..=rng.below(64) {
                    frame.push(rng.byte());
                }
            }
            6 => {
                // Another seed's tail after this frame's head.
                let other = &seeds[rng.below(seeds.len())].1;
                let cut = rng.below(len.min(other.len()));
                frame.truncate(cut);
                frame.extend_from_slice(&other[cut..]);
            }
            _ => {
                let at = rng.below(len);
                frame[at] = rng.byte();
            }
        }
    }
    if rng.chance(70) && frame.len() >= ETH_HLEN + IPV4_HLEN {
        frames::fix_ip_checksum(frame);
    }
}

/// The fixed IPv4 header of a frame, read here (independently of dutnet).
#[derive(Debug)]
struct Header {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: u8,
    checksum_ok: bool,
    /// More fragments follow, or not the first: the L4 checksum covers
    /// the whole datagram and cannot be checked from one fragment.
    fragment: bool,
}

/// The header of `frame` when it is a plain IPv4 packet (no options).
fn ipv4_header(frame: &[u8]) -> Option<Header> {
    if frame.len() < ETH_HLEN + IPV4_HLEN
        || u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV4
        || frame[ETH_HLEN] != 0x45
    {
        return None;
    }
    let ip = &frames::ip_packet(frame)[..IPV4_HLEN];
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some(Header {
        src: addr(12),
        dst: addr(16),
        ttl: ip[8],
        protocol: ip[9],
        checksum_ok: frames::internet_checksum(ip, 0) == 0,
        fragment: u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0,
    })
}

/// What the independent parser says of a whole, unfragmented TCP, UDP or
/// ICMP packet with at least 8 bytes after its header.
fn l4(frame: &[u8], header: &Header) -> Option<frames::Parsed> {
    let ip = frames::ip_packet(frame);
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let known = [PROTO_TCP, PROTO_UDP, PROTO_ICMP].contains(&header.protocol);
    (known && !header.fragment && total >= IPV4_HLEN + 8 && ip.len() >= IPV4_HLEN + 8)
        .then(|| frames::parse(ip))
}

/// What is wrong with what the program made of `input`, if anything.
fn violation(way: Way, input: &[u8], run: &TestRun) -> Option<String> {
    match run.verdict {
        TC_ACT_UNSPEC => {
            return (run.frame != input).then(|| "a passed frame was changed".to_owned());
        }
        TC_ACT_SHOT => return None,
        TC_ACT_REDIRECT => {}
        other => return Some(format!("verdict {other} is none the programs return")),
    }
    let Some(out) = ipv4_header(&run.frame) else {
        return Some("a redirected frame is not a plain IPv4 packet".to_owned());
    };
    if !out.checksum_ok {
        return Some("the redirected IPv4 header checksum does not verify".to_owned());
    }
    let before = ipv4_header(input)?;
    if out.ttl.checked_add(1) != Some(before.ttl) {
        return Some(format!(
            "TTL {} became {}, not one less",
            before.ttl, out.ttl
        ));
    }
    if let (Some(was), Some(is)) = (l4(input, &before), l4(&run.frame, &out))
        && was.l4_checksum_ok
        && !was.udp_checksum_zero
        && !is.l4_checksum_ok
    {
        return Some(format!(
            "the protocol {} checksum verified before and does not after",
            out.protocol
        ));
    }
    match way {
        Way::FromDut(_) => {
            if in_subnet(out.src) {
                return Some(format!("DUT-private source {} redirected", out.src));
            }
            if let Some(quoted) = quoted_addresses(&run.frame)
                && (in_subnet(quoted.0) || in_subnet(quoted.1))
            {
                return Some(format!("an ICMP error quotes {quoted:?}"));
            }
        }
        Way::FromUpstream => {
            if !in_subnet(out.dst) {
                return Some(format!("redirected towards a DUT to {}", out.dst));
            }
        }
    }
    None
}

/// The source and destination of the header an ICMP error quotes. Only
/// a packet that starts its datagram has one: what a later fragment
/// carries is the middle of the datagram, data like any other.
fn quoted_addresses(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let ip = frames::ip_packet(frame);
    let icmp = ip.get(IPV4_HLEN..)?;
    let offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ip[9] != PROTO_ICMP || offset != 0 || ![3, 4, 5, 11, 12].contains(icmp.first()?) {
        return None;
    }
    let inner = icmp.get(8..28)?;
    let addr = |at: usize| Ipv4Addr::new(inner[at], inner[at + 1], inner[at + 2], inner[at + 3]);
    Some((addr(12), addr(16)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one program did with its frames.
#[derive(Default, Debug)]
struct Tally {
    frames: u64,
    verdicts: BTreeMap<&'static str, u64>,
    /// Redirected frames by protocol: the mutants that got all the way
    /// through a translation.
    translated: BTreeMap<u8, u64>,
}

#[test]
fn mutated_frames_keep_every_promise_of_the_programs() {
    let frames_each = env_number("FRAME_FUZZ_FRAMES").unwrap_or(DEFAULT_FRAMES);
    let seed = env_number("FRAME_FUZZ_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        u64::try_from(now.as_nanos() % u128::from(u64::MAX)).unwrap() | 1
    });
    eprintln!("frame fuzzer: FRAME_FUZZ_SEED={seed}, {frames_each} frames per program");
    with_bench(move |b| {
        let seeds = corpus(b);
        let mut rng = Rng(seed);
        let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
        let mut failures = Vec::new();
        let started = Instant::now();
        let total = frames_each * 2;
        for i in 0..total {
            if started.elapsed() > TIME_LIMIT {
                failures.push(format!("stopped after {i} frames: over {TIME_LIMIT:?}"));
                break;
            }
            // Alternate programs, so each gets `frames_each`.
            let upstream = i % 2 == 1;
            let (way, seed_frame) = loop {
                let (way, f) = &seeds[rng.below(seeds.len())];
                if (*way == Way::FromUpstream) == upstream {
                    break (*way, f);
                }
            };
            let mut input = seed_frame.clone();
            mutate(&mut rng, &mut input, &seeds);
            let (program, nic) = match way {
                Way::FromDut(nic) => (DUT_INGRESS, nic),
                Way::FromUpstream => (UPSTREAM_INGRESS, b.up0),
            };
            let fd = b.datapath.program_fd(program).unwrap();
            let name = if upstream {
                "upstream_ingress"
            } else {
                "dut_ingress"
            };
            let tally = tallies.entry(name).or_default();
            tally.frames += 1;
            let run = match bpf_test_run::run_on(fd, &input, nic) {
                Ok(run) => run,
                // The kernel builds no skb from a frame whose network
                // header cannot be there (no NIC delivers such a runt).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && input.len() < RUNT => {
                    *tally
                        .verdicts
                        .entry("refused by the kernel (runt)")
                        .or_default() += 1;
                    continue;
                }
                Err(e) => panic!(
                    "BPF_PROG_TEST_RUN refused frame {i}: {e}\n  in: {}",
                    hex(&input)
                ),
            };
            let verdict = match run.verdict {
                TC_ACT_UNSPEC => "pass",
                TC_ACT_SHOT => "drop",
                TC_ACT_REDIRECT => "redirect",
                _ => "other",
            };
            *tally.verdicts.entry(verdict).or_default() += 1;
            if run.verdict == TC_ACT_REDIRECT
                && let Some(p) = ipv4_header(&run.frame)
            {
                *tally.translated.entry(p.protocol).or_default() += 1;
            }
            if let Some(what) = violation(way, &input, &run)
                && failures.len() < 5
            {
                failures.push(format!(
                    "frame {i} ({name} via {way:?}): {what}\n  in:  {}\n  out: {}",
                    hex(&input),
                    hex(&run.frame)
                ));
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        for (name, t) in &tallies {
            eprintln!(
                "{name}: {} frames, {:?}, redirected by protocol {:?}",
                t.frames, t.verdicts, t.translated
            );
        }
        eprintln!(
            "{total} frames in {elapsed:.1} s ({:.0} frames/s)",
            total as f64 / elapsed.max(f64::EPSILON)
        );
        assert!(
            failures.is_empty(),
            "FRAME_FUZZ_SEED={seed} reproduces these:\n{}",
            failures.join("\n")
        );
        // A fuzzer whose mutants never get translated tests only the exits.
        for (name, t) in &tallies {
            for protocol in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
                assert!(
                    t.translated.get(&protocol).copied().unwrap_or(0) > 0,
                    "{name}: no mutant of protocol {protocol} was translated: {t:?}"
                );
            }
        }
    });
}
