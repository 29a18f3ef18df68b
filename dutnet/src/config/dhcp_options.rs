//! `dhcp_options` wire -> [`DhcpOptions`]: every value parsed and checked to
//! fit its DHCP option, each problem at its key path (relative to the
//! `dhcp_options` mapping; the caller prefixes it).
use std::{net::Ipv4Addr, str::FromStr};

use dhcproto::Name;
use ipnet::Ipv4Net;
use serde_yaml::Value;

use crate::dhcp::options::{
    BootRule, CustomOption, DhcpOptions, NAMED_CODES, OptionValue, SERVER_OWNED_CODES, StaticRoute,
};

use super::{
    error::{Problem, join},
    names,
    schema::describe,
    wire::{BootRuleWire, CustomOptionWire, DhcpOptionsWire, StaticRouteWire},
};

/// A DHCP option carries at most 255 bytes (RFC 2132 2); dutnet does not
/// split configured values across instances (RFC 3396), since many boot
/// ROMs do not join them.
const MAX_OPTION_LEN: usize = 255;
/// The BOOTP `file` field is 128 bytes, NUL-terminated (RFC 951).
const MAX_BOOT_FILE_LEN: usize = 127;
/// RFC 2132 5.1: the smallest legal MTU.
const MIN_MTU: u64 = 68;

/// RFC 4578 2.1 names for option 93 (IANA "Processor Architecture Types").
const ARCH_NAMES: &[(&str, u16)] = &[
    ("bios", 0),
    ("x86_bios", 0),
    ("efi_ia32", 6),
    ("efi_x64", 7),
    ("uefi", 7),
    ("efi_bc", 9),
    ("efi_arm32", 10),
    ("efi_arm64", 11),
];

pub(crate) fn build(w: DhcpOptionsWire, p: &mut Vec<Problem>) -> DhcpOptions {
    let next_server = w.next_server.and_then(|t| ipv4(p, "next_server", &t));
    let boot_file = w.boot_file.filter(|f| boot_file_ok(p, "boot_file", f));
    let tftp_server_name = w.tftp_server_name.filter(|n| {
        fits(p, "tftp_server_name", n.len(), "the name")
            && not_empty(p, "tftp_server_name", n.is_empty())
    });
    let vendor_specific = w
        .vendor_specific
        .and_then(|t| hex(p, "vendor_specific", &t))
        .filter(|b| fits(p, "vendor_specific", b.len(), "the value"));
    let ntp_servers = w.ntp_servers.map(|list| ipv4_list(p, "ntp_servers", &list));
    let domain_search = w.domain_search.map(|list| {
        list.into_iter()
            .enumerate()
            .filter(|(i, name)| {
                let key = format!("domain_search[{i}]");
                match names::check_hostname(name) {
                    Err(why) => {
                        p.push(Problem::new(key, why));
                        false
                    }
                    Ok(()) if Name::from_str(name).is_err() => {
                        p.push(Problem::new(key, format!("`{name}` is not a DNS name")));
                        false
                    }
                    Ok(()) => true,
                }
            })
            .map(|(_, name)| name)
            .collect()
    });
    let mtu = w.mtu.and_then(|n| match u16::try_from(n) {
        Ok(m) if n >= MIN_MTU => Some(m),
        _ => {
            p.push(Problem::new(
                "mtu",
                format!("{n} is not an interface MTU; give {MIN_MTU} to 65535, e.g. 1500"),
            ));
            None
        }
    });
    let static_routes = w.static_routes.map(|routes| {
        routes
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| static_route(p, &format!("static_routes[{i}]"), r))
            .collect::<Vec<_>>()
    });
    if let Some(routes) = &static_routes {
        // 1 prefix byte, up to 4 address bytes and a 4-byte gateway each.
        let len: usize = routes
            .iter()
            .map(|r| 5 + usize::from(r.destination.prefix_len()).div_ceil(8))
            .sum();
        fits(p, "static_routes", len, "the routes");
    }
    let mut custom: Vec<CustomOption> = Vec::new();
    for (i, o) in w.options.into_iter().flatten().enumerate() {
        let path = format!("options[{i}]");
        if let Some(option) = custom_option(p, &path, o) {
            if custom.iter().any(|c| c.code == option.code) {
                p.push(Problem::new(
                    join(&path, "code"),
                    format!("option {} is given twice; keep one of them", option.code),
                ));
            } else {
                custom.push(option);
            }
        }
    }
    let boot_rules = w
        .boot_rules
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| boot_rule(p, &format!("boot_rules[{i}]"), r))
        .collect();
    DhcpOptions {
        next_server,
        boot_file,
        tftp_server_name,
        vendor_specific,
        ntp_servers,
        domain_search,
        mtu,
        static_routes,
        custom,
        boot_rules,
    }
}

