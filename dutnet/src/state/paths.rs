//! Every path dutnet uses on disk, defined once, with who creates it.
//!
//! Each root can be moved with an environment variable. Tests use that to give
//! every test its own directories, and it is also what an exporter that runs
//! dutnet inside `ip netns exec` needs: that command gives the process a private
//! `/sys`, so a bpffs mounted there is invisible to a `dutnet stats` started by
//! another `ip netns exec`. Mount a bpffs somewhere both see (for example under
//! `/run`) and point `DUTNET_BPFFS` at it.
use std::path::PathBuf;

/// Where the bpffs that holds dutnet's pins is mounted.
pub const BPFFS_ENV: &str = "DUTNET_BPFFS";
/// Default bpffs mount point (the one systemd mounts).
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// The roots of everything dutnet keeps on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// A bpffs mount point. dutnet mounts a bpffs there if none is (see
    /// `datapath::ebpf::bpffs`).
    pub bpffs: PathBuf,
}

impl Paths {
    /// The defaults, each overridden by its environment variable when set.
    #[must_use]
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Self {
            bpffs: var(BPFFS_ENV, DEFAULT_BPFFS),
        }
    }

    /// dutnet's one directory in the bpffs: every pinned map lives here.
    /// Created by the eBPF datapath when it loads; removed when it shuts down
    /// or by `dutnet down` after a crash.
    #[must_use]
    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.join("dutnet")
    }

    /// The pinned map `name` inside [`Self::pin_dir`] (aya pins maps by name).
    #[must_use]
    pub fn pinned_map(&self, name: &str) -> PathBuf {
        self.pin_dir().join(name)
    }
}
