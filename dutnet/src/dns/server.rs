//! The UDP and TCP tasks of one network's DNS server: they move bytes
//! between the sockets and [`Service::handle`] and enforce resource limits.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::service::{Service, Transport};
use crate::connections::{Admission, ConnectionTable, Limits, Slot};

/// UDP queries handled at once (most wait on an upstream). Beyond this a
/// query gets SERVFAIL at once instead of piling up memory and tasks.
const MAX_UDP_INFLIGHT: usize = 256;
/// The bounds of TCP connections (see `connections`). A DUT uses TCP only
/// after a TC answer, so 16 at once per DUT address and 128 per network are
/// generous; at a cap the longest idle connection makes room. A connection
/// with no new query for 5 s is closed: RFC 7766 §6.2.3 recommends an idle
/// timeout "of the order of seconds" for servers.
pub const TCP_LIMITS: Limits = Limits {
    total: 128,
    per_client: 16,
    idle_timeout: Duration::from_secs(5),
};
/// Time allowed to read the rest of a started query or write a reply.
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest UDP datagram; a query that big gets FORMERR rather than being
/// cut silently by a smaller buffer.
const UDP_BUFFER: usize = 65_535;

/// Serves UDP until `shutdown` fires (or its sender is dropped).
pub async fn run_udp(
    service: Arc<Service>,
    socket: UdpSocket,
    mut shutdown: watch::Receiver<()>,
    network: String,
) {
    let socket = Arc::new(socket);
    let inflight = Arc::new(Semaphore::new(MAX_UDP_INFLIGHT));
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; UDP_BUFFER];
    let overloaded = crate::log_limit::LogLimit::default();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            received = socket.recv_from(&mut buf) => {
                while tasks.try_join_next().is_some() {}
                let (n, peer) = match received {
                    Ok(r) => r,
                    Err(error) => {
                        tracing::debug!(%network, %error, "udp recv error");
                        continue;
                    }
                };
                let bytes = buf[..n].to_vec();
                match Arc::clone(&inflight).try_acquire_owned() {
                    Ok(permit) => {
                        let service = Arc::clone(&service);
                        let socket = Arc::clone(&socket);
                        let network = network.clone();
                        tasks.spawn(async move {
                            let _permit = permit;
                            if let Some(reply) = service.handle(&bytes, Transport::Udp).await {
                                send_udp(&socket, &reply, peer, &network).await;
                            }
                        });
                    }
                    Err(_) => {
                        if let Some(held_back) = overloaded.allow(std::time::Instant::now()) {
                            tracing::warn!(%network, %peer, held_back, "too many queries in flight, answering SERVFAIL (one line per 10 s)");
                        }
                        if let Some(reply) = service.overloaded(&bytes) {
                            send_udp(&socket, &reply, peer, &network).await;
                        }
                    }
                }
            }
        }
    }
    tasks.shutdown().await;
}

async fn send_udp(socket: &UdpSocket, reply: &[u8], peer: SocketAddr, network: &str) {
    if let Err(error) = socket.send_to(reply, peer).await {
        tracing::debug!(%network, %peer, %error, "udp send failed");
    }
}

/// Accepts TCP connections until `shutdown` fires; open connections are
/// aborted then.
pub async fn run_tcp(
    service: Arc<Service>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<()>,
    network: String,
) {
    let table = ConnectionTable::new(TCP_LIMITS);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                while connections.try_join_next().is_some() {}
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(%network, %error, "tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match table.admit(peer.ip()) {
                    Admission::Admitted { slot, closed_for_room } => {
                        if !closed_for_room.is_empty() {
                            tracing::debug!(%network, %peer, closed = ?closed_for_room, "TCP connections full: closed the longest idle for room");
                        }
                        let service = Arc::clone(&service);
                        let network = network.clone();
                        connections.spawn(async move {
                            serve_connection(&service, stream, peer, &slot, &network).await;
                        });
                    }
                    Admission::Refused => {
                        tracing::warn!(%network, %peer, open = table.open(), "every TCP connection in the way is busy with a query, closing the new one");
                        drop(stream);
                    }
                }
            }
        }
    }
    connections.shutdown().await;
}

/// Several length-prefixed queries per connection (RFC 7766 §6.2.1), answered
/// in order, until the client closes, goes idle, misbehaves or its
/// connection is closed to make room.
async fn serve_connection(
    service: &Service,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: &Slot<IpAddr>,
    network: &str,
) {
    loop {
        let mut len = [0u8; 2];
        match slot.next_request(stream.read_exact(&mut len)).await {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 {
            return;
        }
        let mut query = vec![0u8; len];
        match tokio::time::timeout(TCP_IO_TIMEOUT, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        let Some(reply) = service.handle(&query, Transport::Tcp).await else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            tracing::warn!(%network, %peer, len = reply.len(), "reply longer than 65535 bytes, closing");
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        match tokio::time::timeout(TCP_IO_TIMEOUT, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
