//! The rules a network must satisfy. Paths here are relative to the network
//! (`addresses[0].ip`); the loader prefixes them. The control socket's runtime
//! additions go through the same functions ([`Network::check_new_address`]).
use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use crate::datapath::{FlowLimits, expiry::FlowTimeouts};

use super::{
    duration,
    error::{ConfigError, Problem, join},
    model::{
        AddressEntry, DatapathChoice, DnsEntry, MacAddr, NatMode, Network, RESERVED_ROUTE_TABLES,
        nat_timeout_entries,
    },
    names,
};

pub const MIN_LEASE_TIME: Duration = Duration::from_secs(60);
pub const MIN_UDP_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest `nat_timeouts` value: the sweeper looks at most once a second,
/// so a shorter timeout would not be kept, and 0 would end every flow.
pub const MIN_NAT_TIMEOUT: Duration = Duration::from_secs(1);
pub const NAT_TABLE_SIZES: std::ops::RangeInclusive<u32> = 1024..=4_194_304;

/// Whether the subnet and gateway parsed: checks against them are skipped
/// when they did not (that problem is already reported).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub trusted: bool,
    /// Whether `nat_mode` parsed: the rules that depend on it are skipped
    /// when it did not, rather than judged against the default.
    pub nat_mode: bool,
}

impl Network {
    /// Checks an address entry to be added at runtime against this network,
    /// with the same rules the loader applies to the file's `addresses`.
    pub fn check_new_address(&self, entry: &AddressEntry) -> Result<(), ConfigError> {
        let mut seen = SeenAddresses::default();
        for (i, a) in self.addresses.iter().enumerate() {
            seen.add(&format!("addresses[{i}]"), a);
        }
        ConfigError::from_problems(check_address(
            self,
            Layout {
                trusted: true,
                nat_mode: true,
            },
            &seen,
            entry,
        ))
    }

    /// Checks a DNS entry to be added at runtime against this network.
    pub fn check_new_dns_entry(&self, entry: &DnsEntry) -> Result<(), ConfigError> {
        let mut seen = SeenDnsNames::default();
        for (i, e) in self.dns_entries.iter().enumerate() {
            seen.add(&format!("dns_entries[{i}]"), e);
        }
        ConfigError::from_problems(check_dns_entry(&seen, entry))
    }
}

/// The values of the address entries checked so far, each with the path of
/// the first entry that holds it: a lookup per entry keeps checking linear in
/// the number of entries (comparing each with every earlier one took 13 s for
/// 16 000 entries).
#[derive(Debug, Default)]
pub(crate) struct SeenAddresses {
    ips: HashMap<Ipv4Addr, String>,
    macs: HashMap<MacAddr, String>,
    /// Lower-cased: host names are compared without case.
    hostnames: HashMap<String, String>,
    public_ips: HashMap<Ipv4Addr, String>,
    /// The `public_gateway` of each VLAN's first entry: the VLAN's route
    /// table is shared, so its entries need the same one.
    vlan_gateways: HashMap<u16, (Option<Ipv4Addr>, String)>,
}

impl SeenAddresses {
    /// Records `entry` at `path` (a value already seen keeps its first path).
    pub(crate) fn add(&mut self, path: &str, entry: &AddressEntry) {
        self.ips.entry(entry.ip).or_insert_with(|| path.to_owned());
        if let Some(mac) = entry.mac {
            self.macs.entry(mac).or_insert_with(|| path.to_owned());
        }
        if let Some(name) = &entry.hostname {
            self.hostnames
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| path.to_owned());
        }
        if let Some(public) = entry.public_ip {
            self.public_ips
                .entry(public)
                .or_insert_with(|| path.to_owned());
        }
        if let Some(vlan) = entry.vlan_id {
            self.vlan_gateways
                .entry(vlan)
                .or_insert_with(|| (entry.public_gateway, path.to_owned()));
        }
    }
}

/// The DNS names checked so far (lower-cased), each with its first path.
#[derive(Debug, Default)]
pub(crate) struct SeenDnsNames(HashMap<String, String>);

