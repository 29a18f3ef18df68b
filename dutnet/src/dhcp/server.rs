//! The server task: receive, parse, handle, persist, send; plus the handle
//! the daemon holds ([`DhcpServer`]).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use dhcproto::Encodable;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use super::handler::{self, Action, Destination, NoReplyReason, ReplyKind};
use super::leases::LeaseState;
use super::message_type;
use super::socket::{DhcpSocket, SERVER_PORT};
use super::{DhcpConfig, DhcpCounters, DhcpError, Lease, StaticLease, format_mac, store};

/// How often expired leases are reclaimed when no packet arrives.
const EXPIRY_TICK: Duration = Duration::from_secs(30);
/// At most one "range exhausted" warning per network per this interval.
const EXHAUSTED_WARN_INTERVAL: Duration = Duration::from_secs(60);
/// One byte more than the parser accepts: the kernel truncates a longer
/// datagram to this, and the parser rejects it as oversized, where a
/// buffer of exactly the limit would hand it a well-formed prefix.
const RECV_BUF: usize = handler::MAX_MESSAGE_LEN + 1;

/// Handle to a running server task. Dropping it stops the task (without
/// waiting); [`DhcpServer::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct DhcpServer {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    config: DhcpConfig,
    state: Mutex<LeaseState>,
    counters: Counters,
    leases_tx: watch::Sender<Vec<Lease>>,
    /// Wakes the task to persist a change made through the handle.
    persist: Notify,
}

