//! The daemon: brings every network up, keeps it up, and puts the host back.
//!
//! `run` is what `dutnet load` does (see [`supervisor`]); `down` is what
//! `dutnet down` does. Both undo through the same journal replay, so a clean
//! exit and the recovery after a SIGKILL restore the very same things.
//!
//! - `supervisor`: bring-up, the event loop, shutdown;
//! - `network`: one network's context (reconfigure, runtime changes, status);
//! - `exporter`: what a network needs from the host (a trait, faked in tests);
//! - `control`: control requests, each routed to a network's context.
mod capture;
mod coexist;
mod control;
mod exporter;
mod flows;
mod lock;
mod nat;
mod network;
mod notify;
mod pressure;
mod reload;
mod servers;
mod supervisor;
mod takeover;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tracing::{info, warn};

pub use self::{
    coexist::CoexistError,
    lock::{Holder, LockError},
    reload::ReloadSource,
    supervisor::run,
    takeover::gateway_address,
};
pub use crate::datapath::select::{BREAK_EBPF_ENV, SelectError};
use crate::{
    control::server::ControlError,
    datapath::{DatapathError, ports::PortPlanError},
    dhcp::DhcpError,
    dns::DnsError,
    host::{
        HostCause, HostError, InterfaceProblem,
        journal::{self, JournalError, Leftover},
        restore,
    },
    metrics::MetricsError,
    netlink::{Netlink, NetlinkError},
    state::{paths::Paths, private},
    tftp::TftpError,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("network `{network}`: attaching the datapath failed: {source}")]
    Attach {
        network: String,
        #[source]
        source: DatapathError,
    },
    #[error(transparent)]
    Host(#[from] HostError),
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
    #[error("network `{network}`: starting the NTP server failed: {source}")]
    Ntp {
        network: String,
        #[source]
        source: crate::ntp::NtpError,
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

impl DaemonError {
    /// The uplink this error waits for: missing (unplugged, being
    /// re-created) or without an IPv4 address yet (its DHCP client still
    /// asking). A wait, not a failure.
    #[must_use]
    pub fn awaited_upstream(&self) -> Option<network::Awaited> {
        match self {
            Self::Host(HostError {
                source: HostCause::Interface(InterfaceProblem::UpstreamMissing { name }),
                ..
            }) => Some(network::Awaited::Upstream(name.clone())),
            Self::Attach {
                source: DatapathError::Ebpf(e),
                ..
            } => match e.as_ref() {
                crate::datapath::ebpf::EbpfError::NoMasqueradeAddress { upstream } => {
                    Some(network::Awaited::UpstreamAddress(upstream.clone()))
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The problems of an undo, one after the other.
fn join(problems: &[HostError]) -> String {
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// How `dutnet load` was asked to run, beyond the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The group (gid) whose members may use the control socket besides
    /// root.
    pub socket_group: Option<u32>,
    /// Where the Prometheus endpoint listens (`None`: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The file `dutnet reload` and SIGHUP read again (`None`: no reload).
    pub reload_from: Option<reload::ReloadSource>,
}

/// Takes group and other access away from the state directory and what an
/// older dutnet left in it (lease files, journal, runtime changes).
pub(super) fn make_state_private(paths: &Paths) -> Result<(), DaemonError> {
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
pub(super) async fn undo_leftover(paths: &Paths, netlink: &Netlink) -> Result<usize, DaemonError> {
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
