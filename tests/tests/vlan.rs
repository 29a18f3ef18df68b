//! A VLAN per 1:1 DUT (`vlan_id`, `public_gateway`; issue #19 item 4), on
//! both datapaths, judged from the far end: the LAN host has a VLAN 905
//! sub-interface with the VLAN's router address; what the VLAN DUT sends
//! reaches it tagged 905 from the DUT's public address, while another 1:1
//! DUT's traffic stays untagged, and the LAN reaches the VLAN DUT's public
//! address over the VLAN. What dutnet adds to the host (the sub-interface,
//! the rule, the route) is gone after SIGTERM, and after a SIGKILL once
//! `dutnet down` ran.
//!
//! The VLAN cases need a kernel with 802.1Q (`CONFIG_VLAN_8021Q`, module
//! `8021q`): they are `#[ignore]`d, for `cargo test --test vlan --
//! --ignored` on such a kernel, since the CI VM's kernel has none. The
//! untagged policy route (`public_gateway` without `vlan_id`: the same
//! rule, table and route, on the public interface itself) runs everywhere.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use dutnet_tests::{
    both_datapaths, cmd,
    far_end::{TcpEcho, UdpEcho},
    lab::Lab,
    nat::{DUT_IP, FAR_IP, LAN_IP, lan_udp_echo, tcp_exchange, udp_exchange, udp_socket},
    netns::Process,
    prereq,
};

/// Why the VLAN cases are ignored by default.
const NEEDS_8021Q: &str = "needs a kernel with 802.1Q VLANs (CONFIG_VLAN_8021Q)";

const VLAN: u16 = 905;
/// The VLAN's router: the LAN host's address on its VLAN sub-interface.
const VLAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 9, 5, 1);
/// The VLAN DUT's public address, in the VLAN's subnet.
const VLAN_PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 9, 5, 20);
/// A second address of the DUT, published untagged on the upstream.
const PLAIN: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);
const PLAIN_PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 52);
/// The exporter's sub-interface for the VLAN (`<upstream>.<vlan>`).
const SUB_INTERFACE: &str = "dn-up.905";

fn config() -> String {
    format!(
        "nat_mode: 1to1
addresses:
  - ip: {DUT_IP}
    public_ip: {VLAN_PUBLIC}
    vlan_id: {VLAN}
    public_gateway: {VLAN_GATEWAY}
  - ip: {PLAIN}
    public_ip: {PLAIN_PUBLIC}
"
    )
}

/// A lab whose LAN host has VLAN 905 on its end of the upstream cable,
/// and whose DUT has [`PLAIN`] besides [`DUT_IP`]; dutnet is running.
fn vlan_lab(datapath: &str) -> Lab {
    prereq::require("tcpdump", "tcpdump");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let lan = lab.lan();
    assert!(
        lan.exec(
            "ip",
            &[
                "link",
                "add",
                "dn-vlan-probe",
                "type",
                "vlan",
                "id",
                "2",
                "dev",
                "eth0"
            ]
        )
        .success(),
        "this test {NEEDS_8021Q}: `modprobe 8021q`, or a kernel built with it"
    );
    lan.ip("link del dn-vlan-probe");
    lan.ip(&format!(
        "link add link eth0 name eth0.{VLAN} type vlan id {VLAN}"
    ))
    .ok();
    lan.ip(&format!("addr add {VLAN_GATEWAY}/24 dev eth0.{VLAN}"))
        .ok();
    lan.ip(&format!("link set eth0.{VLAN} up")).ok();
    lab.dut(1).ip(&format!("addr add {PLAIN}/24 dev eth0")).ok();
    lab.load_nat_on(datapath, &config());
    lab
}

/// tcpdump on the LAN host's `eth0` (the parent: tagged and untagged
/// frames both), writing `file`.
fn capture(lab: &Lab, file: &std::path::Path) -> Process {
    let dump = lab.lan().spawn(
        "tcpdump",
        &[
            "-i",
            "eth0",
            "-nn",
            "-U",
            "--immediate-mode",
            "-w",
            &file.to_string_lossy(),
        ],
        &[],
        lab.topology.path("lan-vlan.pcap.log"),
    );
    cmd::wait_for(Duration::from_secs(5), || {
        dump.log().contains("listening").then_some(())
    })
    .unwrap_or_else(|| panic!("tcpdump never listened: {}", dump.log()));
    dump
}

