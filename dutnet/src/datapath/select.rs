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
    /// Only when `auto` fell back: networks that ask for `datapath: nft`
    /// outright are refused by the config rule
    /// ([`crate::config::check_datapaths`]) before anything starts.
    #[error(
        "networks `{first}` and `{second}` share the subnet {subnet}, which the nftables datapath cannot do (kernel routing cannot tell same-subnet DUT NICs apart), and the eBPF datapath failed to load, so `auto` fell back to nftables: fix the eBPF load, or give them different subnets"
    )]
    SharedSubnet {
        first: String,
        second: String,
        subnet: ipnet::Ipv4Net,
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

/// Whether `network` would run on the programs if they load (`ebpf` or
/// `auto`).
#[must_use]
pub fn wants_ebpf(network: &Network) -> bool {
    network.datapath != DatapathChoice::Nft
}

/// Chooses the datapath of every network, calling `load` (the eBPF loader)
/// only when some network may run on eBPF.
pub fn select<T, E: Display>(
    networks: &[&Network],
    load: impl FnOnce() -> Result<T, E>,
) -> Result<Selection<T>, SelectError> {
    if !networks.iter().any(|n| wants_ebpf(n)) {
        return Ok(Selection {
            ebpf: None,
            on_ebpf: vec![false; networks.len()],
            fallback_reason: None,
        });
    }
    let on_ebpf: Vec<bool> = networks.iter().map(|n| wants_ebpf(n)).collect();
    match load() {
        Ok(ebpf) => Ok(Selection {
            ebpf: Some(ebpf),
            on_ebpf,
            fallback_reason: None,
        }),
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
            check_fallback_subnets(networks)?;
            let on_ebpf = vec![false; networks.len()];
            Ok(Selection {
                ebpf: None,
                on_ebpf,
                fallback_reason: Some(e.to_string()),
            })
        }
    }
}

/// After `auto` fell back, every network is on nft: refuses two that share
/// a subnet, which only the eBPF path tells apart. (Networks that chose nft
/// themselves were checked with the config.)
pub fn check_fallback_subnets(networks: &[&Network]) -> Result<(), SelectError> {
    for (i, a) in networks.iter().enumerate() {
        if let Some(b) = networks[i + 1..]
            .iter()
            .find(|b| a.subnet.trunc() == b.subnet.trunc())
        {
            return Err(SelectError::SharedSubnet {
                first: a.name.clone(),
                second: b.name.clone(),
                subnet: a.subnet.trunc(),
            });
        }
    }
    Ok(())
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
    fn identical_subnets_are_refused_only_after_a_fallback() {
        // Explicit `datapath: nft` clashes are the config's (config/tests.rs).
        let b = network("b", "192.168.100.0/24", "auto");
        let c = network("c", "192.168.100.0/24", "auto");
        let s = select(&[&b, &c], || Ok::<_, String>(())).unwrap();
        assert_eq!(s.on_ebpf, [true, true]);
        let e = select(&[&b, &c], fails).unwrap_err().to_string();
        assert!(e.contains("`b` and `c`"), "{e}");
        assert!(e.contains("192.168.100.0/24"), "{e}");
        assert!(e.contains("fell back"), "{e}");
        let d = network("d", "192.168.101.0/24", "auto");
        assert!(select(&[&b, &d], fails).is_ok());
    }
}
