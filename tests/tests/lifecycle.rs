//! A daemon that lives on a real exporter: a changed file reloaded live
//! (`dutnet reload`, SIGHUP) without disturbing the networks that did not
//! change, a broken file refused with nothing changed, and a network whose
//! NIC is missing waiting for it while the others serve. Judged from
//! outside: `ip`, dhclient, iperf3 and `dutnet status`.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::time::Duration;

use dutnet_tests::{Netns, Topology, cli, clients::Dhclient, cmd, netns::Process, prereq};

/// An exporter with DUT NICs `dn-dutN` (a DUT namespace behind each, all on
/// the same static plan 192.168.100.0/24) and an upstream `dn-up` to a LAN.
struct Lab {
    topology: Topology,
    exporter: Netns,
    lan: Netns,
    duts: Vec<Netns>,
}

impl Lab {
    /// `present` of the `count` DUT NICs exist from the start.
    fn new(count: usize, present: usize) -> Self {
        let mut topology = Topology::new();
        let (exporter, lan) = topology.exporter_and_lan();
        exporter.ip("route add default via 10.99.0.1");
        let duts: Vec<Netns> = (1..=count)
            .map(|n| topology.netns(&format!("dut{n}")))
            .collect();
        let lab = Self {
            topology,
            exporter,
            lan,
            duts,
        };
        for n in 1..=present {
            lab.plug(n);
        }
        lab
    }

    /// Creates DUT NIC `dn-dut<n>` and its DUT end (static 192.168.100.10).
    fn plug(&self, n: usize) {
        let dut = &self.duts[n - 1];
        self.topology
            .veth((&self.exporter, &format!("dn-dut{n}")), (dut, "eth0"));
        dut.ip("addr add 192.168.100.10/24 dev eth0");
        dut.ip("route add default via 192.168.100.1");
        std::fs::create_dir_all(format!("/etc/netns/{}", dut.name)).unwrap();
        std::fs::write(
            format!("/etc/netns/{}/resolv.conf", dut.name),
            "nameserver 192.168.100.1\n",
        )
        .unwrap();
    }

    fn write_config(&self, networks: &[usize]) -> String {
        let path = self.topology.path("dutnet.yaml");
        std::fs::write(&path, config(networks)).unwrap();
        path.display().to_string()
    }

    fn dutnet(&self, args: &[&str]) -> dutnet_tests::Output {
        cli::run(&self.topology, &self.exporter, args)
    }

    /// `dutnet status --json` of network `name`: (state, problem).
    fn state(&self, name: &str) -> Option<(String, Option<String>)> {
        let out = self.dutnet(&["status", "--json"]);
        let reply: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        let net = reply["networks"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == name)?
            .clone();
        Some((
            net["state"].as_str()?.to_owned(),
            net["problem"].as_str().map(str::to_owned),
        ))
    }

    fn wait_state(&self, name: &str, wanted: &str, limit: Duration, daemon: &Process) {
        let reached = cmd::wait_for(limit, || {
            self.state(name)
                .filter(|(state, _)| state == wanted)
                .map(drop)
        });
        assert!(
            reached.is_some(),
            "network {name} not {wanted} within {limit:?} (now {:?}); dutnet log:\n{}",
            self.state(name),
            daemon.log()
        );
    }

    /// `ip -4 -o addr` and link state of `iface` in the exporter.
    fn addresses(&self, iface: &str) -> String {
        let out = self
            .exporter
            .exec("ip", &["-4", "-o", "addr", "show", "dev", iface]);
        let mut addrs: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        addrs.sort_unstable();
        let forwarding = self
            .exporter
            .sysctl_get(&format!("net.ipv4.conf.{iface}.forwarding"));
        format!("{} forwarding={forwarding}", addrs.join(","))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for dut in &self.duts {
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", dut.name));
        }
    }
}

