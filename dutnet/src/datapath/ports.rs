//! Which source ports masquerade may hand out.
//!
//! Translated ports must never collide with the exporter's own connections
//! (the kernel picks their source ports from `ip_local_port_range`) nor with
//! the kernel's masquerade of the packets dutnet leaves to the nft fallback
//! (Cilium #23604 is that collision). So dutnet takes a range outside
//! `ip_local_port_range` and splits it: most for the fast path, a slice for
//! the fallback rules.
use std::{ops::RangeInclusive, path::Path};

/// Where the kernel keeps the host's ephemeral port range.
pub const LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Ports below this are privileged services' ports: never handed out.
const FIRST_USABLE: u16 = 1024;
/// A range smaller than this is too small to masquerade a lab behind.
const MIN_RANGE: u32 = 1024;
/// The fallback's share of the range.
const KERNEL_SHARE: u32 = 1024;

/// The ranges dutnet translates into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    /// For the eBPF fast path.
    pub fast_path: RangeInclusive<u16>,
    /// For the nft fallback's `masquerade to :range`.
    pub fallback: RangeInclusive<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortPlanError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} holds `{content}`, not two port numbers")]
    Parse { path: String, content: String },
    #[error(
        "ip_local_port_range is {low}-{high}: it leaves fewer than {MIN_RANGE} ports outside it \
         for NAT; narrow it, e.g. `sysctl net.ipv4.ip_local_port_range=\"32768 60999\"`"
    )]
    NoRoom { low: u16, high: u16 },
}

/// Reads `ip_local_port_range` (of the current network namespace) and plans.
pub fn plan_for_host() -> Result<PortPlan, PortPlanError> {
    let (low, high) = read_local_range(Path::new(LOCAL_PORT_RANGE))?;
    plan(low, high)
}

fn read_local_range(path: &Path) -> Result<(u16, u16), PortPlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| PortPlanError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let parse_error = || PortPlanError::Parse {
        path: path.display().to_string(),
        content: text.trim().to_owned(),
    };
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    match (fields.next(), fields.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Ok((low, high)),
        _ => Err(parse_error()),
    }
}

/// The larger of the two gaps around the host's ephemeral range, preferring
/// the one above it (high ports are what NATs conventionally use), split
/// between the fast path and the fallback.
pub fn plan(local_low: u16, local_high: u16) -> Result<PortPlan, PortPlanError> {
    let above = (u32::from(local_high) + 1, u32::from(u16::MAX));
    let below = (
        u32::from(FIRST_USABLE),
        u32::from(local_low).saturating_sub(1),
    );
    let size = |(a, b): (u32, u32)| if b >= a { b - a + 1 } else { 0 };
    let (first, last) = if size(above) >= 2 * MIN_RANGE || size(above) >= size(below) {
        above
    } else {
        below
    };
    let total = size((first, last));
    let kernel = KERNEL_SHARE.min(total / 4);
    if total - kernel < MIN_RANGE {
        return Err(PortPlanError::NoRoom {
            low: local_low,
            high: local_high,
        });
    }
    let split = last - kernel;
    let port = |p: u32| u16::try_from(p).unwrap_or(u16::MAX);
    Ok(PortPlan {
        fast_path: port(first)..=port(split),
        fallback: port(split + 1)..=port(last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disjoint(a: &RangeInclusive<u16>, b: &RangeInclusive<u16>) -> bool {
        a.end() < b.start() || b.end() < a.start()
    }

    #[test]
    fn the_debian_default_range_leaves_the_ports_above_it() {
        let plan = plan(32768, 60999).unwrap();
        assert_eq!(plan.fast_path, 61000..=64511);
        assert_eq!(plan.fallback, 64512..=65535);
    }

    #[test]
    fn a_range_reaching_the_top_uses_the_ports_below_it() {
        let plan = plan(49152, 65535).unwrap();
        assert_eq!(*plan.fast_path.start(), 1024);
        assert_eq!(*plan.fallback.end(), 49151);
    }

    #[test]
    fn no_plan_ever_overlaps_the_host_range_or_itself() {
        for (low, high) in [
            (1024, 60000),
            (2000, 65000),
            (32768, 60999),
            (10000, 20000),
            (40000, 65535),
        ] {
            let Ok(p) = plan(low, high) else { continue };
            let host = low..=high;
            assert!(disjoint(&p.fast_path, &host), "{low}-{high}: {p:?}");
            assert!(disjoint(&p.fallback, &host), "{low}-{high}: {p:?}");
            assert!(disjoint(&p.fast_path, &p.fallback), "{low}-{high}: {p:?}");
            assert!(*p.fast_path.start() >= 1024);
        }
    }

    #[test]
    fn a_host_range_covering_everything_is_refused_with_the_fix() {
        let err = plan(1024, 65535).unwrap_err();
        assert!(err.to_string().contains("ip_local_port_range"), "{err}");
    }

    #[test]
    fn a_garbled_proc_file_is_reported_with_its_content() {
        let dir = std::env::temp_dir().join(format!("dutnet-ports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("range");
        std::fs::write(&file, "60999 32768\n").unwrap();
        let err = read_local_range(&file).unwrap_err();
        assert!(err.to_string().contains("60999 32768"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
