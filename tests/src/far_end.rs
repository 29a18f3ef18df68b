//! The far end of a NAT test: echo servers that run on a thread inside a
//! namespace and record who they heard from, so a test can assert the source
//! address and port the far host saw (the oracle for source translation).
//!
//! Every echo starts with the peer the server saw (`10.99.0.2:4444 `), then
//! the request: a client can tell that it got the reply to its own request
//! and learn how it was translated.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket},
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::Netns;

/// How often a server thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// A server thread and what it heard; stopped and joined on drop.
#[derive(Debug)]
struct Server<T> {
    seen: Arc<Mutex<Vec<T>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Clone + Send + 'static> Server<T> {
    /// Runs `serve(stop, seen)` on a thread; it returns once `stop` is set.
    fn start(serve: impl FnOnce(&AtomicBool, &Mutex<Vec<T>>) + Send + 'static) -> Self {
        let (seen, stop) = (Arc::default(), Arc::new(AtomicBool::new(false)));
        let thread = std::thread::spawn({
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            move || serve(&stop, &seen)
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<T> {
        self.seen.lock().expect("seen lock").clone()
    }
}

impl<T> Drop for Server<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn record<T>(seen: &Mutex<Vec<T>>, item: T) {
    seen.lock().expect("seen lock").push(item);
}

/// The IPv4 address a server socket got.
fn bound_v4(local: std::io::Result<SocketAddr>) -> SocketAddrV4 {
    match local.expect("local addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("echo server bound to {a}"),
    }
}

/// The echo of `request` from `peer`: `"<peer> <request>"`.
#[must_use]
pub fn echo_of(peer: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut reply = format!("{peer} ").into_bytes();
    reply.extend_from_slice(request);
    reply
}

/// Splits an echo into the peer the server saw and the request it echoed.
#[must_use]
pub fn parse_echo(reply: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let space = reply.iter().position(|b| *b == b' ')?;
    let peer = std::str::from_utf8(&reply[..space]).ok()?.parse().ok()?;
    Some((peer, &reply[space + 1..]))
}

/// A UDP echo server in a namespace, recording the source of every datagram.
#[derive(Debug)]
pub struct UdpEcho {
    pub addr: SocketAddrV4,
    server: Server<(SocketAddr, usize)>,
}

impl UdpEcho {
    /// Listens on `addr` (port 0: any) inside `ns`. The receive buffer is
    /// forced large so that bursts of thousands of datagrams are not lost
    /// at the server.
    pub fn start(ns: &Netns, addr: SocketAddrV4) -> Self {
        let socket = ns.enter(move || UdpSocket::bind(addr).expect("bind UDP echo"));
        force_buffers(&socket, 32 << 20);
        socket.set_read_timeout(Some(POLL)).expect("set timeout");
        let addr = bound_v4(socket.local_addr());
        let server = Server::start(move |stop, seen| {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                record(seen, (peer, n));
                let _ = socket.send_to(&echo_of(peer, &buf[..n]), peer);
            }
        });
        Self { addr, server }
    }

    /// The source of every datagram received so far, in order.
    #[must_use]
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.datagrams().into_iter().map(|(peer, _)| peer).collect()
    }

    /// Source and payload length of every datagram received so far.
    #[must_use]
    pub fn datagrams(&self) -> Vec<(SocketAddr, usize)> {
        self.server.seen()
    }
}

/// A TCP echo server in a namespace: each connection sends one line, gets
/// back its echo (one line) and is closed. Records each connection's peer.
#[derive(Debug)]
pub struct TcpEcho {
    pub addr: SocketAddrV4,
    server: Server<SocketAddr>,
}

impl TcpEcho {
    pub fn start(ns: &Netns, addr: SocketAddrV4) -> Self {
        let listener = ns.enter(move || TcpListener::bind(addr).expect("bind TCP echo"));
        // A blocking accept that gives up after POLL (Linux applies
        // SO_RCVTIMEO to accept) serves a connection as soon as it comes,
        // so a client can run thousands of them one after the other.
        set_timeout(&listener, POLL);
        let addr = bound_v4(listener.local_addr());
        let server = Server::start(move |stop, seen| {
            while !stop.load(Ordering::Relaxed) {
                let Ok((stream, peer)) = listener.accept() else {
                    continue;
                };
                record(seen, peer);
                // One connection at a time is enough for these tests; a
                // silent client cannot hold the server past the timeout.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = Vec::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_until(b'\n', &mut line).is_ok() {
                    let _ = (&stream).write_all(&echo_of(peer, &line));
                }
            }
        });
        Self { addr, server }
    }

    /// The peer of every connection accepted so far, in order.
    #[must_use]
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.server.seen()
    }
}

/// Records the source of every ICMP echo request a namespace receives (a raw
/// socket gets a copy; the kernel still answers the ping itself).
#[derive(Debug)]
pub struct IcmpRecorder {
    server: Server<Ipv4Addr>,
}

impl IcmpRecorder {
    pub fn start(ns: &Netns) -> Self {
        let socket = ns.enter(|| {
            // SAFETY: plain socket(2); the result is checked before use.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            // SAFETY: fd is a fresh descriptor nobody else owns.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        set_timeout(&socket, POLL);
        let server = Server::start(move |stop, seen| {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: buf is valid for buf.len() bytes.
                let n = unsafe {
                    libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                let Ok(n) = usize::try_from(n) else { continue };
                // The IPv4 header comes with the packet on a raw socket.
                let header = usize::from(buf[0] & 0x0f) * 4;
                const ECHO_REQUEST: u8 = 8;
                if n > header && header >= 20 && buf[header] == ECHO_REQUEST {
                    let source = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                    record(seen, source);
                }
            }
        });
        Self { server }
    }

    /// The source of every echo request received so far.
    #[must_use]
    pub fn sources(&self) -> Vec<Ipv4Addr> {
        self.server.seen()
    }
}

/// Sets SO_RCVBUF and SO_SNDBUF to `bytes`, past `rmem_max` (we are root).
pub fn force_buffers(socket: &impl std::os::fd::AsRawFd, bytes: i32) {
    for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt with a valid fd and a c_int option value.
        let ret = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::from_ref(&bytes).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0, "setsockopt: {}", std::io::Error::last_os_error());
    }
}

fn set_timeout(socket: &impl AsRawFd, timeout: Duration) {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: setsockopt with a valid fd and a timeval option value.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
}

/// Raises this process's open-file limit to at least `files` (as root, the
/// hard limit too). The limit is process-wide, so any thread may call it.
pub fn raise_nofile(files: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) },
        0
    );
    if limit.rlim_cur >= files {
        return;
    }
    limit.rlim_cur = files;
    limit.rlim_max = limit.rlim_max.max(files);
    // SAFETY: setrlimit reads the struct we pass.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) };
    assert_eq!(ret, 0, "setrlimit: {}", std::io::Error::last_os_error());
}