/// Networks `netN` on `dn-dutN`, masquerading through `dn-up`, DHCP on.
fn config(networks: &[usize]) -> String {
    let mut text = String::from("networks:\n");
    for n in networks {
        text.push_str(&format!(
            "  - name: net{n}\n    interface: dn-dut{n}\n    upstream_interface: dn-up\n    dhcp_enabled: true\n    dhcp_range_start: 192.168.100.100\n    dhcp_range_end: 192.168.100.150\n"
        ));
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
    let lab = Lab::new(3, 3);
    let before = lab.addresses("dn-dut2");
    let file = lab.write_config(&[1, 2]);
    let daemon = cli::load(
        &lab.topology,
        &lab.exporter,
        &std::fs::read_to_string(&file).unwrap(),
    );

    // A transfer of the network that stays, running across the reload.
    let server = lab.lan.spawn(
        "iperf3",
        &["-s", "-1", "-B", "10.99.0.1"],
        &[],
        lab.topology.path("iperf3-server.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let dut1 = lab.duts[0].clone();
    let transfer = std::thread::spawn(move || {
        dut1.exec(
            "iperf3",
            &["-c", "10.99.0.1", "-t", "6", "-J", "-b", "200M"],
        )
    });
    std::thread::sleep(Duration::from_secs(2));

    lab.write_config(&[1, 3]);
    let reload = lab.dutnet(&["reload"]);
    assert!(reload.success(), "{reload:#?}\n{}", daemon.log());
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
    assert_eq!(lab.addresses("dn-dut2"), before, "{}", daemon.log());
    lab.wait_state("net3", "up", Duration::from_secs(5), &daemon);
    let client = Dhclient::new(&lab.duts[2], "eth0", &lab.topology.path(""), "dut3", "");
    let out = client.run();
    assert!(
        client
            .address()
            .is_some_and(|a| a.starts_with("192.168.100.1")),
        "no lease on the added network: {out:#?}\n{}",
        daemon.log()
    );
    assert_eq!(lab.state("net2"), None, "net2 still reported");
}

#[test]
fn a_broken_file_changes_nothing_and_sighup_reloads_a_good_one() {
    prereq::require("dig", "dnsutils");
    let lab = Lab::new(1, 1);
    let file = lab.write_config(&[1]);
    let mut daemon = cli::load(
        &lab.topology,
        &lab.exporter,
        &std::fs::read_to_string(&file).unwrap(),
    );
    let during = lab.addresses("dn-dut1");

    std::fs::write(
        &file,
        "networks:\n  - name: net1\n    interface: dn-dut1\n    nat_mode: sideways\n",
    )
    .unwrap();
    let reload = lab.dutnet(&["reload"]);
    assert!(!reload.success(), "{reload:#?}");
    let said = format!("{}{}", reload.stdout, reload.stderr);
    assert!(
        said.contains("nat_mode"),
        "the error does not name the key: {said}"
    );
    assert!(said.contains("nothing was changed"), "{said}");
    assert!(daemon.is_running(), "{}", daemon.log());
    assert_eq!(lab.addresses("dn-dut1"), during);
    assert_eq!(lab.state("net1").map(|s| s.0).as_deref(), Some("up"));

    // A good file: a new DNS entry, taken live on SIGHUP.
    let mut good = config(&[1]);
    good.push_str(
        "    dns_entries:\n      - hostname: reloaded.lab.local\n        ip: 10.99.0.1\n",
    );
    std::fs::write(&file, good).unwrap();
    // SAFETY: kill with the PID of the daemon this test started.
    assert_eq!(unsafe { libc::kill(daemon.pid(), libc::SIGHUP) }, 0);
    let resolved = cmd::wait_for(Duration::from_secs(5), || {
        let out = lab.duts[0].exec(
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
        daemon.log()
    );
    assert!(daemon.is_running(), "{}", daemon.log());
    assert_eq!(lab.addresses("dn-dut1"), during, "net1 was touched");
    assert!(
        daemon.log().contains("configuration reloaded"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_missing_nic_waits_while_the_others_serve_and_comes_up_when_plugged() {
    let lab = Lab::new(3, 2);
    let file = lab.write_config(&[1, 2, 3]);
    let daemon = cli::load(
        &lab.topology,
        &lab.exporter,
        &std::fs::read_to_string(&file).unwrap(),
    );
    lab.wait_state("net1", "up", Duration::from_secs(5), &daemon);
    lab.wait_state("net2", "up", Duration::from_secs(5), &daemon);
    let (state, problem) = lab.state("net3").unwrap();
    assert_eq!(state, "waiting");
    assert!(
        problem.is_some_and(|p| p.contains("dn-dut3")),
        "a waiting network says what it waits for"
    );
    // Both present networks serve meanwhile.
    for n in 1..=2 {
        let ping = lab.duts[n - 1].exec("ping", &["-c", "1", "-W", "2", "10.99.0.1"]);
        assert!(
            ping.success(),
            "net{n} does not reach the LAN: {ping:#?}\n{}",
            daemon.log()
        );
    }

    lab.plug(3);
    lab.wait_state("net3", "up", Duration::from_secs(2), &daemon);
    let ping = lab.duts[2].exec("ping", &["-c", "1", "-W", "2", "10.99.0.1"]);
    assert!(
        ping.success(),
        "the plugged network does not reach the LAN: {ping:#?}\n{}",
        daemon.log()
    );
}

/// Under a `Type=notify` unit: READY=1 arrives once the networks are up
/// (or waiting), with their counts, and a reload is announced.
#[test]
fn systemd_hears_ready_once_the_networks_are_up_and_hears_reloads() {
    let lab = Lab::new(2, 1);
    let file = lab.write_config(&[1, 2]);
    let socket_path = lab.topology.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut env = cli::env(&lab.topology);
    env.push(("NOTIFY_SOCKET", socket_path.display().to_string()));
    let daemon = lab.exporter.spawn(
        &cli::binary().to_string_lossy(),
        &["load", &file],
        &env,
        lab.topology.path("notify-load.log"),
    );
    let mut buf = [0u8; 512];
    let next = |buf: &mut [u8]| -> String {
        let n = socket
            .recv(buf)
            .unwrap_or_else(|e| panic!("no notification: {e}\n{}", daemon.log()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next(&mut buf);
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(
        ready.contains("STATUS=2 networks: 1 up, 1 waiting, 0 failed"),
        "{ready}"
    );
    // Ready means up: the present network is serving already.
    assert_eq!(lab.state("net1").map(|s| s.0).as_deref(), Some("up"));

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
        daemon.log()
    );
}
