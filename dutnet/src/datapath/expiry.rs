//! When an idle connection's NAT mapping is removed.
//!
//! The programs stamp each direction of a flow with the time of its last
//! packet, the TCP flags it carried and its packet count; the controller's
//! sweeper classifies the flow from both halves together
//! ([`FlowState::of`], the same classification the programs evict by) and
//! removes it once it has been idle longer than its state allows.
//!
//! The defaults are the kernel conntrack's where the RFCs allow them, and the
//! RFCs' minimums where conntrack is shorter (docs/config.md lists both):
//!
//! | state | dutnet | conntrack | RFC |
//! |---|---|---|---|
//! | UDP, unreplied | 30 s | 30 s | |
//! | UDP, replied | 2 min (`udp_timeout`) | 2 min (stream) | 4787 REQ-5: >= 2 min |
//! | ICMP echo | 60 s | 30 s | 5508 REQ-1: 60 s |
//! | TCP SYN, no reply | 30 s | 2 min | |
//! | TCP established | 2 h 4 min | 5 days | 5382 REQ-5: >= 2 h 4 min |
//! | TCP FIN one way | 4 min | 1-2 min | 5382: 4 min transitory |
//! | TCP FIN both ways | 2 min | 2 min (TIME_WAIT) | |
//! | TCP RST | 10 s | 10 s (CLOSE) | |
use std::time::Duration;

use dutnet_common::flow_state::FlowState;
use serde::Serialize;

/// Idle timeouts by flow state: a network's `nat_timeouts`, and its
/// `udp_timeout` for [`Self::udp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FlowTimeouts {
    /// UDP and ICMP flows nobody answered (a scan, a DUT retrying a dead
    /// address).
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub unreplied: Duration,
    /// UDP flows that saw a reply. The `udp_timeout` config key.
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub udp: Duration,
    /// ICMP echo flows that saw a reply.
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub icmp: Duration,
    /// TCP while the handshake has not completed.
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub tcp_syn: Duration,
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub tcp_established: Duration,
    /// TCP after a FIN from one side.
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub tcp_fin_wait: Duration,
    /// TCP after a FIN from each side.
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub tcp_time_wait: Duration,
    /// TCP after a RST.
    #[serde(serialize_with = "crate::config::duration::serialize")]
    pub tcp_close: Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        Self {
            unreplied: Duration::from_secs(30),
            udp: Duration::from_secs(120),
            icmp: Duration::from_secs(60),
            tcp_syn: Duration::from_secs(30),
            tcp_established: Duration::from_secs(2 * 3600 + 4 * 60),
            tcp_fin_wait: Duration::from_secs(4 * 60),
            tcp_time_wait: Duration::from_secs(120),
            tcp_close: Duration::from_secs(10),
        }
    }
}

impl FlowTimeouts {
    /// The defaults, with the configured timeout of replied UDP flows.
    #[must_use]
    pub fn with_udp(udp: Duration) -> Self {
        Self {
            udp,
            ..Self::default()
        }
    }

    /// How long a flow of `protocol` in `state` may stay idle.
    #[must_use]
    pub fn idle_limit(&self, protocol: u8, state: FlowState) -> Duration {
        match state {
            FlowState::Unreplied => self.unreplied,
            FlowState::Replied if protocol == dutnet_common::nat::protocol::UDP => self.udp,
            FlowState::Replied => self.icmp,
            FlowState::Opening => self.tcp_syn,
            FlowState::Established => self.tcp_established,
            FlowState::Closing => self.tcp_fin_wait,
            FlowState::TimeWait => self.tcp_time_wait,
            FlowState::Closed => self.tcp_close,
        }
    }

    /// The shortest of the timeouts: how often the sweeper must look.
    #[must_use]
    pub fn shortest(&self) -> Duration {
        [
            self.unreplied,
            self.udp,
            self.icmp,
            self.tcp_syn,
            self.tcp_established,
            self.tcp_fin_wait,
            self.tcp_time_wait,
            self.tcp_close,
        ]
        .into_iter()
        .min()
        .unwrap_or(self.udp)
    }
}

#[cfg(test)]
mod tests {
    use dutnet_common::nat::{
        protocol,
        tcp_seen::{ACK, FIN, RST, SYN},
    };

    use super::*;

    fn limit(protocol: u8, out: u8, inb: u8, in_packets: u32) -> Duration {
        FlowTimeouts::default().idle_limit(protocol, FlowState::of(protocol, out, inb, in_packets))
    }

    #[test]
    fn a_tcp_flow_is_established_once_both_sides_acknowledged() {
        let t = FlowTimeouts::default();
        assert_eq!(limit(protocol::TCP, SYN, 0, 0), t.tcp_syn);
        assert_eq!(limit(protocol::TCP, SYN, SYN | ACK, 1), t.tcp_syn);
        assert_eq!(
            limit(protocol::TCP, SYN | ACK, SYN | ACK, 2),
            t.tcp_established
        );
    }

    #[test]
    fn closing_connections_are_short_lived_like_conntrack() {
        let t = FlowTimeouts::default();
        assert_eq!(
            limit(protocol::TCP, SYN | ACK | FIN, SYN | ACK, 2),
            t.tcp_fin_wait
        );
        assert_eq!(
            limit(protocol::TCP, SYN | ACK | FIN, SYN | ACK | FIN, 3),
            t.tcp_time_wait
        );
        assert_eq!(
            limit(protocol::TCP, SYN | ACK, ACK | RST, 2),
            Duration::from_secs(10)
        );
        assert_eq!(t.tcp_time_wait, Duration::from_secs(120));
    }

    #[test]
    fn unreplied_udp_goes_sooner_than_replied_udp() {
        let t = FlowTimeouts::with_udp(Duration::from_secs(300));
        let state = |n| FlowState::of(protocol::UDP, 0, 0, n);
        assert_eq!(
            t.idle_limit(protocol::UDP, state(0)),
            Duration::from_secs(30)
        );
        assert_eq!(
            t.idle_limit(protocol::UDP, state(1)),
            Duration::from_secs(300)
        );
        let echo = FlowState::of(protocol::ICMP, 0, 0, 1);
        assert_eq!(t.idle_limit(protocol::ICMP, echo), Duration::from_secs(60));
    }

    #[test]
    fn the_defaults_meet_the_rfc_minimums() {
        let t = FlowTimeouts::default();
        assert!(t.tcp_established >= Duration::from_secs(7440));
        assert!(t.tcp_fin_wait >= Duration::from_secs(240));
        assert!(t.udp >= Duration::from_secs(120));
        assert!(t.icmp >= Duration::from_secs(60));
        assert_eq!(t.shortest(), Duration::from_secs(10));
    }
}
