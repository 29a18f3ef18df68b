//! The lab every daemon test builds: an exporter namespace (with the
//! upstream to a LAN host if asked, and a far host one router further),
//! DUT namespaces behind its DUT NICs (one each, or several on a switch;
//! cabled at once or later with [`Lab::plug`]), `dutnet load` running in
//! the exporter, and one guard that takes it all down again.
//!
//! ```ignore
//! let mut lab = Lab::builder().upstream().dut(Dut::on(1).mac(MAC)).resolv_conf().build();
//! lab.load(&Network::services().single());
//! // The NAT labs: DUT NICs dn-dut1..2, a DUT at DUT_IP behind each.
//! let mut lab = Lab::builder().upstream().static_duts(2).build();
//! lab.load_nat_on("ebpf", "");
//! ```
//!
//! Dropping the [`Lab`] stops the daemon it started (SIGTERM to its PID,
//! then a bounded wait), removes the `/etc/netns` files it wrote and then,
//! through its [`Topology`], the namespaces. When the test failed, the logs
//! and the config are kept under [`KEPT_LOGS`] first.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use crate::{Netns, Output, Topology, cli, cmd, netns::Process};

pub mod config;

use config::{DUT_IP, FAR_IP, GATEWAY, LAN_IP, dut_nic, nat_entry};

/// Where a failed test's lab leaves its logs, one folder per prefix.
pub const KEPT_LOGS: &str = "/tmp/dutnet-test-logs";

/// A `dutnet` verb may wait on the daemon (`down` stops it): its limit.
const VERB_LIMIT: Duration = Duration::from_secs(60);

/// The DUT behind DUT NIC `dn-dut<n>`: namespace `dut<n>`, NIC `eth0`.
#[derive(Clone, Debug)]
pub struct Dut {
    n: usize,
    mac: Option<String>,
    ip: Option<Ipv4Addr>,
    routed: bool,
    /// How many DUTs share the DUT NIC (on a switch when more than one).
    count: usize,
    plugged: bool,
}

impl Dut {
    #[must_use]
    pub fn on(n: usize) -> Self {
        Self {
            n,
            mac: None,
            ip: None,
            routed: false,
            count: 1,
            plugged: true,
        }
    }

    /// `count` DUTs behind the DUT NIC, on a switch (namespace `sw<n>`, a
    /// bridge) as DUTs on one lab segment are: namespace `dut<n>`, then
    /// `dut<n>-<k>`. DUT `k` gets [`Dut::ip`] plus `k - 1`; a
    /// [`Dut::mac`] goes to the first one.
    #[must_use]
    pub fn switched(mut self, count: usize) -> Self {
        assert!(count >= 1, "a DUT NIC leads to one DUT at least");
        self.count = count;
        self
    }

    /// The DUT's namespace exists but its DUT NIC does not until
    /// [`Lab::plug`]: a NIC that appears while dutnet runs.
    #[must_use]
    pub fn unplugged(mut self) -> Self {
        self.plugged = false;
        self
    }

    /// The MAC of the DUT's `eth0` (what dutnet's DHCP server sees).
    #[must_use]
    pub fn mac(mut self, mac: &str) -> Self {
        self.mac = Some(mac.to_owned());
        self
    }

    /// A static `ip/24` on the DUT's `eth0`.
    #[must_use]
    pub fn ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// A default route through dutnet's [`GATEWAY`].
    #[must_use]
    pub fn routed(mut self) -> Self {
        self.routed = true;
        self
    }
}

/// What [`Lab::builder`] builds.
#[derive(Debug, Default)]
#[must_use]
pub struct LabBuilder {
    upstream: bool,
    duts: Vec<Dut>,
    resolv_conf: bool,
    default_route: bool,
    far_host: Option<u32>,
}

impl LabBuilder {
    /// The upstream NIC `dn-up` to the LAN host
    /// ([`Topology::exporter_and_lan`]).
    pub fn upstream(mut self) -> Self {
        self.upstream = true;
        self
    }

    /// A DUT namespace cabled to DUT NIC `dn-dut<n>`.
    pub fn dut(mut self, dut: Dut) -> Self {
        self.duts.push(dut);
        self
    }

