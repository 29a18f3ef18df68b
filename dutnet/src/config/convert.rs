//! Wire -> model: parse every value, fill in the defaults, then apply the
//! rules of [`super::validate`]. Every problem is collected; a value that does
//! not parse is reported once and the checks that depend on it are skipped.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use ipnet::Ipv4Net;

use crate::datapath::{FlowLimits, expiry::FlowTimeouts};

use super::{
    duration,
    error::{ConfigError, Problem, join},
    model::{AddressEntry, DatapathChoice, DhcpSettings, DnsEntry, MacAddr, NatMode, Network},
    names,
    validate::{self, Explicit, Layout},
    wire::{AddressWire, DnsEntryWire, DurationWire, NatTimeoutsWire, NetworkWire},
};

pub const DEFAULT_SUBNET: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(192, 168, 100, 0), 24) {
    Ok(net) => net,
    Err(_) => panic!("a /24 is a valid prefix"),
};
pub const DEFAULT_DNS_SERVERS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(120);
/// Flows a network may hold unless it says otherwise. The table is sized
/// for every network's budget at once (so none can take another's), and the
/// kernel rounds a hash map's buckets up to a power of two: 65 536 a network
/// cost 1.2 GB of kernel memory and a 4 s load for 256 networks; 16 384
/// cost 1 MiB of buckets a network (256 MiB for 256 networks) and still
/// give each DUT NIC several times the connections of a busy desktop.
pub const DEFAULT_NAT_TABLE_SIZE: u32 = 16_384;
/// Offsets of the default gateway and DHCP pool from the network address:
/// 192.168.100.1 and .100 - .200 for jumpstarter's default subnet.
const GATEWAY_OFFSET: u32 = 1;
const RANGE_OFFSETS: (u32, u32) = (100, 200);
/// A gateway and at least one DUT need two host addresses.
const MAX_PREFIX: u8 = 30;

impl TryFrom<NetworkWire> for Network {
    type Error = ConfigError;

    fn try_from(wire: NetworkWire) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let net = build(wire, &mut problems);
        ConfigError::from_problems(problems).map(|()| net)
    }
}

impl TryFrom<AddressWire> for AddressEntry {
    type Error = ConfigError;

    /// Parses one entry on its own (resolving a `public_ip` host name); the
    /// rules that involve the network are [`Network::check_new_address`].
    fn try_from(wire: AddressWire) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let entry = address(wire, &mut problems);
        ConfigError::from_problems(problems)
            .and_then(|()| entry.ok_or_else(|| ConfigError::single("ip", "is required")))
    }
}

impl TryFrom<DnsEntryWire> for DnsEntry {
    type Error = ConfigError;

    fn try_from(wire: DnsEntryWire) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let entry = dns_entry(wire, &mut problems);
        ConfigError::from_problems(problems)
            .and_then(|()| entry.ok_or_else(|| ConfigError::single("hostname", "is required")))
    }
}

