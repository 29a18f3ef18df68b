//! Against the real jumpstarter (issue #20): its own packages from PyPI,
//! pinned by `xtask/jumpstarter/requirements.txt` and installed by `cargo
//! xtask setup`, read what dutnet writes and accept what dutnet accepts.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use dutnet_tests::{
    Output, Topology, cli,
    clients::Dhclient,
    cmd,
    far_end::{IcmpRecorder, TcpEcho},
    lab::{
        Dut, Lab,
        config::{DUT_IP, EXPORTER_UP, GATEWAY, LAN_IP, Network, UPSTREAM_NIC},
    },
    nat::try_tcp_exchange,
    netns::COMMAND_LIMIT,
    prereq,
};
use serde_json::{Value, json};

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

/// jumpstarter reads exporter files with PyYAML (YAML 1.1): whatever it
/// reads as a boolean for `dhcp_enabled`, `local_ntp` and `enable_tcpdump`,
/// dutnet reads as the same boolean; what PyYAML reads as a string (which
/// jumpstarter's plain dataclass would take as truthy, `"no"` included)
/// dutnet refuses.
#[test]
fn booleans_read_as_jumpstarters_yaml_loader_reads_them() {
    let words = [
        "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "true",
        "True", "FALSE", "y", "n", "Y", "1", "0", "'yes'",
    ];
    let topology = Topology::new();
    for word in words {
        let js = python(
            "import sys, yaml\nprint(repr(yaml.safe_load('k: ' + sys.argv[1])['k']))",
            &[word],
        );
        assert!(js.success(), "{js:#?}");
        let pyyaml = js.stdout.trim().to_owned();
        for key in ["dhcp_enabled", "local_ntp", "enable_tcpdump"] {
            let file = topology.path("booleans.yaml");
            std::fs::write(&file, format!("interface: dn-x\n{key}: {word}\n")).unwrap();
            let mut check = Command::new(cli::binary());
            check
                .args(["config", "check", "--json"])
                .arg(&file)
                .envs(cli::env(&topology));
            let ours = cmd::run(check, COMMAND_LIMIT);
            let read = ours
                .success()
                .then(|| serde_json::from_str::<serde_json::Value>(&ours.stdout).unwrap())
                .map(|v| v["networks"][0].get(key).cloned().unwrap_or(false.into()));
            match pyyaml.as_str() {
                "True" => assert_eq!(read, Some(true.into()), "{key}: {word} {ours:#?}"),
                "False" => assert_eq!(read, Some(false.into()), "{key}: {word} {ours:#?}"),
                _ if word == "'yes'" => {
                    // Quoted: a string to PyYAML, but what it says is clear;
                    // dutnet takes it as the word it is (documented).
                    assert_eq!(read, Some(true.into()), "{key}: {word} {ours:#?}");
                }
                _ => assert_eq!(
                    read, None,
                    "{key}: {word} is {pyyaml} to PyYAML; dutnet read {read:?}"
                ),
            }
        }
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

/// How long one call through jumpstarter's client may take (a status asks
/// dutnet twice; starting the driver waits for dutnet to come up).
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// `tests/jumpstarter/exporter.py`: the dutnet-backed DutNetwork built from
/// an exporter config's driver instance by jumpstarter's own code and served
/// with jumpstarter's `serve()`, in the lab's exporter namespace, driven one
/// JSON command per line. Every result is checked there against the return
/// type of the same method of jumpstarter's own DutNetwork.
///
/// Dropping it closes its stdin, so the driver closes and stops dutnet; if
/// it does not exit in time it is killed, and so is the dutnet it started.
struct Exporter {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::Receiver<Value>,
    log: PathBuf,
    run_dir: PathBuf,
}

impl Exporter {
    /// Starts it with the driver instance `driver` (YAML: `type:`,
    /// `config:`) and waits until the client is served.
    fn start(lab: &Lab, driver: &str, log: &str) -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jumpstarter/exporter.py");
        let log = lab.topology.path(&format!("{log}.log"));
        let stderr = std::fs::File::create(&log).expect("create the exporter's log");
        let mut command = lab.exporter.command(
            &jumpstarter_python().to_string_lossy(),
            &[&script.to_string_lossy(), driver],
        );
        command
            .envs(cli::env(&lab.topology))
            .env("DUTNET_BINARY", cli::binary())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().expect("start the exporter");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Anything else on stdout is the exporter's chatter.
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && sender.send(value).is_err()
                {
                    break;
                }
            }
        });
        let exporter = Self {
            stdin: child.stdin.take(),
            child,
            replies,
            log,
            run_dir: lab.topology.path("run"),
        };
        let ready = exporter.next(CALL_LIMIT);
        assert_eq!(ready["ready"], true, "{ready}\n{}", exporter.log());
        exporter
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn next(&self, limit: Duration) -> Value {
        self.replies.recv_timeout(limit).unwrap_or_else(|e| {
            panic!(
                "no answer from the exporter ({e}); its log:\n{}",
                self.log()
            )
        })
    }

    fn send(&mut self, command: &Value) {
        let stdin = self.stdin.as_mut().expect("the exporter is open");
        writeln!(stdin, "{command}").expect("write to the exporter");
    }

    /// The answer to `command`: `Ok(result)`, or `Err` with the driver's
    /// error. A result of another shape than jumpstarter's fails the test.
    fn ask(&mut self, command: &Value) -> Result<Value, String> {
        self.send(command);
        let reply = self.next(CALL_LIMIT);
        if let Some(shape) = reply.get("shape") {
            panic!("{command}: not jumpstarter's shape: {shape}");
        }
        match reply.get("ok") {
            Some(ok) => Ok(ok.clone()),
            None => Err(reply["error"].as_str().unwrap_or_default().to_owned()),
        }
    }

    /// `client.method(*args)`, which must succeed.
    #[track_caller]
    fn call(&mut self, method: &str, args: Value) -> Value {
        self.ask(&json!({"call": method, "args": args}))
            .unwrap_or_else(|e| panic!("{method}{args}: {e}\nexporter log:\n{}", self.log()))
    }

    /// `j dut-network args...`: its exit code and output.
    fn cli(&mut self, args: &[&str]) -> (i64, String) {
        let out = self
            .ask(&json!({ "cli": args }))
            .unwrap_or_else(|e| panic!("j dut-network {args:?}: {e}"));
        (
            out["exit_code"].as_i64().unwrap_or(-1),
            out["output"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Ends stdin: the client and the driver close, dutnet stops. True when
    /// the exporter said so and exited in time.
    fn close(&mut self) -> bool {
        if self.stdin.take().is_none() {
            return true;
        }
        let closed = self
            .replies
            .recv_timeout(CALL_LIMIT)
            .is_ok_and(|v| v["closed"] == true);
        let exited = cmd::wait_for(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        closed && exited.is_some_and(|s| s.success())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if !self.close() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        stop_dutnet(&self.run_dir);
    }
}

/// The PID of the dutnet whose run directory is `run_dir`, if one runs.
fn dutnet_pid(run_dir: &std::path::Path) -> Option<i32> {
    let pid = std::fs::read_to_string(run_dir.join("dutnet.pid"))
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    PathBuf::from(format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// Stops, by its PID, a dutnet a killed (or failed) exporter left running
/// in the test's run directory, and waits until it is gone.
fn stop_dutnet(run_dir: &std::path::Path) {
    if let Some(pid) = dutnet_pid(run_dir) {
        // SAFETY: kill(2) with the PID the test's own dutnet wrote.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = cmd::wait_for(Duration::from_secs(30), || {
            (!PathBuf::from(format!("/proc/{pid}")).exists()).then_some(())
        });
    }
}

/// Runs [`stop_dutnet`] when dropped: a test that starts drivers without an
/// [`Exporter`] leaves no dutnet behind, even when it fails.
struct StopsDutnet(PathBuf);

impl Drop for StopsDutnet {
    fn drop(&mut self) {
        stop_dutnet(&self.0);
    }
}

/// `dig +short @gateway name` from DUT 1: its answer.
fn dig(lab: &Lab, name: &str) -> String {
    let server = format!("@{GATEWAY}");
    let out = lab
        .dut(1)
        .exec("dig", &["+short", "+time=2", "+tries=2", &server, name]);
    out.stdout.trim().to_owned()
}

/// The dutnet-backed driver, configured by an exporter config's one
/// `type:` line and served with jumpstarter's `serve()`: jumpstarter's own
/// client calls every exported method and gets jumpstarter's shapes; a real
/// dhclient gets a lease and the DUT reaches the LAN host through NAT (the
/// LAN host sees the exporter's address); address and DNS entries added and
/// removed through the client are answered (or no longer) by the DNS the
/// DUT asks; `j dut-network` works; closing the exporter restores the host,
/// and a new exporter still knows the lease.
#[test]
fn the_dutnet_driver_serves_jumpstarters_client() {
    prereq::require("dhclient", "isc-dhcp-client");
    prereq::require("dig", "dnsutils");
    let lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(DUT_MAC))
        .resolv_conf()
        .build();
    let state_dir = lab.topology.path("js-state");
    let driver = format!(
        "type: jumpstarter_driver_dutnet.driver.DutNetwork
config:
  interface: dn-dut1
  upstream_interface: {UPSTREAM_NIC}
  dns_servers: [\"{LAN_IP}\"]
  state_dir: {}
  local_ntp: true
  enable_tcpdump: true
  addresses:
    - {{mac: \"02:00:00:00:01:0a\", ip: \"{DUT_IP}\", hostname: board1}}
  dns_entries:
    - {{hostname: controller.lab.local, ip: \"{LAN_IP}\"}}",
        state_dir.display()
    );
    let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7020));
    let pings = IcmpRecorder::start(lab.lan());
    let mut exporter = Exporter::start(&lab, &driver, "exporter-1");

    let status = exporter.call("status", json!([]));
    assert_eq!(status["interface"], "dn-dut1", "{status:#}");
    assert_eq!(status["interface_status"]["exists"], true, "{status:#}");
    assert_eq!(
        status["interface_status"]["addresses"],
        json!([format!("{GATEWAY}/24")]),
        "{status:#}"
    );
    assert_eq!(status["upstream"], UPSTREAM_NIC, "{status:#}");
    assert_eq!(status["nat_mode"], "masquerade", "{status:#}");
    assert_eq!(
        status["dns_entries"],
        json!([{"hostname": "controller.lab.local", "ip": LAN_IP.to_string()}]),
        "{status:#}"
    );
    assert_eq!(
        exporter.call("ntp_status", json!([])),
        json!({"enabled": true, "running": true})
    );
    let rules = exporter.call("get_nat_rules", json!([]));
    assert!(
        rules.as_str().is_some_and(|r| r.contains("masquerade")),
        "{rules}"
    );
    assert_eq!(exporter.call("get_leases", json!([])), json!([]));

    // A real DHCP client's lease, as the client lists it.
    let client = Dhclient::new(lab.dut(1), "eth0", &lab.topology.dir, "js", "");
    assert!(client.run().success(), "{}", exporter.log());
    let leased = client.address().expect("a lease");
    let leases = exporter.call("get_leases", json!([]));
    let lease = leases
        .as_array()
        .and_then(|all| all.iter().find(|l| l["mac"] == DUT_MAC))
        .unwrap_or_else(|| panic!("no lease of {DUT_MAC} in {leases:#}"));
    assert_eq!(lease["ip"], leased.as_str(), "{leases:#}");
    assert_eq!(
        exporter.call("get_dut_ip", json!([DUT_MAC])),
        leased.as_str()
    );
    assert_eq!(
        exporter.call("get_dut_ip", json!(["02:00:00:00:0f:0f"])),
        Value::Null
    );
    let status = exporter.call("status", json!([]));
    assert!(
        status["leases"]
            .as_array()
            .is_some_and(|all| all.iter().any(|l| l["ip"] == leased.as_str())),
        "{status:#}"
    );

    // The DUT on its lease reaches the LAN host through NAT.
    lab.dut(1).ip(&format!("addr add {leased}/24 dev eth0"));
    lab.dut(1).ip(&format!("route add default via {GATEWAY}"));
    let server = echo.addr;
    let peer = cmd::wait_for(Duration::from_secs(5), || {
        lab.dut(1)
            .enter(move || try_tcp_exchange(server, "through jumpstarter's driver"))
            .ok()
    })
    .unwrap_or_else(|| panic!("no TCP through NAT; exporter log:\n{}", exporter.log()));
    assert_eq!(peer.ip(), std::net::IpAddr::V4(EXPORTER_UP));
    let lan = LAN_IP.to_string();
    assert!(
        lab.dut(1)
            .exec("ping", &["-c", "2", "-W", "2", &lan])
            .success()
    );
    let sources = pings.sources();
    let dut: Ipv4Addr = leased.parse().expect("an IPv4 lease");
    assert!(
        sources.contains(&EXPORTER_UP) && !sources.contains(&dut),
        "the LAN host saw pings from {sources:?}"
    );

    // Address entries: added, replaced (same IP), removed; the DNS the DUT
    // asks follows each change.
    exporter.call(
        "add_address",
        json!(["192.168.100.50", "02:00:00:00:02:50", "board50", null]),
    );
    assert_eq!(dig(&lab, "board50"), "192.168.100.50");
    exporter.call(
        "add_address",
        json!(["192.168.100.50", null, "board51", null]),
    );
    assert_eq!(dig(&lab, "board51"), "192.168.100.50");
    assert_eq!(dig(&lab, "board50"), "", "the replaced entry still answers");
    exporter.call("remove_address", json!(["192.168.100.50"]));
    assert_eq!(dig(&lab, "board51"), "");
    // Nothing to remove: jumpstarter says nothing either.
    exporter.call("remove_address", json!(["192.168.100.50"]));

    // DNS entries: added, replaced (same name), removed.
    exporter.call("add_dns_entry", json!(["new.lab.local", "10.0.0.50"]));
    assert_eq!(dig(&lab, "new.lab.local"), "10.0.0.50");
    exporter.call("add_dns_entry", json!(["new.lab.local", "10.0.0.51"]));
    assert_eq!(dig(&lab, "new.lab.local"), "10.0.0.51");
    let entries = exporter.call("get_dns_entries", json!([]));
    assert_eq!(
        entries,
        json!([
            {"hostname": "controller.lab.local", "ip": LAN_IP.to_string()},
            {"hostname": "new.lab.local", "ip": "10.0.0.51"},
        ])
    );
    exporter.call("remove_dns_entry", json!(["new.lab.local"]));
    assert_eq!(dig(&lab, "new.lab.local"), "");
    exporter.call("remove_dns_entry", json!(["new.lab.local"]));
    assert_eq!(
        exporter.call("get_dns_entries", json!([])),
        json!([{"hostname": "controller.lab.local", "ip": LAN_IP.to_string()}])
    );

    // `j dut-network`, unchanged.
    let (code, out) = exporter.cli(&["leases"]);
    assert!(
        code == 0 && out.contains(DUT_MAC) && out.contains(&leased),
        "{out}"
    );
    let (code, out) = exporter.cli(&["get-ip", DUT_MAC]);
    assert_eq!((code, out.trim()), (0, leased.as_str()));
    let (code, out) = exporter.cli(&[
        "add-address",
        "192.168.100.60",
        "-m",
        "02:00:00:00:02:60",
        "-n",
        "board60",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(dig(&lab, "board60"), "192.168.100.60");
    let (code, out) = exporter.cli(&["add-dns", "cli.lab.local", "10.0.0.60"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = exporter.cli(&["dns-entries"]);
    assert!(code == 0 && out.contains("cli.lab.local"), "{out}");
    let (code, out) = exporter.cli(&["ntp-status"]);
    assert!(code == 0 && out.contains("NTP running: True"), "{out}");

    // tcpdump: one line per packet of the DUT NIC, while the DUT pings.
    exporter.send(&json!({"tcpdump": ["-n", "-c", "1", "icmp"]}));
    let gateway = GATEWAY.to_string();
    let captured = cmd::wait_for(Duration::from_secs(20), || {
        lab.dut(1).exec("ping", &["-c", "1", "-W", "1", &gateway]);
        exporter
            .replies
            .recv_timeout(Duration::from_millis(200))
            .ok()
    })
    .unwrap_or_else(|| panic!("no capture; exporter log:\n{}", exporter.log()));
    let lines = captured["ok"].as_array().cloned().unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(&leased))),
        "{captured:#}"
    );

    // Closing the exporter stops dutnet, which restores the host.
    assert!(
        exporter.close(),
        "the exporter did not close:\n{}",
        exporter.log()
    );
    drop(exporter);
    let addresses = lab.exporter.ip("-4 -o addr show dev dn-dut1");
    assert!(
        !addresses.stdout.contains(&gateway),
        "dn-dut1 keeps dutnet's address: {addresses:#?}"
    );
    assert!(
        !lab.topology.path("run").join("dutnet.sock").exists(),
        "dutnet's control socket is still there"
    );

    // A new exporter on the same config still knows the lease.
    let mut exporter = Exporter::start(&lab, &driver, "exporter-2");
    assert_eq!(
        exporter.call("get_dut_ip", json!([DUT_MAC])),
        leased.as_str()
    );
    assert!(exporter.close(), "{}", exporter.log());
}

/// A driver config with jumpstarter's `filter:` loads, its status has
/// jumpstarter's shape, and the filter holds: DUTs may open TCP to the LAN
/// host's allowed port only.
#[test]
fn the_dutnet_driver_takes_jumpstarters_filter() {
    let lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).ip(DUT_IP).routed())
        .build();
    let allowed = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7031));
    let other = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7032));
    let driver = format!(
        "type: jumpstarter_driver_dutnet.driver.DutNetwork
config:
  interface: dn-dut1
  upstream_interface: {UPSTREAM_NIC}
  dhcp_enabled: false
  filter:
    egress:
      policy: drop
      rules:
        - {{action: accept, destination: \"{LAN_IP}\", protocol: tcp, port: 7031}}"
    );
    let mut exporter = Exporter::start(&lab, &driver, "exporter");
    let status = exporter.call("status", json!([]));
    assert_eq!(status["interface_status"]["exists"], true, "{status:#}");
    assert_eq!(status["dhcp_enabled"], false, "{status:#}");

    let (to_allowed, to_other) = (allowed.addr, other.addr);
    let peer = cmd::wait_for(Duration::from_secs(5), || {
        lab.dut(1)
            .enter(move || try_tcp_exchange(to_allowed, "allowed"))
            .ok()
    })
    .unwrap_or_else(|| {
        panic!(
            "the allowed port is not reached; exporter log:\n{}",
            exporter.log()
        )
    });
    assert_eq!(peer.ip(), std::net::IpAddr::V4(EXPORTER_UP));
    let refused = lab
        .dut(1)
        .enter(move || try_tcp_exchange(to_other, "filtered"));
    assert!(refused.is_err(), "the filter let {to_other} through");
    assert!(
        other.peers().is_empty(),
        "the LAN host saw {:?}",
        other.peers()
    );
    assert!(exporter.close(), "{}", exporter.log());
}

/// The dutnet-backed driver has every configuration field of jumpstarter's
/// DutNetwork (same type, same default), every method jumpstarter's exports
/// with the same signature, and jumpstarter's client; without a dutnet
/// binary it says how to get one.
#[test]
fn the_dutnet_driver_has_jumpstarters_fields_and_methods() {
    let out = python(
        r#"import dataclasses, inspect, typing
from jumpstarter.driver.decorators import MARKER_DRIVERCALL, MARKER_STREAMING_DRIVERCALL
from jumpstarter_driver_dut_network.driver import DutNetwork as Theirs
from jumpstarter_driver_dutnet.driver import DutNetwork as Ours
from jumpstarter.driver import Driver

def fields(cls):
    """The configuration fields the class adds to jumpstarter's Driver."""
    hints, base = typing.get_type_hints(cls), {f.name for f in dataclasses.fields(Driver)}
    return {
        f.name: (hints[f.name], f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
        for f in dataclasses.fields(cls) if f.init and f.name not in base
    }
ours, theirs = fields(Ours), fields(Theirs)
for name, field in theirs.items():
    assert ours.get(name) == field, f"field {name}: ours {ours.get(name)}, jumpstarter's {field}"
assert set(ours) - set(theirs) == {"dutnet_binary"}, set(ours) - set(theirs)

def exported(cls):
    return {
        name: inspect.signature(f)
        for name, f in inspect.getmembers(cls, inspect.isfunction)
        if getattr(f, MARKER_DRIVERCALL, None) or getattr(f, MARKER_STREAMING_DRIVERCALL, None)
    }
assert len(exported(Theirs)) == 11, sorted(exported(Theirs))
assert exported(Ours) == exported(Theirs), (exported(Ours), exported(Theirs))
assert Ours.client() == Theirs.client()

try:
    Ours(interface="dn-none", dutnet_binary="/nonexistent/dutnet")
    raise SystemExit("a driver without a dutnet binary came up")
except RuntimeError as e:
    assert "not found" in str(e) and "dutnet_binary" in str(e), e
print("same fields and methods")"#,
        &[],
    );
    assert!(
        out.success() && out.stdout.contains("same fields and methods"),
        "{out:#?}"
    );
}

/// Two DutNetworks of one exporter share one dutnet (the second is added
/// with a reload); closing one leaves the other up, closing the last one
/// stops dutnet.
#[test]
fn two_dutnet_drivers_share_one_dutnet() {
    let lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).ip(DUT_IP).routed())
        .dut(Dut::on(2).ip(DUT_IP).routed())
        .build();
    let script = r#"import os, pathlib, subprocess, sys
from jumpstarter_driver_dutnet.driver import DutNetwork
from jumpstarter_driver_dutnet import daemon
def up(iface):
    return DutNetwork(interface=iface, upstream_interface="dn-up", dhcp_enabled=False)
one = up("dn-dut1")
pid = pathlib.Path(os.environ["DUTNET_RUN_DIR"], "dutnet.pid").read_text().strip()
two = up("dn-dut2")
assert pathlib.Path(os.environ["DUTNET_RUN_DIR"], "dutnet.pid").read_text().strip() == pid, "a second dutnet"
names = sorted(n["name"] for n in daemon.request("status")["networks"])
assert names == ["dn-dut1", "dn-dut2"], names
one.close()
assert two.status()["interface_status"]["exists"], two.status()
names = [n["name"] for n in daemon.request("status")["networks"]]
assert names == ["dn-dut2"], names
print("after one", subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "dn-dut1"], capture_output=True, text=True).stdout.strip())
two.close()
try:
    daemon.request("status")
    raise SystemExit("dutnet still answers after the last driver closed")
