//! What a DUT NIC sent its DUT: the kernel's own transmit counters
//! (`IFLA_STATS64`), asked over a blocking rtnetlink socket.
//!
//! No program runs on a DUT NIC's egress to count them: the kernel counts
//! every frame the NIC transmits anyway, and each TCX attachment costs an
//! RCU grace period under the RTNL lock. The socket is opened in the
//! caller's network namespace, so the counters are those of the interface
//! with that index there (like the rest of the counters).
use dutnet_common::stats::DirCounters;
use rtnetlink::{
    packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkMessage},
    },
    sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE},
};

/// A socket to ask with: one serves every interface of a counters read.
pub struct Asker(Option<Socket>);

impl Asker {
    /// Opens the socket; if that fails every answer is `None`.
    #[must_use]
    pub fn open() -> Self {
        let socket = Socket::new(NETLINK_ROUTE).ok().and_then(|mut socket| {
            socket.bind_auto().ok()?;
            socket.connect(&SocketAddr::new(0, 0)).ok()?;
            Some(socket)
        });
        Self(socket)
    }

    /// The frames and bytes interface `ifindex` transmitted since it was
    /// created; `None` when it is gone (or netlink cannot be asked).
    #[must_use]
    pub fn transmitted(&self, ifindex: u32) -> Option<DirCounters> {
        transmitted(self.0.as_ref()?, ifindex)
    }
}

fn transmitted(socket: &Socket, ifindex: u32) -> Option<DirCounters> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(link)),
    );
    request.header.flags = NLM_F_REQUEST;
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0).ok()?;
    let (reply, _) = socket.recv_from_full().ok()?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply).ok()?;
    let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) = reply.payload else {
        // An error reply: no such interface.
        return None;
    };
    // One request, one answer, in order on the socket; an answer for
    // another interface (a read that failed before) is not this one's.
    if link.header.index != ifindex {
        return None;
    }
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Stats64(stats) => Some(DirCounters {
                packets: stats.tx_packets,
                bytes: stats.tx_bytes,
            }),
            _ => None,
        })
}

/// What the NIC sent since `baseline` (its counters when dutnet attached).
/// A NIC re-created under the same index starts from zero again: then all
/// it sent counts.
#[must_use]
pub fn since(now: DirCounters, baseline: DirCounters) -> DirCounters {
    if now.packets < baseline.packets || now.bytes < baseline.bytes {
        return now;
    }
    DirCounters {
        packets: now.packets - baseline.packets,
        bytes: now.bytes - baseline.bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_counters_and_a_missing_index_none() {
        let asker = Asker::open();
        assert!(asker.transmitted(1).is_some(), "lo always exists");
        assert_eq!(asker.transmitted(u32::MAX), None);
        assert!(asker.transmitted(1).is_some(), "the socket serves again");
    }

    #[test]
    fn counts_start_at_the_baseline_unless_the_nic_was_recreated() {
        let at = |packets, bytes| DirCounters { packets, bytes };
        assert_eq!(since(at(10, 1000), at(4, 400)), at(6, 600));
        assert_eq!(since(at(3, 300), at(4, 400)), at(3, 300));
    }
}
