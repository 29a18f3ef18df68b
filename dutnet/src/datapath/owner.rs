//! The one owner of what carries DUT traffic: the loaded eBPF programs (if
//! any network runs on them), the nftables table (every network, on either
//! datapath) and the port plan that keeps their translations apart.
use std::{
    collections::{BTreeSet, HashSet},
    ops::RangeInclusive,
};

use tracing::warn;

use super::{
    Carrier, Datapath, DatapathError, DutNetwork, InterfaceStats, NatPorts, PublicChange,
    ebpf::{EbpfDatapath, FlowListing, SweepReport},
    expiry::FlowTimeouts,
    filter::FilterPlan,
    nft::{FallbackNetwork, NftTable},
    ports::PortPlan,
};

/// Each network on the backend chosen for it.
pub struct Datapaths {
    ebpf: Option<EbpfDatapath>,
    table: NftTable,
    ports: PortPlan,
    /// The DUT interfaces the fast path carries; the table alone carries
    /// the others.
    on_ebpf: HashSet<String>,
}

impl Datapaths {
    /// `networks`: every network's table view, and whether the fast path
    /// (`ebpf`, loaded when any network runs on it) carries it. Nothing is
    /// installed yet: see [`Self::install`].
    #[must_use]
    pub fn new(
        ebpf: Option<EbpfDatapath>,
        networks: Vec<(FallbackNetwork, bool)>,
        ports: PortPlan,
    ) -> Self {
        let on_ebpf = networks
            .iter()
            .filter(|(_, on_ebpf)| *on_ebpf && ebpf.is_some())
            .map(|(n, _)| n.dut_interface.clone())
            .collect();
        // Without any eBPF program, the kernel's masquerade owns every
        // translation: it keeps a DUT's source port when that is free, as
        // the fast path does. Beside the fast path it must stay in its own
        // slice, or the two would hand out the same port.
        let kernel_ports = ebpf.is_some().then(|| ports.fallback.clone());
        Self {
            table: NftTable::new(networks.into_iter().map(|(n, _)| n).collect(), kernel_ports),
            ebpf,
            ports,
            on_ebpf,
        }
    }

    /// Installs the nftables table (the caller journaled it first).
    pub fn install(&self) -> Result<(), DatapathError> {
        self.table.install()
    }

    /// Whether the fast path is loaded (a network added by a reload can
    /// only run on it if it is).
    #[must_use]
    pub fn has_fast_path(&self) -> bool {
        self.ebpf.is_some()
    }

    /// Adds a network at run time (a reload): its view goes into the table
    /// at once; it is carried once attached. `on_ebpf` needs the fast path
    /// loaded.
    pub fn add_network(
        &mut self,
        view: FallbackNetwork,
        on_ebpf: bool,
    ) -> Result<(), DatapathError> {
        let iface = view.dut_interface.clone();
        self.table.insert(view);
        if let Err(e) = self.table.install() {
            self.table.remove(&iface);
            return Err(e);
        }
        if on_ebpf && self.ebpf.is_some() {
            self.on_ebpf.insert(iface);
        }
        Ok(())
    }

    /// Removes a network at run time (a reload), detached already: its
    /// rules leave the table and its place in the connection table is free.
    pub fn remove_network(&mut self, iface: &str) -> Result<(), DatapathError> {
        if let Some(ebpf) = &mut self.ebpf {
            ebpf.forget(iface);
        }
        self.on_ebpf.remove(iface);
        self.table.remove(iface);
        self.table.install()
    }

    /// Every network's view in the table (for the drop-policy chains of
    /// other tables, which need the same accepts).
    #[must_use]
    pub fn table_networks(&self) -> Vec<FallbackNetwork> {
        self.table.networks().cloned().collect()
    }

    /// The source ports the fast path's masquerade translates into.
    #[must_use]
    pub fn masquerade_ports(&self) -> RangeInclusive<u16> {
        self.ports.fast_path.clone()
    }

    /// `ebpf` when the fast path is loaded, `nft` when the table is alone.
    #[must_use]
    pub fn name(&self) -> &'static str {
        if self.ebpf.is_some() { "ebpf" } else { "nft" }
    }

    /// The fast path, when it carries `iface`.
    fn fast_path(&mut self, iface: &str) -> Option<&mut EbpfDatapath> {
        self.ebpf.as_mut().filter(|_| self.on_ebpf.contains(iface))
    }
}