/// The network with every value that parsed and defaults for the rest, plus
/// its problems: the loader cross-checks networks even when one is faulty.
pub(crate) fn build(w: NetworkWire, p: &mut Vec<Problem>) -> Network {
    let interface = match w.interface {
        Some(name) => {
            check(p, "interface", names::check_interface(&name));
            name
        }
        None => {
            p.push(Problem::new(
                "interface",
                "is required; name the DUT-facing NIC, e.g. `interface: eth2`",
            ));
            String::new()
        }
    };
    let name = match w.name {
        Some(name) => {
            check(p, "name", names::check_network_name(&name));
            name
        }
        None => interface.clone(),
    };
    for (key, value) in [
        ("upstream_interface", &w.upstream_interface),
        ("public_interface", &w.public_interface),
    ] {
        if let Some(v) = value {
            check(p, key, names::check_interface(v));
        }
    }

    let subnet = match &w.subnet {
        None => Some(DEFAULT_SUBNET),
        Some(text) => parse_subnet(text)
            .map_err(|m| p.push(Problem::new("subnet", m)))
            .ok(),
    };
    let base = subnet.unwrap_or(DEFAULT_SUBNET);
    let offset = |n: u32| Ipv4Addr::from(u32::from(base.network()).saturating_add(n));
    let gateway_ip = opt_ipv4(p, "gateway_ip", &w.gateway_ip);
    let range_start = opt_ipv4(p, "dhcp_range_start", &w.dhcp_range_start);
    let range_end = opt_ipv4(p, "dhcp_range_end", &w.dhcp_range_end);
    let nat_mode_problems = p.len();
    let nat_mode = parse_or(p, "nat_mode", &w.nat_mode, NatMode::Masquerade);
    let layout = Layout {
        trusted: subnet.is_some() && gateway_ip.is_some(),
        nat_mode: p.len() == nat_mode_problems,
    };
    let range_ok = range_start.is_some() && range_end.is_some();
    let explicit = Explicit {
        range: w.dhcp_range_start.is_some() || w.dhcp_range_end.is_some(),
        flows_per_dut: w.nat_flows_per_dut.is_some(),
    };

    let datapath = parse_or(p, "datapath", &w.datapath, DatapathChoice::Auto);
    let lease_time = opt_duration(p, "lease_time", &w.lease_time, DEFAULT_LEASE_TIME);
    let dns_timeout = opt_duration(p, "dns_timeout", &w.dns_timeout, DEFAULT_DNS_TIMEOUT);
    let udp_timeout = opt_duration(p, "udp_timeout", &w.udp_timeout, DEFAULT_UDP_TIMEOUT);
    let nat_timeouts = nat_timeouts(p, udp_timeout, w.nat_timeouts.unwrap_or_default());
    // Beyond u32 is out of the allowed range too: reported here with the
    // number as written (not cut down to u32::MAX), the default kept so the
    // model's rules do not report it a second time.
    let nat_table_size = match w.nat_table_size {
        None => DEFAULT_NAT_TABLE_SIZE,
        Some(n) => u32::try_from(n).unwrap_or_else(|_| {
            p.push(Problem::new(
                "nat_table_size",
                format!(
                    "{n} is out of range; use {} to {}",
                    validate::NAT_TABLE_SIZES.start(),
                    validate::NAT_TABLE_SIZES.end()
                ),
            ));
            DEFAULT_NAT_TABLE_SIZE
        }),
    };
    let default_share = FlowLimits::new(nat_table_size).per_dut;
    let nat_flows_per_dut = match w.nat_flows_per_dut {
        None => default_share,
        Some(n) => u32::try_from(n).unwrap_or_else(|_| {
            p.push(Problem::new(
                "nat_flows_per_dut",
                format!(
                    "{n} is more than nat_table_size ({nat_table_size}), the flows of the whole network; use at most {nat_table_size}, or raise nat_table_size"
                ),
            ));
            default_share
        }),
    };
    let dns_servers = match &w.dns_servers {
        None => DEFAULT_DNS_SERVERS.iter().copied().map(IpAddr::V4).collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.parse::<IpAddr>()
                    .map_err(|_| {
                        p.push(Problem::new(
                            format!("dns_servers[{i}]"),
                            format!("`{s}` is not an IP address; DNS servers are given by address, e.g. 8.8.8.8"),
                        ))
                    })
                    .ok()
            })
            .collect(),
    };
    let local_ntp = local_ntp(p, w.local_ntp.as_ref());
    let filter = super::filter::filter(p, w.filter);
    let enable_tcpdump = match &w.enable_tcpdump {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => super::schema::yaml11_bool(v).unwrap_or_else(|| {
            p.push(Problem::new(
                "enable_tcpdump",
                "give `true` (users of the control socket may run `dutnet capture`) or `false` (only root may)",
            ));
            false
        }),
    };
    let dhcp_options = dhcp_options(p, "dhcp_options", w.dhcp_options);
    let tftp_root = w.tftp_root.and_then(|t| {
        let path = PathBuf::from(&t);
        if path.is_absolute() {
            Some(path)
        } else {
            // The daemon's working directory is nobody's business.
            p.push(Problem::new(
                "tftp_root",
                format!(
                    "`{t}` is a relative path; give the directory from the root, e.g. /srv/tftp"
                ),
            ));
            None
        }
    });
    let mut addresses = Vec::new();
    let mut address_paths = Vec::new();
    for (i, a) in w.addresses.into_iter().flatten().enumerate() {
        let path = format!("addresses[{i}]");
        let mut own = Vec::new();
        if let Some(entry) = address(a, &mut own) {
            addresses.push(entry);
            address_paths.push(path.clone());
        }
        p.extend(own.into_iter().map(|q| prefix(&path, q)));
    }
    let mut dns_entries = Vec::new();
    let mut dns_paths = Vec::new();
    for (i, e) in w.dns_entries.into_iter().flatten().enumerate() {
        let path = format!("dns_entries[{i}]");
        let mut own = Vec::new();
        if let Some(entry) = dns_entry(e, &mut own) {
            dns_entries.push(entry);
            dns_paths.push(path.clone());
        }
        p.extend(own.into_iter().map(|q| prefix(&path, q)));
    }

    let net = Network {
        name,
        interface,
        subnet: base,
        gateway_ip: gateway_ip
            .flatten()
            .unwrap_or_else(|| offset(GATEWAY_OFFSET)),
        upstream_interface: w.upstream_interface,
        public_interface: w.public_interface,
        nat_mode,
        datapath,
        dhcp: DhcpSettings {
            enabled: w.dhcp_enabled.unwrap_or(true),
            range_start: range_start
                .flatten()
                .unwrap_or_else(|| offset(RANGE_OFFSETS.0)),
            range_end: range_end
                .flatten()
                .unwrap_or_else(|| offset(RANGE_OFFSETS.1)),
            lease_time,
        },
        addresses,
        dns_servers,
        dns_entries,
        domain: w.domain,
        dns_timeout,
        nat_timeouts,
        nat_table_size,
        nat_flows_per_dut,
        state_dir: w.state_dir.map(PathBuf::from),
        dhcp_options,
        tftp_root,
        filter,
        enable_tcpdump,
        local_ntp,
    };

    // Range rules only with a parsed range; the layout covers subnet and gateway.
    let range_layout = Layout {
        trusted: layout.trusted && range_ok,
        ..layout
    };
    let mut rules = validate::check_network(&net, layout, explicit);
    if !range_layout.trusted {
        rules.retain(|q| !q.path.starts_with("dhcp_range"));
    }
    p.extend(rules);
    let mut seen = validate::SeenAddresses::default();
    for (entry, path) in net.addresses.iter().zip(&address_paths) {
        let found = validate::check_address(&net, layout, &seen, entry);
        p.extend(found.into_iter().map(|q| prefix(path, q)));
        seen.add(path, entry);
    }
    let mut seen = validate::SeenDnsNames::default();
    for (entry, path) in net.dns_entries.iter().zip(&dns_paths) {
        let found = validate::check_dns_entry(&seen, entry);
        p.extend(found.into_iter().map(|q| prefix(path, q)));
        seen.add(path, entry);
    }
    net
}

