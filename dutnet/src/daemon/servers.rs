//! The protocol servers of one network (DHCP, DNS, TFTP, NTP), built from its
//! config and bound to its DUT interface.
use std::net::{Ipv4Addr, SocketAddr};

use super::DaemonError;
use crate::{
    config::Network,
    dhcp::{DhcpConfig, DhcpServer, Lease, StaticLease},
    dns::{DnsConfig, DnsServer},
    ntp::{NtpConfig, NtpServer},
    state::paths::Paths,
    tftp::{TftpConfig, TftpServer},
};

/// What runs for a network while its DUT interface is taken over.
#[derive(Default)]
pub struct Servers {
    pub dns: Option<DnsServer>,
    /// Runs when the network has a `tftp_root`.
    pub tftp: Option<TftpServer>,
    /// Runs when the network has `local_ntp`.
    pub ntp: Option<NtpServer>,
    pub dhcp: Option<DhcpServer>,
}

impl Servers {
    /// Starts DNS, then TFTP (with a `tftp_root`), then NTP (with
    /// `local_ntp`), then DHCP (when enabled); a failure stops the ones already started.
    pub async fn start(network: &Network, paths: &Paths) -> Result<Self, DaemonError> {
        let mut servers = Self::default();
        if let Err(e) = servers.start_each(network, paths).await {
            servers.stop().await;
            return Err(e);
        }
        Ok(servers)
    }

    async fn start_each(&mut self, network: &Network, paths: &Paths) -> Result<(), DaemonError> {
        let name = || network.name.clone();
        self.dns = Some(
            DnsServer::start(dns_config(network))
                .await
                .map_err(|source| DaemonError::Dns {
                    network: name(),
                    source,
                })?,
        );
        if let Some(root) = &network.tftp_root {
            self.tftp = Some(
                TftpServer::start(TftpConfig::new(
                    &network.name,
                    &network.interface,
                    network.gateway_ip,
                    root.clone(),
                ))
                .await
                .map_err(|source| DaemonError::Tftp {
                    network: name(),
                    source,
                })?,
            );
        }
        if network.local_ntp {
            self.ntp = Some(
                NtpServer::start(NtpConfig::new(
                    &network.name,
                    &network.interface,
                    network.gateway_ip,
                ))
                .await
                .map_err(|source| DaemonError::Ntp {
                    network: name(),
                    source,
                })?,
            );
        }
        if network.dhcp.enabled {
            self.dhcp = Some(
                DhcpServer::start(dhcp_config(network, paths))
                    .await
                    .map_err(|source| DaemonError::Dhcp {
                        network: name(),
                        source,
                    })?,
            );
        }
        Ok(())
    }

    /// Stops NTP, TFTP, DHCP and DNS (leases stay persisted).
    pub async fn stop(&mut self) {
        if let Some(ntp) = self.ntp.take() {
            ntp.shutdown().await;
        }
        if let Some(tftp) = self.tftp.take() {
            tftp.shutdown().await;
        }
        if let Some(dhcp) = self.dhcp.take() {
            dhcp.shutdown().await;
        }
        if let Some(dns) = self.dns.take() {
            dns.shutdown().await;
        }
    }

    /// The DHCP server's leases (none while it is not running).
    pub fn leases(&self) -> Vec<Lease> {
        self.dhcp
            .as_ref()
            .map(DhcpServer::leases)
            .unwrap_or_default()
    }

    /// Hands the hostnames DUTs sent in their DHCP requests to DNS.
    pub fn publish_lease_hostnames(&self) {
        if let (Some(dhcp), Some(dns)) = (&self.dhcp, &self.dns) {
            let hosts = dhcp
                .leases()
                .into_iter()
                .filter_map(|lease| lease.hostname.map(|name| (name, lease.ip)))
                .collect();
            dns.set_dynamic_hosts(hosts);
        }
    }

    /// Hands the static DUT host names (config plus runtime) to DNS.
    pub fn publish_static_hosts(&self, network: &Network) {
        if let Some(dns) = &self.dns {
            dns.set_static_hosts(static_hosts(network));
        }
    }
}

/// The host names of the network's address entries.
pub fn static_hosts(network: &Network) -> Vec<(String, Ipv4Addr)> {
    network
        .addresses
        .iter()
        .filter_map(|a| a.hostname.clone().map(|h| (h, a.ip)))
        .collect()
}

/// A static lease for an address entry with a MAC.
pub fn static_lease(entry: &crate::config::AddressEntry) -> Option<StaticLease> {
    entry.mac.map(|mac| StaticLease {
        mac: mac.0,
        ip: entry.ip,
        hostname: entry.hostname.clone(),
        options: entry.dhcp_options.clone(),
    })
}

fn dhcp_config(net: &Network, paths: &Paths) -> DhcpConfig {
    DhcpConfig {
        network: net.name.clone(),
        interface: net.interface.clone(),
        subnet: net.subnet,
        server_ip: net.gateway_ip,
        range_start: net.dhcp.range_start,
        range_end: net.dhcp.range_end,
        lease_time: net.dhcp.lease_time,
        domain: net.domain.clone(),
        static_leases: net.addresses.iter().filter_map(static_lease).collect(),
        // Entries without a MAC are 1:1 mappings only: never handed out.
        reserved: net
            .addresses
            .iter()
            .filter(|a| a.mac.is_none())
            .map(|a| a.ip)
            .collect(),
        lease_file: paths
            .network_dir(&net.name, net.state_dir.as_deref())
            .join("dnsmasq.leases"),
        options: if net.local_ntp {
            net.dhcp_options.clone().with_default_ntp(net.gateway_ip)
        } else {
            net.dhcp_options.clone()
        },
    }
}

fn dns_config(net: &Network) -> DnsConfig {
    DnsConfig {
        network: net.name.clone(),
        interface: net.interface.clone(),
        listen: net.gateway_ip,
        port: 53,
        upstreams: net
            .dns_servers
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect(),
        timeout: net.dns_timeout,
        domain: net.domain.clone(),
        entries: net
            .dns_entries
            .iter()
            .map(|e| (e.hostname.clone(), e.ip))
            .collect(),
        hosts: static_hosts(net),
    }
}
