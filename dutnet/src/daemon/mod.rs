//! The daemon: brings every network up, keeps it up, and puts the host back.
//!
//! `run` is what `dutnet load` does; `down` is what `dutnet down` does. Both
//! undo through the same journal replay, so a clean exit and the recovery
//! after a SIGKILL restore the very same things.
mod coexist;
mod control;
mod flows;
mod lock;
mod nat;
mod pressure;
mod select;
mod takeover;

use std::{net::SocketAddr, time::Duration};

use futures::StreamExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

pub use self::{
    coexist::CoexistError,
    lock::{Holder, LockError},
    select::{BREAK_EBPF_ENV, SelectError, check_config as check_datapaths},
    takeover::gateway_address,
};
use crate::{
    config::{LoadedConfig, NatMode, Network},
    control::server::{ControlError, ControlServer},
    datapath::{
        Datapath as _,
        ebpf::{EbpfDatapath, EbpfError},
        nft::{self, NftError},
        ports::{self, PortPlan, PortPlanError},
    },
    dhcp::{DhcpConfig, DhcpError, DhcpServer, StaticLease},
    dns::{DnsConfig, DnsError, DnsServer},
    host::{
        HostError,
        journal::{self, Journal, JournalError, Leftover, UndoStep},
        restore,
    },
    metrics::{MetricsError, MetricsServer},
    netlink::{Netlink, NetlinkError, link_events},
    state::{paths::Paths, private},
    tftp::{TftpConfig, TftpError, TftpServer},
};

/// How often every network is checked even without a netlink event.
const RECONCILE_TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Datapath(#[from] EbpfError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Coexist(#[from] CoexistError),
    #[error("cannot choose the NAT port range: {0}")]
    Ports(#[from] PortPlanError),
    #[error("network `{network}`: starting the DNS server failed: {source}")]
    Dns {
        network: String,
        #[source]
        source: DnsError,
    },
    #[error("network `{network}`: starting the TFTP server failed: {source}")]
    Tftp {
        network: String,
        #[source]
        source: TftpError,
    },
    #[error("network `{network}`: starting the DHCP server failed: {source}")]
    Dhcp {
        network: String,
        #[source]
        source: DhcpError,
    },
    #[error("signal handling: {0}")]
    Signals(std::io::Error),
    #[error("undo left problems: {}", join(.0))]
    Undo(Vec<HostError>),
    #[error("dutnet (pid {pid}) did not stop within {seconds} s after SIGTERM")]
    StopTimeout { pid: i32, seconds: u64 },
    #[error(
        "{path}: {source}; dutnet keeps its state there readable by root only, so run it as root or point {} elsewhere",
        crate::state::paths::STATE_DIR_ENV
    )]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The problems of an undo, one after the other.
