//! The keys a network mapping may hold and the YAML kind of each value.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key and cannot say
//! where it sits, so this pass walks the parsed YAML first: it reports every
//! unknown key with its full path and a "did you mean" hint, and every value of
//! the wrong kind. What it passes on deserializes into the wire structs.
use serde_yaml::{Mapping, Value};

use super::error::{Problem, join};

/// The YAML kind a key's value must have. `null` is accepted for every kind
/// and means "the default".
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string; a number is turned into its string (an unquoted `10` is fine
    /// where a name is expected, and a bad address then gets a precise message).
    Str,
    Bool,
    /// An integer number of seconds or a duration string.
    Duration,
    /// A non-negative integer. The bound is what the message for an integer
    /// beyond 64 bits names (the model's own rules judge the others, with
    /// the number as written).
    UInt(u64),
    /// A list of strings (numbers accepted as for [`Kind::Str`]).
    StrList,
    /// A list of mappings with these keys.
    Table(&'static [Field]),
    /// A mapping with these keys.
    Mapping(&'static [Field]),
    /// A key people are likely to write here that belongs elsewhere: refused
    /// with this message (saying where), whatever its value, and left out of
    /// the known keys a "did you mean" offers.
    Refused(&'static str),
    /// Anything; the model decides (the jumpstarter keys dutnet does not implement).
    Any,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub key: &'static str,
    pub kind: Kind,
}

const U32_MAX: u64 = u32::MAX as u64;

const fn f(key: &'static str, kind: Kind) -> Field {
    Field { key, kind }
}

pub const ADDRESS_FIELDS: &[Field] = &[
    f("ip", Kind::Str),
    f("mac", Kind::Str),
    f("hostname", Kind::Str),
    f("public_ip", Kind::Str),
    f("vlan_id", Kind::UInt(4094)),
    f("public_gateway", Kind::Str),
    f("dhcp_options", Kind::Mapping(DHCP_OPTION_FIELDS)),
];

pub const FILTER_FIELDS: &[Field] = &[
    f("egress", Kind::Mapping(FILTER_DIRECTION_FIELDS)),
    f("ingress", Kind::Mapping(FILTER_DIRECTION_FIELDS)),
];

pub const FILTER_DIRECTION_FIELDS: &[Field] = &[
    f("policy", Kind::Str),
    f("rules", Kind::Table(FILTER_RULE_FIELDS)),
];

pub const FILTER_RULE_FIELDS: &[Field] = &[
    f("action", Kind::Str),
    f("destination", Kind::Str),
    f("source", Kind::Str),
    f("port", Kind::UInt(65_535)),
    f("protocol", Kind::Str),
];

pub const STATIC_ROUTE_FIELDS: &[Field] = &[f("destination", Kind::Str), f("gateway", Kind::Str)];

/// The value's kind depends on `type`; [`super::dhcp_options`] checks it.
pub const CUSTOM_OPTION_FIELDS: &[Field] = &[
    f("code", Kind::UInt(u64::MAX)),
    f("type", Kind::Str),
    f("value", Kind::Any),
];

pub const BOOT_RULE_FIELDS: &[Field] = &[
    f("arch", Kind::Str),
    f("vendor_class", Kind::Str),
    f("user_class", Kind::Str),
    f("boot_file", Kind::Str),
    f("next_server", Kind::Str),
];

/// `dhcp_options`, of a network or of one address entry.
pub const DHCP_OPTION_FIELDS: &[Field] = &[
    f("next_server", Kind::Str),
    f("boot_file", Kind::Str),
    f("tftp_server_name", Kind::Str),
    f("vendor_specific", Kind::Str),
    f("ntp_servers", Kind::StrList),
    f("domain_search", Kind::StrList),
    f("mtu", Kind::UInt(u64::MAX)),
    f("static_routes", Kind::Table(STATIC_ROUTE_FIELDS)),
    f("options", Kind::Table(CUSTOM_OPTION_FIELDS)),
    f("boot_rules", Kind::Table(BOOT_RULE_FIELDS)),
];

pub const DNS_ENTRY_FIELDS: &[Field] = &[f("hostname", Kind::Str), f("ip", Kind::Str)];

/// `nat_timeouts`: the idle timeout of each flow state but replied UDP, which
/// is the older top-level `udp_timeout`.
pub const NAT_TIMEOUT_FIELDS: &[Field] = &[
    f("unreplied", Kind::Duration),
    f("icmp", Kind::Duration),
    f("tcp_syn", Kind::Duration),
    f("tcp_established", Kind::Duration),
    f("tcp_fin_wait", Kind::Duration),
    f("tcp_time_wait", Kind::Duration),
    f("tcp_close", Kind::Duration),
    f(
        "udp",
        Kind::Refused(
            "replied UDP flows are timed by the network's `udp_timeout`; move this value there",
        ),
    ),
];

/// Every key of a network mapping: jumpstarter DutNetwork's, then dutnet's own.
pub const NETWORK_FIELDS: &[Field] = &[
    f("name", Kind::Str),
    f("interface", Kind::Str),
    f("subnet", Kind::Str),
    f("gateway_ip", Kind::Str),
    f("upstream_interface", Kind::Str),
    f("dhcp_enabled", Kind::Bool),
    f("dhcp_range_start", Kind::Str),
    f("dhcp_range_end", Kind::Str),
    f("addresses", Kind::Table(ADDRESS_FIELDS)),
    f("dns_servers", Kind::StrList),
    f("dns_entries", Kind::Table(DNS_ENTRY_FIELDS)),
    f("state_dir", Kind::Str),
    f("nat_mode", Kind::Str),
    f("public_interface", Kind::Str),
    f("local_ntp", Kind::Any),
    f("enable_tcpdump", Kind::Any),
    f("filter", Kind::Mapping(FILTER_FIELDS)),
    f("datapath", Kind::Str),
    f("lease_time", Kind::Duration),
    f("domain", Kind::Str),
    f("dns_timeout", Kind::Duration),
    f("udp_timeout", Kind::Duration),
    f("nat_table_size", Kind::UInt(U32_MAX)),
    f("nat_flows_per_dut", Kind::UInt(U32_MAX)),
    f("nat_timeouts", Kind::Mapping(NAT_TIMEOUT_FIELDS)),
    f("dhcp_options", Kind::Mapping(DHCP_OPTION_FIELDS)),
    f("tftp_root", Kind::Str),
];

/// Checks `value` against `fields` and normalizes it in place (numbers where
/// strings are expected become strings; unknown keys and wrongly kinded values
/// are removed so the rest can still be deserialized and checked).
pub fn check_mapping(value: &mut Value, fields: &[Field], path: &str, problems: &mut Vec<Problem>) {
    let Value::Mapping(map) = value else {
        problems.push(Problem::new(
            path,
            format!(
                "expected a mapping of keys ({}), found {}",
                keys_list(fields),
                describe(value)
            ),
        ));
        *value = Value::Mapping(Mapping::new());
        return;
    };
    let mut drop = Vec::new();
    for (key, v) in map.iter_mut() {
        let Some(name) = key.as_str() else {
            problems.push(Problem::new(
                path,
                format!(
                    "key {} is not a string; keys are names like `{}`",
                    describe(key),
                    accepted(fields).next().unwrap_or_default()
                ),
            ));
            drop.push(key.clone());
            continue;
        };
        let here = join(path, name);
        let Some(field) = fields.iter().find(|f| f.key == name) else {
            problems.push(unknown_key(&here, name, accepted(fields)));
            drop.push(key.clone());
            continue;
        };
        if !check_value(v, field.kind, &here, problems) {
            drop.push(key.clone());
        }
    }
    for key in drop {
        map.remove(&key);
    }
}

/// The "unknown key" problem, with the closest known key when one is close.
pub fn unknown_key<'a>(path: &str, key: &str, known: impl Iterator<Item = &'a str>) -> Problem {
    let known: Vec<&str> = known.collect();
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let message = match best {
        Some((score, k)) if score > 0.8 => format!("unknown key; did you mean `{k}`?"),
        _ => format!("unknown key; known keys are {}", known.join(", ")),
    };
    Problem::new(path, message)
}

/// The keys of `fields` a mapping takes (not the [`Kind::Refused`] ones).
fn accepted(fields: &[Field]) -> impl Iterator<Item = &'static str> + '_ {
    fields
        .iter()
        .filter(|f| !matches!(f.kind, Kind::Refused(_)))
        .map(|f| f.key)
}

/// `false` when the value is unusable (the caller then drops the key).
fn check_value(v: &mut Value, kind: Kind, path: &str, problems: &mut Vec<Problem>) -> bool {
    // Even `null`: the key itself is the mistake.
    if let Kind::Refused(message) = kind {
        problems.push(Problem::new(path, message));
        return false;
    }
    if v.is_null() {
        return true;
    }
    // A number beyond the key's range, reported as written.
    // A negative one is of the wrong kind, reported below.
    let too_big = |max: u64, unit: &str| {
        huge_digits(v)
            .filter(|digits| !digits.starts_with('-'))
            .map(|n| {
                Problem::new(
                    path,
                    format!("{n} is too large; must be at most {max}{unit}"),
                )
            })
    };
    let limit = match kind {
        Kind::UInt(max) => too_big(max, ""),
        Kind::Duration => too_big(u64::MAX, " seconds"),
        _ => None,
    };
    if let Some(problem) = limit {
        problems.push(problem);
        return false;
    }
    let ok = match kind {
        Kind::Any => true,
        Kind::Str => normalize_str(v),
        Kind::Bool => normalize_bool(v),
        Kind::UInt(_) => v.is_u64(),
        Kind::Duration => v.is_u64() || v.is_string(),
        Kind::StrList => match v {
            Value::Sequence(items) => {
                let mut all = true;
                for (i, item) in items.iter_mut().enumerate() {
                    if !normalize_str(item) {
                        problems.push(Problem::new(
                            format!("{path}[{i}]"),
                            format!("expected a string, found {}", describe(item)),
                        ));
                        all = false;
                    }
                }
                // Reported item by item above.
                if !all {
                    return false;
                }
                true
            }
            _ => false,
        },
        Kind::Table(fields) => match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    check_mapping(item, fields, &format!("{path}[{i}]"), problems);
                }
                true
            }
            _ => false,
        },
        Kind::Mapping(fields) => {
            // Reported key by key, or as a whole when not a mapping.
            check_mapping(v, fields, path, problems);
            return true;
        }
        // Reported above.
        Kind::Refused(_) => return false,
    };
    if !ok {
        problems.push(Problem::new(
            path,
            format!("expected {}, found {}", expected(kind), describe(v)),
        ));
    }
    ok
}

