//! `dutnet config check` is a true preflight: it refuses every NAT rule
//! `dutnet load` and the control socket refuse, naming the key and the fix.
//! The binary only reads the file; nothing on the host changes.
use std::process::Command;

use dutnet_tests::{Output, Topology, cli, cmd, netns::COMMAND_LIMIT};

/// `dutnet config check FILE` on `yaml`, written into the topology's directory.
fn check(topology: &Topology, name: &str, yaml: &str) -> Output {
    let file = topology.path(name);
    std::fs::write(&file, yaml).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    let mut command = Command::new(cli::binary());
    command
        .args(["config", "check"])
        .arg(&file)
        .envs(cli::env(topology));
    cmd::run(command, COMMAND_LIMIT)
}

#[track_caller]
fn assert_refused(out: &Output, path: &str, needles: &[&str]) {
    assert_eq!(out.code, Some(1), "{out:#?}");
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!(": {path}: ")))
        .unwrap_or_else(|| panic!("no problem at {path}: {out:#?}"));
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} missing from {line:?}");
    }
    assert!(out.stderr.contains("1 problem found"), "{out:#?}");
}

#[test]
fn a_public_ip_under_masquerade_is_refused() {
    let topology = Topology::new();
    let out = check(
        &topology,
        "masquerade.yaml",
        "interface: dn-dut1\nnat_mode: masquerade\naddresses:\n  - ip: 192.168.100.10\n    public_ip: 10.99.0.50\n",
    );
    assert_refused(
        &out,
        "addresses[0].public_ip",
        &[
            "10.99.0.50 needs `nat_mode: 1to1`",
            "uses `masquerade`",
            "or remove public_ip",
        ],
    );
    // The same entry under 1to1 passes, and the mode is printed by its name.
    let out = check(
        &topology,
        "one_to_one.yaml",
        "interface: dn-dut1\nnat_mode: 1to1\naddresses:\n  - ip: 192.168.100.10\n    public_ip: 10.99.0.50\n",
    );
    assert!(out.success(), "{out:#?}");
    assert!(out.stdout.contains("nat_mode: 1to1"), "{out:#?}");
}

#[test]
fn nft_networks_sharing_a_subnet_are_refused() {
    let topology = Topology::new();
    let out = check(
        &topology,
        "shared.yaml",
        "networks:
  - {name: a, interface: dn-dut1, subnet: 192.168.100.0/24, datapath: nft}
  - {name: b, interface: dn-dut2, subnet: 192.168.100.0/24}
",
    );
    assert_refused(
        &out,
        "networks[1].subnet",
        &[
            "networks `a` and `b` share the subnet 192.168.100.0/24 (as networks[0] does)",
            "use `datapath: ebpf` for both, or give them different subnets",
        ],
    );
    // On eBPF the same subnets are the normal lab case.
    let out = check(
        &topology,
        "ebpf.yaml",
        "networks:
  - {name: a, interface: dn-dut1, subnet: 192.168.100.0/24, datapath: ebpf}
  - {name: b, interface: dn-dut2, subnet: 192.168.100.0/24}
",
    );
    assert!(out.success(), "{out:#?}");
}

/// A hostile or absurd file is refused quickly, with a short message, and
/// a BOM is no problem (issue #25 item 5), run as a user would.
#[test]
fn absurd_files_are_refused_fast_and_briefly() {
    let topology = Topology::new();
    let started = std::time::Instant::now();
    let nested = format!("interface: {}\n", "[".repeat(100_000));
    let out = check(&topology, "nested.yaml", &nested);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("nest more than 64 levels"), "{out:#?}");
    let big = format!("interface: dn-dut1\n# {}\n", "x".repeat(5 << 20));
    let out = check(&topology, "big.yaml", &big);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("larger than 4 MiB"), "{out:#?}");
    let long_name = format!("interface: {}\n", "e".repeat(3 << 20));
    let out = check(&topology, "long.yaml", &long_name);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.len() < 4096,
        "the message echoes the value: {} bytes",
        out.stderr.len()
    );
    // Three absurd files in well under the time one took before (39 s).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let out = check(&topology, "bom.yaml", "\u{feff}interface: dn-dut1\n");
    assert!(out.success(), "{out:#?}");
    let out = check(
        &topology,
        "huge.yaml",
        "interface: dn-dut1\nnat_table_size: 99999999999999999999999\nsubnet: 127.0.0.0/8\n",
    );
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("nat_table_size"), "{out:#?}");
    assert!(
        out.stderr.contains("loopback"),
        "every problem at once: {out:#?}"
    );
}

