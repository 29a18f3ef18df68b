//! `capture`: which interface a capture reads and the filter of what it may
//! see. The server opens and streams the capture (`control::capture`); the
//! daemon only plans it, and plans it again every few seconds for an
//! upstream capture of one DUT, whose flows come and go.
use std::{collections::BTreeSet, net::Ipv4Addr};

use super::{exporter::Exporter as _, network::NetworkContext, supervisor::Daemon};
use crate::{
    capture::{
        MAX_DURATION,
        scope::{self, UpstreamFlow},
    },
    config::{MacAddr, NatMode},
    control::{
        Failure, Reply,
        protocol::{CapturePlan, CaptureRequest},
    },
    datapath::{Carrier, Datapath as _},
};

/// Flows read from the table for one DUT's upstream scope.
const SCOPE_FLOWS: usize = 256;

/// A DUT as `--dut` names it.
enum Dut {
    Ip(Ipv4Addr),
    Mac(MacAddr),
}

impl Daemon {
    pub(super) async fn capture_plan(&self, request: &CaptureRequest) -> Result<Reply, Failure> {
        if request.count == Some(0) {
            return Err(Failure::invalid(
                "--count 0 captures nothing; give 1 or more",
            ));
        }
        let max_ms = u64::try_from(MAX_DURATION.as_millis()).unwrap_or(u64::MAX);
        let duration_ms = match request.duration_ms {
            None => max_ms,
            Some(0) => return Err(Failure::invalid("--duration 0 captures nothing")),
            Some(ms) if ms > max_ms => {
                return Err(Failure::invalid(format!(
                    "--duration is at most {} minutes; run another capture after it",
                    MAX_DURATION.as_secs() / 60
                )));
            }
            Some(ms) => ms,
        };
        if let Some(filter) = request.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            scope::check(filter).map_err(|e| {
                Failure::invalid(format!(
                    "the filter expression `{filter}` is not valid: {e}; see pcap-filter(7)"
                ))
            })?;
        }
        let index = self.select_one(request.network.as_deref())?;
        let net = &self.networks[index];
        let dut = request.dut.as_deref().map(parse_dut).transpose()?;
        let (interface, scope) = if request.upstream {
            self.upstream_scope(net, dut.as_ref()).await?
        } else {
            let scope = dut.map(|d| match d {
                Dut::Ip(ip) => format!("host {ip}"),
                Dut::Mac(mac) => format!("ether host {mac}"),
            });
            (net.config.interface.clone(), scope)
        };
        Ok(Reply::Capture(CapturePlan {
            network: net.config.name.clone(),
            interface,
            filter: scope::combine(scope.as_deref(), request.filter.as_deref()),
            any_user: net.config.enable_tcpdump,
            duration_ms,
            count: request.count,
        }))
    }

    /// The upstream NIC and what of it belongs to `net` (or to `dut`) after
    /// translation.
    async fn upstream_scope(
        &self,
        net: &NetworkContext,
        dut: Option<&Dut>,
    ) -> Result<(String, Option<String>), Failure> {
        let c = &net.config;
        if c.nat_mode == NatMode::Disabled {
            return Err(Failure::invalid(format!(
                "network `{}` has `nat_mode: disabled`: it sends nothing upstream; capture on its DUT NIC (without --upstream)",
                c.name
            )));
        }
        let upstream = self.exporter.resolve_upstream(c).await.ok_or_else(|| {
            Failure::failed(format!(
                "network `{}` has no upstream interface now (`dutnet status` says why)",
                c.name
            ))
        })?;
        let masquerade = self
            .exporter
            .masquerade_address(&upstream)
            .await
            .ok()
            .flatten();
        let publics = super::nat::public_addresses(c);
        let Some(dut) = dut else {
            // The network's addresses: its masquerade address (which the
            // host's own traffic may use too) and its 1:1 public ones.
            let mut hosts: Vec<Ipv4Addr> = publics.iter().map(|p| p.public).collect();
            hosts.extend(masquerade);
            let scope = scope::hosts(&hosts).unwrap_or_else(|| scope::NOTHING.to_owned());
            return Ok((upstream.name, Some(scope)));
        };
        let ip = match *dut {
            Dut::Ip(ip) => ip,
            Dut::Mac(mac) => net
                .lease_of(mac.0)
                .map(|l| l.ip)
                .or_else(|| c.addresses.iter().find(|a| a.mac == Some(mac)).map(|a| a.ip))
                .ok_or_else(|| {
                    Failure::not_found(format!(
                        "{mac} has no address on network `{}`; give the DUT's IP, or wait for its DHCP lease",
                        c.name
                    ))
                })?,
        };
        if let Some(p) = publics.iter().find(|p| p.private == ip) {
            return Ok((upstream.name, Some(format!("host {}", p.public))));
        }
        let ifindex = match (self.datapath.planned(&c.interface), net.ifindex()) {
            (Carrier::Ebpf(_), Some(ifindex)) => ifindex,
            _ => {
                return Err(Failure::invalid(format!(
                    "one masqueraded DUT's upstream packets are found through the eBPF connection table, and network `{}` is not on it; capture the whole network with --upstream and no --dut (or on the DUT NIC)",
                    c.name
                )));
            }
        };
        let listing = self
            .datapath
            .flows(&BTreeSet::from([ifindex]), SCOPE_FLOWS)
            .map_err(|e| Failure::failed(format!("reading the connection table failed: {e}")))?;
        let flows: Vec<UpstreamFlow> = listing
            .flows
            .iter()
            .filter(|f| f.dut_ifindex == ifindex && *f.dut.ip() == ip)
            .map(|f| UpstreamFlow {
                protocol: f.protocol,
                translated: f.translated,
                remote: f.remote,
            })
            .collect();
        Ok((upstream.name, Some(scope::flows(&flows))))
    }
}

fn parse_dut(text: &str) -> Result<Dut, Failure> {
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(Dut::Ip(ip));
    }
    text.parse::<MacAddr>().map(Dut::Mac).map_err(|_| {
        Failure::invalid(format!(
            "--dut `{text}` is neither an IPv4 address nor a MAC (aa:bb:cc:dd:ee:ff)"
        ))
    })
}
