//! One fresh lab per path: DUT namespace — veth — exporter — veth — LAN host.
//!
//! ```text
//! dut  eth0 192.168.100.10/24 ── dn-dut1 192.168.100.1/24  exporter
//!                                dn-up   10.99.0.2/24   ── eth0 10.99.0.1/24  lan
//! dut2 eth0 192.168.101.10/24 ── dn-dut2 192.168.101.1/24  (overflow labs only)
//! ```
//! Only the exporter differs between paths. Each lab has its own prefix and
//! is removed when dropped (also on a panic).
use std::{net::Ipv4Addr, path::Path as FsPath, time::Duration};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::{
    Netns, Topology, cli, cmd,
    lab::config::{DUT_IP, EXPORTER_UP, GATEWAY, LAN_IP, Network, SUBNET, dut_nic},
    netns::Process,
};

/// Flows dutnet may hold: above what one lab's load creates (see `udp_load`),
/// all of them for the lab's one DUT (`nat_flows_per_dut`; its default, half,
/// would evict during the new-flow load of the full run).
pub const NAT_TABLE_SIZE: u32 = 262_144;
/// The second DUT of an overflow lab, on a network of its own.
pub const DUT2_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 101, 10);

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
            Self::Routing => DUT_IP,
            Self::NftMasquerade | Self::EbpfMasquerade | Self::DutnetNft => EXPORTER_UP,
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

/// The rule jumpstarter adds for a second DutNetwork (192.168.101.0/24).
const NFT_MASQUERADE_DUT2: &str = r#"add rule ip nat postrouting oifname "dn-up" ip saddr 192.168.101.0/24 masquerade
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

/// How a lab differs from the path's usual one.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Namespace prefix part that keeps this lab apart from the path's
    /// other labs ("" for the usual one).
    pub tag: &'static str,
    /// `nat_table_size` of the DUT's network (dutnet's paths).
    pub nat_table_size: u32,
    /// `nat_flows_per_dut`: the whole budget by default, as the DUT is alone
    /// on its network (and conntrack gives one source the whole table).
    pub nat_flows_per_dut: u32,
    /// Idle timeouts other than dutnet's defaults.
    pub timeouts: Option<Timeouts>,
    /// A second DUT on a network of its own (`dn-dut2`, 192.168.101.0/24).
    pub second_dut: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tag: "",
            nat_table_size: NAT_TABLE_SIZE,
            nat_flows_per_dut: NAT_TABLE_SIZE,
            timeouts: None,
            second_dut: false,
        }
    }
}

/// Timeouts that keep a DUT's unanswered UDP flows in the table for `long`
/// while the shortest timeout of any state is `shortest` (which sets the
/// sweep interval, `dutnet/src/daemon/nat.rs::sweep_interval`).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// `nat_timeouts.unreplied` and `udp_timeout`, as dutnet writes durations.
    pub long: &'static str,
    /// `nat_timeouts.icmp`, `tcp_syn` and `tcp_close`, in seconds: the
    /// shortest of all (the others' defaults are 2 min and more).
    pub shortest: u32,
}

impl Timeouts {
    /// Every half of the shortest timeout, at most once a second and at
    /// least every 10 s: dutnet's rule (docs/config.md, "NAT timeouts").
    pub fn sweep_interval(self) -> Duration {
        (Duration::from_secs(self.shortest.into()) / 2)
            .clamp(Duration::from_secs(1), Duration::from_secs(10))
    }

    fn yaml(self) -> String {
        let Self { long, shortest } = self;
        format!(
            "udp_timeout: {long}
nat_timeouts:
  unreplied: {long}
  icmp: {shortest}s
  tcp_syn: {shortest}s
  tcp_close: {shortest}s
"
        )
    }
}

/// A built lab. Field order matters: dutnet stops before the namespaces go.
pub struct Lab {
    pub path: Path,
    daemon: Option<Process>,
    pub dut: Netns,
    /// The second DUT ([`Options::second_dut`]).
    pub dut2: Option<Netns>,
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
    /// Builds the usual lab for `path`; `dutnet` is the binary for
    /// dutnet's paths.
    pub fn build(path: Path, run: usize, dutnet: &FsPath) -> Result<Self> {
        Self::build_with(path, run, dutnet, Options::default())
    }

