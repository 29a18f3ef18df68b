//! dutnet's DNS server as a DUT sees it: real `dig` in a DUT namespace asks
//! the gateway (192.168.100.1), and a real dnsmasq in the lab-LAN namespace
//! (10.99.0.1) is the upstream, its query log telling what was forwarded.
//!
//! Most tests run the `dutnet load` daemon. The daemon has no control
//! socket yet, so runtime record removal and the malformed-query counters
//! are checked on an in-process `dutnet::dns::DnsServer` started inside the
//! exporter namespace, with the same topology and the same clients.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use dutnet::dns::{DnsConfig, DnsServer};
use dutnet_tests::{
    cmd,
    lab::{
        Dut, Lab,
        config::{DUT_IP, GATEWAY, LAN_IP, Network},
    },
    prereq,
    upstream_dns::{self, BIG, BIG_COUNT, Dnsmasq, ONLY_UPSTREAM, ONLY_UPSTREAM_IP},
};

/// An address inside the LAN subnet that nobody holds. A permanent
/// neighbour entry sends its packets to a MAC nobody has, so they vanish
/// without an ARP wait or an ICMP error: a dead resolver.
const BLACKHOLE: &str = "10.99.0.9";
/// `dns_timeout` of the labs that wait on a dead upstream.
const DNS_TIMEOUT: Duration = Duration::from_secs(1);

/// Namespaces: an exporter with the upstream `dn-up` (10.99.0.2) to the LAN
/// ([`LAN_IP`]) and the DUT NIC `dn-dut1` to one DUT ([`DUT_IP`]); no
/// daemon yet.
fn net() -> Lab {
    prereq::require("dig", "dnsutils");
    let lab = Lab::builder().upstream().dut(Dut::on(1).ip(DUT_IP)).build();
    lab.exporter.ip(&format!(
        "neigh replace {BLACKHOLE} lladdr 02:00:00:00:99:09 dev dn-up nud permanent"
    ));
    lab
}

fn dnsmasq(lab: &Lab) -> Dnsmasq {
    Dnsmasq::start(lab.lan(), LAN_IP, &lab.topology.dir)
}

/// `dig @gateway <args>` from the DUT, with one try of `wait` seconds.
fn dig_for(lab: &Lab, args: &[&str], wait: u32) -> Dig {
    let (time, server) = (format!("+time={wait}"), format!("@{GATEWAY}"));
    let mut all = vec!["+tries=1", time.as_str(), server.as_str()];
    all.extend(args);
    let started = Instant::now();
    let out = lab.dut(1).exec("dig", &all);
    let took = started.elapsed();
    Dig::parse(out.stdout, took)
}

/// `dig` with a 3 s wait.
fn dig(lab: &Lab, args: &[&str]) -> Dig {
    dig_for(lab, args, 3)
}

/// What dig printed, picked apart.
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    /// The answer section: (name, ttl, type, data).
    answers: Vec<(String, u32, String, String)>,
    /// `UDP` or `TCP`: how the answer dig printed came.
    transport: String,
    took: Duration,
    text: String,
}

impl Dig {
    fn parse(text: String, took: Duration) -> Self {
        let after = |prefix: &str| {
            text.lines()
                .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_owned()))
                .unwrap_or_default()
        };
        let status = after("status: ")
            .split(',')
            .next()
            .unwrap_or_default()
            .to_owned();
        let flags = after(";; flags: ")
            .split(';')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let transport = after(";; SERVER: ")
            .rsplit('(')
            .next()
            .unwrap_or_default()
            .trim_end_matches(')')
            .to_owned();
        let answers = text
            .lines()
            .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f.as_slice() {
                    [name, ttl, "IN", rtype, data] => Some((
                        (*name).to_owned(),
                        ttl.parse().ok()?,
                        (*rtype).to_owned(),
                        (*data).to_owned(),
                    )),
                    _ => None,
                }
            })
            .collect();
        Self {
            status,
            flags,
            answers,
            transport,
            took,
            text,
        }
    }

    /// The data of every answer record of type `rtype`.
    fn data(&self, rtype: &str) -> Vec<&str> {
        self.answers
            .iter()
            .filter(|a| a.2 == rtype)
            .map(|a| a.3.as_str())
            .collect()
    }

    #[track_caller]
    fn assert_answer(&self, status: &str, rtype: &str, data: &[&str]) {
        assert_eq!(
            (self.status.as_str(), self.data(rtype)),
            (status, data.to_vec()),
            "unexpected answer:\n{}",
            self.text
        );
    }
}

