//! One fresh lab per path: DUT namespace — veth — exporter — veth — LAN host.
//!
//! ```text
//! dut  eth0 192.168.100.10/24 ── dn-dut1 192.168.100.1/24  exporter
//!                                dn-up   10.99.0.2/24   ── eth0 10.99.0.1/24  lan
//! ```
//! Only the exporter differs between paths. Each lab has its own prefix and
//! is removed when dropped (also on a panic).
use std::{net::Ipv4Addr, path::Path as FsPath, time::Duration};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::{Netns, Topology, cmd, netns::Process};

pub const DUT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// Flows dutnet may hold: above what one lab's load creates (see `udp_load`).
pub const NAT_TABLE_SIZE: u32 = 262_144;

/// How the exporter moves DUT traffic to the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Path {
    /// Forwarding only, no netfilter rules; the LAN routes the DUT subnet back.
    Routing,
    /// Forwarding plus the nftables masquerade jumpstarter installs.
    NftMasquerade,
    /// `dutnet load`: TC programs translate and redirect, netfilter is bypassed.
    EbpfMasquerade,
}

impl Path {
    pub const ALL: [Self; 3] = [Self::Routing, Self::NftMasquerade, Self::EbpfMasquerade];

    /// Short name for JSON and namespace prefixes.
    pub fn key(self) -> &'static str {
        match self {
            Self::Routing => "routing",
            Self::NftMasquerade => "nft_masquerade",
            Self::EbpfMasquerade => "ebpf_masquerade",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Routing => "plain routing",
            Self::NftMasquerade => "nft masquerade",
            Self::EbpfMasquerade => "dutnet eBPF masquerade",
        }
    }

    /// The source address the LAN host must see.
    pub fn source_seen_by_lan(self) -> Ipv4Addr {
        match self {
            Self::Routing => DUT_ADDR,
            Self::NftMasquerade | Self::EbpfMasquerade => UPSTREAM_ADDR,
        }
    }
}

/// The masquerade of jumpstarter's DutNetwork, verbatim.
const NFT_MASQUERADE: &str = r#"table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat;
        oifname "dn-up" ip saddr 192.168.100.0/24 masquerade
    }
}
"#;

/// A built lab. Field order matters: dutnet stops before the namespaces go.
pub struct Lab {
    pub path: Path,
    daemon: Option<Process>,
    pub dut: Netns,
    pub exporter: Netns,
    pub lan: Netns,
    /// MAC of the exporter's DUT NIC: the destination of generated frames.
    pub gateway_mac: [u8; 6],
    pub dut_mac: [u8; 6],
    /// The environment `dutnet` verbs need to find this lab's daemon.
    pub dutnet_env: Vec<(&'static str, String)>,
    pub topology: Topology,
}

impl Lab {
    /// Builds the lab for `path`; `dutnet` is the binary for the eBPF path.
    pub fn build(path: Path, run: usize, dutnet: &FsPath) -> Result<Self> {
        let mut topology = Topology::with_prefix(&format!("dnbench-{}{run}", &path.key()[..3]));
        let dut = topology.netns("dut");
        let (exporter, lan) = topology.exporter_and_lan();
        topology.veth((&exporter, "dn-dut1"), (&dut, "eth0"));
        dut.ip("addr add 192.168.100.10/24 dev eth0");
        dut.ip("route add default via 192.168.100.1");

        let mut dutnet_env = Vec::new();
        let mut daemon = None;
        match path {
            Path::Routing => {
                forwarding(&exporter);
                exporter.ip("addr add 192.168.100.1/24 dev dn-dut1");
                lan.ip("route add 192.168.100.0/24 via 10.99.0.2");
            }
            Path::NftMasquerade => {
                forwarding(&exporter);
                exporter.ip("addr add 192.168.100.1/24 dev dn-dut1");
                let rules = topology.path("masquerade.nft");
                std::fs::write(&rules, NFT_MASQUERADE)?;
                exporter.exec("nft", &["-f", &rules.to_string_lossy()]).ok();
            }
            Path::EbpfMasquerade => {
                dutnet_env = vec![
                    ("DUTNET_BPFFS", topology.bpffs().display().to_string()),
                    (
                        "DUTNET_STATE_DIR",
                        topology.path("state").display().to_string(),
                    ),
                    ("DUTNET_RUN_DIR", topology.path("run").display().to_string()),
                    ("DUTNET_LOG", "info".to_owned()),
                ];
                daemon = Some(load_dutnet(&topology, &exporter, dutnet, &dutnet_env)?);
            }
        }
        let gateway_mac = mac_of(&exporter, "dn-dut1")?;
        let dut_mac = mac_of(&dut, "eth0")?;
        let lab = Self {
            path,
            daemon,
            dut,
            exporter,
            lan,
            gateway_mac,
            dut_mac,
            dutnet_env,
            topology,
        };
        lab.check_reachable()?;
        Ok(lab)
    }

