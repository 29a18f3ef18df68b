//! dutnet's NTP server (RFC 5905 server mode), one per network with
//! `local_ntp`, listening on the gateway IP of the DUT NIC, port 123; the
//! datapath redirects the DUTs' NTP to any address here.
//!
//! It answers client-mode (3) requests of NTPv3 and v4 with the exporter's
//! clock and tells the truth about it: leap indicator, stratum and root
//! dispersion come from the kernel's NTP state ([`clock`]), so an
//! unsynchronized exporter says "unsynchronized" (LI 3, stratum 16) and
//! careful clients ignore it rather than follow a wrong clock. Other modes
//! and versions get no answer. A client over its rate ([`limit`]) gets one
//! "RATE" kiss-o'-death, then silence.
//!
//! Like [`crate::dns`], it knows nothing of the config file.

pub mod clock;
pub mod limit;
pub mod packet;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::clock::ClockState;
use self::limit::{ClientSeen, Limiter, Rate, Verdict};
use self::packet::{Packet, Timestamp, leap, mode};
use crate::sock;

/// The reference identifier: the kernel does not say which server the
/// host follows, so dutnet names its own kind of source, as jumpstarter's
/// driver does.
const REFERENCE_ID: [u8; 4] = *b"LOCL";
/// log2 of the clock's resolution: the kernel's clock reads in nanoseconds,
/// a userspace answer is good to a few microseconds (2^-18 s ~ 4 us).
const PRECISION: i8 = -18;

#[derive(Debug, Clone)]
pub struct NtpConfig {
    /// Network name, for logs.
    pub network: String,
    /// The DUT NIC to bind to (`SO_BINDTODEVICE`); `None` only in tests.
    pub interface: Option<String>,
    /// The gateway IP.
    pub listen: Ipv4Addr,
    /// 123 in production; 0 picks a free port (tests).
    pub port: u16,
    pub rate: Rate,
}

