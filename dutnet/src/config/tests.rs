//! Loading tests: the shapes, the defaults, the fixtures, and one test per
//! validation rule asserting the problem names its key path.
use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use proptest::prelude::*;

use super::*;
use crate::datapath::expiry::FlowTimeouts;

fn load(yaml: &str) -> LoadedConfig {
    match parse_str(yaml) {
        Ok(c) => c,
        Err(e) => panic!("expected the config to load, got:\n{e}"),
    }
}

fn problems(yaml: &str) -> Vec<Problem> {
    match parse_str(yaml) {
        Ok(c) => panic!("expected problems, the config loaded: {c:?}"),
        Err(e) => e.problems,
    }
}

/// Asserts one problem sits at `path` and its message contains `needle`.
#[track_caller]
fn assert_problem(yaml: &str, path: &str, needle: &str) {
    let found = problems(yaml);
    assert!(
        found
            .iter()
            .any(|p| p.path == path && p.message.contains(needle)),
        "no problem at `{path}` containing {needle:?}; got:\n{}",
        ConfigError {
            problems: found.clone()
        }
    );
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// A valid single network with `extra` appended (indented as top-level keys).
fn single(extra: &str) -> String {
    format!("interface: eth2\n{extra}")
}

// ---- shapes and defaults ------------------------------------------------

#[test]
fn single_mapping_gets_every_default() {
    let c = load("interface: eth2\n");
    assert_eq!(c.networks.len(), 1);
    let n = &c.networks[0];
    assert_eq!(n.name, "eth2");
    assert_eq!(n.subnet, DEFAULT_SUBNET);
    assert_eq!(n.gateway_ip, ip(192, 168, 100, 1));
    assert_eq!(n.upstream_interface, None);
    assert_eq!(n.public_interface, None);
    assert_eq!(n.nat_mode, NatMode::Masquerade);
    assert_eq!(n.datapath, DatapathChoice::Auto);
    assert_eq!(
        n.dhcp,
        DhcpSettings {
            enabled: true,
            range_start: ip(192, 168, 100, 100),
            range_end: ip(192, 168, 100, 200),
            lease_time: Duration::from_secs(12 * 3600),
        }
    );
    assert_eq!(
        n.dns_servers,
        [IpAddr::V4(ip(8, 8, 8, 8)), IpAddr::V4(ip(8, 8, 4, 4))]
    );
    assert!(n.addresses.is_empty() && n.dns_entries.is_empty());
    assert_eq!(n.domain, None);
    assert_eq!(n.dns_timeout, Duration::from_secs(2));
    assert_eq!(n.nat_timeouts.udp, Duration::from_secs(120));
    assert_eq!(n.nat_timeouts, FlowTimeouts::default());
    assert_eq!(n.nat_table_size, 16_384);
    assert_eq!(n.nat_flows_per_dut, 8_192);
    assert_eq!(n.state_dir, None);
    assert!(c.notes.is_empty());
}

#[test]
fn defaults_follow_a_custom_subnet() {
    let n = &load("interface: eth2\nsubnet: 10.1.2.0/24\n").networks[0];
    assert_eq!(n.gateway_ip, ip(10, 1, 2, 1));
    assert_eq!(n.dhcp.range_start, ip(10, 1, 2, 100));
    assert_eq!(n.dhcp.range_end, ip(10, 1, 2, 200));
}

#[test]
fn identical_subnets_on_two_nics_are_the_normal_case() {
    let c = load(
        "networks:
  - name: a
    interface: eth2
    subnet: 192.168.100.0/24
    gateway_ip: 192.168.100.1
    addresses: [{ip: 192.168.100.10, mac: '02:00:00:00:01:0a', hostname: board}]
  - name: b
    interface: eth3
    subnet: 192.168.100.0/24
    gateway_ip: 192.168.100.1
    addresses: [{ip: 192.168.100.10, mac: '02:00:00:00:01:0a', hostname: board}]
",
    );
    assert_eq!(c.networks.len(), 2);
    assert_eq!(c.networks[0].subnet, c.networks[1].subnet);
    assert_eq!(c.networks[1].name, "b");
}

#[test]
fn values_typed_and_quoted_alike() {
    let n = &load(
        "interface: eth2
gateway_ip: \"192.168.100.1\"
dhcp_enabled: false
lease_time: 3600
dns_timeout: 500ms
udp_timeout: \"30s\"
nat_mode: none
datapath: nft
nat_table_size: 1024
state_dir: /var/lib/x
",
    )
    .networks[0];
    assert!(!n.dhcp.enabled);
    assert_eq!(n.dhcp.lease_time, Duration::from_secs(3600));
    assert_eq!(n.dns_timeout, Duration::from_millis(500));
    assert_eq!(n.nat_timeouts.udp, Duration::from_secs(30));
    assert_eq!(n.nat_mode, NatMode::Disabled);
    assert_eq!(n.datapath, DatapathChoice::Nft);
    assert_eq!(n.nat_table_size, 1024);
    assert_eq!(
        n.state_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/x"))
    );
}

#[test]
fn jumpstarter_fixtures_load_unchanged() {
    let fixtures = [
        include_str!("../../../examples/jumpstarter-masquerade.yaml"),
        include_str!("../../../examples/jumpstarter-1to1.yaml"),
        include_str!("../../../examples/jumpstarter-disabled.yaml"),
        include_str!("../../../examples/jumpstarter-dns.yaml"),
        include_str!("../../../examples/jumpstarter-filter.yaml"),
    ];
    for text in fixtures {
        let c = load(text);
        assert_eq!(c.networks.len(), 1);
        assert_eq!(c.networks[0].name, "dut-network");
        assert_eq!(
            c.notes,
            [
                "export `power` (type jumpstarter_driver_power.driver.MockPower) is not a DutNetwork; ignored"
            ]
        );
    }
    let one = &load(fixtures[1]).networks[0];
    assert_eq!(one.nat_mode, NatMode::OneToOne);
    assert_eq!(one.upstream_interface.as_deref(), Some("enp2s0"));
    assert_eq!(one.addresses[2].mac, None);
    assert_eq!(one.addresses[2].public_ip, Some(ip(10, 26, 28, 86)));
    let dns = &load(fixtures[3]).networks[0];
    assert_eq!(dns.dns_entries[1].hostname, "registry.lab.local");
    assert_eq!(load(fixtures[2]).networks[0].interface, "enx00e04c683af1");
    let filtered = &load(fixtures[4]).networks[0];
    let filter = filtered.filter.as_ref().expect("the file's filter");
    assert_eq!(filter.egress.as_ref().map(|e| e.rules.len()), Some(2));
    assert_eq!(filter.ingress.as_ref().map(|e| e.rules.len()), Some(1));
}

#[test]
fn shipped_examples_load() {
    let lab = load(include_str!("../../../examples/lab.yaml"));
    assert_eq!(lab.networks.len(), 6);
    let pxe = &lab.networks[5].dhcp_options;
    assert_eq!(pxe.boot_rules.len(), 3);
    assert_eq!(
        lab.networks[4].addresses[0]
            .dhcp_options
            .boot_file
            .as_deref(),
        Some("imx8-board/boot.scr.uimg")
    );
    assert_eq!(lab.networks[0].subnet, lab.networks[1].subnet);
    // The reference shows the defaults: they must be the defaults.
    let bench_a = &lab.networks[0];
    assert_eq!(bench_a.nat_timeouts, FlowTimeouts::default());
    assert_eq!(
        (bench_a.nat_table_size, bench_a.nat_flows_per_dut),
        (DEFAULT_NAT_TABLE_SIZE, DEFAULT_NAT_TABLE_SIZE / 2)
    );
    let demo = load(include_str!("../../../examples/demo.yaml"));
    let names: Vec<_> = demo.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["dut1", "dut2"]);
    assert_eq!(demo.networks[1].interface, "dn-dut2");
    assert_eq!(
        demo.networks[1].addresses[0].mac,
        Some(MacAddr([2, 0, 0, 0, 2, 10]))
    );
    assert_eq!(demo.networks[0].domain.as_deref(), Some("lab.local"));
}

