//! The nftables datapath (issue #10), judged from the far end like the eBPF
//! tests: masquerade, 1:1 and disabled mode without any eBPF program, the
//! `auto` fallback and the `ebpf` refusal (through the test hook
//! `DUTNET_TEST_BREAK_EBPF`), and coexistence with a Docker-style `FORWARD`
//! chain whose policy is drop, on both datapaths.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use dutnet_tests::{
    Netns, Output, cmd,
    far_end::{TcpEcho, UdpEcho},
    lab::Lab,
    nat::{
        DUT_IP, EXPORTER_UP, LAN_IP, REPLY_WAIT, add_docker_forward_chain, docker_forward_chain,
        lan_udp_echo, tcp_exchange, udp_exchange, udp_socket,
    },
    netns::Process,
};

const PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 51);
/// A host behind a second exporter interface pair, unrelated to any DUT.
const SIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 2);
const BREAK_EBPF: &str = "DUTNET_TEST_BREAK_EBPF";

/// Writes the lab's config (every network gets `extra`) and starts `dutnet
/// load` with `args` and `env` added, without waiting; the caller owns it.
fn spawn_load(lab: &mut Lab, extra: &str, args: &[&str], env: &[(&'static str, &str)]) -> Process {
    lab.write_config(&lab.nat_config(|_| extra.to_owned()));
    for (key, value) in env {
        lab.set_env(key, value);
    }
    lab.spawn(args, "dutnet")
}

/// Like [`spawn_load`], but the lab owns the daemon and it is up
/// ([`Lab::start_with`]).
fn load_up(lab: &mut Lab, extra: &str, args: &[&str], env: &[(&'static str, &str)]) {
    lab.write_config(&lab.nat_config(|_| extra.to_owned()));
    for (key, value) in env {
        lab.set_env(key, value);
    }
    lab.start_with(args);
}

fn nft(ns: &Netns, args: &[&str]) -> Output {
    ns.exec("nft", args)
}

/// True when a datagram from `socket` gets `server`'s echo.
fn udp_gets_echo(socket: &std::net::UdpSocket, server: &UdpEcho) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    socket.send_to(b"anyone?", server.addr).unwrap();
    let mut buf = [0u8; 1500];
    socket.recv(&mut buf).is_ok()
}

/// Masquerade is judged by the LAN host, which has no route to the DUTs.
fn assert_masquerades(lab: &Lab) {
    let udp = lan_udp_echo(lab);
    let tcp = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7001));
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    let seen = udp_exchange(lab, &socket, &udp, b"hello over udp");
    assert_eq!(seen.ip(), EXPORTER_UP, "the LAN host saw the DUT itself");
    let seen = tcp_exchange(lab.dut(1), tcp.addr, "hello over tcp");
    assert_eq!(seen.ip(), EXPORTER_UP);
}

#[test]
fn masquerade_on_nft_reaches_the_lan_as_the_exporter_without_any_ebpf() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat("datapath: nft");
    assert_masquerades(&lab);
    let log = lab.log();
    assert!(log.contains("datapath=\"nft\""), "{log}");
    // No program was loaded, and `dutnet stats` says where to look instead.
    let stats = lab.dutnet(&["stats"]);
    assert!(stats.success(), "{stats:#?}");
    assert!(
        stats.stdout.contains("nftables datapath") && stats.stdout.contains("nft list table"),
        "{stats:#?}"
    );
}

#[test]
fn one_to_one_on_nft_publishes_the_dut_both_ways() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat(&format!(
        "datapath: nft\nnat_mode: 1to1\naddresses:\n  - ip: {DUT_IP}\n    public_ip: {PUBLIC}\n"
    ));
    let dut = lab.dut(1);
    let tcp = TcpEcho::start(dut, SocketAddrV4::new(DUT_IP, 2222));
    let seen = tcp_exchange(lab.lan(), SocketAddrV4::new(PUBLIC, 2222), "hello dut");
    assert_eq!(seen.ip(), LAN_IP, "the DUT saw {seen}");
    assert_eq!(tcp.peers(), vec![seen]);

    let echo = lan_udp_echo(&lab);
    let socket = udp_socket(dut, SocketAddrV4::new(DUT_IP, 0));
    assert_eq!(udp_exchange(&lab, &socket, &echo, b"mapped").ip(), PUBLIC);
}

