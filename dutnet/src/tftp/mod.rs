//! dutnet's read-only TFTP server, one per network with a `tftp_root`,
//! listening on the gateway IP of the DUT NIC, port 69.
//!
//! Written here rather than taken from crates.io: the crates that exist
//! either run on another async runtime or lack windowsize (RFC 7440), which
//! is what makes a 20 MB kernel arrive in seconds instead of a minute.
//! Layout: [`packet`] (the wire format, pure), [`root`] (opening a file
//! beneath the root and nowhere else), [`transfer`] (one transfer's
//! windows, timeouts and retransmissions), this file (the listening loop,
//! the bound on concurrent transfers, counters).
//!
//! Like [`crate::dns`], it knows nothing of the config file.

pub mod packet;
pub mod root;
pub mod transfer;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use self::packet::ErrorCode;
use self::root::Root;
use self::transfer::Pacing;
use crate::sock;

/// Transfers one network serves at once; further requests get an ERROR
/// and retry (PXE ROMs and U-Boot do).
pub const DEFAULT_MAX_TRANSFERS: usize = 64;
/// RFC 2349 leaves the default to the server; tftp-hpa uses 1 s.
pub const DEFAULT_RETRANSMIT: Duration = Duration::from_secs(1);
/// Sends of one window before a transfer is given up (~5 s of silence).
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// A 100 MB image at 512-byte lock-step blocks over a 5 ms path takes about
/// 17 minutes; longer than this is a stuck client.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(30 * 60);
/// The largest request: filename, mode and options (RFC 1350 has no limit;
/// 512 is what every client fits in).
const MAX_REQUEST_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct TftpConfig {
    /// Network name, for logs.
    pub network: String,
    /// The DUT NIC to bind to (`SO_BINDTODEVICE`); `None` only in tests.
    pub interface: Option<String>,
    /// The gateway IP.
    pub listen: Ipv4Addr,
    /// 69 in production; 0 picks a free port (tests).
    pub port: u16,
    pub root: PathBuf,
    pub max_transfers: usize,
    pub pacing: Pacing,
}