    /// One ping through the path: resolves the neighbours the load will use
    /// and proves the path works before anything is measured.
    fn check_reachable(&self) -> Result<()> {
        let ping = self
            .dut
            .exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", "10.99.0.1"]);
        if !ping.success() {
            bail!(
                "{}: the DUT cannot ping the LAN host through the exporter:\n{}{}",
                self.path.title(),
                ping.stdout,
                self.daemon_log()
            );
        }
        Ok(())
    }

    /// `dutnet stats --json` of this lab's daemon (eBPF path only).
    pub fn dutnet_stats(&self, dutnet: &FsPath) -> Option<serde_json::Value> {
        self.daemon.as_ref()?;
        let mut command = self
            .exporter
            .command(&dutnet.to_string_lossy(), &["stats", "--json"]);
        command.envs(self.dutnet_env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = cmd::run(command, Duration::from_secs(10));
        serde_json::from_str(&out.stdout).ok()
    }

    fn daemon_log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| format!("dutnet log:\n{}", d.log()))
            .unwrap_or_default()
    }
}

fn forwarding(exporter: &Netns) {
    exporter.sysctl("net.ipv4.conf.all.forwarding=1");
}

fn load_dutnet(
    topology: &Topology,
    exporter: &Netns,
    dutnet: &FsPath,
    env: &[(&'static str, String)],
) -> Result<Process> {
    let config = topology.path("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "networks:
  - name: bench
    interface: dn-dut1
    subnet: 192.168.100.0/24
    gateway_ip: 192.168.100.1
    upstream_interface: dn-up
    nat_mode: masquerade
    dhcp_enabled: false
    dns_servers: [\"10.99.0.1\"]
    nat_table_size: {NAT_TABLE_SIZE}
"
        ),
    )?;
    let daemon = exporter.spawn(
        &dutnet.to_string_lossy(),
        &["load", &config.to_string_lossy()],
        env,
        topology.path("dutnet.log"),
    );
    let up = cmd::wait_for(Duration::from_secs(20), || {
        daemon.log().contains("network up").then_some(())
    });
    if up.is_none() {
        bail!("dutnet did not come up:\n{}", daemon.log());
    }
    Ok(daemon)
}

/// The MAC address of `interface` in `ns`, from `ip -o link`.
fn mac_of(ns: &Netns, interface: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&format!("-o link show {interface}"));
    let text = out
        .stdout
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("no MAC for {interface} in {}", ns.name))?;
    parse_mac(text).with_context(|| format!("bad MAC {text:?} for {interface}"))
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mac() {
        assert_eq!(parse_mac("02:00:00:00:01:0a"), Some([2, 0, 0, 0, 1, 0x0a]));
        assert_eq!(parse_mac("02:00:00:00:01"), None);
        assert_eq!(parse_mac("02:00:00:00:01:0a:ff"), None);
        assert_eq!(parse_mac("zz:00:00:00:01:0a"), None);
    }
}
