//! The server's UDP socket: `0.0.0.0:67` bound to one DUT NIC.
//!
//! `SO_BINDTODEVICE` is what keeps networks apart: the socket only receives
//! what arrived on its NIC and its broadcasts only leave through it, so two
//! servers with the same subnet and server IP on two NICs never see or
//! answer each other's clients. `SO_REUSEADDR` lets those sockets share
//! port 67.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use super::DhcpError;
use super::handler::Destination;
use crate::sock::{self, Proto};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// A bound, non-blocking DHCP server socket.
#[derive(Debug)]
pub struct DhcpSocket {
    sock: tokio::net::UdpSocket,
    interface: String,
}

/// How a reply actually left, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Broadcast,
    Unicast(Ipv4Addr),
    /// Wanted unicast to a client without an address, but the ARP entry
    /// could not be installed: broadcast instead.
    BroadcastFallback,
}

impl DhcpSocket {
    /// Opens the socket on `interface`; must run inside a tokio runtime.
    pub fn open(interface: &str, port: u16) -> Result<Self, DhcpError> {
        let std_sock = bind_to_device(interface, port)?;
        let sock =
            tokio::net::UdpSocket::from_std(std_sock).map_err(|source| DhcpError::Socket {
                interface: interface.to_owned(),
                call: "register with tokio",
                source,
            })?;
        Ok(DhcpSocket {
            sock,
            interface: interface.to_owned(),
        })
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.recv_from(buf).await
    }

    /// Sends `bytes` per RFC 2131 4.1 (see [`Destination`]).
    pub async fn send(&self, bytes: &[u8], destination: Destination) -> io::Result<Sent> {
        let (to, sent) = match destination {
            Destination::Broadcast => (Ipv4Addr::BROADCAST, Sent::Broadcast),
            Destination::Unicast(ip) => (ip, Sent::Unicast(ip)),
            Destination::UnicastNoArp { ip, mac } => match self.set_arp(ip, mac) {
                Ok(()) => (ip, Sent::Unicast(ip)),
                Err(e) => {
                    tracing::debug!(interface = %self.interface, %ip, error = %e, "ARP entry not installed, broadcasting instead");
                    (Ipv4Addr::BROADCAST, Sent::BroadcastFallback)
                }
            },
        };
        self.sock
            .send_to(bytes, SocketAddrV4::new(to, CLIENT_PORT))
            .await?;
        Ok(sent)
    }

    /// Installs `ip -> mac` in the NIC's neighbour table (SIOCSARP, as
    /// dnsmasq and ISC dhcpd do): a client without an address cannot answer
    /// the ARP request the kernel would otherwise send for a unicast reply.
    fn set_arp(&self, ip: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
        // SAFETY: arpreq is plain old data; all-zero is a valid value.
        let mut req: libc::arpreq = unsafe { mem::zeroed() };
        let pa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_in and sockaddr have the same size on Linux;
        // the kernel reads arp_pa as a sockaddr_in for AF_INET.
        req.arp_pa = unsafe { mem::transmute::<libc::sockaddr_in, libc::sockaddr>(pa) };
        req.arp_ha.sa_family = libc::ARPHRD_ETHER;
        for (dst, src) in req.arp_ha.sa_data.iter_mut().zip(mac) {
            *dst = src as libc::c_char;
        }
        req.arp_flags = libc::ATF_COM;
        fill_ifname(&mut req.arp_dev, &self.interface)?;
        // SAFETY: the fd is a live socket and req a valid arpreq for SIOCSARP.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCSARP as _, &req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A UDP socket on `0.0.0.0:port` with SO_REUSEADDR, SO_BROADCAST and
/// SO_BINDTODEVICE, non-blocking.
pub fn bind_to_device(interface: &str, port: u16) -> Result<std::net::UdpSocket, DhcpError> {
    sock::bound_to_device(
        Proto::Udp,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
        interface,
        sock::Options { broadcast: true },
    )
    .map(std::net::UdpSocket::from)
    .map_err(|e| DhcpError::Socket {
        interface: interface.to_owned(),
        call: e.call,
        source: e.source,
    })
}

/// `name` into `arpreq.arp_dev`, NUL-padded.
fn fill_ifname(dst: &mut [libc::c_char; libc::IFNAMSIZ], name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    for (d, s) in dst.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_interface_names() {
        let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
        assert!(fill_ifname(&mut buf, "").is_err());
        assert!(fill_ifname(&mut buf, "a-name-far-too-long").is_err());
        fill_ifname(&mut buf, "dut0").unwrap();
        assert_eq!(buf[4], 0);
    }
}