/// What the exporter has for the VLAN: (`ip -d link` of the
/// sub-interface, `ip rule`, `ip route show table 905`).
fn host_state(lab: &Lab) -> (String, String, String) {
    let ip = |args: &[&str]| {
        let out = lab.exporter.exec("ip", args);
        if out.success() {
            out.stdout
        } else {
            String::new()
        }
    };
    let table = VLAN.to_string();
    (
        ip(&["-d", "link", "show", SUB_INTERFACE]),
        ip(&["-4", "rule", "show"]),
        ip(&["-4", "route", "show", "table", &table]),
    )
}

#[track_caller]
fn assert_vlan_in_place(lab: &Lab) {
    let (link, rules, routes) = host_state(lab);
    assert!(
        link.contains(&format!("vlan protocol 802.1Q id {VLAN}")),
        "{link}\n{}",
        lab.report()
    );
    assert!(
        rules.contains(&format!("from {DUT_IP} iif dn-dut1 lookup {VLAN}")),
        "{rules}"
    );
    assert!(
        routes.contains(&format!("default via {VLAN_GATEWAY} dev {SUB_INTERFACE}"))
            && routes.contains("onlink"),
        "{routes}"
    );
    let addresses = lab
        .exporter
        .ip(&format!("-4 -o addr show dev {SUB_INTERFACE}"));
    assert!(
        addresses.stdout.contains(&format!("{VLAN_PUBLIC}/32")),
        "{addresses:#?}"
    );
}

#[track_caller]
fn assert_vlan_gone(lab: &Lab) {
    let (link, rules, routes) = host_state(lab);
    assert!(link.is_empty(), "the sub-interface is left: {link}");
    assert!(
        !rules.contains(&format!("lookup {VLAN}")),
        "a rule is left: {rules}"
    );
    assert!(routes.trim().is_empty(), "a route is left: {routes}");
}

// Not `both_datapaths!`: its attributes go on the module, not the tests.
mod a_vlan_dut_is_tagged_on_its_vlan_and_reached_over_it {
    #[test]
    #[ignore = "needs a kernel with 802.1Q VLANs (CONFIG_VLAN_8021Q)"]
    fn on_ebpf() {
        super::a_vlan_dut_is_tagged_on_its_vlan_and_reached_over_it("ebpf");
    }

