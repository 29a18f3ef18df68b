//! The daemon's side of the control socket: each request, applied to the
//! daemon's own state (it runs inside the supervisor loop, one at a time).
//!
//! A runtime change is checked with the config file's rules first and
//! changes nothing when refused. Once accepted it is saved (see
//! `state::runtime`), made part of the network's config (so a re-plugged
//! interface comes back with it) and applied live: a static lease to DHCP,
//! host names to DNS, and with `nat_mode: 1to1` the public address to the
//! datapath maps and the public interface.
use std::{
    net::Ipv4Addr,
    time::{SystemTime, UNIX_EPOCH},
};

use ipnet::Ipv4Net;
use tracing::{info, warn};

use super::{Daemon, NetworkRuntime, nat, restore, takeover};
use crate::{
    config::{
        AddressEntry, DnsEntry, MacAddr, NatMode, Network,
        wire::{AddressWire, DnsEntryWire},
    },
    control::{
        Failure, Reply, Request, Response,
        counters::{DhcpStats, InterfaceCounters, NetworkCounters},
        protocol::{
            BootStatus, DnsRecord, DutBoot, LeaseInfo, Mapping, NetworkDns, NetworkLeases,
            NetworkNat, NetworkStatus, PortRange,
        },
        server::Pending,
    },
    datapath::{Datapath as _, PublicAddress, ebpf::TcAttachMode, nft},
    dhcp::{Lease, StaticLease, format_mac},
    host::journal::UndoStep,
    netlink::Link,
    state::runtime::{self, RuntimeChanges},
};

type Outcome = Result<Reply, Failure>;

