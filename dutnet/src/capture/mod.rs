//! Packet capture (`dutnet capture`, jumpstarter's `tcpdump`): the daemon
//! reads a DUT NIC (or the upstream NIC, filtered to a network's or a DUT's
//! translated flows) with libpcap and streams pcap to the client over the
//! control socket.
//!
//! - [`scope`]: the pcap-filter expression of what a capture may see;
//! - [`live`]: the capture itself, bounded by count, duration, bytes and
//!   the client going away;
//! - [`text`]: one `tcpdump -n`-like line per packet, for the text mode.
//!
//! AF_PACKET taps see the eBPF fast path's packets both ways: a tap on the
//! DUT NIC runs before its TC ingress hook (`__netif_receive_skb_core`
//! delivers to `ptype_all` first), and a packet the programs redirect out of
//! a NIC goes through `dev_queue_xmit`, which hands it to that NIC's taps.
use std::time::Duration;

pub mod live;
pub mod scope;
pub mod text;

/// The longest capture: one without `--duration` ends after this.
pub const MAX_DURATION: Duration = Duration::from_secs(60 * 60);
/// The most pcap bytes one capture streams (1 GiB): a forgotten
/// `capture -w FILE` never fills the disk.
pub const MAX_BYTES: u64 = 1 << 30;
/// Captures one daemon runs at once.
pub const MAX_CAPTURES: usize = 4;
/// Bytes kept of each packet (tcpdump's default).
pub const SNAPLEN: u32 = 262_144;
