//! Real DHCP clients, run so they cannot touch the host: each in its own UTS
//! namespace (no hostname change) with a script that configures nothing.
use std::path::Path;

use crate::{Netns, Output};

/// Runs `dhclient -1` on `iface` in `ns`, with `extra_config` as its config
/// file (e.g. `send host-name "x";`), files under `dir`. Returns dhclient's
/// output and the lease file it wrote (empty when it got none). dhclient is
/// stopped again (without a release) before this returns.
pub fn dhclient(ns: &Netns, iface: &str, dir: &Path, extra_config: &str) -> (Output, String) {
    let file = |suffix: &str| dir.join(format!("{}-dhclient.{suffix}", ns.name));
    let (conf, leases, pid) = (file("conf"), file("leases"), file("pid"));
    let _ = std::fs::write(&conf, extra_config);
    let (conf, leases_arg, pid) = (
        conf.display().to_string(),
        leases.display().to_string(),
        pid.display().to_string(),
    );
    let out = ns.exec(
        "unshare",
        &[
            "--uts",
            "dhclient",
            "-1",
            "-sf",
            "/bin/true",
            "-cf",
            &conf,
            "-lf",
            &leases_arg,
            "-pf",
            &pid,
            iface,
        ],
    );
    // dhclient went to the background after binding.
    ns.exec("dhclient", &["-x", "-pf", &pid]);
    (out, std::fs::read_to_string(&leases).unwrap_or_default())
}

/// The `fixed-address` of the last lease in a dhclient lease file.
#[must_use]
pub fn leased_address(leases: &str) -> Option<String> {
    leases
        .lines()
        .filter_map(|l| l.trim().strip_prefix("fixed-address "))
        .map(|a| a.trim_end_matches(';').to_owned())
        .next_back()
}
