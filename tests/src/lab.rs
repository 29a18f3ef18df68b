//! The lab every daemon test builds: an exporter namespace (with the
//! upstream to a LAN host if asked), DUT namespaces behind its DUT NICs,
//! `dutnet load` running in the exporter, and one guard that takes it all
//! down again.
//!
//! ```ignore
//! let mut lab = Lab::builder().upstream().dut(Dut::on(1).mac(MAC)).resolv_conf().build();
//! lab.load(&Network::services().single());
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

use crate::{Netns, Output, Topology, cli, cmd, netns::Process};

pub mod config;

use config::{GATEWAY, dut_nic};

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
}

impl Dut {
    #[must_use]
    pub fn on(n: usize) -> Self {
        Self {
            n,
            mac: None,
            ip: None,
            routed: false,
        }
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
        let mut duts = Vec::new();
        for dut in &self.duts {
            let ns = topology.netns(&format!("dut{}", dut.n));
            topology.veth((&exporter, &dut_nic(dut.n)), (&ns, "eth0"));
            if let Some(mac) = &dut.mac {
                ns.ip(&format!("link set eth0 address {mac}"));
            }
            if let Some(ip) = dut.ip {
                ns.ip(&format!("addr add {ip}/24 dev eth0"));
            }
            if dut.routed {
                ns.ip(&format!("route add default via {GATEWAY}"));
            }
            duts.push(ns);
        }
        let mut lab = Lab {
            daemon: None,
            exporter,
            lan,
            duts,
            topology,
            runs: 0,
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

/// A built lab; see the module documentation. Field order matters: the
/// daemon goes before the namespaces.
pub struct Lab {
    daemon: Option<Process>,
    pub exporter: Netns,
    lan: Option<Netns>,
    /// The DUT namespaces, in the order they were asked for.
    pub duts: Vec<Netns>,
    pub topology: Topology,
    /// How many times [`Lab::start`] started dutnet (each run logs to
    /// `dutnet-<run>.log`).
    runs: usize,
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

    /// The `n`-th DUT asked for (from 1).
    #[must_use]
    pub fn dut(&self, n: usize) -> &Netns {
        &self.duts[n - 1]
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
        cli::spawn(&self.topology, &self.exporter, &args, log)
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
        assert!(self.daemon.is_none(), "dutnet already runs");
        self.runs += 1;
        let daemon = self.spawn(options, &format!("dutnet-{}", self.runs));
        cli::wait_until_up(&self.topology, &daemon);
        self.daemon = Some(daemon);
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
