//! The supervisor: brings every network up, then one `select!` loop routes
//! signals, link events, ticks, lease changes and control requests to the
//! network they concern, until a stop signal restores the host.
use std::time::Duration;

use futures::StreamExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

use super::{
    BREAK_EBPF_ENV, DaemonError, RunOptions, coexist,
    exporter::SystemExporter,
    lock, make_state_private, nat,
    network::{self, NetworkContext},
    notify, pressure, restore, takeover, undo_leftover,
};
use crate::{
    config::{LoadedConfig, NatMode, Network},
    control::server::ControlServer,
    datapath::{
        Datapath as _, Datapaths,
        ebpf::EbpfDatapath,
        nft::{self, FallbackNetwork},
        ports, select,
    },
    host::journal::{Journal, UndoStep},
    metrics::MetricsServer,
    netlink::{Netlink, link_events},
    state::paths::Paths,
};

/// How often every network is checked even without a netlink event.
const RECONCILE_TICK: Duration = Duration::from_secs(1);

/// The running daemon: the host, the datapath and every network.
pub(super) struct Daemon {
    pub(super) paths: Paths,
    pub(super) exporter: SystemExporter,
    pub(super) datapath: Datapaths,
    pub(super) networks: Vec<NetworkContext>,
    /// The other tables' drop-policy forward chains opened for DUT traffic.
    coexistence: coexist::Coexistence,
    /// The last look for such chains failed (warned once, not every tick).
    coexistence_failing: bool,
    /// Networks whose flow budget is full, warned about once a minute.
    pressure: pressure::PressureWatch,
    /// When `dutnet load` started (uptime in `stats` and the metrics).
    pub(super) started: std::time::Instant,
    /// What `dutnet reload` reads.
    pub(super) reload_from: Option<super::ReloadSource>,
    /// Given to networks added by a reload.
    pub(super) lease_changes: tokio::sync::mpsc::UnboundedSender<String>,
    /// systemd's notify socket (readiness, reload, watchdog, status).
    notifier: notify::Notifier,
    /// The last `STATUS=` sent.
    status_line: String,
    /// Per DUT, as of the last sweep: flows in the table and when it last
    /// sent through NAT (`bpf_ktime_get_ns()`), for `dutnet leases`.
    pub(super) nat_activity: std::collections::BTreeMap<dutnet_common::nat::PrivateKey, (u64, u64)>,
}

/// `dutnet load`: brings every network up and runs until SIGINT/SIGTERM,
/// then restores everything it changed.
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

    let (lease_changes, mut lease_changed) = tokio::sync::mpsc::unbounded_channel();
    let mut networks: Vec<NetworkContext> = config
        .networks
        .into_iter()
        .map(|mut config| {
            network::apply_saved_changes(&mut config, &paths);
            NetworkContext::new(config, None, lease_changes.clone())
        })
        .collect();
    let configs: Vec<&Network> = networks.iter().map(|n| &n.config).collect();
    let marks = nat::reply_marks(&configs);
    for (net, mark) in networks.iter_mut().zip(marks) {
        net.reply_mark = mark;
    }
    let mut exporter = SystemExporter {
        netlink,
        journal: Journal::create(&paths.journal())?,
    };
    let (datapath, coexistence) = match start_datapaths(&networks, &paths, &mut exporter).await {
        Ok(started) => started,
        Err(e) => {
            error!(error = %e, "bring-up failed; restoring the host");
            undo_journal(exporter).await?;
            return Err(e);
        }
    };
    let mut daemon = Daemon {
        paths,
        exporter,
        datapath,
        networks,
        coexistence,
        coexistence_failing: false,
        pressure: pressure::PressureWatch::default(),
        started: std::time::Instant::now(),
        reload_from: options.reload_from,
        lease_changes,
        notifier: notify::Notifier::from_env(),
        status_line: String::new(),
        nat_activity: std::collections::BTreeMap::new(),
    };
    daemon.bring_up().await;
    let status = daemon.status_line();
    daemon.notifier.send(&format!("READY=1\nSTATUS={status}"));
    daemon.status_line = status;

    let mut tick = tokio::time::interval(RECONCILE_TICK);
    let mut sweep = daemon.sweep_timer();
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = quit.recv() => break,
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the configuration");
                daemon.notifier.send("RELOADING=1");
                match daemon.reload().await {
                    Ok(_) => {}
                    Err(failure) => warn!(error = %failure.message, "reload refused"),
                }
                daemon.notifier.send("READY=1");
                sweep = daemon.sweep_timer();
            }
            _ = events.next() => {
                // A burst (unplug = several messages) is one reconcile.
                while let Ok(Some(())) = tokio::time::timeout(Duration::from_millis(20), events.next()).await {}
                daemon.reconcile_all().await;
            }
            _ = tick.tick() => {
                daemon.reconcile_all().await;
                daemon.revisit_foreign_chains();
                daemon.notifier.watchdog(std::time::Instant::now());
                daemon.report_status();
            }
            _ = sweep.tick() => daemon.sweep_flows(),
            Some(name) = lease_changed.recv() => daemon.publish_lease_hostnames(&name),
            Some(pending) = control_rx.recv() => {
                let reload = matches!(pending.0, crate::control::Request::Reload);
                if reload {
                    daemon.notifier.send("RELOADING=1");
                }
                daemon.serve_control(pending).await;
                if reload {
                    daemon.notifier.send("READY=1");
                    sweep = daemon.sweep_timer();
                }
            }
        }
    }
    info!("stopping: restoring the host");
    daemon
        .notifier
        .send("STOPPING=1\nSTATUS=restoring the host");
    daemon.stop().await
}