impl Shared {
    /// The handler never panics, but a poisoned lock must not take the
    /// server down either: the state is still consistent between calls.
    fn state(&self) -> MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, leases: Vec<Lease>) {
        self.leases_tx.send_if_modified(|current| {
            if *current == leases {
                false
            } else {
                *current = leases;
                true
            }
        });
    }

    /// Writes the lease table if it changed; blocking I/O goes to the
    /// blocking pool so the runtime (even a current_thread one) keeps going.
    async fn persist(&self, leases: Vec<Lease>) -> Result<(), DhcpError> {
        let path = self.config.lease_file.clone();
        match tokio::task::spawn_blocking(move || store::save(&path, &leases)).await {
            Ok(r) => r,
            Err(join) => Err(DhcpError::LeaseFile {
                path: self.config.lease_file.clone(),
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }

    async fn persist_if_dirty(&self) {
        let snapshot = {
            let mut st = self.state();
            st.take_dirty().then(|| st.leases())
        };
        if let Some(leases) = snapshot {
            self.publish(leases.clone());
            if let Err(e) = self.persist(leases).await {
                self.counters.persist_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(network = %self.config.network, error = %e, "cannot write lease file");
                // Retry on the next change or tick.
                self.state().mark_dirty();
            }
        }
    }
}

impl DhcpServer {
    /// Validates `config`, loads the lease file, binds the socket on
    /// `config.interface` and spawns the server task.
    pub async fn start(config: DhcpConfig) -> Result<DhcpServer, DhcpError> {
        config.validate()?;
        let path = config.lease_file.clone();
        let persisted = tokio::task::spawn_blocking(move || store::load(&path))
            .await
            .map_err(|join| DhcpError::LeaseFile {
                path: config.lease_file.clone(),
                source: std::io::Error::other(join.to_string()),
            })??;
        let state = LeaseState::new(&config, persisted, SystemTime::now());
        let socket = DhcpSocket::open(&config.interface, SERVER_PORT)?;
        tracing::info!(
            network = %config.network,
            interface = %config.interface,
            subnet = %config.subnet,
            range = %format!("{}-{}", config.range_start, config.range_end),
            leases = state.leases().len(),
            "DHCP server listening"
        );
        let (leases_tx, _) = watch::channel(state.leases());
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(state),
            counters: Counters::default(),
            leases_tx,
            persist: Notify::new(),
        });
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(shared.clone(), socket, stop_rx));
        Ok(DhcpServer {
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound leases now.
    pub fn leases(&self) -> Vec<Lease> {
        self.shared.state().leases()
    }

    /// Lease table updates (after each change), e.g. for DUT hostnames in DNS.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Lease>> {
        self.shared.leases_tx.subscribe()
    }

    /// Adds (or replaces, for the same MAC) a static entry at run time.
    pub fn add_static(&self, lease: StaticLease) -> Result<(), DhcpError> {
        let leases = {
            let mut st = self.shared.state();
            st.add_static(lease, &self.shared.config)?;
            st.leases()
        };
        self.shared.publish(leases);
        self.shared.persist.notify_one();
        Ok(())
    }

    /// Removes the static entry for `ip` and the lease bound to it.
    pub fn remove_static(&self, ip: Ipv4Addr) -> Result<(), DhcpError> {
        let leases = {
            let mut st = self.shared.state();
            st.remove_static(ip)?;
            st.leases()
        };
        self.shared.publish(leases);
        self.shared.persist.notify_one();
        Ok(())
    }

    /// Keeps `ip` out of the dynamic pool (an address entry without a MAC
    /// added at run time), or, with `false`, gives it back.
    pub fn set_reserved(&self, ip: Ipv4Addr, reserved: bool) {
        self.shared.state().set_reserved(ip, reserved);
    }

    /// What the server has counted so far, for `dutnet stats` and the
    /// metrics endpoint (`daemon/control.rs`, `network_counters`).
    pub fn counters(&self) -> DhcpCounters {
        self.shared.counters.snapshot()
    }

    /// Stops the task and waits for it; the lease file stays as written.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DhcpServer {
    fn drop(&mut self) {
        // A forgotten handle must not leave a server answering on the NIC.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(shared: Arc<Shared>, socket: DhcpSocket, mut stop: oneshot::Receiver<()>) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    let mut exhausted_warn = RateLimit::new(EXHAUSTED_WARN_INTERVAL);
    let network = shared.config.network.clone();
    let send_failures = crate::log_limit::LogLimit::default();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = shared.persist.notified() => shared.persist_if_dirty().await,
            _ = tick.tick() => {
                shared.state().expire(SystemTime::now());
                shared.persist_if_dirty().await;
            }
            received = socket.recv(&mut buf) => match received {
                Ok((n, from)) => {
                    let bytes = buf.get(..n).unwrap_or_default();
                    if let Some((reply, destination, kind)) = process(&shared, &mut exhausted_warn, bytes).await {
                        match socket.send(&reply, destination).await {
                            Ok(sent) => tracing::debug!(%network, ?kind, ?sent, %from, "reply sent"),
                            Err(e) => {
                                shared.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                                if let Some(held_back) = send_failures.allow(std::time::Instant::now()) {
                                    tracing::warn!(%network, ?kind, ?destination, error = %e, held_back, "cannot send DHCP reply (one line per 10 s)");
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%network, error = %e, "DHCP receive failed");
                    // Do not spin on a persistent error (e.g. the NIC went away).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    shared.persist_if_dirty().await;
    tracing::info!(%network, "DHCP server stopped");
}

/// One datagram: returns the encoded reply and where it goes, after the
/// lease file was written if the table changed. No reply if persisting an
/// ACK failed: the client retries, and we never ACK what we might forget.
async fn process(
    shared: &Shared,
    exhausted_warn: &mut RateLimit,
    bytes: &[u8],
) -> Option<(Vec<u8>, Destination, ReplyKind)> {
    let c = &shared.counters;
    let network = &shared.config.network;
    let msg = match handler::parse(bytes) {
        Ok(m) => m,
        Err(reason) => {
            c.dropped_malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%network, ?reason, len = bytes.len(), "dropping malformed DHCP packet");
            return None;
        }
    };
    c.received[received_type(&msg)].fetch_add(1, Ordering::Relaxed);
    let (action, snapshot) = {
        let mut st = shared.state();
        let action = handler::handle(&msg, SystemTime::now(), &mut st, &shared.config);
        let snapshot = action.persist().then(|| st.leases());
        (action, snapshot)
    };
    if let Some(leases) = snapshot {
        shared.publish(leases.clone());
        if let Err(e) = shared.persist(leases).await {
            c.persist_errors.fetch_add(1, Ordering::Relaxed);
            shared.state().mark_dirty();
            tracing::error!(%network, error = %e, "cannot write lease file; not answering");
            if matches!(
                action,
                Action::Reply {
                    kind: ReplyKind::Ack,
                    ..
                }
            ) {
                return None;
            }
        }
    }
    let mac = format_mac_of(&msg);
    match action {
        Action::NoReply { reason, .. } => {
            count_no_reply(c, reason);
            if reason == NoReplyReason::Exhausted {
                if let Some(suppressed) = exhausted_warn.check(Instant::now()) {
                    tracing::warn!(
                        %network,
                        range = %format!("{}-{}", shared.config.range_start, shared.config.range_end),
                        %mac,
                        suppressed,
                        "DHCP range exhausted: no address to offer"
                    );
                } else {
                    tracing::debug!(%network, %mac, "DHCP range still exhausted: no offer");
                }
            } else {
                tracing::debug!(%network, %mac, ?reason, "no DHCP reply");
            }
            None
        }
        Action::Reply {
            msg: reply,
            destination,
            kind,
            ..
        } => {
            c.requests.fetch_add(1, Ordering::Relaxed);
            match kind {
                ReplyKind::Offer => c.offers.fetch_add(1, Ordering::Relaxed),
                ReplyKind::Ack => c.acks.fetch_add(1, Ordering::Relaxed),
                ReplyKind::Nak => c.naks.fetch_add(1, Ordering::Relaxed),
                ReplyKind::InformAck => c.informs.fetch_add(1, Ordering::Relaxed),
            };
            match kind {
                ReplyKind::Ack => {
                    tracing::info!(%network, %mac, ip = %reply.yiaddr(), "DHCP lease acknowledged")
                }
                ReplyKind::Nak => tracing::info!(%network, %mac, "DHCP request refused (NAK)"),
                _ => tracing::debug!(%network, %mac, ip = %reply.yiaddr(), ?kind, "DHCP reply"),
            }
            match reply.to_vec() {
                Ok(bytes) => Some((bytes, destination, kind)),
                Err(e) => {
                    tracing::error!(%network, error = %e, "cannot encode DHCP reply");
                    None
                }
            }
        }
    }
}

fn format_mac_of(msg: &dhcproto::v4::Message) -> String {
    // parse() does not check hlen; never slice chaddr by an untrusted one.
    if msg.hlen() == 6
        && let Ok(mac) = <[u8; 6]>::try_from(msg.chaddr())
    {
        return format_mac(&mac);
    }
    "?".to_owned()
}

/// Where `msg` counts in [`Counters::received`].
fn received_type(msg: &dhcproto::v4::Message) -> usize {
    use dhcproto::v4::MessageType;
    match msg.opts().msg_type() {
        Some(MessageType::Discover) => message_type::DISCOVER,
        Some(MessageType::Request) => message_type::REQUEST,
        Some(MessageType::Decline) => message_type::DECLINE,
        Some(MessageType::Release) => message_type::RELEASE,
        Some(MessageType::Inform) => message_type::INFORM,
        _ => message_type::OTHER,
    }
}

fn count_no_reply(c: &Counters, reason: NoReplyReason) {
    let counter = match reason {
        r if r.is_malformed() => &c.dropped_malformed,
        NoReplyReason::Exhausted => {
            c.requests.fetch_add(1, Ordering::Relaxed);
            &c.exhausted
        }
        NoReplyReason::Declined => {
            c.requests.fetch_add(1, Ordering::Relaxed);
            &c.declines
        }
        NoReplyReason::Released => {
            c.requests.fetch_add(1, Ordering::Relaxed);
            &c.releases
        }
        _ => {
            c.requests.fetch_add(1, Ordering::Relaxed);
            &c.ignored
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Default)]
struct Counters {
    received: [AtomicU64; message_type::COUNT],
    requests: AtomicU64,
    offers: AtomicU64,
    acks: AtomicU64,
    naks: AtomicU64,
    declines: AtomicU64,
    releases: AtomicU64,
    informs: AtomicU64,
    dropped_malformed: AtomicU64,
    ignored: AtomicU64,
    exhausted: AtomicU64,
    persist_errors: AtomicU64,
    send_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DhcpCounters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DhcpCounters {
            received: std::array::from_fn(|i| g(&self.received[i])),
            requests: g(&self.requests),
            offers: g(&self.offers),
            acks: g(&self.acks),
            naks: g(&self.naks),
            declines: g(&self.declines),
            releases: g(&self.releases),
            informs: g(&self.informs),
            dropped_malformed: g(&self.dropped_malformed),
            ignored: g(&self.ignored),
            exhausted: g(&self.exhausted),
            persist_errors: g(&self.persist_errors),
            send_errors: g(&self.send_errors),
        }
    }
}

/// Lets one event through per interval and counts the ones it held back.
#[derive(Debug)]
struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last one)` if this event may be logged.
    fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests;