#[test]
fn yaml_merge_keys_share_settings() {
    let c = load(
        "networks:
  - &base
    name: a
    interface: eth2
    subnet: 10.0.0.0/24
  - <<: *base
    name: b
    interface: eth3
",
    );
    assert_eq!(c.networks[1].subnet, c.networks[0].subnet);
    assert_eq!(c.networks[1].interface, "eth3");
}

#[test]
fn exporter_without_dut_network_is_an_error() {
    assert_problem(
        "apiVersion: v1\nexport:\n  power:\n    type: x.MockPower\n",
        "",
        "no network",
    );
}

#[test]
fn normalized_model_serializes() {
    let c = load(include_str!("../../../examples/demo.yaml"));
    let yaml = serde_yaml::to_string(&c).unwrap_or_default();
    assert!(yaml.contains("lease_time: 12h"), "{yaml}");
    assert!(yaml.contains("mac: 02:00:00:00:01:0a"), "{yaml}");
    assert!(yaml.contains("nat_mode: masquerade"), "{yaml}");
    let json = serde_json::to_string(&c).unwrap_or_default();
    assert!(json.contains("\"subnet\":\"192.168.100.0/24\""), "{json}");
}

// ---- structure ----------------------------------------------------------

#[test]
fn unknown_key_names_full_path_and_hint() {
    let e = parse_str(
        "networks:
  - {name: a, interface: eth2}
  - name: b
    interface: eth3
    addresses:
      - ip: 192.168.100.10
        hostnme: x
",
    );
    let text = e.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
    assert_eq!(
        text,
        "networks[1].addresses[0].hostnme: unknown key; did you mean `hostname`?"
    );
}

#[test]
fn unknown_key_in_exporter_config_and_dns_entry() {
    let yaml = "export:
  net:
    type: jumpstarter_driver_dut_network.driver.DutNetwork
    config:
      interface: eth2
      gatway_ip: 192.168.100.1
      dns_entries: [{hostname: a, ipp: 1.2.3.4}]
";
    assert_problem(
        yaml,
        "export.net.config.gatway_ip",
        "did you mean `gateway_ip`?",
    );
    assert_problem(
        yaml,
        "export.net.config.dns_entries[0].ipp",
        "did you mean `ip`?",
    );
}

#[test]
fn unknown_top_level_key_beside_networks() {
    assert_problem(
        "networks: []\nnetwrks: 1\n",
        "netwrks",
        "did you mean `networks`?",
    );
}

#[test]
fn wrong_value_kind_is_reported() {
    assert_problem(
        &single("dhcp_enabled: \"sometimes\"\n"),
        "dhcp_enabled",
        "true or false",
    );
    assert_problem(
        &single("addresses: {ip: 1}\n"),
        "addresses",
        "a list of mappings",
    );
}

#[test]
fn missing_interface() {
    assert_problem("subnet: 10.0.0.0/24\n", "interface", "is required");
}

#[test]
fn networks_need_valid_unique_names() {
    assert_problem(
        "networks:\n  - interface: eth2\n",
        "networks[0].name",
        "is required",
    );
    assert_problem(
        "networks:\n  - {name: Bad.Name, interface: eth2}\n",
        "networks[0].name",
        "contains '.'",
    );
    assert_problem(
        "networks:\n  - {name: a, interface: eth2}\n  - {name: a, interface: eth3}\n",
        "networks[1].name",
        "networks[0]",
    );
}

#[test]
fn name_not_allowed_in_single_or_exporter_shapes() {
    assert_problem("name: x\ninterface: eth2\n", "name", "networks:");
    let exporter =
        "export:\n  Net.1:\n    type: a.DutNetwork\n    config: {interface: eth2, name: x}\n";
    assert_problem(exporter, "export.Net.1.config.name", "named by its export");
    assert_problem(exporter, "export.Net.1", "contains '.'");
}

/// jumpstarter names exports freely (capitals too) and nests drivers in a
/// Composite's `children:`; a DutNetwork there is a network like any other.
#[test]
fn a_dut_network_inside_a_composite_with_a_capitalised_name_loads() {
    let c = load(
        "export:
  Lab-A:
    type: jumpstarter_driver_composite.driver.Composite
    children:
      power:
        type: jumpstarter_driver_power.driver.MockPower
      DutNet:
        type: jumpstarter_driver_dut_network.driver.DutNetwork
        config: {interface: eth2}
",
    );
    assert_eq!(c.networks.len(), 1);
    assert_eq!(c.networks[0].name, "DutNet");
    assert_eq!(c.networks[0].interface, "eth2");
    assert_problem(
        "export:\n  a:\n    type: x.Composite\n    children: [1]\n",
        "export.a.children",
        "expected a mapping",
    );
}

#[test]
fn not_yaml_or_not_a_mapping() {
    assert_problem("interface: [\n", "", "not valid YAML");
    assert_problem("- a\n", "", "expected a mapping");
    assert_problem("", "", "expected a mapping");
}

#[test]
fn every_problem_is_collected() {
    let found = problems(
        "interface: eth/2
subnet: 10.0.0.0/24
gateway_ip: 10.0.1.1
lease_time: 5
addresses:
  - {ip: 10.0.0.5, mac: 'ff:ff:ff:ff:ff:ff'}
  - {ip: 10.0.0.5, hostname: -bad}
",
    );
    let paths: Vec<_> = found.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "interface",
        "gateway_ip",
        "lease_time",
        "addresses[0].mac",
        "addresses[1].ip",
        "addresses[1].hostname",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    // A bad value in an entry does not hide the entry's other problems.
    let found = problems(&single(
        "addresses: [{ip: 192.168.100.1, mac: '01:00:5e:00:00:01', public_ip: 'no such'}]\n",
    ));
    let paths: Vec<_> = found.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "addresses[0].public_ip",
        "addresses[0].ip",
        "addresses[0].mac",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
}

// ---- one test per rule --------------------------------------------------

#[test]
fn bad_ip_strings() {
    assert_problem(
        &single("gateway_ip: 192.168.100\n"),
        "gateway_ip",
        "not an IPv4 address",
    );
    assert_problem(
        &single("subnet: 192.168.100.0\n"),
        "subnet",
        "address/prefix",
    );
    assert_problem(
        &single("subnet: 192.168.100.1/24\n"),
        "subnet",
        "192.168.100.0/24",
    );
    assert_problem(&single("subnet: 192.168.100.0/31\n"), "subnet", "/30");
}

#[test]
fn gateway_inside_subnet() {
    assert_problem(
        &single("gateway_ip: 10.0.0.1\n"),
        "gateway_ip",
        "outside the subnet",
    );
}

#[test]
fn gateway_not_network_or_broadcast() {
    assert_problem(
        &single("gateway_ip: 192.168.100.0\n"),
        "gateway_ip",
        "network address",
    );
    assert_problem(
        &single("gateway_ip: 192.168.100.255\n"),
        "gateway_ip",
        "broadcast address",
    );
}

#[test]
fn range_inside_subnet() {
    assert_problem(
        &single("dhcp_range_end: 192.168.101.5\n"),
        "dhcp_range_end",
        "outside the subnet",
    );
    // A default range that does not fit a small subnet says how to fix it.
    assert_problem(
        &single("subnet: 10.0.0.0/28\n"),
        "dhcp_range_start",
        "the default 10.0.0.100 (network address + 100) does not fit the subnet 10.0.0.0/28; set dhcp_range_start",
    );
    // ... unless DHCP is off.
    load(&single("subnet: 10.0.0.0/28\ndhcp_enabled: false\n"));
}

#[test]
fn range_start_not_after_end() {
    assert_problem(
        &single("dhcp_range_start: 192.168.100.200\ndhcp_range_end: 192.168.100.100\n"),
        "dhcp_range_start",
        "swap",
    );
}

