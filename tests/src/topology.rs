//! A test's lab: namespaces, veth pairs and bridges under one unique prefix.
use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::{
    cmd::{self, Output},
    lab::config::{EXPORTER_UP, LAN_IP, UPSTREAM_NIC},
    netns::{COMMAND_LIMIT, Netns},
    prereq,
};

/// Where topologies keep files (logs, a private bpffs, state dirs).
const RUN_ROOT: &str = "/run/dutnet-tests";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Namespaces and files of one test. Dropping it removes all of them.
#[derive(Debug)]
pub struct Topology {
    pub prefix: String,
    pub dir: PathBuf,
    namespaces: Vec<Netns>,
}

impl Topology {
    /// A topology with a fresh prefix: `dn<pid>x<counter>`.
    #[must_use]
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self::with_prefix(&format!("dn{}x{n}", std::process::id()))
    }

    /// A topology with a chosen prefix. Whatever an earlier owner of the same
    /// prefix left (it crashed or leaked) is removed first.
    #[must_use]
    pub fn with_prefix(prefix: &str) -> Self {
        prereq::require_root();
        prereq::require("ip", "iproute2");
        let topology = Self {
            prefix: prefix.to_owned(),
            dir: PathBuf::from(RUN_ROOT).join(prefix),
            namespaces: Vec::new(),
        };
        topology.remove_leftovers();
        std::fs::create_dir_all(&topology.dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", topology.dir.display()));
        topology
    }

    /// Creates namespace `<prefix>-<name>` with loopback up and IPv6 off (no
    /// router solicitations or MLD reports muddying packet counts).
    pub fn netns(&mut self, name: &str) -> Netns {
        let ns = Netns {
            name: format!("{}-{name}", self.prefix),
        };
        run_ip(&["netns", "add", &ns.name]).ok();
        self.namespaces.push(ns.clone());
        ns.ip("link set lo up");
        ns.sysctl("net.ipv6.conf.all.disable_ipv6=1");
        ns.sysctl("net.ipv6.conf.default.disable_ipv6=1");
        ns
    }

    /// A veth pair between two namespaces, both ends up.
    pub fn veth(&self, a: (&Netns, &str), b: (&Netns, &str)) {
        let (ns_a, if_a) = a;
        let (ns_b, if_b) = b;
        ns_a.ip(&format!(
            "link add {if_a} type veth peer name {if_b} netns {}",
            ns_b.name
        ));
        ns_a.ip(&format!("link set {if_a} up"));
        ns_b.ip(&format!("link set {if_b} up"));
    }

    /// A switch: namespace `<prefix>-<name>` holding bridge `br0`, with one
    /// port (`p1`, `p2`, ...) per end in `ends`, each a veth to that
    /// namespace's interface. Returns the switch's namespace.
    pub fn switch(&mut self, name: &str, ends: &[(&Netns, &str)]) -> Netns {
        let switch = self.netns(name);
        switch.ip("link add br0 type bridge");
        switch.ip("link set br0 up");
        for (port, end) in (1..).zip(ends) {
            let port = format!("p{port}");
            self.veth((&switch, &port), *end);
            switch.ip(&format!("link set {port} master br0"));
        }
        switch
    }

    /// The usual start of a lab: namespace `exporter` whose upstream NIC
    /// `dn-up` (10.99.0.2/24) leads to namespace `lan`, the lab LAN's host
    /// (10.99.0.1/24 on `eth0`). Returns (exporter, lan).
    pub fn exporter_and_lan(&mut self) -> (Netns, Netns) {
        let exporter = self.netns("exporter");
        let lan = self.netns("lan");
        self.veth((&exporter, UPSTREAM_NIC), (&lan, "eth0"));
        exporter.ip(&format!("addr add {EXPORTER_UP}/24 dev {UPSTREAM_NIC}"));
        lan.ip(&format!("addr add {LAN_IP}/24 dev eth0"));
        (exporter, lan)
    }

    /// A file path inside this topology's directory.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// dutnet's pin directories in [`Self::bpffs`] (`dutnet-v<ABI>`, or
    /// `dutnet` from builds before the version was in the name), whatever
    /// the version: none may be left once dutnet is gone.
    #[must_use]
    pub fn dutnet_pins(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path("bpffs")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.starts_with("dutnet"))
            .collect()
    }

    /// A bpffs private to this topology, mounted in the root mount namespace
    /// so every `ip netns exec` sees it (they remount /sys privately).
    #[must_use]
    pub fn bpffs(&self) -> PathBuf {
        let path = self.path("bpffs");
        if !is_mountpoint(&path) {
            std::fs::create_dir_all(&path).expect("create bpffs dir");
            cmd::run(
                {
                    let mut c = Command::new("mount");
                    c.args(["-t", "bpf", "bpf"]).arg(&path);
                    c
                },
                COMMAND_LIMIT,
            )
            .ok();
        }
        path
    }

    fn remove_leftovers(&self) {
        let list = run_ip(&["netns", "list"]);
        for line in list.stdout.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if name.starts_with(&format!("{}-", self.prefix)) {
                remove_netns(name);
            }
        }
        unmount_and_remove(&self.dir);
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            remove_netns(&ns.name);
        }
        unmount_and_remove(&self.dir);
    }
}

/// Kills what still runs in the namespace (only a test's own processes can be
/// there: the name carries its prefix), then deletes it.
fn remove_netns(name: &str) {
    let pids = run_ip(&["netns", "pids", name]);
    for pid in pids
        .stdout
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: kill with a PID living in our own test namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if !pids.stdout.trim().is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = run_ip(&["netns", "del", name]);
}

fn unmount_and_remove(dir: &std::path::Path) {
    if !dir.exists() {
        return;
    }
    // Mounts below the directory (the bpffs) go first.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir_str = dir.to_string_lossy();
    for mount_point in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if mount_point.starts_with(dir_str.as_ref()) {
            let _ = cmd::run(
                {
                    let mut c = Command::new("umount");
                    c.args(["-l", mount_point]);
                    c
                },
                COMMAND_LIMIT,
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn is_mountpoint(path: &std::path::Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(path.as_ref()))
}

fn run_ip(args: &[&str]) -> Output {
    let mut command = Command::new("ip");
    command.args(args);
    cmd::run(command, COMMAND_LIMIT)
}
