//! Sockets bound to one DUT NIC, made with libc because the options must be
//! set before `bind` and neither std nor tokio can: `SO_BINDTODEVICE` ties
//! the socket to the NIC (it only receives what arrived there, and its
//! broadcasts only leave through it), and `SO_REUSEADDR` lets several
//! networks bind the same gateway IP and port on different NICs (the kernel
//! tells bound sockets apart by device). The DHCP, DNS, TFTP and NTP servers
//! all open their sockets here.
use std::{
    ffi::CString,
    io,
    net::SocketAddrV4,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// Connections the kernel queues before accept. A DUT opening hundreds of
/// connections at once fills the queue faster than the server accepts and
/// evicts; while it is full the kernel drops every SYN, another DUT's too,
/// and that client waits a full second for its retransmit. Larger than any
/// flood the connection caps are tested with (net.core.somaxconn caps it).
const TCP_BACKLOG: libc::c_int = 1024;

/// Which kind of socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    /// For logs and errors.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// Which step of socket setup failed.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {source}")]
pub struct SocketError {
    pub call: &'static str,
    #[source]
    pub source: io::Error,
}

fn last_error(call: &'static str) -> SocketError {
    SocketError {
        call,
        source: io::Error::last_os_error(),
    }
}

/// The options of [`bound_to_device`] beyond the ones every socket gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `SO_BROADCAST`: the socket may send to 255.255.255.255 (DHCP).
    pub broadcast: bool,
}

/// A non-blocking, close-on-exec socket with `SO_REUSEADDR` and
/// `SO_BINDTODEVICE` `interface`, bound to `addr` (and listening, for TCP),
/// ready for tokio's `from_std`.
pub fn bound_to_device(
    proto: Proto,
    addr: SocketAddrV4,
    interface: &str,
    options: Options,
) -> Result<OwnedFd, SocketError> {
    let ifname = interface_name(interface)?;
    let kind = match proto {
        Proto::Udp => libc::SOCK_DGRAM,
        Proto::Tcp => libc::SOCK_STREAM,
    };
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(last_error("socket"));
    }
    // SAFETY: `raw` is a fresh descriptor we own; OwnedFd closes it on every
    // error path below.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int(&fd, libc::SO_REUSEADDR, "setsockopt(SO_REUSEADDR)")?;
    if options.broadcast {
        set_int(&fd, libc::SO_BROADCAST, "setsockopt(SO_BROADCAST)")?;
    }
    let name = ifname.as_bytes_with_nul();
    // SAFETY: valid fd; pointer and length of the NUL-terminated name.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            libc::socklen_t::try_from(name.len()).unwrap_or(libc::socklen_t::MAX),
        )
    };
    if rc != 0 {
        return Err(last_error("setsockopt(SO_BINDTODEVICE)"));
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd; pointer and length of a live sockaddr_in.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sin).cast(),
            socklen_of::<libc::sockaddr_in>(),
        )
    };
    if rc != 0 {
        return Err(last_error("bind"));
    }
    if proto == Proto::Tcp {
        // SAFETY: valid, bound stream socket.
        if unsafe { libc::listen(fd.as_raw_fd(), TCP_BACKLOG) } != 0 {
            return Err(last_error("listen"));
        }
    }
    Ok(fd)
}

/// The NUL-terminated name `SO_BINDTODEVICE` takes. An empty name would
/// *remove* the binding, so it is refused like an over-long one.
fn interface_name(interface: &str) -> Result<CString, SocketError> {
    let refuse = |why: &str| SocketError {
        call: "check interface name",
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()),
    };
    let name = CString::new(interface).map_err(|_| refuse("contains a NUL byte"))?;
    if name.as_bytes().is_empty() {
        return Err(refuse("empty"));
    }
    if name.as_bytes().len() >= libc::IFNAMSIZ {
        return Err(refuse("longer than IFNAMSIZ-1"));
    }
    Ok(name)
}