impl SeenDnsNames {
    pub(crate) fn add(&mut self, path: &str, entry: &DnsEntry) {
        self.0
            .entry(entry.hostname.to_ascii_lowercase())
            .or_insert_with(|| path.to_owned());
    }
}

/// One address entry against the network and the entries before it. Paths
/// are relative to the entry (`ip`, `mac`, ...).
pub(crate) fn check_address(
    net: &Network,
    layout: Layout,
    seen: &SeenAddresses,
    entry: &AddressEntry,
) -> Vec<Problem> {
    let mut p = Vec::new();
    let ip = entry.ip;
    if layout.trusted {
        if let Err(why) = host_in_subnet(net, ip) {
            p.push(Problem::new("ip", why));
        } else if ip == net.gateway_ip {
            p.push(Problem::new(
                "ip",
                format!("{ip} is the gateway address (gateway_ip); give the DUT another address"),
            ));
        }
    }
    if let Some(mac) = entry.mac
        && (mac.is_zero() || mac.is_multicast())
    {
        p.push(Problem::new(
            "mac",
            format!(
                "{mac} is a {} address and cannot be a DUT's; use the NIC's unicast MAC",
                if mac.is_zero() { "zero" } else { "multicast" }
            ),
        ));
    }
    if entry.mac.is_none() && !entry.dhcp_options.is_empty() {
        p.push(Problem::new(
            "dhcp_options",
            "applies to the DUT with this entry's MAC; add `mac`, or move the options to the network's `dhcp_options`",
        ));
    }
    if let Some(name) = &entry.hostname
        && let Err(why) = names::check_hostname(name)
    {
        p.push(Problem::new("hostname", why));
    }
    if let Some(public) = entry.public_ip {
        if public.is_unspecified() || public.is_broadcast() || public.is_multicast() {
            p.push(Problem::new(
                "public_ip",
                format!("{public} cannot be a public address; give a unicast address of the upstream network"),
            ));
        } else if let Some((range, why)) = reserved_overlap(ipnet::Ipv4Net::from(public)) {
            p.push(Problem::new(
                "public_ip",
                format!(
                    "{public} is in {range}, {why}; give a unicast address of the upstream network"
                ),
            ));
        } else if layout.trusted && net.subnet.contains(&public) {
            p.push(Problem::new(
                "public_ip",
                format!(
                    "{public} is inside the DUT subnet {}; a public IP belongs to the upstream network",
                    net.subnet
                ),
            ));
        }
        // Under any other mode the address would be accepted and never mapped.
        if layout.nat_mode && net.nat_mode != NatMode::OneToOne {
            p.push(Problem::new(
                "public_ip",
                format!(
                    "{public} needs `nat_mode: {}`, and network `{}` uses `{}`; set the network's nat_mode to `{}`, or remove public_ip",
                    NatMode::OneToOne,
                    net.name,
                    net.nat_mode,
                    NatMode::OneToOne
                ),
            ));
        }
    }
    p.extend(check_policy_route(net, layout, entry));
    if let Some(vlan) = entry.vlan_id
        && let Some((gateway, other_path)) = seen.vlan_gateways.get(&vlan)
        && *gateway != entry.public_gateway
    {
        let shown = |g: &Option<Ipv4Addr>| g.map_or("none".to_owned(), |g| g.to_string());
        p.push(Problem::new(
            "public_gateway",
            format!(
                "VLAN {vlan} has public_gateway {} in {other_path} and {} here; the VLAN's entries share its route table {vlan}, so give them the same gateway",
                shown(gateway),
                shown(&entry.public_gateway)
            ),
        ));
    }
    // Each value is compared with the first earlier entry that holds it.
    if let Some(other_path) = seen.ips.get(&ip) {
        p.push(Problem::new(
            "ip",
            format!("{ip} is already used by {other_path}; every entry needs its own IP"),
        ));
    }
    if let Some(a) = entry.mac
        && let Some(other_path) = seen.macs.get(&a)
    {
        p.push(Problem::new(
            "mac",
            format!("{a} is already used by {other_path}; a MAC can have one static lease"),
        ));
    }
    if let Some(a) = &entry.hostname
        && let Some(other_path) = seen.hostnames.get(&a.to_ascii_lowercase())
    {
        p.push(Problem::new(
            "hostname",
            format!("`{a}` is already used by {other_path}; host names must be unique"),
        ));
    }
    if let Some(a) = entry.public_ip
        && let Some(other_path) = seen.public_ips.get(&a)
    {
        p.push(Problem::new(
            "public_ip",
            format!("{a} is already mapped to {other_path}; each DUT needs its own public IP"),
        ));
    }
    p
}

