//! Real DHCP clients, run so they cannot touch the host: each in its own UTS
//! namespace (no hostname change) with a script that configures nothing.
use std::path::{Path, PathBuf};

use crate::{Netns, Output};

/// Runs `dhclient -1` on `iface` in `ns`, with `extra_config` as its config
/// file (e.g. `send host-name "x";`), files under `dir`. Returns dhclient's
/// output and the lease file it wrote (empty when it got none). dhclient is
/// stopped again (without a release) before this returns.
pub fn dhclient(ns: &Netns, iface: &str, dir: &Path, extra_config: &str) -> (Output, String) {
    let client = Dhclient::new(ns, iface, dir, &ns.name, extra_config);
    let out = client.run();
    (out, client.leases())
}

/// One ISC dhclient identity: its interface and its files
/// (`<dir>/<name>-dhclient.{conf,leases,pid}`). Running it again reuses the
/// lease file, so dhclient first REQUESTs the address it remembers
/// (INIT-REBOOT, RFC 2131 3.2) instead of DISCOVERing.
#[derive(Debug, Clone)]
pub struct Dhclient {
    pub ns: Netns,
    pub iface: String,
    conf: PathBuf,
    leases: PathBuf,
    pid: PathBuf,
}

impl Dhclient {
    /// Writes `extra_config` as the client's config file.
    #[must_use]
    pub fn new(ns: &Netns, iface: &str, dir: &Path, name: &str, extra_config: &str) -> Self {
        let file = |suffix: &str| dir.join(format!("{name}-dhclient.{suffix}"));
        let client = Self {
            ns: ns.clone(),
            iface: iface.to_owned(),
            conf: file("conf"),
            leases: file("leases"),
            pid: file("pid"),
        };
        let _ = std::fs::write(&client.conf, extra_config);
        client
    }

    /// `dhclient -1`: gets a lease (or confirms the remembered one), then is
    /// stopped by its PID file without releasing it.
    pub fn run(&self) -> Output {
        let out = self.exec(&["-1", "-v"]);
        self.stop();
        out
    }

    /// dhclient went to the background after binding: SIGTERM (no release)
    /// to the PID it wrote. Not `dhclient -x`: without an interface that one
    /// starts on every interface of the namespace.
    fn stop(&self) {
        let Some(pid) = std::fs::read_to_string(&self.pid)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            return;
        };
        // SAFETY: kill with the PID of the dhclient this helper started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = std::fs::remove_file(&self.pid);
    }

    /// `dhclient -r`: sends a RELEASE for the lease in the lease file.
    pub fn release(&self) -> Output {
        self.exec(&["-r", "-v"])
    }

    /// The lease file (empty before the first lease).
    #[must_use]
    pub fn leases(&self) -> String {
        std::fs::read_to_string(&self.leases).unwrap_or_default()
    }

    /// The address of the client's newest lease.
    #[must_use]
    pub fn address(&self) -> Option<String> {
        leased_address(&self.leases())
    }

    fn exec(&self, mode: &[&str]) -> Output {
        let (conf, leases, pid) = (
            self.conf.display().to_string(),
            self.leases.display().to_string(),
            self.pid.display().to_string(),
        );
        let mut args = vec!["--uts", "dhclient"];
        args.extend(mode);
        args.extend([
            "-sf",
            "/bin/true",
            "-cf",
            &conf,
            "-lf",
            &leases,
            "-pf",
            &pid,
            &self.iface,
        ]);
        self.ns.exec("unshare", &args)
    }
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

/// A BusyBox udhcpc script that configures nothing and appends
/// `<event> <interface> <ip>` to `record` for every event with an address
/// (`bound`, `renew`). With `configure`, it also puts the address on the
/// interface: a RENEWING client sends from it (RFC 2131 4.4.5).
pub fn udhcpc_script(path: &Path, record: &Path, configure: bool) {
    let configure = if configure {
        "[ \"$1\" = bound ] && ip addr replace \"$ip/$mask\" dev \"$interface\"\n"
    } else {
        ""
    };
    let text = format!(
        "#!/bin/sh\n[ -n \"$ip\" ] && echo \"$1 $interface $ip\" >> {}\n{configure}exit 0\n",
        record.display()
    );
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
