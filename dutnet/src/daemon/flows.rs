//! `dutnet flows`: the connection table of the networks on the eBPF
//! datapath, listed the way `conntrack -L` lists conntrack's. A network on
//! the nft datapath has no entries there: its flows are the kernel's
//! conntrack entries, and the reply says how to list them.
use std::collections::{BTreeMap, BTreeSet};

use super::supervisor::Daemon;
use crate::{
    config::{NatMode, Network},
    control::{
        Failure, Reply,
        protocol::{FlowInfo, FlowsElsewhere, flow_limit},
    },
    datapath::{
        Carrier, Datapath as _,
        ebpf::{Flow, FlowListing},
    },
};
use dutnet_common::nat::protocol;

impl Daemon {
    /// The flows of network `network` (or every network), at most `limit`
    /// ([`flow_limit`]).
    pub(super) fn flows(
        &self,
        network: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Reply, Failure> {
        let limit = flow_limit(limit)?;
        // The eBPF networks whose DUT NIC is taken over, by ifindex: their
        // place in the config (the order networks are listed in) and name.
        let mut on_ebpf = BTreeMap::new();
        let mut elsewhere = Vec::new();
        for index in self.select_many(network)? {
            let net = &self.networks[index];
            if net.config.nat_mode == NatMode::Disabled {
                // Forwards nothing: no flows on either datapath.
                continue;
            }
            match self.datapath.planned(&net.config.interface) {
                Carrier::Ebpf(_) => {
                    if let Some(ifindex) = net.ifindex() {
                        on_ebpf.insert(ifindex, (index, net.config.name.as_str()));
                    }
                }
                _ => elsewhere.push(in_conntrack(&net.config)),
            }
        }
        let listing = if on_ebpf.is_empty() {
            FlowListing::default()
        } else {
            let ifindexes: BTreeSet<u32> = on_ebpf.keys().copied().collect();
            self.datapath.flows(&ifindexes, limit).map_err(|e| {
                Failure::failed(format!(
                    "reading the connection table failed: {e}; try again, and see the dutnet log if it persists"
                ))
            })?
        };
        let mut flows: Vec<(usize, &str, &Flow)> = listing
            .flows
            .iter()
            .filter_map(|f| {
                let &(index, name) = on_ebpf.get(&f.dut_ifindex)?;
                Some((index, name, f))
            })
            .collect();
        flows.sort_by_key(|&(index, _, f)| (index, f.idle));
        let flows: Vec<FlowInfo> = flows
            .into_iter()
            .map(|(_, name, f)| flow_info(name, f))
            .collect();
        Ok(Reply::Flows {
            shown: flows.len() as u64,
            flows,
            total: listing.total,
            elsewhere,
        })
    }
}

/// Where the flows of a network on the nft datapath are.
fn in_conntrack(config: &Network) -> FlowsElsewhere {
    FlowsElsewhere {
        network: config.name.clone(),
        message: format!(
            "network `{}` runs on the nftables datapath: its flows are the kernel's conntrack entries, not dutnet's; list them with `conntrack -L -s {}` (conntrack-tools) in the network namespace dutnet runs in",
            config.name, config.subnet
        ),
    }
}

fn flow_info(network: &str, flow: &Flow) -> FlowInfo {
    FlowInfo {
        network: network.to_owned(),
        protocol: protocol_name(flow.protocol),
        dut: flow.dut,
        translated: flow.translated,
        remote: flow.remote,
        state: flow.state.name().to_owned(),
        idle_ms: u64::try_from(flow.idle.as_millis()).unwrap_or(u64::MAX),
        packets_out: u64::from(flow.packets_out),
        packets_in: u64::from(flow.packets_in),
    }
}

fn protocol_name(number: u8) -> String {
    match number {
        protocol::TCP => "tcp".to_owned(),
        protocol::UDP => "udp".to_owned(),
        protocol::ICMP => "icmp".to_owned(),
        other => other.to_string(),
    }
}