impl NtpConfig {
    pub fn new(network: &str, interface: &str, listen: Ipv4Addr) -> Self {
        Self {
            network: network.to_owned(),
            interface: Some(interface.to_owned()),
            listen,
            port: 123,
            rate: Rate::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "network {network}: cannot listen for NTP on {addr}: {call} failed: {source} (check that no other NTP server, e.g. chronyd or ntpd, holds port 123 on every address; bind it to the upstream address only, or set `local_ntp: false`)"
)]
pub struct NtpError {
    pub network: String,
    pub addr: SocketAddrV4,
    pub call: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NtpCounters {
    /// Requests answered with the time.
    pub requests_served: u64,
    /// RATE kiss-o'-death packets sent.
    pub kod_sent: u64,
    /// Datagrams not answered: other modes or versions, too short, over
    /// the rate after the kiss.
    pub ignored: u64,
}

#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    kod: AtomicU64,
    ignored: AtomicU64,
}

/// A running NTP server; dropping it stops it, [`NtpServer::shutdown`]
/// also waits until its socket is closed.
#[derive(Debug)]
pub struct NtpServer {
    local_addr: SocketAddrV4,
    counters: Arc<Counters>,
    limiter: Arc<Mutex<Limiter>>,
    shutdown: watch::Sender<()>,
    task: Option<JoinHandle<()>>,
}

impl NtpServer {
    pub async fn start(config: NtpConfig) -> Result<Self, NtpError> {
        let addr = SocketAddrV4::new(config.listen, config.port);
        let sock = bind(&config, addr).map_err(|(call, source)| NtpError {
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
        let limiter = Arc::new(Mutex::new(Limiter::new(config.rate)));
        let (shutdown, rx) = watch::channel(());
        tracing::info!(network = %config.network, addr = %local_addr, "NTP server listening");
        let task = tokio::spawn(serve(
            sock,
            config.network,
            Arc::clone(&counters),
            Arc::clone(&limiter),
            rx,
        ));
        Ok(Self {
            local_addr,
            counters,
            limiter,
            shutdown,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    /// Whether the serving task still runs.
    pub fn running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub fn counters(&self) -> NtpCounters {
        let c = &self.counters;
        NtpCounters {
            requests_served: c.served.load(Ordering::Relaxed),
            kod_sent: c.kod.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
        }
    }

    /// The clients the rate limiter remembers.
    pub fn clients(&self) -> Vec<ClientSeen> {
        self.limiter.lock().map(|l| l.clients()).unwrap_or_default()
    }

    /// Stops listening.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(());
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NtpServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A UDP socket on `addr`, on the DUT NIC when one is given.
fn bind(
    config: &NtpConfig,
    addr: SocketAddrV4,
) -> Result<UdpSocket, (&'static str, std::io::Error)> {
    sock::udp(config.interface.as_deref(), addr)
}

/// What to send for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The time; its transmit timestamp is stamped at send.
    Time(Packet),
    /// A RATE kiss-o'-death.
    Kiss(Packet),
    None,
}

/// The pure part: the reply to `datagram`, received at `received`, given
/// the clock's state and the limiter's verdict for its sender.
#[must_use]
pub fn respond(
    datagram: &[u8],
    received: Timestamp,
    clock: &ClockState,
    verdict: Verdict,
) -> Reply {
    let Ok(request) = Packet::parse(datagram) else {
        return Reply::None;
    };
    // RFC 5905 9.2: a server answers mode 3 only; versions 3 and 4 are the
    // ones it speaks (v1/v2 clients are long gone, and answering them is an
    // amplification vector for nothing).
    if request.mode != mode::CLIENT || !(3..=4).contains(&request.version) {
        return Reply::None;
    }
    let base = Packet {
        version: request.version,
        mode: mode::SERVER,
        poll: request.poll,
        precision: PRECISION,
        // RFC 5905 8: the origin timestamp is the client's transmit, which
        // is how it matches the answer to its request.
        origin: request.transmit,
        receive: received,
        ..Packet::default()
    };
    match verdict {
        Verdict::Drop => Reply::None,
        // RFC 5905 7.4: stratum 0, the kiss code in the reference id; LI 3
        // as ntpd and chrony send it.
        Verdict::Kiss => Reply::Kiss(Packet {
            leap: leap::UNSYNCHRONIZED,
            stratum: 0,
            reference_id: *b"RATE",
            ..base
        }),
        Verdict::Answer => Reply::Time(Packet {
            leap: clock.leap(),
            stratum: clock.stratum(),
            root_delay: 0,
            root_dispersion: clock.root_dispersion(),
            reference_id: REFERENCE_ID,
            // The kernel does not say when the daemon last updated it; the
            // receive time is when dutnet last saw the clock it serves.
            reference: if clock.synchronized() {
                received
            } else {
                Timestamp::default()
            },
            ..base
        }),
    }
}

async fn serve(
    sock: UdpSocket,
    network: String,
    counters: Arc<Counters>,
    limiter: Arc<Mutex<Limiter>>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            received = sock.recv_from(&mut buf) => {
                // As close to the socket as userspace gets: right after the
                // datagram is read.
                let wall = SystemTime::now();
                let now = Instant::now();
                let (n, SocketAddr::V4(client)) = (match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(%network, error = %e, "NTP receive failed");
                        continue;
                    }
                }) else {
                    continue;
                };
                let verdict = match limiter.lock() {
                    Ok(mut l) => l.check(*client.ip(), now, wall),
                    Err(_) => Verdict::Answer,
                };
                let clock = ClockState::read();
                let reply = respond(&buf[..n], Timestamp::from_system(wall), &clock, verdict);
                let (packet, counter) = match reply {
                    Reply::Time(p) => (p, &counters.served),
                    Reply::Kiss(p) => {
                        tracing::info!(%network, %client, "NTP client over its rate: kiss-o'-death RATE");
                        (p, &counters.kod)
                    }
                    Reply::None => {
                        counters.ignored.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let mut bytes = packet.encode();
                Packet::stamp_transmit(&mut bytes, Timestamp::from_system(SystemTime::now()));
                match sock.send_to(&bytes, client).await {
                    Ok(_) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::debug!(%network, %client, error = %e, "NTP send failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
