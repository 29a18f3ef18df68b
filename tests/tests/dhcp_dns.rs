//! DHCP and DNS served by dutnet, checked with real clients in DUT namespaces:
//! the lease dhclient/udhcpc got, the answer dig printed.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::time::Duration;

use dutnet_tests::{Netns, Topology, cli, clients, cmd, netns::Process, prereq};

struct Lab {
    topology: Topology,
    dut: Netns,
    daemon: Option<Process>,
}

const CONFIG: &str = "\
interface: dn-dut1
upstream_interface: dn-up
domain: lab.local
dns_servers: [\"10.99.0.1\"]
lease_time: 1h
addresses:
  - mac: \"02:00:00:00:01:0a\"
    ip: 192.168.100.10
    hostname: board1
dns_entries:
  - hostname: controller.lab.local
    ip: 10.99.0.1
";

impl Lab {
    /// An exporter with one DUT NIC and an upstream; the DUT's MAC is `mac`.
    fn start(mac: &str) -> Self {
        let mut topology = Topology::new();
        let (exporter, _lan) = topology.exporter_and_lan();
        let dut = topology.netns("dut");
        topology.veth((&exporter, "dn-dut1"), (&dut, "eth0"));
        dut.ip(&format!("link set eth0 address {mac}"));
        // Before the /etc/netns dir below: only a built Lab removes it.
        let daemon = cli::load(&topology, &exporter, CONFIG);
        // A client namespace gets its own resolv.conf: dhclient may write it.
        let etc = std::path::PathBuf::from("/etc/netns").join(&dut.name);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "").unwrap();
        Self {
            topology,
            dut,
            daemon: Some(daemon),
        }
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Process::log).unwrap_or_default()
    }

    /// Runs dhclient once (in its own UTS namespace, with a script that
    /// changes nothing) and returns the lease file it wrote.
    fn dhclient(&self, extra_config: &str) -> String {
        prereq::require("dhclient", "isc-dhcp-client");
        let (out, leases) = clients::dhclient(&self.dut, "eth0", &self.topology.dir, extra_config);
        assert!(
            out.success(),
            "dhclient failed: {out:#?}\ndutnet log:\n{}",
            self.log()
        );
        leases
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate();
        }
        let _ =
            std::fs::remove_dir_all(std::path::PathBuf::from("/etc/netns").join(&self.dut.name));
    }
}

#[test]
fn dhclient_gets_the_static_lease_with_router_dns_and_hostname() {
    let lab = Lab::start("02:00:00:00:01:0a");
    let lease = lab.dhclient("");
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
    let lab = Lab::start("02:00:00:00:01:0a");
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
    let out = lab.dut.exec(
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
    let lab = Lab::start("02:00:00:00:09:99");
    let lease = lab.dhclient("send host-name \"dynboard\";\n");
    assert!(lease.contains("fixed-address 192.168.100.100;"), "{lease}");
    // The DUT needs its address to ask the DNS server.
    lab.dut.ip("addr add 192.168.100.100/24 dev eth0");
    let dig = |args: &[&str]| {
        let mut all = vec!["+short", "+time=2", "+tries=2", "@192.168.100.1"];
        all.extend(args);
        lab.dut.exec("dig", &all).ok().stdout.trim().to_owned()
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
        .dut
        .exec(
            "dig",
            &["+time=2", "@192.168.100.1", "AAAA", "board1.lab.local"],
        )
        .ok();
    assert!(aaaa.stdout.contains("status: NOERROR"), "{aaaa:#?}");
}