#[test]
fn gateway_not_in_range() {
    assert_problem(
        &single("gateway_ip: 192.168.100.150\n"),
        "dhcp_range_start",
        "contains the gateway",
    );
}

#[test]
fn static_ip_inside_subnet_and_not_gateway() {
    assert_problem(
        &single("addresses: [{ip: 10.0.0.5}]\n"),
        "addresses[0].ip",
        "outside the subnet",
    );
    assert_problem(
        &single("addresses: [{ip: 192.168.100.1}]\n"),
        "addresses[0].ip",
        "gateway",
    );
    assert_problem(
        &single("addresses: [{ip: 192.168.100.255}]\n"),
        "addresses[0].ip",
        "broadcast",
    );
    assert_problem(
        &single("addresses: [{hostname: x}]\n"),
        "addresses[0].ip",
        "is required",
    );
}

#[test]
fn duplicate_mac() {
    assert_problem(
        &single(
            "addresses:\n  - {ip: 192.168.100.10, mac: '02:00:00:00:00:01'}\n  - {ip: 192.168.100.11, mac: '02-00-00-00-00-01'}\n",
        ),
        "addresses[1].mac",
        "addresses[0]",
    );
}

#[test]
fn duplicate_ip() {
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10}, {ip: 192.168.100.10}]\n"),
        "addresses[1].ip",
        "already used by addresses[0]",
    );
}

#[test]
fn duplicate_hostname() {
    assert_problem(
        &single(
            "addresses: [{ip: 192.168.100.10, hostname: b1}, {ip: 192.168.100.11, hostname: B1}]\n",
        ),
        "addresses[1].hostname",
        "unique",
    );
    assert_problem(
        &single("dns_entries: [{hostname: a.lab, ip: 1.1.1.1}, {hostname: a.lab, ip: 1.1.1.2}]\n"),
        "dns_entries[1].hostname",
        "dns_entries[0]",
    );
}

#[test]
fn one_to_one_needs_a_public_ip() {
    assert_problem(
        &single("nat_mode: 1to1\naddresses: [{ip: 192.168.100.10}]\n"),
        "nat_mode",
        "public_ip",
    );
}

#[test]
fn public_ip_resolves_names_at_load() {
    assert_eq!(
        resolve_public_ip("localhost", system_resolver),
        Ok(Ipv4Addr::LOCALHOST)
    );
    // Resolved at load, then judged as the address it names (loopback
    // cannot be a public address).
    assert_problem(
        &single("nat_mode: 1to1\naddresses: [{ip: 192.168.100.10, public_ip: localhost}]\n"),
        "addresses[0].public_ip",
        "127.0.0.1 is in 127.0.0.0/8, loopback",
    );
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10, public_ip: 'not a host'}]\n"),
        "addresses[0].public_ip",
        "neither an IPv4 address nor a host name",
    );
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10, public_ip: 192.168.100.20}]\n"),
        "addresses[0].public_ip",
        "inside the DUT subnet",
    );
    assert_problem(
        &single(
            "addresses: [{ip: 192.168.100.10, public_ip: 10.0.0.1}, {ip: 192.168.100.11, public_ip: 10.0.0.1}]\n",
        ),
        "addresses[1].public_ip",
        "own public IP",
    );
}

#[test]
fn public_ip_resolution_failures() {
    // A fake resolver: no DNS query leaves the machine.
    let unresolvable = |_: &str| Err(std::io::Error::other("no such host"));
    let v6_only = |_: &str| {
        Ok(vec![
            "::1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ])
    };
    let err = resolve_public_ip("dut.example", unresolvable)
        .err()
        .unwrap_or_default();
    assert!(err.contains("cannot resolve `dut.example`"), "{err}");
    let err = resolve_public_ip("dut.example", v6_only)
        .err()
        .unwrap_or_default();
    assert!(err.contains("no IPv4 address"), "{err}");
    assert_eq!(
        resolve_public_ip("10.1.2.3", unresolvable),
        Ok(ip(10, 1, 2, 3))
    );
}

#[test]
fn interface_names_valid() {
    assert_problem("interface: eth 2\n", "interface", "whitespace");
    assert_problem(
        &single("upstream_interface: a-name-that-is-too-long\n"),
        "upstream_interface",
        "at most 15",
    );
    assert_problem(
        &single("public_interface: ..\n"),
        "public_interface",
        "not a valid interface name",
    );
}

#[test]
fn dut_interface_not_upstream_or_public() {
    assert_problem(
        &single("upstream_interface: eth2\n"),
        "upstream_interface",
        "DUT interface",
    );
    assert_problem(
        &single("public_interface: eth2\n"),
        "public_interface",
        "DUT interface",
    );
    assert_problem(
        "networks:\n  - {name: a, interface: eth2}\n  - {name: b, interface: eth3, upstream_interface: eth2}\n",
        "networks[1].upstream_interface",
        "networks[0]",
    );
}

#[test]
fn one_network_per_dut_interface() {
    assert_problem(
        "networks:\n  - {name: a, interface: eth2}\n  - {name: b, interface: eth2, subnet: 10.0.0.0/24}\n",
        "networks[1].interface",
        "already the DUT interface of networks[0]",
    );
}

#[test]
fn cross_network_rules_see_faulty_networks_too() {
    let found = problems(
        "networks:\n  - {name: a, interface: eth2}\n  - {name: b, interface: eth2, gateway_ip: 10.0.0.1}\n  - {name: c}\n  - {name: d}\n",
    );
    let paths: Vec<_> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "networks[1].gateway_ip",
            "networks[2].interface",
            "networks[3].interface",
            "networks[1].interface"
        ]
    );
}

#[test]
fn public_ip_unique_across_networks() {
    assert_problem(
        "networks:
  - {name: a, interface: eth2, addresses: [{ip: 192.168.100.10, public_ip: 10.0.0.1}]}
  - {name: b, interface: eth3, addresses: [{ip: 192.168.100.10, public_ip: 10.0.0.1}]}
",
        "networks[1].addresses[0].public_ip",
        "networks[0]",
    );
}

#[test]
fn hostnames_valid() {
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10, hostname: bad_name}]\n"),
        "addresses[0].hostname",
        "RFC 1123",
    );
    assert_problem(
        &single("dns_entries: [{hostname: -x.lab, ip: 1.1.1.1}]\n"),
        "dns_entries[0].hostname",
        "RFC 1123",
    );
    assert_problem(&single("domain: lab..local\n"), "domain", "empty label");
}

#[test]
fn dns_servers_are_ip_addresses() {
    assert_problem(
        &single("dns_servers: [8.8.8.8, dns.google]\n"),
        "dns_servers[1]",
        "not an IP address",
    );
    let n = &load(&single("dns_servers: ['2001:4860:4860::8888']\n")).networks[0];
    assert!(n.dns_servers[0].is_ipv6());
}

#[test]
fn lease_time_at_least_a_minute() {
    assert_problem(&single("lease_time: 30s\n"), "lease_time", "at least 1m");
    assert_problem(&single("lease_time: 12 hours\n"), "lease_time", "\"12h\"");
    load(&single("lease_time: 60\n"));
}

#[test]
fn timeouts_and_table_size() {
    assert_problem(&single("udp_timeout: 0s\n"), "udp_timeout", "at least 1s");
    assert_problem(&single("dns_timeout: 0\n"), "dns_timeout", "2s");
    assert_problem(
        &single("nat_table_size: 1000\n"),
        "nat_table_size",
        "1024 to 4194304",
    );
    assert_problem(
        &single("nat_table_size: 99999999999\n"),
        "nat_table_size",
        "out of range",
    );
}

#[test]
fn flows_per_dut_defaults_to_half_the_table() {
    let n = &load(&single("nat_table_size: 1025\n")).networks[0];
    assert_eq!(n.nat_flows_per_dut, 512);
}

