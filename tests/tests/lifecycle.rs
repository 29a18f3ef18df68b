//! A daemon that lives on a real exporter: a changed file reloaded live
//! (`dutnet reload`, SIGHUP) without disturbing the networks that did not
//! change, a broken file refused with nothing changed, and a network whose
//! NIC is missing waiting for it while the others serve. Judged from
//! outside: `ip`, dhclient, iperf3 and `dutnet status`.
use std::{net::SocketAddrV4, time::Duration};

use dutnet_tests::{
    clients::Dhclient,
    cmd,
    far_end::TcpEcho,
    lab::{
        Dut, Lab,
        config::{DUT_IP, EXPORTER_UP, LAN_IP, Network, UPSTREAM_NIC, dut_nic},
    },
    nat::tcp_exchange,
    prereq,
};

/// An exporter with DUT NICs `dn-dutN` (a DUT namespace behind each, all on
/// the same static plan 192.168.100.0/24) and an upstream `dn-up` to a LAN
/// its default route goes through. Only the first `present` of the `count`
/// DUT NICs exist from the start; [`Lab::plug`] adds the others.
fn lab(count: usize, present: usize) -> Lab {
    let mut builder = Lab::builder().upstream().default_route().resolv_conf();
    for n in 1..=count {
        let dut = Dut::on(n).ip(DUT_IP).routed();
        builder = builder.dut(if n <= present { dut } else { dut.unplugged() });
    }
    builder.build()
}

/// `ip -4 -o addr` and link state of `iface` in the exporter.
fn addresses(lab: &Lab, iface: &str) -> String {
    let out = lab
        .exporter
        .exec("ip", &["-4", "-o", "addr", "show", "dev", iface]);
    let mut addrs: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    addrs.sort_unstable();
    let forwarding = lab
        .exporter
        .sysctl_get(&format!("net.ipv4.conf.{iface}.forwarding"));
    format!("{} forwarding={forwarding}", addrs.join(","))
}

/// Networks `netN` on `dn-dutN`, masquerading through `dn-up`, DHCP on.
fn config(networks: &[usize]) -> String {
    let mut text = String::from("networks:\n");
    for &n in networks {
        let network = Network::on(&dut_nic(n)).set(&format!(
            "upstream_interface: {UPSTREAM_NIC}
dhcp_enabled: true
dhcp_range_start: 192.168.100.100
dhcp_range_end: 192.168.100.150"
        ));
        text.push_str(&network.entry(&format!("net{n}")));
    }
    text
}