    /// The NAT labs' DUTs: DUT NICs `dn-dut1..count`, each leading to one
    /// DUT with [`DUT_IP`] (all the same) routed through [`GATEWAY`].
    pub fn static_duts(self, count: usize) -> Self {
        self.switched_duts(&vec![1; count])
    }

    /// [`LabBuilder::static_duts`] with `per_nic[n-1]` DUTs behind DUT NIC
    /// `dn-dut<n>` ([`Dut::switched`]): DUT `k` of a NIC has
    /// [`config::dut_ip`]`(k)`.
    pub fn switched_duts(mut self, per_nic: &[usize]) -> Self {
        for (n, &count) in (1..).zip(per_nic) {
            self.duts
                .push(Dut::on(n).ip(DUT_IP).routed().switched(count));
        }
        self
    }

    /// The exporter's default route goes through the LAN host
    /// ([`LabBuilder::upstream`]).
    pub fn default_route(mut self) -> Self {
        self.default_route = true;
        self
    }

    /// Makes the LAN host a router to a far host ([`FAR_IP`], namespace
    /// `far`, [`Lab::far`]) over a link with `mtu`; the exporter's default
    /// route goes through it. Neither the router nor the far host can
    /// route to the DUT subnet.
    pub fn far_host(mut self, mtu: u32) -> Self {
        self.far_host = Some(mtu);
        self.default_route = true;
        self
    }

    /// An empty `/etc/netns/<dut>/resolv.conf` for every DUT: `ip netns
    /// exec` mounts it over `/etc/resolv.conf`, so a DHCP client's script
    /// writes there and not into the host's.
    pub fn resolv_conf(mut self) -> Self {
        self.resolv_conf = true;
        self
    }

    /// Creates the namespaces and links; no daemon runs yet.
    pub fn build(self) -> Lab {
        let mut topology = Topology::new();
        let (exporter, lan) = if self.upstream {
            let (exporter, lan) = topology.exporter_and_lan();
            (exporter, Some(lan))
        } else {
            (topology.netns("exporter"), None)
        };
        let mut behind = Vec::new();
        for dut in &self.duts {
            let duts: Vec<Netns> = (1..=dut.count)
                .map(|k| match k {
                    1 => topology.netns(&format!("dut{}", dut.n)),
                    _ => topology.netns(&format!("dut{}-{k}", dut.n)),
                })
                .collect();
            if dut.count > 1 {
                assert!(dut.plugged, "a switched DUT NIC is plugged from the start");
                let nic = dut_nic(dut.n);
                let mut ends = vec![(&exporter, nic.as_str())];
                ends.extend(duts.iter().map(|d| (d, "eth0")));
                topology.switch(&format!("sw{}", dut.n), &ends);
                set_up(dut, &duts);
            } else if dut.plugged {
                cable(&topology, &exporter, dut, &duts);
            }
            behind.push(duts);
        }
        let far = self.far_host.map(|mtu| {
            let lan = lan.as_ref().expect("a far host needs the upstream");
            let far = topology.netns("far");
            topology.veth((lan, "eth1"), (&far, "eth0"));
            lan.ip(&format!("link set eth1 mtu {mtu}"));
            far.ip(&format!("link set eth0 mtu {mtu}"));
            lan.ip("addr add 10.98.0.1/24 dev eth1");
            far.ip(&format!("addr add {FAR_IP}/24 dev eth0"));
            far.ip("route add default via 10.98.0.1");
            lan.sysctl("net.ipv4.ip_forward=1");
            far
        });
        if self.default_route {
            assert!(lan.is_some(), "a default route needs the upstream");
            exporter.ip(&format!("route add default via {LAN_IP}"));
        }
        let mut lab = Lab {
            daemon: None,
            exporter,
            lan,
            far,
            duts: behind.iter().filter_map(|d| d.first().cloned()).collect(),
            behind,
            specs: self.duts,
            topology,
            runs: 0,
            env: Vec::new(),
            etc_netns: Vec::new(),
        };
        if self.resolv_conf {
            for n in 0..lab.duts.len() {
                let etc = PathBuf::from("/etc/netns").join(&lab.duts[n].name);
                // Noted first: the guard removes even a half-written one.
                lab.etc_netns.push(etc.clone());
                std::fs::create_dir_all(&etc)
                    .unwrap_or_else(|e| panic!("create {}: {e}", etc.display()));
                std::fs::write(etc.join("resolv.conf"), "")
                    .unwrap_or_else(|e| panic!("write {}/resolv.conf: {e}", etc.display()));
            }
        }
        lab
    }
}