    #[test]
    #[ignore = "needs a kernel with 802.1Q VLANs (CONFIG_VLAN_8021Q)"]
    fn on_nft() {
        super::a_vlan_dut_is_tagged_on_its_vlan_and_reached_over_it("nft");
    }
}
fn a_vlan_dut_is_tagged_on_its_vlan_and_reached_over_it(datapath: &str) {
    let mut lab = vlan_lab(datapath);
    assert_vlan_in_place(&lab);
    let shown = lab.ok(&["nat-rules"]);
    assert!(
        shown.contains(&format!(
            "{DUT_IP} <-> {VLAN_PUBLIC} vlan {VLAN} via {VLAN_GATEWAY}"
        )),
        "{shown}"
    );
    let file = lab.topology.path("lan-vlan.pcap");
    let mut dump = capture(&lab, &file);

    // The VLAN DUT's traffic reaches the VLAN's router from its public
    // address; the other mapping's reaches the LAN from its own.
    let vlan_echo = UdpEcho::start(lab.lan(), SocketAddrV4::new(VLAN_GATEWAY, 7905));
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    assert_eq!(
        udp_exchange(&lab, &socket, &vlan_echo, b"tagged").ip(),
        VLAN_PUBLIC
    );
    let plain_echo = lan_udp_echo(&lab);
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(PLAIN, 0));
    assert_eq!(
        udp_exchange(&lab, &socket, &plain_echo, b"untagged").ip(),
        PLAIN_PUBLIC
    );
    // The LAN opens a connection to the public address over the VLAN.
    let server = TcpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 2222));
    let seen = tcp_exchange(
        lab.lan(),
        SocketAddrV4::new(VLAN_PUBLIC, 2222),
        "over the vlan",
    );
    assert_eq!(seen.ip(), VLAN_GATEWAY, "the DUT saw {seen}");
    assert_eq!(server.peers(), vec![seen]);
    // And the untagged mapping still works from the LAN's own address.
    let seen = tcp_exchange(lab.lan(), SocketAddrV4::new(PLAIN_PUBLIC, 2222), "untagged");
    assert_eq!(seen.ip(), LAN_IP);

    dump.terminate();
    let text = lab
        .lan()
        .exec("tcpdump", &["-r", &file.to_string_lossy(), "-e", "-nn"])
        .ok()
        .stdout;
    let with = |address: Ipv4Addr| -> Vec<&str> {
        text.lines()
            .filter(|l| l.contains(&format!("{address}.")) && l.contains("IPv4"))
            .collect()
    };
    let tagged = with(VLAN_PUBLIC);
    assert!(tagged.len() >= 4, "too few VLAN DUT packets:\n{text}");
    for line in &tagged {
        assert!(
            line.contains(&format!("vlan {VLAN}")),
            "not tagged {VLAN}: {line}\n{text}"
        );
    }
    let plain = with(PLAIN_PUBLIC);
    assert!(plain.len() >= 4, "too few untagged DUT packets:\n{text}");
    for line in &plain {
        assert!(!line.contains("vlan"), "tagged: {line}\n{text}");
    }

    lab.stop();
    assert_vlan_gone(&lab);
}

/// After a SIGKILL the sub-interface, rule and route stay until `dutnet
/// down` replays the journal.
#[test]
#[ignore = "needs a kernel with 802.1Q VLANs (CONFIG_VLAN_8021Q)"]
fn down_removes_what_a_killed_dutnet_left_for_a_vlan() {
    let mut lab = vlan_lab("ebpf");
    assert_vlan_in_place(&lab);
    lab.kill();
    let (link, _, _) = host_state(&lab);
    assert!(!link.is_empty(), "killed, yet the sub-interface went");
    lab.ok(&["down"]);
    assert_vlan_gone(&lab);
}

/// `add-address` carries `vlan_id` and `public_gateway`; `remove-address`
/// takes the rule away again.
#[test]
#[ignore = "needs a kernel with 802.1Q VLANs (CONFIG_VLAN_8021Q)"]
fn a_vlan_entry_is_added_and_removed_at_run_time() {
    prereq::require("tcpdump", "tcpdump");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let lan = lab.lan();
    lan.ip(&format!(
        "link add link eth0 name eth0.{VLAN} type vlan id {VLAN}"
    ))
    .ok();
    lan.ip(&format!("addr add {VLAN_GATEWAY}/24 dev eth0.{VLAN}"))
        .ok();
    lan.ip(&format!("link set eth0.{VLAN} up")).ok();
    lab.dut(1).ip(&format!("addr add {PLAIN}/24 dev eth0")).ok();
    lab.load_nat_on(
        "ebpf",
        &format!("nat_mode: 1to1\naddresses:\n  - ip: {PLAIN}\n    public_ip: {PLAIN_PUBLIC}\n"),
    );
    lab.ok(&[
        "add-address",
        &DUT_IP.to_string(),
        "--public-ip",
        &VLAN_PUBLIC.to_string(),
        "--vlan-id",
        &VLAN.to_string(),
        "--public-gateway",
        &VLAN_GATEWAY.to_string(),
    ]);
    assert_vlan_in_place(&lab);
    let vlan_echo = UdpEcho::start(lab.lan(), SocketAddrV4::new(VLAN_GATEWAY, 7905));
    let socket = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    assert_eq!(
        udp_exchange(&lab, &socket, &vlan_echo, b"added").ip(),
        VLAN_PUBLIC
    );
    lab.ok(&["remove-address", &DUT_IP.to_string()]);
    let (_, rules, _) = host_state(&lab);
    assert!(!rules.contains(&format!("from {DUT_IP}")), "{rules}");
    lab.stop();
    assert_vlan_gone(&lab);
}

