//! Bounded connections, judged by the clients: a DUT holding hundreds of
//! idle TCP connections to the DNS server does not keep another DUT address
//! from resolving over TCP, a script holding a thousand idle control
//! connections does not keep `dutnet status` out, and idle connections are
//! closed once the idle timeout passes.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    os::{fd::FromRawFd as _, unix::net::UnixStream},
    sync::mpsc,
    time::{Duration, Instant},
};

use dutnet::{control::server::CONTROL_LIMITS, dns::TCP_LIMITS};
use dutnet_tests::{
    Netns, cli, cmd,
    lab::{Dut, Lab, config::GATEWAY},
    prereq,
};

/// The DUT address that floods.
const FLOODER: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
/// Another client on the DUT NIC, the one that must still be served.
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);
/// Connections each flood opens.
const FLOOD: usize = 200;

const CONFIG: &str = "\
interface: dn-dut1
upstream_interface: dn-up
dhcp_enabled: false
dns_servers: [\"10.99.0.1\"]
dns_entries:
  - hostname: controller.lab.local
    ip: 10.99.0.5
";

/// The DNS network on `dn-dut1`, its one DUT holding both [`FLOODER`] and
/// [`OTHER`].
fn start() -> Lab {
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).ip(FLOODER))
        .build();
    lab.dut(1).ip(&format!("addr add {OTHER}/24 dev eth0"));
    lab.load(CONFIG);
    // One untimed query first: the timed ones measure the server, not dig
    // starting from a cold page cache (a first run after a build took over
    // a second to load its libraries, more than the bound itself).
    let (answer, _) = dig_tcp_from(&lab, OTHER);
    assert_eq!(
        answer,
        "10.99.0.5",
        "dig +tcp before any flood:\n{}",
        lab.log()
    );
    lab
}

/// `dig +tcp` from `source`: its short answer and how long it took.
fn dig_tcp_from(lab: &Lab, source: Ipv4Addr) -> (String, Duration) {
    let (source, server) = (source.to_string(), format!("@{GATEWAY}"));
    let args = [
        "+tcp",
        "+short",
        "+tries=1",
        "+time=2",
        "-b",
        &source,
        &server,
        "controller.lab.local",
    ];
    let started = Instant::now();
    let out = lab.dut(1).exec("dig", &args);
    (out.stdout.trim().to_owned(), started.elapsed())
}

/// The peer address of each TCP connection the DNS server holds open
/// (`ss` in the exporter: what the server side really has).
fn dns_connection_peers(lab: &Lab) -> Vec<Ipv4Addr> {
    let out = lab
        .exporter
        .exec("ss", &["-Htn", "state", "established", "( sport = :53 )"])
        .ok();
    out.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().last()?.split(':').next()?.parse().ok())
        .collect()
}