fn join(problems: &[HostError]) -> String {
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// One network and what runs for it.
struct NetworkRuntime {
    config: Network,
    /// The DUT interface's index while it is taken over.
    ifindex: Option<u32>,
    /// The mark of what its DUT NIC hands the stack, when another network
    /// shares its subnet.
    reply_mark: Option<u32>,
    /// The eBPF programs carry it; otherwise the nft table alone does.
    on_ebpf: bool,
    dns: Option<DnsServer>,
    /// Runs when the network has a `tftp_root`.
    tftp: Option<TftpServer>,
    dhcp: Option<DhcpServer>,
    waiting_logged: bool,
}

struct Daemon {
    paths: Paths,
    netlink: Netlink,
    journal: Journal,
    datapath: Option<EbpfDatapath>,
    /// Source ports masquerade translates into (outside the host's own).
    ports: Option<PortPlan>,
    networks: Vec<NetworkRuntime>,
    /// Index of a network whose DHCP leases changed (DUT hostnames for DNS).
    lease_changes: tokio::sync::mpsc::UnboundedSender<usize>,
    /// The other tables' drop-policy forward chains opened for DUT traffic.
    coexistence: coexist::Coexistence,
    /// The last look for such chains failed (warned once, not every tick).
    coexistence_failing: bool,
    /// Networks whose flow budget is full, warned about once a minute.
    pressure: pressure::PressureWatch,
    /// When `dutnet load` started (uptime in `stats` and the metrics).
    started: std::time::Instant,
}

/// `dutnet load`: brings every network up and runs until SIGINT/SIGTERM, then
/// restores everything it changed.
/// How `dutnet load` was asked to run, beyond the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The group (gid) whose members may use the control socket besides
    /// root.
    pub socket_group: Option<u32>,
    /// Where the Prometheus endpoint listens (`None`: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

pub async fn run(
    config: LoadedConfig,
    paths: Paths,
    options: RunOptions,
) -> Result<(), DaemonError> {
    let _lock = lock::PidLock::acquire(&paths.pid_file())?;
    make_state_private(&paths)?;
    let netlink = Netlink::connect()?;
    undo_leftover(&paths, &netlink).await?;
    // Every signal whose default would end the daemon without restoring
    // the host is caught: TERM, INT and QUIT stop it and restore; HUP (the
    // SSH session that ran `dutnet load` closed) never ends it.
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut quit = signal(SignalKind::quit()).map_err(DaemonError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut events = link_events()?;
    // Before the first change to the host: a failure here has nothing to undo.
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel(8);
    // Scrapes ask the loop for `stats` through the control channel, like
    // `dutnet stats` does through the socket.
    let _metrics = match options.metrics_listen {
        Some(addr) => Some(MetricsServer::start(addr, control_tx.clone()).await?),
        None => None,
    };
    let _control = ControlServer::start(&paths.control_socket(), control_tx, options.socket_group)?;

    let journal = Journal::create(&paths.journal())?;
    let (lease_changes, mut lease_changed) = tokio::sync::mpsc::unbounded_channel();
    let mut daemon = Daemon {
        lease_changes,
        paths: paths.clone(),
        netlink,
        journal,
        datapath: None,
        ports: None,
        coexistence: coexist::Coexistence::default(),
        coexistence_failing: false,
        pressure: pressure::PressureWatch::default(),
        started: std::time::Instant::now(),
        networks: config
            .networks
            .into_iter()
            .map(|config| NetworkRuntime {
                config,
                ifindex: None,
                reply_mark: None,
                on_ebpf: false,
                dns: None,
                tftp: None,
                dhcp: None,
                waiting_logged: false,
            })
            .collect(),
    };
    daemon.restore_runtime_changes();
    let configs: Vec<&Network> = daemon.networks.iter().map(|n| &n.config).collect();
    let marks = nat::reply_marks(&configs);
    for (net, mark) in daemon.networks.iter_mut().zip(marks) {
        net.reply_mark = mark;
    }
    if let Err(e) = daemon.start().await {
        error!(error = %e, "bring-up failed; restoring the host");
        daemon.stop().await?;
        return Err(e);
    }
    info!(networks = daemon.networks.len(), "dutnet is up");

    let mut tick = tokio::time::interval(RECONCILE_TICK);
    let mut sweep = tokio::time::interval(nat::sweep_interval(
        daemon.networks.iter().map(|n| &n.config),
    ));
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = quit.recv() => break,
            _ = hangup.recv() => {
                warn!("SIGHUP: dutnet keeps running with the configuration it loaded (reloading a changed file is not supported yet: restart it with SIGTERM and `dutnet load` to apply one)");
            }
            _ = events.next() => {
                // A burst (unplug = several messages) is one reconcile.
                while let Ok(Some(())) = tokio::time::timeout(Duration::from_millis(20), events.next()).await {}
                daemon.reconcile_all().await;
            }
            _ = tick.tick() => {
                daemon.reconcile_all().await;
                daemon.revisit_foreign_chains();
            }
            _ = sweep.tick() => daemon.sweep_flows(),
            Some(index) = lease_changed.recv() => daemon.publish_lease_hostnames(index),
            Some(pending) = control_rx.recv() => daemon.serve_control(pending).await,
        }
    }
    info!("stopping: restoring the host");
    daemon.stop().await
}

/// Takes group and other access away from the state directory and what an
/// older dutnet left in it (lease files, journal, runtime changes).
fn make_state_private(paths: &Paths) -> Result<(), DaemonError> {
    let dir = &paths.state_dir;
    private::ensure_dir(dir)
        .and_then(|()| private::tighten_tree(dir))
        .map_err(|source| DaemonError::StateDir {
            path: dir.clone(),
            source,
        })
}