/// `vlan_id` and `public_gateway` (jumpstarter PR #1068): they route a
/// 1:1 DUT's traffic, so they need its `public_ip`; the route table they
/// use must not be one the kernel reserves.
fn check_policy_route(net: &Network, layout: Layout, entry: &AddressEntry) -> Vec<Problem> {
    let mut p = Vec::new();
    if entry.public_ip.is_none() {
        for (key, given) in [
            ("vlan_id", entry.vlan_id.is_some()),
            ("public_gateway", entry.public_gateway.is_some()),
        ] {
            if given {
                p.push(Problem::new(
                    key,
                    format!("routes the DUT's 1:1 traffic and needs `public_ip` (with `nat_mode: {}`); add public_ip, or remove {key}", NatMode::OneToOne),
                ));
            }
        }
    }
    if let Some(vlan) = entry.vlan_id
        && RESERVED_ROUTE_TABLES.contains(&u32::from(vlan))
    {
        p.push(Problem::new(
            "vlan_id",
            format!("VLAN {vlan} would use route table {vlan}, which the kernel reserves (0 unspec, 253 default, 254 main, 255 local); use another VLAN"),
        ));
    }
    if entry.vlan_id.is_none()
        && let Some(table) = entry.route_table()
        && RESERVED_ROUTE_TABLES.contains(&table)
    {
        p.push(Problem::new(
            "public_gateway",
            format!("untagged, the route table is the DUT address as a number ({table}), which the kernel reserves; give the DUT another address"),
        ));
    }
    if let Some(gateway) = entry.public_gateway {
        if gateway.is_unspecified()
            || gateway.is_broadcast()
            || gateway.is_multicast()
            || gateway.is_loopback()
        {
            p.push(Problem::new(
                "public_gateway",
                format!(
                    "{gateway} cannot be a router; give the unicast address of the VLAN's gateway"
                ),
            ));
        } else if layout.trusted && net.subnet.contains(&gateway) {
            p.push(Problem::new(
                "public_gateway",
                format!(
                    "{gateway} is inside the DUT subnet {}; the public gateway is a router of the public network",
                    net.subnet
                ),
            ));
        } else if Some(gateway) == entry.public_ip {
            p.push(Problem::new(
                "public_gateway",
                format!("{gateway} is the DUT's public_ip; give the VLAN router's address"),
            ));
        }
    }
    p
}

/// Warnings (not errors) about an entry's `vlan_id`, as jumpstarter gives:
/// a VLAN without `public_gateway` gets its sub-interface and the public
/// address, but no route, so the DUT's traffic still leaves by the main
/// table's default route, untagged.
#[must_use]
pub fn address_notes(path: &str, entry: &AddressEntry) -> Vec<String> {
    match (entry.vlan_id, entry.public_gateway) {
        (Some(vlan), None) => vec![format!(
            "{path}.vlan_id: VLAN {vlan} has no public_gateway, so dutnet creates the sub-interface and puts the public address on it but routes nothing there (the DUT's traffic follows the main table, untagged); add public_gateway: the VLAN's router"
        )],
        _ => Vec::new(),
    }
}

pub(crate) fn check_dns_entry(seen: &SeenDnsNames, entry: &DnsEntry) -> Vec<Problem> {
    let mut p = Vec::new();
    if let Err(why) = names::check_hostname(&entry.hostname) {
        p.push(Problem::new("hostname", why));
    }
    if let Some(other_path) = seen.0.get(&entry.hostname.to_ascii_lowercase()) {
        p.push(Problem::new(
            "hostname",
            format!(
                "`{}` is already defined by {other_path}; keep one record per name",
                entry.hostname
            ),
        ));
    }
    p
}