#[test]
fn flows_per_dut_can_be_set() {
    let n = &load(&single("nat_table_size: 2048\nnat_flows_per_dut: 100\n")).networks[0];
    assert_eq!((n.nat_table_size, n.nat_flows_per_dut), (2048, 100));
    // One DUT may be given the whole table.
    let n = &load(&single("nat_table_size: 2048\nnat_flows_per_dut: 2048\n")).networks[0];
    assert_eq!(n.nat_flows_per_dut, 2048);
}

#[test]
fn flows_per_dut_within_the_table() {
    assert_problem(
        &single("nat_flows_per_dut: 0\n"),
        "nat_flows_per_dut",
        "use 1 to 16384 (default: half of nat_table_size, 8192)",
    );
    assert_problem(
        &single("nat_table_size: 2048\nnat_flows_per_dut: 2049\n"),
        "nat_flows_per_dut",
        "2049 is more than nat_table_size (2048), the flows of the whole network; use at most 2048",
    );
    assert_problem(
        "networks:\n  - {name: a, interface: eth2, nat_flows_per_dut: 99999999999}\n",
        "networks[0].nat_flows_per_dut",
        "use at most 16384",
    );
    assert_problem(
        &single("nat_flows_per_dut: -1\n"),
        "nat_flows_per_dut",
        "a non-negative integer",
    );
}

#[test]
fn nat_timeouts_can_each_be_set() {
    let n = &load(&single(
        "udp_timeout: 5m
nat_timeouts:
  unreplied: 10s
  icmp: 2m
  tcp_syn: 45
  tcp_established: 1d
  tcp_fin_wait: 1m30s
  tcp_time_wait: 20s
  tcp_close: 1s
",
    ))
    .networks[0];
    let secs = Duration::from_secs;
    assert_eq!(
        n.nat_timeouts,
        FlowTimeouts {
            unreplied: secs(10),
            udp: secs(300),
            icmp: secs(120),
            tcp_syn: secs(45),
            tcp_established: secs(86_400),
            tcp_fin_wait: secs(90),
            tcp_time_wait: secs(20),
            tcp_close: secs(1),
        }
    );
}

#[test]
fn nat_timeouts_keep_the_defaults_of_the_states_not_set() {
    let n = &load(&single("nat_timeouts:\n  tcp_close: 5s\n")).networks[0];
    assert_eq!(
        n.nat_timeouts,
        FlowTimeouts {
            tcp_close: Duration::from_secs(5),
            ..FlowTimeouts::default()
        }
    );
    let n = &load(&single("nat_timeouts: null\n")).networks[0];
    assert_eq!(n.nat_timeouts, FlowTimeouts::default());
}

#[test]
fn nat_timeouts_at_least_a_second() {
    for (key, default) in [
        ("unreplied", "30s"),
        ("icmp", "1m"),
        ("tcp_syn", "30s"),
        ("tcp_established", "2h4m"),
        ("tcp_fin_wait", "4m"),
        ("tcp_time_wait", "2m"),
        ("tcp_close", "10s"),
    ] {
        assert_problem(
            &single(&format!("nat_timeouts:\n  {key}: 500ms\n")),
            &format!("nat_timeouts.{key}"),
            &format!("500ms is too short; use at least 1s (default \"{default}\")"),
        );
    }
    assert_problem(
        "networks:\n  - {name: a, interface: eth2, nat_timeouts: {tcp_close: 0}}\n",
        "networks[0].nat_timeouts.tcp_close",
        "at least 1s",
    );
}

#[test]
fn nat_timeouts_values_are_durations() {
    assert_problem(
        &single("nat_timeouts:\n  tcp_syn: 30 seconds\n"),
        "nat_timeouts.tcp_syn",
        "\"90s\"",
    );
    assert_problem(
        &single("nat_timeouts:\n  icmp: [1]\n"),
        "nat_timeouts.icmp",
        "expected a duration",
    );
    assert_problem(
        &single("nat_timeouts: 30s\n"),
        "nat_timeouts",
        "expected a mapping of keys (unreplied, icmp, tcp_syn,",
    );
}

#[test]
fn nat_timeouts_refuse_udp_for_udp_timeout() {
    for value in ["5m", "null"] {
        assert_problem(
            &single(&format!("nat_timeouts:\n  udp: {value}\n")),
            "nat_timeouts.udp",
            "timed by the network's `udp_timeout`; move this value there",
        );
    }
}

#[test]
fn nat_timeouts_unknown_key_names_its_path() {
    assert_problem(
        &single("nat_timeouts:\n  tcp_establshed: 1h\n"),
        "nat_timeouts.tcp_establshed",
        "did you mean `tcp_established`?",
    );
    assert_problem(
        "networks:\n  - {name: a, interface: eth2, nat_timeouts: {zzzz: 1}}\n",
        "networks[0].nat_timeouts.zzzz",
        "known keys are unreplied, icmp, tcp_syn, tcp_established, tcp_fin_wait, tcp_time_wait, tcp_close",
    );
    // `udp` is not offered as a key of nat_timeouts.
    let found = problems(&single("nat_timeouts:\n  zzzz: 1\n"));
    assert!(!found[0].message.contains("udp"), "{}", found[0].message);
}

#[test]
fn normalized_nat_settings_load_again() {
    let original = &load(&single(
        "udp_timeout: 3m\nnat_table_size: 4096\nnat_flows_per_dut: 64\nnat_timeouts: {icmp: 90s, tcp_close: 2s}\n",
    ))
    .networks[0];
    let printed = match serde_yaml::to_value(original) {
        Ok(serde_yaml::Value::Mapping(m)) => m,
        other => panic!("a network serializes to a mapping, got {other:?}"),
    };
    // The NAT keys as printed, given back to the loader.
    let mut again = serde_yaml::Mapping::new();
    again.insert("interface".into(), "eth2".into());
    for key in [
        "udp_timeout",
        "nat_timeouts",
        "nat_table_size",
        "nat_flows_per_dut",
    ] {
        let value = printed.get(key).cloned();
        assert!(value.is_some(), "{key} missing from {printed:?}");
        again.insert(key.into(), value.unwrap_or_default());
    }
    let text = serde_yaml::to_string(&again).unwrap_or_default();
    assert!(!text.contains("udp:"), "replied UDP printed twice:\n{text}");
    let reloaded = &load(&text).networks[0];
    assert_eq!(reloaded.nat_timeouts, original.nat_timeouts);
    assert_eq!(reloaded.nat_flows_per_dut, 64);
}

#[test]
fn mac_not_multicast_or_zero() {
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10, mac: '01:00:5e:00:00:01'}]\n"),
        "addresses[0].mac",
        "multicast",
    );
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10, mac: '00:00:00:00:00:00'}]\n"),
        "addresses[0].mac",
        "zero",
    );
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10, mac: 'zz'}]\n"),
        "addresses[0].mac",
        "not a MAC address",
    );
}

#[test]
fn enums_name_their_choices() {
    assert_problem(
        &single("nat_mode: snat\n"),
        "nat_mode",
        "`masquerade`, `1to1`",
    );
    assert_problem(
        &single("datapath: xdp\n"),
        "datapath",
        "`auto`, `ebpf` or `nft`",
    );
}

#[test]
fn unsupported_jumpstarter_keys_only_when_off() {
    load(&single(
        "local_ntp: false\nenable_tcpdump: null\nfilter: ~\n",
    ));
    assert!(load(&single("local_ntp: true\n")).networks[0].local_ntp);
    assert!(!load(&single("local_ntp: ~\n")).networks[0].local_ntp);
    assert_problem(
        &single("local_ntp: yes please\n"),
        "local_ntp",
        "true or false",
    );
}

// ---- filter (jumpstarter 0.9) --------------------------------------------

const FILTER: &str = "filter:
  egress:
    policy: drop
    rules:
      - action: accept
        destination: 10.0.0.5
      - action: drop
        destination: 10.1.2.3/16
        protocol: tcp
        port: 22
  ingress:
    rules:
      - action: accept
        source: 192.0.2.0/24
        protocol: udp
";

