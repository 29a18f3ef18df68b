//! The eBPF datapath: loads dutnet's TC programs (embedded in the binary),
//! attaches them to DUT interfaces and pins their maps under one bpffs
//! directory. The only module of dutnet that imports aya.
mod attach;
mod bpffs;
mod counters;
mod error;

use std::{collections::BTreeMap, os::fd::AsFd as _};

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuHashMap,
    programs::{SchedClassifier, TcAttachType, tc::SchedClassifierLinkId},
};
use dutnet_common::{maps::IFACE_STATS, programs, stats::IfaceCounters};
use tracing::{debug, info, warn};

pub use self::{
    attach::{TC_ATTACH_ENV, TcAttachMode, tcx_program_names},
    counters::read_pinned,
    error::EbpfError,
};
use super::{Datapath, InterfaceStats, interface_index};
use crate::state::paths::Paths;

/// The eBPF object built from dutnet-ebpf by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dutnet"));

/// The programs attached to one DUT interface.
struct Attachment {
    ifindex: u32,
    ingress: SchedClassifierLinkId,
    egress: SchedClassifierLinkId,
    /// dutnet added the clsact qdisc (netlink mode), so it removes it too.
    added_clsact: bool,
}

/// dutnet's loaded eBPF object and where its programs are attached.
pub struct EbpfDatapath {
    ebpf: Ebpf,
    paths: Paths,
    mode: TcAttachMode,
    attached: BTreeMap<String, Attachment>,
}

impl EbpfDatapath {
    /// Loads the programs into the kernel and pins the maps under
    /// `paths.pin_dir()`, mounting a bpffs first if there is none.
    pub fn load(paths: &Paths) -> Result<Self, EbpfError> {
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
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(OBJECT)
            .map_err(|source| EbpfError::Load { source })?;
        for name in [programs::DUT_INGRESS, programs::DUT_EGRESS] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| EbpfError::Program { name, source })?;
        }
        let mode = TcAttachMode::detect();
        info!(pin_dir = %pin_dir.display(), ?mode, "eBPF datapath loaded");
        Ok(Self {
            ebpf,
            paths: paths.clone(),
            mode,
            attached: BTreeMap::new(),
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

    /// Names of the interfaces the programs are attached to.
    pub fn attached_interfaces(&self) -> impl Iterator<Item = &str> {
        self.attached.keys().map(String::as_str)
    }

    /// Detaches from every interface and removes the pins.
    pub fn shutdown(mut self) -> Result<(), EbpfError> {
        let ifaces: Vec<String> = self.attached.keys().cloned().collect();
        let mut first_error = None;
        for iface in ifaces {
            if let Err(e) = self.detach(&iface) {
                warn!(%iface, error = %e, "detach failed");
                first_error.get_or_insert(e);
            }
        }
        drop(self.ebpf);
        remove_pin_dir(&self.paths)?;
        first_error.map_or(Ok(()), Err)
    }

    fn stats_map(
        &mut self,
    ) -> Result<PerCpuHashMap<&mut aya::maps::MapData, u32, IfaceCounters>, EbpfError> {
        let map = self
            .ebpf
            .map_mut(IFACE_STATS)
            .ok_or(EbpfError::MissingMap { name: IFACE_STATS })?;
        PerCpuHashMap::try_from(map).map_err(|source| EbpfError::Map {
            name: IFACE_STATS,
            source,
        })
    }

    fn attach_hooks(&mut self, iface: &str, ifindex: u32) -> Result<Attachment, EbpfError> {
        let mode = self.mode;
        let added_clsact = match mode {
            TcAttachMode::Netlink => attach::ensure_clsact(iface, ifindex)?,
            TcAttachMode::Tcx => false,
        };
        let ingress = classifier(&mut self.ebpf, programs::DUT_INGRESS).and_then(|p| {
            attach::attach(p, programs::DUT_INGRESS, iface, TcAttachType::Ingress, mode)
        });
        let ingress = match ingress {
            Ok(link) => link,
            Err(e) => {
                undo_clsact(added_clsact, ifindex);
                return Err(e);
            }
        };
        let egress = classifier(&mut self.ebpf, programs::DUT_EGRESS).and_then(|p| {
            attach::attach(p, programs::DUT_EGRESS, iface, TcAttachType::Egress, mode)
        });
        match egress {
            Ok(egress) => Ok(Attachment {
                ifindex,
                ingress,
                egress,
                added_clsact,
            }),
            Err(e) => {
                if let Ok(p) = classifier(&mut self.ebpf, programs::DUT_INGRESS) {
                    let _ = p.detach(ingress);
                }
                undo_clsact(added_clsact, ifindex);
                Err(e)
            }
        }
    }
}

impl Datapath for EbpfDatapath {
    type Error = EbpfError;

    fn attach(&mut self, iface: &str) -> Result<(), EbpfError> {
        if self.attached.contains_key(iface) {
            return Ok(());
        }
        let ifindex = interface_index(iface).map_err(|source| EbpfError::NoInterface {
            iface: iface.to_owned(),
            source,
        })?;
        // The counters entry exists before the programs run: they only update.
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| EbpfError::PinDir {
            path: "/sys/devices/system/cpu/possible".into(),
            source: e,
        })?;
        let zeroes = aya::maps::PerCpuValues::try_from(vec![IfaceCounters::default(); cpus])
            .map_err(|e| EbpfError::Map {
                name: IFACE_STATS,
                source: aya::maps::MapError::from(e),
            })?;
        self.stats_map()?
            .insert(ifindex, zeroes, 0)
            .map_err(|source| EbpfError::Map {
                name: IFACE_STATS,
                source,
            })?;
        match self.attach_hooks(iface, ifindex) {
            Ok(attachment) => {
                info!(%iface, ifindex, mode = ?self.mode, "eBPF programs attached");
                self.attached.insert(iface.to_owned(), attachment);
                Ok(())
            }
            Err(e) => {
                let _ = self.stats_map()?.remove(&ifindex);
                Err(e)
            }
        }
    }

    fn detach(&mut self, iface: &str) -> Result<(), EbpfError> {
        let attachment = self
            .attached
            .remove(iface)
            .ok_or_else(|| EbpfError::NotAttached {
                iface: iface.to_owned(),
            })?;
        let Attachment {
            ifindex,
            ingress,
            egress,
            added_clsact,
        } = attachment;
        // An interface that vanished (USB NIC unplugged) took its links along:
        // detaching them then fails harmlessly.
        for (name, link) in [
            (programs::DUT_INGRESS, ingress),
            (programs::DUT_EGRESS, egress),
        ] {
            if let Err(e) = classifier(&mut self.ebpf, name)?.detach(link) {
                debug!(%iface, program = name, error = %e, "detach: link already gone");
            }
        }
        if added_clsact {
            attach::remove_clsact(ifindex)?;
        }
        if let Err(e) = self.stats_map()?.remove(&ifindex) {
            debug!(%iface, error = %e, "counters entry already gone");
        }
        info!(%iface, "eBPF programs detached");
        Ok(())
    }

    fn stats(&self) -> Result<Vec<InterfaceStats>, EbpfError> {
        let map = self
            .ebpf
            .map(IFACE_STATS)
            .ok_or(EbpfError::MissingMap { name: IFACE_STATS })?;
        let map: PerCpuHashMap<&aya::maps::MapData, u32, IfaceCounters> =
            PerCpuHashMap::try_from(map).map_err(|source| EbpfError::Map {
                name: IFACE_STATS,
                source,
            })?;
        counters::collect(&map)
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
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EbpfError::PinDir { path: dir, source }),
    }
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
