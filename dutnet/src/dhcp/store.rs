//! The lease file, `dnsmasq.leases`: one lease per line in dnsmasq's own
//! format and nothing else (no comment lines), so jumpstarter's
//! `parse_leases` and every script written for dnsmasq read it:
//!
//! ```text
//! <expiry-unix-seconds> <mac> <ip> <hostname or *> <client-id hex or *>
//! 1767225600 02:00:00:00:00:01 192.168.50.100 board-a 01:02:00:00:00:00:01
//! ```
//!
//! Writes are atomic and durable (temp file, fsync, rename, fsync of the
//! directory): the server writes before it ACKs, so an acknowledged lease
//! survives a crash or power cut. The file is root's only (0600, its
//! directory 0700 when dutnet creates it): it names every DUT's MAC and host
//! name.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{DhcpError, Lease, format_hex, format_mac};
use crate::state::{self, private};

/// Reads `path`; a missing file is an empty table. Lines that do not parse
/// are skipped with a warning (a hand-edited file must not stop the
/// server); expired leases are dropped later by `LeaseState::new`. A file
/// an older dutnet left readable by others is made private first.
pub fn load(path: &Path) -> Result<Vec<Lease>, DhcpError> {
    adopt_legacy(path).map_err(|source| DhcpError::LeaseFile {
        path: path.to_owned(),
        source,
    })?;
    private::restrict_file(path).map_err(|source| DhcpError::LeaseFile {
        path: path.to_owned(),
        source,
    })?;
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(DhcpError::LeaseFile {
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(parse(&text, path))
}

/// The name dutnet before 0.2 gave the lease file, beside the new one.
const LEGACY_NAME: &str = "leases";

/// A lease file an older dutnet wrote under [`LEGACY_NAME`] becomes `path`
/// (when `path` does not exist yet), so no lease is lost on upgrade.
fn adopt_legacy(path: &Path) -> std::io::Result<()> {
    let legacy = path.with_file_name(LEGACY_NAME);
    if legacy == path || path.exists() || !legacy.exists() {
        return Ok(());
    }
    fs::rename(&legacy, path)
}

/// Parses the file's text, skipping (and logging) bad lines (and the
/// comment lines older dutnets wrote).
pub fn parse(text: &str, path: &Path) -> Vec<Lease> {
    let mut leases = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(lease) => leases.push(lease),
            None => {
                tracing::warn!(path = %path.display(), line = n + 1, content = line, "skipping malformed lease line")
            }
        }
    }
    leases
}

fn parse_line(line: &str) -> Option<Lease> {
    let mut fields = line.split_ascii_whitespace();
    let expiry: u64 = fields.next()?.parse().ok()?;
    let mac_bytes = parse_hex(fields.next()?)?;
    let mac: [u8; 6] = mac_bytes.try_into().ok()?;
    let ip: Ipv4Addr = fields.next()?.parse().ok()?;
    let hostname = match fields.next()? {
        "*" => None,
        h => Some(h.to_owned()),
    };
    let client_id = match fields.next()? {
        "*" => None,
        id => Some(parse_hex(id)?),
    };
    if fields.next().is_some() {
        return None;
    }
    Some(Lease {
        mac,
        ip,
        hostname,
        client_id,
        expires: SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(expiry))?,
        is_static: false,
        acked: None,
    })
}

/// `aa:bb:cc` or `aabbcc`.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) || !digits.is_ascii() {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// Renders the table, dnsmasq's way.
pub fn render(leases: &[Lease]) -> String {
    let mut out = String::new();
    for l in leases {
        let expiry = l
            .expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let hostname = l.hostname.as_deref().filter(|h| is_field(h)).unwrap_or("*");
        let client_id = l
            .client_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(format_hex);
        out.push_str(&format!(
            "{expiry} {} {} {hostname} {}\n",
            format_mac(&l.mac),
            l.ip,
            client_id.as_deref().unwrap_or("*"),
        ));
    }
    out
}

/// A hostname that would not survive a round trip is written as `*`.
fn is_field(s: &str) -> bool {
    !s.is_empty() && s != "*" && !s.starts_with('#') && s.chars().all(|c| c.is_ascii_graphic())
}

/// Writes `leases` to `path` atomically and durably, creating its directory.
pub fn save(path: &Path, leases: &[Lease]) -> Result<(), DhcpError> {
    let err = |source| DhcpError::LeaseFile {
        path: path.to_owned(),
        source,
    };
    state::atomic_write(path, render(leases).as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("dutnet-dhcp-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn lease(last: u8, hostname: Option<&str>, client_id: Option<Vec<u8>>) -> Lease {
        Lease {
            mac: [2, 0, 0, 0, 0, last],
            ip: Ipv4Addr::new(192, 168, 50, last),
            hostname: hostname.map(str::to_owned),
            client_id,
            expires: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + u64::from(last)),
            is_static: false,
            acked: None,
        }
    }

    #[test]
    fn round_trip_creates_directory() {
        let dir = tmpdir("rt");
        let path = dir.join("sub").join("dnsmasq.leases");
        let leases = vec![
            lease(1, Some("board-a"), Some(vec![1, 2, 0, 0, 0, 0, 1])),
            lease(2, None, None),
        ];
        save(&path, &leases).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(
                "1800000001 02:00:00:00:00:01 192.168.50.1 board-a 01:02:00:00:00:00:01\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("1800000002 02:00:00:00:00:02 192.168.50.2 * *\n"),
            "{text}"
        );
        assert_eq!(load(&path).unwrap(), leases);
        assert!(!dir.join("sub").join("dnsmasq.leases.tmp").exists());
        assert!(
            !text.contains('#'),
            "dnsmasq's format has no comments:\n{text}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_older_dutnets_lease_file_is_adopted() {
        let dir = tmpdir("legacy");
        fs::create_dir_all(&dir).unwrap();
        let legacy = dir.join("leases");
        fs::write(
            &legacy,
            "# dutnet DHCP leases, network lab1\n# <expiry-unix-seconds> <mac> <ip> <hostname or *> <client-id or *>\n1800000001 02:00:00:00:00:01 192.168.50.1 board-a *\n",
        )
        .unwrap();
        let path = dir.join("dnsmasq.leases");
        assert_eq!(load(&path).unwrap().len(), 1);
        assert!(path.exists() && !legacy.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_file_is_empty() {
        assert!(
            load(Path::new("/nonexistent/dutnet/leases"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "\
# comment
1800000001 02:00:00:00:00:01 192.168.50.1 a *
garbage
1800000001 02:00:00:00:00 192.168.50.1 a *
1800000001 02:00:00:00:00:01 192.168.50.300 a *
-5 02:00:00:00:00:01 192.168.50.1 a *
1800000001 02:00:00:00:00:01 192.168.50.1 a 0g
1800000001 02:00:00:00:00:01 192.168.50.1 a * extra
1800000001 02:00:00:00:00:01 192.168.50.1
99999999999999999999 02:00:00:00:00:01 192.168.50.1 a *
1800000002 020000000002 192.168.50.2 * 0102
";
        let got = parse(text, Path::new("test"));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(got[1].client_id, Some(vec![1, 2]));
    }

    #[test]
    fn unsafe_hostname_is_written_as_star() {
        let text = render(&[lease(1, Some("a b"), None)]);
        assert!(text.contains(" * *\n"), "{text}");
    }
}
