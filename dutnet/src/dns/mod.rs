//! dutnet's DNS server, one per network, listening on the gateway IP of the
//! DUT NIC (UDP and TCP, port 53).
//!
//! It answers the network's own names (custom `dns_entries`, DUT hostnames
//! from static addresses and DHCP leases, and their PTRs) authoritatively
//! and forwards everything else to the configured upstreams, with a small
//! cache. Layout: [`zone`] (local names), [`handler`] (pure query logic),
//! [`cache`], [`forward`] (upstreams), `service` (the pipeline and
//! counters), `server` (socket tasks), `socket` (libc socket setup).
//!
//! This module knows nothing of the config file: the daemon builds a
//! [`DnsConfig`] from it.

pub mod cache;
#[cfg(test)]
mod fixtures;
pub mod forward;
pub mod handler;
pub mod latency;
mod server;
mod service;
pub(crate) mod socket;
pub mod zone;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::server::TCP_LIMITS;

use self::cache::Cache;
use self::forward::Forwarder;
use self::service::Service;
use self::zone::Zone;
use crate::sock::{self, Proto};

/// Everything one network's DNS server needs.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Network name, for logs.
    pub network: String,
    /// The DUT NIC; both sockets are bound to it with `SO_BINDTODEVICE`.
    pub interface: String,
    /// Address to listen on: the network's gateway IP.
    pub listen: Ipv4Addr,
    /// Port to listen on: 53 in production; tests use a high port, and 0
    /// picks a free one (UDP picks, TCP follows; see [`DnsServer::local_addr`]).
    pub port: u16,
    /// Upstream resolvers (`dns_servers`), in order of preference.
    pub upstreams: Vec<SocketAddr>,
    /// Time budget of one forwarded question across all upstreams; upstream
    /// `i` of `n` is asked after `i * timeout / n` unless earlier ones failed
    /// sooner. When it runs out the client gets SERVFAIL.
    pub timeout: Duration,
    /// When set, DUT hostnames also answer as `host.<domain>`.
    pub domain: Option<String>,
    /// Custom records (`dns_entries`).
    pub entries: Vec<(String, Ipv4Addr)>,
    /// DUT hostnames of static addresses (`addresses[].hostname`).
    pub hosts: Vec<(String, Ipv4Addr)>,
}

/// Errors of the DNS server API.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name that cannot be a DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// `remove_entry` on a name that has no custom record.
    #[error("no custom DNS entry named {name:?} (see the list of entries)")]
    NotFound { name: String },
    /// A listening socket could not be set up.
    #[error(
        "network {network}: cannot listen for DNS on {addr}/{proto} on interface {interface}: \
         {call} failed: {source} (check that the interface exists and already has the gateway \
         address, that dutnet may bind port 53 (root or CAP_NET_BIND_SERVICE), and that no other \
         DNS server holds that address and port on that interface)"
    )]
    Listen {
        network: String,
        interface: String,
        addr: SocketAddrV4,
        proto: &'static str,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The query types counted in [`DnsCounters::by_type`]: what DUTs ask
/// for, in a fixed set so a DUT asking odd types cannot grow it.
pub mod query_type {
    use hickory_proto::rr::RecordType;

    pub const NAMES: [&str; 9] = [
        "a", "aaaa", "ptr", "srv", "txt", "mx", "cname", "https", "other",
    ];
    pub const COUNT: usize = NAMES.len();

    /// The index of `record_type` in [`NAMES`].
    #[must_use]
    pub fn index(record_type: RecordType) -> usize {
        match record_type {
            RecordType::A => 0,
            RecordType::AAAA => 1,
            RecordType::PTR => 2,
            RecordType::SRV => 3,
            RecordType::TXT => 4,
            RecordType::MX => 5,
            RecordType::CNAME => 6,
            RecordType::HTTPS => 7,
            _ => COUNT - 1,
        }
    }
}

/// Counters since start. Every query counts once in `queries` and once in
/// the rcode bucket it ended in, if any; drops are not queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsCounters {
    /// Queries with a question, by its type (indexed by [`query_type`]).
    pub by_type: [u64; query_type::COUNT],
    /// Queries received (well-formed enough to answer).
    pub queries: u64,
    /// Answered from the zone (custom entries, DUT hostnames, PTRs).
    pub local_answers: u64,
    /// Sent to the upstreams (cache misses).
    pub forwarded: u64,
    /// Answered from the cache.
    pub cache_hits: u64,
    /// SERVFAIL answers (dead upstreams, overload, upstream SERVFAIL).
    pub servfail: u64,
    /// FORMERR (and BADVERS) answers.
    pub formerr: u64,
    /// NOTIMP answers (opcodes other than QUERY).
    pub notimp: u64,
    /// REFUSED answers (no usable upstream, zone transfers, upstream REFUSED).
    pub refused: u64,
    /// Messages without even a DNS header: no reply possible.
    pub dropped_malformed: u64,
    /// Responses (QR=1) sent to the server: dropped, never answered.
    pub dropped_responses: u64,
    /// How long the upstreams took for the forwarded queries they answered.
    pub upstream_latency: latency::UpstreamLatency,
}

