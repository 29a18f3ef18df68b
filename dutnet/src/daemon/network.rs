//! One network, as an object of its own: its config (file plus runtime
//! changes), the DUT interface it took over with the upstream resolved
//! then, and its servers. `reconfigure` brings it to the desired state
//! after any event, `deconfigure` takes it down; runtime changes go through
//! the same context, so a re-plugged NIC comes back with them.
use std::{collections::HashMap, net::Ipv4Addr, time::UNIX_EPOCH};

use tracing::{info, warn};

use super::{
    DaemonError,
    exporter::{Exporter, TakenOver},
    nat,
    servers::{Servers, static_hosts, static_lease},
    takeover::gateway_address,
};
use crate::{
    config::{
        AddressEntry, DnsEntry, NatMode, Network,
        wire::{AddressWire, DnsEntryWire},
    },
    control::{
        Failure, Reply,
        protocol::{
            BootStatus, DnsRecord, DutBoot, InterfaceStatus, LeaseInfo, NetworkDns, NetworkStatus,
            StatusLease,
        },
    },
    datapath::{Datapath, PublicAddress, PublicChange},
    dhcp::{Lease, format_mac},
    state::{
        paths::Paths,
        runtime::{self, RuntimeChanges},
    },
};

/// Who a DUT is, as far as dutnet knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DutIdentity {
    pub mac: Option<String>,
    pub hostname: Option<String>,
}

/// A network and what runs for it.
pub struct NetworkContext {
    pub config: Network,
    /// The mark of what its DUT NIC hands the stack, when another network
    /// shares its subnet.
    pub reply_mark: Option<u32>,
    /// Its DUT interface while taken over, with the upstream found then.
    taken: Option<TakenOver>,
    pub servers: Servers,
    phase: Phase,
    /// The masquerade address the datapath was attached with.
    external: Option<Ipv4Addr>,
    /// Where "my leases changed" goes (DUT hostnames for DNS).
    lease_changes: tokio::sync::mpsc::UnboundedSender<String>,
}

/// Where a network stands, for `dutnet status` and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not tried yet.
    Starting,
    /// An interface it needs does not exist (yet): a USB NIC unplugged,
    /// an uplink being re-plugged. Link events bring it up.
    Waiting(Awaited),
    Up,
    /// The last attempt failed, saying why; every event and tick retries.
    Failed(String),
}

impl Phase {
    /// `up`, `waiting` or `failed` (`starting` before the first attempt).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Waiting(_) => "waiting",
            Self::Up => "up",
            Self::Failed(_) => "failed",
        }
    }
}

/// The interface a waiting network waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Awaited {
    DutInterface,
    Upstream(String),
    /// The uplink exists without an IPv4 address to masquerade behind.
    UpstreamAddress(String),
}

/// A runtime change applied: the reply, and whether a 1:1 mapping changed
/// (other tables' drop-policy chains then need the new accepts).
pub struct Applied {
    pub reply: Reply,
    pub public_changed: bool,
}