/// The digits of an integer too big for 64 bits (see [`super::shape`]).
fn huge_digits(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == super::shape::HUGE_INTEGER_TAG => t.value.as_str(),
        _ => None,
    }
}

/// A boolean, or a YAML 1.1 one written as a word: jumpstarter reads its
/// files with PyYAML (`yaml.safe_load`, YAML 1.1), where an unquoted `yes`,
/// `no`, `on` or `off` is a boolean, and serde_yaml (YAML 1.2) reads them
/// as strings. Exactly PyYAML's spellings; `y` and `n` are strings there too.
pub fn yaml11_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn normalize_bool(v: &mut Value) -> bool {
    match yaml11_bool(v) {
        Some(b) => {
            *v = Value::Bool(b);
            true
        }
        None => false,
    }
}

fn normalize_str(v: &mut Value) -> bool {
    if let Some(digits) = huge_digits(v) {
        *v = Value::String(digits.to_owned());
        return true;
    }
    match v {
        Value::String(_) => true,
        Value::Number(n) => {
            *v = Value::String(n.to_string());
            true
        }
        _ => false,
    }
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "a string",
        Kind::Bool => {
            "true or false (yes/no and on/off too, as jumpstarter's YAML 1.1 loader reads them)"
        }
        Kind::Duration => {
            "a duration (seconds as an integer, or a string like \"12h\", \"30m\", \"90s\")"
        }
        Kind::UInt(_) => "a non-negative integer",
        Kind::StrList => "a list of strings",
        Kind::Table(_) => "a list of mappings",
        Kind::Mapping(_) => "a mapping",
        Kind::Any | Kind::Refused(_) => "any value",
    }
}