impl TftpConfig {
    pub fn new(network: &str, interface: &str, listen: Ipv4Addr, root: PathBuf) -> Self {
        Self {
            network: network.to_owned(),
            interface: Some(interface.to_owned()),
            listen,
            port: 69,
            root,
            max_transfers: DEFAULT_MAX_TRANSFERS,
            pacing: Pacing {
                retransmit: DEFAULT_RETRANSMIT,
                attempts: DEFAULT_ATTEMPTS,
                max_duration: DEFAULT_MAX_DURATION,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    #[error(
        "network {network}: tftp_root {path} cannot be opened as a directory: {source} (create it, or fix `tftp_root`)"
    )]
    Root {
        network: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "network {network}: cannot listen for TFTP on {addr}: {call} failed: {source} (check that no other TFTP server, e.g. tftpd-hpa or dnsmasq, holds port 69 on that address)"
    )]
    Listen {
        network: String,
        addr: SocketAddrV4,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TftpCounters {
    /// Transfers that delivered the whole file.
    pub transfers_ok: u64,
    /// Transfers that started and did not finish (timeout, client error).
    pub transfers_failed: u64,
    /// Requests answered with an ERROR: missing file, outside the root,
    /// writes, too many transfers, malformed.
    pub requests_refused: u64,
    /// File bytes of the finished transfers.
    pub bytes_sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    bytes: AtomicU64,
}

/// A running TFTP server; dropping it stops it, [`TftpServer::shutdown`]
/// also waits until its sockets are closed.
#[derive(Debug)]
pub struct TftpServer {
    local_addr: SocketAddrV4,
    counters: Arc<Counters>,
    shutdown: watch::Sender<()>,
    task: Option<JoinHandle<()>>,
}

impl TftpServer {
    pub async fn start(config: TftpConfig) -> Result<Self, TftpError> {
        let root = Root::open(&config.root).map_err(|source| TftpError::Root {
            network: config.network.clone(),
            path: config.root.clone(),
            source,
        })?;
        let addr = SocketAddrV4::new(config.listen, config.port);
        let sock = bind(&config, addr).map_err(|(call, source)| TftpError::Listen {
            network: config.network.clone(),
            addr,
            call,
            source,
        })?;
        let local_addr = match sock.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            _ => addr,
        };
        let counters = Arc::new(Counters::default());
        let (shutdown, rx) = watch::channel(());
        tracing::info!(network = %config.network, addr = %local_addr, root = %config.root.display(), "TFTP server listening");
        let task = tokio::spawn(serve(
            sock,
            Arc::new(root),
            config,
            Arc::clone(&counters),
            rx,
        ));
        Ok(Self {
            local_addr,
            counters,
            shutdown,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    pub fn counters(&self) -> TftpCounters {
        let c = &self.counters;
        TftpCounters {
            transfers_ok: c.ok.load(Ordering::Relaxed),
            transfers_failed: c.failed.load(Ordering::Relaxed),
            requests_refused: c.refused.load(Ordering::Relaxed),
            bytes_sent: c.bytes.load(Ordering::Relaxed),
        }
    }

    /// Stops listening and aborts running transfers.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(());
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TftpServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A UDP socket on `addr`, on the DUT NIC when one is given.
fn bind(
    config: &TftpConfig,
    addr: SocketAddrV4,
) -> Result<UdpSocket, (&'static str, std::io::Error)> {
    sock::udp(config.interface.as_deref(), addr)
}

async fn serve(
    sock: UdpSocket,
    root: Arc<Root>,
    config: TftpConfig,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(config.max_transfers));
    let mut transfers = JoinSet::new();
    let mut buf = vec![0u8; MAX_REQUEST_LEN];
    let network = config.network.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = transfers.join_next(), if !transfers.is_empty() => {}
            received = sock.recv_from(&mut buf) => {
                let (n, SocketAddr::V4(client)) = (match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(%network, error = %e, "TFTP receive failed");
                        continue;
                    }
                }) else {
                    continue;
                };
                let refuse = |code: ErrorCode, message: &str, why: &str| {
                    tracing::info!(%network, %client, reason = why, "TFTP request refused");
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    packet::error(code, message)
                };
                let request = match packet::parse_request(&buf[..n]) {
                    Ok(r) => r,
                    Err(e) => {
                        let reply = refuse(ErrorCode::IllegalOperation, "not a TFTP request", &format!("{e:?}"));
                        let _ = sock.send_to(&reply, client).await;
                        continue;
                    }
                };
                let refusal = if request.write {
                    Some((ErrorCode::AccessViolation, "read-only server", "write request"))
                } else if request.mode != "octet" {
                    Some((ErrorCode::IllegalOperation, "only octet (binary) mode is served", "netascii or mail mode"))
                } else {
                    None
                };
                if let Some((code, message, why)) = refusal {
                    let reply = refuse(code, message, why);
                    let _ = sock.send_to(&reply, client).await;
                    continue;
                }
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    let reply = refuse(ErrorCode::NotDefined, "server busy, retry later", "too many transfers");
                    let _ = sock.send_to(&reply, client).await;
                    continue;
                };
                let transfer = Transfer {
                    network: network.clone(),
                    config: config.clone(),
                    root: Arc::clone(&root),
                    counters: Arc::clone(&counters),
                    client,
                    request,
                };
                transfers.spawn(async move {
                    transfer.run().await;
                    drop(permit);
                });
            }
        }
    }
    transfers.shutdown().await;
}

struct Transfer {
    network: String,
    config: TftpConfig,
    root: Arc<Root>,
    counters: Arc<Counters>,
    client: SocketAddrV4,
    request: packet::Request,
}

impl Transfer {
    async fn run(self) {
        let Self {
            network,
            config,
            root,
            counters,
            client,
            request,
        } = self;
        let file = &request.filename;
        // The transfer's own TID (RFC 1350 4): a fresh port on the gateway.
        let sock = match bind(&config, SocketAddrV4::new(config.listen, 0)) {
            Ok(s) => s,
            Err((call, e)) => {
                tracing::warn!(%network, %client, call, error = %e, "TFTP transfer socket failed");
                counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if let Err(e) = sock.connect(client).await {
            tracing::warn!(%network, %client, error = %e, "TFTP connect failed");
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (handle, size) = match root.open_file(file) {
            Ok(f) => f,
            Err(refusal) => {
                tracing::info!(%network, %client, file, reason = %refusal.reason, "TFTP request refused");
                counters.refused.fetch_add(1, Ordering::Relaxed);
                let message = match refusal.code {
                    ErrorCode::FileNotFound => "file not found",
                    _ => "access violation",
                };
                let _ = sock.send(&packet::error(refusal.code, message)).await;
                return;
            }
        };
        let started = std::time::Instant::now();
        let sending = transfer::send(&sock, &handle, size, &request.options, config.pacing);
        let outcome = tokio::time::timeout(config.pacing.max_duration, sending)
            .await
            .unwrap_or(Err(transfer::Failure::TooSlow));
        match outcome {
            Ok(bytes) => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                tracing::info!(%network, %client, file, bytes, ms = started.elapsed().as_millis() as u64, "TFTP transfer done");
            }
            Err(failure) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%network, %client, file, ?failure, "TFTP transfer failed");
                if let Some(reply) = transfer::error_for(&failure) {
                    let _ = sock.send(&reply).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