#[test]
fn disabled_on_nft_forwards_nothing_either_way() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    // Through the command-line flag this time.
    load_up(&mut lab, "nat_mode: disabled", &["--datapath", "nft"], &[]);
    assert!(lab.log().contains("datapath=\"nft\""), "{}", lab.log());
    // The LAN even gets a route to the DUT subnet through the exporter.
    lab.lan()
        .ip(&format!("route add 192.168.100.0/24 via {EXPORTER_UP}"));

    let echo = lan_udp_echo(&lab);
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    assert!(!udp_gets_echo(&socket, &echo), "a disabled DUT got out");
    assert!(echo.datagrams().is_empty());

    let dut_echo = UdpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 5353));
    let socket = udp_socket(lab.lan(), SocketAddrV4::new(LAN_IP, 0));
    assert!(!udp_gets_echo(&socket, &dut_echo), "the LAN got in");
    assert!(dut_echo.datagrams().is_empty());
}

/// A host (namespace `side`) forwarded by the exporter to the LAN through
/// interfaces dutnet knows nothing about.
fn side_host(lab: &mut Lab) -> Netns {
    let side = lab.topology.netns("side");
    lab.topology
        .veth((&lab.exporter, "dn-side"), (&side, "eth0"));
    lab.exporter.ip("addr add 10.97.0.1/24 dev dn-side");
    side.ip(&format!("addr add {SIDE_IP}/24 dev eth0"));
    side.ip("route add default via 10.97.0.1");
    lab.lan()
        .ip(&format!("route add 10.97.0.0/24 via {EXPORTER_UP}"));
    lab.exporter.sysctl("net.ipv4.conf.dn-side.forwarding=1");
    lab.exporter.sysctl("net.ipv4.conf.dn-up.forwarding=1");
    side
}

fn docker_chain_case(datapath: &str) {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let side = side_host(&mut lab);
    let echo = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7002));
    let side_socket = udp_socket(&side, SocketAddrV4::new(SIDE_IP, 0));
    assert!(
        udp_gets_echo(&side_socket, &echo),
        "the side host must reach the LAN before Docker's chain exists"
    );
    let before = add_docker_forward_chain(&lab.exporter);
    assert!(
        !udp_gets_echo(&side_socket, &echo),
        "Docker's chain must drop the side flow"
    );

    lab.load_nat(&format!("datapath: {datapath}"));
    assert_masquerades(&lab);
    assert!(
        !udp_gets_echo(&side_socket, &echo),
        "dutnet opened Docker's chain to a flow that is not a DUT's:\n{}",
        docker_forward_chain(&lab.exporter)
    );
    let during = docker_forward_chain(&lab.exporter);
    assert!(during.contains("dutnet network dut1"), "{during}");

    assert_eq!(lab.stop(), Some(0), "dutnet did not exit cleanly");
    assert_eq!(
        docker_forward_chain(&lab.exporter),
        before,
        "Docker's chain changed"
    );
}

#[test]
fn a_docker_forward_drop_chain_lets_dut_traffic_through_on_nft_and_nothing_else() {
    docker_chain_case("nft");
}

#[test]
fn a_docker_forward_drop_chain_lets_dut_traffic_through_on_ebpf_and_nothing_else() {
    docker_chain_case("ebpf");
}

#[test]
fn auto_falls_back_to_nft_with_one_warning_when_ebpf_cannot_load() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    load_up(&mut lab, "datapath: auto", &[], &[(BREAK_EBPF, "1")]);
    let log = lab.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the eBPF datapath cannot load"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains(BREAK_EBPF) && warnings[0].contains("datapath: nft"),
        "the warning says why and how to fix it: {}",
        warnings[0]
    );
    assert!(log.contains("datapath=\"nft\""), "{log}");
    assert_masquerades(&lab);
}

#[test]
fn ebpf_refuses_to_fall_back_and_changes_nothing() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let addresses = lab.exporter.ip("-4 addr show dev dn-dut1").stdout;
    let mut daemon = spawn_load(&mut lab, "datapath: ebpf", &[], &[(BREAK_EBPF, "1")]);
    let exited = cmd::wait_for(Duration::from_secs(15), || {
        (!daemon.is_running()).then_some(())
    });
    let log = daemon.log();
    assert!(exited.is_some(), "dutnet kept running:\n{log}");
    assert!(
        log.contains("network `dut1` asks for `datapath: ebpf`")
            && log.contains("cannot load")
            && log.contains(BREAK_EBPF),
        "{log}"
    );
    assert!(
        !nft(&lab.exporter, &["list", "table", "ip", "dutnet"]).success(),
        "the table is left"
    );
    assert_eq!(
        lab.exporter.ip("-4 addr show dev dn-dut1").stdout,
        addresses
    );
}