impl Daemon {
    /// Re-applies the changes saved by an earlier run to the configs, before
    /// anything starts.
    pub(super) fn restore_runtime_changes(&mut self) {
        for net in &mut self.networks {
            let path = runtime::file(&self.paths, &net.config.name);
            let changes = match RuntimeChanges::load(&path) {
                Ok(changes) => changes,
                Err(e) => {
                    warn!(network = %net.config.name, error = %e, "ignoring saved runtime changes");
                    continue;
                }
            };
            if changes == RuntimeChanges::default() {
                continue;
            }
            for skipped in changes.apply_to(&mut net.config) {
                warn!(network = %net.config.name, "{skipped}; not applied");
            }
            info!(network = %net.config.name, file = %path.display(), "runtime changes of the last run applied");
        }
    }

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
                for index in self.select_many(network.as_deref())? {
                    networks.push(self.status(index).await);
                }
                Ok(Reply::Status { networks })
            }
            Request::Leases { network } => {
                let networks = self
                    .select_many(network.as_deref())?
                    .into_iter()
                    .map(|index| {
                        let net = &self.networks[index];
                        NetworkLeases {
                            network: net.config.name.clone(),
                            leases: leases(net).iter().map(|l| lease_info(net, l)).collect(),
                        }
                    })
                    .collect();
                Ok(Reply::Leases { networks })
            }
            Request::GetIp { network, mac } => self.get_ip(network.as_deref(), &mac),
            Request::AddAddress {
                network,
                ip,
                mac,
                hostname,
                public_ip,
            } => {
                let wire = AddressWire {
                    ip: Some(ip),
                    mac,
                    hostname,
                    public_ip,
                    // Boot options come from the config file only.
                    dhcp_options: None,
                };
                let index = self.select_one(network.as_deref())?;
                self.add_address(index, wire).await
            }
            Request::RemoveAddress { network, ip } => {
                let index = self.select_one(network.as_deref())?;
                self.remove_address(index, &ip).await
            }
            Request::DnsEntries { network } => {
                let networks = self
                    .select_many(network.as_deref())?
                    .into_iter()
                    .map(|index| dns_entries(&self.networks[index]))
                    .collect();
                Ok(Reply::DnsEntries { networks })
            }
            Request::AddDns {
                network,
                hostname,
                ip,
            } => {
                let index = self.select_one(network.as_deref())?;
                self.add_dns(index, hostname, ip)
            }
            Request::RemoveDns { network, hostname } => {
                let index = self.select_one(network.as_deref())?;
                self.remove_dns(index, &hostname)
            }
            Request::NatRules { network } => {
                let mut networks = Vec::new();
                for index in self.select_many(network.as_deref())? {
                    networks.push(self.nat_rules(index).await);
                }
                // One short `nft` run, off the runtime's threads.
                let ruleset = match tokio::task::spawn_blocking(nft::list_table).await {
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
        }
    }

    /// The counters with the daemon's own interface names (a client in
    /// another namespace would resolve the ifindexes to other interfaces),
    /// and each network's DHCP and DNS counters.
    pub(super) fn stats(&self) -> Outcome {
        let networks = self.networks.iter().map(network_counters).collect();
        let uptime_seconds = self.started.elapsed().as_secs();
        let Some(datapath) = &self.datapath else {
            return Ok(Reply::Stats {
                datapath: "nft".to_owned(),
                interfaces: Vec::new(),
                networks,
                uptime_seconds,
            });
        };
        let stats = datapath.stats().map_err(|e| {
            Failure::failed(format!(
                "reading the eBPF counters failed: {e}; see the daemon's log"
            ))
        })?;
        let network_of = |name: Option<&String>| {
            self.networks
                .iter()
                .find(|n| Some(&n.config.interface) == name)
                .map(|n| n.config.name.clone())
        };
        let interfaces = stats
            .iter()
            .map(|s| InterfaceCounters::new(s, network_of(s.name.as_ref())))
            .collect();
        Ok(Reply::Stats {
            datapath: "ebpf".to_owned(),
            interfaces,
            networks,
            uptime_seconds,
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
    fn select_one(&self, name: Option<&str>) -> Result<usize, Failure> {
        match name {
            Some(name) => self.find_network(name),
            None if self.networks.len() == 1 => Ok(0),
            None => Err(Failure::invalid(format!(
                "dutnet runs several networks ({}); say which with --network NAME",
                self.network_names()
            ))),
        }
    }

    async fn upstream(&self, config: &Network) -> Option<Link> {
        takeover::resolve_upstream(config, &self.netlink)
            .await
            .ok()
            .flatten()
    }

    fn active_flows(&self, interface: &str) -> u64 {
        let Some(datapath) = &self.datapath else {
            return 0;
        };
        datapath
            .stats()
            .ok()
            .and_then(|all| {
                all.into_iter()
                    .find(|s| s.name.as_deref() == Some(interface))
            })
            .map_or(0, |s| s.active_flows)
    }

    async fn status(&self, index: usize) -> NetworkStatus {
        let net = &self.networks[index];
        let c = &net.config;
        let attached = self
            .datapath
            .as_ref()
            .filter(|d| d.attached_interfaces().any(|i| i == c.interface));
        NetworkStatus {
            name: c.name.clone(),
            interface: c.interface.clone(),
            interface_up: net.ifindex.is_some(),
            gateway: takeover::gateway_address(c).to_string(),
            subnet: c.subnet.to_string(),
            upstream: self.upstream(c).await.map(|l| l.name),
            nat_mode: nat_mode_name(c.nat_mode).to_owned(),
            datapath: attached.map_or_else(
                || {
                    if !net.on_ebpf && net.ifindex.is_some() {
                        "nft"
                    } else {
                        "none"
                    }
                    .to_owned()
                },
                |d| match d.attach_mode() {
                    TcAttachMode::Tcx => "ebpf (tcx)".to_owned(),
                    TcAttachMode::Netlink => "ebpf (netlink)".to_owned(),
                },
            ),
            dhcp_enabled: c.dhcp.enabled,
            dhcp_running: net.dhcp.is_some(),
            dns_running: net.dns.is_some(),
            leases: leases(net).len(),
            addresses: c.addresses.len(),
            dns_entries: c.dns_entries.len(),
            flows: self.active_flows(&c.interface),
            boot: boot_status(net),
        }
    }

    fn get_ip(&self, network: Option<&str>, mac: &str) -> Outcome {
        let mac: MacAddr = mac.parse().map_err(Failure::invalid)?;
        let indices = self.select_many(network)?;
        indices
            .iter()
            .find_map(|&index| {
                let net = &self.networks[index];
                leases(net)
                    .iter()
                    .find(|l| l.mac == mac.0)
                    .map(|l| Reply::Ip(lease_info(net, l)))
            })
            .ok_or_else(|| {
                Failure::not_found(format!(
                    "no DHCP lease for {mac}; check the MAC with `dutnet leases`, or wait for the DUT to ask for an address"
                ))
            })
    }

    async fn add_address(&mut self, index: usize, wire: AddressWire) -> Outcome {
        let config = &self.networks[index].config;
        let entry = AddressEntry::try_from(wire)
            .and_then(|e| config.check_new_address(&e).map(|()| e))
            .map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
        if let Some(public) = entry.public_ip
            && config.nat_mode != NatMode::OneToOne
        {
            return Err(Failure::invalid(format!(
                "public_ip {public} needs nat_mode 1to1, and network `{}` uses {}; leave out --public-ip",
                config.name,
                nat_mode_name(config.nat_mode)
            )));
        }
        let previous = self.save_changes(index, |c| c.add_address(&entry))?;
        let net = &mut self.networks[index];
        net.config.addresses.push(entry.clone());
        if let Err(failure) = self.apply_address(index, &entry).await {
            let net = &mut self.networks[index];
            net.config.addresses.retain(|a| a.ip != entry.ip);
            if let (Some(dhcp), Some(_)) = (&net.dhcp, entry.mac) {
                let _ = dhcp.remove_static(entry.ip);
            }
            self.restore_changes(index, &previous);
            return Err(failure);
        }
        self.publish_static_hosts(index);
        let name = self.networks[index].config.name.clone();
        info!(network = %name, ip = %entry.ip, mac = ?entry.mac, hostname = ?entry.hostname, public_ip = ?entry.public_ip, "address added at run time");
        Ok(Reply::Done {
            message: format!("added {} to network `{name}`", describe(&entry)),
            network: name,
        })
    }

    /// Makes a new entry (already in the config) take effect.
    async fn apply_address(&mut self, index: usize, entry: &AddressEntry) -> Result<(), Failure> {
        let net = &self.networks[index];
        match (&net.dhcp, entry.mac) {
            (Some(dhcp), Some(mac)) => dhcp
                .add_static(StaticLease {
                    mac: mac.0,
                    ip: entry.ip,
                    hostname: entry.hostname.clone(),
                    options: entry.dhcp_options.clone(),
                })
                .map_err(|e| Failure::invalid(e.to_string()))?,
            // No MAC: a 1:1-only entry, never leased to anybody.
            (Some(dhcp), None) => dhcp.set_reserved(entry.ip, true),
            (None, _) => {}
        }
        if let Some(public) = entry.public_ip
            && net.ifindex.is_some()
        {
            self.map_public(
                index,
                PublicAddress {
                    private: entry.ip,
                    public,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// 1:1 on a running network: the datapath maps, then the alias that
    /// makes the exporter answer ARP for the public address.
    async fn map_public(&mut self, index: usize, public: PublicAddress) -> Result<(), Failure> {
        let net = &self.networks[index];
        let upstream = self.upstream(&net.config).await;
        if let Some(datapath) = &mut self.datapath {
            datapath
                .add_public(&net.config.interface, public)
                .map_err(|e| Failure::invalid(e.to_string()))?;
        }
        let aliased = nat::add_public_aliases(
            &net.config,
            upstream.as_ref(),
            &self.netlink,
            &mut self.journal,
        )
        .await;
        if let Err(message) = aliased {
            if let Some(datapath) = &mut self.datapath {
                let _ = datapath.remove_public(&net.config.interface, public);
            }
            return Err(Failure::failed(format!(
                "adding the public address {} failed: {message}",
                public.public
            )));
        }
        self.refresh_fallback_rules().await;
        Ok(())
    }

    async fn remove_address(&mut self, index: usize, ip: &str) -> Outcome {
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            Failure::invalid(format!(
                "`{ip}` is not an IPv4 address; write e.g. 192.168.100.50"
            ))
        })?;
        let net = &self.networks[index];
        let Some(position) = net.config.addresses.iter().position(|a| a.ip == ip) else {
            return Err(Failure::not_found(format!(
                "network `{}` has no address entry {ip}; `dutnet status` counts them, `dutnet leases` lists the leases",
                net.config.name
            )));
        };
        self.save_changes(index, |c| c.remove_address(ip))?;
        let net = &mut self.networks[index];
        let entry = net.config.addresses.remove(position);
        match (&net.dhcp, entry.mac) {
            // Not found: the server never had it (it was down); fine.
            (Some(dhcp), Some(_)) => drop(dhcp.remove_static(ip)),
            (Some(dhcp), None) => dhcp.set_reserved(ip, false),
            (None, _) => {}
        }
        if let Some(public) = entry.public_ip
            && net.config.nat_mode == NatMode::OneToOne
        {
            self.unmap_public(
                index,
                PublicAddress {
                    private: entry.ip,
                    public,
                },
            )
            .await;
        }
        self.publish_static_hosts(index);
        let name = self.networks[index].config.name.clone();
        info!(network = %name, %ip, "address removed at run time");
        Ok(Reply::Done {
            message: format!("removed {} from network `{name}`", describe(&entry)),
            network: name,
        })
    }

    /// Takes a public address away: the maps, then the alias if dutnet put
    /// it there (one that was there before dutnet stays).
    async fn unmap_public(&mut self, index: usize, public: PublicAddress) {
        let net = &self.networks[index];
        if let Some(datapath) = &mut self.datapath
            && let Err(e) = datapath.remove_public(&net.config.interface, public)
        {
            warn!(network = %net.config.name, error = %e, "removing a 1:1 mapping failed");
        }
        let alias = self.journal.entries().iter().find_map(|e| match &e.step {
            UndoStep::AddressAlias { interface, address }
                if e.network == net.config.name && address.addr() == public.public =>
            {
                Some((interface.clone(), *address))
            }
            _ => None,
        });
        let Some((interface, address)) = alias else {
            self.refresh_fallback_rules().await;
            return;
        };
        let step = UndoStep::AddressAlias {
            interface: interface.clone(),
            address,
        };
        if let Err(e) = restore::undo_step(&step, &self.netlink).await {
            warn!(network = %net.config.name, %interface, %address, error = %e, "removing a public address failed");
        }
        self.refresh_fallback_rules().await;
    }

    fn add_dns(&mut self, index: usize, hostname: String, ip: String) -> Outcome {
        let config = &self.networks[index].config;
        let wire = DnsEntryWire {
            hostname: Some(hostname),
            ip: Some(ip),
        };
        let entry = DnsEntry::try_from(wire)
            .and_then(|e| config.check_new_dns_entry(&e).map(|()| e))
            .map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
        let previous = self.save_changes(index, |c| c.add_dns(&entry))?;
        let net = &mut self.networks[index];
        if let Some(dns) = &net.dns
            && let Err(e) = dns.add_entry(&entry.hostname, entry.ip)
        {
            self.restore_changes(index, &previous);
            return Err(Failure::invalid(e.to_string()));
        }
        net.config.dns_entries.push(entry.clone());
        let name = net.config.name.clone();
        info!(network = %name, hostname = %entry.hostname, ip = %entry.ip, "DNS entry added at run time");
        Ok(Reply::Done {
            message: format!(
                "{} now resolves to {} in network `{name}`",
                entry.hostname, entry.ip
            ),
            network: name,
        })
    }

    fn remove_dns(&mut self, index: usize, hostname: &str) -> Outcome {
        let wanted = hostname.trim_end_matches('.');
        let net = &self.networks[index];
        let Some(position) = net.config.dns_entries.iter().position(|d| {
            d.hostname
                .trim_end_matches('.')
                .eq_ignore_ascii_case(wanted)
        }) else {
            return Err(Failure::not_found(format!(
                "network `{}` has no DNS entry `{hostname}`; see `dutnet dns-entries`",
                net.config.name
            )));
        };
        let stored = net.config.dns_entries[position].hostname.clone();
        self.save_changes(index, |c| c.remove_dns(&stored))?;
        let net = &mut self.networks[index];
        net.config.dns_entries.remove(position);
        if let Some(dns) = &net.dns
            && let Err(e) = dns.remove_entry(&stored)
        {
            warn!(network = %net.config.name, hostname = %stored, error = %e, "DNS server had no such entry");
        }
        let name = net.config.name.clone();
        info!(network = %name, hostname = %stored, "DNS entry removed at run time");
        Ok(Reply::Done {
            message: format!("removed the DNS entry {stored} from network `{name}`"),
            network: name,
        })
    }

    async fn nat_rules(&self, index: usize) -> NetworkNat {
        let net = &self.networks[index];
        let c = &net.config;
        let upstream = self.upstream(c).await;
        let mut masquerade_address = None;
        if let Some(link) = &upstream
            && let Ok(addresses) = self.netlink.ipv4_addresses(link.index).await
        {
            masquerade_address = addresses.first().map(Ipv4Net::addr);
        }
        let nat = c.nat_mode != NatMode::Disabled;
        let range = |r: &std::ops::RangeInclusive<u16>| PortRange {
            first: *r.start(),
            last: *r.end(),
        };
        NetworkNat {
            network: c.name.clone(),
            nat_mode: nat_mode_name(c.nat_mode).to_owned(),
            datapath: if net.on_ebpf { "ebpf" } else { "nft" }.to_owned(),
            upstream: upstream.map(|l| l.name),
            masquerade_address,
            ports: self
                .ports
                .as_ref()
                .filter(|_| nat && net.on_ebpf)
                .map(|p| range(&p.fast_path)),
            // The kernel's masquerade has a range only beside a fast path
            // (see `install_fallback_rules`).
            fallback_ports: self
                .ports
                .as_ref()
                .filter(|_| nat && self.datapath.is_some())
                .map(|p| range(&p.fallback)),
            mappings: nat::public_addresses(c)
                .into_iter()
                .map(|p| Mapping {
                    private: p.private,
                    public: p.public,
                })
                .collect(),
            active_flows: self.active_flows(&c.interface),
        }
    }

    /// Saves `change` applied to network `index`'s saved changes; returns
    /// the changes before it, to put back if applying fails.
    fn save_changes(
        &self,
        index: usize,
        change: impl FnOnce(&mut RuntimeChanges),
    ) -> Result<RuntimeChanges, Failure> {
        let path = runtime::file(&self.paths, &self.networks[index].config.name);
        let fail = |e: runtime::RuntimeFileError| {
            Failure::failed(format!(
                "{e}; nothing was changed (check the state directory)"
            ))
        };
        let previous = RuntimeChanges::load(&path).map_err(fail)?;
        let mut changes = previous.clone();
        change(&mut changes);
        changes.save(&path).map_err(fail)?;
        Ok(previous)
    }

    fn restore_changes(&self, index: usize, previous: &RuntimeChanges) {
        let path = runtime::file(&self.paths, &self.networks[index].config.name);
        if let Err(e) = previous.save(&path) {
            warn!(error = %e, "restoring the saved runtime changes failed");
        }
    }

    /// Hands the static DUT host names (config plus runtime) to DNS.
    fn publish_static_hosts(&self, index: usize) {
        let net = &self.networks[index];
        if let Some(dns) = &net.dns {
            dns.set_static_hosts(static_hosts(&net.config));
        }
    }
}

fn static_hosts(config: &Network) -> Vec<(String, Ipv4Addr)> {
    config
        .addresses
        .iter()
        .filter_map(|a| a.hostname.clone().map(|h| (h, a.ip)))
        .collect()
}

fn leases(net: &NetworkRuntime) -> Vec<Lease> {
    net.dhcp.as_ref().map(|d| d.leases()).unwrap_or_default()
}

fn lease_info(net: &NetworkRuntime, lease: &Lease) -> LeaseInfo {
    LeaseInfo {
        network: net.config.name.clone(),
        mac: format_mac(&lease.mac),
        ip: lease.ip,
        hostname: lease.hostname.clone(),
        expires: lease
            .expires
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        is_static: lease.is_static,
    }
}

fn dns_entries(net: &NetworkRuntime) -> NetworkDns {
    let record = |(hostname, ip): (String, Ipv4Addr)| DnsRecord { hostname, ip };
    let entries = match &net.dns {
        Some(dns) => dns.entries().into_iter().map(record).collect(),
        None => net
            .config
            .dns_entries
            .iter()
            .map(|d| record((d.hostname.clone(), d.ip)))
            .collect(),
    };
    let mut hosts: Vec<DnsRecord> = static_hosts(&net.config).into_iter().map(record).collect();
    let now = SystemTime::now();
    for lease in leases(net) {
        if let Some(hostname) = lease.hostname
            && lease.expires > now
            && !hosts
                .iter()
                .any(|h| h.hostname.eq_ignore_ascii_case(&hostname))
        {
            hosts.push(DnsRecord {
                hostname,
                ip: lease.ip,
            });
        }
    }
    NetworkDns {
        network: net.config.name.clone(),
        entries,
        hosts,
    }
}

fn network_counters(net: &NetworkRuntime) -> NetworkCounters {
    let c = &net.config;
    let pool_size = u64::from(u32::from(c.dhcp.range_end))
        .saturating_sub(u64::from(u32::from(c.dhcp.range_start)))
        + 1;
    NetworkCounters {
        network: c.name.clone(),
        interface: c.interface.clone(),
        datapath: match (net.ifindex, net.on_ebpf) {
            (None, _) => "none",
            (Some(_), true) => "ebpf",
            (Some(_), false) => "nft",
        }
        .to_owned(),
        dhcp: net.dhcp.as_ref().map(|dhcp| {
            let leases = u64::try_from(dhcp.leases().len()).unwrap_or(u64::MAX);
            DhcpStats::new(&dhcp.counters(), leases, pool_size)
        }),
        dns: net.dns.as_ref().map(|dns| dns.counters().into()),
        tftp: net.tftp.as_ref().map(|t| t.counters()),
    }
}

fn nat_mode_name(mode: NatMode) -> &'static str {
    match mode {
        NatMode::Masquerade => "masquerade",
        NatMode::OneToOne => "1to1",
        NatMode::Disabled => "disabled",
    }
}

/// `192.168.100.50 (mac 02:.., hostname x, public 10.0.0.5)`.
fn describe(entry: &AddressEntry) -> String {
    let mut parts = Vec::new();
    if let Some(mac) = entry.mac {
        parts.push(format!("mac {mac}"));
    }
    if let Some(hostname) = &entry.hostname {
        parts.push(format!("hostname {hostname}"));
    }
    if let Some(public) = entry.public_ip {
        parts.push(format!("public {public}"));
    }
    if parts.is_empty() {
        entry.ip.to_string()
    } else {
        format!("{} ({})", entry.ip, parts.join(", "))
    }
}

/// The network's boot options and TFTP server, when it has any.
fn boot_status(net: &NetworkRuntime) -> Option<BootStatus> {
    let c = &net.config;
    let as_json = |o: &crate::dhcp::DhcpOptions| serde_json::to_value(o).unwrap_or_default();
    let duts: Vec<DutBoot> = c
        .addresses
        .iter()
        .filter(|a| !a.dhcp_options.is_empty())
        .map(|a| DutBoot {
            ip: a.ip,
            mac: a.mac.map(|m| m.to_string()),
            dhcp_options: as_json(&a.dhcp_options),
        })
        .collect();
    if c.dhcp_options.is_empty() && duts.is_empty() && c.tftp_root.is_none() {
        return None;
    }
    Some(BootStatus {
        dhcp_options: as_json(&c.dhcp_options),
        duts,
        tftp_root: c.tftp_root.as_ref().map(|p| p.display().to_string()),
        tftp_running: net.tftp.is_some(),
        tftp: net.tftp.as_ref().map(|t| t.counters()),
    })
}