#[test]
fn a_filter_loads_as_jumpstarter_reads_it() {
    use crate::datapath::filter::{Action, Protocol};
    let n = &load(&single(FILTER)).networks[0];
    let f = n.filter.as_ref().expect("a filter");
    let egress = f.egress.as_ref().unwrap();
    assert_eq!(egress.policy, Action::Drop);
    assert_eq!(egress.rules.len(), 2);
    assert_eq!(egress.rules[0].peer, Some("10.0.0.5/32".parse().unwrap()));
    // Host bits allowed, as Python's ip_network(strict=False).
    assert_eq!(egress.rules[1].peer, Some("10.1.0.0/16".parse().unwrap()));
    assert_eq!(egress.rules[1].protocol, Some(Protocol::Tcp));
    assert_eq!(egress.rules[1].port, Some(22));
    let ingress = f.ingress.as_ref().unwrap();
    assert_eq!(ingress.policy, Action::Accept, "policy defaults to accept");
    assert_eq!(ingress.rules[0].peer, Some("192.0.2.0/24".parse().unwrap()));
}

#[test]
fn an_empty_filter_is_no_filter() {
    for empty in ["filter: {}\n", "filter: ~\n", "filter: {egress: ~}\n"] {
        assert_eq!(load(&single(empty)).networks[0].filter, None, "{empty}");
    }
    // An empty direction is a filter with policy accept and no rules.
    let n = &load(&single("filter: {egress: {}}\n")).networks[0];
    assert!(n.filter.as_ref().unwrap().egress.is_some());
}

#[test]
fn filter_mistakes_name_their_key() {
    let rule = |r: &str| single(&format!("filter:\n  egress:\n    rules:\n      - {r}\n"));
    assert_problem(
        &rule("{action: reject}"),
        "filter.egress.rules[0].action",
        "`accept` or `drop`, not `reject`",
    );
    assert_problem(
        &rule("{destination: 10.0.0.1}"),
        "filter.egress.rules[0].action",
        "is required",
    );
    assert_problem(
        &rule("{action: drop, port: 22}"),
        "filter.egress.rules[0].port",
        "port requires protocol",
    );
    assert_problem(
        &rule("{action: drop, protocol: icmp}"),
        "filter.egress.rules[0].protocol",
        "`tcp` or `udp`",
    );
    assert_problem(
        &rule("{action: drop, protocol: tcp, port: 70000}"),
        "filter.egress.rules[0].port",
        "1-65535",
    );
    assert_problem(
        &rule("{action: drop, destination: 10.0.0.300}"),
        "filter.egress.rules[0].destination",
        "not a valid network address",
    );
    assert_problem(
        &rule("{action: drop, destination: \"2001:db8::/32\"}"),
        "filter.egress.rules[0].destination",
        "IPv6",
    );
    assert_problem(
        &rule("{action: drop, source: 10.0.0.0/8}"),
        "filter.egress.rules[0].source",
        "write `destination`",
    );
    assert_problem(
        &rule("{action: drop, dport: 22}"),
        "filter.egress.rules[0].dport",
        "unknown key",
    );
    assert_problem(
        &single("filter: {egress: {policy: allow}}\n"),
        "filter.egress.policy",
        "`accept` or `drop`, not `allow`",
    );
    assert_problem(
        &single("filter: {egres: {}}\n"),
        "filter.egres",
        "did you mean `egress`?",
    );
    assert_problem(&single("filter: [1]\n"), "filter", "expected a mapping");
    // Every problem at once.
    let found = problems(&rule("{action: x, protocol: y, port: 0}"));
    assert!(found.len() >= 3, "{found:?}");
}

#[test]
fn a_normalized_filter_loads_again() {
    let original = &load(&single(FILTER)).networks[0];
    let printed = serde_yaml::to_value(original).unwrap();
    let filter = serde_yaml::to_string(&printed["filter"]).unwrap();
    let indented: String = filter.lines().map(|l| format!("  {l}\n")).collect();
    let again = &load(&single(&format!("filter:\n{indented}"))).networks[0];
    assert_eq!(again.filter, original.filter);
}

#[test]
fn enable_tcpdump_is_a_bool_or_null() {
    assert!(!load(&single("")).networks[0].enable_tcpdump);
    assert!(!load(&single("enable_tcpdump: null\n")).networks[0].enable_tcpdump);
    assert!(!load(&single("enable_tcpdump: false\n")).networks[0].enable_tcpdump);
    assert!(load(&single("enable_tcpdump: true\n")).networks[0].enable_tcpdump);
    assert_problem(
        &single("enable_tcpdump: [eth0]\n"),
        "enable_tcpdump",
        "give `true`",
    );
}

// ---- runtime changes ----------------------------------------------------

fn demo_net() -> Network {
    load(include_str!("../../../examples/demo.yaml"))
        .networks
        .remove(0)
}

fn entry(ip4: Ipv4Addr, mac: Option<[u8; 6]>, hostname: Option<&str>) -> AddressEntry {
    AddressEntry {
        ip: ip4,
        mac: mac.map(MacAddr),
        hostname: hostname.map(str::to_owned),
        public_ip: None,
        vlan_id: None,
        public_gateway: None,
        dhcp_options: Default::default(),
    }
}

#[test]
fn runtime_address_uses_the_same_rules() {
    let net = demo_net();
    assert_eq!(
        net.check_new_address(&entry(
            ip(192, 168, 100, 50),
            Some([2, 0, 0, 0, 0, 0x50]),
            Some("new")
        )),
        Ok(())
    );
    let err = net
        .check_new_address(&entry(
            ip(192, 168, 100, 10),
            Some([2, 0, 0, 0, 1, 10]),
            Some("board1"),
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("ip: 192.168.100.10 is already used by addresses[0]"),
        "{err}"
    );
    assert!(
        err.contains("mac: 02:00:00:00:01:0a is already used"),
        "{err}"
    );
    assert!(err.contains("hostname: `board1` is already used"), "{err}");
    assert!(
        net.check_new_address(&entry(ip(192, 168, 100, 1), None, None))
            .is_err()
    );
    assert!(
        net.check_new_address(&entry(ip(10, 0, 0, 1), None, None))
            .is_err()
    );
}

#[test]
fn runtime_wire_entries_convert_with_the_loader_code() {
    let wire = wire::AddressWire {
        ip: Some("192.168.100.51".into()),
        public_ip: Some("10.26.28.90".into()),
        ..Default::default()
    };
    let e = AddressEntry::try_from(wire);
    assert_eq!(e.map(|e| e.public_ip), Ok(Some(ip(10, 26, 28, 90))));
    let bad = AddressEntry::try_from(wire::AddressWire {
        ip: Some("x".into()),
        ..Default::default()
    });
    assert!(bad.is_err_and(|e| e.problems[0].path == "ip"));
    let dns = DnsEntry::try_from(wire::DnsEntryWire {
        hostname: Some("myhost.lab.local".into()),
        ip: Some("10.0.0.99".into()),
    });
    assert!(dns.is_ok());
}

#[test]
fn runtime_dns_entry_uses_the_same_rules() {
    let net = demo_net();
    let ok = DnsEntry {
        hostname: "registry.lab.local".into(),
        ip: ip(10, 99, 0, 2),
    };
    assert_eq!(net.check_new_dns_entry(&ok), Ok(()));
    let dup = DnsEntry {
        hostname: "Controller.lab.local".into(),
        ip: ip(10, 99, 0, 2),
    };
    assert!(
        net.check_new_dns_entry(&dup)
            .is_err_and(|e| e.problems[0].path == "hostname")
    );
    let bad = DnsEntry {
        hostname: "a_b".into(),
        ip: ip(10, 99, 0, 2),
    };
    assert!(net.check_new_dns_entry(&bad).is_err());
}

// ---- robustness ---------------------------------------------------------

/// Fragments that steer random input toward the parser's interesting paths.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("interface: eth2\n".to_owned()),
        Just("networks:\n".to_owned()),
        Just("export:\n".to_owned()),
        Just("  - ".to_owned()),
        Just("  ".to_owned()),
        Just("name: a\n".to_owned()),
        Just("addresses: [{ip: 192.168.100.10, mac: '02:00:00:00:00:01'}]\n".to_owned()),
        Just("subnet: 10.0.0.0/8\n".to_owned()),
        Just("type: x.DutNetwork\n".to_owned()),
        Just("config:\n".to_owned()),
        Just("<<: *a\n".to_owned()),
        Just("&a ".to_owned()),
        Just("lease_time: 1h1m\n".to_owned()),
        Just("nat_table_size: -1\n".to_owned()),
        Just("nat_timeouts:\n".to_owned()),
        Just("udp: 1s\n".to_owned()),
        "[ -~\n]{0,12}",
    ];
    prop::collection::vec(token, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn random_input_never_panics(text in yamlish()) {
        let _ = parse_str(&text);
    }

    #[test]
    fn random_bytes_never_panic(text in "\\PC{0,200}") {
        let _ = parse_str(&text);
    }
}

