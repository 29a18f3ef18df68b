//! What the NAT tests share besides the [`Lab`]: the exchanges they judge
//! from the far end (echo servers that report the source they saw), the
//! fast path's port range, a Docker-style `FORWARD` chain to coexist with,
//! and [`both_datapaths!`](crate::both_datapaths).
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    ops::RangeInclusive,
    time::Duration,
};

use crate::{
    Netns,
    far_end::{self, UdpEcho},
    lab::Lab,
};

pub use crate::lab::config::{DUT_IP, EXPORTER_UP, FAR_IP, GATEWAY, LAN_IP, dut_ip};
/// The fast path's translation range while `ip_local_port_range` is the
/// default 32768-60999 (the range above it, less the nft fallback's slice).
pub const NAT_PORTS: RangeInclusive<u16> = 61000..=64511;
/// How long a client waits for one reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(3);

/// Two tests running the case `fn name(datapath: &str)` once per datapath:
/// `name::on_ebpf` and `name::on_nft` (`cargo test name` runs both). The
/// behaviour users see must not depend on the datapath.
#[macro_export]
macro_rules! both_datapaths {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        mod $name {
            #[test]
            fn on_ebpf() {
                super::$name("ebpf");
            }

            #[test]
            fn on_nft() {
                super::$name("nft");
            }
        }
    };
}

/// A UDP socket in `ns` bound to `bind`, with a read timeout.
pub fn udp_socket(ns: &Netns, bind: SocketAddrV4) -> UdpSocket {
    let socket = ns.enter(move || UdpSocket::bind(bind).expect("bind in DUT"));
    socket.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    socket
}

/// Sends `payload` to `server` and returns the peer the server saw, after
/// checking the echo is the reply to this very datagram.
#[track_caller]
pub fn udp_exchange(lab: &Lab, socket: &UdpSocket, server: &UdpEcho, payload: &[u8]) -> SocketAddr {
    socket.send_to(payload, server.addr).unwrap();
    udp_reply(lab, socket, server, payload)
}

/// Waits for the echo of `payload` on `socket`; returns the peer the server
/// saw. Without one, fails with what the server got and dutnet's view.
#[track_caller]
pub fn udp_reply(lab: &Lab, socket: &UdpSocket, server: &UdpEcho, payload: &[u8]) -> SocketAddr {
    let mut buf = vec![0u8; 65536];
    let local = socket.local_addr().unwrap();
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no UDP echo for {local} within {REPLY_WAIT:?} ({e}); the server got {:?}\n{}",
            server.datagrams(),
            lab.report()
        )
    });
    let (peer, echoed) = far_end::parse_echo(&buf[..n])
        .unwrap_or_else(|| panic!("not an echo: {:?}", String::from_utf8_lossy(&buf[..n])));
    assert_eq!(
        echoed, payload,
        "{local} got the echo of someone else's datagram"
    );
    peer
}

/// One TCP exchange from `ns`: connect, send a line, read the echo; returns
/// the peer the server saw.
#[track_caller]
pub fn tcp_exchange(ns: &Netns, server: SocketAddrV4, line: &str) -> SocketAddr {
    let line = line.to_owned();
    ns.enter(move || try_tcp_exchange(server, &line))
        .unwrap_or_else(|e| panic!("TCP to {server} from {}: {e}", ns.name))
}

/// [`tcp_exchange`] from the calling thread's namespace (a thread inside
/// [`Netns::enter`] running many of them), each step waiting at most
/// [`REPLY_WAIT`]. An answer that is not the echo of `line` is an error too.
pub fn try_tcp_exchange(server: SocketAddrV4, line: &str) -> std::io::Result<SocketAddr> {
    let request = format!("{line}\n");
    let mut stream = TcpStream::connect_timeout(&server.into(), REPLY_WAIT)?;
    stream.set_read_timeout(Some(REPLY_WAIT))?;
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    match far_end::parse_echo(&reply) {
        Some((peer, echoed)) if echoed == request.as_bytes() => Ok(peer),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not the echo of {line:?}: {:?}",
                String::from_utf8_lossy(&reply)
            ),
        )),
    }
}

/// Creates Docker's `ip filter FORWARD` chain (forward hook, policy drop)
/// in `exporter`; returns its listing, to compare with after dutnet.
pub fn add_docker_forward_chain(exporter: &Netns) -> String {
    exporter.exec("nft", &["add", "table", "ip", "filter"]).ok();
    exporter
        .exec(
            "nft",
            &[
                "add",
                "chain",
                "ip",
                "filter",
                "FORWARD",
                "{ type filter hook forward priority 0; policy drop; }",
            ],
        )
        .ok();
    docker_forward_chain(exporter)
}

/// `nft list chain ip filter FORWARD` in `exporter`.
pub fn docker_forward_chain(exporter: &Netns) -> String {
    exporter
        .exec("nft", &["list", "chain", "ip", "filter", "FORWARD"])
        .ok()
        .stdout
}

pub fn lan_udp_echo(lab: &Lab) -> UdpEcho {
    UdpEcho::start(lab.lan(), SocketAddrV4::new(LAN_IP, 7000))
}