/// The untagged policy route's table: the DUT address as a number, as
/// jumpstarter numbers it.
fn untagged_table() -> u32 {
    u32::from(DUT_IP)
}

/// A lab whose exporter has no default route: the far host behind the LAN
/// router is reachable only by [`DUT_IP`]'s policy route (`public_gateway`
/// = the LAN router), not by [`PLAIN`]'s.
fn routed_lab(datapath: &str) -> Lab {
    let mut lab = Lab::builder()
        .upstream()
        .static_duts(1)
        .far_host(1500)
        .build();
    lab.exporter.ip("route del default");
    lab.dut(1).ip(&format!("addr add {PLAIN}/24 dev eth0"));
    lab.load_nat_on(
        datapath,
        &format!(
            "nat_mode: 1to1
addresses:
  - ip: {DUT_IP}
    public_ip: {VLAN_PUBLIC_UNTAGGED}
    public_gateway: {LAN_IP}
  - ip: {PLAIN}
    public_ip: {PLAIN_PUBLIC}
"
        ),
    );
    lab
}

/// The untagged DUT's public address (on the upstream's subnet).
const VLAN_PUBLIC_UNTAGGED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 51);

/// (`ip rule`, `ip route show table <untagged_table>`) on the exporter.
fn untagged_state(lab: &Lab) -> (String, String) {
    let ip = |args: &[&str]| {
        let out = lab.exporter.exec("ip", args);
        if out.success() {
            out.stdout
        } else {
            String::new()
        }
    };
    let table = untagged_table().to_string();
    (
        ip(&["-4", "rule", "show"]),
        ip(&["-4", "route", "show", "table", &table]),
    )
}

both_datapaths!(an_untagged_policy_route_sends_a_dut_to_its_public_gateway);
fn an_untagged_policy_route_sends_a_dut_to_its_public_gateway(datapath: &str) {
    let mut lab = routed_lab(datapath);
    let (rules, routes) = untagged_state(&lab);
    let table = untagged_table();
    assert!(
        rules.contains(&format!("from {DUT_IP} iif dn-dut1 lookup {table}")),
        "{rules}\n{}",
        lab.report()
    );
    assert!(
        routes.contains(&format!("default via {LAN_IP} dev dn-up")) && routes.contains("onlink"),
        "{routes}"
    );
    let shown = lab.ok(&["nat-rules"]);
    assert!(
        shown.contains(&format!("{DUT_IP} <-> {VLAN_PUBLIC_UNTAGGED} via {LAN_IP}")),
        "{shown}"
    );
    let far = UdpEcho::start(lab.far(), SocketAddrV4::new(FAR_IP, 7100));
    let routed = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    assert_eq!(
        udp_exchange(&lab, &routed, &far, b"policy routed").ip(),
        VLAN_PUBLIC_UNTAGGED,
        "{}",
        lab.report()
    );
    // The other DUT address has no policy route, and the exporter no
    // default route: it does not get there.
    let unrouted = udp_socket(lab.dut(1), SocketAddrV4::new(PLAIN, 0));
    unrouted.send_to(b"no route", far.addr).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        unrouted.recv_from(&mut buf).is_err(),
        "{PLAIN} reached the far host without a route"
    );
    // Replies and new connections from the far side come back as before.
    let server = TcpEcho::start(lab.dut(1), SocketAddrV4::new(DUT_IP, 2222));
    let seen = tcp_exchange(
        lab.far(),
        SocketAddrV4::new(VLAN_PUBLIC_UNTAGGED, 2222),
        "from afar",
    );
    assert_eq!(seen.ip(), FAR_IP);
    assert_eq!(server.peers(), vec![seen]);

    lab.stop();
    let (rules, routes) = untagged_state(&lab);
    assert!(
        !rules.contains(&format!("lookup {table}")),
        "a rule is left: {rules}"
    );
    assert!(routes.trim().is_empty(), "a route is left: {routes}");
}