/// Cables the single DUT of `dut` (namespace `duts[0]`) to its DUT NIC.
fn cable(topology: &Topology, exporter: &Netns, dut: &Dut, duts: &[Netns]) {
    topology.veth((exporter, &dut_nic(dut.n)), (&duts[0], "eth0"));
    set_up(dut, duts);
}

/// The MAC, addresses and routes `dut` asks for, on the `eth0` of each of
/// its DUTs.
fn set_up(dut: &Dut, duts: &[Netns]) {
    for (k, ns) in (0u32..).zip(duts) {
        if let (0, Some(mac)) = (k, &dut.mac) {
            ns.ip(&format!("link set eth0 address {mac}"));
        }
        if let Some(ip) = dut.ip {
            let ip = Ipv4Addr::from(u32::from(ip) + k);
            ns.ip(&format!("addr add {ip}/24 dev eth0"));
        }
        if dut.routed {
            ns.ip(&format!("route add default via {GATEWAY}"));
        }
    }
}

/// A built lab; see the module documentation. Field order matters: the
/// daemon goes before the namespaces.
pub struct Lab {
    daemon: Option<Process>,
    pub exporter: Netns,
    lan: Option<Netns>,
    far: Option<Netns>,
    /// The (first) DUT namespace of each [`Dut`], in the order they were
    /// asked for.
    pub duts: Vec<Netns>,
    /// Every DUT namespace of each [`Dut`], in address order.
    behind: Vec<Vec<Netns>>,
    specs: Vec<Dut>,
    pub topology: Topology,
    /// How many times [`Lab::start`] started dutnet (each run logs to
    /// `dutnet-<run>.log`).
    runs: usize,
    /// Added to the environment of every `dutnet load` ([`Lab::set_env`]).
    env: Vec<(&'static str, String)>,
    etc_netns: Vec<PathBuf>,
}

impl Lab {
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    /// The LAN host (a lab built with [`LabBuilder::upstream`]).
    #[must_use]
    pub fn lan(&self) -> &Netns {
        self.lan.as_ref().expect("a lab with an upstream")
    }

    /// The far host (a lab built with [`LabBuilder::far_host`]).
    #[must_use]
    pub fn far(&self) -> &Netns {
        self.far.as_ref().expect("a lab with a far host")
    }

    /// The `n`-th DUT asked for (from 1).
    #[must_use]
    pub fn dut(&self, n: usize) -> &Netns {
        &self.duts[n - 1]
    }

    /// DUT `k` (from 1) of the `n`-th DUT asked for ([`Dut::switched`]).
    #[must_use]
    pub fn dut_behind(&self, n: usize, k: usize) -> &Netns {
        &self.behind[n - 1][k - 1]
    }

    /// Creates DUT NIC `dn-dut<n>` of a [`Dut::unplugged`] DUT and sets
    /// its DUT end up, while dutnet may run.
    pub fn plug(&self, n: usize) {
        let i = self
            .specs
            .iter()
            .position(|d| d.n == n)
            .unwrap_or_else(|| panic!("no DUT on {}", dut_nic(n)));
        assert!(!self.specs[i].plugged, "{} is plugged already", dut_nic(n));
        cable(
            &self.topology,
            &self.exporter,
            &self.specs[i],
            &self.behind[i],
        );
    }

    /// Adds `key=value` to the environment of every `dutnet load` started
    /// from now on (e.g. `NOTIFY_SOCKET`, a test hook).
    pub fn set_env(&mut self, key: &'static str, value: &str) {
        self.env.push((key, value.to_owned()));
    }

    /// The config file dutnet is started with.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.topology.path("dutnet.yaml")
    }

    /// Writes the config file; returns its path.
    pub fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Starts `dutnet load <config> options...` in the exporter without
    /// waiting for it, logging to `<log>.log`; the caller owns it (a
    /// dropped [`Process`] gets SIGTERM).
    pub fn spawn(&self, options: &[&str], log: &str) -> Process {
        let config = self.config_path().display().to_string();
        let args = [&["load", config.as_str()][..], options].concat();
        let mut env = cli::env(&self.topology);
        env.extend(self.env.iter().cloned());
        self.exporter.spawn(
            &cli::binary().to_string_lossy(),
            &args,
            &env,
            self.topology.path(&format!("{log}.log")),
        )
    }

