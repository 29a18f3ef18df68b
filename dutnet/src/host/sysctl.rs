//! Reading and writing sysctls of the current network namespace.
//!
//! /proc/sys/net resolves to the network namespace of the calling process, so
//! this is correct under `ip netns exec` too.
use std::path::PathBuf;

/// A sysctl that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {key}: {source}")]
pub struct SysctlError {
    pub key: String,
    #[source]
    pub source: std::io::Error,
}

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Reads `key` (dotted, e.g. `net.ipv4.conf.eth1.forwarding`).
pub fn read(key: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path(key))
        .map(|v| v.trim().to_owned())
        .map_err(|source| SysctlError {
            key: key.to_owned(),
            source,
        })
}

/// Writes `value` to `key`.
pub fn write(key: &str, value: &str) -> Result<(), SysctlError> {
    std::fs::write(path(key), value).map_err(|source| SysctlError {
        key: key.to_owned(),
        source,
    })
}

/// The per-interface IPv4 forwarding switch. dutnet never touches the global
/// `ip_forward`: only the DUT and upstream interfaces forward.
#[must_use]
pub fn forwarding_key(iface: &str) -> String {
    // An interface name may contain dots (VLANs: eth0.905); in a sysctl key
    // they are written as slashes.
    format!("net.ipv4.conf.{}.forwarding", iface.replace('.', "/"))
}
