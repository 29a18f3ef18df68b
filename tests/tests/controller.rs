//! The controller: taking a DUT NIC over and giving it back exactly as it
//! was, after SIGTERM, after SIGKILL (`dutnet down` or the next `load`), and
//! across a re-plug. Checked with `ip` and `sysctl`, as an engineer would.
use std::time::{Duration, Instant};

use dutnet_tests::{
    Netns, cmd,
    lab::{
        Dut, Lab,
        config::{self, DUT_IP, LAN_IP, Network, UPSTREAM_NIC},
    },
    netns::Process,
    prereq,
};

/// What an engineer would compare before and after: IPv4 addresses, link
/// state and the forwarding switches of the DUT and upstream interfaces.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    interfaces: Vec<(String, Vec<String>, bool, String)>,
    global_forwarding: String,
}

fn snapshot(ns: &Netns, interfaces: &[&str]) -> Snapshot {
    let interfaces = interfaces
        .iter()
        .map(|iface| {
            let addrs = ns
                .exec("ip", &["-4", "-o", "addr", "show", "dev", iface])
                .ok();
            let mut addrs: Vec<String> = addrs
                .stdout
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
                .collect();
            addrs.sort();
            let link = ns.exec("ip", &["-o", "link", "show", "dev", iface]).ok();
            let up = link.stdout.contains(",UP") || link.stdout.contains("<UP");
            let forwarding = ns.sysctl_get(&format!("net.ipv4.conf.{iface}.forwarding"));
            ((*iface).to_owned(), addrs, up, forwarding)
        })
        .collect();
    Snapshot {
        interfaces,
        global_forwarding: ns.sysctl_get("net.ipv4.ip_forward"),
    }
}

/// An exporter with DUT NICs (`dn-dutN`, a DUT namespace behind each) and an
/// upstream `dn-up` to a LAN host. The DUT NICs start with an unrelated
/// address and down, so a restore is visible.
fn lab(dut_count: usize) -> Lab {
    let mut builder = Lab::builder().upstream();
    for n in 1..=dut_count {
        builder = builder.dut(Dut::on(n).ip(DUT_IP));
    }
    let lab = builder.build();
    lab.exporter.ip(&format!("route add default via {LAN_IP}"));
    for n in 1..=dut_count {
        lab.exporter
            .ip(&format!("addr add 10.50.{n}.7/24 dev dn-dut{n}"));
        lab.exporter.ip(&format!("link set dn-dut{n} down"));
    }
    lab
}

/// Starts `dutnet load` on the lab's config, logging to `<log>.log`, without
/// waiting: the tests judge the takeover themselves.
fn load(lab: &Lab, log: &str) -> Process {
    lab.spawn(&[], log)
}

/// Waits until `iface` carries exactly the gateway address and is up.
fn wait_taken_over(lab: &Lab, iface: &str, daemon: &Process) {
    // Up first: after a SIGKILL the interface still looks taken over by the
    // dead daemon, and a SIGTERM before the new one's handlers exist would
    // end it by the signal's default action.
    dutnet_tests::cli::wait_until_up(&lab.topology, daemon);
    let done = cmd::wait_for(Duration::from_secs(15), || {
        let snap = snapshot(&lab.exporter, &[iface]);
        let (_, addrs, up, forwarding) = &snap.interfaces[0];
        (addrs == &["192.168.100.1/24"] && *up && forwarding == "1").then_some(())
    });
    assert!(
        done.is_some(),
        "{iface} not taken over; dutnet log:\n{}",
        daemon.log()
    );
}

