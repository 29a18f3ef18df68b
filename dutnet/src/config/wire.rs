//! The wire layer: serde structs that mirror one network mapping of the YAML
//! key for key, every value as written (addresses as strings, durations as
//! seconds or text). No defaults and no checks here; [`super::model`] does both.
//!
//! The control socket can deserialize runtime additions into [`AddressWire`] /
//! [`DnsEntryWire`] and convert them with the same `TryFrom` the loader uses.
use serde::{Deserialize, Serialize};

/// One network mapping (the `config:` of a jumpstarter DutNetwork export, an
/// item of `networks:`, or a whole single-network file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkWire {
    pub name: Option<String>,
    pub interface: Option<String>,
    pub subnet: Option<String>,
    pub gateway_ip: Option<String>,
    pub upstream_interface: Option<String>,
    pub dhcp_enabled: Option<bool>,
    pub dhcp_range_start: Option<String>,
    pub dhcp_range_end: Option<String>,
    pub addresses: Option<Vec<AddressWire>>,
    pub dns_servers: Option<Vec<String>>,
    pub dns_entries: Option<Vec<DnsEntryWire>>,
    pub state_dir: Option<String>,
    pub nat_mode: Option<String>,
    pub public_interface: Option<String>,
    /// jumpstarter's `local_ntp` and `enable_tcpdump`: booleans or null
    /// (checked in convert).
    pub local_ntp: Option<serde_yaml::Value>,
    /// jumpstarter keys dutnet does not implement: accepted only when off.
    pub enable_tcpdump: Option<serde_yaml::Value>,
    pub filter: Option<FilterWire>,
    // dutnet's own keys.
    pub datapath: Option<String>,
    pub lease_time: Option<DurationWire>,
    pub domain: Option<String>,
    pub dns_timeout: Option<DurationWire>,
    pub udp_timeout: Option<DurationWire>,
    pub nat_table_size: Option<u64>,
    pub nat_flows_per_dut: Option<u64>,
    pub nat_timeouts: Option<NatTimeoutsWire>,
    pub dhcp_options: Option<DhcpOptionsWire>,
    pub tftp_root: Option<String>,
}

/// `filter:` (jumpstarter 0.9's keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterWire {
    pub egress: Option<FilterDirectionWire>,
    pub ingress: Option<FilterDirectionWire>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterDirectionWire {
    pub policy: Option<String>,
    pub rules: Option<Vec<FilterRuleWire>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRuleWire {
    pub action: Option<String>,
    pub destination: Option<String>,
    pub source: Option<String>,
    pub port: Option<u64>,
    pub protocol: Option<String>,
}

/// `dhcp_options:` of a network or of an address entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpOptionsWire {
    pub next_server: Option<String>,
    pub boot_file: Option<String>,
    pub tftp_server_name: Option<String>,
    pub vendor_specific: Option<String>,
    pub ntp_servers: Option<Vec<String>>,
    pub domain_search: Option<Vec<String>>,
    pub mtu: Option<u64>,
    pub static_routes: Option<Vec<StaticRouteWire>>,
    pub options: Option<Vec<CustomOptionWire>>,
    pub boot_rules: Option<Vec<BootRuleWire>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRouteWire {
    pub destination: Option<String>,
    pub gateway: Option<String>,
}

/// `{code: 224, type: u16, value: 300}`: the value's YAML kind depends on `type`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomOptionWire {
    pub code: Option<u64>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootRuleWire {
    pub arch: Option<String>,
    pub vendor_class: Option<String>,
    pub user_class: Option<String>,
    pub boot_file: Option<String>,
    pub next_server: Option<String>,
}

/// `nat_timeouts:`, idle timeouts by flow state. No `udp`: replied UDP is the
/// top-level `udp_timeout` (the schema refuses a `udp` here).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatTimeoutsWire {
    pub unreplied: Option<DurationWire>,
    pub icmp: Option<DurationWire>,
    pub tcp_syn: Option<DurationWire>,
    pub tcp_established: Option<DurationWire>,
    pub tcp_fin_wait: Option<DurationWire>,
    pub tcp_time_wait: Option<DurationWire>,
    pub tcp_close: Option<DurationWire>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressWire {
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub hostname: Option<String>,
    /// An IPv4 address or a host name resolved when the config is loaded.
    pub public_ip: Option<String>,
    /// jumpstarter's (PR #1068): the DUT's 1:1 traffic leaves tagged on
    /// this VLAN of the public interface.
    pub vlan_id: Option<u64>,
    /// The router of that VLAN (or of the public interface, untagged).
    pub public_gateway: Option<String>,
    pub dhcp_options: Option<DhcpOptionsWire>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsEntryWire {
    pub hostname: Option<String>,
    pub ip: Option<String>,
}

/// `lease_time: 43200` or `lease_time: "12h"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationWire {
    Seconds(u64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::super::schema::{
        ADDRESS_FIELDS, BOOT_RULE_FIELDS, CUSTOM_OPTION_FIELDS, DHCP_OPTION_FIELDS,
        DNS_ENTRY_FIELDS, Field, Kind, NAT_TIMEOUT_FIELDS, NETWORK_FIELDS, STATIC_ROUTE_FIELDS,
    };
    use super::*;

    /// The schema's key lists and the wire structs must name the same keys:
    /// a key added to one only would be rejected or silently dropped.
    fn keys_of<T: Serialize>(value: &T) -> Vec<String> {
        match serde_yaml::to_value(value) {
            Ok(serde_yaml::Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The keys the schema accepts (a refused key has no wire field).
    fn schema_keys(fields: &[Field]) -> Vec<String> {
        fields
            .iter()
            .filter(|f| !matches!(f.kind, Kind::Refused(_)))
            .map(|f| f.key.to_owned())
            .collect()
    }

    #[test]
    fn schema_matches_wire_structs() {
        assert_eq!(
            keys_of(&NetworkWire::default()),
            schema_keys(NETWORK_FIELDS)
        );
        assert_eq!(
            keys_of(&AddressWire::default()),
            schema_keys(ADDRESS_FIELDS)
        );
        assert_eq!(
            keys_of(&DnsEntryWire::default()),
            schema_keys(DNS_ENTRY_FIELDS)
        );
        assert_eq!(
            keys_of(&NatTimeoutsWire::default()),
            schema_keys(NAT_TIMEOUT_FIELDS)
        );
        assert_eq!(
            keys_of(&DhcpOptionsWire::default()),
            schema_keys(DHCP_OPTION_FIELDS)
        );
        assert_eq!(
            keys_of(&StaticRouteWire::default()),
            schema_keys(STATIC_ROUTE_FIELDS)
        );
        assert_eq!(
            keys_of(&CustomOptionWire::default()),
            schema_keys(CUSTOM_OPTION_FIELDS)
        );
        assert_eq!(
            keys_of(&BootRuleWire::default()),
            schema_keys(BOOT_RULE_FIELDS)
        );
    }
}