impl Datapath for Datapaths {
    fn attach(&mut self, network: &DutNetwork) -> Result<(), DatapathError> {
        match self.fast_path(&network.iface) {
            Some(ebpf) => ebpf.attach(network),
            None => self.table.attach(network),
        }
    }

    fn detach(&mut self, iface: &str) -> Result<(), DatapathError> {
        match self.fast_path(iface) {
            Some(ebpf) => ebpf.detach(iface),
            None => self.table.detach(iface),
        }
    }

    /// The fast path's maps (when it carries `iface` now), then the
    /// table's rules (always: they translate what the programs punt); a
    /// table that refuses undoes the maps' change.
    fn set_public(&mut self, iface: &str, change: PublicChange) -> Result<(), DatapathError> {
        let mapped = match self.fast_path(iface) {
            Some(ebpf) if ebpf.carrier(iface) != Carrier::None => {
                ebpf.set_public(iface, change)?;
                true
            }
            _ => false,
        };
        let result = self.table.set_public(iface, change);
        if result.is_err()
            && mapped
            && let Some(ebpf) = self.fast_path(iface)
        {
            let undo = match change {
                PublicChange::Add(p) => PublicChange::Remove(p),
                PublicChange::Remove(p) => PublicChange::Add(p),
            };
            if let Err(e) = ebpf.set_public(iface, undo) {
                warn!(%iface, error = %e, "undoing a 1:1 map change after the nftables table refused it");
            }
        }
        result
    }

    fn set_filter(
        &mut self,
        iface: &str,
        filter: Option<&FilterPlan>,
    ) -> Result<(), DatapathError> {
        // The table first: it judges what the fast path leaves to the
        // kernel, and refuses nothing the config accepted.
        self.table.set_filter(iface, filter)?;
        match self.fast_path(iface) {
            Some(ebpf) if ebpf.carrier(iface) != Carrier::None => ebpf.set_filter(iface, filter),
            _ => Ok(()),
        }
    }

    fn sweep(
        &mut self,
        timeouts: &dyn Fn(&str) -> Option<FlowTimeouts>,
    ) -> Result<SweepReport, DatapathError> {
        match &mut self.ebpf {
            Some(ebpf) => ebpf.sweep(timeouts),
            None => self.table.sweep(timeouts),
        }
    }

    fn carrier(&self, iface: &str) -> Carrier {
        match &self.ebpf {
            Some(ebpf) if self.on_ebpf.contains(iface) => ebpf.carrier(iface),
            _ => self.table.carrier(iface),
        }
    }

    fn planned(&self, iface: &str) -> Carrier {
        match &self.ebpf {
            Some(ebpf) if self.on_ebpf.contains(iface) => ebpf.planned(iface),
            _ => self.table.planned(iface),
        }
    }

    fn nat_ports(&self, iface: &str) -> NatPorts {
        NatPorts {
            fast_path: self
                .on_ebpf
                .contains(iface)
                .then(|| self.ports.fast_path.clone()),
            kernel: self.table.nat_ports(iface).kernel,
        }
    }

    fn stats(&self) -> Result<Vec<InterfaceStats>, DatapathError> {
        match &self.ebpf {
            Some(ebpf) => ebpf.stats(),
            None => self.table.stats(),
        }
    }

    fn flows(
        &self,
        dut_ifindexes: &BTreeSet<u32>,
        limit: usize,
    ) -> Result<FlowListing, DatapathError> {
        match &self.ebpf {
            Some(ebpf) => ebpf.flows(dut_ifindexes, limit),
            None => self.table.flows(dut_ifindexes, limit),
        }
    }

    /// Detaches the programs and drops the eBPF object (its pins go first).
    fn shutdown(&mut self) -> Result<(), DatapathError> {
        let ebpf = match self.ebpf.take() {
            Some(mut ebpf) => ebpf.shutdown(),
            None => Ok(()),
        };
        self.table.shutdown()?;
        ebpf
    }
}
