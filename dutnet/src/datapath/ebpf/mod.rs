//! The eBPF datapath: loads dutnet's TC programs (embedded in the binary),
//! attaches them to DUT interfaces and pins their maps under one bpffs
//! directory. The only module of dutnet that imports aya.
mod attach;
mod batch;
mod bpffs;
mod budgets;
mod counters;
mod error;
mod filter_maps;
mod flow_list;
pub mod log;
pub mod nat_maps;
mod transmitted;

use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::AsFd as _,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuHashMap,
    programs::{SchedClassifier, TcAttachType, tc::SchedClassifierLinkId},
};
use dutnet_common::{maps, nat::PrivateKey, programs, stats::IfaceCounters};
use tracing::{debug, info, warn};

pub use self::{
    attach::{TC_ATTACH_ENV, TcAttachMode, tcx_program_names},
    budgets::Capacity,
    counters::{pinned_since, read_pinned},
    error::EbpfError,
    flow_list::{Flow, FlowListing},
    nat_maps::SweepReport,
};
use super::{
    Carrier, Datapath, DatapathError, DutNetwork, FlowLimits, InterfaceStats, NatPlan, NatPorts,
    PublicAddress, PublicChange, expiry::FlowTimeouts, filter::FilterPlan, interface_index,
};
use crate::state::paths::Paths;

/// The eBPF object built from dutnet-ebpf by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dutnet"));

