//! End-to-end tests of [`DnsServer`] on loopback only: the server binds
//! 127.0.0.1 on `lo`, and fake upstreams are UDP/TCP tasks on 127.0.0.1
//! answering from a fixed table and counting what they get.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::*;
use crate::dns::fixtures::{
    CONTROLLER, CONTROLLER_IP, DUT1, DUT1_IP, example_soa, name, query_msg,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const WWW_IP: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

/// How a fake upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers from the table.
    Answer,
    /// Receives and counts, never answers (a dead resolver).
    Silent,
    /// Sends a wrong-id answer with a bogus address first, then the real one.
    SpoofFirst,
    /// Answers over UDP with TC and no records; answers whole over TCP.
    TruncateUdp,
}

struct FakeUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The fake upstream's table.
fn fake_answer(query: &Message) -> Message {
    let mut r = Message::response(query.metadata.id, OpCode::Query);
    r.metadata.recursion_available = true;
    r.metadata.recursion_desired = query.metadata.recursion_desired;
    r.queries = query.queries.clone();
    let q = &query.queries[0];
    let qname = q.name().to_ascii().to_ascii_lowercase();
    let a = |ip: Ipv4Addr, ttl: u32| Record::from_rdata(q.name().clone(), ttl, RData::A(A(ip)));
    match (qname.as_str(), q.query_type()) {
        ("www.example.com.", RecordType::A) => {
            r.add_answer(a(WWW_IP, 300));
        }
        ("big.example.", RecordType::A) => {
            for i in 0..40 {
                r.add_answer(a(Ipv4Addr::new(10, 0, 1, i), 300));
            }
        }
        ("fail.example.", _) => r.metadata.response_code = ResponseCode::ServFail,
        _ => {
            r.metadata.response_code = ResponseCode::NXDomain;
            r.add_authority(example_soa(300, 30));
        }
    }
    r
}

async fn fake_upstream(mode: Mode) -> FakeUpstream {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&queries);
    let udp = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = fake_answer(&query);
            match mode {
                Mode::Silent => continue,
                Mode::Answer => {}
                Mode::SpoofFirst => {
                    let mut spoof = reply.clone();
                    spoof.metadata.id = spoof.metadata.id.wrapping_add(1);
                    for rec in &mut spoof.answers {
                        rec.data = RData::A(A(Ipv4Addr::new(6, 6, 6, 6)));
                    }
                    socket
                        .send_to(&spoof.to_vec().unwrap(), peer)
                        .await
                        .unwrap();
                }
                Mode::TruncateUdp => {
                    reply.metadata.truncation = true;
                    reply.answers.clear();
                    reply.authorities.clear();
                }
            }
            socket
                .send_to(&reply.to_vec().unwrap(), peer)
                .await
                .unwrap();
        }
    });
    let mut tasks = vec![udp];
    if mode == Mode::TruncateUdp {
        let listener = TcpListener::bind(addr).await.unwrap();
        tasks.push(tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    continue;
                }
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut buf).await.is_err() {
                    continue;
                }
                let query = Message::from_vec(&buf).unwrap();
                let reply = fake_answer(&query).to_vec().unwrap();
                let mut out = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                let _ = stream.write_all(&out).await;
            }
        }));
    }
    FakeUpstream {
        addr,
        queries,
        tasks,
    }
}

fn config(upstreams: Vec<SocketAddr>, timeout: Duration) -> DnsConfig {
    DnsConfig {
        network: "test".into(),
        interface: "lo".into(),
        listen: Ipv4Addr::LOCALHOST,
        port: 0,
        upstreams,
        timeout,
        domain: Some("lab".into()),
        entries: vec![(CONTROLLER.into(), CONTROLLER_IP)],
        hosts: vec![(DUT1.into(), DUT1_IP)],
    }
}

async fn start(upstreams: Vec<SocketAddr>, timeout: Duration) -> DnsServer {
    DnsServer::start(config(upstreams, timeout)).await.unwrap()
}