impl NetworkContext {
    pub fn new(
        config: Network,
        reply_mark: Option<u32>,
        lease_changes: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Self {
        Self {
            config,
            reply_mark,
            taken: None,
            servers: Servers::default(),
            phase: Phase::Starting,
            external: None,
            lease_changes,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The DUT interface's index while it is taken over.
    pub fn ifindex(&self) -> Option<u32> {
        self.taken.as_ref().map(|t| t.link.index)
    }

    /// Where the network stands.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Brings the network to its desired state: after a re-plug the
    /// interface is new (new index), so everything bound to it is redone;
    /// a vanished one is deconfigured until it comes back. A failure
    /// leaves the network down (`failed`, with why), logged once per new
    /// reason; the next call retries.
    pub async fn reconfigure(
        &mut self,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
        paths: &Paths,
    ) -> Result<(), DaemonError> {
        match self.try_reconfigure(exporter, datapath, paths).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(awaited) = e.awaited_upstream() {
                    if self.phase != Phase::Waiting(awaited.clone()) {
                        warn!(network = %self.config.name, error = %e, "waiting for the upstream interface (DHCP and DNS keep serving if they were)");
                    }
                    self.phase = Phase::Waiting(awaited);
                    return Err(e);
                }
                let reason = e.to_string();
                if self.phase != Phase::Failed(reason.clone()) {
                    tracing::error!(network = %self.config.name, error = %reason, "network failed to come up; retrying on every link event and every second");
                }
                self.phase = Phase::Failed(reason);
                Err(e)
            }
        }
    }

    async fn try_reconfigure(
        &mut self,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
        paths: &Paths,
    ) -> Result<(), DaemonError> {
        let Some(taken) = exporter.take_over(&self.config, self.ifindex()).await? else {
            if self.taken.is_some() {
                warn!(network = %self.config.name, interface = %self.config.interface, "DUT interface disappeared; waiting for it to come back");
                self.deconfigure(datapath).await;
            } else if self.phase != Phase::Waiting(Awaited::DutInterface) {
                warn!(network = %self.config.name, interface = %self.config.interface, "DUT interface does not exist yet; waiting for it");
            }
            self.phase = Phase::Waiting(Awaited::DutInterface);
            return Ok(());
        };
        if self.ifindex() == Some(taken.link.index)
            && (self.phase == Phase::Up || self.waits_for_upstream())
        {
            return self.follow_upstream(taken, exporter, datapath).await;
        }
        if self.taken.is_some() {
            info!(network = %self.config.name, interface = %self.config.interface, "DUT interface is back; configuring it again");
        }
        // Sockets bound to the old interface (SO_BINDTODEVICE) died with
        // it, and so did its links.
        self.deconfigure(datapath).await;
        if let Some(mark) = self.reply_mark {
            exporter
                .route_replies(&self.config, mark, taken.link.index)
                .await?;
        }
        self.external = self.attach(&taken, exporter, datapath).await?;
        self.servers = match exporter.start_servers(&self.config, paths).await {
            Ok(servers) => servers,
            Err(e) => {
                self.detach(datapath);
                return Err(e);
            }
        };
        if let Some(dhcp) = &self.servers.dhcp {
            forward_lease_changes(dhcp, &self.config.name, self.lease_changes.clone());
        }
        self.servers.publish_lease_hostnames();
        info!(
            network = %self.config.name,
            interface = %self.config.interface,
            gateway = %gateway_address(&self.config),
            upstream = taken.upstream.as_ref().map_or("-", |u| u.name.as_str()),
            nat = self.config.nat_mode.as_str(),
            datapath = %datapath.carrier(&self.config.interface),
            "network up"
        );
        self.taken = Some(taken);
        self.phase = Phase::Up;
        Ok(())
    }

    /// Attaches the datapath for `taken` and puts the public aliases on;
    /// returns the masquerade address used. A failure leaves it detached.
    async fn attach(
        &self,
        taken: &TakenOver,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
    ) -> Result<Option<Ipv4Addr>, DaemonError> {
        let external = match &taken.upstream {
            Some(upstream) => exporter.masquerade_address(upstream).await?,
            None => None,
        };
        // The VLAN sub-interfaces first: the fast path needs their index.
        let routes = match self.config.nat_mode {
            NatMode::OneToOne => {
                exporter
                    .policy_links(&self.config, taken.upstream.as_ref())
                    .await?
            }
            _ => Vec::new(),
        };
        let plan = nat::dut_network(
            &self.config,
            taken.upstream.as_ref(),
            external,
            datapath
                .nat_ports(&self.config.interface)
                .fast_path
                .unwrap_or(0..=0),
            self.reply_mark,
            &routes,
        )?;
        datapath
            .attach(&plan)
            .map_err(|source| DaemonError::Attach {
                network: self.config.name.clone(),
                source,
            })?;
        // On either datapath the exporter answers ARP for 1:1 public
        // addresses (on nft the `ip dutnet` table translates them).
        if let Err(e) = exporter
            .add_public_aliases(&self.config, taken.upstream.as_ref())
            .await
        {
            self.detach(datapath);
            return Err(e);
        }
        Ok(external)
    }

    /// The DUT NIC is unchanged: when the upstream was re-plugged (a new
    /// index) or got a new address, the datapath is attached again so
    /// masquerade follows it; the servers, leases and DUT NIC stay.
    async fn follow_upstream(
        &mut self,
        taken: TakenOver,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
    ) -> Result<(), DaemonError> {
        let Some(upstream) = &taken.upstream else {
            return Ok(());
        };
        let before = self.taken.as_ref().and_then(|t| t.upstream.as_ref());
        let external = exporter.masquerade_address(upstream).await?;
        let up = self.phase == Phase::Up;
        if up && before.map(|b| b.index) == Some(upstream.index) && external == self.external {
            return Ok(());
        }
        if up {
            info!(network = %self.config.name, upstream = %upstream.name, address = ?external, "the upstream changed; attaching the datapath again");
        }
        self.detach(datapath);
        let external = self.attach(&taken, exporter, datapath).await?;
        // An error above leaves the network detached and waiting; its DUTs
        // keep DHCP and DNS (their local names) while the uplink is away,
        // and the next event or tick attaches again.
        if !up {
            info!(network = %self.config.name, upstream = %upstream.name, address = ?external, "the upstream is back; the network is up again");
        }
        self.external = external;
        self.taken = Some(taken);
        self.phase = Phase::Up;
        Ok(())
    }

    /// Waiting for its uplink (gone, or without an address yet).
    fn waits_for_upstream(&self) -> bool {
        matches!(
            self.phase,
            Phase::Waiting(Awaited::Upstream(_) | Awaited::UpstreamAddress(_))
        )
    }

    /// Stops the servers and detaches the datapath (the host changes stay
    /// journaled until the daemon exits).
    pub async fn deconfigure(&mut self, datapath: &mut dyn Datapath) {
        self.servers.stop().await;
        self.detach(datapath);
        self.taken = None;
    }

    fn detach(&self, datapath: &mut dyn Datapath) {
        if datapath.carrier(&self.config.interface) != crate::datapath::Carrier::None
            && let Err(e) = datapath.detach(&self.config.interface)
        {
            warn!(network = %self.config.name, error = %e, "detaching the datapath");
        }
    }

    /// Adds an address entry at run time: checked with the file's rules,
    /// saved, then applied live; a failure changes nothing.
    pub async fn add_address(
        &mut self,
        wire: AddressWire,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
        paths: &Paths,
    ) -> Result<Applied, Failure> {
        let entry =
            AddressEntry::try_from(wire).map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
        if let Some(old) = self.config.addresses.iter().find(|a| a.ip == entry.ip) {
            // jumpstarter's add-address replaces the entry of that address.
            let old = old.clone();
            return self
                .replace_address(old, entry, exporter, datapath, paths)
                .await;
        }
        self.config
            .check_new_address(&entry)
            .map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
        self.add_checked(entry, exporter, datapath, paths).await
    }

    /// Replaces entry `old` by `new` (same address), all or nothing: `new`
    /// is checked against the other entries first, and `old` comes back if
    /// `new` cannot be applied.
    async fn replace_address(
        &mut self,
        old: AddressEntry,
        new: AddressEntry,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
        paths: &Paths,
    ) -> Result<Applied, Failure> {
        let name = self.config.name.clone();
        if old == new {
            return Ok(Applied {
                reply: Reply::Done {
                    message: format!("network `{name}` has {} already", describe(&new)),
                    network: name,
                },
                public_changed: false,
            });
        }
        let mut others = self.config.clone();
        others.addresses.retain(|a| a.ip != old.ip);
        others
            .check_new_address(&new)
            .map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
        let removed = self
            .remove_address(&old.ip.to_string(), exporter, datapath, paths)
            .await?;
        match self
            .add_checked(new.clone(), exporter, datapath, paths)
            .await
        {
            Ok(added) => {
                info!(network = %name, ip = %new.ip, "address entry replaced at run time");
                Ok(Applied {
                    reply: Reply::Done {
                        message: format!(
                            "replaced {} with {} in network `{name}`",
                            describe(&old),
                            describe(&new)
                        ),
                        network: name,
                    },
                    public_changed: removed.public_changed || added.public_changed,
                })
            }
            Err(failure) => {
                if let Err(e) = self
                    .add_checked(old.clone(), exporter, datapath, paths)
                    .await
                {
                    warn!(network = %name, ip = %old.ip, error = %e.message, "putting the replaced address entry back failed");
                }
                Err(failure)
            }
        }
    }

    /// Adds a checked entry: saved, then applied (undone if it cannot be).
    async fn add_checked(
        &mut self,
        entry: AddressEntry,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
        paths: &Paths,
    ) -> Result<Applied, Failure> {
        let previous = self.save_changes(paths, |c| c.add_address(&entry))?;
        self.config.addresses.push(entry.clone());
        if let Err(failure) = self.apply_address(&entry, exporter, datapath).await {
            self.config.addresses.retain(|a| a.ip != entry.ip);
            if let (Some(dhcp), Some(_)) = (&self.servers.dhcp, entry.mac) {
                let _ = dhcp.remove_static(entry.ip);
            }
            self.restore_changes(paths, &previous);
            return Err(failure);
        }
        self.servers.publish_static_hosts(&self.config);
        let name = self.config.name.clone();
        info!(network = %name, ip = %entry.ip, mac = ?entry.mac, hostname = ?entry.hostname, public_ip = ?entry.public_ip, "address added at run time");
        Ok(Applied {
            reply: Reply::Done {
                message: format!("added {} to network `{name}`", describe(&entry)),
                network: name,
            },
            public_changed: entry.public_ip.is_some(),
        })
    }

    /// Makes a new entry (already in the config) take effect.
    async fn apply_address(
        &mut self,
        entry: &AddressEntry,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
    ) -> Result<(), Failure> {
        match (&self.servers.dhcp, static_lease(entry)) {
            (Some(dhcp), Some(lease)) => dhcp
                .add_static(lease)
                .map_err(|e| Failure::invalid(e.to_string()))?,
            // No MAC: a 1:1-only entry, never leased to anybody.
            (Some(dhcp), None) => dhcp.set_reserved(entry.ip, true),
            (None, _) => {}
        }
        let Some(public) = entry.public_ip else {
            return Ok(());
        };
        if entry.vlan_id.is_some() && entry.public_gateway.is_none() {
            warn!(network = %self.config.name, ip = %entry.ip, vlan = ?entry.vlan_id, "vlan_id without public_gateway: the sub-interface gets the public address, but nothing is routed there");
        }
        let mut mapping = PublicAddress {
            vlan_id: entry.vlan_id,
            ..PublicAddress::new(entry.ip, public)
        };
        if let Some(taken) = &self.taken
            && (entry.vlan_id.is_some() || entry.public_gateway.is_some())
        {
            let routes = exporter
                .policy_links(&self.config, taken.upstream.as_ref())
                .await
                .map_err(|e| {
                    Failure::failed(format!("creating the VLAN sub-interface failed: {e}"))
                })?;
            mapping = nat::with_routes(vec![mapping], &routes)
                .pop()
                .unwrap_or(mapping);
        }
        datapath
            .set_public(&self.config.interface, PublicChange::Add(mapping))
            .map_err(|e| Failure::invalid(e.to_string()))?;
        // The alias makes the exporter answer ARP for the public address;
        // a missing interface gets it when it comes back.
        if let Some(taken) = &self.taken
            && let Err(e) = exporter
                .add_public_aliases(&self.config, taken.upstream.as_ref())
                .await
        {
            if let Err(undo) =
                datapath.set_public(&self.config.interface, PublicChange::Remove(mapping))
            {
                warn!(network = %self.config.name, error = %undo, "undoing a 1:1 mapping");
            }
            return Err(Failure::failed(format!(
                "adding the public address {public} failed: {e}"
            )));
        }
        Ok(())
    }

    /// Removes an address entry at run time (saved first).
    pub async fn remove_address(
        &mut self,
        ip: &str,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
        paths: &Paths,
    ) -> Result<Applied, Failure> {
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            Failure::invalid(format!(
                "`{ip}` is not an IPv4 address; write e.g. 192.168.100.50"
            ))
        })?;
        let Some(position) = self.config.addresses.iter().position(|a| a.ip == ip) else {
            return Err(Failure::not_found(format!(
                "network `{}` has no address entry {ip}; `dutnet status` counts them, `dutnet leases` lists the leases",
                self.config.name
            )));
        };
        self.save_changes(paths, |c| c.remove_address(ip))?;
        let entry = self.config.addresses.remove(position);
        let public_changed = self.unapply_address(&entry, exporter, datapath).await;
        self.servers.publish_static_hosts(&self.config);
        let name = self.config.name.clone();
        info!(network = %name, %ip, "address removed at run time");
        Ok(Applied {
            reply: Reply::Done {
                message: format!("removed {} from network `{name}`", describe(&entry)),
                network: name,
            },
            public_changed,
        })
    }

    /// Takes an entry (already out of the config) out of DHCP, the datapath
    /// and the public interface; true when a 1:1 mapping went.
    async fn unapply_address(
        &mut self,
        entry: &AddressEntry,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
    ) -> bool {
        match (&self.servers.dhcp, entry.mac) {
            // Not found: the server never had it (it was down); fine.
            (Some(dhcp), Some(_)) => drop(dhcp.remove_static(entry.ip)),
            (Some(dhcp), None) => dhcp.set_reserved(entry.ip, false),
            (None, _) => {}
        }
        let Some(public) = entry
            .public_ip
            .filter(|_| self.config.nat_mode == NatMode::OneToOne)
        else {
            return false;
        };
        let mapping = PublicAddress {
            vlan_id: entry.vlan_id,
            ..PublicAddress::new(entry.ip, public)
        };
        if entry.public_gateway.is_some() {
            exporter
                .remove_policy_rule(&self.config.name, entry.ip)
                .await;
        }
        if let Err(e) = datapath.set_public(&self.config.interface, PublicChange::Remove(mapping)) {
            warn!(network = %self.config.name, error = %e, "removing a 1:1 mapping failed");
        }
        // One that was there before dutnet stays.
        exporter
            .remove_public_alias(&self.config.name, public)
            .await;
        true
    }

    /// Takes a reloaded config of this network live when only its address
    /// entries, DNS entries or timeouts differ: its flows, leases and
    /// sockets stay. `Ok(false)`: something else changed, so the caller
    /// restarts the network. Entries that cannot be applied are returned.
    pub async fn apply_live(
        &mut self,
        new: Network,
        exporter: &mut impl Exporter,
        datapath: &mut dyn Datapath,
    ) -> Result<bool, Vec<String>> {
        let mut same_rest = new.clone();
        same_rest.addresses.clone_from(&self.config.addresses);
        same_rest.dns_entries.clone_from(&self.config.dns_entries);
        same_rest.nat_timeouts = self.config.nat_timeouts;
        same_rest.filter.clone_from(&self.config.filter);
        if same_rest != self.config {
            return Ok(false);
        }
        let mut problems = Vec::new();
        let plan = super::nat::filter_plan(&new);
        if plan != super::nat::filter_plan(&self.config) {
            // Atomic on either datapath; flows open now are kept.
            match datapath.set_filter(&self.config.interface, plan.as_ref()) {
                Ok(()) => self.config.filter.clone_from(&new.filter),
                Err(e) => problems.push(format!("filter: {e}; the previous filter stays")),
            }
        }
        let gone: Vec<AddressEntry> = self
            .config
            .addresses
            .iter()
            .filter(|a| !new.addresses.contains(a))
            .cloned()
            .collect();
        let fresh: Vec<AddressEntry> = new
            .addresses
            .iter()
            .filter(|a| !self.config.addresses.contains(a))
            .cloned()
            .collect();
        self.config.addresses.retain(|a| !gone.contains(a));
        for entry in &gone {
            self.unapply_address(entry, exporter, datapath).await;
        }
        for entry in fresh {
            self.config.addresses.push(entry.clone());
            if let Err(f) = self.apply_address(&entry, exporter, datapath).await {
                self.config.addresses.retain(|a| *a != entry);
                problems.push(format!("address {}: {}", entry.ip, f.message));
            }
        }
        if let Some(dns) = &self.servers.dns {
            for old in self
                .config
                .dns_entries
                .iter()
                .filter(|d| !new.dns_entries.contains(d))
            {
                let _ = dns.remove_entry(&old.hostname);
            }
            for entry in new
                .dns_entries
                .iter()
                .filter(|d| !self.config.dns_entries.contains(d))
            {
                if let Err(e) = dns.add_entry(&entry.hostname, entry.ip) {
                    problems.push(format!("DNS entry {}: {e}", entry.hostname));
                }
            }
        }
        self.config.dns_entries = new.dns_entries;
        self.config.nat_timeouts = new.nat_timeouts;
        self.servers.publish_static_hosts(&self.config);
        if problems.is_empty() {
            Ok(true)
        } else {
            Err(problems)
        }
    }

    /// Adds a DNS entry at run time (saved first).
    pub fn add_dns(
        &mut self,
        hostname: String,
        ip: String,
        paths: &Paths,
    ) -> Result<Reply, Failure> {
        let wire = DnsEntryWire {
            hostname: Some(hostname),
            ip: Some(ip),
        };
        let entry =
            DnsEntry::try_from(wire).map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
        let same_name = |d: &DnsEntry| {
            d.hostname
                .trim_end_matches('.')
                .eq_ignore_ascii_case(entry.hostname.trim_end_matches('.'))
        };
        if let Some(old) = self
            .config
            .dns_entries
            .iter()
            .find(|d| same_name(d))
            .cloned()
        {
            // jumpstarter's add-dns replaces the entry of that name.
            if old == entry {
                let name = self.config.name.clone();
                return Ok(Reply::Done {
                    message: format!(
                        "{} resolves to {} in network `{name}` already",
                        entry.hostname, entry.ip
                    ),
                    network: name,
                });
            }
            let mut others = self.config.clone();
            others.dns_entries.retain(|d| !same_name(d));
            others
                .check_new_dns_entry(&entry)
                .map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
            self.remove_dns(&old.hostname, paths)?;
            return match self.add_dns_checked(entry.clone(), paths) {
                Ok(Reply::Done { network, .. }) => Ok(Reply::Done {
                    message: format!(
                        "{} now resolves to {} in network `{network}` (was {})",
                        entry.hostname, entry.ip, old.ip
                    ),
                    network,
                }),
                Ok(other) => Ok(other),
                Err(failure) => {
                    let _ = self.add_dns_checked(old, paths);
                    Err(failure)
                }
            };
        }
        self.config
            .check_new_dns_entry(&entry)
            .map_err(|e| Failure::invalid(runtime::one_line(&e)))?;
        self.add_dns_checked(entry, paths)
    }

    /// Adds a checked DNS entry: saved, then served.
    fn add_dns_checked(&mut self, entry: DnsEntry, paths: &Paths) -> Result<Reply, Failure> {
        let previous = self.save_changes(paths, |c| c.add_dns(&entry))?;
        if let Some(dns) = &self.servers.dns
            && let Err(e) = dns.add_entry(&entry.hostname, entry.ip)
        {
            self.restore_changes(paths, &previous);
            return Err(Failure::invalid(e.to_string()));
        }
        self.config.dns_entries.push(entry.clone());
        let name = self.config.name.clone();
        info!(network = %name, hostname = %entry.hostname, ip = %entry.ip, "DNS entry added at run time");
        Ok(Reply::Done {
            message: format!(
                "{} now resolves to {} in network `{name}`",
                entry.hostname, entry.ip
            ),
            network: name,
        })
    }

    /// Removes a DNS entry at run time (saved first).
    pub fn remove_dns(&mut self, hostname: &str, paths: &Paths) -> Result<Reply, Failure> {
        let wanted = hostname.trim_end_matches('.');
        let Some(position) = self.config.dns_entries.iter().position(|d| {
            d.hostname
                .trim_end_matches('.')
                .eq_ignore_ascii_case(wanted)
        }) else {
            return Err(Failure::not_found(format!(
                "network `{}` has no DNS entry `{hostname}`; see `dutnet dns-entries`",
                self.config.name
            )));
        };
        let stored = self.config.dns_entries[position].hostname.clone();
        self.save_changes(paths, |c| c.remove_dns(&stored))?;
        self.config.dns_entries.remove(position);
        if let Some(dns) = &self.servers.dns
            && let Err(e) = dns.remove_entry(&stored)
        {
            warn!(network = %self.config.name, hostname = %stored, error = %e, "DNS server had no such entry");
        }
        let name = self.config.name.clone();
        info!(network = %name, hostname = %stored, "DNS entry removed at run time");
        Ok(Reply::Done {
            message: format!("removed the DNS entry {stored} from network `{name}`"),
            network: name,
        })
    }

    /// What `dutnet status` shows of this network.
    pub async fn status(
        &self,
        exporter: &impl Exporter,
        datapath: &dyn Datapath,
        active_flows: u64,
        nat_rules: &str,
    ) -> NetworkStatus {
        let c = &self.config;
        let upstream = match &self.taken {
            Some(taken) => taken.upstream.clone(),
            None => exporter.resolve_upstream(c).await,
        };
        NetworkStatus {
            name: c.name.clone(),
            interface: c.interface.clone(),
            interface_up: self.taken.is_some(),
            state: self.phase.name().to_owned(),
            problem: match &self.phase {
                Phase::Failed(reason) => Some(reason.clone()),
                Phase::Waiting(Awaited::DutInterface) => Some(format!(
                    "interface {} does not exist; dutnet takes it over when it appears",
                    c.interface
                )),
                Phase::Waiting(Awaited::Upstream(name)) => Some(format!(
                    "upstream_interface `{name}` does not exist; dutnet uses it when it appears"
                )),
                Phase::Waiting(Awaited::UpstreamAddress(name)) => Some(format!(
                    "the upstream interface `{name}` has no IPv4 address yet; dutnet masquerades behind it once it has one"
                )),
                Phase::Starting | Phase::Up => None,
            },
            gateway: gateway_address(c).to_string(),
            subnet: c.subnet.to_string(),
            upstream: upstream.map(|l| l.name),
            nat_mode: c.nat_mode.as_str().to_owned(),
            datapath: datapath.carrier(&c.interface).to_string(),
            dhcp_enabled: c.dhcp.enabled,
            dhcp_running: self.servers.dhcp.is_some(),
            dns_running: self.servers.dns.is_some(),
            interface_status: InterfaceStatus {
                name: c.interface.clone(),
                exists: self.taken.is_some(),
                addresses: if self.taken.is_some() {
                    vec![gateway_address(c).to_string()]
                } else {
                    Vec::new()
                },
            },
            leases: self
                .servers
                .leases()
                .iter()
                .map(|l| StatusLease {
                    mac: format_mac(&l.mac),
                    ip: l.ip.to_string(),
                    hostname: l.hostname.clone().unwrap_or_default(),
                    expiry: l
                        .expires
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                })
                .collect(),
            addresses: c.addresses.len(),
            dns_entries: c
                .dns_entries
                .iter()
                .map(|d| DnsRecord {
                    hostname: d.hostname.clone(),
                    ip: d.ip,
                })
                .collect(),
            nat_rules: nat_rules.to_owned(),
            flows: active_flows,
            boot: self.boot_status(),
        }
    }

    /// The leases, as the control socket shows them.
    pub fn lease_infos(&self) -> Vec<LeaseInfo> {
        self.servers
            .leases()
            .iter()
            .map(|l| self.lease_info(l))
            .collect()
    }

    /// The lease of `mac`, if it has one.
    pub fn lease_of(&self, mac: [u8; 6]) -> Option<LeaseInfo> {
        self.servers
            .leases()
            .iter()
            .find(|l| l.mac == mac)
            .map(|l| self.lease_info(l))
    }

    /// The MAC and host name of each DUT dutnet knows, by address: from its
    /// lease, else from its `addresses` entry.
    pub fn dut_identities(&self) -> HashMap<Ipv4Addr, DutIdentity> {
        let mut known: HashMap<Ipv4Addr, DutIdentity> = self
            .config
            .addresses
            .iter()
            .map(|a| {
                let identity = DutIdentity {
                    mac: a.mac.map(|m| m.to_string()),
                    hostname: a.hostname.clone(),
                };
                (a.ip, identity)
            })
            .collect();
        for lease in self.servers.leases() {
            let identity = DutIdentity {
                mac: Some(format_mac(&lease.mac)),
                hostname: lease.hostname,
            };
            known.insert(lease.ip, identity);
        }
        known
    }

    fn lease_info(&self, lease: &Lease) -> LeaseInfo {
        LeaseInfo {
            network: self.config.name.clone(),
            mac: format_mac(&lease.mac),
            ip: lease.ip,
            hostname: lease.hostname.clone(),
            expires: lease
                .expires
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            is_static: lease.is_static,
            last_ack: lease
                .acked
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            nat: None,
        }
    }

    /// The DNS entries and the DUT host names (static, then leased).
    pub fn dns_records(&self) -> NetworkDns {
        let record = |(hostname, ip): (String, Ipv4Addr)| DnsRecord { hostname, ip };
        let entries = match &self.servers.dns {
            Some(dns) => dns.entries().into_iter().map(record).collect(),
            None => self
                .config
                .dns_entries
                .iter()
                .map(|d| record((d.hostname.clone(), d.ip)))
                .collect(),
        };
        let mut hosts: Vec<DnsRecord> =
            static_hosts(&self.config).into_iter().map(record).collect();
        let now = std::time::SystemTime::now();
        for lease in self.servers.leases() {
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
            network: self.config.name.clone(),
            entries,
            hosts,
        }
    }

    /// The network's boot options and TFTP server, when it has any.
    fn boot_status(&self) -> Option<BootStatus> {
        let c = &self.config;
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
        let tftp = self.servers.tftp.as_ref();
        Some(BootStatus {
            dhcp_options: as_json(&c.dhcp_options),
            duts,
            tftp_root: c.tftp_root.as_ref().map(|p| p.display().to_string()),
            tftp_running: tftp.is_some(),
            tftp: tftp.map(|t| t.counters()),
        })
    }

    /// Saves `change` applied to the network's saved changes; returns the
    /// changes before it, to put back if applying fails.
    fn save_changes(
        &self,
        paths: &Paths,
        change: impl FnOnce(&mut RuntimeChanges),
    ) -> Result<RuntimeChanges, Failure> {
        let path = runtime::file(paths, &self.config.name);
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

    fn restore_changes(&self, paths: &Paths, previous: &RuntimeChanges) {
        let path = runtime::file(paths, &self.config.name);
        if let Err(e) = previous.save(&path) {
            warn!(error = %e, "restoring the saved runtime changes failed");
        }
    }
}