/// A 1:1 entry of `nat_mode: 1to1` with `keys` (YAML flow keys) added.
fn vlan_entry(keys: &str) -> String {
    format!(
        "interface: dn-dut1\nnat_mode: 1to1\naddresses:\n  - {{ip: 192.168.100.10, public_ip: 10.9.5.20, {keys}}}\n"
    )
}

/// `vlan_id` and `public_gateway` (jumpstarter PR #1068): each refusal
/// names its key and the fix; a VLAN without a gateway loads with a note.
#[test]
fn vlan_entries_are_checked_as_jumpstarter_checks_them() {
    let topology = Topology::new();
    let good = check(
        &topology,
        "vlan.yaml",
        &vlan_entry("vlan_id: 905, public_gateway: 10.9.5.1"),
    );
    assert!(good.success(), "{good:#?}");
    assert!(!good.stderr.contains("note"), "{good:#?}");
    for (name, keys, path, needles) in [
        (
            "zero",
            "vlan_id: 0, public_gateway: 10.9.5.1",
            "addresses[0].vlan_id",
            &["0 is not a VLAN id", "1 to 4094"][..],
        ),
        (
            "big",
            "vlan_id: 4095, public_gateway: 10.9.5.1",
            "addresses[0].vlan_id",
            &["4095 is not a VLAN id", "1 to 4094"][..],
        ),
        (
            "reserved",
            "vlan_id: 254, public_gateway: 10.9.5.1",
            "addresses[0].vlan_id",
            &["route table 254", "kernel reserves", "use another VLAN"][..],
        ),
        (
            "ipv6",
            "vlan_id: 905, public_gateway: \"2001:db8::1\"",
            "addresses[0].public_gateway",
            &["is an IPv6 address", "IPv4 only"][..],
        ),
        (
            "garbage",
            "vlan_id: 905, public_gateway: router",
            "addresses[0].public_gateway",
            &["`router` is not an IPv4 address"][..],
        ),
        (
            "inside",
            "vlan_id: 905, public_gateway: 192.168.100.1",
            "addresses[0].public_gateway",
            &["inside the DUT subnet"][..],
        ),
    ] {
        let out = check(&topology, &format!("{name}.yaml"), &vlan_entry(keys));
        assert_refused(&out, path, needles);
    }
    // Without a public_ip there is no 1:1 traffic to route.
    let out = check(
        &topology,
        "no-public.yaml",
        "interface: dn-dut1\nnat_mode: 1to1\naddresses:\n  - {ip: 192.168.100.10, vlan_id: 905}\n  - {ip: 192.168.100.11, public_ip: 10.9.5.21}\n",
    );
    assert_refused(
        &out,
        "addresses[0].vlan_id",
        &["needs `public_ip`", "or remove vlan_id"],
    );
    // Two DUTs of one VLAN share its route table, so its gateway.
    let out = check(
        &topology,
        "two-gateways.yaml",
        "interface: dn-dut1\nnat_mode: 1to1\naddresses:
  - {ip: 192.168.100.10, public_ip: 10.9.5.20, vlan_id: 905, public_gateway: 10.9.5.1}
  - {ip: 192.168.100.11, public_ip: 10.9.5.21, vlan_id: 905, public_gateway: 10.9.5.2}
",
    );
    assert_refused(
        &out,
        "addresses[1].public_gateway",
        &[
            "VLAN 905 has public_gateway 10.9.5.1 in addresses[0]",
            "the same gateway",
        ],
    );
    // A VLAN's table and sub-interface belong to one network.
    let out = check(
        &topology,
        "two-networks.yaml",
        "networks:
  - {name: a, interface: dn-dut1, nat_mode: 1to1, addresses: [{ip: 192.168.100.10, public_ip: 10.9.5.20, vlan_id: 905, public_gateway: 10.9.5.1}]}
  - {name: b, interface: dn-dut2, subnet: 192.168.101.0/24, nat_mode: 1to1, addresses: [{ip: 192.168.101.10, public_ip: 10.9.5.21, vlan_id: 905, public_gateway: 10.9.5.1}]}
",
    );
    assert_refused(
        &out,
        "networks[1].addresses[0].vlan_id",
        &[
            "VLAN 905 (route table 905) is also used by networks[0]",
            "one network",
        ],
    );
    // jumpstarter warns about a VLAN without a gateway; so does dutnet.
    let out = check(&topology, "no-gateway.yaml", &vlan_entry("vlan_id: 905"));
    assert!(out.success(), "{out:#?}");
    assert!(
        out.stderr
            .contains("note: addresses[0].vlan_id: VLAN 905 has no public_gateway"),
        "{out:#?}"
    );
}
