//! `dutnet flows`, checked against what the far end saw: a DUT holds a TCP
//! connection open and has had a UDP exchange with the LAN host, and the
//! flows `dutnet flows` lists (run in the exporter, as a user would) must
//! carry the DUT's own addresses and ports, the translated source the LAN
//! host's servers recorded, the right states and packets both ways. On the
//! nft datapath it must send the user to conntrack, and the command it
//! names must list the DUT's flow.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    thread::JoinHandle,
    time::Duration,
};

use dutnet_tests::{
    Output, cli,
    far_end::echo_of,
    lab::Lab,
    nat::{
        DUT_IP, EXPORTER_UP, LAN_IP, NAT_PORTS, REPLY_WAIT, lan_udp_echo, udp_exchange, udp_socket,
    },
    prereq,
};
use serde_json::Value;

const TCP_PORT: u16 = 7001;

/// A TCP connection from DUT 1 to the LAN host, kept open: the DUT's end,
/// the peer the LAN host saw, and the server thread (it returns when the
/// DUT closes).
struct OpenConnection {
    stream: TcpStream,
    seen: SocketAddr,
    server: JoinHandle<()>,
}

impl OpenConnection {
    /// Connects, sends one line and reads its echo (so both sides have
    /// sent data and acknowledged each other's).
    fn open(lab: &Lab) -> Self {
        let listener = lab
            .lan()
            .enter(|| TcpListener::bind(SocketAddrV4::new(LAN_IP, TCP_PORT)).unwrap());
        let server = std::thread::spawn(move || {
            let (stream, peer) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            reader
                .get_mut()
                .write_all(&echo_of(peer, line.as_bytes()))
                .unwrap();
            // Until the DUT closes: the connection stays established.
            let _ = reader.read_to_end(&mut Vec::new());
        });
        let to = SocketAddrV4::new(LAN_IP, TCP_PORT);
        let stream = lab.dut(1).enter(move || {
            let mut stream = TcpStream::connect_timeout(&to.into(), REPLY_WAIT).unwrap();
            stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
            stream.write_all(b"hold me open\n").unwrap();
            stream
        });
        let mut echo = String::new();
        BufReader::new(&stream)
            .read_line(&mut echo)
            .unwrap_or_else(|e| panic!("no TCP echo ({e})\n{}", lab.report()));
        let seen = echo
            .split(' ')
            .next()
            .and_then(|peer| peer.parse().ok())
            .unwrap_or_else(|| panic!("not an echo: {echo:?}"));
        Self {
            stream,
            seen,
            server,
        }
    }

    fn close(self) {
        drop(self.stream);
        self.server.join().unwrap();
    }
}

fn flows(lab: &Lab, args: &[&str]) -> Output {
    cli::run(
        &lab.topology,
        &lab.exporter,
        &[&["flows"][..], args].concat(),
    )
}

/// `dutnet flows --json args...`, which must succeed.
fn flows_json(lab: &Lab, args: &[&str]) -> Value {
    let out = flows(lab, &[&["--json"][..], args].concat());
    assert!(out.success(), "{out:#?}\n{}", lab.log());
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("flows --json is not JSON ({e}):\n{}", out.stdout))
}

/// The flow of `reply` whose DUT end is `dut` on `network`.
fn flow_of<'a>(reply: &'a Value, network: &str, dut: SocketAddr) -> &'a Value {
    reply["flows"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|f| f["network"] == network && f["dut"] == dut.to_string())
        })
        .unwrap_or_else(|| panic!("no flow from {dut} on {network}:\n{reply:#}"))
}