/// A short description of a YAML value for messages: its kind and, for
/// scalars, the value itself.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) if huge_digits(v).is_some() => {
            format!("the number {}", huge_digits(v).unwrap_or_default())
        }
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn keys_list(fields: &[Field]) -> String {
    accepted(fields).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str, fields: &[Field]) -> (Value, Vec<Problem>) {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap_or(Value::Null);
        let mut problems = Vec::new();
        check_mapping(&mut v, fields, "net", &mut problems);
        (v, problems)
    }

    #[test]
    fn unknown_nested_key_gets_path_and_hint() {
        let (_, p) = run(
            "interface: eth0\naddresses:\n  - ip: 1.2.3.4\n    hostnme: x\n",
            NETWORK_FIELDS,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "net.addresses[0].hostnme");
        assert!(
            p[0].message.contains("did you mean `hostname`?"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn far_off_key_lists_known_keys() {
        let (_, p) = run("interface: eth0\nzzzzqqq: 1\n", NETWORK_FIELDS);
        assert!(p[0].message.contains("known keys are"), "{}", p[0].message);
    }

    #[test]
    fn wrong_kinds_are_reported_and_dropped() {
        let (v, p) = run(
            "interface: [a]\ndhcp_enabled: \"maybe\"\nnat_table_size: -1\n",
            NETWORK_FIELDS,
        );
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["net.interface", "net.dhcp_enabled", "net.nat_table_size"]
        );
        assert_eq!(v.as_mapping().map(Mapping::len), Some(0));
    }

    #[test]
    fn numbers_become_strings() {
        let (v, p) = run("interface: 10\n", NETWORK_FIELDS);
        assert!(p.is_empty());
        assert_eq!(v["interface"], Value::String("10".into()));
    }
}
