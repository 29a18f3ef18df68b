//! Network boot (issue #21) from the DUT's side: what a real DHCP client in
//! a DUT namespace receives. BusyBox udhcpc asks for options with `-O` and
//! hands every answer to its script as environment variables, which the
//! script only records; a raw dhcproto client sets option 93 the way PXE
//! firmware does.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dutnet_tests::{
    Netns, cli,
    lab::{Dut, Lab},
    prereq,
};

// Only DISCOVER/OFFER of it here (`lease` is dhcp.rs's).
#[allow(dead_code)]
#[path = "common/raw_dhcp.rs"]
mod raw_dhcp;

use raw_dhcp::{RawClient, request};

const NEXT_SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 5);
const BOARD_MAC: &str = "02:00:00:00:0a:01";

/// One network with boot options, one DUT entry overriding two of them.
const CONFIG: &str = r#"interface: dn-dut1
subnet: 192.168.100.0/24
gateway_ip: 192.168.100.1
nat_mode: disabled
dhcp_range_start: 192.168.100.100
dhcp_range_end: 192.168.100.110
dhcp_options:
  next_server: 192.168.100.5
  boot_file: pxelinux.0
  tftp_server_name: boot.lab
  mtu: 1400
  options:
    - {code: 224, type: string, value: lab-wide}
    - {code: 225, type: u16, value: 300}
  boot_rules:
    - {arch: efi_x64, boot_file: grubx64.efi}
addresses:
  - ip: 192.168.100.10
    mac: 02:00:00:00:0a:01
    dhcp_options:
      boot_file: board-a/u-boot.scr
      options:
        - {code: 224, type: string, value: board-a}
"#;

/// DUT NIC `dn-dut1` on a switch with two DUTs: the board, which has its
/// own `addresses` entry ([`board_dut`]), and one the network knows nothing
/// about ([`other_dut`]).
fn start() -> Lab {
    prereq::require("udhcpc", "udhcpc");
    let mut lab = Lab::builder()
        .dut(Dut::on(1).mac(BOARD_MAC).switched(2))
        .build();
    lab.load(CONFIG);
    lab
}

/// The DUT with its own `addresses` entry.
fn board_dut(lab: &Lab) -> &Netns {
    lab.dut_behind(1, 1)
}

/// A DUT the network knows nothing about.
fn other_dut(lab: &Lab) -> &Netns {
    lab.dut_behind(1, 2)
}

/// Runs udhcpc once in `ns` asking for `options`; returns the variables
/// its script saw at `bound`.
fn udhcpc(lab: &Lab, ns: &Netns, options: &[&str]) -> BTreeMap<String, String> {
    let record = lab.topology.path(&format!("{}.env", ns.name));
    let script = lab.topology.path(&format!("{}.sh", ns.name));
    record_env_script(&script, &record);
    let mut args = vec!["-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1"];
    for o in options {
        args.extend(["-O", o]);
    }
    let script_arg = script.display().to_string();
    args.extend(["-s", &script_arg]);
    let out = ns.exec("udhcpc", &args);
    assert!(out.success(), "udhcpc got no lease: {out:#?}");
    let text = std::fs::read_to_string(&record).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A udhcpc script that configures nothing: at `bound` it writes its
/// environment to `record`.
fn record_env_script(path: &Path, record: &Path) {
    let text = format!(
        "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
        record.display()
    );
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// `lab-wide` as udhcpc prints an option it has no name for: hex.
fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_real_client_gets_boot_options_and_the_dut_override_wins() {
    let lab = start();
    let asked = ["tftp", "bootfile", "mtu", "224"];

    let other = udhcpc(&lab, other_dut(&lab), &asked);
    let get = |env: &BTreeMap<String, String>, key: &str| env.get(key).cloned();
    assert_eq!(
        get(&other, "siaddr"),
        Some(NEXT_SERVER.to_string()),
        "{other:?}"
    );
    assert_eq!(get(&other, "boot_file").as_deref(), Some("pxelinux.0"));
    assert_eq!(get(&other, "bootfile").as_deref(), Some("pxelinux.0"));
    assert_eq!(get(&other, "tftp").as_deref(), Some("boot.lab"));
    assert_eq!(get(&other, "mtu").as_deref(), Some("1400"));
    assert_eq!(get(&other, "opt224"), Some(hex("lab-wide")), "{other:?}");
    // Configured but not asked for: not sent.
    assert_eq!(get(&other, "opt225"), None, "{other:?}");

    let board = udhcpc(&lab, board_dut(&lab), &asked);
    assert_eq!(get(&board, "ip").as_deref(), Some("192.168.100.10"));
    assert_eq!(
        get(&board, "boot_file").as_deref(),
        Some("board-a/u-boot.scr")
    );
    assert_eq!(
        get(&board, "bootfile").as_deref(),
        Some("board-a/u-boot.scr")
    );
    assert_eq!(get(&board, "opt224"), Some(hex("board-a")), "{board:?}");
    // What the entry does not override comes from the network.
    assert_eq!(get(&board, "siaddr"), Some(NEXT_SERVER.to_string()));
    assert_eq!(get(&board, "mtu").as_deref(), Some("1400"));

    // Asked for, 225 comes as configured (u16 300 = 0x012c).
    let with_225 = udhcpc(&lab, other_dut(&lab), &["225"]);
    assert_eq!(get(&with_225, "opt225").as_deref(), Some("012c"));

    // `dutnet status --json` shows the boot configuration.
    let out = cli::run(&lab.topology, &lab.exporter, &["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let boot = &status["networks"][0]["boot"];
    assert_eq!(boot["dhcp_options"]["boot_file"], "pxelinux.0", "{status}");
    assert_eq!(boot["dhcp_options"]["options"][1]["value"], 300, "{status}");
    assert_eq!(boot["duts"][0]["mac"], BOARD_MAC, "{status}");
    assert_eq!(
        boot["duts"][0]["dhcp_options"]["boot_file"],
        "board-a/u-boot.scr"
    );
    assert_eq!(boot["tftp_running"], false);
}

#[test]
fn a_uefi_client_gets_the_uefi_file_and_a_bios_client_the_bios_file() {
    let lab = start();
    let client = RawClient::open(other_dut(&lab), "eth0");
    for (last, arch, file) in [(1u8, 7u16, "grubx64.efi"), (2, 0, "pxelinux.0")] {
        let offer = offer(
            &client,
            [0x02, 0, 0, 0x09, 0, last],
            &[
                DhcpOption::ClientSystemArchitecture(arch.into()),
                DhcpOption::ClassIdentifier(
                    format!("PXEClient:Arch:{arch:05}:UNDI:003016").into_bytes(),
                ),
                DhcpOption::ParameterRequestList(vec![
                    OptionCode::SubnetMask,
                    OptionCode::BootfileName,
                ]),
            ],
        );
        // dhcproto keeps the field's terminating NUL.
        let field = offer.fname().and_then(|f| f.split(|b| *b == 0).next());
        assert_eq!(field, Some(file.as_bytes()), "arch {arch}: {offer:?}");
        assert_eq!(
            offer.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(file.as_bytes().to_vec())),
            "arch {arch}"
        );
        assert_eq!(offer.siaddr(), NEXT_SERVER);
    }
}

/// Broadcasts a DISCOVER from `mac` with `options`; the OFFER.
fn offer(client: &RawClient, mac: [u8; 6], options: &[DhcpOption]) -> Message {
    client.exchange(
        &request(mac, MessageType::Discover, options),
        MessageType::Offer,
    )
}
