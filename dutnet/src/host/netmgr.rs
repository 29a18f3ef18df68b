//! Keeping NetworkManager's hands off a DUT interface, and giving it back.
//!
//! Through `nmcli` (the D-Bus API would add a D-Bus stack to dutnet for two
//! calls). Hosts without NetworkManager are the common case in labs: when
//! nmcli is missing or NM is not running, nothing is done.
use std::{
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::{debug, warn};

/// How long one answer to "is NetworkManager running" is reused: bringing
/// 256 networks up asks 256 times within a second, and one nmcli run is
/// 2-3 ms of fork and exec.
const RUNNING_REUSED_FOR: Duration = Duration::from_secs(2);

/// The last answer, and when it was asked.
static RUNNING: Mutex<Option<(Instant, bool)>> = Mutex::new(None);

fn running() -> bool {
    let mut last = RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((asked, running)) = *last
        && asked.elapsed() < RUNNING_REUSED_FOR
    {
        return running;
    }
    let running = nmcli(&["-t", "-f", "RUNNING", "general"]).as_deref() == Some("running");
    *last = Some((Instant::now(), running));
    running
}

fn nmcli(args: &[&str]) -> Option<String> {
    let output = Command::new("nmcli").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// True when NetworkManager runs and manages `iface` now.
#[must_use]
pub fn manages(iface: &str) -> bool {
    if !running() {
        debug!(%iface, "NetworkManager is not running");
        return false;
    }
    let managed = nmcli(&["-g", "GENERAL.NM-MANAGED", "device", "show", iface]);
    managed.as_deref() == Some("yes")
}

/// Marks `iface` managed or unmanaged.
pub fn set_managed(iface: &str, managed: bool) {
    let value = if managed { "yes" } else { "no" };
    if nmcli(&["device", "set", iface, "managed", value]).is_none() {
        warn!(%iface, managed, "nmcli could not change the managed state");
    }
}
