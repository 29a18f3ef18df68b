//! DHCP and DNS served by dutnet, checked with real clients in DUT namespaces:
//! the lease dhclient/udhcpc got, the answer dig printed.
use std::time::Duration;

use dutnet_tests::{
    clients, cmd,
    lab::{
        Dut, Lab,
        config::{BOARD1_MAC, Network},
    },
    prereq,
};

/// The DUT's MAC `mac` decides its lease: [`BOARD1_MAC`] has the static one.
fn start(mac: &str) -> Lab {
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(mac))
        .resolv_conf()
        .build();
    lab.load(&Network::services().single());
    lab
}

/// Runs dhclient once (in its own UTS namespace, with a script that
/// changes nothing) and returns the lease file it wrote.
fn dhclient(lab: &Lab, extra_config: &str) -> String {
    prereq::require("dhclient", "isc-dhcp-client");
    let (out, leases) = clients::dhclient(lab.dut(1), "eth0", &lab.topology.dir, extra_config);
    assert!(
        out.success(),
        "dhclient failed: {out:#?}\ndutnet log:\n{}",
        lab.log()
    );
    leases
}

#[test]
fn dhclient_gets_the_static_lease_with_router_dns_and_hostname() {
    let lab = start(BOARD1_MAC);
    let lease = dhclient(&lab, "");
    for expected in [
        "fixed-address 192.168.100.10;",
        "option subnet-mask 255.255.255.0;",
        "option routers 192.168.100.1;",
        "option domain-name-servers 192.168.100.1;",
        "option host-name \"board1\";",
        "option domain-name \"lab.local\";",
    ] {
        assert!(
            lease.contains(expected),
            "missing `{expected}` in lease:\n{lease}"
        );
    }
}

#[test]
fn udhcpc_gets_the_static_lease_with_router_dns_and_hostname() {
    prereq::require("udhcpc", "udhcpc");
    let lab = start(BOARD1_MAC);
    let record = lab.topology.path("udhcpc.env");
    let script = lab.topology.path("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Records the lease; configures nothing.\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = lab.dut(1).exec(
        "udhcpc",
        &[
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-s",
            &script.display().to_string(),
        ],
    );
    assert!(out.success(), "udhcpc failed: {out:#?}\n{}", lab.log());
    let env = std::fs::read_to_string(&record).unwrap();
    for expected in [
        "ip=192.168.100.10",
        "subnet=255.255.255.0",
        "router=192.168.100.1",
        "dns=192.168.100.1",
        "hostname=board1",
        "domain=lab.local",
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "missing `{expected}` in:\n{env}"
        );
    }
}

#[test]
fn an_unknown_mac_gets_the_first_range_address_and_its_hostname_resolves() {
    prereq::require("dig", "dnsutils");
    let lab = start("02:00:00:00:09:99");
    let lease = dhclient(&lab, "send host-name \"dynboard\";\n");
    assert!(lease.contains("fixed-address 192.168.100.100;"), "{lease}");
    // The DUT needs its address to ask the DNS server.
    lab.dut(1).ip("addr add 192.168.100.100/24 dev eth0");
    let dig = |args: &[&str]| {
        let mut all = vec!["+short", "+time=2", "+tries=2", "@192.168.100.1"];
        all.extend(args);
        lab.dut(1).exec("dig", &all).ok().stdout.trim().to_owned()
    };
    let resolved = cmd::wait_for(Duration::from_secs(5), || {
        (dig(&["dynboard.lab.local"]) == "192.168.100.100").then_some(())
    });
    assert!(
        resolved.is_some(),
        "dynamic hostname not resolvable\n{}",
        lab.log()
    );
    assert_eq!(dig(&["-x", "192.168.100.100"]), "dynboard.lab.local.");
    assert_eq!(dig(&["board1.lab.local"]), "192.168.100.10");
    assert_eq!(dig(&["-x", "192.168.100.10"]), "board1.lab.local.");
    assert_eq!(dig(&["controller.lab.local"]), "10.99.0.1");
    assert_eq!(dig(&["-x", "10.99.0.1"]), "controller.lab.local.");
    // A local name has no AAAA: NODATA (empty answer, NOERROR), not NXDOMAIN.
    let aaaa = lab
        .dut(1)
        .exec(
            "dig",
            &["+time=2", "@192.168.100.1", "AAAA", "board1.lab.local"],
        )
        .ok();
    assert!(aaaa.stdout.contains("status: NOERROR"), "{aaaa:#?}");
}