/// Chooses each network's datapath, loads the eBPF programs unless every
/// network runs on nft, installs the nftables table and opens other
/// tables' drop-policy chains; every host change journaled first.
async fn start_datapaths(
    networks: &[NetworkContext],
    paths: &Paths,
    exporter: &mut SystemExporter,
) -> Result<(Datapaths, coexist::Coexistence), DaemonError> {
    exporter.journal.record(
        "",
        UndoStep::PinDir {
            path: paths.pin_dir(),
        },
    )?;
    let ports = ports::plan_for_host()?;
    let configs: Vec<&Network> = networks.iter().map(|n| &n.config).collect();
    let flow_limits: Vec<_> = configs
        .iter()
        .filter(|n| select::wants_ebpf(n))
        .map(|n| nat::flow_limits(n))
        .collect();
    // The verifier keeps one core busy for a few hundred milliseconds: the
    // programs load on a thread of their own while the DUT interfaces are
    // taken over (nothing forwards before the datapath exists).
    let loading = configs.iter().any(|n| select::wants_ebpf(n)).then(|| {
        let paths = paths.clone();
        tokio::task::spawn_blocking(move || {
            if select::ebpf_broken_for_test() {
                return Err(format!(
                    "{BREAK_EBPF_ENV}=1 is set (a test hook that fails the eBPF load); unset it"
                ));
            }
            EbpfDatapath::load(&paths, &flow_limits).map_err(|e| e.to_string())
        })
    });
    for net in &configs {
        // A failure here is reported by the network's own bring-up.
        if let Err(e) = takeover::prepare(net, None, &exporter.netlink, &mut exporter.journal).await
        {
            debug!(network = %net.name, error = %e, "taking the DUT interface over early failed");
        }
    }
    let loaded = match loading {
        Some(handle) => handle
            .await
            .unwrap_or_else(|e| Err(format!("the eBPF load thread ended: {e}"))),
        // Never asked for: `select` loads only for a network that wants it.
        None => Err("no network asked for the eBPF datapath".to_owned()),
    };
    // `auto` networks fall back to nft when the programs cannot load (one
    // warning).
    let selection = select::select(&configs, move || loaded)?;
    if let Some(reason) = &selection.fallback_reason {
        warn!(error = %reason, "the eBPF datapath cannot load, so every `datapath: auto` network runs on the nftables datapath (same behaviour, slower: every packet crosses netfilter); to fix, run dutnet as root on a kernel >= 5.10 with BTF (CONFIG_DEBUG_INFO_BTF=y), or set `datapath: nft` to choose it and silence this warning");
    }
    let mut views = Vec::new();
    for (net, on_ebpf) in configs.iter().zip(&selection.on_ebpf) {
        info!(network = %net.name, datapath = if *on_ebpf { "ebpf" } else { "nft" }, "datapath chosen");
        views.push((fallback_view(net, &exporter.netlink).await?, *on_ebpf));
    }
    exporter.journal.record(
        "",
        UndoStep::NftTable {
            table: nft::TABLE.to_owned(),
        },
    )?;
    let datapath = Datapaths::new(selection.ebpf, views, ports);
    datapath.install()?;
    info!(table = nft::TABLE, "fallback nftables rules installed");
    let mut coexistence = coexist::Coexistence::default();
    coexistence.open_all(datapath.table_networks(), &mut exporter.journal)?;
    Ok((datapath, coexistence))
}

/// `network` as the nftables table holds it. Its rules name interfaces, so
/// they hold across re-plugs: a configured upstream is used by name (it may
/// appear later); the default route's is resolved now.
pub(super) async fn fallback_view(
    network: &Network,
    netlink: &Netlink,
) -> Result<FallbackNetwork, DaemonError> {
    let upstream = match &network.upstream_interface {
        Some(name) if network.nat_mode != NatMode::Disabled => Some(name.clone()),
        _ => takeover::resolve_upstream(network, netlink)
            .await?
            .map(|link| link.name),
    };
    Ok(nat::fallback_network(network, upstream))
}