/// A TCP connection to `server` from `source`, an address of the namespace
/// the calling thread is in. std cannot bind before connecting, so the
/// socket is made with libc and handed to std.
fn connect_from(source: Ipv4Addr, server: SocketAddrV4) -> std::io::Result<TcpStream> {
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a plain socket call; the descriptor is owned by the TcpStream
    // below, which closes it on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // A bound on connect(): SO_SNDTIMEO applies to it on Linux.
    stream.set_write_timeout(Some(Duration::from_secs(3)))?;
    let (local, remote) = (sockaddr(source, 0), sockaddr(*server.ip(), server.port()));
    // SAFETY: valid socket, pointers to live sockaddr_in values.
    if unsafe { libc::bind(fd, (&raw const local).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&raw const remote).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

/// Opens `count` idle connections from each of `sources`, from `ns`.
fn flood(ns: &Netns, sources: Vec<Ipv4Addr>, count: usize) -> Vec<TcpStream> {
    let server = SocketAddrV4::new(GATEWAY, 53);
    ns.enter(move || {
        let mut streams = Vec::new();
        for source in sources {
            for n in 0..count {
                let stream = connect_from(source, server)
                    .unwrap_or_else(|e| panic!("connection {n} from {source}: {e}"));
                streams.push(stream);
            }
        }
        streams
    })
}

/// How many of `streams` the server has closed (a read gives EOF or a
/// reset rather than "would block").
fn closed<S: std::io::Read>(streams: &mut [S], set_nonblocking: impl Fn(&S)) -> usize {
    let mut byte = [0u8; 1];
    let mut count = 0;
    for stream in streams {
        set_nonblocking(stream);
        count += usize::from(match stream.read(&mut byte) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        });
    }
    count
}

fn closed_tcp(streams: &mut [TcpStream]) -> usize {
    closed(streams, |s| s.set_nonblocking(true).unwrap())
}

fn closed_unix(streams: &mut [UnixStream]) -> usize {
    closed(streams, |s| s.set_nonblocking(true).unwrap())
}

#[test]
fn idle_tcp_connections_of_one_dut_address_do_not_keep_another_from_dns() {
    prereq::require("dig", "dnsutils");
    prereq::require("ss", "iproute2");
    let lab = start();
    let mut idle = flood(lab.dut(1), vec![FLOODER], FLOOD);

    let (answer, took) = dig_tcp_from(&lab, OTHER);
    assert_eq!(answer, "10.99.0.5", "dig +tcp:\n{}", lab.log());
    assert!(took < Duration::from_secs(1), "dig +tcp took {took:?}");
    let peers = dns_connection_peers(&lab);
    let from_flooder = peers.iter().filter(|p| **p == FLOODER).count();
    assert!(
        from_flooder <= TCP_LIMITS.per_client,
        "the server holds {from_flooder} connections of one address"
    );
    let evicted = cmd::wait_for(Duration::from_secs(2), || {
        (closed_tcp(&mut idle) >= FLOOD - TCP_LIMITS.per_client).then_some(())
    });
    assert!(
        evicted.is_some(),
        "{} of {FLOOD} closed",
        closed_tcp(&mut idle)
    );

    // The ones left are closed by the idle timeout.
    let limit = TCP_LIMITS.idle_timeout + Duration::from_secs(2);
    let all = cmd::wait_for(limit, || (closed_tcp(&mut idle) == FLOOD).then_some(()));
    assert!(
        all.is_some(),
        "{} of {FLOOD} closed {limit:?} after they went idle",
        closed_tcp(&mut idle)
    );
}

#[test]
fn idle_tcp_connections_of_many_dut_addresses_do_not_keep_another_from_dns() {
    prereq::require("dig", "dnsutils");
    prereq::require("ss", "iproute2");
    let lab = start();
    // Ten addresses: each below-or-at the per-client cap after evictions,
    // together past the total cap.
    let sources: Vec<Ipv4Addr> = (20..30).map(|n| Ipv4Addr::new(192, 168, 100, n)).collect();
    for source in &sources {
        lab.dut(1).ip(&format!("addr add {source}/24 dev eth0"));
    }
    let _idle = flood(lab.dut(1), sources, FLOOD / 10);

    let (answer, took) = dig_tcp_from(&lab, OTHER);
    assert_eq!(answer, "10.99.0.5", "dig +tcp:\n{}", lab.log());
    assert!(took < Duration::from_secs(1), "dig +tcp took {took:?}");
    let total = dns_connection_peers(&lab).len();
    assert!(
        total <= TCP_LIMITS.total,
        "the server holds {total} connections"
    );
}

/// Makes room for `needed` more file descriptors in this process.
fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a live rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit);
        if limit.rlim_cur < needed + 256 {
            limit.rlim_cur = limit.rlim_max.min(needed + 256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

#[test]
fn a_thousand_idle_control_connections_do_not_keep_dutnet_status_out() {
    const IDLE: usize = 1000;
    let lab = start();
    raise_fd_limit(IDLE as u64);
    let socket = lab.topology.path("run").join("dutnet.sock");
    // connect() blocks while the listen backlog is full: bounded by a
    // thread and a deadline instead.
    let (done, opened) = mpsc::channel();
    std::thread::spawn(move || {
        let streams: std::io::Result<Vec<UnixStream>> =
            (0..IDLE).map(|_| UnixStream::connect(&socket)).collect();
        let _ = done.send(streams);
    });
    let mut idle = opened
        .recv_timeout(Duration::from_secs(60))
        .expect("1000 connections not open within 60 s")
        .expect("connecting to the control socket");

    let started = Instant::now();
    let status = cli::run(&lab.topology, &lab.exporter, &["status", "--json"]);
    assert!(
        status.success() && status.stdout.contains("dn-dut1"),
        "{status:#?}\n{}",
        lab.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "dutnet status took {:?}",
        started.elapsed()
    );
    let evicted = cmd::wait_for(Duration::from_secs(2), || {
        (closed_unix(&mut idle) >= IDLE - CONTROL_LIMITS.per_client).then_some(())
    });
    assert!(
        evicted.is_some(),
        "{} of {IDLE} closed",
        closed_unix(&mut idle)
    );

    let limit = CONTROL_LIMITS.idle_timeout + Duration::from_secs(2);
    let all = cmd::wait_for(limit, || (closed_unix(&mut idle) == IDLE).then_some(()));
    assert!(
        all.is_some(),
        "{} of {IDLE} closed {limit:?} after they went idle",
        closed_unix(&mut idle)
    );
}