    /// Writes `yaml` as the config and [`Lab::start`]s dutnet.
    pub fn load(&mut self, yaml: &str) {
        self.write_config(yaml);
        self.start();
    }

    /// Starts `dutnet load` on the config written (always the same state
    /// and run directories) and waits until it is up ([`cli::wait_until_up`]).
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// [`Lab::start`] with extra `dutnet load` options.
    pub fn start_with(&mut self, options: &[&str]) {
        self.launch_with(options);
        let daemon = self.daemon.as_ref().expect("dutnet runs");
        cli::wait_until_up(&self.topology, daemon);
    }

    /// Starts `dutnet load` like [`Lab::start_with`] but returns at once,
    /// for a test that watches it come up (or fail to); the guard still
    /// stops it.
    pub fn launch_with(&mut self, options: &[&str]) {
        assert!(self.daemon.is_none(), "dutnet already runs");
        self.runs += 1;
        self.daemon = Some(self.spawn(options, &format!("dutnet-{}", self.runs)));
    }

    /// The `networks:` config of the NAT labs: one [`nat_entry`] per
    /// [`Dut`] (network `dut<n>` on `dn-dut<n>`), with the keys `extra(n)`
    /// (YAML lines).
    pub fn nat_config(&self, extra: impl Fn(usize) -> String) -> String {
        let mut config = "networks:\n".to_owned();
        for dut in &self.specs {
            config.push_str(&nat_entry(dut.n, &extra(dut.n)));
        }
        config
    }

    /// [`Lab::load`]s the [`Lab::nat_config`] with `extra` for every
    /// network.
    pub fn load_nat(&mut self, extra: &str) {
        self.load_nat_each(|_| extra.to_owned());
    }

    /// [`Lab::load_nat`] with every network on `datapath` (`ebpf`, `nft`):
    /// `ebpf` rather than `auto`, so an eBPF that cannot load fails the
    /// test instead of passing it on nft.
    pub fn load_nat_on(&mut self, datapath: &str, extra: &str) {
        self.load_nat(&format!("datapath: {datapath}\n{extra}"));
    }

    /// [`Lab::load`]s the [`Lab::nat_config`] with `extra(n)` for network
    /// `n`.
    pub fn load_nat_each(&mut self, extra: impl Fn(usize) -> String) {
        let config = self.nat_config(extra);
        self.load(&config);
    }

    /// [`Lab::load_nat_each`] with every network on `datapath`.
    pub fn load_nat_each_on(&mut self, datapath: &str, extra: impl Fn(usize) -> String) {
        self.load_nat_each(|n| format!("datapath: {datapath}\n{}", extra(n)));
    }