fn static_route(p: &mut Vec<Problem>, path: &str, r: StaticRouteWire) -> Option<StaticRoute> {
    let destination = match r.destination {
        None => {
            p.push(Problem::new(
                join(path, "destination"),
                "is required; give the routed subnet, e.g. 10.20.0.0/16",
            ));
            None
        }
        Some(t) => match t.parse::<Ipv4Net>() {
            Ok(net) if net.addr() == net.network() => Some(net),
            Ok(net) => {
                p.push(Problem::new(
                    join(path, "destination"),
                    format!("`{t}` has host bits set; write {}", net.trunc()),
                ));
                None
            }
            Err(_) => {
                p.push(Problem::new(
                    join(path, "destination"),
                    format!("`{t}` is not an IPv4 subnet; write e.g. 10.20.0.0/16"),
                ));
                None
            }
        },
    };
    let gateway = match r.gateway {
        None => {
            p.push(Problem::new(
                join(path, "gateway"),
                "is required; give the router's address on the DUT network",
            ));
            None
        }
        Some(t) => ipv4(p, &join(path, "gateway"), &t),
    };
    Some(StaticRoute {
        destination: destination?,
        gateway: gateway?,
    })
}

fn custom_option(p: &mut Vec<Problem>, path: &str, o: CustomOptionWire) -> Option<CustomOption> {
    let code_key = join(path, "code");
    let code = match o.code {
        None => {
            p.push(Problem::new(
                &code_key,
                "is required; give the option number, e.g. `code: 224`",
            ));
            None
        }
        Some(n) => match u8::try_from(n) {
            Err(_) => {
                p.push(Problem::new(
                    &code_key,
                    format!("{n} is not a DHCPv4 option code; codes are 1 to 254"),
                ));
                None
            }
            Ok(c) => {
                if let Some((_, what)) = SERVER_OWNED_CODES.iter().find(|(k, _)| *k == c) {
                    p.push(Problem::new(
                        &code_key,
                        format!(
                            "option {c} is {what}, which dutnet sets itself; remove this entry"
                        ),
                    ));
                    None
                } else if let Some((_, key)) = NAMED_CODES.iter().find(|(k, _)| *k == c) {
                    p.push(Problem::new(
                        &code_key,
                        format!("option {c} has its own key; write it as `dhcp_options.{key}`"),
                    ));
                    None
                } else {
                    Some(c)
                }
            }
        },
    };
    let type_key = join(path, "type");
    let value_key = join(path, "value");
    let Some(kind) = o.kind else {
        p.push(Problem::new(
            type_key,
            "is required; one of ip, ips, u8, u16, u32, string, hex",
        ));
        return None;
    };
    let Some(value) = o.value.filter(|v| !v.is_null()) else {
        p.push(Problem::new(value_key, "is required"));
        return None;
    };
    let value = typed_value(&kind, &value).map_err(|why| match why {
        ValueError::Type => Problem::new(
            &type_key,
            format!("`{kind}` is not an option type; use ip, ips, u8, u16, u32, string or hex"),
        ),
        ValueError::Value(m) => Problem::new(&value_key, m),
    });
    let value = match value {
        Ok(v) => v,
        Err(problem) => {
            p.push(problem);
            return None;
        }
    };
    let len = value.encode().len();
    if len == 0 {
        p.push(Problem::new(
            value_key,
            "is empty; an option needs at least one byte",
        ));
        return None;
    }
    if !fits(p, &value_key, len, "the value") {
        return None;
    }
    Some(CustomOption { code: code?, value })
}

enum ValueError {
    Type,
    Value(String),
}

