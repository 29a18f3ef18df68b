//! A running capture: libpcap reads the interface with the compiled filter,
//! pcap-file writes the stream, and the loop ends on the first bound.
use std::{
    os::fd::AsRawFd,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
};

use super::{MAX_BYTES, MAX_CAPTURES, SNAPLEN};

/// How long a read waits for a packet before the bounds are checked again.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("opening a capture on {interface} failed: {message}")]
    Open { interface: String, message: String },
    #[error("the filter expression `{expression}` is not valid: {message}; see pcap-filter(7)")]
    Filter { expression: String, message: String },
}

/// Why a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Count,
    Duration,
    /// [`MAX_BYTES`] streamed.
    Bytes,
    /// The client closed the connection (or its pipe broke).
    ClientGone,
    /// Reading the interface failed (it went away).
    Failed(String),
}

/// One of the [`MAX_CAPTURES`] places; the place is free again on drop.
#[derive(Debug)]
pub struct Place(());

static RUNNING: AtomicUsize = AtomicUsize::new(0);

impl Place {
    /// A place, or `None` when [`MAX_CAPTURES`] captures run.
    pub fn claim() -> Option<Self> {
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CAPTURES).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open capture with its filter set.
pub struct Live {
    capture: pcap::Capture<pcap::Active>,
    filter: String,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("filter", &self.filter)
            .finish()
    }
}

impl Live {
    /// Opens `interface` (not promiscuous: DUT traffic is addressed to the
    /// NIC) and applies `filter` (empty: every packet).
    pub fn open(interface: &str, filter: &str) -> Result<Self, CaptureError> {
        let open = |e: pcap::Error| CaptureError::Open {
            interface: interface.to_owned(),
            message: e.to_string(),
        };
        let capture = pcap::Capture::from_device(interface)
            .map_err(open)?
            .promisc(false)
            .snaplen(i32::try_from(SNAPLEN).unwrap_or(i32::MAX))
            .immediate_mode(true)
            .timeout(i32::try_from(POLL.as_millis()).unwrap_or(200))
            .open()
            .and_then(pcap::Capture::setnonblock)
            .map_err(open)?;
        let mut live = Self {
            capture,
            filter: String::new(),
        };
        live.set_filter(filter)?;
        Ok(live)
    }

    /// Replaces the filter (the upstream scope of a DUT follows its flows).
    pub fn set_filter(&mut self, filter: &str) -> Result<(), CaptureError> {
        if filter == self.filter {
            return Ok(());
        }
        self.capture
            .filter(filter, true)
            .map_err(|e| CaptureError::Filter {
                expression: filter.to_owned(),
                message: e.to_string(),
            })?;
        filter.clone_into(&mut self.filter);
        Ok(())
    }

    /// Streams pcap to `out` until a bound: `count` packets, `duration`,
    /// [`MAX_BYTES`], or `out`'s peer gone (`out` is a socket). Every
    /// `refresh` interval `refresh` may give a new filter.
    pub fn run(
        &mut self,
        out: &std::os::unix::net::UnixStream,
        count: Option<u64>,
        duration: Duration,
        mut refresh: impl FnMut() -> Option<String>,
    ) -> (End, u64) {
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let fd = out.as_raw_fd();
        let Ok(mut writer) = PcapWriter::with_header(out, header) else {
            return (End::ClientGone, 0);
        };
        let started = Instant::now();
        let mut last_refresh = started;
        let (mut packets, mut bytes) = (0_u64, 24_u64);
        let mut idle = true;
        let end = loop {
            if count.is_some_and(|c| packets >= c) {
                break End::Count;
            }
            if started.elapsed() >= duration {
                break End::Duration;
            }
            // One wait for a packet or the client's hang-up: libpcap's own
            // read timeout is not honoured in immediate mode.
            // (only after a read found nothing: libpcap may hold more
            // packets of a block already read).
            if idle {
                match wait(self.capture.as_raw_fd(), fd) {
                    Wait::PeerGone => break End::ClientGone,
                    Wait::Ready | Wait::Timeout => {}
                }
            }
            if last_refresh.elapsed() >= Duration::from_secs(2) {
                last_refresh = Instant::now();
                if let Some(filter) = refresh()
                    && let Err(e) = self.set_filter(&filter)
                {
                    break End::Failed(e.to_string());
                }
            }
            match self.capture.next_packet() {
                Ok(p) => {
                    idle = false;
                    let ts = Duration::new(
                        u64::try_from(p.header.ts.tv_sec).unwrap_or(0),
                        u32::try_from(p.header.ts.tv_usec).unwrap_or(0) * 1000,
                    );
                    let size = 16 + p.data.len() as u64;
                    if bytes + size > MAX_BYTES {
                        break End::Bytes;
                    }
                    let packet = PcapPacket::new(ts, p.header.len, p.data);
                    if writer.write_packet(&packet).is_err() {
                        break End::ClientGone;
                    }
                    bytes += size;
                    packets += 1;
                }
                Err(pcap::Error::TimeoutExpired) => idle = true,
                Err(e) => break End::Failed(e.to_string()),
            }
        };
        (end, packets)
    }
}

enum Wait {
    Ready,
    Timeout,
    PeerGone,
}

/// Waits at most [`POLL`] for a packet on `capture` or for the other end of
/// socket `peer` to close (`POLLRDHUP`/`POLLHUP`): an idle capture notices
/// a client that went away.
fn wait(capture: std::os::fd::RawFd, peer: std::os::fd::RawFd) -> Wait {
    let mut fds = [
        libc::pollfd {
            fd: capture,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: peer,
            events: libc::POLLRDHUP,
            revents: 0,
        },
    ];
    let ms = i32::try_from(POLL.as_millis()).unwrap_or(200);
    // SAFETY: two valid pollfds, as the length says.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if n > 0 && fds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
        Wait::PeerGone
    } else if n > 0 {
        Wait::Ready
    } else {
        Wait::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded() {
        let held: Vec<Place> = std::iter::from_fn(Place::claim)
            .take(MAX_CAPTURES + 1)
            .collect();
        assert!(held.len() <= MAX_CAPTURES);
        assert!(Place::claim().is_none());
        drop(held);
        assert!(Place::claim().is_some());
    }
}