/// Sets the `SOL_SOCKET` option `opt` to 1.
fn set_int(fd: &OwnedFd, opt: libc::c_int, call: &'static str) -> Result<(), SocketError> {
    let one: libc::c_int = 1;
    // SAFETY: valid fd, pointer and length of a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const one).cast(),
            socklen_of::<libc::c_int>(),
        )
    };
    if rc != 0 {
        return Err(last_error(call));
    }
    Ok(())
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// A tokio UDP socket on `addr`, bound to `interface` when one is given
/// (the servers on a DUT NIC), plain otherwise (unit tests on loopback);
/// the failing call and its error.
pub fn udp(
    interface: Option<&str>,
    addr: SocketAddrV4,
) -> Result<tokio::net::UdpSocket, (&'static str, std::io::Error)> {
    let std_sock = match interface {
        Some(interface) => bound_to_device(Proto::Udp, addr, interface, Options::default())
            .map(std::net::UdpSocket::from)
            .map_err(|e| (e.call, e.source))?,
        None => {
            let s = std::net::UdpSocket::bind(addr).map_err(|e| ("bind", e))?;
            s.set_nonblocking(true)
                .map_err(|e| ("set_nonblocking", e))?;
            s
        }
    };
    tokio::net::UdpSocket::from_std(std_sock).map_err(|e| ("tokio registration", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    #[test]
    fn two_udp_sockets_share_an_address_on_the_same_device_with_reuseaddr() {
        let a = bound_to_device(
            Proto::Udp,
            "127.0.0.1:0".parse().unwrap(),
            "lo",
            Options::default(),
        )
        .unwrap();
        let std_a = std::net::UdpSocket::from(a);
        let port = std_a.local_addr().unwrap().port();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        bound_to_device(Proto::Udp, addr, "lo", Options::default()).unwrap();
    }

    /// The reason for SO_BINDTODEVICE + SO_REUSEADDR: two networks with the
    /// SAME gateway IP on two NICs both serve port 53. Runs in a private,
    /// unnamed network namespace of a dedicated thread (it vanishes with the
    /// thread), on the two ends of a veth pair; no packet is sent.
    #[test]
    #[ignore = "needs root: unshare(CLONE_NEWNET) and `ip link add` (run with --include-ignored)"]
    fn same_gateway_ip_on_two_devices() {
        std::thread::spawn(|| {
            // SAFETY: plain syscall; only this thread changes namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let ip = |args: &[&str]| {
                let st = std::process::Command::new("ip")
                    .args(args)
                    .status()
                    .unwrap();
                assert!(st.success(), "ip {args:?}");
            };
            // A veth pair: the kernel may lack the dummy driver.
            ip(&[
                "link",
                "add",
                "dutnet-t0",
                "type",
                "veth",
                "peer",
                "name",
                "dutnet-t1",
            ]);
            for dev in ["dutnet-t0", "dutnet-t1"] {
                ip(&["addr", "add", "192.168.100.1/24", "dev", dev]);
                ip(&["link", "set", dev, "up"]);
            }
            let addr: SocketAddrV4 = "192.168.100.1:53".parse().unwrap();
            let mut held = Vec::new();
            for dev in ["dutnet-t0", "dutnet-t1"] {
                for proto in [Proto::Udp, Proto::Tcp] {
                    held.push(bound_to_device(proto, addr, dev, Options::default()).unwrap());
                }
            }
            // The same device twice is still a conflict for TCP listeners.
            assert!(bound_to_device(Proto::Tcp, addr, "dutnet-t0", Options::default()).is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn unknown_device_and_bad_names_fail_cleanly() {
        let addr: SocketAddrV4 = "127.0.0.1:0".parse().unwrap();
        let err =
            bound_to_device(Proto::Tcp, addr, "dutnet-nope0", Options::default()).unwrap_err();
        assert_eq!(err.call, "setsockopt(SO_BINDTODEVICE)");
        assert_eq!(err.source.raw_os_error(), Some(libc::ENODEV));
        assert!(bound_to_device(Proto::Udp, addr, "a\0b", Options::default()).is_err());
        assert!(bound_to_device(Proto::Udp, addr, &"x".repeat(20), Options::default()).is_err());
    }

    #[test]
    fn rejects_bad_interface_names() {
        assert!(interface_name("").is_err());
        assert!(interface_name("a-name-far-too-long").is_err());
        assert!(interface_name("dut\0").is_err());
        assert_eq!(
            interface_name("dut0").unwrap().as_bytes_with_nul(),
            b"dut0\0"
        );
    }
}