/// Per-second rates (bits/s) of an `iperf3 -J` run.
fn interval_rates(json: &str) -> Vec<f64> {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    value["intervals"]
        .as_array()
        .map(|intervals| {
            intervals
                .iter()
                .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_reload_adds_and_removes_networks_and_an_unchanged_transfer_keeps_its_rate() {
    prereq::require("iperf3", "iperf3");
    prereq::require("dhclient", "isc-dhcp-client");
    let mut lab = lab(3, 3);
    let before = addresses(&lab, "dn-dut2");
    lab.load(&config(&[1, 2]));

    // A transfer of the network that stays, running across the reload.
    let server = lab.lan().spawn(
        "iperf3",
        &["-s", "-1", "-B", "10.99.0.1"],
        &[],
        lab.topology.path("iperf3-server.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let dut1 = lab.dut(1).clone();
    let transfer = std::thread::spawn(move || {
        dut1.exec(
            "iperf3",
            &["-c", "10.99.0.1", "-t", "6", "-J", "-b", "200M"],
        )
    });
    std::thread::sleep(Duration::from_secs(2));

    lab.write_config(&config(&[1, 3]));
    let reload = lab.dutnet(&["reload"]);
    assert!(reload.success(), "{reload:#?}\n{}", lab.log());
    assert!(reload.stdout.contains("added      net3"), "{reload:#?}");
    assert!(reload.stdout.contains("removed    net2"), "{reload:#?}");
    assert!(reload.stdout.contains("unchanged  1"), "{reload:#?}");

    let transfer = transfer.join().unwrap();
    drop(server);
    assert!(
        transfer.success(),
        "the transfer broke across the reload: {transfer:#?}"
    );
    let rates = interval_rates(&transfer.stdout);
    assert!(rates.len() >= 5, "{transfer:#?}");
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let slow: Vec<bool> = rates.iter().map(|r| *r < median / 2.0).collect();
    assert!(
        !slow.windows(2).any(|w| w[0] && w[1]),
        "the unchanged network's transfer fell below half its rate for more than 1 s: {rates:?}"
    );

    // The removed network's NIC is back as it was; the added one serves.
    assert_eq!(addresses(&lab, "dn-dut2"), before, "{}", lab.log());
    lab.wait_network_state("net3", "up", Duration::from_secs(5));
    let client = Dhclient::new(lab.dut(3), "eth0", &lab.topology.path(""), "dut3", "");
    let out = client.run();
    assert!(
        client
            .address()
            .is_some_and(|a| a.starts_with("192.168.100.1")),
        "no lease on the added network: {out:#?}\n{}",
        lab.log()
    );
    assert_eq!(lab.network_state("net2"), None, "net2 still reported");
}

/// A reload that only adds networks (none removed, so no connection-table
/// room is freed): they come up on the fast path and their DUTs reach the
/// LAN through NAT, as a network loaded at start would.
#[test]
fn networks_added_by_a_reload_get_room_in_the_connection_table() {
    let mut lab = lab(3, 3);
    lab.load(&config(&[1]));
    let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7004));

    lab.write_config(&config(&[1, 2, 3]));
    let reload = lab.dutnet(&["reload"]);
    assert!(reload.success(), "{reload:#?}\n{}", lab.log());
    for n in [2, 3] {
        let name = format!("net{n}");
        lab.wait_network_state(&name, "up", Duration::from_secs(5));
        let seen = tcp_exchange(lab.dut(n), echo.addr, &format!("from {name}"));
        assert_eq!(seen.ip(), EXPORTER_UP, "{name}'s DUT was not masqueraded");
    }
    let status = lab.json(&["status"]);
    let datapaths: Vec<&str> = status["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["datapath"].as_str())
        .collect();
    assert_eq!(datapaths.len(), 3, "{status:#}");
    assert!(
        datapaths.iter().all(|d| d.starts_with("ebpf")),
        "an added network is not on the fast path: {status:#}"
    );
}

#[test]
fn a_broken_file_changes_nothing_and_sighup_reloads_a_good_one() {
    prereq::require("dig", "dnsutils");
    let mut lab = lab(1, 1);
    lab.load(&config(&[1]));
    let during = addresses(&lab, "dn-dut1");

    lab.write_config("networks:\n  - name: net1\n    interface: dn-dut1\n    nat_mode: sideways\n");
    let reload = lab.dutnet(&["reload"]);
    assert!(!reload.success(), "{reload:#?}");
    let said = format!("{}{}", reload.stdout, reload.stderr);
    assert!(
        said.contains("nat_mode"),
        "the error does not name the key: {said}"
    );
    assert!(said.contains("nothing was changed"), "{said}");
    assert!(lab.is_running(), "{}", lab.log());
    assert_eq!(addresses(&lab, "dn-dut1"), during);
    assert_eq!(
        lab.network_state("net1").map(|s| s.0).as_deref(),
        Some("up")
    );

    // A good file: a new DNS entry, taken live on SIGHUP.
    let mut good = config(&[1]);
    good.push_str(
        "    dns_entries:\n      - hostname: reloaded.lab.local\n        ip: 10.99.0.1\n",
    );
    lab.write_config(&good);
    let pid = lab.daemon().pid();
    // SAFETY: kill with the PID of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let resolved = cmd::wait_for(Duration::from_secs(5), || {
        let out = lab.dut(1).exec(
            "dig",
            &[
                "+short",
                "+time=1",
                "+tries=1",
                "@192.168.100.1",
                "reloaded.lab.local",
            ],
        );
        (out.stdout.trim() == "10.99.0.1").then_some(())
    });
    assert!(
        resolved.is_some(),
        "the reloaded DNS entry does not resolve:\n{}",
        lab.log()
    );
    assert!(lab.is_running(), "{}", lab.log());
    assert_eq!(addresses(&lab, "dn-dut1"), during, "net1 was touched");
    assert!(
        lab.log().contains("configuration reloaded"),
        "{}",
        lab.log()
    );
}

#[test]
fn a_missing_nic_waits_while_the_others_serve_and_comes_up_when_plugged() {
    let mut lab = lab(3, 2);
    lab.load(&config(&[1, 2, 3]));
    lab.wait_network_state("net1", "up", Duration::from_secs(5));
    lab.wait_network_state("net2", "up", Duration::from_secs(5));
    let (state, problem) = lab.network_state("net3").unwrap();
    assert_eq!(state, "waiting");
    assert!(
        problem.is_some_and(|p| p.contains("dn-dut3")),
        "a waiting network says what it waits for"
    );
    // Both present networks serve meanwhile.
    for n in 1..=2 {
        let ping = lab
            .dut(n)
            .exec("ping", &["-c", "1", "-W", "2", "10.99.0.1"]);
        assert!(
            ping.success(),
            "net{n} does not reach the LAN: {ping:#?}\n{}",
            lab.log()
        );
    }

    lab.plug(3);
    lab.wait_network_state("net3", "up", Duration::from_secs(2));
    let ping = lab
        .dut(3)
        .exec("ping", &["-c", "1", "-W", "2", "10.99.0.1"]);
    assert!(
        ping.success(),
        "the plugged network does not reach the LAN: {ping:#?}\n{}",
        lab.log()
    );
}

/// Under a `Type=notify` unit: READY=1 arrives once the networks are up
/// (or waiting), with their counts, and a reload is announced.
#[test]
fn systemd_hears_ready_once_the_networks_are_up_and_hears_reloads() {
    let mut lab = lab(2, 1);
    lab.write_config(&config(&[1, 2]));
    let socket_path = lab.topology.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    lab.set_env("NOTIFY_SOCKET", &socket_path.display().to_string());
    // Not waiting for dutnet to come up: READY=1 is what says it is.
    lab.launch_with(&[]);
    let mut buf = [0u8; 512];
    let next = |buf: &mut [u8]| -> String {
        let n = socket
            .recv(buf)
            .unwrap_or_else(|e| panic!("no notification: {e}\n{}", lab.log()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next(&mut buf);
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(
        ready.contains("STATUS=2 networks: 1 up, 1 waiting, 0 failed"),
        "{ready}"
    );
    // Ready means up: the present network is serving already.
    assert_eq!(
        lab.network_state("net1").map(|s| s.0).as_deref(),
        Some("up")
    );

    let reload = lab.dutnet(&["reload"]);
    assert!(reload.success(), "{reload:#?}");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with("READY=1")) {
        seen.push(next(&mut buf));
    }
    assert!(seen[0].starts_with("RELOADING=1"), "{seen:?}");

    lab.plug(2);
    let status = cmd::wait_for(Duration::from_secs(5), || {
        let message = next(&mut buf);
        message.contains("2 up").then_some(message)
    });
    assert!(
        status.is_some(),
        "no STATUS update once net2 came up\n{}",
        lab.log()
    );
}
