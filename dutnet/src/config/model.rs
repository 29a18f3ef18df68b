//! The validated model: what the daemon runs from. Every value is typed, every
//! default filled in, every rule of [`super::validate`] holds.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize, Serializer, ser::SerializeMap};

use super::duration;
use crate::datapath::{expiry::FlowTimeouts, filter::Filter};
use crate::dhcp::DhcpOptions;

/// One isolated network behind one DUT NIC. Serialized with the keys of
/// the `networks:` shape (what `config check` prints loads again), unset
/// optional keys left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    /// Unique among the loaded networks: the `networks[].name`, the
    /// jumpstarter export name, or the interface for a single-network file.
    pub name: String,
    /// The DUT-facing NIC.
    pub interface: String,
    pub subnet: Ipv4Net,
    /// The address dutnet puts on `interface`; the DUTs' default gateway.
    pub gateway_ip: Ipv4Addr,
    /// `None`: the interface of the default route, resolved by the daemon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_interface: Option<String>,
    /// Where 1:1 public IPs live; `None`: the upstream interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_interface: Option<String>,
    pub nat_mode: NatMode,
    pub datapath: DatapathChoice,
    #[serde(flatten)]
    pub dhcp: DhcpSettings,
    pub addresses: Vec<AddressEntry>,
    /// Handed to DHCP clients (and used upstream by the DNS forwarder).
    pub dns_servers: Vec<IpAddr>,
    pub dns_entries: Vec<DnsEntry>,
    /// DNS domain of the DUT host names (`board1` answers as `board1.<domain>` too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(serialize_with = "duration::serialize")]
    pub dns_timeout: Duration,
    /// How long a NAT flow may stay idle, by state. Replied UDP (`udp`) is
    /// the `udp_timeout` key, the other states are `nat_timeouts`; the
    /// normalized model is written with the same two keys.
    #[serde(flatten, serialize_with = "serialize_timeouts")]
    pub nat_timeouts: FlowTimeouts,
    /// Flows the network may hold in the NAT connection table.
    pub nat_table_size: u32,
    /// Flows one DUT (one source address) may hold of those.
    pub nat_flows_per_dut: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Boot and extra DHCP options for every DUT of the network.
    #[serde(skip_serializing_if = "DhcpOptions::is_empty")]
    pub dhcp_options: DhcpOptions,
    /// The directory the network's TFTP server serves; `None`: no TFTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_root: Option<PathBuf>,
    /// What the network's DUTs may open beyond the gateway, and what may be
    /// opened towards them; `None`: everything NAT lets through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// `enable_tcpdump`: every user who may use the control socket may
    /// capture this network's packets (`dutnet capture`); off, only root.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub enable_tcpdump: bool,
    /// `local_ntp`: an NTP server on the gateway, UDP 123 of any address
    /// from the DUTs redirected to it, and DHCP option 42 defaulting to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local_ntp: bool,
}

/// The `nat_timeouts` keys and their values: every state but replied UDP.
pub(crate) fn nat_timeout_entries(t: &FlowTimeouts) -> [(&'static str, Duration); 7] {
    [
        ("unreplied", t.unreplied),
        ("icmp", t.icmp),
        ("tcp_syn", t.tcp_syn),
        ("tcp_established", t.tcp_established),
        ("tcp_fin_wait", t.tcp_fin_wait),
        ("tcp_time_wait", t.tcp_time_wait),
        ("tcp_close", t.tcp_close),
    ]
}

/// `udp_timeout` and `nat_timeouts` as a file writes them, so that what
/// `config check` prints loads again: `nat_timeouts.udp` is refused there,
/// and would say the same value twice.
fn serialize_timeouts<S: Serializer>(t: &FlowTimeouts, s: S) -> Result<S::Ok, S::Error> {
    struct ByState<'a>(&'a FlowTimeouts);
    impl Serialize for ByState<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(
                nat_timeout_entries(self.0)
                    .into_iter()
                    .map(|(key, d)| (key, duration::format(d))),
            )
        }
    }
    let mut map = s.serialize_map(Some(2))?;
    map.serialize_entry("udp_timeout", &duration::format(t.udp))?;
    map.serialize_entry("nat_timeouts", &ByState(t))?;
    map.end()
}

/// How a network's DUTs reach the upstream network. Its names (the file's
/// `nat_mode`, `config check` output, the control socket's status) come from
/// one table, [`NatMode::NAMES`]: serde, `Display` and `FromStr` all read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatMode {
    /// DUTs share the upstream interface's address.
    Masquerade,
    /// Entries with a `public_ip` get it 1:1; the others are masqueraded.
    OneToOne,
    /// No NAT and no forwarding: DHCP/DNS on an isolated segment only.
    Disabled,
}