/// Starts the daemon for one network with these `dns_servers` and waits
/// until it is up. The network has a custom record and a static DUT.
fn start(dns_servers: &[&str]) -> Lab {
    let mut lab = net();
    let servers: Vec<String> = dns_servers.iter().map(|s| format!("\"{s}\"")).collect();
    let config = Network::services().set(&format!(
        "dns_servers: [{}]
dns_timeout: {}ms
dns_entries:
  - hostname: controller.lab.local
    ip: 10.99.0.5",
        servers.join(", "),
        DNS_TIMEOUT.as_millis(),
    ));
    lab.load(&config.single());
    lab
}

/// dnsmasq may write its log line a moment after answering: wait for the
/// count to reach `expected`, then return what it is.
fn settled_queries(upstream: &Dnsmasq, qtype: &str, qname: &str, expected: usize) -> usize {
    cmd::wait_for(Duration::from_secs(2), || {
        (upstream.queries(qtype, qname) >= expected).then_some(())
    });
    upstream.queries(qtype, qname)
}

#[test]
fn upstream_name_is_forwarded_once_then_cached_and_nxdomain_passes_through() {
    let lab = start(&["10.99.0.1"]);
    let upstream = dnsmasq(&lab);
    let ip = ONLY_UPSTREAM_IP.to_string();

    let first = dig(&lab, &[ONLY_UPSTREAM]);
    first.assert_answer("NOERROR", "A", &[&ip]);
    assert!(!first.flags.contains(&"aa".to_owned()), "{}", first.text);
    assert_eq!(
        settled_queries(&upstream, "A", ONLY_UPSTREAM, 1),
        1,
        "forwarded once:\n{}",
        upstream.log()
    );

    let second = dig(&lab, &[ONLY_UPSTREAM]);
    second.assert_answer("NOERROR", "A", &[&ip]);
    assert!(second.answers[0].1 <= upstream_dns::TTL, "{}", second.text);
    // Give a stray forward the time to reach the log before counting.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        upstream.queries("A", ONLY_UPSTREAM),
        1,
        "the second query within the TTL came from the cache:\n{}",
        upstream.log()
    );

    let nx = dig(&lab, &["nx.upstream.test"]);
    nx.assert_answer("NXDOMAIN", "A", &[]);
    assert_eq!(settled_queries(&upstream, "A", "nx.upstream.test", 1), 1);
}

#[test]
fn local_names_and_their_ptrs_resolve_and_aaaa_of_a_local_name_is_nodata() {
    let lab = start(&["10.99.0.1"]);
    let upstream = dnsmasq(&lab);

    let dut_ip = DUT_IP.to_string();
    for (name, ip) in [
        ("controller.lab.local", "10.99.0.5"),
        ("board1.lab.local", &dut_ip),
        ("board1", &dut_ip),
    ] {
        let dig = dig(&lab, &[name]);
        dig.assert_answer("NOERROR", "A", &[ip]);
        assert!(dig.flags.contains(&"aa".to_owned()), "{}", dig.text);
    }
    dig(&lab, &["-x", "10.99.0.5"]).assert_answer("NOERROR", "PTR", &["controller.lab.local."]);
    dig(&lab, &["-x", &dut_ip]).assert_answer("NOERROR", "PTR", &["board1.lab.local."]);

    let aaaa = dig(&lab, &["AAAA", "board1.lab.local"]);
    aaaa.assert_answer("NOERROR", "AAAA", &[]);
    assert!(aaaa.answers.is_empty(), "{}", aaaa.text);
    let aaaa = dig(&lab, &["AAAA", "controller.lab.local"]);
    aaaa.assert_answer("NOERROR", "AAAA", &[]);

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        upstream.all_queries(),
        Vec::<String>::new(),
        "local names never reach the upstream"
    );
}

