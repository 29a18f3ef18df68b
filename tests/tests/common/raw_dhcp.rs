//! A raw DHCP client for the tests that need messages no real client sends
//! (DECLINE, option 93, malformed packets): shared by dhcp.rs and
//! netboot.rs (`#[path]`-included, not a test target of its own).
use std::{
    net::{Ipv4Addr, UdpSocket},
    time::{Duration, Instant},
};

use dhcproto::{
    Decodable as _, Encodable as _,
    v4::{DhcpOption, Flags, Message, MessageType, Opcode},
};
use dutnet_tests::Netns;

/// A client that speaks DHCP from the test: a UDP socket on port 68 bound to
/// the DUT NIC, broadcasting requests with the broadcast flag set (the DUT
/// has no address to receive a unicast reply on).
pub struct RawClient {
    pub sock: UdpSocket,
}

impl RawClient {
    pub fn open(ns: &Netns, iface: &str) -> Self {
        let iface = iface.to_owned();
        let sock = ns.enter(move || {
            dutnet::dhcp::socket::bind_to_device(&iface, 68).expect("client socket on port 68")
        });
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Self { sock }
    }

    pub fn send(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, (Ipv4Addr::BROADCAST, 67))
            .expect("send to port 67");
    }

    /// Every reply for `xid` that arrives within `wait`.
    pub fn replies(&self, xid: u32, wait: Duration) -> Vec<Message> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 1500];
        let mut replies = Vec::new();
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf)
                && let Ok(msg) = Message::from_bytes(&buf[..n])
                && msg.opcode() == Opcode::BootReply
                && msg.xid() == xid
            {
                replies.push(msg);
            }
        }
        replies
    }

    /// Sends `msg` and returns the first reply (of type `expect`) in 2 s.
    pub fn exchange(&self, msg: &Message, expect: MessageType) -> Message {
        self.send(&msg.to_vec().unwrap());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(reply) = self
                .replies(msg.xid(), Duration::from_millis(100))
                .into_iter()
                .next()
            {
                assert_eq!(reply.opts().msg_type(), Some(expect), "{reply:?}");
                return reply;
            }
        }
        panic!("no {expect:?} for {msg:?}");
    }

    /// DISCOVER then REQUEST to `server`: the address it bound to `mac`.
    pub fn lease(&self, mac: [u8; 6], server: Ipv4Addr) -> Ipv4Addr {
        let offer = self.exchange(
            &request(mac, MessageType::Discover, &[]),
            MessageType::Offer,
        );
        let ack = self.exchange(
            &request(
                mac,
                MessageType::Request,
                &[
                    DhcpOption::RequestedIpAddress(offer.yiaddr()),
                    DhcpOption::ServerIdentifier(server),
                ],
            ),
            MessageType::Ack,
        );
        assert_eq!(ack.yiaddr(), offer.yiaddr());
        ack.yiaddr()
    }
}

/// A client message from `mac` with a fresh xid and the broadcast flag.
pub fn request(mac: [u8; 6], kind: MessageType, options: &[DhcpOption]) -> Message {
    let mut msg = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    msg.set_flags(Flags::default().set_broadcast());
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    for option in options {
        msg.opts_mut().insert(option.clone());
    }
    msg
}
