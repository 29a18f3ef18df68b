//! The control socket and the verbs over it, against a running daemon,
//! checked by their effects: the lease a real dhclient gets, the answer dig
//! prints, the exit codes a script sees.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::os::unix::fs::PermissionsExt as _;

use dutnet_tests::{
    Netns, Output, cli,
    clients::Dhclient,
    cmd,
    lab::{Dut, Lab, config::Network},
    prereq,
};

/// The services network with a dynamic range.
fn config() -> String {
    Network::services()
        .set("dhcp_range_start: 192.168.100.100\ndhcp_range_end: 192.168.100.200")
        .single()
}

/// The DUT's MAC: no entry in the config has it.
const DUT_MAC: &str = "02:00:00:00:02:22";

fn start() -> Lab {
    with_config(&config())
}

fn with_config(config: &str) -> Lab {
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(DUT_MAC))
        .resolv_conf()
        .build();
    lab.load(config);
    lab
}

/// A fresh dhclient identity (`name`: its own lease file) on the DUT;
/// the address it was leased.
fn lease(lab: &Lab, name: &str) -> Option<String> {
    prereq::require("dhclient", "isc-dhcp-client");
    let client = Dhclient::new(lab.dut(1), "eth0", &lab.topology.dir, name, "");
    let out = client.run();
    assert!(out.success(), "dhclient failed: {out:#?}\n{}", lab.log());
    client.address()
}

/// `dig +short NAME` from the DUT (which needs an address to ask from).
fn dig(lab: &Lab, name: &str) -> String {
    prereq::require("dig", "dnsutils");
    lab.dut(1)
        .exec(
            "dig",
            &["+short", "+time=2", "+tries=1", "@192.168.100.1", name],
        )
        .stdout
        .trim()
        .to_owned()
}