#[test]
fn large_upstream_answer_is_truncated_over_udp_and_comes_whole_over_tcp() {
    let lab = start(&["10.99.0.1"]);
    let upstream = dnsmasq(&lab);

    // dig's own retry over TCP is off: what came over UDP is shown as is.
    let udp = dig(&lab, &["+ignore", BIG]);
    assert_eq!(udp.status, "NOERROR", "{}", udp.text);
    assert!(udp.flags.contains(&"tc".to_owned()), "TC set: {}", udp.text);
    assert_eq!(udp.transport, "UDP", "{}", udp.text);
    assert!(udp.answers.len() < BIG_COUNT, "{}", udp.text);

    let tcp = dig(&lab, &[BIG]);
    assert_eq!(tcp.status, "NOERROR", "{}", tcp.text);
    assert!(
        tcp.text.contains("Truncated, retrying in TCP mode"),
        "{}",
        tcp.text
    );
    assert_eq!(tcp.transport, "TCP", "{}", tcp.text);
    assert!(!tcp.flags.contains(&"tc".to_owned()), "{}", tcp.text);
    let mut got = tcp.data("A");
    got.sort_unstable();
    let mut want: Vec<String> = (1..=BIG_COUNT).map(|i| format!("10.99.1.{i}")).collect();
    want.sort_unstable();
    assert_eq!(got, want, "all {BIG_COUNT} records over TCP");

    // dnsmasq truncated its UDP answer to dutnet too: dutnet asked it again
    // over TCP, then served the whole answer from its cache.
    assert_eq!(
        settled_queries(&upstream, "A", BIG, 2),
        2,
        "once over UDP, once over TCP:\n{}",
        upstream.log()
    );
}

#[test]
fn dead_upstream_gives_servfail_within_the_timeout_and_the_second_server_takes_over() {
    let lab = start(&[BLACKHOLE, "10.99.0.1"]);

    // Both dead: the blackhole never answers, 10.99.0.1 has no resolver yet.
    let dead = dig(&lab, &[ONLY_UPSTREAM]);
    dead.assert_answer("SERVFAIL", "A", &[]);
    assert!(
        dead.took >= DNS_TIMEOUT - Duration::from_millis(100),
        "SERVFAIL before the timeout ran out: {:?}",
        dead.took
    );
    assert!(
        dead.took < DNS_TIMEOUT + Duration::from_millis(700),
        "SERVFAIL not within the timeout: {:?}\n{}",
        dead.took,
        lab.log()
    );

    // The first server stays dead; the second answers once it is asked,
    // halfway through the budget. The SERVFAIL was not cached.
    let upstream = dnsmasq(&lab);
    let failover = dig(&lab, &[ONLY_UPSTREAM]);
    failover.assert_answer("NOERROR", "A", &[&ONLY_UPSTREAM_IP.to_string()]);
    assert!(
        failover.took >= DNS_TIMEOUT / 2 - Duration::from_millis(100),
        "the first server was not waited for: {:?}",
        failover.took
    );
    assert!(
        failover.took < DNS_TIMEOUT,
        "failover not within the timeout: {:?}",
        failover.took
    );
    assert_eq!(settled_queries(&upstream, "A", ONLY_UPSTREAM, 1), 1);
}

/// A `DnsServer` of the dutnet library on the gateway address in the
/// exporter namespace, forwarding to the LAN's dnsmasq. `body` runs on a
/// thread inside the exporter namespace, with the server running.
fn with_in_process_server(body: impl FnOnce(&Lab, &DnsServer) + Send + 'static) {
    let net = net();
    net.exporter
        .ip(&format!("addr add {GATEWAY}/24 dev dn-dut1"));
    let exporter = net.exporter.clone();
    let net = exporter.enter(move || {
        // Worker threads start here, so sockets the server opens later
        // (one per forwarded query) belong to this namespace too.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime
            .block_on(DnsServer::start(DnsConfig {
                network: "acceptance".into(),
                interface: "dn-dut1".into(),
                listen: GATEWAY,
                port: 53,
                upstreams: vec![SocketAddr::from((LAN_IP, 53))],
                timeout: DNS_TIMEOUT,
                domain: Some("lab.local".into()),
                entries: vec![("controller.lab.local".into(), Ipv4Addr::new(10, 99, 0, 5))],
                hosts: vec![("board1".into(), DUT_IP)],
            }))
            .unwrap();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&net, &server)));
        runtime.block_on(server.shutdown());
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        net
    });
    drop(net);
}