// ---- dhcp_options ---------------------------------------------------------

const BOOT_NETWORK: &str = r#"interface: eth2
dhcp_options:
  next_server: 192.168.100.1
  boot_file: pxelinux.0
  vendor_specific: "01:02"
  options:
    - {code: 224, type: u16, value: 300}
    - {code: 225, type: hex, value: "0a:0b"}
  boot_rules:
    - {arch: efi_x64, vendor_class: PXEClient, boot_file: grubx64.efi}
addresses:
  - ip: 192.168.100.10
    mac: 02:00:00:00:00:10
    dhcp_options:
      boot_file: board1/boot.scr
"#;

#[test]
fn dhcp_options_load_per_network_and_per_entry() {
    let c = load(BOOT_NETWORK);
    let n = &c.networks[0];
    assert_eq!(n.dhcp_options.boot_file.as_deref(), Some("pxelinux.0"));
    assert_eq!(n.dhcp_options.boot_rules[0].arch, Some(7));
    assert_eq!(
        n.addresses[0].dhcp_options.boot_file.as_deref(),
        Some("board1/boot.scr")
    );
}

#[test]
fn normalized_dhcp_options_load_again() {
    let original = &load(BOOT_NETWORK).networks[0];
    let text = serde_yaml::to_string(original).unwrap_or_default();
    let printed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_default();
    let mut again = serde_yaml::Mapping::new();
    again.insert("interface".into(), "eth2".into());
    for key in ["dhcp_options", "addresses"] {
        again.insert(key.into(), printed[key].clone());
    }
    let reloaded = &load(&serde_yaml::to_string(&again).unwrap_or_default()).networks[0];
    assert_eq!(reloaded.dhcp_options, original.dhcp_options);
    assert_eq!(reloaded.addresses, original.addresses);
}

#[test]
fn dhcp_option_problems_name_the_full_key_path() {
    assert_problem(
        &single("dhcp_options:\n  options:\n    - {code: 224, type: u8, value: 300}\n"),
        "dhcp_options.options[0].value",
        "0 to 255",
    );
    assert_problem(
        &single("dhcp_options:\n  mtu: 1500\n  boot_fle: x\n"),
        "dhcp_options.boot_fle",
        "did you mean `boot_file`?",
    );
    assert_problem(
        &single(
            "addresses:\n  - ip: 192.168.100.10\n    mac: 02:00:00:00:00:10\n    dhcp_options:\n      next_server: nope\n",
        ),
        "addresses[0].dhcp_options.next_server",
        "not an IPv4 address",
    );
    assert_problem(
        &single("addresses:\n  - ip: 192.168.100.10\n    dhcp_options:\n      boot_file: x\n"),
        "addresses[0].dhcp_options",
        "add `mac`",
    );
}

#[test]
fn tftp_root_must_be_absolute() {
    assert_problem(&single("tftp_root: srv/tftp\n"), "tftp_root", "/srv/tftp");
    let c = load(&single("tftp_root: /srv/tftp\n"));
    assert_eq!(
        c.networks[0].tftp_root.as_deref(),
        Some(std::path::Path::new("/srv/tftp"))
    );
}

#[test]
fn metrics_listen_is_a_top_level_key_of_every_shape() {
    let single = load("interface: eth1\nmetrics_listen: \"127.0.0.1:9464\"\n");
    assert_eq!(
        single.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(single.networks.len(), 1);
    let list =
        load("metrics_listen: \"[::1]:9464\"\nnetworks:\n  - name: a\n    interface: eth1\n");
    assert_eq!(list.metrics_listen, Some("[::1]:9464".parse().unwrap()));
    assert_eq!(load("interface: eth1\n").metrics_listen, None);
    assert_problem(
        "interface: eth1\nmetrics_listen: 9464\n",
        "metrics_listen",
        "ADDR:PORT",
    );
}

// ---- NAT rules shared by the file, `config check` and the control socket --

#[test]
fn nat_mode_names_come_from_one_table() {
    for (mode, name) in NatMode::NAMES {
        assert_eq!(mode.as_str(), name);
        assert_eq!(mode.to_string(), name);
        assert_eq!(name.parse::<NatMode>(), Ok(mode));
        assert_eq!(
            serde_json::to_value(mode).ok(),
            Some(serde_json::Value::from(name))
        );
    }
    assert_eq!("none".parse::<NatMode>(), Ok(NatMode::Disabled));
    let e = "1:1".parse::<NatMode>().unwrap_err();
    assert!(e.contains("`masquerade`, `1to1` or `disabled`"), "{e}");
}

#[test]
fn public_ip_needs_one_to_one() {
    for mode in ["masquerade", "disabled"] {
        assert_problem(
            &single(&format!(
                "nat_mode: {mode}\naddresses: [{{ip: 192.168.100.10, public_ip: 10.0.0.1}}]\n"
            )),
            "addresses[0].public_ip",
            &format!("needs `nat_mode: 1to1`, and network `eth2` uses `{mode}`"),
        );
    }
    // The default mode is masquerade.
    assert_problem(
        &single("addresses: [{ip: 192.168.100.10, public_ip: 10.0.0.1}]\n"),
        "addresses[0].public_ip",
        "or remove public_ip",
    );
    // A nat_mode that does not parse is reported once, not judged as masquerade.
    let found = problems(&single(
        "nat_mode: one2one\naddresses: [{ip: 192.168.100.10, public_ip: 10.0.0.1}]\n",
    ));
    let paths: Vec<_> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["nat_mode"]);
}

#[test]
fn runtime_public_ip_needs_one_to_one_too() {
    let mut net = demo_net();
    assert_eq!(net.nat_mode, NatMode::OneToOne);
    let mut e = entry(ip(192, 168, 100, 60), None, None);
    e.public_ip = Some(ip(10, 99, 0, 60));
    assert_eq!(net.check_new_address(&e), Ok(()));
    net.nat_mode = NatMode::Masquerade;
    let err = net
        .check_new_address(&e)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("public_ip: 10.99.0.60 needs `nat_mode: 1to1`"),
        "{err}"
    );
}

fn two_networks(a: &str, b: &str) -> String {
    format!(
        "networks:
  - {{name: a, interface: eth2, subnet: 192.168.100.0/24{a}}}
  - {{name: b, interface: eth3, subnet: 192.168.100.0/24{b}}}
"
    )
}

