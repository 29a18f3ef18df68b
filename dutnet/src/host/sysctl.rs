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

/// The /proc/sys file of a dotted key. As sysctl(8) reads keys, a `/` in
/// the key stands for a `.` in a name (`net.ipv4.conf.eth0/905.forwarding`
/// is `conf/eth0.905/forwarding`).
fn path(key: &str) -> PathBuf {
    let relative: String = key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    PathBuf::from("/proc/sys").join(relative)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dotted_interface_name_keeps_its_dot_in_the_path() {
        assert_eq!(
            path(&forwarding_key("eth0.905")),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.905/forwarding")
        );
        assert_eq!(
            path("net.ipv4.fwmark_reflect"),
            PathBuf::from("/proc/sys/net/ipv4/fwmark_reflect")
        );
    }
}