/// A fake upstream in `mode`, a server forwarding to it alone with a 2 s
/// budget, and the server's address.
async fn serve_with(mode: Mode) -> (FakeUpstream, DnsServer, SocketAddrV4) {
    let up = fake_upstream(mode).await;
    let server = start(vec![up.addr], Duration::from_secs(2)).await;
    let addr = server.local_addr();
    (up, server, addr)
}

fn query(qname: &str, qtype: RecordType, edns_payload: Option<u16>) -> Message {
    let mut m = query_msg(qname, qtype);
    // A fresh random id per query, as a real stub uses.
    m.metadata.id = Message::query().metadata.id;
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        m.set_edns(edns);
    }
    m
}

async fn udp_raw(server: SocketAddrV4, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn udp(server: SocketAddrV4, q: &Message) -> (Message, usize) {
    let bytes = udp_raw(server, &q.to_vec().unwrap(), CLIENT_TIMEOUT)
        .await
        .expect("no UDP answer");
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id, "answer under the client's id");
    assert_eq!(m.queries, q.queries, "answer echoes the client's question");
    (m, bytes.len())
}

/// Asks `www.example.com. A` over UDP without EDNS.
async fn ask_www(server: SocketAddrV4) -> Message {
    udp(server, &query("www.example.com.", RecordType::A, None))
        .await
        .0
}

async fn tcp_exchange(stream: &mut TcpStream, q: &Message) -> Message {
    let bytes = q.to_vec().unwrap();
    let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    stream.write_all(&out).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(CLIENT_TIMEOUT, stream.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some(ip),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn forwards_then_serves_from_cache() {
    let (up, server, addr) = serve_with(Mode::Answer).await;

    let m = ask_www(addr).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![WWW_IP]);
    assert!(!m.metadata.authoritative);
    assert_eq!(up.count(), 1);

    let (m, _) = udp(addr, &query("WWW.example.COM.", RecordType::A, None)).await;
    assert_eq!(a_records(&m), vec![WWW_IP]);
    assert!(m.answers[0].ttl <= 300);
    assert_eq!(
        up.count(),
        1,
        "second query within TTL comes from the cache"
    );

    // NXDOMAIN passes through (and is negatively cached).
    let (m, _) = udp(addr, &query("nope.example.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let (m, _) = udp(addr, &query("nope.example.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.count(), 2);

    // Upstream SERVFAIL passes through and is not cached.
    let (m, _) = udp(addr, &query("fail.example.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let _ = udp(addr, &query("fail.example.", RecordType::A, None)).await;
    assert_eq!(up.count(), 4);

    let c = server.counters();
    assert_eq!(c.queries, 6);
    assert_eq!(c.forwarded, 4);
    assert_eq!(c.cache_hits, 2);
    assert_eq!(c.servfail, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn local_names_and_runtime_changes() {
    let (_up, server, addr) = serve_with(Mode::Answer).await;

    let (m, _) = udp(addr, &query("Controller.Lab.Local.", RecordType::A, None)).await;
    assert!(m.metadata.authoritative);
    assert_eq!(a_records(&m), vec![CONTROLLER_IP]);
    let (m, _) = udp(addr, &query("dut1.lab.", RecordType::A, None)).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 168, 100, 10)]);
    let (m, _) = udp(addr, &query("dut1.", RecordType::AAAA, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let (m, _) = udp(
        addr,
        &query("1.0.0.10.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(
        m.answers[0].data,
        RData::PTR(hickory_proto::rr::rdata::PTR(name("controller.lab.local.")))
    );

    server
        .add_entry("new.lab.local", Ipv4Addr::new(10, 0, 0, 7))
        .unwrap();
    let (m, _) = udp(addr, &query("new.lab.local.", RecordType::A, None)).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 0, 0, 7)]);
    assert_eq!(server.entries().len(), 2);
    server.remove_entry("NEW.lab.local").unwrap();
    assert!(matches!(
        server.remove_entry("new.lab.local"),
        Err(DnsError::NotFound { .. })
    ));
    let (m, _) = udp(addr, &query("new.lab.local.", RecordType::A, None)).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "forwarded now"
    );
    assert!(server.add_entry("bad name", Ipv4Addr::LOCALHOST).is_err());

    server.set_dynamic_hosts(vec![("rpi".into(), Ipv4Addr::new(192, 168, 100, 50))]);
    let (m, _) = udp(addr, &query("rpi.lab.", RecordType::A, None)).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 168, 100, 50)]);
    server.set_dynamic_hosts(vec![]);
    server.set_static_hosts(vec![("dut2".into(), Ipv4Addr::new(192, 168, 100, 11))]);
    let (m, _) = udp(addr, &query("dut2.", RecordType::A, None)).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 168, 100, 11)]);
    let (m, _) = udp(addr, &query("dut1.", RecordType::A, None)).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "dut1 replaced"
    );

    assert_eq!(server.counters().local_answers, 7);
    server.shutdown().await;
}

