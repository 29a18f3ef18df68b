//! A 64-byte UDP load: frames written straight onto a DUT's NIC with an
//! `AF_PACKET` socket and `sendmmsg`, for the benchmark and for the tests of
//! a flooding DUT.
//!
//! Writing frames, not datagrams, lets every packet carry any 5-tuple (a new
//! flow per packet needs hundreds of thousands of them) and keeps the DUT's
//! own UDP stack, which costs the same on every path, out of the sending
//! core's budget. Each frame has valid IPv4 and UDP checksums, as a real
//! DUT's would. Every load is bounded in packets and in time.
use std::{
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use crate::frames;

/// 64 bytes on the wire with the FCS the veth never carries.
pub const FRAME_LEN: usize = 60;
const PAYLOAD_LEN: usize = FRAME_LEN - frames::ETH_HLEN - frames::IPV4_HLEN - frames::UDP_HLEN;
const UDP_AT: usize = frames::ETH_HLEN + frames::IPV4_HLEN;
/// The LAN receiver listens on this port and the next `DST_PORTS - 1`.
pub const DST_PORT_BASE: u16 = 9000;
/// Destination ports a new-flow load cycles through: source ports alone
/// (60 000) would repeat a 5-tuple within one run.
pub const DST_PORTS: u16 = 4;
const SRC_PORT_BASE: u16 = 1024;
const SRC_PORTS: u64 = 60_000;
const BATCH: usize = 64;
/// The 5-tuples of [`Flows::Scattered`]: every source port from 1024 and
/// every destination port but 0.
const SCATTERED_SRC_PORTS: u32 = 65_536 - 1024;
const SCATTERED_DST_PORTS: u32 = 65_535;
const SCATTERED: u32 = SCATTERED_SRC_PORTS * SCATTERED_DST_PORTS;

/// Which 5-tuples the packets of one load carry.
#[derive(Clone, Copy, Debug)]
pub enum Flows {
    /// Every packet the same flow.
    One,
    /// Source ports cycle through this many values: that many flows.
    Cycle(u16),
    /// Every packet a flow never seen before (source port, then destination
    /// port, change): at most [`Flows::distinct`] packets.
    NewPerPacket,
    /// Every packet a flow never seen before, in an order no pattern
    /// predicts, to any destination port: what a flooding or scanning DUT
    /// sends. `seed` picks the order. About 4.2 billion packets before a
    /// 5-tuple repeats. Two seeds' orders are not independent (the seed is
    /// mixed into the packet's index), so two loads with different seeds may
    /// share most of their 5-tuples: use [`Flows::ScatteredFrom`] for loads
    /// that must not.
    Scattered { seed: u32 },
    /// [`Flows::Scattered`] from its packet `first` on: a load that goes on
    /// where an earlier one of the same seed stopped (a table fill, then a
    /// flood) never repeats the earlier one's 5-tuples.
    ScatteredFrom { seed: u32, first: u64 },
}

impl Flows {
    /// (source port, destination port) of packet `i`.
    fn ports(self, i: u64) -> (u16, u16) {
        let port = |base: u16, offset: u64| base.wrapping_add((offset & 0xffff) as u16);
        match self {
            Self::One => (SRC_PORT_BASE, DST_PORT_BASE),
            Self::Cycle(n) => (port(SRC_PORT_BASE, i % u64::from(n.max(1))), DST_PORT_BASE),
            Self::NewPerPacket => (
                port(SRC_PORT_BASE, i % SRC_PORTS),
                port(DST_PORT_BASE, (i / SRC_PORTS) % u64::from(DST_PORTS)),
            ),
            Self::Scattered { seed } => {
                let index = (i % u64::from(SCATTERED)) as u32;
                let tuple = scatter(index, seed);
                (
                    1024 + (tuple % SCATTERED_SRC_PORTS) as u16,
                    1 + (tuple / SCATTERED_SRC_PORTS) as u16,
                )
            }
            Self::ScatteredFrom { seed, first } => Self::Scattered { seed }.ports(first + i),
        }
    }

    /// How many distinct flows the pattern has.
    pub fn distinct(self) -> u64 {
        match self {
            Self::One => 1,
            Self::Cycle(n) => u64::from(n),
            Self::NewPerPacket => SRC_PORTS * u64::from(DST_PORTS),
            Self::Scattered { .. } | Self::ScatteredFrom { .. } => u64::from(SCATTERED),
        }
    }
}

/// A permutation of `0..SCATTERED`: murmur3's 32-bit finalizer (a bijection
/// of u32) keyed with `seed`, applied again while the result falls outside
/// the range ("cycle walking"), which keeps it a bijection of the range.
fn scatter(index: u32, seed: u32) -> u32 {
    let mix = |mut h: u32| {
        h ^= seed;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    };
    let mut value = mix(index);
    while value >= SCATTERED {
        value = mix(value);
    }
    value
}

/// One bounded load: stops after `packets` or after `limit`, whichever first.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub flows: Flows,
    pub packets: u64,
    pub limit: Duration,
}

