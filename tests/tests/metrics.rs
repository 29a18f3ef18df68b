//! `dutnet load --metrics-listen`: a Prometheus scrape while a DUT sends
//! traffic and its DHCP client renews. The counters a fleet monitor
//! alerts on move, and the exposition passes the official Python client's
//! OpenMetrics parser.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use dutnet_tests::{
    clients::Dhclient,
    lab::{Dut, Lab},
    nat::{DUT_IP, GATEWAY, LAN_IP},
    prereq,
    upstream_dns::{Dnsmasq, ONLY_UPSTREAM, ONLY_UPSTREAM_IP},
};

const LISTEN: &str = "127.0.0.1:9464";
/// The DUT's MAC, given [`DUT_IP`] and a host name in `addresses`.
const DUT_MAC: &str = "02:00:00:00:09:01";
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// `GET /metrics` from inside the exporter (the endpoint is on its
/// loopback); the body of a 200 answer.
fn scrape(lab: &Lab) -> String {
    let answer = lab.exporter.enter(|| {
        let mut stream = TcpStream::connect(LISTEN).expect("connect to the metrics endpoint");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}\n{body}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    body.to_owned()
}

/// The value of the sample whose name and labels are `series` exactly.
fn value(text: &str, series: &str) -> u64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// [`value`], `None` when there is no such series (yet).
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The exposition through `prometheus_client.openmetrics.parser` (strict:
/// a malformed line, a bad type or a missing `# EOF` raises); the number of
/// families it read.
fn parse_with_the_python_client(lab: &Lab, text: &str) -> usize {
    let path = lab.topology.path("metrics.txt");
    std::fs::write(&path, text).unwrap();
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(open(sys.argv[1]).read()))\n\
        print(len(families))\n";
    // The Debian package installs the module for the system interpreter,
    // not for a python3 that another install put first in PATH.
    let out = lab
        .lan()
        .exec(SYSTEM_PYTHON, &["-c", script, &path.display().to_string()]);
    assert!(
        out.success(),
        "the parser refused the exposition: {out:#?}\n{text}"
    );
    out.stdout.trim().parse().unwrap()
}

#[test]
fn a_scrape_shows_dut_traffic_and_dhcp_renewals_and_parses() {
    prereq::require("dhclient", "isc-dhcp-client");
    prereq::require("ping", "iputils-ping");
    prereq::require("dig", "dnsutils");
    assert!(
        std::path::Path::new(SYSTEM_PYTHON).is_file(),
        "{SYSTEM_PYTHON} is missing: run `cargo xtask setup` (python3-prometheus-client)"
    );
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).ip(DUT_IP).routed().mac(DUT_MAC))
        .build();
    let config = lab.nat_config(|_| {
        format!("datapath: ebpf\ndhcp_enabled: true\ndhcp_range_start: 192.168.100.100\ndhcp_range_end: 192.168.100.200\ndns_servers: [\"{LAN_IP}\"]\naddresses:\n  - {{ip: {DUT_IP}, mac: \"{DUT_MAC}\", hostname: board1}}\n")
    });
    lab.write_config(&config);
    lab.start_with(&["--metrics-listen", LISTEN]);
    let client = Dhclient::new(&lab.duts[0], "eth0", &lab.topology.dir, "dut1", "");
    let first = client.run();
    assert!(
        client.address().is_some(),
        "no lease: {first:#?}\n{}",
        lab.log()
    );

    let before = scrape(&lab);
    let nic = r#"network="dut1",interface="dn-dut1""#;
    let from_dut = format!(r#"dutnet_packets_total{{{nic},direction="from_dut"}}"#);
    let nat_out = format!(r#"dutnet_packets_total{{{nic},direction="nat_out"}}"#);
    let requests = r#"dutnet_dhcp_received_total{network="dut1",type="request"}"#;
    let acks = r#"dutnet_dhcp_replies_total{network="dut1",type="ack"}"#;
    let dut = format!(r#"{nic},address="{DUT_IP}",mac="{DUT_MAC}",hostname="board1""#);
    let dut_sent = format!(r#"dutnet_dut_packets_total{{{dut},direction="from_dut"}}"#);
    let dut_received = format!(r#"dutnet_dut_packets_total{{{dut},direction="to_dut"}}"#);
    let dut_bytes = format!(r#"dutnet_dut_bytes_total{{{dut},direction="from_dut"}}"#);

    let ping = lab.duts[0].exec(
        "ping",
        &["-c", "5", "-i", "0.2", "-W", "2", &LAN_IP.to_string()],
    );
    assert!(ping.success(), "{ping:#?}\n{}", lab.report());
    // A reverse lookup of the DUT, answered by dutnet from its zone.
    let dig = lab.duts[0].exec(
        "dig",
        &[
            "+time=3",
            "+tries=1",
            &format!("@{GATEWAY}"),
            "-x",
            &DUT_IP.to_string(),
        ],
    );
    assert!(dig.success(), "{dig:#?}\n{}", lab.log());
    // A name only the LAN's resolver knows: forwarded, its answer timed.
    let _upstream = Dnsmasq::start(lab.lan(), LAN_IP, &lab.topology.dir);
    let dig = lab.duts[0].exec(
        "dig",
        &[
            "+time=3",
            "+tries=1",
            "+short",
            &format!("@{GATEWAY}"),
            ONLY_UPSTREAM,
        ],
    );
    assert_eq!(
        dig.stdout.trim(),
        ONLY_UPSTREAM_IP.to_string(),
        "{dig:#?}\n{}",
        lab.log()
    );
    // A second run remembers the lease: a REQUEST for the same address.
    let renew = client.run();
    assert!(renew.success(), "{renew:#?}\n{}", lab.log());
    let after = scrape(&lab);

    assert!(
        value(&after, &from_dut) >= value(&before, &from_dut) + 5,
        "{before}\n---\n{after}"
    );
    assert!(
        value(&after, &nat_out) >= value(&before, &nat_out) + 5,
        "{after}"
    );
    // The DUT's own series, named by its lease: its 5 echo requests (and
    // the DNS queries) from it, the 5 replies the fast path delivered.
    assert!(
        value(&after, &dut_sent) >= sample(&before, &dut_sent).unwrap_or(0) + 5,
        "{before}\n---\n{after}"
    );
    assert!(
        value(&after, &dut_received) >= sample(&before, &dut_received).unwrap_or(0) + 5,
        "{before}\n---\n{after}"
    );
    assert!(
        value(&after, &dut_bytes) >= sample(&before, &dut_bytes).unwrap_or(0) + 5 * 98,
        "{after}"
    );
    assert!(
        value(&after, requests) > value(&before, requests),
        "{before}\n---\n{after}"
    );
    assert!(value(&after, acks) >= 2, "{after}");
    assert_eq!(
        value(&after, r#"dutnet_dhcp_leases{network="dut1"}"#),
        1,
        "{after}"
    );
    assert_eq!(
        value(&after, r#"dutnet_dhcp_pool_size{network="dut1"}"#),
        101,
        "{after}"
    );
    assert!(
        value(&after, &format!("dutnet_flow_budget{{{nic}}}")) > 0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            r#"dutnet_network_datapath{network="dut1",datapath="ebpf"}"#
        ),
        1,
        "{after}"
    );
    assert!(
        value(
            &after,
            r#"dutnet_dns_queries_by_type_total{network="dut1",type="ptr"}"#
        ) >= 1,
        "{after}"
    );
    let answered = r#"dutnet_dns_upstream_seconds_count{network="dut1"}"#;
    assert_eq!(value(&after, answered), 1, "{after}");
    assert_eq!(
        value(
            &after,
            r#"dutnet_dns_upstream_seconds_bucket{le="+Inf",network="dut1"}"#
        ),
        1,
        "{after}"
    );
    assert!(after.contains("dutnet_build_info{version="), "{after}");
    assert!(after.contains("dutnet_uptime_seconds "), "{after}");

    assert!(parse_with_the_python_client(&lab, &after) >= 15, "{after}");
}

#[test]
fn nothing_listens_without_metrics_listen() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on("ebpf", "");
    let refused = lab
        .exporter
        .enter(|| TcpStream::connect(LISTEN).map(|_| ()).map_err(|e| e.kind()));
    assert_eq!(
        refused,
        Err(std::io::ErrorKind::ConnectionRefused),
        "{}",
        lab.log()
    );
}
