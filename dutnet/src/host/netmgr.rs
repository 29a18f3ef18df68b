//! Keeping NetworkManager's hands off a DUT interface, and giving it back.
//!
//! Through `nmcli` (the D-Bus API would add a D-Bus stack to dutnet for two
//! calls). Hosts without NetworkManager are the common case in labs: when
//! nmcli is missing or NM is not running, nothing is done.
use std::process::Command;

use tracing::{debug, warn};

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
    if nmcli(&["-t", "-f", "RUNNING", "general"]).as_deref() != Some("running") {
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