/// `dutnet args...` as uid/gid 65534 (nobody/nogroup), from a copy of
/// the binary anybody may run, so only the socket can refuse.
fn dutnet_as_nobody(lab: &Lab, args: &[&str]) -> Output {
    let bin = lab.topology.path("dutnet-bin");
    std::fs::copy(cli::binary(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(args);
    command.envs(cli::env(&lab.topology));
    cmd::run(command, dutnet_tests::netns::COMMAND_LIMIT)
}

#[test]
fn add_address_with_a_mac_gives_that_ip_and_remove_address_takes_it_back() {
    let lab = start();
    let done = lab.ok(&[
        "add-address",
        "192.168.100.60",
        "--mac",
        DUT_MAC,
        "--hostname",
        "newboard",
    ]);
    assert!(done.contains("192.168.100.60"), "{done}");
    assert_eq!(lease(&lab, "first").as_deref(), Some("192.168.100.60"));
    assert_eq!(lab.ok(&["get-ip", DUT_MAC]).trim(), "192.168.100.60");
    let leased = lab.json(&["get-ip", DUT_MAC]);
    assert_eq!(leased["ip"], "192.168.100.60", "{leased}");
    assert_eq!(leased["is_static"], true, "{leased}");

    lab.ok(&["remove-address", "192.168.100.60"]);
    let after = lease(&lab, "second");
    assert!(
        after.is_some() && after.as_deref() != Some("192.168.100.60"),
        "after remove-address the DUT got {after:?}\n{}",
        lab.log()
    );

    let unknown = lab.dutnet(&["get-ip", "02:00:00:00:09:99"]);
    assert_eq!(unknown.code, Some(3), "{unknown:#?}");
    assert!(unknown.stderr.contains("dutnet leases"), "{unknown:#?}");
    let missing = lab.dutnet(&["remove-address", "192.168.100.60"]);
    assert_eq!(missing.code, Some(3), "{missing:#?}");
}

#[test]
fn add_dns_resolves_on_the_next_query_and_remove_dns_stops_it() {
    let lab = start();
    lab.dut(1).ip("addr add 192.168.100.150/24 dev eth0");
    assert_eq!(dig(&lab, "controller.lab.local"), "10.99.0.1");
    assert!(!dig(&lab, "nas.lab.local").contains("10.99.0.7"));

    lab.ok(&["add-dns", "nas.lab.local", "10.99.0.7"]);
    assert_eq!(dig(&lab, "nas.lab.local"), "10.99.0.7");
    let entries = lab.json(&["dns-entries"]).to_string();
    assert!(entries.contains("nas.lab.local"), "{entries}");

    lab.ok(&["remove-dns", "nas.lab.local"]);
    assert!(!dig(&lab, "nas.lab.local").contains("10.99.0.7"));
    // A config-file entry can be removed too.
    lab.ok(&["remove-dns", "controller.lab.local"]);
    assert_ne!(dig(&lab, "controller.lab.local"), "10.99.0.1");
    let missing = lab.dutnet(&["remove-dns", "nas.lab.local"]);
    assert_eq!(missing.code, Some(3), "{missing:#?}");

    // A host name given with add-address answers at once as well.
    lab.ok(&["add-address", "192.168.100.70", "--hostname", "bench"]);
    assert_eq!(dig(&lab, "bench.lab.local"), "192.168.100.70");
}

#[test]
fn bad_requests_exit_4_and_change_nothing() {
    let lab = start();
    let before = lab.json(&["status"]);
    assert_eq!(before["networks"][0]["interface"], "dn-dut1", "{before}");
    assert_eq!(before["networks"][0]["addresses"], 1, "{before}");
    for bad in [
        // Outside the subnet.
        &["add-address", "10.1.2.3", "--mac", DUT_MAC][..],
        // board1's MAC.
        &[
            "add-address",
            "192.168.100.61",
            "--mac",
            "02:00:00:00:01:0a",
        ],
        // Not a MAC.
        &["add-address", "192.168.100.62", "--mac", "02:00:00:zz:01"],
        // Masquerade network.
        &["add-address", "192.168.100.63", "--public-ip", "10.99.0.50"],
        &["add-dns", "not a name", "10.0.0.1"],
        // Not an address.
        &["add-dns", "controller.lab.local", "10.0.0"],
        &["get-ip", "nonsense"],
    ] {
        let out = lab.dutnet(bad);
        assert_eq!(out.code, Some(4), "{bad:?}: {out:#?}");
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "{bad:?}: not one line: {out:#?}"
        );
    }
    let unknown = lab.dutnet(&["status", "--network", "nope"]);
    assert_eq!(unknown.code, Some(3), "{unknown:#?}");
    assert_eq!(lab.json(&["status"]), before);
    let runtime = lab.topology.path("state").join("runtime");
    assert!(
        std::fs::read_dir(&runtime).map_or(true, |mut d| d.next().is_none()),
        "a refused request saved something in {}",
        runtime.display()
    );
}

#[test]
fn the_socket_is_root_only_and_a_stopped_daemon_says_so() {
    prereq::require("setpriv", "util-linux");
    let mut lab = start();
    let out = dutnet_as_nobody(&lab, &["status"]);
    assert!(!out.success(), "{out:#?}");
    assert!(
        out.stderr
            .contains("permission denied on the control socket"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("dn-dut1"), "{out:#?}");

    lab.stop();
    let socket = cli::control_socket(&lab.topology);
    assert!(!socket.exists(), "the socket outlived the daemon");
    let stopped = lab.dutnet(&["status"]);
    assert_eq!(stopped.code, Some(5), "{stopped:#?}");
    assert!(stopped.stderr.contains("dutnet load"), "{stopped:#?}");
    lab.restart();
    lab.ok(&["status"]);
}

#[test]
fn a_socket_group_lets_its_members_use_the_socket() {
    prereq::require("setpriv", "util-linux");
    let mut lab = start();
    // Debian's `nogroup` is gid 65534, the group of uid 65534.
    lab.restart_with(&["--socket-group", "nogroup"]);
    let out = dutnet_as_nobody(&lab, &["status", "--json"]);
    assert!(out.success(), "{out:#?}\n{}", lab.log());
    assert!(out.stdout.contains("dn-dut1"), "{out:#?}");

    let config = lab.topology.path("dutnet.yaml").display().to_string();
    let unknown = lab.dutnet(&["load", &config, "--socket-group", "no-such-group-dutnet"]);
    assert!(!unknown.success(), "{unknown:#?}");
    assert!(
        unknown
            .stderr
            .contains("there is no group `no-such-group-dutnet`"),
        "{unknown:#?}"
    );
}

#[test]
fn runtime_changes_survive_a_restart_until_down() {
    let mut lab = start();
    lab.dut(1).ip("addr add 192.168.100.150/24 dev eth0");
    lab.ok(&["add-address", "192.168.100.60", "--mac", DUT_MAC]);
    lab.ok(&["add-dns", "nas.lab.local", "10.99.0.7"]);
    lab.ok(&["remove-dns", "controller.lab.local"]);

    lab.restart();
    assert_eq!(lease(&lab, "first").as_deref(), Some("192.168.100.60"));
    assert_eq!(dig(&lab, "nas.lab.local"), "10.99.0.7");
    assert_ne!(dig(&lab, "controller.lab.local"), "10.99.0.1");
    let status = lab.json(&["status"]);
    assert_eq!(status["networks"][0]["addresses"], 2, "{status}");
    assert_eq!(
        status["networks"][0]["dns_entries"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{status}"
    );

    lab.stop();
    lab.ok(&["down"]);
    lab.restart();
    assert!(!dig(&lab, "nas.lab.local").contains("10.99.0.7"));
    assert_eq!(dig(&lab, "controller.lab.local"), "10.99.0.1");
    let status = lab.json(&["status"]);
    assert_eq!(status["networks"][0]["addresses"], 1, "{status}");
}

#[test]
fn add_address_with_a_public_ip_makes_the_dut_reachable_from_the_lan_until_removed() {
    let lab = with_config(
        "\
interface: dn-dut1
upstream_interface: dn-up
nat_mode: 1to1
addresses:
  - ip: 192.168.100.20
    public_ip: 10.99.0.20
",
    );
    lab.dut(1).ip("addr add 192.168.100.60/24 dev eth0");
    lab.dut(1).ip("route add default via 192.168.100.1");
    let ping = || {
        lab.lan()
            .exec("ping", &["-c", "1", "-W", "1", "10.99.0.60"])
            .success()
    };
    assert!(!ping(), "10.99.0.60 answered before it was mapped");

    lab.ok(&["add-address", "192.168.100.60", "--public-ip", "10.99.0.60"]);
    let reached = cmd::wait_for(std::time::Duration::from_secs(5), || ping().then_some(()));
    assert!(
        reached.is_some(),
        "the LAN cannot reach the DUT at 10.99.0.60\n{}",
        lab.log()
    );
    // The exporter owns the alias: make sure the DUT answered, not it.
    let echoes = || icmp_in_echos(lab.dut(1));
    let before = echoes();
    assert!(ping());
    assert!(echoes() > before, "the echo did not reach the DUT");
    let rules = lab.json(&["nat-rules"]);
    let mappings = rules["networks"][0]["mappings"].to_string();
    assert!(mappings.contains("10.99.0.60"), "{rules}");

    lab.ok(&["remove-address", "192.168.100.60"]);
    assert!(!ping(), "10.99.0.60 still answers after remove-address");
    let aliases = lab.exporter.ip("-4 addr show dev dn-up").stdout;
    assert!(!aliases.contains("10.99.0.60"), "{aliases}");
    assert!(aliases.contains("10.99.0.20"), "{aliases}");
}

/// `Icmp: InEchos` of `ns` (/proc/net/snmp is per network namespace).
fn icmp_in_echos(ns: &Netns) -> u64 {
    let snmp = ns.exec("cat", &["/proc/net/snmp"]).ok().stdout;
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (icmp.next().unwrap(), icmp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InEchos")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap()
}

/// The permission bits of `path` (not following a symbolic link).
fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn state_files_are_root_only_and_down_after_a_crash_leaves_no_pid_or_socket() {
    let mut lab = start();
    lab.ok(&["add-dns", "nas.lab.local", "10.99.0.7"]);
    assert!(lease(&lab, "first").is_some(), "{}", lab.log());
    let state = lab.topology.path("state");
    let run = lab.topology.path("run");
    let network = state.join("networks").join("dn-dut1");
    let private_files = [
        state.join("undo.journal"),
        state.join("runtime").join("dn-dut1.json"),
        network.join("dnsmasq.leases"),
        run.join("dutnet.pid"),
        run.join("dutnet.sock"),
    ];
    let private_dirs = [
        state.clone(),
        state.join("runtime"),
        state.join("networks"),
        network.clone(),
        run.clone(),
    ];
    let check = |when: &str| {
        for file in &private_files {
            assert_eq!(mode_of(file), 0o600, "{when}: {}", file.display());
        }
        for dir in &private_dirs {
            assert_eq!(mode_of(dir), 0o700, "{when}: {}", dir.display());
        }
    };
    check("as created");

    // What an older dutnet left: the umask's modes. A restart tightens them.
    for file in &private_files[1..3] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for dir in &private_dirs {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    lab.restart();
    check("after a restart over loose modes");

    lab.kill();
    assert!(run.join("dutnet.pid").exists() && run.join("dutnet.sock").exists());
    let down = lab.ok(&["down"]);
    assert!(down.contains("removed the pid and socket files"), "{down}");
    for stale in ["dutnet.pid", "dutnet.sock"] {
        assert!(!run.join(stale).exists(), "{stale} left after down: {down}");
    }
    let again = lab.ok(&["down"]);
    assert!(again.contains("nothing to do"), "{again}");
}

/// The lease of `ip` in `dutnet leases --json`.
fn lease_json(lab: &Lab, ip: &str) -> serde_json::Value {
    fn find(value: &serde_json::Value, ip: &str) -> Option<serde_json::Value> {
        match value {
            serde_json::Value::Object(map)
                if map.get("ip").and_then(|v| v.as_str()) == Some(ip) =>
            {
                Some(value.clone())
            }
            serde_json::Value::Object(map) => map.values().find_map(|v| find(v, ip)),
            serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, ip)),
            _ => None,
        }
    }
    let leases = lab.json(&["leases"]);
    find(&leases, ip).unwrap_or_else(|| panic!("no lease of {ip}: {leases:#}"))
}

/// The `nat` part of the lease of `ip`.
fn nat_of_lease(lab: &Lab, ip: &str) -> serde_json::Value {
    lease_json(lab, ip)["nat"].clone()
}

/// `dutnet leases` tells a DUT that is talking through NAT from one that
/// is not: its flows in the table and how long ago it last sent.
#[test]
fn leases_show_whether_a_dut_is_sending_through_nat() {
    // A 2 s timeout makes the table's sweeps (which count the flows per
    // DUT) run every second.
    let config = Network::services()
        .set("dhcp_range_start: 192.168.100.100\ndhcp_range_end: 192.168.100.200\nnat_timeouts:\n  tcp_close: 2s")
        .single();
    let lab = with_config(&config);
    let ip = lease(&lab, "activity").expect("a lease");
    let idle = nat_of_lease(&lab, &ip);
    assert_eq!(idle["flows"], 0, "{idle:#}");
    assert!(idle["last_sent_secs_ago"].is_null(), "{idle:#}");
    let text = lab.ok(&["leases"]);
    assert!(text.contains("idle"), "{text}");
    // And when it was last heard from: the ACK just now.
    let lease = lease_json(&lab, &ip);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last_ack = lease["last_ack"]
        .as_u64()
        .unwrap_or_else(|| panic!("{lease:#}"));
    assert!(now.saturating_sub(last_ack) < 30, "{lease:#}");
    assert!(text.contains("s ago"), "{text}");
    // The expiry as a date and what is left of the lease.
    assert!(text.contains(" UTC (in "), "{text}");

    // The client only records its lease: the address goes on by hand.
    lab.dut(1).ip(&format!("addr add {ip}/24 dev eth0"));
    lab.dut(1).ip("route replace default via 192.168.100.1");
    let udp = dutnet_tests::nat::lan_udp_echo(&lab);
    let source = std::net::SocketAddrV4::new(ip.parse().unwrap(), 0);
    let socket = dutnet_tests::nat::udp_socket(lab.dut(1), source);
    dutnet_tests::nat::udp_exchange(&lab, &socket, &udp, b"through nat");
    let sending = cmd::wait_for(std::time::Duration::from_secs(4), || {
        let nat = nat_of_lease(&lab, &ip);
        (nat["flows"].as_u64() >= Some(1) && nat["last_sent_secs_ago"].as_u64() <= Some(3))
            .then_some(nat)
    });
    assert!(
        sending.is_some(),
        "{:#}\n{}",
        nat_of_lease(&lab, &ip),
        lab.log()
    );
    let text = lab.ok(&["leases"]);
    assert!(text.contains("1 flow, sent"), "{text}");
}

/// `nat-rules --network` shows that network's rules, not the table's
/// every rule (jumpstarter users script it per network).
#[test]
fn nat_rules_of_one_network_are_its_own() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat_on("ebpf", "");
    let both = lab.json(&["nat-rules"]);
    let all = both["ruleset"].as_str().unwrap_or_default();
    assert!(
        all.contains("dn-dut1") && all.contains("dn-dut2"),
        "{both:#}"
    );
    let one = lab.json(&["nat-rules", "--network", "dut2"]);
    let ruleset = one["ruleset"].as_str().unwrap_or_default();
    assert!(ruleset.contains("\"dn-dut2\""), "{one:#}");
    assert!(
        !ruleset.contains("dn-dut1"),
        "dut1's rules in dut2's:\n{ruleset}"
    );
    assert_eq!(one["networks"].as_array().map(Vec::len), Some(1), "{one:#}");
}

/// jumpstarter's add-address and add-dns replace the entry of the same
/// address or name (and its `-m`/`-n` flags work): dutnet does too, says
/// what it replaced, and refuses a replacement that would clash with
/// another entry.
#[test]
fn add_address_and_add_dns_replace_the_entry_of_the_same_address_or_name() {
    let lab = start();
    lab.dut(1).ip("addr add 192.168.100.150/24 dev eth0");
    lab.ok(&[
        "add-address",
        "192.168.100.70",
        "-m",
        "02:00:00:00:07:00",
        "-n",
        "bench",
    ]);
    assert_eq!(dig(&lab, "bench.lab.local"), "192.168.100.70");
    let replaced = lab.ok(&["add-address", "192.168.100.70", "-n", "rig"]);
    assert!(replaced.contains("replaced"), "{replaced}");
    assert_eq!(dig(&lab, "rig.lab.local"), "192.168.100.70");
    assert_eq!(
        dig(&lab, "bench.lab.local"),
        "",
        "the replaced name still answers"
    );
    let status = lab.json(&["status"]);
    assert_eq!(status["networks"][0]["addresses"], 2, "{status}");
    // board1 has 02:00:00:00:01:0a: the same MAC on a second address is
    // refused, and .70 keeps its entry.
    let clash = lab.dutnet(&["add-address", "192.168.100.70", "-m", "02:00:00:00:01:0a"]);
    assert_eq!(clash.code, Some(4), "{clash:#?}");
    assert_eq!(dig(&lab, "rig.lab.local"), "192.168.100.70");

    lab.ok(&["add-dns", "nas.lab.local", "10.99.0.7"]);
    let moved = lab.ok(&["add-dns", "nas.lab.local", "10.99.0.8"]);
    assert!(moved.contains("was 10.99.0.7"), "{moved}");
    assert_eq!(dig(&lab, "nas.lab.local"), "10.99.0.8");
    let entries = lab.json(&["dns-entries"]).to_string();
    assert!(!entries.contains("10.99.0.7"), "{entries}");
}

/// `stats --by-dut`: two DUTs behind one NIC, one sending far more while
/// the rates are read. The busy one comes first with its rate, the quiet
/// one shows its own echo requests and replies and the name its
/// `addresses` entry gives it.
#[test]
fn stats_by_dut_puts_the_busiest_dut_first() {
    prereq::require("ping", "iputils-ping");
    const QUIET_MAC: &str = "02:00:00:00:02:44";
    let mut lab = Lab::builder()
        .upstream()
        .dut(
            Dut::on(1)
                .ip(dutnet_tests::nat::DUT_IP)
                .routed()
                .mac(QUIET_MAC)
                .switched(2),
        )
        .build();
    let quiet = dutnet_tests::nat::DUT_IP;
    let busy = dutnet_tests::lab::config::dut_ip(2);
    let config = lab.nat_config(|_| {
        format!("datapath: ebpf\naddresses:\n  - {{ip: {quiet}, mac: \"{QUIET_MAC}\", hostname: quiet-board}}\n")
    });
    lab.load(&config);
    let lan = dutnet_tests::nat::LAN_IP.to_string();
    let ping = lab
        .dut_behind(1, 1)
        .exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", &lan]);
    assert!(ping.success(), "{ping:#?}\n{}", lab.report());
    // 400 echo requests in about 2 s: the rates are read in the middle.
    let _flood = lab.dut_behind(1, 2).spawn(
        "ping",
        &["-c", "400", "-i", "0.005", "-W", "1", &lan],
        &[],
        lab.topology.path("busy-ping.log"),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let by_dut = lab.json(&["stats", "--by-dut", "--interval", "0.5"]);
    let duts = by_dut["duts"]
        .as_array()
        .unwrap_or_else(|| panic!("{by_dut:#}"));
    let first = &duts[0];
    assert_eq!(first["address"], busy.to_string(), "{by_dut:#}");
    let rate = first["rates"]["from_dut"]["packets_per_s"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(rate > 50.0, "{by_dut:#}");
    let quiet_line = duts
        .iter()
        .find(|d| d["address"] == quiet.to_string())
        .unwrap_or_else(|| panic!("{by_dut:#}"));
    assert_eq!(quiet_line["network"], "dut1", "{by_dut:#}");
    assert_eq!(quiet_line["mac"], QUIET_MAC, "{by_dut:#}");
    assert_eq!(quiet_line["hostname"], "quiet-board", "{by_dut:#}");
    assert!(
        quiet_line["from_dut"]["packets"].as_u64() >= Some(3),
        "{by_dut:#}"
    );
    assert!(
        quiet_line["to_dut"]["packets"].as_u64() >= Some(3),
        "{by_dut:#}"
    );
    assert!(
        quiet_line["to_dut"]["bytes"].as_u64() >= Some(3 * 98),
        "{by_dut:#}"
    );

    let text = lab.ok(&["stats", "--by-dut", "--interval", "0.2"]);
    let quiet_row = text
        .lines()
        .find(|l| l.contains("quiet-board"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(quiet_row.contains(QUIET_MAC), "{text}");
    assert!(text.contains(&busy.to_string()), "{text}");
}