#[test]
fn down_after_sigkill_removes_the_table_and_every_inserted_rule() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let before = add_docker_forward_chain(&lab.exporter);
    lab.load_nat(&format!(
        "datapath: nft\nnat_mode: 1to1\naddresses:\n  - ip: {DUT_IP}\n    public_ip: {PUBLIC}\n"
    ));
    lab.kill();
    assert!(nft(&lab.exporter, &["list", "table", "ip", "dutnet"]).success());
    assert_ne!(docker_forward_chain(&lab.exporter), before);

    let down = lab.dutnet(&["down"]);
    assert!(down.success(), "{down:#?}");
    assert!(
        !nft(&lab.exporter, &["list", "table", "ip", "dutnet"]).success(),
        "the table is left"
    );
    assert_eq!(docker_forward_chain(&lab.exporter), before);
}

#[test]
fn identical_subnets_on_nft_are_refused_naming_both_networks() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    let mut daemon = spawn_load(&mut lab, "datapath: nft", &[], &[]);
    let exited = cmd::wait_for(REPLY_WAIT * 3, || (!daemon.is_running()).then_some(()));
    let log = daemon.log();
    assert!(exited.is_some(), "dutnet started:\n{log}");
    assert!(
        log.contains("`dut1` and `dut2`") && log.contains("datapath: ebpf"),
        "{log}"
    );
    assert!(!nft(&lab.exporter, &["list", "table", "ip", "dutnet"]).success());
}

#[test]
fn nat_rules_shows_the_nft_ruleset_on_nft_and_carries_it_as_a_field_on_ebpf() {
    for datapath in ["nft", "ebpf"] {
        let mut lab = Lab::builder().upstream().static_duts(1).build();
        lab.load_nat_on(
            datapath,
            &format!("nat_mode: 1to1\naddresses:\n  - ip: {DUT_IP}\n    public_ip: {PUBLIC}\n"),
        );
        let json = lab.dutnet(&["nat-rules", "--json"]);
        assert!(json.success(), "{json:#?}");
        let reply: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(reply["networks"][0]["datapath"], datapath, "{reply:#}");
        let ruleset = reply["ruleset"].as_str().unwrap_or_default();
        assert!(
            ruleset.contains("table ip dutnet")
                && ruleset.contains(&format!("dnat to {DUT_IP}"))
                && ruleset.contains("masquerade"),
            "{datapath}: {reply:#}"
        );

        let human = lab.dutnet(&["nat-rules"]);
        assert!(human.success(), "{human:#?}");
        let text = human.stdout;
        assert!(text.contains(&format!("{DUT_IP} <-> {PUBLIC}")), "{text}");
        if datapath == "nft" {
            // The table is the whole NAT: shown as nft prints it.
            assert!(text.contains("datapath       nft"), "{text}");
            assert!(text.contains("table ip dutnet {"), "{text}");
            assert!(text.contains(&format!("dnat to {DUT_IP}")), "{text}");
        } else {
            // Unchanged on eBPF: the fast path's view, no ruleset.
            assert!(text.contains("(fast path)"), "{text}");
            assert!(!text.contains("table ip dutnet"), "{text}");
        }
    }
}

#[test]
fn a_docker_chain_created_after_dutnet_started_is_opened_and_left_as_it_was() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    // The chain as Docker makes it, listed where no dutnet runs: the
    // exporter's own copy is opened by dutnet before it can be listed.
    let scratch = lab.topology.netns("scratch");
    let expected = add_docker_forward_chain(&scratch);
    lab.load_nat_on("nft", "");
    let echo = UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7003));
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    assert!(udp_gets_echo(&socket, &echo), "{}", lab.report());

    // Docker starts after dutnet: the DUT gets through again within ticks.
    add_docker_forward_chain(&lab.exporter);
    let through = |limit: Duration| {
        cmd::wait_for(limit, || udp_gets_echo(&socket, &echo).then_some(())).is_some()
    };
    assert!(
        through(Duration::from_secs(3)),
        "the new chain was not opened:\n{}\n{}",
        docker_forward_chain(&lab.exporter),
        lab.report()
    );
    assert!(
        lab.log().contains("appeared after dutnet started"),
        "{}",
        lab.log()
    );

    // Docker's table replaced whole (its chain keeps its old handle): the
    // slower check of the opened chains' rules finds it.
    let replaced = nft(&lab.exporter, &["delete", "table", "ip", "filter"]);
    assert!(replaced.success(), "{replaced:#?}");
    add_docker_forward_chain(&lab.exporter);
    assert!(
        through(Duration::from_secs(8)),
        "the replaced chain was not opened again:\n{}\n{}",
        docker_forward_chain(&lab.exporter),
        lab.report()
    );

    assert_eq!(lab.stop(), Some(0), "dutnet did not exit cleanly");
    assert_eq!(
        docker_forward_chain(&lab.exporter),
        expected,
        "Docker's chain changed"
    );
}