/// What the generator did.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub packets: u64,
    pub elapsed: Duration,
    /// CPU time of the sending thread. Without IRQ time accounting (the
    /// usual kernel config) this includes the softirq work run in its
    /// context: the forwarding of every frame through the namespaces.
    pub cpu: Duration,
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    // SAFETY: timespec is plain data; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// An `AF_PACKET` socket bound to one interface, for sending only.
#[derive(Debug)]
pub struct PacketSocket(OwnedFd);

impl PacketSocket {
    /// Opens a socket on `interface`. Call it inside the interface's network
    /// namespace ([`crate::Netns::enter`]); it can be used from any thread
    /// after that.
    pub fn open(interface: &str) -> io::Result<Self> {
        let name = std::ffi::CString::new(interface)?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: the socket receives nothing, so the traffic coming back
        // to the DUT never queues on it.
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let socket = Self(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: sockaddr_ll is plain data, zero is a valid start.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = i32::try_from(index).unwrap_or(0);
        // SAFETY: address is a valid sockaddr_ll of the size given.
        let ret = unsafe {
            libc::bind(
                fd,
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        // The veth has no queue to bypass, but a qdisc attached later would
        // otherwise be measured too.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with an int option of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(socket)
    }
}

/// The frame every packet starts from: the DUT's address to the far host's,
/// 18 bytes of payload.
#[derive(Clone, Debug)]
pub struct Template {
    frame: [u8; FRAME_LEN],
    pseudo_header: u32,
}

impl Template {
    /// Frames from `src` (the DUT's address, or any address a DUT may
    /// claim) to `dst`, sent from `src_mac` to `gateway_mac` (the MAC of the
    /// exporter's DUT NIC).
    #[must_use]
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, gateway_mac: [u8; 6], src_mac: [u8; 6]) -> Self {
        let mut built = frames::udp((src, 0), (dst, 0), &[0x5a; PAYLOAD_LEN]);
        frames::set_macs(&mut built, gateway_mac, src_mac);
        let mut frame = [0u8; FRAME_LEN];
        frame.copy_from_slice(&built[..FRAME_LEN]);
        Self {
            frame,
            pseudo_header: frames::pseudo_header_sum(
                src,
                dst,
                frames::PROTO_UDP,
                FRAME_LEN - UDP_AT,
            ),
        }
    }

    /// Writes packet `i` of `flows` into `out`, with its UDP checksum.
    fn write(&self, flows: Flows, i: u64, out: &mut [u8; FRAME_LEN]) {
        let (sport, dport) = flows.ports(i);
        *out = self.frame;
        out[UDP_AT..UDP_AT + 2].copy_from_slice(&sport.to_be_bytes());
        out[UDP_AT + 2..UDP_AT + 4].copy_from_slice(&dport.to_be_bytes());
        out[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&[0, 0]);
        let mut sum = frames::internet_checksum(&out[UDP_AT..], self.pseudo_header);
        if sum == 0 {
            sum = 0xffff;
        }
        out[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Sends `load` as fast as the core allows. With veth, the receiving
/// namespaces process each frame in softirq on this same core, so this
/// thread's core is where the whole forwarding path is paid.
///
/// # Errors
/// A `sendmmsg` error other than a full queue (which is waited out).
pub fn send(socket: &PacketSocket, template: &Template, load: Load) -> io::Result<Sent> {
    let mut batch = vec![[0u8; FRAME_LEN]; BATCH];
    let mut iovecs: Vec<libc::iovec> = batch
        .iter_mut()
        .map(|f| libc::iovec {
            iov_base: f.as_mut_ptr().cast(),
            iov_len: FRAME_LEN,
        })
        .collect();
    let mut messages: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data, zero is a valid start.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let fd = socket.0.as_raw_fd();
    let started = Instant::now();
    let cpu_at_start = thread_cpu_time();
    let mut sent = 0u64;
    'load: while sent < load.packets && started.elapsed() < load.limit {
        let n = usize::try_from(load.packets - sent).map_or(BATCH, |left| left.min(BATCH));
        for (k, frame) in batch.iter_mut().take(n).enumerate() {
            template.write(load.flows, sent + k as u64, frame);
        }
        let mut done = 0;
        while done < n {
            // SAFETY: messages[done..n] point at live iovecs and frames.
            let ret = unsafe {
                libc::sendmmsg(
                    fd,
                    messages[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if ret < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR | libc::EAGAIN | libc::ENOBUFS) => {
                        if started.elapsed() >= load.limit {
                            sent += done as u64;
                            break 'load;
                        }
                        std::thread::yield_now();
                        continue;
                    }
                    _ => return Err(error),
                }
            }
            done += usize::try_from(ret).unwrap_or(0);
        }
        sent += n as u64;
    }
    Ok(Sent {
        packets: sent,
        elapsed: started.elapsed(),
        cpu: thread_cpu_time().saturating_sub(cpu_at_start),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const DUT: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
    const LAN: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

    #[test]
    fn new_flow_load_never_repeats_a_five_tuple() {
        let flows = Flows::NewPerPacket;
        let tuples: HashSet<_> = (0..flows.distinct()).map(|i| flows.ports(i)).collect();
        assert_eq!(tuples.len() as u64, flows.distinct());
        let (_, highest_dport) = flows.ports(flows.distinct() - 1);
        assert_eq!(highest_dport, DST_PORT_BASE + DST_PORTS - 1);
    }

    #[test]
    fn cycling_load_has_exactly_n_flows() {
        let flows = Flows::Cycle(10_000);
        let tuples: HashSet<_> = (0..50_000).map(|i| flows.ports(i)).collect();
        assert_eq!(tuples.len(), 10_000);
    }

    #[test]
    fn frames_carry_valid_checksums_and_the_ports() {
        let template = Template::new(DUT, LAN, [2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 0x0a]);
        let mut frame = [0u8; FRAME_LEN];
        for i in [0, 1, 59_999, 60_000, 239_999] {
            template.write(Flows::NewPerPacket, i, &mut frame);
            let parsed = frames::parse(frames::ip_packet(&frame));
            assert!(parsed.ip_checksum_ok && parsed.l4_checksum_ok, "packet {i}");
            assert_eq!((parsed.sport, parsed.dport), Flows::NewPerPacket.ports(i));
            assert_eq!((parsed.src, parsed.dst), (DUT, LAN));
        }
    }

    #[test]
    fn scattered_load_never_repeats_a_five_tuple_nor_uses_port_zero() {
        let flows = Flows::Scattered { seed: 7 };
        let tuples: HashSet<_> = (0..300_000).map(|i| flows.ports(i)).collect();
        assert_eq!(tuples.len(), 300_000);
        assert!(tuples.iter().all(|&(s, d)| s >= 1024 && d != 0));
        // Spread over the whole range, not walking it in order.
        let dports: HashSet<_> = (0..1000).map(|i| flows.ports(i).1 / 4096).collect();
        assert_eq!(dports.len(), 16);
    }

    #[test]
    fn scattered_from_goes_on_where_an_earlier_load_stopped() {
        let (seed, first) = (0x0f11, 40_000);
        let fill: HashSet<_> = (0..first)
            .map(|i| Flows::Scattered { seed }.ports(i))
            .collect();
        let flood = Flows::ScatteredFrom { seed, first };
        assert_eq!(flood.ports(0), Flows::Scattered { seed }.ports(first));
        assert!((0..100_000).all(|i| !fill.contains(&flood.ports(i))));
        // What ScatteredFrom is for: another seed walks mostly the same
        // 5-tuples (the seed is mixed into the index).
        let other = Flows::Scattered { seed: seed + 1 };
        let shared = (0..first).filter(|&i| fill.contains(&other.ports(i)));
        assert!(shared.count() > 30_000);
    }

    #[test]
    fn scatter_is_a_permutation_of_its_range_at_the_top() {
        // Cycle walking must map the last values into the range too.
        for index in SCATTERED - 1000..SCATTERED {
            assert!(scatter(index, 3) < SCATTERED);
        }
    }

    #[test]
    fn frames_carry_the_source_address_they_were_given() {
        let other = Ipv4Addr::new(192, 168, 100, 11);
        let template = Template::new(other, LAN, [2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 0x0b]);
        let mut frame = [0u8; FRAME_LEN];
        let flows = Flows::Scattered { seed: 1 };
        template.write(flows, 42, &mut frame);
        let parsed = frames::parse(frames::ip_packet(&frame));
        assert!(parsed.ip_checksum_ok && parsed.l4_checksum_ok);
        assert_eq!((parsed.src, parsed.dst), (other, LAN));
        assert_eq!((parsed.sport, parsed.dport), flows.ports(42));
    }
}
