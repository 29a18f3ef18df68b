//! A NAT lab for the datapath tests: an exporter running `dutnet load`, DUT
//! namespaces behind DUT NICs `dn-dut1..n` that all carry the same static
//! plan, a LAN host on the upstream, and the exchanges the tests judge from
//! the far end (echo servers that report the source they saw).
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    ops::RangeInclusive,
    time::Duration,
};

use serde_json::Value;

use crate::{
    Netns, Topology, cli,
    far_end::{self, UdpEcho},
    lab::{
        self,
        config::{Network, dut_nic},
    },
    netns::Process,
};

pub use crate::lab::config::{DUT_IP, EXPORTER_UP, FAR_IP, GATEWAY, LAN_IP};
/// The fast path's translation range while `ip_local_port_range` is the
/// default 32768-60999 (the range above it, less the nft fallback's slice).
pub const NAT_PORTS: RangeInclusive<u16> = 61000..=64511;
/// How long a client waits for one reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(3);

/// One network mapping of the `networks:` list for DUT NIC `dn-dut<n>`
/// ([`Network::nat`]). A top-level key of `extra` replaces the default one.
pub fn network_yaml(n: usize, extra: &str) -> String {
    Network::nat(&dut_nic(n))
        .set(extra)
        .entry(&format!("dut{n}"))
}

/// Two tests running the case `fn name(datapath: &str)` once per datapath:
/// `name::on_ebpf` and `name::on_nft` (`cargo test name` runs both). The
/// behaviour users see must not depend on the datapath.
#[macro_export]
macro_rules! both_datapaths {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        mod $name {
            #[test]
            fn on_ebpf() {
                super::$name("ebpf");
            }

            #[test]
            fn on_nft() {
                super::$name("nft");
            }
        }
    };
}

/// An exporter with DUT NICs `dn-dut1..n`, each leading to its own DUT
/// namespace where the DUT has [`DUT_IP`] statically (all the same), and
/// the upstream `dn-up` to the LAN host. [`Lab::switched`] puts more DUTs
/// behind a NIC.
pub struct Lab {
    pub topology: Topology,
    pub exporter: Netns,
    pub lan: Netns,
    /// The first DUT of each DUT NIC.
    pub duts: Vec<Netns>,
    /// Every DUT of each DUT NIC, in address order.
    behind: Vec<Vec<Netns>>,
    pub daemon: Option<Process>,
}

/// The address of DUT `k` (from 1) behind one DUT NIC: [`DUT_IP`] and the
/// addresses after it.
#[must_use]
pub fn dut_ip(k: usize) -> Ipv4Addr {
    let offset = u32::try_from(k - 1).expect("a handful of DUTs");
    Ipv4Addr::from(u32::from(DUT_IP) + offset)
}

impl Lab {
    pub fn new(duts: usize) -> Self {
        Self::switched(&vec![1; duts])
    }

    /// A lab whose DUT NIC `dn-dut<n>` leads to `per_nic[n-1]` DUTs: a
    /// single one is wired straight to it, several share a switch
    /// (namespace `sw<n>`, a bridge), as DUTs on one lab segment do. DUT
    /// `k` of a NIC has [`dut_ip`]`(k)` (namespace `dut<n>`, then
    /// `dut<n>-<k>`).
    pub fn switched(per_nic: &[usize]) -> Self {
        let mut topology = Topology::new();
        let (exporter, lan) = topology.exporter_and_lan();
        let mut behind = Vec::new();
        for (n, &count) in (1..).zip(per_nic) {
            let nic = format!("dn-dut{n}");
            let duts: Vec<Netns> = (1..=count)
                .map(|k| match k {
                    1 => topology.netns(&format!("dut{n}")),
                    _ => topology.netns(&format!("dut{n}-{k}")),
                })
                .collect();
            if let [dut] = duts.as_slice() {
                topology.veth((&exporter, &nic), (dut, "eth0"));
            } else {
                let mut ends = vec![(&exporter, nic.as_str())];
                ends.extend(duts.iter().map(|d| (d, "eth0")));
                topology.switch(&format!("sw{n}"), &ends);
            }
            for (k, dut) in (1..).zip(&duts) {
                dut.ip(&format!("addr add {}/24 dev eth0", dut_ip(k)));
                dut.ip(&format!("route add default via {GATEWAY}"));
            }
            behind.push(duts);
        }
        Self {
            topology,
            exporter,
            lan,
            duts: behind.iter().filter_map(|d| d.first().cloned()).collect(),
            behind,
            daemon: None,
        }
    }