#[test]
fn nft_networks_may_not_share_a_subnet() {
    for (a, b) in [
        (", datapath: nft", ", datapath: nft"),
        (", datapath: nft", ""),
        ("", ", datapath: nft"),
        (", datapath: ebpf", ", datapath: nft"),
    ] {
        assert_problem(
            &two_networks(a, b),
            "networks[1].subnet",
            "networks `a` and `b` share the subnet 192.168.100.0/24 (as networks[0] does)",
        );
        assert_problem(
            &two_networks(a, b),
            "networks[1].subnet",
            "use `datapath: ebpf` for both, or give them different subnets",
        );
    }
    // eBPF (or `auto`, which the daemon checks again if it falls back) on
    // both sides, or different subnets: fine.
    load(&two_networks("", ""));
    load(&two_networks(", datapath: ebpf", ", datapath: auto"));
    load(
        "networks:
  - {name: a, interface: eth2, datapath: nft}
  - {name: b, interface: eth3, datapath: nft, subnet: 192.168.101.0/24}
",
    );
    // A subnet that does not parse is not compared as the default.
    let found = problems(
        "networks:
  - {name: a, interface: eth2, datapath: nft}
  - {name: b, interface: eth3, datapath: nft, subnet: bad}
",
    );
    assert!(
        found
            .iter()
            .all(|p| !p.message.contains("share the subnet")),
        "{found:?}"
    );
}

#[test]
fn a_datapath_override_is_checked_with_the_same_rule() {
    let mut nets = load(&two_networks("", "")).networks;
    assert_eq!(check_datapaths(&nets), Ok(()));
    nets[0].datapath = DatapathChoice::Nft;
    let err = check_datapaths(&nets).unwrap_err().to_string();
    assert!(err.contains("networks[1].subnet"), "{err}");
    assert!(err.contains("`a` and `b`"), "{err}");
}

/// A single network with `n` address entries (distinct IPs, MACs and names).
fn many_addresses(n: usize) -> String {
    let mut yaml = String::from("interface: eth2\nsubnet: 10.0.0.0/8\naddresses:\n");
    for i in 0..n {
        let ip = 0x0a00_0000_u32 + 0x100 + i as u32;
        let [_, b, c, d] = ip.to_be_bytes();
        yaml.push_str(&format!(
            "  - {{ip: 10.{b}.{c}.{d}, mac: \"02:00:00:{b:02x}:{c:02x}:{d:02x}\", hostname: dut{i}}}\n"
        ));
    }
    yaml
}

fn time_load(yaml: &str) -> Duration {
    let start = std::time::Instant::now();
    let loaded = load(yaml);
    assert!(!loaded.networks[0].addresses.is_empty());
    start.elapsed()
}

#[test]
fn checking_is_linear_in_the_entries() {
    let (small, big) = (many_addresses(16_000), many_addresses(32_000));
    // Warm up once, then take the best of two, so a busy machine does not
    // make it flaky.
    let _ = time_load(&small);
    let t16 = time_load(&small).min(time_load(&small));
    let t32 = time_load(&big).min(time_load(&big));
    // Debug build: generous; release takes well under a second.
    assert!(t32 < Duration::from_secs(20), "32 000 entries took {t32:?}");
    // Twice the entries: about twice the time when linear, four times when
    // quadratic (it was 10 times: 1.3 s for 8 000, 12.8 s for 16 000).
    let ratio = t32.as_secs_f64() / t16.as_secs_f64().max(1e-6);
    assert!(ratio < 3.2, "16k: {t16:?}, 32k: {t32:?}, ratio {ratio:.2}");
}

#[test]
fn duplicates_name_the_first_entry_that_holds_the_value() {
    let found = problems(
        "interface: eth2\naddresses:
  - {ip: 192.168.100.10, mac: \"02:00:00:00:00:01\", hostname: a, public_ip: 10.0.0.1}
  - {ip: 192.168.100.11}
  - {ip: 192.168.100.10, mac: \"02:00:00:00:00:01\", hostname: A, public_ip: 10.0.0.1}
nat_mode: 1to1
dns_entries:
  - {hostname: x.lab, ip: 10.0.0.5}
  - {hostname: X.lab, ip: 10.0.0.6}
",
    );
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "addresses[2].ip: 192.168.100.10 is already used by addresses[0]; every entry needs its own IP",
            "addresses[2].mac: 02:00:00:00:00:01 is already used by addresses[0]; a MAC can have one static lease",
            "addresses[2].hostname: `A` is already used by addresses[0]; host names must be unique",
            "addresses[2].public_ip: 10.0.0.1 is already mapped to addresses[0]; each DUT needs its own public IP",
            "dns_entries[1].hostname: `X.lab` is already defined by dns_entries[0]; keep one record per name",
        ]
    );
}

#[test]
fn the_size_limit_is_checked_before_parsing() {
    let text = format!("interface: eth2\n# {}\n", "x".repeat(MAX_FILE_SIZE));
    let found = problems(&text);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].message.contains("larger than 4 MiB"),
        "{}",
        found[0]
    );
    assert!(found[0].message.contains("split the lab"), "{}", found[0]);
}

#[test]
fn deep_nesting_is_refused_fast() {
    let start = std::time::Instant::now();
    let found = problems(&format!("interface: eth2\nx: {}\n", "[".repeat(100_000)));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        found[0]
            .message
            .contains("more than 64 levels deep at line 2"),
        "{}",
        found[0]
    );
    // Brackets in quotes and comments do not count.
    let deep = "[".repeat(100);
    let loaded = load(&format!(
        "interface: eth2 # {deep}\ndhcp_options: {{boot_file: \"{deep}x\", tftp_server_name: '{deep}'}}\n"
    ));
    assert_eq!(loaded.networks[0].interface, "eth2");
    // Block nesting is bounded by the parser.
    let found = problems(&format!(
        "interface: eth2\nx:\n{}",
        (0..200)
            .map(|i| format!("{}- \n", "  ".repeat(i)))
            .collect::<String>()
    ));
    assert!(!found.is_empty());
}

#[test]
fn a_huge_integer_is_reported_at_its_key_with_the_others() {
    let found = problems(
        "interface: eth2\nnat_table_size: 99999999999999999999999\nsubnet: bad\nlease_time: 99999999999999999999999\n",
    );
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        lines.contains(
            &"nat_table_size: 99999999999999999999999 is too large; must be at most 4294967295"
                .to_owned()
        ),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("subnet: `bad`")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"lease_time: 99999999999999999999999 is too large; must be at most 18446744073709551615 seconds".to_owned()),
        "{lines:?}"
    );
    // Just past the 32-bit range: as written, not cut down to fit.
    assert_problem(
        "interface: eth2\nnat_table_size: 4294967296\n",
        "nat_table_size",
        "4294967296 is out of range; use 1024 to 4194304",
    );
    assert_problem(
        "interface: eth2\nnat_flows_per_dut: 4294967296\n",
        "nat_flows_per_dut",
        "4294967296 is more than nat_table_size (16384)",
    );
    assert_problem(
        "interface: eth2\nnat_flows_per_dut: -99999999999999999999999\n",
        "nat_flows_per_dut",
        "expected a non-negative integer, found the number -99999999999999999999999",
    );
    assert_problem(
        "interface: eth2\nnat_flows_per_dut: 99999999999999999999999\n",
        "nat_flows_per_dut",
        "99999999999999999999999 is too large; must be at most 4294967295",
    );
    // Where a string is expected, the digits are the string.
    assert_problem(
        "interface: 99999999999999999999999\n",
        "interface",
        "99999999999999999999999",
    );
}

#[test]
fn a_byte_order_mark_is_not_content() {
    let loaded = load("\u{feff}interface: eth2\n");
    assert_eq!(loaded.networks[0].interface, "eth2");
    let loaded = load("\u{feff}# lab\n---\ninterface: eth2\n");
    assert_eq!(loaded.networks[0].interface, "eth2");
}

#[test]
fn long_values_are_shortened_in_messages() {
    let name = "e".repeat(1_000_000);
    let found = problems(&format!("interface: {name}\n"));
    assert!(found[0].message.len() < 300, "{}", found[0].message.len());
    assert!(
        found[0].message.contains("… (1000002 bytes)`"),
        "{}",
        found[0]
    );
    let found = problems(&format!("interface: eth2\n{name}: 1\n"));
    assert!(found[0].path.len() < 120, "{}", found[0].path.len());
}

