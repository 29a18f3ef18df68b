//! Every path dutnet uses on disk, defined once, with who creates it.
//!
//! Each root can be moved with an environment variable. Tests use that to give
//! every test its own directories, and it is also what an exporter that runs
//! dutnet inside `ip netns exec` needs: that command gives the process a private
//! `/sys`, so a bpffs mounted there is invisible to a `dutnet stats` started by
//! another `ip netns exec`. Mount a bpffs somewhere both see (for example under
//! `/run`) and point `DUTNET_BPFFS` at it.
//!
//! Everything under the state and run directories is root's only: files
//! 0600, directories 0700 (see `state::private`), also what an older dutnet
//! left there, which `dutnet load` tightens when it starts.
use std::path::{Path, PathBuf};

/// Where the bpffs that holds dutnet's pins is mounted.
pub const BPFFS_ENV: &str = "DUTNET_BPFFS";
/// Where dutnet keeps state that must survive a restart (leases, journal).
pub const STATE_DIR_ENV: &str = "DUTNET_STATE_DIR";
/// Where the running daemon keeps its pid/lock file and control socket.
pub const RUN_DIR_ENV: &str = "DUTNET_RUN_DIR";

const DEFAULT_BPFFS: &str = "/sys/fs/bpf";
const DEFAULT_STATE_DIR: &str = "/var/lib/dutnet";
const DEFAULT_RUN_DIR: &str = "/run/dutnet";

/// The name of the pin directory of ABI `version` (`dutnet-v5`).
#[must_use]
pub fn pin_dir_name(version: u32) -> String {
    format!("dutnet-v{version}")
}

/// The roots of everything dutnet keeps on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// A bpffs mount point. dutnet mounts a bpffs there if none is (see
    /// `datapath::ebpf::bpffs`).
    pub bpffs: PathBuf,
    /// Created by `dutnet load`, mode 0700.
    pub state_dir: PathBuf,
    /// Created by `dutnet load`, mode 0700 (0710 for the group of
    /// `--socket-group`, which may reach the socket); on tmpfs, so emptied
    /// by a reboot.
    pub run_dir: PathBuf,
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
            state_dir: var(STATE_DIR_ENV, DEFAULT_STATE_DIR),
            run_dir: var(RUN_DIR_ENV, DEFAULT_RUN_DIR),
        }
    }

    /// dutnet's one directory in the bpffs, `dutnet-v<ABI_VERSION>`: every
    /// pinned map lives here, and a dutnet of another ABI version never
    /// reads the layout (see [`Self::other_abi_pins`]). Created by the eBPF
    /// datapath when it loads; removed when it shuts down or by
    /// `dutnet down` after a crash.
    #[must_use]
    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.join(pin_dir_name(dutnet_common::ABI_VERSION))
    }

    /// Pin directories in the bpffs of an ABI version other than this
    /// build's, with that version: a daemon from another dutnet build runs
    /// (or crashed) there. `dutnet` without a version is what builds before
    /// ABI 4 was part of the name left (`None`).
    #[must_use]
    pub fn other_abi_pins(&self) -> Vec<(PathBuf, Option<u32>)> {
        let Ok(entries) = std::fs::read_dir(&self.bpffs) else {
            return Vec::new();
        };
        let mut found: Vec<(PathBuf, Option<u32>)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let version = match name.to_str()? {
                    "dutnet" => None,
                    other => Some(other.strip_prefix("dutnet-v")?.parse::<u32>().ok()?),
                };
                (version != Some(dutnet_common::ABI_VERSION)).then(|| (e.path(), version))
            })
            .collect();
        found.sort();
        found
    }

    /// The pinned map `name` inside [`Self::pin_dir`] (aya pins maps by name).
    #[must_use]
    pub fn pinned_map(&self, name: &str) -> PathBuf {
        self.pin_dir().join(name)
    }

    /// The undo journal (see `host::journal`), mode 0600. Created by
    /// `dutnet load` before its first change to the host; removed once
    /// everything in it was undone (clean exit, or `dutnet down` / the next
    /// load after a crash).
    #[must_use]
    pub fn journal(&self) -> PathBuf {
        self.state_dir.join("undo.journal")
    }

    /// The running daemon's pid file (mode 0600), held under an exclusive
    /// flock for its whole life: only one dutnet runs per state. Removed
    /// when it exits, or by `dutnet down` after a crash.
    #[must_use]
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("dutnet.pid")
    }

    /// The control socket (see `control::server`). Created by `dutnet load`
    /// before the first network comes up, mode 0600 (0660 with
    /// `--socket-group`); removed when it exits, or by `dutnet down` after
    /// a crash.
    #[must_use]
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir.join("dutnet.sock")
    }

    /// The changes made at run time through the control socket, one file
    /// per network (see `state::runtime`; directory 0700, files 0600).
    /// Written by the daemon after each change, read when it starts,
    /// removed by `dutnet down`. Kept under
    /// the global state directory even when a network has a `state_dir` of
    /// its own, so `dutnet down` finds them without the config file.
    #[must_use]
    pub fn runtime_dir(&self) -> PathBuf {
        self.state_dir.join("runtime")
    }

    /// The state directory of one network (its leases, file `dnsmasq.leases`
    /// where jumpstarter keeps them, mode
    /// 0600): the network's `state_dir` when configured, else
    /// `<state_dir>/networks/<name>`. Created 0700 by the network's DHCP
    /// server; a configured directory that exists keeps its mode (it may be
    /// shared), only the lease file in it is made private.
    #[must_use]
    pub fn network_dir(&self, name: &str, configured: Option<&Path>) -> PathBuf {
        configured.map_or_else(
            || self.state_dir.join("networks").join(name),
            Path::to_path_buf,
        )
    }
}

/// Removes a pin directory ([`Paths::pin_dir`]) and every pin in it. `Ok(false)`:
/// there was none. The one removal both the eBPF datapath (before loading,
/// at shutdown) and the undo journal (after a crash) use.
pub fn remove_pin_dir(dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_versioned_and_other_versions_are_found() {
        let dir = std::env::temp_dir().join(format!("dutnet-paths-{}", std::process::id()));
        let paths = Paths {
            bpffs: dir.clone(),
            state_dir: dir.join("state"),
            run_dir: dir.join("run"),
        };
        let ours = pin_dir_name(dutnet_common::ABI_VERSION);
        assert_eq!(paths.pin_dir(), dir.join(&ours));
        for name in [ours.as_str(), "dutnet", "dutnet-v1", "dutnet-vx", "other"] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
        }
        let found = paths.other_abi_pins();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            [(dir.join("dutnet"), None), (dir.join("dutnet-v1"), Some(1))]
        );
    }
}
