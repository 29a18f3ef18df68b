//! Which datapath carries each network: eBPF (the fast path, with the nft
//! table for what it punts) or nft alone (no program attached; the same
//! `ip dutnet` table carries everything).
use std::fmt::Display;

use crate::config::{DatapathChoice, Network};

/// Test hook: when set to `1`, loading the eBPF programs fails as if the
/// kernel refused them, so tests can exercise `auto`'s fallback and
/// `ebpf`'s refusal. Not for production use.
pub const BREAK_EBPF_ENV: &str = "DUTNET_TEST_BREAK_EBPF";

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(
        "{} `datapath: ebpf` but the eBPF datapath cannot load: {reason}; fix that, or set `datapath: auto` (falls back to nftables) or `datapath: nft`",
        describe(networks)
    )]
    EbpfRequired {
        networks: Vec<String>,
        reason: String,
    },
    #[error(
        "networks `{first}` and `{second}` share the subnet {subnet}, which the nftables datapath cannot do (kernel routing cannot tell same-subnet DUT NICs apart): use `datapath: ebpf` for them, or give them different subnets{}",
        if *.fallback { " (the eBPF datapath failed to load, so `auto` fell back to nftables)" } else { "" }
    )]
    SharedSubnet {
        first: String,
        second: String,
        subnet: ipnet::Ipv4Net,
        fallback: bool,
    },
}

fn describe(networks: &[String]) -> String {
    match networks {
        [one] => format!("network `{one}` asks for"),
        many => format!(
            "networks {} ask for",
            many.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The outcome: the loaded eBPF datapath if any network runs on it, and per
/// network (by position) whether it does.
#[derive(Debug)]
pub struct Selection<T> {
    pub ebpf: Option<T>,
    pub on_ebpf: Vec<bool>,
    /// Why `auto` networks fell back to nft, for the one warning line.
    pub fallback_reason: Option<String>,
}

/// Chooses the datapath of every network, calling `load` (the eBPF loader)
/// only when some network may run on eBPF.
pub fn select<T, E: Display>(
    networks: &[&Network],
    load: impl FnOnce() -> Result<T, E>,
) -> Result<Selection<T>, SelectError> {
    let wants_ebpf = |n: &&Network| n.datapath != DatapathChoice::Nft;
    if !networks.iter().any(wants_ebpf) {
        check_shared_subnets(networks, &vec![false; networks.len()], false)?;
        return Ok(Selection {
            ebpf: None,
            on_ebpf: vec![false; networks.len()],
            fallback_reason: None,
        });
    }
    let on_ebpf: Vec<bool> = networks.iter().map(wants_ebpf).collect();
    match load() {
        Ok(ebpf) => {
            check_shared_subnets(networks, &on_ebpf, false)?;
            Ok(Selection {
                ebpf: Some(ebpf),
                on_ebpf,
                fallback_reason: None,
            })
        }
        Err(e) => {
            let required: Vec<String> = networks
                .iter()
                .filter(|n| n.datapath == DatapathChoice::Ebpf)
                .map(|n| n.name.clone())
                .collect();
            if !required.is_empty() {
                return Err(SelectError::EbpfRequired {
                    networks: required,
                    reason: e.to_string(),
                });
            }
            let on_ebpf = vec![false; networks.len()];
            check_shared_subnets(networks, &on_ebpf, true)?;
            Ok(Selection {
                ebpf: None,
                on_ebpf,
                fallback_reason: Some(e.to_string()),
            })
        }
    }
}

/// Refuses a network on nft that shares its subnet with another network:
/// only the eBPF path tells such DUT NICs apart.
pub(super) fn check_shared_subnets(
    networks: &[&Network],
    on_ebpf: &[bool],
    fallback: bool,
) -> Result<(), SelectError> {
    for (i, a) in networks.iter().enumerate() {
        for (j, b) in networks.iter().enumerate().skip(i + 1) {
            let nft = !on_ebpf.get(i).copied().unwrap_or(false)
                || !on_ebpf.get(j).copied().unwrap_or(false);
            if nft && a.subnet.trunc() == b.subnet.trunc() {
                return Err(SelectError::SharedSubnet {
                    first: a.name.clone(),
                    second: b.name.clone(),
                    subnet: a.subnet.trunc(),
                    fallback,
                });
            }
        }
    }
    Ok(())
}

/// The check `dutnet load` runs before touching the host: networks that ask
/// for nft outright may not share a subnet.
pub fn check_config(networks: &[Network]) -> Result<(), SelectError> {
    let refs: Vec<&Network> = networks.iter().collect();
    let on_ebpf: Vec<bool> = networks
        .iter()
        .map(|n| n.datapath != DatapathChoice::Nft)
        .collect();
    check_shared_subnets(&refs, &on_ebpf, false)
}

/// True when the test hook asks the eBPF load to fail.
#[must_use]
pub fn ebpf_broken_for_test() -> bool {
    std::env::var(BREAK_EBPF_ENV).is_ok_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(name: &str, subnet: &str, datapath: &str) -> Network {
        let yaml = format!(
            "networks:\n  - name: {name}\n    interface: dn-{name}\n    subnet: {subnet}\n    datapath: {datapath}\n"
        );
        crate::config::parse_str(&yaml).unwrap().networks.remove(0)
    }

    fn fails() -> Result<(), String> {
        Err("no BTF".to_owned())
    }

    #[test]
    fn nft_networks_never_load_ebpf() {
        let a = network("a", "192.168.100.0/24", "nft");
        let s = select(&[&a], || -> Result<(), String> {
            panic!("eBPF loaded for an nft-only daemon")
        })
        .unwrap();
        assert!(s.ebpf.is_none());
        assert_eq!(s.on_ebpf, [false]);
        assert!(s.fallback_reason.is_none());
    }

    #[test]
    fn a_mix_runs_each_network_on_its_choice() {
        let a = network("a", "192.168.100.0/24", "nft");
        let b = network("b", "192.168.101.0/24", "auto");
        let s = select(&[&a, &b], || Ok::<_, String>(())).unwrap();
        assert!(s.ebpf.is_some());
        assert_eq!(s.on_ebpf, [false, true]);
    }

    #[test]
    fn auto_falls_back_to_nft_saying_why() {
        let a = network("a", "192.168.100.0/24", "auto");
        let s = select(&[&a], fails).unwrap();
        assert!(s.ebpf.is_none());
        assert_eq!(s.on_ebpf, [false]);
        assert_eq!(s.fallback_reason.as_deref(), Some("no BTF"));
    }

    #[test]
    fn ebpf_refuses_to_fall_back_and_names_the_networks() {
        let a = network("a", "192.168.100.0/24", "ebpf");
        let b = network("b", "192.168.101.0/24", "auto");
        let e = select(&[&a, &b], fails).unwrap_err().to_string();
        assert!(e.contains("network `a` asks for `datapath: ebpf`"), "{e}");
        assert!(e.contains("no BTF"), "{e}");
    }

    #[test]
    fn identical_subnets_on_nft_are_refused_naming_both() {
        let a = network("a", "192.168.100.0/24", "nft");
        let b = network("b", "192.168.100.0/24", "auto");
        let e = check_config(&[a.clone(), b.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a` and `b`"), "{e}");
        assert!(e.contains("datapath: ebpf"), "{e}");
        // Both on eBPF: fine. Both `auto` and eBPF failing: refused.
        let c = network("c", "192.168.100.0/24", "auto");
        assert!(check_config(&[b.clone(), c.clone()]).is_ok());
        let e = select(&[&b, &c], fails).unwrap_err().to_string();
        assert!(e.contains("fell back"), "{e}");
    }
}
