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
/// Flows dutnet may hold: above what one lab's load creates (see `udp_load`),
/// all of them for the lab's one DUT (`nat_flows_per_dut`; its default, half,
/// would evict during the new-flow load of the full run).
pub const NAT_TABLE_SIZE: u32 = 262_144;

/// The DUT's public address on the 1:1 paths (an alias on `dn-up`).
pub const PUBLIC_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 50);

/// How the exporter moves DUT traffic to the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Path {
    /// Forwarding only, no netfilter rules; the LAN routes the DUT subnet back.
    Routing,
    /// Forwarding plus the nftables masquerade jumpstarter installs.
    NftMasquerade,
    /// Forwarding plus jumpstarter's 1:1 rules: DNAT in, SNAT out.
    #[value(name = "nft-1to1")]
    Nft1to1,
    /// `dutnet load`: TC programs translate and redirect, netfilter is bypassed.
    EbpfMasquerade,
    /// `dutnet load` with `nat_mode: 1to1`: one stateless map lookup per packet.
    #[value(name = "ebpf-1to1")]
    Ebpf1to1,
    /// `dutnet load --datapath nft`: dutnet's own nftables masquerade.
    DutnetNft,
}

impl Path {
    pub const ALL: [Self; 6] = [
        Self::Routing,
        Self::NftMasquerade,
        Self::Nft1to1,
        Self::EbpfMasquerade,
        Self::Ebpf1to1,
        Self::DutnetNft,
    ];

    /// Short name for JSON.
    pub fn key(self) -> &'static str {
        match self {
            Self::Routing => "routing",
            Self::NftMasquerade => "nft_masquerade",
            Self::Nft1to1 => "nft_1to1",
            Self::EbpfMasquerade => "ebpf_masquerade",
            Self::Ebpf1to1 => "ebpf_1to1",
            Self::DutnetNft => "dutnet_nft",
        }
    }

    /// Namespace prefix part: short enough for interface-free names, distinct.
    fn tag(self) -> &'static str {
        match self {
            Self::Routing => "rt",
            Self::NftMasquerade => "nm",
            Self::Nft1to1 => "n1",
            Self::EbpfMasquerade => "em",
            Self::Ebpf1to1 => "e1",
            Self::DutnetNft => "dn",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Routing => "plain routing",
            Self::NftMasquerade => "nft masquerade",
            Self::Nft1to1 => "nft 1:1 (jumpstarter way)",
            Self::EbpfMasquerade => "dutnet eBPF masquerade",
            Self::Ebpf1to1 => "dutnet eBPF 1:1",
            Self::DutnetNft => "dutnet on its nft datapath",
        }
    }

    /// The source address the LAN host must see.
    pub fn source_seen_by_lan(self) -> Ipv4Addr {
        match self {
            Self::Routing => DUT_ADDR,
            Self::NftMasquerade | Self::EbpfMasquerade | Self::DutnetNft => UPSTREAM_ADDR,
            Self::Nft1to1 | Self::Ebpf1to1 => PUBLIC_ADDR,
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

/// jumpstarter's 1:1 NAT for one DUT: DNAT of its public address in,
/// SNAT to it out (the public address is an alias on the upstream NIC).
const NFT_ONE_TO_ONE: &str = r"table ip nat {
    chain prerouting {
        type nat hook prerouting priority dstnat;
        ip daddr 10.99.0.50 dnat to 192.168.100.10
    }
    chain postrouting {
        type nat hook postrouting priority srcnat;
        ip saddr 192.168.100.10 snat to 10.99.0.50
    }
}
";

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
        let mut topology = Topology::with_prefix(&format!("dnbench-{}{run}", path.tag()));
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
            Path::NftMasquerade | Path::Nft1to1 => {
                forwarding(&exporter);
                exporter.ip("addr add 192.168.100.1/24 dev dn-dut1");
                let (file, rules) = if path == Path::Nft1to1 {
                    exporter.ip(&format!("addr add {PUBLIC_ADDR}/24 dev dn-up"));
                    ("one-to-one.nft", NFT_ONE_TO_ONE)
                } else {
                    ("masquerade.nft", NFT_MASQUERADE)
                };
                let file = topology.path(file);
                std::fs::write(&file, rules)?;
                exporter.exec("nft", &["-f", &file.to_string_lossy()]).ok();
            }
            Path::EbpfMasquerade | Path::Ebpf1to1 | Path::DutnetNft => {
                dutnet_env = daemon_env(&topology);
                daemon = Some(load_dutnet(
                    &topology,
                    &exporter,
                    dutnet,
                    &dutnet_env,
                    path,
                )?);
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

/// The environment that keeps a lab's dutnet (and its verbs) in the lab.
pub fn daemon_env(topology: &Topology) -> Vec<(&'static str, String)> {
    vec![
        ("DUTNET_BPFFS", topology.bpffs().display().to_string()),
        (
            "DUTNET_STATE_DIR",
            topology.path("state").display().to_string(),
        ),
        ("DUTNET_RUN_DIR", topology.path("run").display().to_string()),
        ("DUTNET_LOG", "info".to_owned()),
    ]
}

fn load_dutnet(
    topology: &Topology,
    exporter: &Netns,
    dutnet: &FsPath,
    env: &[(&'static str, String)],
    path: Path,
) -> Result<Process> {
    let nat = if path == Path::Ebpf1to1 {
        format!("nat_mode: 1to1\n    addresses: [{{ip: {DUT_ADDR}, public_ip: {PUBLIC_ADDR}}}]")
    } else {
        "nat_mode: masquerade".to_owned()
    };
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
    {nat}
    dhcp_enabled: false
    dns_servers: [\"10.99.0.1\"]
    nat_table_size: {NAT_TABLE_SIZE}
    nat_flows_per_dut: {NAT_TABLE_SIZE}
"
        ),
    )?;
    let config = config.to_string_lossy();
    let mut args = vec!["load", config.as_ref()];
    if path == Path::DutnetNft {
        args.extend(["--datapath", "nft"]);
    }
    let daemon = exporter.spawn(
        &dutnet.to_string_lossy(),
        &args,
        env,
        topology.path("dutnet.log"),
    );
    let up = cmd::wait_for(Duration::from_secs(20), || {
        daemon.log().contains("dutnet is up").then_some(())
    });
    if up.is_none() {
        bail!("dutnet did not come up:\n{}", daemon.log());
    }
    Ok(daemon)
}

/// The MAC address of `interface` in `ns`.
fn mac_of(ns: &Netns, interface: &str) -> Result<[u8; 6]> {
    ns.mac(interface)
        .with_context(|| format!("no MAC for {interface} in {}", ns.name))
}