/// Two DUT NICs with the same subnet: DUT 2's datagram from DUT 1's very
/// address and port must leave from a port of its own, which its flow
/// must show as translated.
#[test]
fn flows_lists_a_duts_tcp_connection_and_udp_exchange_as_the_far_end_saw_them() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat_on("ebpf", "");
    let udp = lan_udp_echo(&lab);
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    let udp_seen = udp_exchange(&lab, &socket, &udp, b"count me");
    let udp_dut = socket.local_addr().unwrap();
    let Ok(SocketAddr::V4(bind)) = socket.local_addr() else {
        panic!("{udp_dut} is not IPv4");
    };
    let twin = udp_socket(lab.dut(2), bind);
    let twin_seen = udp_exchange(&lab, &twin, &udp, b"me too");
    let tcp = OpenConnection::open(&lab);
    let tcp_dut = tcp.stream.local_addr().unwrap();
    assert_eq!(udp_seen.ip(), EXPORTER_UP, "not masqueraded");
    assert_eq!(tcp.seen.ip(), EXPORTER_UP, "not masqueraded");
    assert!(
        NAT_PORTS.contains(&twin_seen.port()),
        "{udp_seen} was taken, dut2 should leave from a NAT port; the LAN host saw {twin_seen}"
    );

    let reply = flows_json(&lab, &[]);
    assert_eq!(reply["total"], 3, "{reply:#}");
    assert_eq!(reply["shown"], 3, "{reply:#}");
    assert_eq!(reply["elsewhere"], serde_json::json!([]), "{reply:#}");

    let flow = flow_of(&reply, "dut1", tcp_dut);
    assert_eq!(flow["protocol"], "tcp", "{flow:#}");
    assert_eq!(flow["remote"], format!("{LAN_IP}:{TCP_PORT}"), "{flow:#}");
    assert_eq!(flow["translated"], tcp.seen.to_string(), "{flow:#}");
    assert_eq!(flow["state"], "established", "{flow:#}");
    // SYN, ACK and the line one way; SYN|ACK, ACKs and the echo the other.
    assert!(flow["packets_out"].as_u64() >= Some(3), "{flow:#}");
    assert!(flow["packets_in"].as_u64() >= Some(2), "{flow:#}");
    assert!(flow["idle_ms"].as_u64() < Some(30_000), "{flow:#}");

    for (network, seen) in [("dut1", udp_seen), ("dut2", twin_seen)] {
        let flow = flow_of(&reply, network, udp_dut);
        assert_eq!(flow["protocol"], "udp", "{flow:#}");
        assert_eq!(flow["remote"], udp.addr.to_string(), "{flow:#}");
        assert_eq!(flow["translated"], seen.to_string(), "{flow:#}");
        assert_eq!(flow["state"], "replied", "{flow:#}");
        assert_eq!(flow["packets_out"], 1, "{flow:#}");
        assert_eq!(flow["packets_in"], 1, "{flow:#}");
    }

    // The table: by network, then least idle first (the TCP connection
    // was used last).
    let table = flows(&lab, &[]);
    assert!(table.success(), "{table:#?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", table.stdout);
    assert!(lines[0].contains("PROTO") && lines[0].contains("PKTS-IN"));
    let expected = [
        ("dut1", tcp_dut, "established"),
        ("dut1", udp_dut, "replied"),
        ("dut2", udp_dut, "replied"),
    ];
    for (line, (network, dut, state)) in lines[1..].iter().zip(expected) {
        assert!(
            line.starts_with(network) && line.contains(&dut.to_string()) && line.contains(state),
            "{}",
            table.stdout
        );
    }
    assert_eq!(lines[4], "(3 flows)");

    let one = flows_json(&lab, &["--network", "dut1", "--limit", "1"]);
    assert_eq!(one["flows"].as_array().map(Vec::len), Some(1), "{one:#}");
    assert_eq!(one["flows"][0]["network"], "dut1", "{one:#}");
    assert_eq!((&one["shown"], &one["total"]), (&1.into(), &2.into()));
    let table = flows(&lab, &["--network", "dut1", "--limit", "1"]);
    assert!(
        table
            .stdout
            .ends_with("(showing 1 of 2 flows; --limit to see more)\n"),
        "{}",
        table.stdout
    );

    let unknown = flows(&lab, &["--network", "nope"]);
    assert_eq!(unknown.code, Some(3), "{unknown:#?}");
    assert!(
        unknown.stderr.contains("no network `nope`") && unknown.stderr.contains("dut1"),
        "{unknown:#?}"
    );
    for bad in ["0", "100001"] {
        let out = flows(&lab, &["--limit", bad]);
        assert_eq!(out.code, Some(4), "{out:#?}");
        assert!(out.stderr.contains(&format!("--limit {bad}")), "{out:#?}");
    }
    tcp.close();
}

#[test]
fn flows_on_the_nft_datapath_names_the_conntrack_command_that_lists_them() {
    prereq::require("conntrack", "conntrack");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on("nft", "");
    let tcp = OpenConnection::open(&lab);
    let tcp_dut = tcp.stream.local_addr().unwrap();

    let reply = flows_json(&lab, &[]);
    assert_eq!(reply["flows"], serde_json::json!([]), "{reply:#}");
    assert_eq!(reply["elsewhere"][0]["network"], "dut1", "{reply:#}");
    let out = flows(&lab, &[]);
    assert!(out.success(), "{out:#?}");
    assert!(
        out.stdout.contains("nftables datapath") && !out.stdout.contains("PROTO"),
        "{}",
        out.stdout
    );
    // The command between backticks, run where dutnet runs.
    let command = out
        .stdout
        .split('`')
        .find(|part| part.starts_with("conntrack -L"))
        .unwrap_or_else(|| panic!("no conntrack command in {}", out.stdout));
    let words: Vec<&str> = command.split_whitespace().collect();
    let listed = lab.exporter.exec(words[0], &words[1..]);
    assert!(listed.success(), "{listed:#?}");
    let entry = format!(
        "src={DUT_IP} dst={LAN_IP} sport={} dport={TCP_PORT}",
        tcp_dut.port()
    );
    assert!(
        listed.stdout.contains(&entry) && listed.stdout.contains("ESTABLISHED"),
        "`{command}` does not list {entry}:\n{}",
        listed.stdout
    );
    tcp.close();
}
