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