/// Undoes what the journal holds (a bring-up that failed before the daemon
/// existed).
async fn undo_journal(exporter: SystemExporter) -> Result<(), DaemonError> {
    let SystemExporter { netlink, journal } = exporter;
    let problems = restore::undo(journal.entries(), &netlink).await;
    journal.finish()?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DaemonError::Undo(problems))
    }
}

impl Daemon {
    /// Takes every present interface over. A network that fails stays
    /// down (`failed` in `dutnet status`, retried on every event) and the
    /// others come up; a missing interface is waited for.
    async fn bring_up(&mut self) {
        self.reconcile_all().await;
        let [up, waiting, failed] = self.phase_counts();
        info!(
            networks = self.networks.len(),
            up, waiting, failed, "dutnet is up"
        );
    }

    /// How many networks are up, waiting and failed.
    fn phase_counts(&self) -> [usize; 3] {
        ["up", "waiting", "failed"].map(|phase| {
            self.networks
                .iter()
                .filter(|n| n.phase().name() == phase)
                .count()
        })
    }

    /// The flow sweeper's timer for the networks' current timeouts (made
    /// again after a reload).
    fn sweep_timer(&self) -> tokio::time::Interval {
        tokio::time::interval(nat::sweep_interval(self.networks.iter().map(|n| &n.config)))
    }

    /// `3 networks: 2 up, 1 waiting, 0 failed`, for systemd's STATUS=.
    fn status_line(&self) -> String {
        let [up, waiting, failed] = self.phase_counts();
        format!(
            "{} networks: {up} up, {waiting} waiting, {failed} failed",
            self.networks.len()
        )
    }

    /// Sends systemd the counts when they changed.
    fn report_status(&mut self) {
        let status = self.status_line();
        if status != self.status_line {
            self.notifier.send(&format!("STATUS={status}"));
            self.status_line = status;
        }
    }

    /// Brings every network to its desired state; each logs its own
    /// failures (once per reason).
    async fn reconcile_all(&mut self) {
        for net in &mut self.networks {
            let _ = net
                .reconfigure(&mut self.exporter, &mut self.datapath, &self.paths)
                .await;
        }
    }

    /// Opens drop-policy forward chains created (or recreated) since the
    /// start: Docker started or restarted after dutnet.
    fn revisit_foreign_chains(&mut self) {
        match self.coexistence.revisit(&mut self.exporter.journal) {
            Ok(_) => self.coexistence_failing = false,
            Err(e) if !self.coexistence_failing => {
                self.coexistence_failing = true;
                warn!(error = %e, "looking for new drop-policy forward chains failed; retrying every tick");
            }
            Err(e) => debug!(error = %e, "looking for new drop-policy forward chains failed again"),
        }
    }

    /// After a runtime 1:1 change: the drop-policy chains get the new
    /// accepts (`ct status dnat` for a network's first mapping).
    pub(super) fn reopen_foreign_chains(&mut self) {
        if let Err(e) = self
            .coexistence
            .open_all(self.datapath.table_networks(), &mut self.exporter.journal)
        {
            warn!(error = %e, "updating the accept rules in drop-policy forward chains failed");
        }
    }

    /// Removes idle NAT flows.
    fn sweep_flows(&mut self) {
        let networks = &self.networks;
        let timeouts = |iface: &str| {
            networks
                .iter()
                .find(|n| n.config.interface == iface)
                .map(|n| nat::timeouts(&n.config))
        };
        let report = match self.datapath.sweep(&timeouts) {
            Ok(report) => report,
            Err(e) => {
                warn!(error = %e, "sweeping NAT flows failed; retrying on the next sweep");
                return;
            }
        };
        if report.expired > 0 {
            debug!(expired = report.expired, active = ?report.active, "NAT flows swept");
        }
        self.nat_activity = report
            .held
            .iter()
            .map(|(dut, flows)| {
                let sent = report.last_sent_ns.get(dut).copied().unwrap_or(0);
                (*dut, (*flows, sent))
            })
            .collect();
        match self.datapath.stats() {
            Ok(stats) if !stats.is_empty() => {
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
            Ok(_) => {}
            Err(e) => debug!(error = %e, "reading counters after a sweep"),
        }
    }

    /// Hands the hostnames DUTs sent in their DHCP requests to the DNS
    /// server of network `name`.
    fn publish_lease_hostnames(&self, name: &str) {
        if let Some(net) = self.networks.iter().find(|n| n.name() == name) {
            net.servers.publish_lease_hostnames();
        }
    }

    /// Stops the servers and the datapath, then undoes the journal.
    async fn stop(mut self) -> Result<(), DaemonError> {
        for net in &mut self.networks {
            net.servers.stop().await;
        }
        if let Err(e) = self.datapath.shutdown() {
            warn!(error = %e, "datapath shutdown");
        }
        let result = undo_journal(self.exporter).await;
        if result.is_ok() {
            info!("host restored");
        }
        result
    }
}
