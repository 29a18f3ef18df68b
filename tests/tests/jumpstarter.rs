//! Against the real jumpstarter (issue #20): its own packages from PyPI,
//! pinned by `xtask/jumpstarter/requirements.txt` and installed by `cargo
//! xtask setup`, read what dutnet writes and accept what dutnet accepts.
use std::{path::PathBuf, process::Command};

use dutnet_tests::{
    Output, Topology, cli,
    clients::Dhclient,
    cmd,
    lab::{Dut, Lab, config::Network},
    netns::COMMAND_LIMIT,
    prereq,
};

const DUT_MAC: &str = "02:00:00:00:02:33";

/// The venv's Python with jumpstarter 0.9 in it.
fn jumpstarter_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/jumpstarter-venv/bin/python");
    assert!(
        python.exists(),
        "jumpstarter's packages are not installed: run `cargo xtask setup` (it makes {})",
        python.display()
    );
    python
}

/// Runs `script` in the jumpstarter venv with `args`.
fn python(script: &str, args: &[&str]) -> Output {
    let mut command = Command::new(jumpstarter_python());
    command.arg("-c").arg(script).args(args);
    cmd::run(command, COMMAND_LIMIT)
}

/// jumpstarter's `parse_leases` (imported from the installed package) reads
/// the lease file dutnet keeps in a network's `state_dir`, where
/// jumpstarter keeps dnsmasq's.
#[test]
fn jumpstarters_parse_leases_reads_dutnets_lease_file() {
    prereq::require("dhclient", "isc-dhcp-client");
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(DUT_MAC))
        .resolv_conf()
        .build();
    let state_dir = lab.topology.path("js-state");
    let config = Network::services()
        .set(&format!(
            "dhcp_range_start: 192.168.100.100\ndhcp_range_end: 192.168.100.200\nstate_dir: {}",
            state_dir.display()
        ))
        .single();
    lab.load(&config);
    let client = Dhclient::new(lab.dut(1), "eth0", &lab.topology.dir, "js", "");
    assert!(client.run().success(), "{}", lab.log());
    let leased = client.address().expect("a lease");

    let out = python(
        "import sys, pathlib
from jumpstarter_driver_dut_network.dnsmasq import parse_leases
for l in parse_leases(pathlib.Path(sys.argv[1])):
    print(l.mac, l.ip, l.expiry)",
        &[&state_dir.display().to_string()],
    );
    assert!(out.success(), "{out:#?}");
    let line = out.stdout.trim();
    assert!(
        line.starts_with(&format!("{DUT_MAC} {leased} ")),
        "jumpstarter read {line:?} from dutnet's lease file"
    );
    let expiry: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expiry > now, "expiry {expiry} is not in the future");
}

/// A filter jumpstarter's own `FilterConfig` accepts, dutnet accepts; one
/// it refuses, dutnet refuses (each case is given to both).
#[test]
fn filters_are_judged_as_jumpstarter_judges_them() {
    let cases = [
        "{}",
        "{egress: {policy: drop, rules: [{action: accept, destination: 10.0.0.5}]}}",
        "{ingress: {rules: [{action: drop, source: 10.0.0.0/8, protocol: tcp, port: 22}]}}",
        "{egress: {rules: [{action: accept, destination: 10.0.0.5/8}]}}",
        "{egress: {policy: allow}}",
        "{egress: {rules: [{action: reject}]}}",
        "{egress: {rules: [{action: drop, port: 22}]}}",
        "{egress: {rules: [{action: drop, protocol: icmp}]}}",
        "{egress: {rules: [{action: drop, destination: 10.0.0.300}]}}",
        "{egress: {rules: [{destination: 10.0.0.1}]}}",
    ];
    let topology = Topology::new();
    for case in cases {
        let js = python(
            "import sys, yaml
from jumpstarter_driver_dut_network.driver import FilterConfig
try:
    FilterConfig.from_dict(yaml.safe_load(sys.argv[1]))
    print('accepted')
except (ValueError, TypeError) as e:
    print('refused', e)",
            &[case],
        );
        assert!(js.success(), "{js:#?}");
        let file = topology.path("filter.yaml");
        std::fs::write(&file, format!("interface: dn-x\nfilter: {case}\n")).unwrap();
        let mut check = Command::new(cli::binary());
        check
            .args(["config", "check"])
            .arg(&file)
            .envs(cli::env(&topology));
        let ours = cmd::run(check, COMMAND_LIMIT);
        assert_eq!(
            js.stdout.starts_with("accepted"),
            ours.success(),
            "filter {case}: jumpstarter says {:?}, dutnet says {ours:#?}",
            js.stdout.trim()
        );
    }
}

/// `dutnet status --json` carries every field of jumpstarter's
/// `NetworkStatus` (and `InterfaceStatus`, and each lease's `DhcpLease`
/// fields), each of the type the installed package declares; dutnet's own
/// fields sit beside them.
#[test]
fn status_has_jumpstarters_network_status_fields() {
    prereq::require("dhclient", "isc-dhcp-client");
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(DUT_MAC))
        .resolv_conf()
        .build();
    let config = Network::services()
        .set("dhcp_range_start: 192.168.100.100\ndhcp_range_end: 192.168.100.200")
        .single();
    lab.load(&config);
    let client = Dhclient::new(lab.dut(1), "eth0", &lab.topology.dir, "js", "");
    assert!(client.run().success(), "{}", lab.log());
    let status = lab.json(&["status"]);
    let network = status["networks"][0].to_string();
    let out = python(
        r#"import sys, json, typing, dataclasses
from jumpstarter_driver_dut_network.driver import NetworkStatus
from jumpstarter_driver_dut_network.dnsmasq import DhcpLease
ours = json.loads(sys.argv[1])
def check(hints, value, where):
    for key, kind in typing.get_type_hints(hints).items():
        assert key in value, f"{where}: no `{key}` in {sorted(value)}"
        origin = typing.get_origin(kind) or kind
        if typing.is_typeddict(kind):
            assert isinstance(value[key], dict), f"{where}.{key}: not a mapping"
            check(kind, value[key], f"{where}.{key}")
            continue
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            allowed = tuple(typing.get_origin(a) or a for a in typing.get_args(kind))
        else:
            allowed = (origin,)
        allowed = tuple(type(None) if a is None else a for a in allowed)
        assert isinstance(value[key], allowed), f"{where}.{key}: {value[key]!r} is not {kind}"
check(NetworkStatus, ours, "status")
assert ours["leases"], "no lease listed"
for lease in ours["leases"]:
    for f in dataclasses.fields(DhcpLease):
        assert f.name in lease, f"lease: no `{f.name}`"
        assert isinstance(lease[f.name], f.type if isinstance(f.type, type) else eval(f.type)), f"lease.{f.name}"
for entry in ours["dns_entries"]:
    assert set(entry) >= {"hostname", "ip"}, entry
print("same fields")"#,
        &[&network],
    );
    assert!(
        out.success() && out.stdout.contains("same fields"),
        "{out:#?}\n{network}"
    );
}