/// `dutnet down`: stops a running dutnet, or finishes the undo a killed one
/// left and removes its pid and socket files. Returns what it did, for the
/// user.
pub async fn down(paths: &Paths) -> Result<String, DaemonError> {
    // Held while undoing, so no `dutnet load` starts halfway; dropping it
    // removes the pid file. No pid file: no dutnet ran since the last
    // clean exit (or reboot), and none is made for nothing.
    let lock = if paths.pid_file().exists() {
        match lock::PidLock::acquire(&paths.pid_file()) {
            Ok(lock) => Some(lock),
            Err(LockError::Running { pid }) => return stop_running(paths, pid).await,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let netlink = Netlink::connect()?;
    let undone = undo_leftover(paths, &netlink).await;
    let socket = paths.control_socket();
    let stale_files = lock.is_some() || socket.exists();
    // Nobody listens: we hold the lock, or there was no pid file.
    if let Err(e) = std::fs::remove_file(&socket)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(socket = %socket.display(), error = %e, "removing the stale control socket failed");
    }
    drop(lock);
    let stale = if stale_files {
        "; removed the pid and socket files it left"
    } else {
        ""
    };
    match undone? {
        0 if !stale_files => {
            Ok("nothing to do: dutnet is not running and left nothing behind".to_owned())
        }
        0 => Ok(format!("nothing to undo{stale}")),
        n => Ok(format!(
            "undid {n} changes left by a dutnet that did not exit cleanly{stale}"
        )),
    }
}

/// Asks the running dutnet (`pid`) to stop and waits until it released the
/// lock: it restores the host itself.
async fn stop_running(paths: &Paths, pid: i32) -> Result<String, DaemonError> {
    // SAFETY: kill with the pid the running dutnet wrote under its lock.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    const LIMIT: u64 = 30;
    for _ in 0..LIMIT * 10 {
        if lock::holder(&paths.pid_file())? == Holder::Nobody {
            return Ok(format!("stopped dutnet (pid {pid}); it restored the host"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DaemonError::StopTimeout {
        pid,
        seconds: LIMIT,
    })
}

/// Replays a journal left by a dutnet that did not exit cleanly. Returns how
/// many steps it undid.
async fn undo_leftover(paths: &Paths, netlink: &Netlink) -> Result<usize, DaemonError> {
    let path = paths.journal();
    match journal::read_leftover(&path)? {
        Leftover::None => Ok(0),
        Leftover::OtherBoot => {
            info!(journal = %path.display(), "undo journal is from before the last reboot; discarding it");
            journal::remove(&path)?;
            Ok(0)
        }
        Leftover::Pending { pid, entries } => {
            warn!(
                pid,
                steps = entries.len(),
                "a dutnet run did not exit cleanly; undoing what it left"
            );
            let problems = restore::undo(&entries, netlink).await;
            journal::remove(&path)?;
            if problems.is_empty() {
                Ok(entries.len())
            } else {
                Err(DaemonError::Undo(problems))
            }
        }
    }
}

impl Daemon {
    /// Loads the datapath and takes every present interface over. Any failure
    /// but a missing interface aborts (the caller restores the host).
    async fn start(&mut self) -> Result<(), DaemonError> {
        let pin_dir = self.paths.pin_dir();
        self.journal
            .record("", UndoStep::PinDir { path: pin_dir })?;
        let ports = ports::plan_for_host()?;
        self.select_datapaths()?;
        self.install_fallback_rules(&ports).await?;
        self.ports = Some(ports);
        for index in 0..self.networks.len() {
            self.reconcile(index).await?;
        }
        Ok(())
    }

    /// Loads the eBPF programs unless every network runs on nft; `auto`
    /// networks fall back to nft when they cannot load (one warning).
    fn select_datapaths(&mut self) -> Result<(), DaemonError> {
        let flow_limits: Vec<_> = self
            .networks
            .iter()
            .filter(|n| n.config.datapath != crate::config::DatapathChoice::Nft)
            .map(|n| nat::flow_limits(&n.config))
            .collect();
        let configs: Vec<&Network> = self.networks.iter().map(|n| &n.config).collect();
        let paths = &self.paths;
        let selection = select::select(&configs, || {
            if select::ebpf_broken_for_test() {
                return Err(format!(
                    "{BREAK_EBPF_ENV}=1 is set (a test hook that fails the eBPF load); unset it"
                ));
            }
            EbpfDatapath::load(paths, &flow_limits).map_err(|e| e.to_string())
        })?;
        if let Some(reason) = &selection.fallback_reason {
            warn!(error = %reason, "the eBPF datapath cannot load, so every `datapath: auto` network runs on the nftables datapath (same behaviour, slower: every packet crosses netfilter); to fix, run dutnet as root on a kernel >= 5.10 with BTF (CONFIG_DEBUG_INFO_BTF=y), or set `datapath: nft` to choose it and silence this warning");
        }
        for (net, on_ebpf) in self.networks.iter_mut().zip(selection.on_ebpf) {
            net.on_ebpf = on_ebpf;
            info!(network = %net.config.name, datapath = if on_ebpf { "ebpf" } else { "nft" }, "datapath chosen");
        }
        self.datapath = selection.ebpf;
        Ok(())
    }

    /// Installs the nftables rules for what the fast path leaves to the
    /// kernel. They name interfaces, so they hold across re-plugs.
    async fn install_fallback_rules(&mut self, ports: &PortPlan) -> Result<(), DaemonError> {
        let mut networks = Vec::new();
        for net in &self.networks {
            // A configured upstream is used by name (it may appear later);
            // the default route's is resolved now.
            let upstream = match &net.config.upstream_interface {
                Some(name) if net.config.nat_mode != NatMode::Disabled => Some(name.clone()),
                _ => takeover::resolve_upstream(&net.config, &self.netlink)
                    .await?
                    .map(|link| link.name),
            };
            networks.push(nat::fallback_network(&net.config, upstream));
        }
        self.journal.record(
            "",
            UndoStep::NftTable {
                table: nft::TABLE.to_owned(),
            },
        )?;
        // Without any eBPF program, the kernel's masquerade owns every
        // translation: it keeps a DUT's source port when that is free, as
        // the fast path does. Beside the fast path it must stay in its own
        // slice, or the two would hand out the same port.
        let kernel_ports = self.datapath.is_some().then_some(&ports.fallback);
        nft::replace_table(&nft::ruleset(&networks, kernel_ports))?;
        info!(table = nft::TABLE, "fallback nftables rules installed");
        self.coexistence.open_all(networks, &mut self.journal)?;
        Ok(())
    }

    /// Opens drop-policy forward chains created (or recreated) since the
    /// start: Docker started or restarted after dutnet.
    fn revisit_foreign_chains(&mut self) {
        match self.coexistence.revisit(&mut self.journal) {
            Ok(_) => self.coexistence_failing = false,
            Err(e) if !self.coexistence_failing => {
                self.coexistence_failing = true;
                warn!(error = %e, "looking for new drop-policy forward chains failed; retrying every tick");
            }
            Err(e) => debug!(error = %e, "looking for new drop-policy forward chains failed again"),
        }
    }

    /// Rebuilds the nftables table after a runtime change of the networks
    /// (its 1:1 DNAT/SNAT rules follow the mappings).
    async fn refresh_fallback_rules(&mut self) {
        let Some(ports) = self.ports.clone() else {
            return;
        };
        if let Err(e) = self.install_fallback_rules(&ports).await {
            warn!(error = %e, "updating the nftables fallback rules failed");
        }
    }

    async fn reconcile_all(&mut self) {
        for index in 0..self.networks.len() {
            if let Err(e) = self.reconcile(index).await {
                error!(error = %e, "reconcile failed; retrying on the next event");
            }
        }
    }

    /// Brings network `index` to its desired state: after a re-plug the
    /// interface is new (new index), so everything bound to it is redone.
    async fn reconcile(&mut self, index: usize) -> Result<(), DaemonError> {
        let net = &mut self.networks[index];
        let Some(taken) = takeover::apply(&net.config, &self.netlink, &mut self.journal).await?
        else {
            if net.ifindex.take().is_some() {
                warn!(network = %net.config.name, interface = %net.config.interface, "DUT interface disappeared; waiting for it to come back");
                net.stop_servers().await;
                if let (Some(datapath), true) = (&mut self.datapath, net.on_ebpf) {
                    let _ = datapath.detach(&net.config.interface);
                }
            } else if !net.waiting_logged {
                warn!(network = %net.config.name, interface = %net.config.interface, "DUT interface does not exist yet; waiting for it");
            }
            net.waiting_logged = true;
            return Ok(());
        };
        net.waiting_logged = false;
        if net.ifindex == Some(taken.link.index) {
            return Ok(());
        }
        if net.ifindex.is_some() {
            info!(network = %net.config.name, interface = %net.config.interface, "DUT interface is back; configuring it again");
        }
        // Sockets bound to the old interface (SO_BINDTODEVICE) died with it.
        net.stop_servers().await;
        if let (Some(datapath), Some(ports), true) = (&mut self.datapath, &self.ports, net.on_ebpf)
        {
            if let Some(mark) = net.reply_mark {
                nat::route_replies(
                    &net.config,
                    mark,
                    taken.link.index,
                    &self.netlink,
                    &mut self.journal,
                )
                .await?;
            }
            let plan = nat::dut_network(
                &net.config,
                taken.upstream.as_ref(),
                &self.netlink,
                ports,
                net.reply_mark,
            )
            .await?;
            // The old interface's links vanished with it.
            let _ = datapath.detach(&net.config.interface);
            datapath.attach(&plan)?;
        }
        // On either datapath the exporter answers ARP for 1:1 public
        // addresses (on nft the `ip dutnet` table translates them).
        nat::add_public_aliases(
            &net.config,
            taken.upstream.as_ref(),
            &self.netlink,
            &mut self.journal,
        )
        .await?;
        net.dns = Some(
            DnsServer::start(dns_config(&net.config))
                .await
                .map_err(|source| DaemonError::Dns {
                    network: net.config.name.clone(),
                    source,
                })?,
        );
        if let Some(root) = &net.config.tftp_root {
            net.tftp = Some(
                TftpServer::start(TftpConfig::new(
                    &net.config.name,
                    &net.config.interface,
                    net.config.gateway_ip,
                    root.clone(),
                ))
                .await
                .map_err(|source| DaemonError::Tftp {
                    network: net.config.name.clone(),
                    source,
                })?,
            );
        }
        if net.config.dhcp.enabled {
            let dhcp = DhcpServer::start(dhcp_config(&net.config, &self.paths))
                .await
                .map_err(|source| DaemonError::Dhcp {
                    network: net.config.name.clone(),
                    source,
                })?;
            forward_lease_changes(&dhcp, index, self.lease_changes.clone());
            net.dhcp = Some(dhcp);
            self.publish_lease_hostnames(index);
        }
        let net = &mut self.networks[index];
        net.ifindex = Some(taken.link.index);
        info!(
            network = %net.config.name,
            interface = %net.config.interface,
            gateway = %gateway_address(&net.config),
            upstream = taken.upstream.as_ref().map_or("-", |u| u.name.as_str()),
            nat = ?net.config.nat_mode,
            datapath = if net.on_ebpf { "ebpf" } else { "nft" },
            "network up"
        );
        Ok(())
    }

    /// Removes idle NAT flows.
    fn sweep_flows(&mut self) {
        let Some(datapath) = &mut self.datapath else {
            return;
        };
        let networks = &self.networks;
        let timeouts = |iface: &str| {
            networks
                .iter()
                .find(|n| n.config.interface == iface)
                .map(|n| nat::timeouts(&n.config))
        };
        let report = match datapath.sweep(timeouts) {
            Ok(report) => report,
            Err(e) => {
                warn!(error = %e, "sweeping NAT flows failed; retrying on the next sweep");
                return;
            }
        };
        if report.expired > 0 {
            debug!(expired = report.expired, active = ?report.active, "NAT flows swept");
        }
        match datapath.stats() {
            Ok(stats) => {
                let names: Vec<_> = networks
                    .iter()
                    .map(|n| pressure::NetworkName {
                        name: &n.config.name,
                        iface: &n.config.interface,
                    })
                    .collect();
                self.pressure
                    .observe(&names, &stats, &report, std::time::Instant::now());
            }
            Err(e) => debug!(error = %e, "reading counters after a sweep"),
        }
    }

    /// Hands the hostnames DUTs sent in their DHCP requests to the DNS server.
    fn publish_lease_hostnames(&self, index: usize) {
        let net = &self.networks[index];
        if let (Some(dhcp), Some(dns)) = (&net.dhcp, &net.dns) {
            let hosts = dhcp
                .leases()
                .into_iter()
                .filter_map(|lease| lease.hostname.map(|name| (name, lease.ip)))
                .collect();
            dns.set_dynamic_hosts(hosts);
        }
    }

    /// Stops the servers and the datapath, then undoes the journal.
    async fn stop(mut self) -> Result<(), DaemonError> {
        for net in &mut self.networks {
            net.stop_servers().await;
        }
        if let Some(datapath) = self.datapath.take()
            && let Err(e) = datapath.shutdown()
        {
            warn!(error = %e, "datapath shutdown");
        }
        let problems = restore::undo(self.journal.entries(), &self.netlink).await;
        self.journal.finish()?;
        if problems.is_empty() {
            info!("host restored");
            Ok(())
        } else {
            Err(DaemonError::Undo(problems))
        }
    }
}

impl NetworkRuntime {
    /// Stops DHCP, TFTP and DNS (leases stay persisted).
    async fn stop_servers(&mut self) {
        if let Some(tftp) = self.tftp.take() {
            tftp.shutdown().await;
        }
        if let Some(dhcp) = self.dhcp.take() {
            dhcp.shutdown().await;
        }
        if let Some(dns) = self.dns.take() {
            dns.shutdown().await;
        }
    }
}

/// Turns a DHCP server's lease updates into "network `index` changed"
/// messages for the supervisor; ends when the server stops.
fn forward_lease_changes(
    dhcp: &DhcpServer,
    index: usize,
    changes: tokio::sync::mpsc::UnboundedSender<usize>,
) {
    let mut leases = dhcp.subscribe();
    tokio::spawn(async move {
        while leases.changed().await.is_ok() {
            if changes.send(index).is_err() {
                break;
            }
        }
    });
}

fn dhcp_config(net: &Network, paths: &Paths) -> DhcpConfig {
    DhcpConfig {
        network: net.name.clone(),
        interface: net.interface.clone(),
        subnet: net.subnet,
        server_ip: net.gateway_ip,
        range_start: net.dhcp.range_start,
        range_end: net.dhcp.range_end,
        lease_time: net.dhcp.lease_time,
        domain: net.domain.clone(),
        static_leases: net
            .addresses
            .iter()
            .filter_map(|a| {
                a.mac.map(|mac| StaticLease {
                    mac: mac.0,
                    ip: a.ip,
                    hostname: a.hostname.clone(),
                    options: a.dhcp_options.clone(),
                })
            })
            .collect(),
        // Entries without a MAC are 1:1 mappings only: never handed out.
        reserved: net
            .addresses
            .iter()
            .filter(|a| a.mac.is_none())
            .map(|a| a.ip)
            .collect(),
        lease_file: paths
            .network_dir(&net.name, net.state_dir.as_deref())
            .join("leases"),
        options: net.dhcp_options.clone(),
    }
}

fn dns_config(net: &Network) -> DnsConfig {
    DnsConfig {
        network: net.name.clone(),
        interface: net.interface.clone(),
        listen: net.gateway_ip,
        port: 53,
        upstreams: net
            .dns_servers
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect(),
        timeout: net.dns_timeout,
        domain: net.domain.clone(),
        entries: net
            .dns_entries
            .iter()
            .map(|e| (e.hostname.clone(), e.ip))
            .collect(),
        hosts: net
            .addresses
            .iter()
            .filter_map(|a| a.hostname.clone().map(|h| (h, a.ip)))
            .collect(),
    }
}
