//! Rules for the names a config holds: network names, Linux interface names,
//! DNS host names. Each returns why a name is bad, for the caller to put
//! next to the key path.

/// Linux's IFNAMSIZ (16) minus the terminating NUL.
const MAX_IFNAME: usize = 15;
/// RFC 1035 §2.3.4: a name is at most 255 octets on the wire, which leaves
/// 253 characters in its dotted text form.
const MAX_HOSTNAME: usize = 253;
const MAX_LABEL: usize = 63;
const MAX_NETWORK_NAME: usize = 32;

/// The kernel's `dev_valid_name()`: 1..=15 bytes, not `.` or `..`, and no
/// `/`, `:` or whitespace (`:` was the old alias separator).
pub fn check_interface(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; give the interface name as `ip link` shows it".into());
    }
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "`{name}` is {} bytes long; Linux interface names have at most {MAX_IFNAME}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "`{name}` contains {c:?}; interface names cannot contain `/`, `:` or whitespace"
        ));
    }
    Ok(())
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner
/// hyphens, each 1..=63 characters, 253 in all.
pub fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; give a host name such as `board1`".into());
    }
    if name.len() > MAX_HOSTNAME {
        return Err(format!(
            "`{name}` is {} characters long; host names have at most {MAX_HOSTNAME}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{name}` has an empty label (two dots, or a leading or trailing dot)"
            ));
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "`{name}`: label `{label}` is longer than {MAX_LABEL} characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "`{name}` contains {c:?}; host names use only letters, digits, `-` and `.` (RFC 1123)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{name}`: label `{label}` starts or ends with `-` (RFC 1123 forbids it)"
            ));
        }
    }
    Ok(())
}

/// Network names end up in file names and nftables comments: keep them to
/// `[A-Za-z0-9_-]{1,32}` (jumpstarter export names may have capitals).
pub fn check_network_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NETWORK_NAME {
        return Err(format!(
            "`{name}` must be 1 to {MAX_NETWORK_NAME} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "`{name}` contains {c:?}; use only letters, digits, `_` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for ok in ["eth2", "enx00e04c683af1", "dn-dut1", "eth0.100", "a"] {
            assert_eq!(check_interface(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "eth 0", "eth0:1", "sixteen-chars-xx"] {
            assert!(check_interface(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        for ok in ["board1", "sa8775p-1", "controller.lab.local", "1abc", "A-B"] {
            assert_eq!(check_hostname(ok), Ok(()), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a.",
            "under_score",
            "sp ace",
            &long_label,
            &long_name,
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_names() {
        assert_eq!(check_network_name("dut1"), Ok(()));
        assert_eq!(check_network_name("lab_a-2"), Ok(()));
        assert_eq!(check_network_name("Dut1"), Ok(()));
        for bad in ["", "a.b", "a b", "../x", &"a".repeat(33)] {
            assert!(check_network_name(bad).is_err(), "{bad}");
        }
    }
}