    /// DUT `k` (from 1) of DUT NIC `dn-dut<n>`.
    pub fn dut_behind(&self, n: usize, k: usize) -> &Netns {
        &self.behind[n - 1][k - 1]
    }

    /// Makes the LAN host a router to a far host ([`FAR_IP`], namespace
    /// `far`) over a link with `mtu`; the exporter's default route goes
    /// through it. Neither the router nor the far host can route to the
    /// DUT subnet.
    pub fn with_far_host(mut self, mtu: u32) -> (Self, Netns) {
        let far = self.topology.netns("far");
        self.topology.veth((&self.lan, "eth1"), (&far, "eth0"));
        self.lan.ip(&format!("link set eth1 mtu {mtu}"));
        far.ip(&format!("link set eth0 mtu {mtu}"));
        self.lan.ip("addr add 10.98.0.1/24 dev eth1");
        far.ip(&format!("addr add {FAR_IP}/24 dev eth0"));
        far.ip("route add default via 10.98.0.1");
        self.lan.sysctl("net.ipv4.ip_forward=1");
        self.exporter.ip(&format!("route add default via {LAN_IP}"));
        (self, far)
    }

    /// Starts `dutnet load` with one network per DUT, each with `extra`
    /// keys (YAML lines).
    pub fn load(&mut self, extra: &str) {
        self.load_each(|_| extra.to_owned());
    }

    /// [`Lab::load`] with every network on `datapath` (`ebpf`, `nft`):
    /// `ebpf` rather than `auto`, so an eBPF that cannot load fails the
    /// test instead of passing it on nft.
    pub fn load_on(&mut self, datapath: &str, extra: &str) {
        self.load(&format!("datapath: {datapath}\n{extra}"));
    }

    /// [`Lab::load_each`] with every network on `datapath`.
    pub fn load_each_on(&mut self, datapath: &str, extra: impl Fn(usize) -> String) {
        self.load_each(|n| format!("datapath: {datapath}\n{}", extra(n)));
    }

    /// Starts `dutnet load` with one network per DUT; network `n` (from 1)
    /// gets the keys `extra(n)` (YAML lines).
    pub fn load_each(&mut self, extra: impl Fn(usize) -> String) {
        let mut config = "networks:\n".to_owned();
        for n in 1..=self.duts.len() {
            config.push_str(&network_yaml(n, &extra(n)));
        }
        self.daemon = Some(cli::load(&self.topology, &self.exporter, &config));
    }

    pub fn dut(&self, n: usize) -> &Netns {
        &self.duts[n - 1]
    }

    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Process::log).unwrap_or_default()
    }

    /// dutnet's counters (or what `dutnet stats` said instead: on the nft
    /// datapath there are none), its NAT rules and the end of its log, for
    /// failure messages.
    pub fn report(&self) -> String {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let stats = cli::run(&self.topology, &self.exporter, &["stats", "--json"]);
        let rules = cli::run(&self.topology, &self.exporter, &["nat-rules"]);
        format!(
            "stats: {}{}\nnat-rules:\n{}\ndutnet log (end):\n{}",
            stats.stdout,
            stats.stderr,
            rules.stdout,
            tail.join("\n")
        )
    }

    /// `dutnet stats --json`, run in the exporter like a user would.
    pub fn stats(&self) -> Value {
        let out = cli::run(&self.topology, &self.exporter, &["stats", "--json"]);
        assert!(
            out.success(),
            "dutnet stats failed: {out:#?}\n{}",
            self.log()
        );
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stats --json is not JSON ({e}):\n{}", out.stdout))
    }

    /// The stats entry of DUT NIC `iface`.
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
    pub fn total(&self, pointer: &str) -> u64 {
        let stats = self.stats();
        let interfaces = stats["interfaces"].as_array().cloned().unwrap_or_default();
        for n in 1..=self.duts.len() {
            assert!(
                interfaces
                    .iter()
                    .any(|i| i["interface"] == format!("dn-dut{n}")),
                "dn-dut{n} is missing from the stats:\n{stats:#}\n{}",
                self.log()
            );
        }
        interfaces
            .iter()
            .filter_map(|i| i.pointer(pointer).and_then(Value::as_u64))
            .sum()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate();
        }
        if std::thread::panicking() {
            lab::keep_logs(&self.topology);
        }
    }
}