/// The config of one masquerade network per interface, each with the LAN
/// host as its DNS upstream and one record.
fn masquerade(interfaces: &[&str]) -> String {
    config::networks(interfaces.iter().enumerate().map(|(i, iface)| {
        let network = Network::on(iface).set(&format!(
            "upstream_interface: {UPSTREAM_NIC}
dns_servers: [\"{LAN_IP}\"]
dns_entries:
  - hostname: controller.lab.local
    ip: {LAN_IP}"
        ));
        (format!("net{i}"), network)
    }))
}

const WATCHED: [&str; 2] = ["dn-dut1", "dn-up"];

#[test]
fn takeover_sets_exactly_the_gateway_and_sigterm_restores_everything() {
    let lab = lab(1);
    let before = snapshot(&lab.exporter, &WATCHED);
    lab.write_config(&masquerade(&["dn-dut1"]));
    let mut daemon = load(&lab, "load");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    let during = snapshot(&lab.exporter, &WATCHED);
    assert_eq!(
        during.interfaces[1].3, "1",
        "upstream forwarding on: {during:?}"
    );
    assert_eq!(
        during.global_forwarding, before.global_forwarding,
        "global ip_forward untouched"
    );

    assert_eq!(daemon.terminate(), Some(0), "dutnet log:\n{}", daemon.log());
    assert_eq!(
        snapshot(&lab.exporter, &WATCHED),
        before,
        "dutnet log:\n{}",
        daemon.log()
    );
    assert!(
        !lab.topology.path("state/undo.journal").exists(),
        "journal left after a clean exit"
    );
    assert!(
        lab.topology.dutnet_pins().is_empty(),
        "pins left after a clean exit"
    );
}

/// Sends `signal` to `daemon`, which must exit 0 having restored the
/// host to `before`, pins included.
fn signal_restores(lab: &Lab, daemon: &mut Process, signal: i32, before: &Snapshot) {
    assert_eq!(
        daemon.signal_and_wait(signal, Duration::from_secs(15)),
        Some(0),
        "dutnet log:\n{}",
        daemon.log()
    );
    assert_eq!(
        &snapshot(&lab.exporter, &WATCHED),
        before,
        "{}",
        daemon.log()
    );
    assert!(
        lab.topology.dutnet_pins().is_empty(),
        "pins left after signal {signal}"
    );
}

/// Closing the SSH session that runs `dutnet load` sends SIGHUP: the
/// daemon keeps running and serving; SIGQUIT stops it like SIGTERM,
/// restoring everything.
#[test]
fn sighup_never_ends_the_daemon_and_sigquit_restores_the_host() {
    let lab = lab(1);
    let before = snapshot(&lab.exporter, &WATCHED);
    lab.write_config(&masquerade(&["dn-dut1"]));
    let mut daemon = load(&lab, "load");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    let during = snapshot(&lab.exporter, &WATCHED);
    // SAFETY: kill with the PID of the daemon this test started.
    assert_eq!(unsafe { libc::kill(daemon.pid(), libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.is_running(),
        "SIGHUP ended dutnet:\n{}",
        daemon.log()
    );
    assert_eq!(
        snapshot(&lab.exporter, &WATCHED),
        during,
        "SIGHUP changed the host"
    );
    let status = lab.dutnet(&["status"]);
    assert!(status.success(), "no answer after SIGHUP: {status:#?}");
    assert!(daemon.log().contains("SIGHUP"), "{}", daemon.log());

    signal_restores(&lab, &mut daemon, libc::SIGQUIT, &before);
}

/// Ctrl-C on a foreground `dutnet load` (SIGINT) restores the host exactly,
/// as SIGTERM does.
#[test]
fn sigint_restores_the_host() {
    let lab = lab(1);
    let before = snapshot(&lab.exporter, &WATCHED);
    lab.write_config(&masquerade(&["dn-dut1"]));
    let mut daemon = load(&lab, "load");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    assert_ne!(
        snapshot(&lab.exporter, &WATCHED),
        before,
        "dutnet changed nothing to restore"
    );
    signal_restores(&lab, &mut daemon, libc::SIGINT, &before);
}

#[test]
fn after_sigkill_dutnet_down_restores_the_snapshot() {
    let lab = lab(1);
    let before = snapshot(&lab.exporter, &WATCHED);
    lab.write_config(&masquerade(&["dn-dut1"]));
    let mut daemon = load(&lab, "load");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    daemon.kill9();
    assert_ne!(
        snapshot(&lab.exporter, &WATCHED),
        before,
        "the kill left state to undo"
    );

    let down = lab.dutnet(&["down"]).ok();
    assert!(down.stdout.contains("undid"), "{down:#?}");
    assert_eq!(snapshot(&lab.exporter, &WATCHED), before);
    assert!(
        lab.topology.dutnet_pins().is_empty(),
        "pins left after down"
    );
    let again = lab.dutnet(&["down"]).ok();
    assert!(again.stdout.contains("nothing to do"), "{again:#?}");
}

#[test]
fn after_sigkill_load_again_comes_up_cleanly_with_nothing_duplicated() {
    let lab = lab(1);
    let before = snapshot(&lab.exporter, &WATCHED);
    lab.write_config(&masquerade(&["dn-dut1"]));
    let mut first = load(&lab, "first");
    wait_taken_over(&lab, "dn-dut1", &first);
    first.kill9();

    let mut second = load(&lab, "second");
    wait_taken_over(&lab, "dn-dut1", &second);
    assert!(
        second.log().contains("did not exit cleanly"),
        "{}",
        second.log()
    );
    assert_eq!(second.terminate(), Some(0), "{}", second.log());
    // The snapshot from before the FIRST run: the second run's journal
    // started from the restored state, not from the first run's leftovers.
    assert_eq!(snapshot(&lab.exporter, &WATCHED), before);
}

#[test]
fn a_recreated_dut_interface_is_configured_again_within_two_seconds() {
    let lab = lab(1);
    lab.write_config(&masquerade(&["dn-dut1"]));
    let mut daemon = load(&lab, "load");
    wait_taken_over(&lab, "dn-dut1", &daemon);

    // Unplug: the interface vanishes; plug: a new one with the same name.
    lab.exporter.ip("link del dn-dut1");
    std::thread::sleep(Duration::from_millis(300));
    lab.exporter.ip(&format!(
        "link add dn-dut1 type veth peer name eth0 netns {}",
        lab.dut(1).name
    ));
    let plugged = Instant::now();
    let configured = cmd::wait_for(Duration::from_secs(2), || {
        let snap = snapshot(&lab.exporter, &["dn-dut1"]);
        let (_, addrs, up, forwarding) = &snap.interfaces[0];
        (addrs == &["192.168.100.1/24"] && *up && forwarding == "1").then_some(plugged.elapsed())
    });
    assert!(
        configured.is_some(),
        "not re-configured within 2 s; log:\n{}",
        daemon.log()
    );
    assert!(daemon.is_running());
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
}

#[test]
fn a_missing_interface_is_waited_for_with_a_clear_log_line() {
    let lab = lab(1);
    lab.write_config(&masquerade(&["dn-late"]));
    let mut daemon = load(&lab, "load");
    let logged = cmd::wait_for(Duration::from_secs(10), || {
        daemon
            .log()
            .contains("does not exist yet; waiting")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", daemon.log());
    assert!(
        daemon.is_running(),
        "a missing interface must not stop dutnet"
    );
    lab.exporter.ip(&format!(
        "link add dn-late type veth peer name late0 netns {}",
        lab.dut(1).name
    ));
    wait_taken_over(&lab, "dn-late", &daemon);
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
}

#[test]
fn two_networks_with_the_same_subnet_on_two_nics_come_up_side_by_side() {
    prereq::require("dig", "dnsutils");
    let lab = lab(2);
    let before = snapshot(&lab.exporter, &["dn-dut1", "dn-dut2", "dn-up"]);
    lab.write_config(&masquerade(&["dn-dut1", "dn-dut2"]));
    let mut daemon = load(&lab, "load");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    wait_taken_over(&lab, "dn-dut2", &daemon);
    // Each network's own DNS server answers its DUT (same gateway IP, two NICs).
    for dut in &lab.duts {
        let dig = dut.exec(
            "dig",
            &[
                "+short",
                "+time=2",
                "+tries=2",
                "@192.168.100.1",
                "controller.lab.local",
            ],
        );
        assert_eq!(
            dig.stdout.trim(),
            "10.99.0.1",
            "{}: {dig:#?}\n{}",
            dut.name,
            daemon.log()
        );
    }
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
    assert_eq!(
        snapshot(&lab.exporter, &["dn-dut1", "dn-dut2", "dn-up"]),
        before
    );
}

#[test]
fn a_bad_config_exits_non_zero_before_touching_anything() {
    let lab = lab(1);
    let before = snapshot(&lab.exporter, &WATCHED);
    let config = lab.write_config("interface: dn-dut1\ngateway_ip: 10.1.2.3\nhostnmae: x\n");
    let out = lab.dutnet(&["load", &config.display().to_string()]);
    assert!(!out.success(), "{out:#?}");
    assert!(out.stderr.contains("gateway_ip"), "names the key: {out:#?}");
    assert!(
        out.stderr.contains("hostnmae"),
        "names the unknown key: {out:#?}"
    );
    assert_eq!(snapshot(&lab.exporter, &WATCHED), before);
    assert!(!lab.topology.path("state/undo.journal").exists());
}

#[test]
fn a_second_dutnet_is_refused_while_one_runs() {
    let lab = lab(1);
    let config = lab.write_config(&masquerade(&["dn-dut1"]));
    let mut daemon = load(&lab, "load");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    let second = lab.dutnet(&["load", &config.display().to_string()]);
    assert!(!second.success());
    assert!(second.stderr.contains("already running"), "{second:#?}");
    // `dutnet down` stops the running one, which restores the host.
    let down = lab.dutnet(&["down"]).ok();
    assert!(down.stdout.contains("stopped dutnet"), "{down:#?}");
    assert!(!daemon.is_running());
}

/// Addresses that exercise every attribute `ip addr add` can set, added to
/// `dn-dut1` after the lab's plain `10.50.1.7/24` (no broadcast).
const EXACT_ADDRESSES: [&str; 6] = [
    // A secondary of the plain address: it must stay behind its primary.
    "10.50.1.8/24",
    "172.31.8.1 peer 172.31.8.2/32",
    "10.60.0.5/24 brd 10.60.0.127 label dn-dut1:lab",
    "10.61.0.5/24 noprefixroute scope link",
    "10.62.0.5/24 metric 50",
    // Finite lifetimes: the kernel counts them down by itself.
    "10.63.0.5/24 valid_lft 3600 preferred_lft 1800",
];

/// `ip -j addr show dev IFACE` parsed, with the seconds left of each finite
/// lifetime taken out (they count down whatever dutnet does, so they are
/// compared separately) and returned as `(local, valid, preferred)`.
fn ip_addr_json(ns: &Netns, iface: &str) -> (serde_json::Value, Vec<(String, u64, u64)>) {
    const FOREVER: u64 = u32::MAX as u64;
    let out = ns.exec("ip", &["-j", "addr", "show", "dev", iface]).ok();
    let mut json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ip -j is not JSON ({e}): {}", out.stdout));
    let mut finite = Vec::new();
    for address in json[0]["addr_info"].as_array_mut().into_iter().flatten() {
        let valid = address["valid_life_time"].as_u64().unwrap_or(FOREVER);
        let preferred = address["preferred_life_time"].as_u64().unwrap_or(FOREVER);
        if valid != FOREVER || preferred != FOREVER {
            let local = address["local"].as_str().unwrap_or_default().to_owned();
            finite.push((local, valid, preferred));
            address["valid_life_time"] = "finite".into();
            address["preferred_life_time"] = "finite".into();
        }
    }
    (json, finite)
}

/// The interface is as it was: the same JSON, and each finite lifetime no
/// longer than before and shorter by no more than the time gone by.
#[track_caller]
fn assert_addresses_as_before(
    lab: &Lab,
    before: &(serde_json::Value, Vec<(String, u64, u64)>),
    since: Instant,
    what: &str,
    log: &str,
) {
    let (json, finite) = ip_addr_json(&lab.exporter, "dn-dut1");
    assert_eq!(
        json, before.0,
        "{what}: `ip -j addr show dev dn-dut1` differs\ndutnet log:\n{log}"
    );
    let gone_by = since.elapsed().as_secs() + 1;
    assert_eq!(finite.len(), before.1.len(), "{what}: {finite:?}");
    for ((local, valid, preferred), (_, valid_0, preferred_0)) in finite.iter().zip(&before.1) {
        for (now, then) in [(valid, valid_0), (preferred, preferred_0)] {
            assert!(
                now <= then && now + gone_by >= *then,
                "{what}: {local}'s lifetime is {now} s, was {then} s {gone_by} s ago"
            );
        }
    }
}

#[test]
fn every_address_attribute_comes_back_after_sigterm_down_and_reload() {
    let lab = lab(1);
    for address in EXACT_ADDRESSES {
        lab.exporter.ip(&format!("addr add {address} dev dn-dut1"));
    }
    let before = ip_addr_json(&lab.exporter, "dn-dut1");
    let started = Instant::now();
    lab.write_config(&masquerade(&["dn-dut1"]));

    let mut daemon = load(&lab, "term");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
    assert_addresses_as_before(&lab, &before, started, "after SIGTERM", &daemon.log());

    let mut daemon = load(&lab, "kill");
    wait_taken_over(&lab, "dn-dut1", &daemon);
    daemon.kill9();
    let down = lab.dutnet(&["down"]).ok();
    assert!(down.stdout.contains("undid"), "{down:#?}");
    assert_addresses_as_before(
        &lab,
        &before,
        started,
        "after SIGKILL + down",
        &daemon.log(),
    );

    let mut first = load(&lab, "reload-first");
    wait_taken_over(&lab, "dn-dut1", &first);
    first.kill9();
    let mut second = load(&lab, "reload-second");
    wait_taken_over(&lab, "dn-dut1", &second);
    assert_eq!(second.terminate(), Some(0), "{}", second.log());
    assert_addresses_as_before(
        &lab,
        &before,
        started,
        "after SIGKILL + load + SIGTERM",
        &second.log(),
    );
}