/// IPv4 space a DUT subnet or a public IP can never be in, and why: the
/// kernel drops or never forwards such packets (martians, RFC 1812 5.3.7),
/// so a network using it would come up and pass no traffic. jumpstarter 0.9
/// checks only that the values parse; these are refused because no working
/// lab plan can contain them. Checked in this order (240.0.0.0/4 holds the
/// limited broadcast, which is named on its own).
pub(crate) const RESERVED: &[(Ipv4Addr, u8, &str)] = &[
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "\"this network\" (RFC 1122), never a source or destination on the wire",
    ),
    (
        Ipv4Addr::new(127, 0, 0, 0),
        8,
        "loopback (RFC 1122), which never leaves the host",
    ),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (RFC 3927), which routers must not forward",
    ),
    (
        Ipv4Addr::new(224, 0, 0, 0),
        4,
        "multicast (RFC 5771), not an address of one host",
    ),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "the limited broadcast (RFC 919)",
    ),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved (RFC 1112), which hosts and routers drop",
    ),
];

/// The reserved range `net` overlaps, as `(range, why)`.
pub(crate) fn reserved_overlap(net: ipnet::Ipv4Net) -> Option<(ipnet::Ipv4Net, &'static str)> {
    RESERVED.iter().find_map(|&(addr, len, why)| {
        let range = ipnet::Ipv4Net::new(addr, len).ok()?;
        (range.contains(&net.network()) || net.contains(&range.network())).then_some((range, why))
    })
}

/// `ip` is a usable host address of the subnet (not its network or broadcast address).
fn host_in_subnet(net: &Network, ip: Ipv4Addr) -> Result<(), String> {
    let subnet = net.subnet;
    if !subnet.contains(&ip) {
        return Err(format!(
            "{ip} is outside the subnet {subnet}; pick an address inside it"
        ));
    }
    if ip == subnet.network() {
        return Err(format!(
            "{ip} is the network address of {subnet}; pick a host address"
        ));
    }
    if ip == subnet.broadcast() {
        return Err(format!(
            "{ip} is the broadcast address of {subnet}; pick a host address"
        ));
    }
    Ok(())
}

/// Which keys the file set explicitly (defaults are only checked when they matter).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Explicit {
    pub range: bool,
    /// The default share always fits the table; an explicit one may not.
    pub flows_per_dut: bool,
}