/// A UDP socket in `ns` bound to `bind`, with a read timeout.
pub fn udp_socket(ns: &Netns, bind: SocketAddrV4) -> UdpSocket {
    let socket = ns.enter(move || UdpSocket::bind(bind).expect("bind in DUT"));
    socket.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    socket
}

/// Sends `payload` to `server` and returns the peer the server saw, after
/// checking the echo is the reply to this very datagram.
#[track_caller]
pub fn udp_exchange(lab: &Lab, socket: &UdpSocket, server: &UdpEcho, payload: &[u8]) -> SocketAddr {
    socket.send_to(payload, server.addr).unwrap();
    udp_reply(lab, socket, server, payload)
}

/// Waits for the echo of `payload` on `socket`; returns the peer the server
/// saw. Without one, fails with what the server got and dutnet's view.
#[track_caller]
pub fn udp_reply(lab: &Lab, socket: &UdpSocket, server: &UdpEcho, payload: &[u8]) -> SocketAddr {
    let mut buf = vec![0u8; 65536];
    let local = socket.local_addr().unwrap();
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no UDP echo for {local} within {REPLY_WAIT:?} ({e}); the server got {:?}\n{}",
            server.datagrams(),
            lab.report()
        )
    });
    let (peer, echoed) = far_end::parse_echo(&buf[..n])
        .unwrap_or_else(|| panic!("not an echo: {:?}", String::from_utf8_lossy(&buf[..n])));
    assert_eq!(
        echoed, payload,
        "{local} got the echo of someone else's datagram"
    );
    peer
}

/// One TCP exchange from `ns`: connect, send a line, read the echo; returns
/// the peer the server saw.
#[track_caller]
pub fn tcp_exchange(ns: &Netns, server: SocketAddrV4, line: &str) -> SocketAddr {
    let line = line.to_owned();
    ns.enter(move || try_tcp_exchange(server, &line))
        .unwrap_or_else(|e| panic!("TCP to {server} from {}: {e}", ns.name))
}

/// [`tcp_exchange`] from the calling thread's namespace (a thread inside
/// [`Netns::enter`] running many of them), each step waiting at most
/// [`REPLY_WAIT`]. An answer that is not the echo of `line` is an error too.
pub fn try_tcp_exchange(server: SocketAddrV4, line: &str) -> std::io::Result<SocketAddr> {
    let request = format!("{line}\n");
    let mut stream = TcpStream::connect_timeout(&server.into(), REPLY_WAIT)?;
    stream.set_read_timeout(Some(REPLY_WAIT))?;
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    match far_end::parse_echo(&reply) {
        Some((peer, echoed)) if echoed == request.as_bytes() => Ok(peer),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not the echo of {line:?}: {:?}",
                String::from_utf8_lossy(&reply)
            ),
        )),
    }
}

/// Creates Docker's `ip filter FORWARD` chain (forward hook, policy drop)
/// in `exporter`; returns its listing, to compare with after dutnet.
pub fn add_docker_forward_chain(exporter: &Netns) -> String {
    exporter.exec("nft", &["add", "table", "ip", "filter"]).ok();
    exporter
        .exec(
            "nft",
            &[
                "add",
                "chain",
                "ip",
                "filter",
                "FORWARD",
                "{ type filter hook forward priority 0; policy drop; }",
            ],
        )
        .ok();
    docker_forward_chain(exporter)
}

/// `nft list chain ip filter FORWARD` in `exporter`.
pub fn docker_forward_chain(exporter: &Netns) -> String {
    exporter
        .exec("nft", &["list", "chain", "ip", "filter", "FORWARD"])
        .ok()
        .stdout
}

pub fn lan_udp_echo(lab: &Lab) -> UdpEcho {
    UdpEcho::start(&lab.lan, SocketAddrV4::new(LAN_IP, 7000))
}