    /// Builds the lab for `path` as `options` say.
    pub fn build_with(path: Path, run: usize, dutnet: &FsPath, options: Options) -> Result<Self> {
        let mut topology =
            Topology::with_prefix(&format!("dnbench-{}{}{run}", options.tag, path.tag()));
        let dut = topology.netns("dut");
        let (exporter, lan) = topology.exporter_and_lan();
        topology.veth((&exporter, "dn-dut1"), (&dut, "eth0"));
        dut.ip(&format!("addr add {DUT_IP}/24 dev eth0"));
        dut.ip(&format!("route add default via {GATEWAY}"));
        let dut2 = options.second_dut.then(|| {
            let dut2 = topology.netns("dut2");
            topology.veth((&exporter, "dn-dut2"), (&dut2, "eth0"));
            dut2.ip(&format!("addr add {DUT2_ADDR}/24 dev eth0"));
            dut2.ip("route add default via 192.168.101.1");
            dut2
        });
        let dut2_subnet = |exporter: &Netns| {
            if dut2.is_some() {
                exporter.ip("addr add 192.168.101.1/24 dev dn-dut2");
            }
        };

        let mut dutnet_env = Vec::new();
        let mut daemon = None;
        match path {
            Path::Routing => {
                forwarding(&exporter);
                exporter.ip(&format!("addr add {GATEWAY}/24 dev dn-dut1"));
                lan.ip(&format!("route add {SUBNET} via {EXPORTER_UP}"));
                if dut2.is_some() {
                    dut2_subnet(&exporter);
                    lan.ip(&format!("route add 192.168.101.0/24 via {EXPORTER_UP}"));
                }
            }
            Path::NftMasquerade | Path::Nft1to1 => {
                forwarding(&exporter);
                exporter.ip(&format!("addr add {GATEWAY}/24 dev dn-dut1"));
                dut2_subnet(&exporter);
                let (file, mut rules) = if path == Path::Nft1to1 {
                    exporter.ip(&format!("addr add {PUBLIC_ADDR}/24 dev dn-up"));
                    ("one-to-one.nft", NFT_ONE_TO_ONE.to_owned())
                } else {
                    ("masquerade.nft", NFT_MASQUERADE.to_owned())
                };
                if dut2.is_some() {
                    rules.push_str(NFT_MASQUERADE_DUT2);
                }
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
                    options,
                )?);
            }
        }
        let gateway_mac = mac_of(&exporter, "dn-dut1")?;
        let dut_mac = mac_of(&dut, "eth0")?;
        let lab = Self {
            path,
            daemon,
            dut,
            dut2,
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
        for (name, dut) in
            std::iter::once(("DUT", &self.dut)).chain(self.dut2.as_ref().map(|d| ("second DUT", d)))
        {
            let lan = LAN_IP.to_string();
            let ping = dut.exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", &lan]);
            if !ping.success() {
                bail!(
                    "{}: the {name} cannot ping the LAN host through the exporter:\n{}{}",
                    self.path.title(),
                    ping.stdout,
                    self.daemon_log()
                );
            }
        }
        Ok(())
    }

    /// The PID of this lab's dutnet (dutnet's paths only).
    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(Process::pid)
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

/// The environment that keeps a lab's dutnet (and its verbs) in the lab:
/// the tests' ([`cli::env`]), logging at info (debug costs throughput).
pub fn daemon_env(topology: &Topology) -> Vec<(&'static str, String)> {
    let mut env = cli::env(topology);
    for (key, value) in &mut env {
        if *key == "DUTNET_LOG" {
            "info".clone_into(value);
        }
    }
    env
}

fn load_dutnet(
    topology: &Topology,
    exporter: &Netns,
    dutnet: &FsPath,
    env: &[(&'static str, String)],
    path: Path,
    options: Options,
) -> Result<Process> {
    let config = topology.path("bench.yaml");
    std::fs::write(&config, config_yaml(path, options))?;
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
        cli::is_up(topology, &daemon).then_some(())
    });
    if up.is_none() {
        bail!("dutnet did not come up:\n{}", daemon.log());
    }
    Ok(daemon)
}

/// dutnet's config for `path`: the tests' NAT network ([`Network::nat`])
/// named `bench`, with the lab's budgets and timeouts.
fn config_yaml(path: Path, options: Options) -> String {
    let nat = if path == Path::Ebpf1to1 {
        format!("nat_mode: 1to1\naddresses: [{{ip: {DUT_IP}, public_ip: {PUBLIC_ADDR}}}]")
    } else {
        "nat_mode: masquerade".to_owned()
    };
    let Options {
        nat_table_size,
        nat_flows_per_dut,
        ..
    } = options;
    let mut network = Network::nat(&dut_nic(1)).set(&format!(
        "{nat}\nnat_table_size: {nat_table_size}\nnat_flows_per_dut: {nat_flows_per_dut}"
    ));
    if let Some(timeouts) = options.timeouts {
        network = network.set(&timeouts.yaml());
    }
    let mut yaml = "networks:\n".to_owned();
    yaml.push_str(&network.entry("bench"));
    if options.second_dut {
        // Its own network and budget (dutnet's default 65 536), masquerade
        // whatever the first network does.
        let second =
            Network::nat(&dut_nic(2)).set("subnet: 192.168.101.0/24\ngateway_ip: 192.168.101.1");
        yaml.push_str(&second.entry("bench2"));
    }
    yaml
}

/// The MAC address of `interface` in `ns`.
fn mac_of(ns: &Netns, interface: &str) -> Result<[u8; 6]> {
    ns.mac(interface)
        .with_context(|| format!("no MAC for {interface} in {}", ns.name))
}

#[cfg(test)]
mod tests {
    use super::{Options, Path, Timeouts, config_yaml};

    #[test]
    fn the_config_is_the_tests_nat_network_with_the_lab_budgets() {
        let options = Options {
            timeouts: Some(Timeouts {
                long: "10m",
                shortest: 4,
            }),
            second_dut: true,
            ..Options::default()
        };
        let yaml = config_yaml(Path::Ebpf1to1, options);
        for line in [
            "  - name: bench\n    interface: dn-dut1\n",
            "    subnet: 192.168.100.0/24\n",
            "    gateway_ip: 192.168.100.1\n",
            "    upstream_interface: dn-up\n",
            "    nat_mode: 1to1\n",
            "    addresses: [{ip: 192.168.100.10, public_ip: 10.99.0.50}]\n",
            "    dhcp_enabled: false\n",
            "    dns_servers: [\"10.99.0.1\"]\n",
            "    nat_table_size: 262144\n",
            "    nat_timeouts:\n      unreplied: 10m\n      icmp: 4s\n",
            "  - name: bench2\n    interface: dn-dut2\n    subnet: 192.168.101.0/24\n    gateway_ip: 192.168.101.1\n",
        ] {
            assert!(yaml.contains(line), "no {line:?} in:\n{yaml}");
        }
        assert_eq!(yaml.matches("nat_mode: masquerade").count(), 1, "{yaml}");
        assert!(!config_yaml(Path::EbpfMasquerade, Options::default()).contains("1to1"));
    }
}
