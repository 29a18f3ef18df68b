//! One read transfer on its own socket (the server's TID, RFC 1350 4):
//! OACK when options were asked for, then windows of DATA blocks
//! (RFC 7440), each retransmitted on timeout until the client acknowledges
//! it or the retries run out.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use super::packet::{self, ErrorCode, Negotiated, Reply, RequestedOptions};

/// How a transfer is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Wait for an ACK this long before sending the window again (unless
    /// the client negotiated `timeout`).
    pub retransmit: Duration,
    /// Sends of one window (or the OACK) before the transfer is given up.
    pub attempts: u32,
    /// The whole transfer's limit: a client that ACKs just often enough
    /// never times out a window, and would hold its slot forever.
    pub max_duration: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The client stopped answering.
    TimedOut {
        block: u64,
    },
    /// The transfer ran longer than [`Pacing::max_duration`].
    TooSlow,
    /// The client sent an ERROR (e.g. 8: it refused the options).
    ClientError {
        code: u16,
        message: String,
    },
    Io(String),
}

/// Sends `file` (`size` bytes) over `sock`, already connected to the
/// client. Returns the bytes delivered.
pub async fn send(
    sock: &UdpSocket,
    file: &File,
    size: u64,
    requested: &RequestedOptions,
    pacing: Pacing,
) -> Result<u64, Failure> {
    let n = Negotiated::new(requested, size);
    let retransmit = n
        .timeout
        .map_or(pacing.retransmit, |s| Duration::from_secs(s.into()));
    let blksize = u64::from(n.blksize);
    // The last block is shorter than blksize, possibly empty (RFC 1350 6).
    let blocks = size / blksize + 1;
    let mut buf = vec![0u8; 4 + usize::from(n.blksize) + 4];

    if n.oack {
        let oack = packet::oack(&n, requested);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > pacing.attempts {
                return Err(Failure::TimedOut { block: 0 });
            }
            sock.send(&oack).await.map_err(io)?;
            match wait_ack(sock, &mut buf, retransmit, 0, 0).await? {
                Some(_) => break,
                None => continue,
            }
        }
    }

    // Blocks 1..=acked are delivered. Block numbers are the low 16 bits of
    // the index: they wrap from 65535 to 0, as tftp-hpa, curl and U-Boot
    // expect for files over 32 MB at 512-byte blocks.
    let mut acked: u64 = 0;
    let mut attempt = 0;
    let mut data = vec![0u8; usize::from(n.blksize)];
    while acked < blocks {
        attempt += 1;
        if attempt > pacing.attempts {
            return Err(Failure::TimedOut { block: acked + 1 });
        }
        let last = blocks.min(acked + u64::from(n.windowsize));
        for index in acked + 1..=last {
            let offset = (index - 1) * blksize;
            let len = usize::try_from(blksize.min(size - offset.min(size))).unwrap_or(0);
            // A positional read of at most one block, from the page cache
            // in practice: short enough not to need spawn_blocking.
            read_exact_at(file, &mut data[..len], offset).map_err(io)?;
            sock.send(&packet::data(index as u16, &data[..len]))
                .await
                .map_err(io)?;
        }
        let window = last - acked;
        if let Some(advance) = wait_ack(sock, &mut buf, retransmit, acked, window).await? {
            acked += advance;
            attempt = 0;
        }
    }
    Ok(size)
}

/// Waits up to `retransmit` for an ACK of one of the `window` blocks after
/// `acked`; returns how many blocks it acknowledges, `None` on timeout.
/// With `window` 0 it waits for the ACK of the OACK (block 0). Duplicate
/// and stale ACKs are ignored rather than answered (the Sorcerer's
/// Apprentice bug, RFC 1123 4.2.3.1).
async fn wait_ack(
    sock: &UdpSocket,
    buf: &mut [u8],
    retransmit: Duration,
    acked: u64,
    window: u64,
) -> Result<Option<u64>, Failure> {
    let deadline = Instant::now() + retransmit;
    loop {
        let n = match timeout_at(deadline, sock.recv(buf)).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) => return Err(io(e)),
            Ok(Ok(n)) => n,
        };
        match packet::parse_reply(&buf[..n]) {
            Ok(Reply::Ack(block)) => {
                let advance = u64::from(block.wrapping_sub(acked as u16));
                if window == 0 && advance == 0 {
                    return Ok(Some(0));
                }
                if (1..=window).contains(&advance) {
                    return Ok(Some(advance));
                }
            }
            Ok(Reply::Error { code, message }) => {
                return Err(Failure::ClientError { code, message });
            }
            // Garbage from the client: not worth ending the transfer for.
            Err(_) => {}
        }
    }
}

fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset)? {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank during the transfer",
                ));
            }
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

fn io(e: std::io::Error) -> Failure {
    Failure::Io(e.to_string())
}

/// The ERROR packet that ends a transfer the server gives up on.
pub fn error_for(failure: &Failure) -> Option<Vec<u8>> {
    match failure {
        Failure::TimedOut { .. } => Some(packet::error(
            ErrorCode::NotDefined,
            "timed out waiting for an ACK",
        )),
        Failure::TooSlow => Some(packet::error(
            ErrorCode::NotDefined,
            "transfer took too long",
        )),
        Failure::Io(_) => Some(packet::error(ErrorCode::NotDefined, "read error")),
        // The client ended it already.
        Failure::ClientError { .. } => None,
    }
}
