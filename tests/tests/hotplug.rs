//! A DUT NIC unplugged and plugged again (a USB hub reset, a DUT power
//! cycling its own gadget), and the signals and closed outputs a foreground
//! daemon meets on a real exporter. Judged from outside: dhclient, ping, `ip`
//! and `dutnet status`.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::{Command, Stdio},
    time::Duration,
};

use dutnet_tests::{
    both_datapaths, cli,
    clients::Dhclient,
    cmd,
    far_end::TcpEcho,
    lab::{
        Dut, Lab,
        config::{BOARD1_MAC, DUT_IP, EXPORTER_UP, LAN_IP, Network, UPSTREAM_NIC, dut_nic},
    },
    nat::try_tcp_exchange,
    prereq,
};

/// `dutnet status --json` state of the only network.
fn state(lab: &Lab) -> String {
    let out = lab.dutnet(&["status", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["networks"][0]["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn wait_state(lab: &Lab, wanted: &str, limit: Duration) {
    let reached = cmd::wait_for(limit, || (state(lab) == wanted).then_some(()));
    assert!(
        reached.is_some(),
        "not {wanted} within {limit:?} (now {:?}):\n{}",
        state(lab),
        lab.log()
    );
}

#[test]
fn a_replugged_dut_nic_is_taken_over_again_and_the_dut_gets_its_lease_back() {
    prereq::require("dhclient", "isc-dhcp-client");
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(BOARD1_MAC))
        .resolv_conf()
        .build();
    lab.load(&Network::services().single());
    let dut = lab.dut(1).clone();
    let client = Dhclient::new(&dut, "eth0", &lab.topology.path(""), "dut1", "");
    let out = client.run();
    let first = client.address();
    assert_eq!(
        first.as_deref(),
        Some(DUT_IP.to_string().as_str()),
        "{out:#?}"
    );

    // Unplugged: the veth pair goes, both ends.
    lab.exporter.ip(&format!("link del {}", dut_nic(1)));
    wait_state(&lab, "waiting", Duration::from_secs(2));

    // Plugged again, same name and MAC: a new ifindex.
    lab.topology
        .veth((&lab.exporter, &dut_nic(1)), (&dut, "eth0"));
    dut.ip(&format!("link set eth0 address {BOARD1_MAC}"));
    dut.ip("link set eth0 up");
    wait_state(&lab, "up", Duration::from_secs(2));
    let out = client.run();
    assert_eq!(
        client.address(),
        first,
        "the DUT did not get its lease back: {out:#?}\n{}",
        lab.log()
    );
    // And it reaches the LAN through NAT again.
    dut.ip(&format!("addr add {DUT_IP}/24 dev eth0"));
    dut.ip("route add default via 192.168.100.1");
    let ping = dut.exec("ping", &["-c", "1", "-W", "2", &LAN_IP.to_string()]);
    assert!(ping.success(), "{ping:#?}\n{}", lab.log());
}

/// The address the LAN sees a DUT TCP connection come from, once one gets
/// through within `limit` (the uplink may still be coming back).
fn lan_sees(lab: &Lab, server: SocketAddrV4, limit: Duration) -> Option<Ipv4Addr> {
    cmd::wait_for(limit, || {
        lab.dut(1)
            .enter(move || try_tcp_exchange(server, "through the uplink"))
            .ok()
            .map(|peer| match peer.ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            })
    })
}

both_datapaths!(masquerade_follows_the_uplink_through_a_flap_and_a_new_address);
/// The uplink flaps (carrier down and up), then goes away and comes back as
/// a new interface with another address (a USB uplink re-plugged, a DHCP
/// uplink renumbered): masquerade keeps working and follows the new
/// address, without a restart, on either datapath.
fn masquerade_follows_the_uplink_through_a_flap_and_a_new_address(datapath: &str) {
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).ip(DUT_IP).routed())
        .build();
    lab.load_nat_on(datapath, "");
    let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7002));
    let limit = Duration::from_secs(3);
    assert_eq!(lan_sees(&lab, echo.addr, limit), Some(EXPORTER_UP));

    // Carrier lost and back: same interface, same address.
    lab.exporter.ip(&format!("link set {UPSTREAM_NIC} down"));
    std::thread::sleep(Duration::from_millis(300));
    lab.exporter.ip(&format!("link set {UPSTREAM_NIC} up"));
    assert_eq!(
        lan_sees(&lab, echo.addr, limit),
        Some(EXPORTER_UP),
        "after a carrier flap:\n{}",
        lab.log()
    );

    // Gone, then back under the same name with a new index and address.
    // Meanwhile the network waits for it, saying so.
    lab.exporter.ip(&format!("link del {UPSTREAM_NIC}"));
    lab.wait_network_state("dut1", "waiting", Duration::from_secs(2));
    let (_, problem) = lab.network_state("dut1").unwrap_or_default();
    assert!(
        problem.as_deref().is_some_and(|p| p.contains(UPSTREAM_NIC)),
        "the wait does not name the uplink: {problem:?}"
    );
    // Its DUTs keep their DNS (local names) meanwhile.
    let status = lab.json(&["status"]);
    assert_eq!(status["networks"][0]["dns_running"], true, "{status:#}");
    let renumbered = Ipv4Addr::new(10, 99, 0, 3);
    lab.topology
        .veth((&lab.exporter, UPSTREAM_NIC), (lab.lan(), "eth0"));
    if datapath == "ebpf" {
        // Back without an address yet (its DHCP client still asking): the
        // fast path has nothing to masquerade behind, and says so.
        let waiting_for_address = cmd::wait_for(Duration::from_secs(2), || {
            lab.network_state("dut1")
                .filter(|(state, _)| state == "waiting")
                .and_then(|(_, problem)| problem)
                .filter(|p| p.contains("no IPv4 address yet"))
        });
        assert!(
            waiting_for_address.is_some(),
            "{:?}\n{}",
            lab.network_state("dut1"),
            lab.log()
        );
    }
    lab.exporter
        .ip(&format!("addr add {renumbered}/24 dev {UPSTREAM_NIC}"));
    lab.lan().ip(&format!("addr add {LAN_IP}/24 dev eth0"));
    let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7003));
    assert_eq!(
        lan_sees(&lab, echo.addr, limit),
        Some(renumbered),
        "after the uplink came back renumbered:\n{}",
        lab.log()
    );
    let status = lab.json(&["status"]);
    assert_eq!(status["networks"][0]["state"], "up", "{status:#}");
    assert!(
        !lab.log().contains("configuring it again"),
        "the uplink's return restarted the network:\n{}",
        lab.log()
    );
    assert_eq!(
        status["networks"][0]["datapath"]
            .as_str()
            .map(|d| d.starts_with(datapath)),
        Some(true),
        "{status:#}"
    );
}

