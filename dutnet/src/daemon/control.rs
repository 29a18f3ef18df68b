//! The daemon's side of the control socket: each request, routed to the
//! context of the network it names (it runs inside the supervisor loop, one
//! at a time).
//!
//! A runtime change is checked with the config file's rules first and
//! changes nothing when refused. Once accepted it is saved (see
//! `state::runtime`), made part of the network's config (so a re-plugged
//! interface comes back with it) and applied live: a static lease to DHCP,
//! host names to DNS, and with `nat_mode: 1to1` the public address to the
//! datapath and the public interface.
use tracing::warn;

use super::{
    exporter::Exporter as _,
    network::{Applied, NetworkContext},
    supervisor::Daemon,
};
use crate::{
    config::{MacAddr, NatMode, wire::AddressWire},
    control::{
        Failure, Reply, Request, Response,
        counters::{DhcpStats, FilterCounters, InterfaceCounters, NetworkCounters},
        protocol::{
            Mapping, NatActivity, NetworkLeases, NetworkNat, NetworkNtp, NtpClock, PortRange,
        },
        server::Pending,
    },
    datapath::{Datapath as _, nft},
};

type Outcome = Result<Reply, Failure>;

impl Daemon {
    /// Answers one control request.
    pub(super) async fn serve_control(&mut self, (request, reply): Pending) {
        let response = match self.handle(request).await {
            Ok(r) => Response::Ok(r),
            Err(f) => Response::Error(f),
        };
        // The client may have gone; the change stands either way.
        let _ = reply.send(response);
    }

    async fn handle(&mut self, request: Request) -> Outcome {
        match request {
            Request::Status { network } => {
                let mut networks = Vec::new();
                let flows = self.active_flows();
                // One short `nft` run, off the runtime's threads.
                let ruleset = match tokio::task::spawn_blocking(nft::list_table).await {
                    Ok(Ok(text)) => text,
                    _ => String::new(),
                };
                for index in self.select_many(network.as_deref())? {
                    let net = &self.networks[index];
                    let flows = flows.get(&net.config.interface).copied().unwrap_or(0);
                    let rules = nft::rules_of(&ruleset, &[net.config.name.as_str()]);
                    networks.push(
                        net.status(&self.exporter, &self.datapath, flows, &rules)
                            .await,
                    );
                }
                Ok(Reply::Status { networks })
            }
            Request::Leases { network } => {
                let networks = self
                    .select_many(network.as_deref())?
                    .into_iter()
                    .map(|index| {
                        let net = &self.networks[index];
                        let mut leases = net.lease_infos();
                        for lease in &mut leases {
                            lease.nat = self.lease_nat(net, lease.ip);
                        }
                        NetworkLeases {
                            network: net.config.name.clone(),
                            leases,
                        }
                    })
                    .collect();
                Ok(Reply::Leases { networks })
            }
            Request::NtpStatus { network } => {
                let networks = self
                    .select_many(network.as_deref())?
                    .into_iter()
                    .map(|index| {
                        let net = &self.networks[index];
                        let ntp = net.servers.ntp.as_ref();
                        NetworkNtp {
                            network: net.config.name.clone(),
                            enabled: net.config.local_ntp,
                            running: ntp.is_some_and(crate::ntp::NtpServer::running),
                            counters: ntp.map(crate::ntp::NtpServer::counters),
                            clients: ntp.map(crate::ntp::NtpServer::clients).unwrap_or_default(),
                        }
                    })
                    .collect();
                let c = crate::ntp::clock::ClockState::read();
                Ok(Reply::NtpStatus {
                    networks,
                    clock: NtpClock {
                        synchronized: c.synchronized(),
                        leap: c.leap(),
                        stratum: c.stratum(),
                        offset_ns: c.offset_ns,
                        maxerror_us: c.maxerror_us,
                        esterror_us: c.esterror_us,
                    },
                })
            }
            Request::GetIp { network, mac } => self.get_ip(network.as_deref(), &mac),
            Request::AddAddress {
                network,
                ip,
                mac,
                hostname,
                public_ip,
                vlan_id,
                public_gateway,
            } => {
                let wire = AddressWire {
                    ip: Some(ip),
                    mac,
                    hostname,
                    public_ip,
                    vlan_id,
                    public_gateway,
                    // Boot options come from the config file only.
                    dhcp_options: None,
                };
                let index = self.select_one(network.as_deref())?;
                let applied = self.networks[index]
                    .add_address(wire, &mut self.exporter, &mut self.datapath, &self.paths)
                    .await?;
                Ok(self.after_change(applied))
            }
            Request::RemoveAddress { network, ip } => {
                let index = self.select_one(network.as_deref())?;
                let applied = self.networks[index]
                    .remove_address(&ip, &mut self.exporter, &mut self.datapath, &self.paths)
                    .await?;
                Ok(self.after_change(applied))
            }
            Request::DnsEntries { network } => {
                let networks = self
                    .select_many(network.as_deref())?
                    .into_iter()
                    .map(|index| self.networks[index].dns_records())
                    .collect();
                Ok(Reply::DnsEntries { networks })
            }
            Request::AddDns {
                network,
                hostname,
                ip,
            } => {
                let index = self.select_one(network.as_deref())?;
                self.networks[index].add_dns(hostname, ip, &self.paths)
            }
            Request::RemoveDns { network, hostname } => {
                let index = self.select_one(network.as_deref())?;
                self.networks[index].remove_dns(&hostname, &self.paths)
            }
            Request::NatRules { network } => {
                let mut networks = Vec::new();
                let flows = self.active_flows();
                for index in self.select_many(network.as_deref())? {
                    let net = &self.networks[index];
                    let flows = flows.get(&net.config.interface).copied().unwrap_or(0);
                    networks.push(self.nat_rules(net, flows).await);
                }
                // One short `nft` run, off the runtime's threads.
                let ruleset = match tokio::task::spawn_blocking(nft::list_table).await {
                    // One network asked for: its rules only.
                    Ok(Ok(text)) if network.is_some() => {
                        let names: Vec<&str> =
                            networks.iter().map(|n| n.network.as_str()).collect();
                        Some(nft::rules_of(&text, &names))
                    }
                    Ok(Ok(text)) => Some(text),
                    Ok(Err(e)) => {
                        warn!(error = %e, "listing dutnet's nftables table failed");
                        None
                    }
                    Err(_) => None,
                };
                Ok(Reply::NatRules { networks, ruleset })
            }
            Request::Flows { network, limit } => self.flows(network.as_deref(), limit),
            Request::Stats => self.stats(),
            Request::Reload => self.reload().await,
            Request::Capture(capture) => self.capture_plan(&capture).await,
        }
    }