#[test]
fn reserved_subnets_are_refused_with_why() {
    for (subnet, why) in [
        ("0.0.0.0/0", "overlaps 0.0.0.0/8, \"this network\""),
        ("0.0.0.0/24", "is in 0.0.0.0/8"),
        ("127.0.0.0/8", "is in 127.0.0.0/8, loopback"),
        ("224.0.0.0/24", "is in 224.0.0.0/4, multicast"),
        ("169.254.0.0/16", "is in 169.254.0.0/16, link-local"),
        ("240.0.0.0/24", "is in 240.0.0.0/4, reserved"),
        (
            "255.255.255.252/30",
            "overlaps 255.255.255.255/32, the limited broadcast",
        ),
        ("128.0.0.0/1", "overlaps 169.254.0.0/16"),
    ] {
        assert_problem(&single(&format!("subnet: {subnet}\n")), "subnet", why);
        assert_problem(
            &single(&format!("subnet: {subnet}\n")),
            "subnet",
            "DUT subnets come from private space",
        );
    }
    // Private, shared (CGNAT) and public space all stay allowed.
    for subnet in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "100.64.0.0/10",
        "198.51.100.0/24",
        "8.8.8.0/24",
    ] {
        load(&single(&format!("subnet: {subnet}\n")));
    }
}

#[test]
fn reserved_public_ips_are_refused_with_why() {
    for (public, why) in [
        ("127.0.0.1", "is in 127.0.0.0/8, loopback"),
        ("0.1.2.3", "is in 0.0.0.0/8"),
        ("169.254.1.1", "link-local"),
        ("240.0.0.1", "reserved"),
    ] {
        assert_problem(
            &format!(
                "interface: eth2\nnat_mode: 1to1\naddresses:\n  - {{ip: 192.168.100.10, public_ip: {public}}}\n"
            ),
            "addresses[0].public_ip",
            why,
        );
    }
}

#[test]
fn partly_overlapping_subnets_warn_and_nft_refuses_them() {
    let yaml = "networks:
  - {name: wide, interface: eth2, subnet: 192.168.0.0/16, gateway_ip: 192.168.0.1, dhcp_range_start: 192.168.1.1, dhcp_range_end: 192.168.1.200}
  - {name: narrow, interface: eth3, subnet: 192.168.100.0/24}
  - {name: same, interface: eth4, subnet: 192.168.100.0/24}
";
    let loaded = load(yaml);
    assert_eq!(loaded.notes.len(), 2, "{:?}", loaded.notes);
    assert!(
        loaded.notes[0].starts_with("networks[1].subnet: 192.168.100.0/24 of network `narrow` overlaps 192.168.0.0/16 of network `wide` (networks[0]) in part"),
        "{:?}",
        loaded.notes
    );
    assert_problem(
        &yaml.replace("name: narrow,", "name: narrow, datapath: nft,"),
        "networks[1].subnet",
        "overlaps 192.168.0.0/16 of network `wide` (networks[0]) in part, which the nftables datapath cannot do",
    );
    // Identical subnets alone: no note.
    let loaded = load(
        &yaml
            .replace("192.168.0.0/16", "10.0.0.0/16")
            .replace("192.168.0.1", "10.0.0.1")
            .replace("192.168.1.", "10.0.1."),
    );
    assert!(loaded.notes.is_empty(), "{:?}", loaded.notes);
}

/// What `config check` prints (YAML and JSON) loads again as the same
/// networks: every example, plus one file with every optional key set.
#[test]
fn the_normalized_config_loads_back_unchanged() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    assert!(
        files.len() >= 5,
        "examples missing in {}",
        examples.display()
    );
    files.push((
        "every key".into(),
        format!("{BOOT_NETWORK}{EVERY_OTHER_KEY}"),
    ));
    for (name, text) in files {
        let original = load(&text);
        let yaml = serde_yaml::to_string(&original).unwrap();
        let json = serde_json::to_string_pretty(&original).unwrap();
        for printed in [yaml, json] {
            let again = parse_str(&printed).unwrap_or_else(|e| {
                panic!("{name}: the printed config is refused:\n{e}\n{printed}")
            });
            assert_eq!(again.networks, original.networks, "{name}:\n{printed}");
            assert_eq!(again.metrics_listen, original.metrics_listen, "{name}");
        }
    }
}

/// The keys [`BOOT_NETWORK`] leaves at their defaults.
const EVERY_OTHER_KEY: &str = r#"
upstream_interface: eth0
datapath: nft
domain: lab.example
state_dir: /var/lib/dutnet/every
dns_timeout: 3s
udp_timeout: 45s
nat_table_size: 4096
nat_flows_per_dut: 512
local_ntp: true
enable_tcpdump: true
tftp_root: /srv/tftp
dns_entries:
  - {hostname: files.lab, ip: 10.0.0.9}
filter:
  egress:
    policy: drop
    rules:
      - {action: accept, destination: 10.0.0.0/8, protocol: tcp, port: 443}
  ingress:
    policy: accept
    rules:
      - {action: drop, source: 10.1.0.0/16}
metrics_listen: 127.0.0.1:9464
"#;

/// jumpstarter reads its files with PyYAML (YAML 1.1): an unquoted `yes`,
/// `no`, `on` or `off` is a boolean there, so it is one here too.
#[test]
fn yaml_1_1_booleans_read_as_jumpstarter_reads_them() {
    let c = load("interface: eth2\ndhcp_enabled: no\nlocal_ntp: on\nenable_tcpdump: Yes\n");
    let n = &c.networks[0];
    assert!(!n.dhcp.enabled);
    assert!(n.local_ntp);
    assert!(n.enable_tcpdump);
    // PyYAML reads `y` as a string: refused, saying what is meant.
    assert_problem(&single("dhcp_enabled: y\n"), "dhcp_enabled", "yes/no");
}

/// jumpstarter's table numbering (PR #1068): the VLAN id when tagged, the
/// DUT address as a number untagged, none without a gateway.
#[test]
fn a_policy_route_table_is_numbered_as_jumpstarter_numbers_it() {
    let net = load(
        "interface: dn-x\nnat_mode: 1to1\naddresses:
  - {ip: 192.168.100.10, public_ip: 10.9.5.20, vlan_id: 905, public_gateway: 10.9.5.1}
  - {ip: 192.168.100.11, public_ip: 10.99.0.51, public_gateway: 10.99.0.254}
  - {ip: 192.168.100.12, public_ip: 10.9.6.22, vlan_id: 906}
",
    )
    .networks
    .remove(0);
    let tables: Vec<Option<u32>> = net
        .addresses
        .iter()
        .map(AddressEntry::route_table)
        .collect();
    assert_eq!(
        tables,
        vec![Some(905), Some(u32::from(ip(192, 168, 100, 11))), None]
    );
}

#[test]
fn a_runtime_vlan_entry_obeys_the_file_rules() {
    let net = load("interface: dn-x\nnat_mode: 1to1\naddresses:\n  - {ip: 192.168.100.10, public_ip: 10.9.5.20, vlan_id: 905, public_gateway: 10.9.5.1}\n")
        .networks
        .remove(0);
    let wire = |vlan: u64, gateway: &str, public: Option<&str>| wire::AddressWire {
        ip: Some("192.168.100.11".into()),
        public_ip: public.map(Into::into),
        vlan_id: Some(vlan),
        public_gateway: Some(gateway.into()),
        ..wire::AddressWire::default()
    };
    let check = |w: wire::AddressWire| {
        AddressEntry::try_from(w)
            .and_then(|e| net.check_new_address(&e))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(check(wire(905, "10.9.5.1", Some("10.9.5.21"))), "");
    assert!(
        check(wire(905, "10.9.5.2", Some("10.9.5.21")))
            .contains("VLAN 905 has public_gateway 10.9.5.1 in addresses[0]"),
    );
    assert!(check(wire(255, "10.9.5.1", Some("10.9.5.21"))).contains("route table 255"));
    assert!(check(wire(4095, "10.9.5.1", Some("10.9.5.21"))).contains("1 to 4094"));
    assert!(check(wire(906, "10.9.6.1", None)).contains("needs `public_ip`"));
}