impl NatMode {
    /// Every mode with its name, in the order the docs list them.
    pub const NAMES: [(Self, &'static str); 3] = [
        (Self::Masquerade, "masquerade"),
        (Self::OneToOne, "1to1"),
        (Self::Disabled, "disabled"),
    ];

    /// The mode's name, as the file spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(mode, _)| *mode == self)
            .map_or("", |(_, name)| name)
    }
}

impl fmt::Display for NatMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NatMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for NatMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // jumpstarter spells `disabled` `none` too.
        let s_or_alias = if s == "none" { "disabled" } else { s };
        Self::NAMES
            .iter()
            .find(|(_, name)| *name == s_or_alias)
            .map(|(mode, _)| *mode)
            .ok_or_else(|| {
                let [(_, a), (_, b), (_, c)] = Self::NAMES;
                format!("`{s}` is not a NAT mode; use `{a}`, `{b}` or `{c}` (or `none`)")
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathChoice {
    /// eBPF when the kernel supports it, nftables otherwise.
    Auto,
    Ebpf,
    Nft,
}

impl FromStr for DatapathChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "ebpf" => Ok(Self::Ebpf),
            "nft" => Ok(Self::Nft),
            _ => Err(format!(
                "`{s}` is not a datapath; use `auto`, `ebpf` or `nft`"
            )),
        }
    }
}

/// Serialized flat into its network, with the file's keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DhcpSettings {
    #[serde(rename = "dhcp_enabled")]
    pub enabled: bool,
    /// The dynamic pool, both ends included.
    #[serde(rename = "dhcp_range_start")]
    pub range_start: Ipv4Addr,
    #[serde(rename = "dhcp_range_end")]
    pub range_end: Ipv4Addr,
    #[serde(serialize_with = "duration::serialize")]
    pub lease_time: Duration,
}

/// A known DUT: a static lease when `mac` is set, a 1:1 mapping when `public_ip` is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddressEntry {
    pub ip: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
    /// The VLAN (1-4094) of the public interface the 1:1 traffic leaves
    /// on, from a sub-interface dutnet creates (`eth0.905`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    /// Where that traffic is routed (policy routing from the DUT): the
    /// VLAN's router, or without `vlan_id` a router of the public
    /// interface other than the default route's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_gateway: Option<Ipv4Addr>,
    /// This DUT's DHCP options, over the network's (needs `mac`).
    #[serde(skip_serializing_if = "DhcpOptions::is_empty")]
    pub dhcp_options: DhcpOptions,
}

/// Routing tables the kernel keeps for itself (`unspec`, `default`,
/// `main`, `local`): a policy route's table must not be one.
pub const RESERVED_ROUTE_TABLES: [u32; 4] = [0, 253, 254, 255];

impl AddressEntry {
    /// The routing table of this DUT's policy route, as jumpstarter (PR
    /// #1068) numbers it: the VLAN id when tagged, the DUT address as a
    /// number when untagged; `None` without `public_gateway` (no route).
    #[must_use]
    pub fn route_table(&self) -> Option<u32> {
        self.public_gateway?;
        Some(self.vlan_id.map_or(u32::from(self.ip), u32::from))
    }
}

/// A custom DNS record the network's resolver answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsEntry {
    pub hostname: String,
    pub ip: Ipv4Addr,
}

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Group bit of the first octet (IEEE 802-2014 §8.2): such an address
    /// cannot be a DHCP client's.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = String;
    /// `aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF`, any case.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a MAC address; write six hex byte pairs like 02:00:00:00:01:0a")
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_both_forms_and_prints_lowercase() {
        let a: Result<MacAddr, _> = "AA-BB-CC-DD-EE-0F".parse();
        let b: Result<MacAddr, _> = "aa:bb:cc:dd:ee:0f".parse();
        assert_eq!(a, b);
        assert_eq!(a.map(|m| m.to_string()), Ok("aa:bb:cc:dd:ee:0f".to_owned()));
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:fg",
            "aaa:b:cc:dd:ee:ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_serde_is_a_string() {
        let m = MacAddr([2, 0, 0, 0, 1, 10]);
        assert_eq!(
            serde_json::to_string(&m).ok(),
            Some("\"02:00:00:00:01:0a\"".into())
        );
        let back: Option<MacAddr> = serde_json::from_str("\"02:00:00:00:01:0A\"").ok();
        assert_eq!(back, Some(m));
    }

    #[test]
    fn nat_mode_none_is_disabled() {
        assert_eq!("none".parse(), Ok(NatMode::Disabled));
        assert_eq!("1to1".parse(), Ok(NatMode::OneToOne));
        assert!("1:1".parse::<NatMode>().is_err());
    }
}