    /// What every runtime change of a network's addresses is followed by.
    fn after_change(&mut self, applied: Applied) -> Reply {
        if applied.public_changed {
            self.reopen_foreign_chains();
        }
        applied.reply
    }

    /// The counters with the daemon's own interface names (a client in
    /// another namespace would resolve the ifindexes to other interfaces),
    /// and each network's DHCP and DNS counters.
    pub(super) fn stats(&self) -> Outcome {
        let stats = self.datapath.stats().map_err(|e| {
            Failure::failed(format!(
                "reading the eBPF counters failed: {e}; see the daemon's log"
            ))
        })?;
        let kernel_hits = if self.networks.iter().any(|n| n.config.filter.is_some()) {
            nft::filter_hits::read().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the filter counters of dutnet's nft table failed");
                std::collections::BTreeMap::new()
            })
        } else {
            std::collections::BTreeMap::new()
        };
        let networks = self
            .networks
            .iter()
            .map(|n| {
                let mut counters = self.network_counters(n);
                if let Some(filter) = &n.config.filter {
                    let fast = stats
                        .iter()
                        .find(|s| s.name.as_ref() == Some(&n.config.interface))
                        .and_then(|s| s.filter.clone())
                        .unwrap_or_default();
                    let hits =
                        fast.plus(&kernel_hits.get(&n.config.name).cloned().unwrap_or_default());
                    counters.filter = Some(FilterCounters::new(filter, &hits));
                }
                counters
            })
            .collect();
        let interfaces = stats
            .iter()
            .map(|s| {
                let network = self
                    .networks
                    .iter()
                    .find(|n| s.name.as_ref() == Some(&n.config.interface));
                let mut counters =
                    InterfaceCounters::new(s, network.map(|n| n.config.name.clone()));
                if let Some(network) = network {
                    let mut known = network.dut_identities();
                    for dut in &mut counters.duts {
                        let identity = known.remove(&dut.address).unwrap_or_default();
                        (dut.mac, dut.hostname) = (identity.mac, identity.hostname);
                    }
                }
                counters
            })
            .collect();
        Ok(Reply::Stats {
            datapath: self.datapath.name().to_owned(),
            interfaces,
            networks,
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }

    fn find_network(&self, name: &str) -> Result<usize, Failure> {
        self.networks
            .iter()
            .position(|n| n.config.name == name)
            .ok_or_else(|| {
                Failure::not_found(format!(
                    "there is no network `{name}`; pick one of: {}",
                    self.network_names()
                ))
            })
    }

    fn network_names(&self) -> String {
        self.networks
            .iter()
            .map(|n| n.config.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The named network, or every network.
    pub(super) fn select_many(&self, name: Option<&str>) -> Result<Vec<usize>, Failure> {
        match name {
            Some(name) => Ok(vec![self.find_network(name)?]),
            None => Ok((0..self.networks.len()).collect()),
        }
    }

    /// The named network, or the only one.
    pub(super) fn select_one(&self, name: Option<&str>) -> Result<usize, Failure> {
        match name {
            Some(name) => self.find_network(name),
            None if self.networks.len() == 1 => Ok(0),
            None => Err(Failure::invalid(format!(
                "dutnet runs several networks ({}); say which with --network NAME",
                self.network_names()
            ))),
        }
    }

    /// Flows on the fast path by DUT interface, read once for a whole
    /// request (the counters of every interface are read together).
    fn active_flows(&self) -> std::collections::BTreeMap<String, u64> {
        self.datapath
            .stats()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| Some((s.name?, s.active_flows)))
            .collect()
    }

    /// What DUT `ip` of `net` does through NAT, as of the last sweep; `None`
    /// when its network has no fast-path flows (nft, NAT disabled, down).
    fn lease_nat(&self, net: &NetworkContext, ip: std::net::Ipv4Addr) -> Option<NatActivity> {
        let on_fast_path = matches!(
            self.datapath.carrier(&net.config.interface),
            crate::datapath::Carrier::Ebpf(_)
        );
        if net.config.nat_mode == NatMode::Disabled || !on_fast_path {
            return None;
        }
        let dut = dutnet_common::nat::PrivateKey {
            dut_ifindex: net.ifindex()?,
            // Network order, as the programs key it.
            private_addr: u32::from_ne_bytes(ip.octets()),
        };
        let now = crate::datapath::ebpf::nat_maps::monotonic_now_ns();
        Some(match self.nat_activity.get(&dut) {
            Some(&(flows, sent)) => NatActivity {
                flows,
                last_sent_secs_ago: (sent > 0).then(|| now.saturating_sub(sent) / 1_000_000_000),
            },
            None => NatActivity {
                flows: 0,
                last_sent_secs_ago: None,
            },
        })
    }

    fn get_ip(&self, network: Option<&str>, mac: &str) -> Outcome {
        let mac: MacAddr = mac.parse().map_err(Failure::invalid)?;
        self.select_many(network)?
            .iter()
            .find_map(|&index| self.networks[index].lease_of(mac.0).map(Reply::Ip))
            .ok_or_else(|| {
                Failure::not_found(format!(
                    "no DHCP lease for {mac}; check the MAC with `dutnet leases`, or wait for the DUT to ask for an address"
                ))
            })
    }

    async fn nat_rules(&self, net: &NetworkContext, active_flows: u64) -> NetworkNat {
        let c = &net.config;
        let upstream = self.exporter.resolve_upstream(c).await;
        let mut masquerade_address = None;
        if let Some(link) = &upstream
            && let Ok(Some(address)) = self.exporter.masquerade_address(link).await
        {
            masquerade_address = Some(address);
        }
        let ports = if c.nat_mode == NatMode::Disabled {
            crate::datapath::NatPorts::default()
        } else {
            self.datapath.nat_ports(&c.interface)
        };
        let range = |r: std::ops::RangeInclusive<u16>| PortRange {
            first: *r.start(),
            last: *r.end(),
        };
        NetworkNat {
            network: c.name.clone(),
            nat_mode: c.nat_mode.as_str().to_owned(),
            datapath: self.datapath.planned(&c.interface).backend().to_owned(),
            upstream: upstream.map(|l| l.name),
            masquerade_address,
            ports: ports.fast_path.map(range),
            fallback_ports: ports.kernel.map(range),
            mappings: super::nat::public_addresses(c)
                .into_iter()
                .map(|p| Mapping {
                    private: p.private,
                    public: p.public,
                    vlan_id: p.vlan_id,
                    public_gateway: c
                        .addresses
                        .iter()
                        .find(|a| a.ip == p.private)
                        .and_then(|a| a.public_gateway),
                })
                .collect(),
            active_flows,
        }
    }

    fn network_counters(&self, net: &NetworkContext) -> NetworkCounters {
        let c = &net.config;
        let pool_size = u64::from(u32::from(c.dhcp.range_end))
            .saturating_sub(u64::from(u32::from(c.dhcp.range_start)))
            + 1;
        let servers = &net.servers;
        NetworkCounters {
            network: c.name.clone(),
            interface: c.interface.clone(),
            datapath: self.datapath.carrier(&c.interface).backend().to_owned(),
            dhcp: servers.dhcp.as_ref().map(|dhcp| {
                let leases = u64::try_from(dhcp.leases().len()).unwrap_or(u64::MAX);
                DhcpStats::new(&dhcp.counters(), leases, pool_size)
            }),
            dns: servers.dns.as_ref().map(|dns| dns.counters().into()),
            tftp: servers.tftp.as_ref().map(|t| t.counters()),
            filter: None,
            ntp: servers.ntp.as_ref().map(|t| t.counters()),
        }
    }
}