/// TC links dutnet made, by program name.
type Links = Vec<(&'static str, SchedClassifierLinkId)>;

/// The programs attached to one DUT interface.
struct Attachment {
    ifindex: u32,
    network: DutNetwork,
    /// Where its flow budget lives in the maps.
    budget: dutnet_common::nat::FlowBudget,
    links: Links,
    /// dutnet added the clsact qdisc (netlink mode), so it removes it too.
    added_clsact: bool,
    /// Its live filter's tables.
    filter: Option<filter_maps::Installed>,
}

/// `upstream_ingress` on one upstream interface, shared by every masqueraded
/// network that leaves through it.
struct UpstreamHook {
    ifindex: u32,
    link: SchedClassifierLinkId,
    added_clsact: bool,
    /// The DUT interfaces using it.
    users: BTreeSet<String>,
}

/// dutnet's loaded eBPF object and where its programs are attached.
pub struct EbpfDatapath {
    ebpf: Ebpf,
    paths: Paths,
    mode: TcAttachMode,
    attached: BTreeMap<String, Attachment>,
    upstreams: BTreeMap<String, UpstreamHook>,
    /// The two 1:1 maps, taken out of `ebpf` so both can be written at once.
    one_to_one_out: aya::maps::Map,
    one_to_one_in: aya::maps::Map,
    /// Each network's place in the budget maps.
    budgets: budgets::Budgets,
    /// Flows the sweeper removed, per network slot and per DUT: the
    /// `NET_SWEPT` and `DUT_SWEPT` values (only the sweeper writes them).
    swept: BTreeMap<u32, u64>,
    dut_swept: BTreeMap<PrivateKey, u64>,
    filter_cells: filter_maps::CellNumbers,
    /// Reads the programs' log records while held, when `DUTNET_EBPF_LOG`
    /// asks for them.
    _log_forwarder: Option<log::Forwarder>,
}

impl EbpfDatapath {
    /// Loads the programs into the kernel and pins the maps under
    /// `paths.pin_dir()`, mounting a bpffs first if there is none. The
    /// connection table is sized for `networks`, each with its own budget.
    /// With [`log::EBPF_LOG_ENV`] set, it must run on a tokio runtime, which
    /// then forwards the programs' log records.
    pub fn load(paths: &Paths, networks: &[FlowLimits]) -> Result<Self, EbpfError> {
        let log_level = log::level_from_env()?;
        let log_level_byte = log::level_byte(log_level);
        raise_memlock_limit();
        bpffs::ensure_mounted(&paths.bpffs).map_err(|source| EbpfError::Bpffs {
            path: paths.bpffs.clone(),
            source,
        })?;
        let pin_dir = paths.pin_dir();
        // Pins left by a dutnet that was killed would be reused by name with
        // their stale content: start from an empty directory.
        remove_pin_dir(paths)?;
        std::fs::create_dir_all(&pin_dir).map_err(|source| EbpfError::PinDir {
            path: pin_dir.clone(),
            source,
        })?;
        let capacity = Capacity::for_networks(networks);
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(&pin_dir)
            .map_max_entries(maps::NAT_FLOWS, capacity.table_entries())
            .map_max_entries(maps::FLOW_RING, capacity.ring.max(1));
        log::set_level(&mut loader, &log_level_byte);
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|source| EbpfError::Load { source })?;
        for name in [programs::DUT_INGRESS, programs::UPSTREAM_INGRESS] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| EbpfError::Program { name, source })?;
        }
        let mut take = |name| ebpf.take_map(name).ok_or(EbpfError::MissingMap { name });
        let one_to_one_out = take(maps::NAT_1TO1_OUT)?;
        let one_to_one_in = take(maps::NAT_1TO1_IN)?;
        let log = log_level.map(|_| log::forward(&mut ebpf)).transpose()?;
        let mode = TcAttachMode::detect();
        info!(pin_dir = %pin_dir.display(), ?mode, flows = capacity.flows, ebpf_log = %log::describe(log_level), "eBPF datapath loaded");
        Ok(Self {
            ebpf,
            paths: paths.clone(),
            mode,
            attached: BTreeMap::new(),
            upstreams: BTreeMap::new(),
            one_to_one_out,
            one_to_one_in,
            budgets: budgets::Budgets::new(capacity),
            swept: BTreeMap::new(),
            dut_swept: BTreeMap::new(),
            filter_cells: filter_maps::CellNumbers::default(),
            _log_forwarder: log,
        })
    }

    /// How programs are attached (TCX or a netlink clsact qdisc).
    #[must_use]
    pub fn attach_mode(&self) -> TcAttachMode {
        self.mode
    }

    /// The file descriptor of program `name`, for `BPF_PROG_TEST_RUN`.
    pub fn program_fd(&self, name: &'static str) -> Result<std::os::fd::BorrowedFd<'_>, EbpfError> {
        let program: &SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or(EbpfError::MissingProgram { name })?
            .try_into()
            .map_err(|source| EbpfError::Program { name, source })?;
        let fd = program
            .fd()
            .map_err(|source| EbpfError::Program { name, source })?;
        Ok(fd.as_fd())
    }

    /// Frees the connection-table place of `iface`, whose network is gone
    /// (a reload removed it); it must be detached already.
    pub fn forget(&mut self, iface: &str) {
        if !self.attached.contains_key(iface) {
            self.budgets.release(iface);
        }
    }

    /// Names of the interfaces the programs are attached to.
    pub fn attached_interfaces(&self) -> impl Iterator<Item = &str> {
        self.attached.keys().map(String::as_str)
    }

    /// Gives the programs the sweeper's new totals, so the flows it removed
    /// leave their DUT's and network's budgets.
    fn count_swept(&mut self, report: &SweepReport) -> Result<(), EbpfError> {
        let mut networks = BTreeMap::new();
        for (dut, removed) in &report.removed {
            let total = self.dut_swept.entry(*dut).or_default();
            *total += removed;
            let total = *total;
            // A full DUT_SWEPT (more DUTs than it holds) costs that DUT its
            // share's accuracy, never the network's count below.
            if let Err(e) = nat_maps::set_dut_swept(self.map_mut(maps::DUT_SWEPT)?, *dut, total) {
                debug!(error = %e, "a DUT's swept count not written");
            }
            *networks.entry(dut.dut_ifindex).or_insert(0) += removed;
        }
        for (ifindex, removed) in networks {
            let Some(slot) = self
                .attached
                .values()
                .find(|a| a.ifindex == ifindex)
                .map(|a| a.budget.slot)
            else {
                continue;
            };
            let total = self.swept.entry(slot).or_default();
            *total += removed;
            let total = *total;
            nat_maps::set_swept(self.map_mut(maps::NET_SWEPT)?, slot, total)?;
        }
        Ok(())
    }

    /// Two maps of the object at once.
    fn two_maps(
        &mut self,
        first: &'static str,
        second: &'static str,
    ) -> Result<(&mut aya::maps::Map, &mut aya::maps::Map), EbpfError> {
        let mut first_map = None;
        let mut second_map = None;
        for (name, map) in self.ebpf.maps_mut() {
            if name == first {
                first_map = Some(map);
            } else if name == second {
                second_map = Some(map);
            }
        }
        match (first_map, second_map) {
            (Some(a), Some(b)) => Ok((a, b)),
            (None, _) => Err(EbpfError::MissingMap { name: first }),
            (_, None) => Err(EbpfError::MissingMap { name: second }),
        }
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, EbpfError> {
        self.ebpf
            .map_mut(name)
            .ok_or(EbpfError::MissingMap { name })
    }

    fn stats_map(
        &mut self,
    ) -> Result<PerCpuHashMap<&mut aya::maps::MapData, u32, IfaceCounters>, EbpfError> {
        PerCpuHashMap::try_from(self.map_mut(maps::IFACE_STATS)?).map_err(|source| EbpfError::Map {
            name: maps::IFACE_STATS,
            source,
        })
    }

    /// Attaches `programs` (name, hook) to `iface`, all or none.
    fn attach_programs(
        &mut self,
        iface: &str,
        ifindex: u32,
        programs: &[(&'static str, TcAttachType)],
    ) -> Result<(Links, bool), EbpfError> {
        let mode = self.mode;
        let added_clsact = match mode {
            TcAttachMode::Netlink => attach::ensure_clsact(iface, ifindex)?,
            TcAttachMode::Tcx => false,
        };
        let mut links = Vec::new();
        for &(name, hook) in programs {
            let link = classifier(&mut self.ebpf, name)
                .and_then(|p| attach::attach(p, name, iface, hook, mode));
            match link {
                Ok(link) => links.push((name, link)),
                Err(e) => {
                    self.detach_links(iface, links);
                    undo_clsact(added_clsact, ifindex);
                    return Err(e);
                }
            }
        }
        Ok((links, added_clsact))
    }

    fn detach_links(&mut self, iface: &str, links: Links) {
        // An interface that vanished (USB NIC unplugged) took its links along:
        // detaching them then fails harmlessly.
        for (name, link) in links {
            match classifier(&mut self.ebpf, name) {
                Ok(program) => {
                    if let Err(e) = program.detach(link) {
                        debug!(%iface, program = name, error = %e, "detach: link already gone");
                    }
                }
                Err(e) => warn!(%iface, program = name, error = %e, "detach"),
            }
        }
    }

    /// Makes sure `upstream_ingress` runs on `upstream`, for DUT `iface`.
    fn use_upstream(&mut self, upstream: &str, iface: &str) -> Result<u32, EbpfError> {
        let ifindex = interface_index(upstream).map_err(|source| EbpfError::NoInterface {
            iface: upstream.to_owned(),
            source,
        })?;
        let mut users = BTreeSet::from([iface.to_owned()]);
        if let Some(hook) = self.upstreams.get_mut(upstream) {
            hook.users.insert(iface.to_owned());
            if hook.ifindex == ifindex {
                return Ok(ifindex);
            }
            // The upstream was re-plugged: its link went with the old
            // interface. Attach to the new one, for every user.
            if let Some(stale) = self.upstreams.remove(upstream) {
                info!(%upstream, old = stale.ifindex, new = ifindex, "upstream interface is new; attaching its program again");
                users = stale.users;
            }
        }
        let (mut links, added_clsact) = self.attach_programs(
            upstream,
            ifindex,
            &[(programs::UPSTREAM_INGRESS, TcAttachType::Ingress)],
        )?;
        let Some((_, link)) = links.pop() else {
            return Err(EbpfError::MissingProgram {
                name: programs::UPSTREAM_INGRESS,
            });
        };
        info!(%upstream, ifindex, "upstream program attached");
        self.upstreams.insert(
            upstream.to_owned(),
            UpstreamHook {
                ifindex,
                link,
                added_clsact,
                users,
            },
        );
        Ok(ifindex)
    }

    /// DUT `iface` no longer uses `upstream`; the last user detaches it.
    fn release_upstream(&mut self, upstream: &str, iface: &str) -> Result<(), EbpfError> {
        let Some(hook) = self.upstreams.get_mut(upstream) else {
            return Ok(());
        };
        hook.users.remove(iface);
        if !hook.users.is_empty() {
            return Ok(());
        }
        if let Some(hook) = self.upstreams.remove(upstream) {
            self.detach_links(upstream, vec![(programs::UPSTREAM_INGRESS, hook.link)]);
            if hook.added_clsact {
                attach::remove_clsact(hook.ifindex)?;
            }
            info!(%upstream, "upstream program detached");
        }
        Ok(())
    }

    /// Writes the maps the programs read for `network` on `ifindex`.
    fn configure(
        &mut self,
        network: &DutNetwork,
        ifindex: u32,
        budget: dutnet_common::nat::FlowBudget,
    ) -> Result<Option<filter_maps::Installed>, EbpfError> {
        // The counters entry exists before the programs run: they only
        // update. What the NIC sent before now is not the network's: its
        // transmit counters now are where `egress` starts from.
        let cpus =
            aya::util::nr_cpus().map_err(|(_, source)| EbpfError::PossibleCpus { source })?;
        let mut start = vec![IfaceCounters::default(); cpus];
        start[0].egress = transmitted::Asker::open()
            .transmitted(ifindex)
            .unwrap_or_default();
        let start = aya::maps::PerCpuValues::try_from(start).map_err(|e| EbpfError::Map {
            name: maps::IFACE_STATS,
            source: aya::maps::MapError::from(e),
        })?;
        self.stats_map()?
            .insert(ifindex, start, 0)
            .map_err(|source| EbpfError::Map {
                name: maps::IFACE_STATS,
                source,
            })?;
        let upstream_ifindex = match network.nat.upstream() {
            Some(upstream) => self.use_upstream(upstream, &network.iface)?,
            None => 0,
        };
        // The network's counts start from zero before its programs run.
        let (net_flows, net_swept) = self.two_maps(maps::NET_FLOWS, maps::NET_SWEPT)?;
        nat_maps::reset_counts(net_flows, net_swept, budget.slot)?;
        self.swept.remove(&budget.slot);
        let config = nat_maps::dut_config(network, upstream_ifindex, budget);
        nat_maps::set_dut_config(self.map_mut(maps::DUT_CONFIG)?, ifindex, config)?;
        if network.nat.upstream().is_some() {
            nat_maps::set_subnet(self.map_mut(maps::DUT_SUBNETS)?, network, ifindex)?;
            for public in network.nat.public() {
                self.check_public_is_free(public, &network.iface)?;
                nat_maps::set_mapping(
                    &mut self.one_to_one_out,
                    &mut self.one_to_one_in,
                    ifindex,
                    budget.slot,
                    *public,
                )?;
            }
        }
        // Before the programs run: no flow escapes the filter.
        let mut installed = None;
        self.replace_filter(budget.slot, network.filter.as_ref(), &mut installed)?;
        Ok(installed)
    }

    /// Makes `plan` the filter of the network in `slot` (see
    /// [`filter_maps::replace`]).
    fn replace_filter(
        &mut self,
        slot: u32,
        plan: Option<&FilterPlan>,
        current: &mut Option<filter_maps::Installed>,
    ) -> Result<(), EbpfError> {
        let [heads, cells, ports, hits] = self.ebpf.maps_disjoint_mut([
            maps::FILTER_HEADS,
            maps::FILTER_CELLS,
            maps::FILTER_PORTS,
            maps::FILTER_HITS,
        ]);
        let missing = |name| EbpfError::MissingMap { name };
        let tables = filter_maps::FilterMaps {
            heads: heads.ok_or_else(|| missing(maps::FILTER_HEADS))?,
            cells: cells.ok_or_else(|| missing(maps::FILTER_CELLS))?,
            ports: ports.ok_or_else(|| missing(maps::FILTER_PORTS))?,
            hits: hits.ok_or_else(|| missing(maps::FILTER_HITS))?,
        };
        filter_maps::replace(tables, &mut self.filter_cells, slot, plan, current)
    }

    /// A public address belongs to one DUT only.
    fn check_public_is_free(&self, public: &PublicAddress, iface: &str) -> Result<(), EbpfError> {
        let owner = self.attached.iter().find(|(other, a)| {
            other.as_str() != iface
                && a.network
                    .nat
                    .public()
                    .iter()
                    .any(|p| p.public == public.public)
        });
        match owner {
            Some((other, _)) => Err(EbpfError::PublicAddressTaken {
                public: public.public,
                iface: other.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Removes what [`Self::configure`] wrote, keeping the subnet guarded
    /// while another network with the same subnet is attached.
    fn unconfigure(
        &mut self,
        network: &DutNetwork,
        ifindex: u32,
        slot: u32,
        filter: Option<filter_maps::Installed>,
    ) -> Result<(), EbpfError> {
        nat_maps::remove_dut_config(self.map_mut(maps::DUT_CONFIG)?, ifindex)?;
        let mut filter = filter;
        self.replace_filter(slot, None, &mut filter)?;
        for public in network.nat.public() {
            nat_maps::remove_mapping(
                &mut self.one_to_one_out,
                &mut self.one_to_one_in,
                ifindex,
                *public,
            )?;
        }
        if let Some(upstream) = network.nat.upstream() {
            let twin = self
                .attached
                .values()
                .find(|a| {
                    a.ifindex != ifindex
                        && a.network.subnet == network.subnet
                        && a.network.nat.upstream().is_some()
                })
                .map(|a| a.ifindex);
            let subnets = self.map_mut(maps::DUT_SUBNETS)?;
            match twin {
                Some(other) => nat_maps::set_subnet(subnets, network, other)?,
                None => nat_maps::remove_subnet(subnets, network)?,
            }
            self.release_upstream(upstream, &network.iface)?;
        }
        if let Err(e) = self.stats_map()?.remove(&ifindex) {
            debug!(iface = %network.iface, error = %e, "counters entry already gone");
        }
        Ok(())
    }
}

impl Datapath for EbpfDatapath {
    fn attach(&mut self, network: &DutNetwork) -> Result<(), DatapathError> {
        Ok(self.attach_network(network)?)
    }

    fn detach(&mut self, iface: &str) -> Result<(), DatapathError> {
        Ok(self.detach_network(iface)?)
    }

    fn set_public(&mut self, iface: &str, change: PublicChange) -> Result<(), DatapathError> {
        Ok(self.change_public(iface, change)?)
    }

    fn set_filter(
        &mut self,
        iface: &str,
        filter: Option<&FilterPlan>,
    ) -> Result<(), DatapathError> {
        let attachment = self
            .attached
            .get_mut(iface)
            .ok_or_else(|| EbpfError::NotAttached {
                iface: iface.to_owned(),
            })?;
        let slot = attachment.budget.slot;
        let mut current = attachment.filter.take();
        let result = self.replace_filter(slot, filter, &mut current);
        if let Some(a) = self.attached.get_mut(iface) {
            a.filter = current;
            if result.is_ok() {
                a.network.filter = filter.cloned();
            }
        }
        Ok(result?)
    }

    fn sweep(
        &mut self,
        timeouts: &dyn Fn(&str) -> Option<FlowTimeouts>,
    ) -> Result<SweepReport, DatapathError> {
        Ok(self.sweep_idle(timeouts)?)
    }

    fn carrier(&self, iface: &str) -> Carrier {
        if self.attached.contains_key(iface) {
            Carrier::Ebpf(self.mode)
        } else {
            Carrier::None
        }
    }

    fn planned(&self, _iface: &str) -> Carrier {
        Carrier::Ebpf(self.mode)
    }

    fn nat_ports(&self, iface: &str) -> NatPorts {
        let fast_path = self.attached.get(iface).and_then(|a| match &a.network.nat {
            NatPlan::Disabled => None,
            NatPlan::Masquerade { ports, .. } | NatPlan::OneToOne { ports, .. } => {
                Some(ports.clone())
            }
        });
        NatPorts {
            fast_path,
            kernel: None,
        }
    }

    fn stats(&self) -> Result<Vec<InterfaceStats>, DatapathError> {
        let mut stats = counters::collect(&self.ebpf)?;
        let name = maps::FILTER_HITS;
        let hits = self.ebpf.map(name).ok_or(EbpfError::MissingMap { name })?;
        for s in &mut stats {
            let Some(a) = self.attached.values().find(|a| a.ifindex == s.ifindex) else {
                continue;
            };
            if let Some(installed) = &a.filter {
                s.filter = Some(filter_maps::hits(hits, a.budget.slot, installed)?);
            }
        }
        Ok(stats)
    }

    fn flows(
        &self,
        dut_ifindexes: &BTreeSet<u32>,
        limit: usize,
    ) -> Result<FlowListing, DatapathError> {
        Ok(self.list_flows(dut_ifindexes, limit)?)
    }

    /// Detaches from every interface and removes the pins (the object
    /// itself goes when the datapath is dropped).
    fn shutdown(&mut self) -> Result<(), DatapathError> {
        let ifaces: Vec<String> = self.attached.keys().cloned().collect();
        let mut first_error = None;
        for iface in ifaces {
            if let Err(e) = self.detach_network(&iface) {
                warn!(%iface, error = %e, "detach failed");
                first_error.get_or_insert(e);
            }
        }
        remove_pin_dir(&self.paths)?;
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }
}

impl EbpfDatapath {
    fn attach_network(&mut self, network: &DutNetwork) -> Result<(), EbpfError> {
        let iface = network.iface.as_str();
        if self.attached.contains_key(iface) {
            return Ok(());
        }
        let ifindex = interface_index(iface).map_err(|source| EbpfError::NoInterface {
            iface: iface.to_owned(),
            source,
        })?;
        if let NatPlan::Masquerade {
            upstream, external, ..
        }
        | NatPlan::OneToOne {
            upstream, external, ..
        } = &network.nat
            && external.is_unspecified()
        {
            return Err(EbpfError::NoMasqueradeAddress {
                upstream: upstream.clone(),
            });
        }
        let budget = self.budgets.place(iface, network.flows)?;
        let filter = match self.configure(network, ifindex, budget) {
            Ok(filter) => filter,
            Err(e) => {
                let _ = self.unconfigure(network, ifindex, budget.slot, None);
                return Err(e);
            }
        };
        // Ingress only: what the NIC sends the DUT is the kernel's transmit
        // counters (see `transmitted`).
        let hooks = [(programs::DUT_INGRESS, TcAttachType::Ingress)];
        match self.attach_programs(iface, ifindex, &hooks) {
            Ok((links, added_clsact)) => {
                info!(%iface, ifindex, mode = ?self.mode, "eBPF programs attached");
                self.attached.insert(
                    iface.to_owned(),
                    Attachment {
                        ifindex,
                        network: network.clone(),
                        budget,
                        links,
                        added_clsact,
                        filter,
                    },
                );
                Ok(())
            }
            Err(e) => {
                let _ = self.unconfigure(network, ifindex, budget.slot, filter);
                Err(e)
            }
        }
    }

    fn detach_network(&mut self, iface: &str) -> Result<(), EbpfError> {
        let Attachment {
            ifindex,
            network,
            budget,
            links,
            added_clsact,
            filter,
        } = self
            .attached
            .remove(iface)
            .ok_or_else(|| EbpfError::NotAttached {
                iface: iface.to_owned(),
            })?;
        self.detach_links(iface, links);
        // The qdisc of a NIC that vanished may fail to go; the maps must be
        // cleaned all the same, so that error is returned last.
        let clsact = if added_clsact {
            attach::remove_clsact(ifindex)
        } else {
            Ok(())
        };
        self.unconfigure(&network, ifindex, budget.slot, filter)?;
        // Its flows go with it, and its DUTs' counts.
        nat_maps::forget_interface(self.map_mut(maps::NAT_FLOWS)?, ifindex)?;
        let (dut_flows, dut_swept) = self.two_maps(maps::DUT_FLOWS, maps::DUT_SWEPT)?;
        nat_maps::forget_duts(dut_flows, dut_swept, ifindex)?;
        counters::forget_dut_traffic(self.map_mut(maps::DUT_TRAFFIC)?, ifindex)?;
        self.dut_swept.retain(|dut, _| dut.dut_ifindex != ifindex);
        info!(%iface, "eBPF programs detached");
        clsact
    }

    /// Removes idle flows (see [`nat_maps::sweep`]); `timeouts` gives each
    /// attached DUT interface's, by ifindex.
    fn sweep_idle(
        &mut self,
        timeouts: &dyn Fn(&str) -> Option<FlowTimeouts>,
    ) -> Result<SweepReport, EbpfError> {
        let by_ifindex: BTreeMap<u32, FlowTimeouts> = self
            .attached
            .iter()
            .filter_map(|(iface, a)| timeouts(iface).map(|t| (a.ifindex, t)))
            .collect();
        let now = nat_maps::monotonic_now_ns();
        let report = nat_maps::sweep(self.map_mut(maps::NAT_FLOWS)?, now, |ifindex| {
            by_ifindex.get(&ifindex).copied()
        })?;
        self.count_swept(&report)?;
        // A mapping lives as long as its flows (RFC 4787 REQ-1's "while the
        // mapping lives"): the next flow from an unused one starts afresh.
        let bindings = self.map_mut(maps::NAT_BINDINGS)?;
        nat_maps::forget_unused_bindings(bindings, &report.bindings, now)?;
        Ok(report)
    }

    /// The flows of DUT NICs `dut_ifindexes`: at most `limit` of them, and
    /// how many there are (see [`flow_list`]).
    fn list_flows(
        &self,
        dut_ifindexes: &BTreeSet<u32>,
        limit: usize,
    ) -> Result<FlowListing, EbpfError> {
        let name = maps::NAT_FLOWS;
        let map = self.ebpf.map(name).ok_or(EbpfError::MissingMap { name })?;
        flow_list::list(map, dut_ifindexes, limit, nat_maps::monotonic_now_ns())
    }

    /// Adds or removes one 1:1 mapping of attached DUT interface `iface`,
    /// at once (a runtime change). The programs of a 1:1 network
    /// masquerade the DUTs without a mapping, so the mode never changes.
    fn change_public(&mut self, iface: &str, change: PublicChange) -> Result<(), EbpfError> {
        if let PublicChange::Add(public) = change {
            self.check_public_is_free(&public, iface)?;
        }
        let attachment = self
            .attached
            .get_mut(iface)
            .ok_or_else(|| EbpfError::NotAttached {
                iface: iface.to_owned(),
            })?;
        let ifindex = attachment.ifindex;
        let slot = attachment.budget.slot;
        let Some(mappings) = attachment.network.nat.public_mut() else {
            return Err(EbpfError::NatDisabled {
                iface: iface.to_owned(),
            });
        };
        match change {
            PublicChange::Add(public) => {
                nat_maps::set_mapping(
                    &mut self.one_to_one_out,
                    &mut self.one_to_one_in,
                    ifindex,
                    slot,
                    public,
                )?;
                mappings.retain(|p| !p.same(&public));
                mappings.push(public);
            }
            PublicChange::Remove(public) => {
                mappings.retain(|p| !p.same(&public));
                nat_maps::remove_mapping(
                    &mut self.one_to_one_out,
                    &mut self.one_to_one_in,
                    ifindex,
                    public,
                )?;
            }
        }
        Ok(())
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, EbpfError> {
    ebpf.program_mut(name)
        .ok_or(EbpfError::MissingProgram { name })?
        .try_into()
        .map_err(|source| EbpfError::Program { name, source })
}

fn undo_clsact(added: bool, ifindex: u32) {
    if added && let Err(e) = attach::remove_clsact(ifindex) {
        warn!(ifindex, error = %e, "could not remove the clsact qdisc dutnet added");
    }
}

/// Removes dutnet's pin directory and every pin in it.
pub fn remove_pin_dir(paths: &Paths) -> Result<(), EbpfError> {
    let dir = paths.pin_dir();
    crate::state::paths::remove_pin_dir(&dir)
        .map(drop)
        .map_err(|source| EbpfError::PinDir { path: dir, source })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!(error = %std::io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK");
    }
}
