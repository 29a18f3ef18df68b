//! dutnet with exactly the capabilities `dist/dutnet.service` grants (its
//! bounding set; every other root power gone): it takes the NIC over, loads
//! the programs, serves DHCP and NATs, and restores the host on SIGTERM.
use std::time::Duration;

use dutnet_tests::{
    cli,
    clients::Dhclient,
    lab::{
        Dut, Lab,
        config::{BOARD1_MAC, DUT_IP, LAN_IP, Network, dut_nic},
    },
    prereq,
};

/// The unit's `CapabilityBoundingSet=`, as setpriv spells it.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/dutnet.service"
    ))
    .expect("dist/dutnet.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    format!("-all,{}", caps.join(","))
}

#[test]
fn the_units_capabilities_are_enough_and_nothing_more_is_needed() {
    prereq::require("setpriv", "util-linux");
    prereq::require("dhclient", "isc-dhcp-client");
    let lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(BOARD1_MAC))
        .resolv_conf()
        .build();
    let config = lab.write_config(&Network::services().single());
    let caps = unit_capabilities();
    let binary = cli::binary();
    let mut daemon = lab.exporter.spawn(
        "setpriv",
        &[
            &format!("--bounding-set={caps}"),
            "--",
            &binary.to_string_lossy(),
            "load",
            &config.display().to_string(),
        ],
        &cli::env(&lab.topology),
        lab.topology.path("capabilities.log"),
    );
    cli::wait_until_up(&lab.topology, &daemon);
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap_or_default();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX))
        .unwrap_or(u64::MAX);
    // CAP_NET_BIND_SERVICE 10, NET_RAW 13, NET_ADMIN 12, SYS_ADMIN 21,
    // PERFMON 38, BPF 39.
    let wanted = [10u32, 12, 13, 21, 38, 39]
        .iter()
        .fold(0u64, |m, c| m | (1 << c));
    assert_eq!(
        bounding, wanted,
        "the daemon ran with other capabilities: {status}"
    );

    let dut = lab.dut(1).clone();
    let client = Dhclient::new(&dut, "eth0", &lab.topology.path(""), "dut1", "");
    let out = client.run();
    assert_eq!(
        client.address().as_deref(),
        Some(DUT_IP.to_string().as_str()),
        "{out:#?}\n{}",
        daemon.log()
    );
    dut.ip(&format!("addr add {DUT_IP}/24 dev eth0"));
    dut.ip("route add default via 192.168.100.1");
    let ping = dut.exec("ping", &["-c", "1", "-W", "2", &LAN_IP.to_string()]);
    assert!(ping.success(), "{ping:#?}\n{}", daemon.log());
    let status = lab.dutnet(&["status"]);
    assert!(
        status.stdout.contains("ebpf"),
        "not on the fast path: {status:#?}"
    );

    assert_eq!(
        daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(15)),
        Some(0),
        "{}",
        daemon.log()
    );
    let addrs = lab
        .exporter
        .exec("ip", &["-4", "-o", "addr", "show", "dev", &dut_nic(1)]);
    assert!(!addrs.stdout.contains("192.168.100.1/"), "{addrs:#?}");
}