/// The idle timeouts: `udp_timeout` for replied UDP, `nat_timeouts` (or
/// conntrack-like defaults) for the other states.
fn nat_timeouts(p: &mut Vec<Problem>, udp: Duration, w: NatTimeoutsWire) -> FlowTimeouts {
    let d = FlowTimeouts::default();
    let mut state = |key: &str, value: &Option<DurationWire>, default: Duration| {
        opt_duration(p, &join("nat_timeouts", key), value, default)
    };
    FlowTimeouts {
        unreplied: state("unreplied", &w.unreplied, d.unreplied),
        udp,
        icmp: state("icmp", &w.icmp, d.icmp),
        tcp_syn: state("tcp_syn", &w.tcp_syn, d.tcp_syn),
        tcp_established: state("tcp_established", &w.tcp_established, d.tcp_established),
        tcp_fin_wait: state("tcp_fin_wait", &w.tcp_fin_wait, d.tcp_fin_wait),
        tcp_time_wait: state("tcp_time_wait", &w.tcp_time_wait, d.tcp_time_wait),
        tcp_close: state("tcp_close", &w.tcp_close, d.tcp_close),
    }
}

/// `None` when the entry is unusable (its problems are in `p`).
fn address(w: AddressWire, p: &mut Vec<Problem>) -> Option<AddressEntry> {
    let ip = match &w.ip {
        Some(text) => ipv4(p, "ip", text),
        None => {
            p.push(Problem::new(
                "ip",
                "is required; give the DUT's address, e.g. `ip: 192.168.100.10`",
            ));
            None
        }
    };
    let mac = w.mac.as_deref().and_then(|s| {
        MacAddr::from_str(s)
            .map_err(|m| p.push(Problem::new("mac", m)))
            .ok()
    });
    let public_ip = w.public_ip.as_deref().and_then(|s| {
        resolve_public_ip(s, system_resolver)
            .map_err(|m| p.push(Problem::new("public_ip", m)))
            .ok()
    });
    let vlan_id = w.vlan_id.and_then(|id| match u16::try_from(id) {
        Ok(id @ 1..=4094) => Some(id),
        _ => {
            p.push(Problem::new(
                "vlan_id",
                format!("{id} is not a VLAN id; give one from 1 to 4094 (802.1Q)"),
            ));
            None
        }
    });
    let public_gateway = w
        .public_gateway
        .as_deref()
        .and_then(|s| match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Some(v4),
            Ok(IpAddr::V6(_)) => {
                p.push(Problem::new(
                    "public_gateway",
                    format!("`{s}` is an IPv6 address; policy routing for 1:1 NAT is IPv4 only"),
                ));
                None
            }
            Err(_) => {
                p.push(Problem::new(
                    "public_gateway",
                    format!("`{s}` is not an IPv4 address; give the VLAN router's, e.g. 10.26.5.1"),
                ));
                None
            }
        });
    let dhcp_options = dhcp_options(p, "dhcp_options", w.dhcp_options);
    // A bad `mac` or `public_ip` is reported above; the entry stays (without
    // it) so that its other rules are checked in the same run.
    Some(AddressEntry {
        ip: ip?,
        mac,
        hostname: w.hostname,
        public_ip,
        vlan_id,
        public_gateway,
        dhcp_options,
    })
}