/// The network-wide rules (addresses and DNS entries are checked one by one
/// by the caller).
pub(crate) fn check_network(net: &Network, layout: Layout, explicit: Explicit) -> Vec<Problem> {
    let mut p = Vec::new();
    if layout.trusted {
        if let Err(why) = host_in_subnet(net, net.gateway_ip) {
            p.push(Problem::new("gateway_ip", why));
        }
        if net.dhcp.enabled || explicit.range {
            check_range(net, explicit, &mut p);
        }
    }
    if net.nat_mode == NatMode::OneToOne && net.addresses.iter().all(|a| a.public_ip.is_none()) {
        p.push(Problem::new(
            "nat_mode",
            "`1to1` needs at least one entry in addresses with a public_ip; add one or use `masquerade`",
        ));
    }
    for (key, other) in [
        ("upstream_interface", &net.upstream_interface),
        ("public_interface", &net.public_interface),
    ] {
        if other.as_deref() == Some(net.interface.as_str()) && !net.interface.is_empty() {
            p.push(Problem::new(
                key,
                format!(
                    "`{}` is also the DUT interface; DUT traffic must leave through another NIC",
                    net.interface
                ),
            ));
        }
    }
    if net.dhcp.lease_time < MIN_LEASE_TIME {
        p.push(Problem::new(
            "lease_time",
            format!(
                "{} is too short; use at least {} (e.g. \"12h\")",
                duration::format(net.dhcp.lease_time),
                duration::format(MIN_LEASE_TIME)
            ),
        ));
    }
    if net.nat_timeouts.udp < MIN_UDP_TIMEOUT {
        p.push(Problem::new(
            "udp_timeout",
            format!(
                "{} is too short; use at least 1s (default \"2m\")",
                duration::format(net.nat_timeouts.udp)
            ),
        ));
    }
    let defaults = nat_timeout_entries(&FlowTimeouts::default());
    for ((key, value), (_, default)) in nat_timeout_entries(&net.nat_timeouts)
        .into_iter()
        .zip(defaults)
    {
        if value < MIN_NAT_TIMEOUT {
            p.push(Problem::new(
                join("nat_timeouts", key),
                format!(
                    "{} is too short; use at least {} (default \"{}\")",
                    duration::format(value),
                    duration::format(MIN_NAT_TIMEOUT),
                    duration::format(default)
                ),
            ));
        }
    }
    if net.dns_timeout.is_zero() {
        p.push(Problem::new(
            "dns_timeout",
            "0s would fail every forwarded query; use e.g. \"2s\"",
        ));
    }
    if !NAT_TABLE_SIZES.contains(&net.nat_table_size) {
        p.push(Problem::new(
            "nat_table_size",
            format!(
                "{} is out of range; use {} to {}",
                net.nat_table_size,
                NAT_TABLE_SIZES.start(),
                NAT_TABLE_SIZES.end()
            ),
        ));
    }
    if explicit.flows_per_dut {
        check_flows_per_dut(net, &mut p);
    }
    if let Some(domain) = &net.domain
        && let Err(why) = names::check_hostname(domain)
    {
        p.push(Problem::new("domain", why));
    }
    p
}

fn check_flows_per_dut(net: &Network, p: &mut Vec<Problem>) {
    let (share, table) = (net.nat_flows_per_dut, net.nat_table_size);
    let default = FlowLimits::new(table).per_dut;
    if share == 0 {
        p.push(Problem::new(
            "nat_flows_per_dut",
            format!(
                "0 would refuse every DUT connection; use 1 to {table} (default: half of nat_table_size, {default})"
            ),
        ));
    } else if share > table {
        p.push(Problem::new(
            "nat_flows_per_dut",
            format!(
                "{share} is more than nat_table_size ({table}), the flows of the whole network; use at most {table}, or raise nat_table_size"
            ),
        ));
    }
}

fn check_range(net: &Network, explicit: Explicit, p: &mut Vec<Problem>) {
    let (start, end) = (net.dhcp.range_start, net.dhcp.range_end);
    let mut inside = true;
    for (key, ip, offset) in [
        ("dhcp_range_start", start, 100),
        ("dhcp_range_end", end, 200),
    ] {
        if let Err(why) = host_in_subnet(net, ip) {
            let message = if explicit.range {
                why
            } else {
                format!(
                    "the default {ip} (network address + {offset}) does not fit the subnet {}; set dhcp_range_start and dhcp_range_end",
                    net.subnet
                )
            };
            p.push(Problem::new(key, message));
            inside = false;
        }
    }
    if start > end {
        p.push(Problem::new(
            "dhcp_range_start",
            format!("{start} comes after dhcp_range_end {end}; swap them"),
        ));
    } else if inside && (start..=end).contains(&net.gateway_ip) {
        p.push(Problem::new(
            "dhcp_range_start",
            format!(
                "the range {start} - {end} contains the gateway {}; move the range or the gateway",
                net.gateway_ip
            ),
        ));
    }
}

