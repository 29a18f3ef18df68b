//! The LAN host's side of the UDP load: counts datagrams with `recvmmsg`.
use std::{
    collections::BTreeSet,
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd as _,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

const BATCH: usize = 64;
/// Large enough that the receiving thread, on its own core, never loses
/// what the forwarding core delivered while it was descheduled.
const RECEIVE_BUFFER: libc::c_int = 32 << 20;
/// After the sender is done, the receiver stops once nothing came for this long.
const DRAIN: Duration = Duration::from_millis(200);

/// Binds `count` UDP sockets on `address`, ports `first_port`.. . Call it
/// inside the LAN namespace; the sockets work from any thread after that.
pub fn bind(address: Ipv4Addr, first_port: u16, count: u16) -> io::Result<Vec<UdpSocket>> {
    (0..count)
        .map(|k| {
            let socket = UdpSocket::bind(SocketAddrV4::new(address, first_port + k))?;
            socket.set_nonblocking(true)?;
            // SO_RCVBUFFORCE (root) ignores net.core.rmem_max.
            let size = RECEIVE_BUFFER;
            // SAFETY: setsockopt with an int option of the right size.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&raw const size).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            Ok(socket)
        })
        .collect()
}

/// What arrived.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub packets: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Source addresses seen (one sample per batch): proves the translation.
    pub sources: BTreeSet<Ipv4Addr>,
}

impl Received {
    /// Datagrams per second between the first and the last batch.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first && self.packets > 1 => {
                (self.packets - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Counts datagrams on `sockets` until `sender_done` is set and nothing came
/// for [`DRAIN`], or `limit` passes.
pub fn receive(sockets: &[UdpSocket], sender_done: &AtomicBool, limit: Duration) -> Received {
    let mut buffers = vec![[0u8; 128]; BATCH];
    // SAFETY: sockaddr_in is plain data, zero is a valid start.
    let mut names: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovecs: Vec<libc::iovec> = buffers
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut messages: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .zip(names.iter_mut())
        .map(|(iov, name)| {
            // SAFETY: mmsghdr is plain data, zero is a valid start.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
            m
        })
        .collect();
    let mut polls: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();

    let started = Instant::now();
    let mut received = Received::default();
    let mut last_activity = Instant::now();
    while started.elapsed() < limit {
        let mut got_any = false;
        for socket in sockets {
            for m in &mut messages {
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            // SAFETY: messages point at live buffers and names of the sizes given.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    messages.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            let Ok(n @ 1..) = u64::try_from(n) else {
                continue;
            };
            let now = Instant::now();
            got_any = true;
            received.first.get_or_insert(now);
            received.last = Some(now);
            received.packets += n;
            received
                .sources
                .insert(Ipv4Addr::from(u32::from_be(names[0].sin_addr.s_addr)));
        }
        if got_any {
            last_activity = Instant::now();
            continue;
        }
        if sender_done.load(Ordering::Acquire) && last_activity.elapsed() >= DRAIN {
            break;
        }
        // SAFETY: polls is a live array of pollfd of the length given.
        unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, 20) };
    }
    received
}