/// A running DNS server; dropping it stops the tasks too, [`DnsServer::shutdown`]
/// also waits until the sockets are closed.
#[derive(Debug)]
pub struct DnsServer {
    service: Arc<Service>,
    local_addr: SocketAddrV4,
    shutdown: watch::Sender<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Binds UDP and TCP on `listen:port` on `interface` and starts serving.
    pub async fn start(config: DnsConfig) -> Result<DnsServer, DnsError> {
        let DnsConfig {
            network,
            interface,
            listen,
            port,
            upstreams,
            timeout,
            domain,
            entries,
            hosts,
        } = config;

        let mut zone = Zone::new(domain.as_deref())?;
        for (name, ip) in &entries {
            zone.upsert_entry(name, *ip)?;
        }
        for rejected in zone.set_static_hosts(hosts) {
            tracing::warn!(%network, hostname = %rejected, "static hostname is not a valid DNS name, not served");
        }

        let listen_err = |proto: Proto, addr: SocketAddrV4| {
            let network = network.clone();
            let interface = interface.clone();
            move |e: sock::SocketError| DnsError::Listen {
                network,
                interface,
                addr,
                proto: proto.name(),
                call: e.call,
                source: e.source,
            }
        };
        let udp_std = {
            let addr = SocketAddrV4::new(listen, port);
            let fd = sock::bound_to_device(Proto::Udp, addr, &interface, sock::Options::default())
                .map_err(listen_err(Proto::Udp, addr))?;
            std::net::UdpSocket::from(fd)
        };
        // With port 0 the kernel picked the UDP port; TCP takes the same.
        let port = match udp_std.local_addr() {
            Ok(addr) => addr.port(),
            Err(_) => port,
        };
        let addr = SocketAddrV4::new(listen, port);
        let tcp_std = {
            let fd = sock::bound_to_device(Proto::Tcp, addr, &interface, sock::Options::default())
                .map_err(listen_err(Proto::Tcp, addr))?;
            std::net::TcpListener::from(fd)
        };
        let forwarder = usable_forwarder(&network, &upstreams, listen, port, timeout);
        let as_io = |proto: Proto| listen_err(proto, addr);
        let udp = UdpSocket::from_std(udp_std).map_err(|source| {
            as_io(Proto::Udp)(sock::SocketError {
                call: "tokio registration",
                source,
            })
        })?;
        let tcp = TcpListener::from_std(tcp_std).map_err(|source| {
            as_io(Proto::Tcp)(sock::SocketError {
                call: "tokio registration",
                source,
            })
        })?;

        let service = Arc::new(Service::new(
            network.clone(),
            zone,
            Cache::new(cache::DEFAULT_CAPACITY),
            forwarder,
        ));
        let (shutdown, rx) = watch::channel(());
        let tasks = vec![
            tokio::spawn(server::run_udp(
                Arc::clone(&service),
                udp,
                rx.clone(),
                network.clone(),
            )),
            tokio::spawn(server::run_tcp(
                Arc::clone(&service),
                tcp,
                rx,
                network.clone(),
            )),
        ];
        tracing::info!(%network, %interface, %addr, "DNS server listening");
        Ok(DnsServer {
            service,
            local_addr: addr,
            shutdown,
            tasks,
        })
    }

    /// The address both sockets listen on (the real port when started with 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    /// Adds (or re-points) a custom record; the next query sees it.
    pub fn add_entry(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        self.service.update_zone(|z| z.upsert_entry(name, ip))
    }

    /// Removes a custom record; [`DnsError::NotFound`] if there is none.
    pub fn remove_entry(&self, name: &str) -> Result<(), DnsError> {
        self.service.update_zone(|z| z.remove_entry(name))
    }

    /// The custom records (normalised names), in insertion order.
    pub fn entries(&self) -> Vec<(String, Ipv4Addr)> {
        self.service.zone().entries()
    }

    /// Replaces the hostnames learnt from DHCP leases. Invalid names (a DHCP
    /// client can send anything) are skipped with a warning.
    pub fn set_dynamic_hosts(&self, hosts: Vec<(String, Ipv4Addr)>) {
        let rejected: Result<Vec<String>, std::convert::Infallible> =
            self.service.update_zone(|z| Ok(z.set_dynamic_hosts(hosts)));
        self.warn_rejected(rejected, "DHCP");
    }

    /// Replaces the static DUT hostnames.
    pub fn set_static_hosts(&self, hosts: Vec<(String, Ipv4Addr)>) {
        let rejected: Result<Vec<String>, std::convert::Infallible> =
            self.service.update_zone(|z| Ok(z.set_static_hosts(hosts)));
        self.warn_rejected(rejected, "static");
    }

    fn warn_rejected(&self, rejected: Result<Vec<String>, std::convert::Infallible>, source: &str) {
        let Ok(rejected) = rejected;
        for name in rejected {
            tracing::warn!(addr = %self.local_addr, hostname = %name, source, "hostname is not a valid DNS name, not served");
        }
    }

    /// Counters since start.
    pub fn counters(&self) -> DnsCounters {
        self.service.counters()
    }

    /// Stops serving and waits until both sockets are closed.
    pub async fn shutdown(self) {
        // An error only means the tasks are gone already.
        let _ = self.shutdown.send(());
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "DNS server task ended abnormally");
            }
        }
    }
}

/// The forwarder over the upstreams that do not loop back to us, or `None`
/// (non-local names get REFUSED) when none is left.
fn usable_forwarder(
    network: &str,
    upstreams: &[SocketAddr],
    listen: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Option<Forwarder> {
    let host_addrs = socket::host_addresses().unwrap_or_else(|error| {
        tracing::warn!(%network, %error, "cannot list host addresses; loop check covers the listen address only");
        Vec::new()
    });
    let listen = SocketAddr::from((listen, port));
    let (usable, looping) = forward::split_looping(upstreams, listen, &host_addrs);
    for upstream in &looping {
        tracing::warn!(%network, %upstream, "upstream DNS server is this host itself; skipped to avoid a query loop");
    }
    if usable.is_empty() {
        tracing::warn!(%network, "no usable upstream DNS server: only local names will be answered, others get REFUSED");
        return None;
    }
    Some(Forwarder::new(usable, timeout))
}

#[cfg(test)]
mod tests;