except daemon.DutnetError as e:
    assert e.kind == "not_running", e
print("shared")"#;
    let _guard = StopsDutnet(lab.topology.path("run"));
    let mut command = lab
        .exporter
        .command(&jumpstarter_python().to_string_lossy(), &["-c", script]);
    command
        .envs(cli::env(&lab.topology))
        .env("DUTNET_BINARY", cli::binary());
    let out = cmd::run(command, CALL_LIMIT);
    assert!(out.success() && out.stdout.contains("shared"), "{out:#?}");
    assert!(
        !out.stdout.contains(&GATEWAY.to_string()),
        "dn-dut1 kept its address after its driver closed: {out:#?}"
    );
    for nic in ["dn-dut1", "dn-dut2"] {
        let addresses = lab.exporter.ip(&format!("-4 -o addr show dev {nic}"));
        assert!(
            !addresses.stdout.contains(&GATEWAY.to_string()),
            "{nic}: {addresses:#?}"
        );
    }
}

/// An exporter killed with SIGKILL cannot stop its dutnet; the next one
/// stops what the last left, comes up, and still knows the lease.
#[test]
fn a_killed_exporters_dutnet_is_replaced_by_the_next_exporter() {
    prereq::require("dhclient", "isc-dhcp-client");
    let lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).mac(DUT_MAC))
        .resolv_conf()
        .build();
    let driver = format!(
        "type: jumpstarter_driver_dutnet.driver.DutNetwork
config:
  interface: dn-dut1
  upstream_interface: {UPSTREAM_NIC}"
    );
    let run_dir = lab.topology.path("run");
    let mut first = Exporter::start(&lab, &driver, "exporter-1");
    let client = Dhclient::new(lab.dut(1), "eth0", &lab.topology.dir, "js", "");
    assert!(client.run().success(), "{}", first.log());
    let leased = client.address().expect("a lease");
    let left = dutnet_pid(&run_dir).expect("dutnet runs");
    first.stdin = None;
    let _ = first.child.kill();
    let _ = first.child.wait();
    assert_eq!(
        dutnet_pid(&run_dir),
        Some(left),
        "dutnet died with its exporter"
    );

    let mut second = Exporter::start(&lab, &driver, "exporter-2");
    let now = dutnet_pid(&run_dir).expect("dutnet runs");
    assert_ne!(now, left, "the left dutnet still runs");
    assert!(
        !PathBuf::from(format!("/proc/{left}")).exists(),
        "the left dutnet {left} still runs beside {now}"
    );
    assert_eq!(second.call("get_dut_ip", json!([DUT_MAC])), leased.as_str());
    assert!(second.close(), "{}", second.log());
    drop(first);
}