/// Turns a DHCP server's lease updates into "network `name` changed"
/// messages for the supervisor; ends when the server stops.
fn forward_lease_changes(
    dhcp: &crate::dhcp::DhcpServer,
    name: &str,
    changes: tokio::sync::mpsc::UnboundedSender<String>,
) {
    let mut leases = dhcp.subscribe();
    let name = name.to_owned();
    tokio::spawn(async move {
        while leases.changed().await.is_ok() {
            if changes.send(name.clone()).is_err() {
                break;
            }
        }
    });
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

/// Re-applies to `config` the runtime changes an earlier run saved (before
/// its network starts, and on a reload); returns those that no longer fit
/// the config (skipped).
pub fn apply_saved_changes(config: &mut Network, paths: &Paths) -> Vec<String> {
    let path = runtime::file(paths, &config.name);
    let changes = match RuntimeChanges::load(&path) {
        Ok(changes) => changes,
        Err(e) => {
            warn!(network = %config.name, error = %e, "ignoring saved runtime changes");
            return vec![format!("saved runtime changes ignored: {e}")];
        }
    };
    if changes == RuntimeChanges::default() {
        return Vec::new();
    }
    let skipped = changes.apply_to(config);
    for skipped in &skipped {
        warn!(network = %config.name, "{skipped}; not applied");
    }
    info!(network = %config.name, file = %path.display(), "saved runtime changes applied");
    skipped
}