/// Rules across networks; `paths[i]` is the key path of `nets[i]`, and
/// `subnet_parsed[i]` whether its subnet parsed (the subnet rules skip a
/// network that fell back to the default).
pub(crate) fn check_across(
    nets: &[Network],
    paths: &[String],
    subnet_parsed: &[bool],
) -> Vec<Problem> {
    let mut p = check_nft_subnets(nets, paths, subnet_parsed);
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut duts: HashMap<&str, usize> = HashMap::new();
    let mut public_ips: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (i, net) in nets.iter().enumerate() {
        // An empty name or interface is a "required" problem reported already.
        if net.name.is_empty() {
        } else if let Some(&j) = names.get(net.name.as_str()) {
            p.push(Problem::new(
                join(&paths[i], "name"),
                format!(
                    "`{}` is also the name of {}; network names must be unique",
                    net.name, paths[j]
                ),
            ));
        } else {
            names.insert(&net.name, i);
        }
        if net.interface.is_empty() {
        } else if let Some(&j) = duts.get(net.interface.as_str()) {
            p.push(Problem::new(
                join(&paths[i], "interface"),
                format!(
                    "`{}` is already the DUT interface of {}; each network needs its own NIC",
                    net.interface, paths[j]
                ),
            ));
        } else {
            duts.insert(&net.interface, i);
        }
        for (k, a) in net.addresses.iter().enumerate() {
            let Some(public) = a.public_ip else { continue };
            match public_ips.get(&public) {
                Some(&j) if j != i => p.push(Problem::new(
                    join(&paths[i], &format!("addresses[{k}].public_ip")),
                    format!(
                        "{public} is also a public IP of {}; each DUT needs its own",
                        paths[j]
                    ),
                )),
                _ => {
                    public_ips.insert(public, i);
                }
            }
        }
    }
    // A policy route's table (and a VLAN's sub-interface) is undone with
    // the network that made it, so it serves one network only.
    let mut tables: HashMap<u32, usize> = HashMap::new();
    for (i, net) in nets.iter().enumerate() {
        for (k, a) in net.addresses.iter().enumerate() {
            let Some(table) = a.route_table().or(a.vlan_id.map(u32::from)) else {
                continue;
            };
            match tables.get(&table) {
                Some(&j) if j != i => {
                    let (key, what) = match a.vlan_id {
                        Some(vlan) => ("vlan_id", format!("VLAN {vlan}")),
                        None => ("public_gateway", format!("the policy route of {}", a.ip)),
                    };
                    p.push(Problem::new(
                        join(&paths[i], &format!("addresses[{k}].{key}")),
                        format!(
                            "{what} (route table {table}) is also used by {}; a route table belongs to one network: put these DUTs in one network, or use another VLAN",
                            paths[j]
                        ),
                    ));
                }
                _ => {
                    tables.insert(table, i);
                }
            }
        }
    }
    // A DUT NIC cannot double as another network's way out.
    for (i, net) in nets.iter().enumerate() {
        for (key, other) in [
            ("upstream_interface", &net.upstream_interface),
            ("public_interface", &net.public_interface),
        ] {
            let Some(other) = other else { continue };
            if let Some(&j) = duts.get(other.as_str())
                && j != i
            {
                p.push(Problem::new(
                    join(&paths[i], key),
                    format!(
                        "`{other}` is the DUT interface of {}; pick the uplink NIC",
                        paths[j]
                    ),
                ));
            }
        }
    }
    p
}

/// Networks that ask for `datapath: nft` may not share a subnet with another
/// network: kernel routing cannot tell same-subnet DUT NICs apart, only the
/// eBPF path can. (Two `auto` networks that share a subnet are refused by
/// the daemon only when eBPF fails to load and both fall back to nft.)
/// One problem per network, at its `subnet`, naming the first clash.
fn check_nft_subnets(nets: &[Network], paths: &[String], subnet_parsed: &[bool]) -> Vec<Problem> {
    let parsed = |i: usize| subnet_parsed.get(i).copied().unwrap_or(true);
    let mut p = Vec::new();
    // By subnet: the first network with it, and the first `nft` one. The
    // clash named is the earliest network it conflicts with, found in one
    // lookup (a file may hold many networks).
    let mut seen: HashMap<ipnet::Ipv4Net, (usize, Option<usize>)> = HashMap::new();
    for (j, b) in nets.iter().enumerate() {
        if !parsed(j) {
            continue;
        }
        let subnet = b.subnet.trunc();
        let nft = b.datapath == DatapathChoice::Nft;
        let first = seen.get(&subnet).copied();
        let clash = first
            .and_then(|(any, first_nft)| if nft { Some(any) } else { first_nft })
            .map(|i| (i, &nets[i]));
        let slot = seen.entry(subnet).or_insert((j, None));
        if nft && slot.1.is_none() {
            slot.1 = Some(j);
        }
        if let Some((i, a)) = clash {
            p.push(Problem::new(
                join(&paths[j], "subnet"),
                format!(
                    "networks `{}` and `{}` share the subnet {} (as {} does), which the nftables datapath cannot do (kernel routing cannot tell same-subnet DUT NICs apart); use `datapath: ebpf` for both, or give them different subnets",
                    a.name,
                    b.name,
                    b.subnet.trunc(),
                    paths[i]
                ),
            ));
        }
    }
    p
}