/// 1:1 NAT through the driver: the LAN host sees the DUT as its configured
/// public address, and as the new one after `add_address` replaced the
/// entry; `status` keeps jumpstarter's shape.
#[test]
fn the_dutnet_driver_maps_one_to_one() {
    let lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).ip(DUT_IP).routed())
        .build();
    let echo = TcpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7040));
    let driver = format!(
        "type: jumpstarter_driver_dutnet.driver.DutNetwork
config:
  interface: dn-dut1
  upstream_interface: {UPSTREAM_NIC}
  nat_mode: 1to1
  dhcp_enabled: false
  addresses:
    - {{ip: \"{DUT_IP}\", public_ip: \"10.99.0.50\"}}"
    );
    let mut exporter = Exporter::start(&lab, &driver, "exporter");
    let status = exporter.call("status", json!([]));
    assert_eq!(status["nat_mode"], "1to1", "{status:#}");
    let server = echo.addr;
    let seen = |lab: &Lab| {
        cmd::wait_for(Duration::from_secs(5), || {
            lab.dut(1)
                .enter(move || try_tcp_exchange(server, "one to one"))
                .ok()
        })
        .map(|peer| peer.ip())
    };
    let public = |ip: [u8; 4]| Some(std::net::IpAddr::V4(Ipv4Addr::from(ip)));
    assert_eq!(seen(&lab), public([10, 99, 0, 50]), "{}", exporter.log());
    exporter.call(
        "add_address",
        json!([DUT_IP.to_string(), null, "", "10.99.0.51"]),
    );
    assert_eq!(seen(&lab), public([10, 99, 0, 51]), "{}", exporter.log());
    let rules = exporter.call("get_nat_rules", json!([]));
    assert!(
        rules
            .as_str()
            .is_some_and(|r| r.contains(&format!("{DUT_IP} <-> 10.99.0.51"))),
        "{rules}"
    );
    assert!(exporter.close(), "{}", exporter.log());
}