/// The YAML value read as `kind`.
fn typed_value(kind: &str, v: &Value) -> Result<OptionValue, ValueError> {
    let text = || match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let int = |max: u64| -> Result<u64, ValueError> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        n.filter(|n| *n <= max).ok_or_else(|| {
            ValueError::Value(format!(
                "{} is not a {kind}; give an integer from 0 to {max}",
                describe(v)
            ))
        })
    };
    let ip = |t: &str| {
        t.parse::<Ipv4Addr>().map_err(|_| {
            ValueError::Value(format!(
                "`{t}` is not an IPv4 address; write e.g. 192.168.100.1"
            ))
        })
    };
    Ok(match kind {
        "ip" => OptionValue::Ip(ip(&text().ok_or_else(|| {
            ValueError::Value(format!("expected an address, found {}", describe(v)))
        })?)?),
        "ips" => match v {
            Value::Sequence(items) => OptionValue::Ips(
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => ip(s),
                        other => Err(ValueError::Value(format!(
                            "expected an address, found {}",
                            describe(other)
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::String(s) => OptionValue::Ips(vec![ip(s)?]),
            other => {
                return Err(ValueError::Value(format!(
                    "expected a list of addresses, found {}",
                    describe(other)
                )));
            }
        },
        "u8" => OptionValue::U8(int(u8::MAX.into())? as u8),
        "u16" => OptionValue::U16(int(u16::MAX.into())? as u16),
        "u32" => OptionValue::U32(int(u32::MAX.into())? as u32),
        "string" => OptionValue::String(text().ok_or_else(|| {
            ValueError::Value(format!("expected a string, found {}", describe(v)))
        })?),
        "hex" => {
            let t = text().ok_or_else(|| {
                ValueError::Value(format!("expected hex bytes, found {}", describe(v)))
            })?;
            OptionValue::Hex(parse_hex(&t).map_err(ValueError::Value)?)
        }
        _ => return Err(ValueError::Type),
    })
}

fn boot_rule(p: &mut Vec<Problem>, path: &str, r: BootRuleWire) -> Option<BootRule> {
    let arch = r.arch.as_deref().and_then(|t| {
        parse_arch(t)
            .map_err(|m| p.push(Problem::new(join(path, "arch"), m)))
            .ok()
    });
    if r.arch.is_none() && r.vendor_class.is_none() && r.user_class.is_none() {
        p.push(Problem::new(
            path,
            "matches no client; give `arch`, `vendor_class` or `user_class` (or use the plain `boot_file`)",
        ));
    }
    let next_server = r
        .next_server
        .and_then(|t| ipv4(p, &join(path, "next_server"), &t));
    let boot_file = match r.boot_file {
        None => {
            p.push(Problem::new(
                join(path, "boot_file"),
                "is required; give the file these clients boot, e.g. `ipxe.efi`",
            ));
            None
        }
        Some(f) => boot_file_ok(p, &join(path, "boot_file"), &f).then_some(f),
    };
    Some(BootRule {
        arch: if r.arch.is_some() { Some(arch?) } else { None },
        vendor_class: r.vendor_class,
        user_class: r.user_class,
        boot_file: boot_file?,
        next_server,
    })
}

fn parse_arch(t: &str) -> Result<u16, String> {
    if let Ok(n) = t.parse::<u16>() {
        return Ok(n);
    }
    ARCH_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(t))
        .map(|(_, n)| *n)
        .ok_or_else(|| {
            let names: Vec<&str> = ARCH_NAMES.iter().map(|(n, _)| *n).collect();
            format!(
                "`{t}` is not a client architecture; give the option 93 number (0 BIOS, 7 EFI x64, 11 EFI arm64, ...) or one of {}",
                names.join(", ")
            )
        })
}

/// `01:02:ff`, `01 02 ff` or `0102ff`.
fn parse_hex(t: &str) -> Result<Vec<u8>, String> {
    let digits: String = t
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    let bad = || format!("`{t}` is not hex bytes; write pairs of hex digits like 01:02:ff");
    if !digits.len().is_multiple_of(2) || !digits.is_ascii() {
        return Err(bad());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

fn hex(p: &mut Vec<Problem>, key: &str, t: &str) -> Option<Vec<u8>> {
    parse_hex(t).map_err(|m| p.push(Problem::new(key, m))).ok()
}

fn ipv4(p: &mut Vec<Problem>, key: &str, t: &str) -> Option<Ipv4Addr> {
    t.parse()
        .map_err(|_| {
            p.push(Problem::new(
                key,
                format!("`{t}` is not an IPv4 address; write e.g. 192.168.100.1"),
            ))
        })
        .ok()
}

fn ipv4_list(p: &mut Vec<Problem>, key: &str, list: &[String]) -> Vec<Ipv4Addr> {
    let ips: Vec<Ipv4Addr> = list
        .iter()
        .enumerate()
        .filter_map(|(i, t)| ipv4(p, &format!("{key}[{i}]"), t))
        .collect();
    fits(p, key, ips.len() * 4, "the addresses");
    ips
}

fn boot_file_ok(p: &mut Vec<Problem>, key: &str, file: &str) -> bool {
    if file.is_empty() {
        p.push(Problem::new(
            key,
            "is empty; give a file name or remove the key",
        ));
        return false;
    }
    if file.len() > MAX_BOOT_FILE_LEN {
        p.push(Problem::new(
            key,
            format!(
                "is {} bytes long; the BOOTP file field holds at most {MAX_BOOT_FILE_LEN}: shorten the path",
                file.len()
            ),
        ));
        return false;
    }
    true
}

fn fits(p: &mut Vec<Problem>, key: &str, len: usize, what: &str) -> bool {
    if len > MAX_OPTION_LEN {
        p.push(Problem::new(
            key,
            format!("{what} takes {len} bytes; a DHCP option holds at most {MAX_OPTION_LEN}"),
        ));
        return false;
    }
    true
}

fn not_empty(p: &mut Vec<Problem>, key: &str, empty: bool) -> bool {
    if empty {
        p.push(Problem::new(
            key,
            "is empty; give a value or remove the key",
        ));
    }
    !empty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (DhcpOptions, Vec<Problem>) {
        let w: DhcpOptionsWire = serde_yaml::from_str(yaml).unwrap_or_default();
        let mut p = Vec::new();
        let o = build(w, &mut p);
        (o, p)
    }

    fn paths(p: &[Problem]) -> Vec<&str> {
        p.iter().map(|q| q.path.as_str()).collect()
    }

    #[test]
    fn every_key_parses() {
        let (o, p) = run(r#"
next_server: 192.168.100.1
boot_file: pxelinux.0
tftp_server_name: boot.lab
vendor_specific: "01:04:de:ad:be:ef"
ntp_servers: [192.168.100.1]
domain_search: [lab.local, example.org]
mtu: 1400
static_routes:
  - {destination: 10.20.0.0/16, gateway: 192.168.100.254}
options:
  - {code: 224, type: string, value: hello}
  - {code: 225, type: u16, value: 300}
  - {code: 226, type: ips, value: [10.0.0.1, 10.0.0.2]}
  - {code: 227, type: hex, value: "0a0b"}
  - {code: 228, type: u32, value: 7}
  - {code: 229, type: ip, value: 10.0.0.9}
  - {code: 230, type: u8, value: 255}
boot_rules:
  - {arch: efi_x64, boot_file: grubx64.efi}
  - {user_class: iPXE, boot_file: "http://192.168.100.1/boot.ipxe"}
"#);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.boot_file.as_deref(), Some("pxelinux.0"));
        assert_eq!(o.vendor_specific, Some(vec![1, 4, 0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(o.mtu, Some(1400));
        assert_eq!(o.custom.len(), 7);
        assert_eq!(o.custom[1].value.encode(), [1, 44]);
        assert_eq!(o.boot_rules[0].arch, Some(7));
    }

    #[test]
    fn values_that_do_not_fit_name_their_key() {
        let (_, p) = run(r#"
next_server: 1.2.3
mtu: 20
boot_file: ""
vendor_specific: "zz"
static_routes:
  - {destination: 10.20.0.1/16}
options:
  - {code: 224, type: u8, value: 256}
  - {code: 3, type: ip, value: 1.2.3.4}
  - {code: 67, type: string, value: x}
  - {code: 225, type: float, value: 1}
  - {code: 226, type: string, value: ""}
  - {code: 300, type: u8, value: 1}
boot_rules:
  - {boot_file: x.efi}
  - {arch: mips}
"#);
        assert_eq!(
            paths(&p),
            [
                "next_server",
                "boot_file",
                "vendor_specific",
                "mtu",
                "static_routes[0].destination",
                "static_routes[0].gateway",
                "options[0].value",
                "options[1].code",
                "options[2].code",
                "options[3].type",
                "options[4].value",
                "options[5].code",
                "boot_rules[0]",
                "boot_rules[1].arch",
                "boot_rules[1].boot_file",
            ]
        );
        assert!(p[8].message.contains("dhcp_options.boot_file"), "{}", p[8]);
    }

    #[test]
    fn long_values_are_refused() {
        let long = "a".repeat(128);
        let (_, p) = run(&format!(
            "boot_file: {long}\noptions:\n  - {{code: 224, type: string, value: {}}}\n",
            "b".repeat(256)
        ));
        assert_eq!(paths(&p), ["boot_file", "options[0].value"]);
    }
}