    /// True while the daemon this lab started runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Process::is_running)
    }

    /// Stops the running daemon with SIGTERM; its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.daemon.take().expect("dutnet runs").terminate()
    }

    /// SIGKILLs the running daemon: a crash.
    pub fn kill(&mut self) {
        self.daemon.take().expect("dutnet runs").kill9();
    }

    /// Stops the daemon if it runs, then starts it again.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// [`Lab::restart`] with extra `dutnet load` options.
    pub fn restart_with(&mut self, options: &[&str]) {
        if self.daemon.is_some() {
            self.stop();
        }
        self.start_with(options);
    }

    /// The running daemon.
    pub fn daemon(&mut self) -> &mut Process {
        self.daemon.as_mut().expect("dutnet runs")
    }

    /// The log of the current (or last) run of [`Lab::start`].
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.topology.path(&format!("dutnet-{}.log", self.runs)))
            .unwrap_or_default()
    }

    /// `dutnet args...` as root in the exporter, with the daemon's state
    /// and run directories.
    pub fn dutnet(&self, args: &[&str]) -> Output {
        let mut command = self
            .exporter
            .command(&cli::binary().to_string_lossy(), args);
        command.envs(cli::env(&self.topology));
        cmd::run(command, VERB_LIMIT)
    }

    /// `dutnet args...` that must succeed; its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.dutnet(args);
        assert!(
            out.success(),
            "dutnet {args:?} failed: {out:#?}\ndaemon log:\n{}",
            self.log()
        );
        out.stdout
    }

    /// `dutnet args... --json` that must succeed, parsed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{all:?}: not JSON ({e}):\n{out}"))
    }

    /// dutnet's counters (or what `dutnet stats` said instead: on the nft
    /// datapath there are none), its NAT rules and the end of its log, for
    /// failure messages.
    #[must_use]
    pub fn report(&self) -> String {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let stats = self.dutnet(&["stats", "--json"]);
        let rules = self.dutnet(&["nat-rules"]);
        format!(
            "stats: {}{}\nnat-rules:\n{}\ndutnet log (end):\n{}",
            stats.stdout,
            stats.stderr,
            rules.stdout,
            tail.join("\n")
        )
    }

    /// `dutnet stats --json`, run in the exporter like a user would.
    #[track_caller]
    pub fn stats(&self) -> Value {
        self.json(&["stats"])
    }

    /// The stats entry of DUT NIC `iface`.
    #[track_caller]
    pub fn stats_of(&self, iface: &str) -> Value {
        let stats = self.stats();
        stats["interfaces"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["interface"] == iface))
            .cloned()
            .unwrap_or_else(|| panic!("no stats for {iface}:\n{stats:#}"))
    }

    /// A counter (JSON pointer, e.g. `/drops/unsolicited`) summed over every
    /// interface dutnet reports.
    /// A DUT NIC missing from the stats fails the test: a sum over nothing
    /// would pass every "is zero" check.
    #[track_caller]
    pub fn total(&self, pointer: &str) -> u64 {
        let stats = self.stats();
        let interfaces = stats["interfaces"].as_array().cloned().unwrap_or_default();
        for dut in &self.specs {
            let nic = dut_nic(dut.n);
            assert!(
                interfaces.iter().any(|i| i["interface"] == nic.as_str()),
                "{nic} is missing from the stats:\n{stats:#}\n{}",
                self.log()
            );
        }
        interfaces
            .iter()
            .filter_map(|i| i.pointer(pointer).and_then(Value::as_u64))
            .sum()
    }

    /// `dutnet status --json` of network `name`: (state, problem); `None`
    /// when dutnet does not answer or does not report it.
    #[must_use]
    pub fn network_state(&self, name: &str) -> Option<(String, Option<String>)> {
        let out = self.dutnet(&["status", "--json"]);
        let reply: Value = serde_json::from_str(&out.stdout).ok()?;
        let net = reply["networks"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == name)?
            .clone();
        Some((
            net["state"].as_str()?.to_owned(),
            net["problem"].as_str().map(str::to_owned),
        ))
    }

    /// Waits until network `name` is in state `wanted` ([`Lab::network_state`]);
    /// fails the test with the daemon's log after `limit`.
    #[track_caller]
    pub fn wait_network_state(&self, name: &str, wanted: &str, limit: Duration) {
        let reached = cmd::wait_for(limit, || {
            self.network_state(name)
                .filter(|(state, _)| state == wanted)
                .map(drop)
        });
        assert!(
            reached.is_some(),
            "network {name} not {wanted} within {limit:?} (now {:?}); dutnet log:\n{}",
            self.network_state(name),
            self.log()
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate();
        }
        for etc in &self.etc_netns {
            let _ = std::fs::remove_dir_all(etc);
        }
        if std::thread::panicking() {
            keep_logs(&self.topology);
        }
    }
}

/// Copies the logs, configs and lease files of `topology` to
/// [`KEPT_LOGS`]`/<prefix>`: a failed test's guard calls it before the
/// topology's directory goes.
pub fn keep_logs(topology: &Topology) {
    let kept = Path::new(KEPT_LOGS).join(&topology.prefix);
    if std::fs::create_dir_all(&kept).is_err() {
        return;
    }
    let Ok(files) = std::fs::read_dir(&topology.dir) else {
        return;
    };
    for file in files.filter_map(Result::ok) {
        let path = file.path();
        let wanted = path
            .extension()
            .is_some_and(|e| e == "log" || e == "yaml" || e == "leases");
        if wanted && path.is_file() {
            let _ = std::fs::copy(&path, kept.join(file.file_name()));
        }
    }
    eprintln!("the lab's logs are kept in {}", kept.display());
}