#[test]
fn a_record_removed_at_runtime_stops_resolving_on_the_next_query() {
    with_in_process_server(|net, server| {
        let upstream = dnsmasq(net);
        let name = "printer.lab.local";
        server
            .add_entry(name, Ipv4Addr::new(10, 99, 0, 42))
            .unwrap();
        dig_for(net, &[name], 2).assert_answer("NOERROR", "A", &["10.99.0.42"]);
        dig_for(net, &["-x", "10.99.0.42"], 2).assert_answer(
            "NOERROR",
            "PTR",
            &["printer.lab.local."],
        );

        server.remove_entry(name).unwrap();
        let gone = dig_for(net, &[name], 2);
        // Not ours any more: the upstream says it does not exist.
        gone.assert_answer("NXDOMAIN", "A", &[]);
        assert_eq!(settled_queries(&upstream, "A", name, 1), 1);
        assert_eq!(
            server.entries(),
            vec![(
                "controller.lab.local".to_owned(),
                Ipv4Addr::new(10, 99, 0, 5)
            )]
        );
    });
}

/// A query for `controller.lab.local` A with id 0xbeef, RD set.
fn raw_query() -> Vec<u8> {
    let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["controller", "lab", "local"] {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn malformed_queries_are_counted_and_ignored_while_dig_still_gets_answers() {
    with_in_process_server(|net, server| {
        let upstream = dnsmasq(net);
        let socket = net.dut(1).enter(|| {
            let socket = UdpSocket::bind((DUT_IP, 0)).unwrap();
            socket.connect((GATEWAY, 53)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            socket
        });
        let ask = |bytes: &[u8]| -> Option<Vec<u8>> {
            socket.send(bytes).unwrap();
            let mut buf = [0u8; 1500];
            socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
        };
        // The well-formed query is answered: the socket path works.
        let ok = ask(&raw_query()).expect("an answer to a valid query");
        assert_eq!((ok[3] & 0x0f, &ok[..2]), (0, &[0xbe, 0xef][..]));

        // No full header: nothing to answer to.
        let truncated_header = &raw_query()[..7];
        assert_eq!(ask(truncated_header), None, "a 7-byte message is dropped");
        // A response (QR=1) is never answered: no reflection loops.
        let mut response = raw_query();
        response[2] |= 0x80;
        assert_eq!(ask(&response), None, "a response is dropped");

        let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        garbage.extend((0u8..40).map(|i| i.wrapping_mul(97) | 0xc0));
        let mut qdcount_lie = raw_query();
        qdcount_lie[5] = 5;
        let mut huge_label = raw_query()[..12].to_vec();
        huge_label.push(200);
        huge_label.extend(std::iter::repeat_n(b'a', 200));
        huge_label.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut too_long_name = raw_query()[..12].to_vec();
        for _ in 0..5 {
            too_long_name.push(63);
            too_long_name.extend(std::iter::repeat_n(b'b', 63));
        }
        too_long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
        let formerr = [
            ("garbage after the header", garbage),
            ("QDCOUNT 5 with one question", qdcount_lie),
            ("a 200-byte label", huge_label),
            ("a 320-byte name", too_long_name),
        ];
        for (what, bytes) in &formerr {
            let reply = ask(bytes).unwrap_or_else(|| panic!("no FORMERR for {what}"));
            assert_eq!(
                &reply[..2],
                &bytes[..2],
                "{what}: reply under the query's id"
            );
            assert_eq!(reply[2] & 0x80, 0x80, "{what}: QR set");
            assert_eq!(reply[3] & 0x0f, 1, "{what}: rcode FORMERR");
        }

        dig_for(net, &["controller.lab.local"], 2).assert_answer("NOERROR", "A", &["10.99.0.5"]);
        dig_for(net, &[ONLY_UPSTREAM], 2).assert_answer(
            "NOERROR",
            "A",
            &[&ONLY_UPSTREAM_IP.to_string()],
        );

        let c = server.counters();
        assert_eq!(c.dropped_malformed, 1, "{c:?}");
        assert_eq!(c.dropped_responses, 1, "{c:?}");
        assert_eq!(c.formerr, formerr.len() as u64, "{c:?}");
        // The valid raw query, the FORMERRs and the two digs; drops are not
        // queries.
        assert_eq!(c.queries, 1 + formerr.len() as u64 + 2, "{c:?}");
        assert_eq!((c.local_answers, c.forwarded), (2, 1), "{c:?}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            upstream.all_queries().len(),
            1,
            "only dig's forwarded query reached the upstream:\n{}",
            upstream.log()
        );
    });
}