#[tokio::test]
async fn dead_upstream_gives_servfail_within_the_budget() {
    let dead = fake_upstream(Mode::Silent).await;
    let budget = Duration::from_millis(400);
    let server = start(vec![dead.addr], budget).await;
    let started = Instant::now();
    let m = ask_www(server.local_addr()).await;
    let took = started.elapsed();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(took >= budget, "gave up early: {took:?}");
    assert!(
        took < budget + Duration::from_millis(500),
        "too slow: {took:?}"
    );
    assert_eq!(dead.count(), 1);
    assert_eq!(server.counters().servfail, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn fails_over_to_the_second_upstream() {
    let dead = fake_upstream(Mode::Silent).await;
    let good = fake_upstream(Mode::Answer).await;
    let budget = Duration::from_secs(1);
    let server = start(vec![dead.addr, good.addr], budget).await;
    let started = Instant::now();
    let m = ask_www(server.local_addr()).await;
    assert_eq!(a_records(&m), vec![WWW_IP]);
    assert!(started.elapsed() < budget, "answered within the budget");
    assert_eq!((dead.count(), good.count()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn closed_upstream_port_fails_over_at_once() {
    // A port nobody listens on: ICMP port unreachable, not a timeout.
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let good = fake_upstream(Mode::Answer).await;
    let budget = Duration::from_secs(4);
    let server = start(vec![closed, good.addr], budget).await;
    let started = Instant::now();
    let m = ask_www(server.local_addr()).await;
    assert_eq!(a_records(&m), vec![WWW_IP]);
    assert!(started.elapsed() < budget / 2, "did not wait for the slice");
    server.shutdown().await;
}

#[tokio::test]
async fn spoofed_answer_with_wrong_id_is_ignored() {
    let (_up, server, addr) = serve_with(Mode::SpoofFirst).await;
    let m = ask_www(addr).await;
    assert_eq!(a_records(&m), vec![WWW_IP]);
    server.shutdown().await;
}

#[tokio::test]
async fn large_answer_truncated_over_udp_whole_over_tcp() {
    let (_up, server, addr) = serve_with(Mode::Answer).await;

    let (m, len) = udp(addr, &query("big.example.", RecordType::A, None)).await;
    assert!(m.metadata.truncation, "TC set");
    assert!(m.answers.is_empty());
    assert!(len <= 512);

    let (m, len) = udp(addr, &query("big.example.", RecordType::A, Some(1232))).await;
    assert!(!m.metadata.truncation, "fits the EDNS payload size");
    assert_eq!(m.answers.len(), 40);
    assert!(len > 512 && len <= 1232);
    assert!(m.edns.is_some(), "OPT answered with OPT");

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let m = tcp_exchange(&mut stream, &query("big.example.", RecordType::A, None)).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    // Several queries on one connection.
    let m = tcp_exchange(
        &mut stream,
        &query("controller.lab.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(a_records(&m), vec![CONTROLLER_IP]);
    let m = tcp_exchange(&mut stream, &query("www.example.com.", RecordType::A, None)).await;
    assert_eq!(a_records(&m), vec![WWW_IP]);
    drop(stream);
    server.shutdown().await;
}

#[tokio::test]
async fn truncated_upstream_answer_is_retried_over_tcp() {
    let (_up, server, addr) = serve_with(Mode::TruncateUdp).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let m = tcp_exchange(&mut stream, &query("big.example.", RecordType::A, None)).await;
    assert_eq!(m.answers.len(), 40);
    drop(stream);
    server.shutdown().await;
}

#[tokio::test]
async fn upstream_pointing_at_ourselves_is_skipped_and_refused() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut cfg = config(
        vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
        Duration::from_secs(1),
    );
    cfg.port = port;
    let server = DnsServer::start(cfg).await.unwrap();
    let addr = server.local_addr();
    let m = ask_www(addr).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let (m, _) = udp(addr, &query("controller.lab.local.", RecordType::A, None)).await;
    assert_eq!(m.answers.len(), 1, "local names still answered");
    let c = server.counters();
    assert_eq!((c.refused, c.forwarded), (1, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_dropped_or_formerr_and_server_survives() {
    let (up, server, addr) = serve_with(Mode::Answer).await;
    let short = Duration::from_millis(200);

    assert!(udp_raw(addr, &[0xde, 0xad], short).await.is_none());
    let mut response = query("www.example.com.", RecordType::A, None);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert!(
        udp_raw(addr, &response.to_vec().unwrap(), short)
            .await
            .is_none()
    );

    let mut cut = query("www.example.com.", RecordType::A, None)
        .to_vec()
        .unwrap();
    cut.truncate(cut.len() - 2);
    let reply = udp_raw(addr, &cut, CLIENT_TIMEOUT).await.unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

    // Garbage on TCP does not kill the connection's framing or the server.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let m = tcp_exchange(&mut stream, &query("dut1.", RecordType::A, None)).await;
    assert_eq!(m.answers.len(), 1);

    let m = ask_www(addr).await;
    assert_eq!(a_records(&m), vec![WWW_IP]);
    let c = server.counters();
    assert_eq!(c.dropped_malformed, 2);
    assert_eq!(c.dropped_responses, 1);
    assert_eq!(c.formerr, 1);
    assert_eq!(up.count(), 1, "nothing malformed reached the upstream");
    server.shutdown().await;
}

#[tokio::test]
async fn missing_interface_is_a_clear_error_and_port_is_freed_on_shutdown() {
    let mut cfg = config(vec![], Duration::from_secs(1));
    cfg.interface = "dutnet-nope0".into();
    let err = DnsServer::start(cfg).await.unwrap_err();
    assert!(
        matches!(err, DnsError::Listen { proto: "udp", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("dutnet-nope0"));

    let server = start(vec![], Duration::from_secs(1)).await;
    let addr = server.local_addr();
    server.shutdown().await;
    // Plain sockets without SO_REUSEADDR can take both ports again.
    std::net::UdpSocket::bind(addr).unwrap();
    std::net::TcpListener::bind(addr).unwrap();
}

/// `dig` against the server on loopback, as a real client would. Needs the
/// `dig` binary (package dnsutils/bind9-dnsutils).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dig installed"]
async fn dig_against_loopback() {
    let (_up, server, addr) = serve_with(Mode::Answer).await;
    let dig = |args: Vec<String>| async move {
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("dig").args(&args).output()
        })
        .await
        .unwrap()
        .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = |name: &str, extra: &[&str]| {
        let mut v = vec![
            format!("@{}", addr.ip()),
            "-p".into(),
            addr.port().to_string(),
            "+tries=1".into(),
            "+time=3".into(),
            name.into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let out = dig(base("controller.lab.local", &["+short"])).await;
    assert_eq!(out.trim(), "10.0.0.1");
    let out = dig(base("www.example.com", &["+short"])).await;
    assert_eq!(out.trim(), WWW_IP.to_string());
    // Without EDNS dig gets TC over UDP and retries over TCP by itself.
    let out = dig(base("big.example", &["+noedns", "+short"])).await;
    assert_eq!(out.lines().count(), 40, "{out}");
    let out = dig(base("-x", &["10.0.0.1", "+short"])).await;
    assert_eq!(out.trim(), "controller.lab.local.");
    server.shutdown().await;
}