/// A daemon whose stdout and stderr are pipes nobody reads any more (the
/// terminal or SSH session that started it closed), then SIGPIPE: it keeps
/// serving; SIGTERM still restores the host.
#[test]
fn closed_outputs_and_sigpipe_never_end_the_daemon() {
    let lab = Lab::builder().upstream().dut(Dut::on(1)).build();
    let config = lab.write_config(&Network::services().single());
    let mut command: Command = lab.exporter.command(
        &cli::binary().to_string_lossy(),
        &["load", &config.display().to_string()],
    );
    command
        .envs(cli::env(&lab.topology))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start dutnet load");
    /// SIGKILLs the daemon if the test fails before it stopped it.
    struct Reap(i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // SAFETY: kill with the PID of the daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let pid = i32::try_from(child.id()).unwrap();
    let _reap = Reap(pid);
    // The readers go: every later log line meets a closed pipe.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let up = cmd::wait_for(Duration::from_secs(15), || {
        (state(&lab) == "up").then_some(())
    });
    assert!(
        up.is_some(),
        "not up with closed outputs; dutnet: {:?}",
        child.try_wait()
    );

    // SAFETY: signals to the PID of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGPIPE) }, 0);
    // Log lines (a runtime change logs one), written into the closed pipe.
    let added = lab.dutnet(&["add-dns", "piped.lab.local", "10.99.0.1"]);
    assert!(added.success(), "{added:#?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a closed output or SIGPIPE ended dutnet"
    );
    assert_eq!(state(&lab), "up");

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let code = cmd::wait_with_limit(&mut child, Duration::from_secs(15));
    assert_eq!(code, Some(0), "SIGTERM with closed outputs");
    let addrs = lab
        .exporter
        .exec("ip", &["-4", "-o", "addr", "show", "dev", &dut_nic(1)]);
    assert!(
        !addrs.stdout.contains("192.168.100.1/"),
        "the gateway address was left: {addrs:#?}"
    );
    assert!(
        !lab.topology.path("state/undo.journal").exists(),
        "journal left: the host was not restored"
    );
}