/// `add-address --public-gateway` adds the rule and route at run time,
/// `remove-address` takes the rule away; a killed dutnet's are removed by
/// `dutnet down`.
#[test]
fn an_untagged_policy_route_is_added_at_run_time_and_undone_after_a_crash() {
    let mut lab = Lab::builder()
        .upstream()
        .static_duts(1)
        .far_host(1500)
        .build();
    lab.exporter.ip("route del default");
    lab.dut(1).ip(&format!("addr add {PLAIN}/24 dev eth0"));
    lab.load_nat_on(
        "ebpf",
        &format!("nat_mode: 1to1\naddresses:\n  - ip: {PLAIN}\n    public_ip: {PLAIN_PUBLIC}\n"),
    );
    let table = untagged_table();
    lab.ok(&[
        "add-address",
        &DUT_IP.to_string(),
        "--public-ip",
        &VLAN_PUBLIC_UNTAGGED.to_string(),
        "--public-gateway",
        &LAN_IP.to_string(),
    ]);
    let far = UdpEcho::start(lab.far(), SocketAddrV4::new(FAR_IP, 7100));
    let routed = udp_socket(lab.dut(1), SocketAddrV4::new(DUT_IP, 0));
    assert_eq!(
        udp_exchange(&lab, &routed, &far, b"added").ip(),
        VLAN_PUBLIC_UNTAGGED,
        "{}",
        lab.report()
    );
    lab.ok(&["remove-address", &DUT_IP.to_string()]);
    let (rules, _) = untagged_state(&lab);
    assert!(!rules.contains(&format!("lookup {table}")), "{rules}");
    lab.ok(&[
        "add-address",
        &DUT_IP.to_string(),
        "--public-ip",
        &VLAN_PUBLIC_UNTAGGED.to_string(),
        "--public-gateway",
        &LAN_IP.to_string(),
    ]);
    let (rules, _) = untagged_state(&lab);
    assert!(rules.contains(&format!("lookup {table}")), "{rules}");
    lab.kill();
    let (rules, routes) = untagged_state(&lab);
    assert!(
        rules.contains(&format!("lookup {table}")),
        "killed, yet: {rules}"
    );
    assert!(!routes.trim().is_empty(), "killed, yet the route went");
    lab.ok(&["down"]);
    let (rules, routes) = untagged_state(&lab);
    assert!(
        !rules.contains(&format!("lookup {table}")),
        "a rule is left: {rules}"
    );
    assert!(routes.trim().is_empty(), "a route is left: {routes}");
}

/// Runs on every kernel: with 802.1Q the VLAN network comes up with its
/// sub-interface, rule and route; without, it fails saying what the kernel
/// lacks and how to add it (and leaves nothing behind either way).
#[test]
fn a_vlan_network_comes_up_or_names_the_missing_kernel_support() {
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    let probe = lab.exporter.exec(
        "ip",
        &[
            "link", "add", "link", "dn-up", "name", "dn-probe", "type", "vlan", "id", "2",
        ],
    );
    let kernel_has_vlans = probe.success();
    if kernel_has_vlans {
        lab.exporter.ip("link del dn-probe");
    }
    let config = lab.nat_config(|_| {
        format!(
            "datapath: ebpf\nnat_mode: 1to1\naddresses:\n  - ip: {DUT_IP}\n    public_ip: {VLAN_PUBLIC}\n    vlan_id: {VLAN}\n    public_gateway: {VLAN_GATEWAY}\n"
        )
    });
    lab.write_config(&config);
    // Not `start`: that waits for every network to be up.
    lab.launch_with(&[]);
    if kernel_has_vlans {
        lab.wait_network_state("dut1", "up", Duration::from_secs(5));
        assert_vlan_in_place(&lab);
    } else {
        lab.wait_network_state("dut1", "failed", Duration::from_secs(5));
        let (_, problem) = lab.network_state("dut1").unwrap();
        let problem = problem.unwrap_or_default();
        assert!(
            problem.contains("no 802.1Q VLAN support") && problem.contains("modprobe 8021q"),
            "{problem}"
        );
    }
    lab.stop();
    assert_vlan_gone(&lab);
}