/// Subnets of two networks that overlap in part (one inside the other, not
/// equal), e.g. 192.168.0.0/16 and 192.168.100.0/24. On eBPF this works as
/// identical subnets do: a DUT's traffic is told apart by its NIC. Kernel
/// routing, which the nftables datapath relies on, sends the overlap to the
/// NIC with the longer prefix, so a DUT of the wider network in it is
/// unreachable: refused when either network asks for `nft`, a note (a
/// warning `config check` prints) otherwise. One finding per inner network,
/// naming the narrowest network around it; sorted, so linear after the sort.
pub(crate) fn check_overlaps(
    nets: &[Network],
    paths: &[String],
    subnet_parsed: &[bool],
) -> (Vec<Problem>, Vec<String>) {
    let parsed = |i: usize| subnet_parsed.get(i).copied().unwrap_or(true);
    let mut order: Vec<usize> = (0..nets.len()).filter(|&i| parsed(i)).collect();
    // Wider blocks first at the same start, so an enclosing block comes
    // before what it holds.
    order.sort_by_key(|&i| {
        let net = nets[i].subnet.trunc();
        (u32::from(net.network()), net.prefix_len(), i)
    });
    let (mut problems, mut notes) = (Vec::new(), Vec::new());
    let mut around: Vec<usize> = Vec::new();
    for j in order {
        let inner = nets[j].subnet.trunc();
        while let Some(&i) = around.last() {
            if nets[i].subnet.trunc().contains(&inner) {
                break;
            }
            around.pop();
        }
        // The narrowest block that holds `inner` and is not equal to it.
        let outer = around
            .iter()
            .rev()
            .copied()
            .find(|&i| nets[i].subnet.trunc() != inner);
        if let Some(i) = outer {
            let (a, b) = (&nets[i], &nets[j]);
            let outer_net = a.subnet.trunc();
            if a.datapath == DatapathChoice::Nft || b.datapath == DatapathChoice::Nft {
                problems.push(Problem::new(
                    join(&paths[j], "subnet"),
                    format!(
                        "{inner} of network `{}` overlaps {outer_net} of network `{}` ({}) in part, which the nftables datapath cannot do (kernel routing sends the overlap to the NIC with the longer prefix); use `datapath: ebpf` for both, or give them subnets that do not overlap",
                        b.name, a.name, paths[i]
                    ),
                ));
            } else {
                notes.push(format!(
                    "{}.subnet: {inner} of network `{}` overlaps {outer_net} of network `{}` ({}) in part; the eBPF datapath keeps them apart, but should dutnet fall back to nftables, DUTs of `{}` inside {inner} would be unreachable; give them the same subnet or ones that do not overlap",
                    paths[j], b.name, a.name, paths[i], a.name
                ));
            }
        }
        around.push(j);
    }
    (problems, notes)
}

/// The cross-network datapath rule of [`check_across`] alone, for networks
/// whose `datapath` was changed after loading (`dutnet load --datapath`).
/// Paths are `networks[i]`, by position.
pub fn check_datapaths(nets: &[Network]) -> Result<(), ConfigError> {
    let paths: Vec<String> = (0..nets.len()).map(|i| format!("networks[{i}]")).collect();
    let mut p = check_nft_subnets(nets, &paths, &[]);
    p.extend(check_overlaps(nets, &paths, &[]).0);
    ConfigError::from_problems(p)
}