fn dns_entry(w: DnsEntryWire, p: &mut Vec<Problem>) -> Option<DnsEntry> {
    let ip = match &w.ip {
        Some(text) => ipv4(p, "ip", text),
        None => {
            p.push(Problem::new(
                "ip",
                "is required; give the address the name resolves to",
            ));
            None
        }
    };
    if w.hostname.is_none() {
        p.push(Problem::new(
            "hostname",
            "is required; give the name to answer, e.g. `controller.lab.local`",
        ));
    }
    Some(DnsEntry {
        hostname: w.hostname?,
        ip: ip?,
    })
}

/// A `public_ip` value: an IPv4 address, or a host name resolved now to its
/// first IPv4 address (a later DNS change does not move a running mapping).
pub fn resolve_public_ip(
    text: &str,
    resolve: impl Fn(&str) -> std::io::Result<Vec<IpAddr>>,
) -> Result<Ipv4Addr, String> {
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    if text.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{text}` is an IPv6 address; 1:1 NAT maps IPv4 addresses only"
        ));
    }
    if names::check_hostname(text).is_err() {
        return Err(format!(
            "`{text}` is neither an IPv4 address nor a host name; write e.g. 10.26.28.84"
        ));
    }
    match resolve(text) {
        Ok(ips) => ips
            .into_iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| format!("`{text}` has no IPv4 address; give the address instead")),
        Err(e) => Err(format!(
            "cannot resolve `{text}` ({e}); give the IPv4 address instead"
        )),
    }
}

/// The host's resolver (getaddrinfo, so /etc/hosts counts).
pub fn system_resolver(name: &str) -> std::io::Result<Vec<IpAddr>> {
    Ok((name, 0)
        .to_socket_addrs()?
        .map(|sa: SocketAddr| sa.ip())
        .collect())
}

fn parse_subnet(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        format!("`{text}` is not an IPv4 subnet; write address/prefix, e.g. 192.168.100.0/24")
    })?;
    if net.addr() != net.network() {
        return Err(format!(
            "`{text}` has host bits set; write the network address: {}",
            net.trunc()
        ));
    }
    if net.prefix_len() > MAX_PREFIX {
        return Err(format!(
            "`{text}` leaves no room for a gateway and a DUT; use a prefix of /{MAX_PREFIX} or shorter"
        ));
    }
    if let Some((range, why)) = validate::reserved_overlap(net) {
        let within = if range.contains(&net) {
            "is in"
        } else {
            "overlaps"
        };
        return Err(format!(
            "`{text}` {within} {range}, {why}; DUT subnets come from private space, e.g. 192.168.100.0/24 or 10.0.0.0/24"
        ));
    }
    Ok(net)
}

fn ipv4(p: &mut Vec<Problem>, key: &str, text: &str) -> Option<Ipv4Addr> {
    text.parse()
        .map_err(|_| {
            p.push(Problem::new(
                key,
                format!("`{text}` is not an IPv4 address; write four dotted numbers, e.g. 192.168.100.10"),
            ))
        })
        .ok()
}

/// `Some(None)`: absent (use the default); `None`: present but bad (reported).
fn opt_ipv4(p: &mut Vec<Problem>, key: &str, text: &Option<String>) -> Option<Option<Ipv4Addr>> {
    match text {
        None => Some(None),
        Some(t) => ipv4(p, key, t).map(Some),
    }
}

fn parse_or<T: FromStr<Err = String>>(
    p: &mut Vec<Problem>,
    key: &str,
    text: &Option<String>,
    default: T,
) -> T {
    match text.as_deref().map(T::from_str) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(m)) => {
            p.push(Problem::new(key, m));
            default
        }
    }
}

fn opt_duration(
    p: &mut Vec<Problem>,
    key: &str,
    w: &Option<DurationWire>,
    default: Duration,
) -> Duration {
    match w {
        None => default,
        Some(DurationWire::Seconds(s)) => Duration::from_secs(*s),
        Some(DurationWire::Text(t)) => duration::parse(t).unwrap_or_else(|m| {
            p.push(Problem::new(
                key,
                format!("{m}; write seconds or e.g. \"12h\", \"30m\", \"90s\""),
            ));
            default
        }),
    }
}

fn check(p: &mut Vec<Problem>, key: &str, r: Result<(), String>) {
    if let Err(m) = r {
        p.push(Problem::new(key, m));
    }
}

fn dhcp_options(
    p: &mut Vec<Problem>,
    key: &str,
    w: Option<super::wire::DhcpOptionsWire>,
) -> crate::dhcp::DhcpOptions {
    let mut own = Vec::new();
    let options = super::dhcp_options::build(w.unwrap_or_default(), &mut own);
    p.extend(own.into_iter().map(|q| prefix(key, q)));
    options
}

fn prefix(path: &str, q: Problem) -> Problem {
    Problem::new(join(path, &q.path), q.message)
}

/// `local_ntp`: a boolean, as in jumpstarter; `null` is off.
fn local_ntp(p: &mut Vec<Problem>, value: Option<&serde_yaml::Value>) -> bool {
    match value {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => super::schema::yaml11_bool(v).unwrap_or_else(|| {
            p.push(Problem::new(
                "local_ntp",
                "`local_ntp` is true or false: true serves NTP on the gateway and redirects the DUTs' NTP to it",
            ));
            false
        }),
    }
}
