//! The listening sockets, made with libc because the options must be set
//! before `bind` and neither std nor tokio can: `SO_BINDTODEVICE` ties the
//! socket to one DUT NIC and `SO_REUSEADDR` lets several networks bind the
//! SAME gateway IP and port 53 on different NICs (the kernel tells bound
//! sockets apart by device). Also the host-address list for loop checks.

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Pending TCP connections the kernel queues before accept.
const TCP_BACKLOG: libc::c_int = 128;

/// Which kind of listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    /// For logs and errors.
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

/// A non-blocking socket bound to `addr` on `interface` (and listening, for
/// TCP), ready for tokio's `from_std`.
pub fn bind_on_device(
    proto: Proto,
    addr: SocketAddrV4,
    interface: &str,
) -> Result<OwnedFd, SocketError> {
    let ifname = CString::new(interface).map_err(|_| SocketError {
        call: "interface name",
        source: io::Error::new(io::ErrorKind::InvalidInput, "contains a NUL byte"),
    })?;
    if ifname.as_bytes().len() >= libc::IFNAMSIZ {
        return Err(SocketError {
            call: "interface name",
            source: io::Error::new(io::ErrorKind::InvalidInput, "longer than IFNAMSIZ-1"),
        });
    }
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

    let one: libc::c_int = 1;
    // SAFETY: valid fd, pointer and length of a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            socklen_of::<libc::c_int>(),
        )
    };
    if rc != 0 {
        return Err(last_error("setsockopt(SO_REUSEADDR)"));
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

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Every IPv4 and IPv6 address configured on this host's interfaces.
pub fn host_addresses() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addrs = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its
            // real type; we only read the matching struct.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: as above, AF_INET means sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                addrs.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: as above, AF_INET6 means sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                addrs.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_include_loopback() {
        let addrs = host_addresses().unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }

    #[test]
    fn two_udp_sockets_share_an_address_on_the_same_device_with_reuseaddr() {
        let a = bind_on_device(Proto::Udp, "127.0.0.1:0".parse().unwrap(), "lo").unwrap();
        let std_a = std::net::UdpSocket::from(a);
        let port = std_a.local_addr().unwrap().port();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        bind_on_device(Proto::Udp, addr, "lo").unwrap();
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
                    held.push(bind_on_device(proto, addr, dev).unwrap());
                }
            }
            // The same device twice is still a conflict for TCP listeners.
            assert!(bind_on_device(Proto::Tcp, addr, "dutnet-t0").is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn unknown_device_and_bad_names_fail_cleanly() {
        let addr: SocketAddrV4 = "127.0.0.1:0".parse().unwrap();
        let err = bind_on_device(Proto::Tcp, addr, "dutnet-nope0").unwrap_err();
        assert_eq!(err.call, "setsockopt(SO_BINDTODEVICE)");
        assert_eq!(err.source.raw_os_error(), Some(libc::ENODEV));
        assert!(bind_on_device(Proto::Udp, addr, "a\0b").is_err());
        assert!(bind_on_device(Proto::Udp, addr, &"x".repeat(20)).is_err());
    }
}
