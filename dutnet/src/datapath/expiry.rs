//! When an idle connection's NAT mapping is removed.
//!
//! The programs stamp each direction of a flow with the time of its last
//! packet and the TCP flags it carried; the controller's sweeper decides here,
//! from both halves together, whether the flow is over.
use std::time::Duration;

use dutnet_common::nat::{protocol, tcp_seen};

/// Idle timeouts, at least the RFCs' minimums by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// RFC 4787 REQ-5: at least 2 minutes. The `udp_timeout` config key.
    pub udp: Duration,
    /// RFC 5508 REQ-1: 60 seconds for echo.
    pub icmp: Duration,
    /// RFC 5382 REQ-5: at least 2 hours 4 minutes once established.
    pub tcp_established: Duration,
    /// RFC 5382: 4 minutes while opening or closing.
    pub tcp_transitory: Duration,
}

impl FlowTimeouts {
    /// The RFC defaults, with the configured UDP timeout.
    #[must_use]
    pub fn with_udp(udp: Duration) -> Self {
        Self {
            udp,
            icmp: Duration::from_secs(60),
            tcp_established: Duration::from_secs(2 * 3600 + 4 * 60),
            tcp_transitory: Duration::from_secs(4 * 60),
        }
    }

    /// How long a flow of `protocol` may stay idle, given the TCP flags its
    /// outbound and inbound halves carried.
    #[must_use]
    pub fn idle_limit(&self, protocol: u8, outbound_tcp: u8, inbound_tcp: u8) -> Duration {
        match protocol {
            protocol::TCP => {
                let both = outbound_tcp | inbound_tcp;
                let closing = both & (tcp_seen::FIN | tcp_seen::RST) != 0;
                // Each side acknowledged the other: the handshake completed
                // (or dutnet picked up a flow that was already running).
                let established =
                    outbound_tcp & tcp_seen::ACK != 0 && inbound_tcp & tcp_seen::ACK != 0;
                if established && !closing {
                    self.tcp_established
                } else {
                    self.tcp_transitory
                }
            }
            protocol::UDP => self.udp,
            _ => self.icmp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: FlowTimeouts = FlowTimeouts {
        udp: Duration::from_secs(120),
        icmp: Duration::from_secs(60),
        tcp_established: Duration::from_secs(7440),
        tcp_transitory: Duration::from_secs(240),
    };

    #[test]
    fn a_tcp_flow_is_established_once_both_sides_acknowledged() {
        use tcp_seen::{ACK, SYN};
        assert_eq!(T.idle_limit(protocol::TCP, SYN, 0), T.tcp_transitory);
        assert_eq!(
            T.idle_limit(protocol::TCP, SYN, SYN | ACK),
            T.tcp_transitory
        );
        assert_eq!(
            T.idle_limit(protocol::TCP, SYN | ACK, SYN | ACK),
            T.tcp_established
        );
    }

    #[test]
    fn a_fin_or_rst_from_either_side_makes_it_transitory() {
        use tcp_seen::{ACK, FIN, RST, SYN};
        assert_eq!(
            T.idle_limit(protocol::TCP, SYN | ACK | FIN, SYN | ACK),
            T.tcp_transitory
        );
        assert_eq!(
            T.idle_limit(protocol::TCP, SYN | ACK, ACK | RST),
            T.tcp_transitory
        );
    }

    #[test]
    fn udp_and_icmp_use_their_own_timeouts() {
        assert_eq!(T.idle_limit(protocol::UDP, 0, 0), T.udp);
        assert_eq!(T.idle_limit(protocol::ICMP, 0, 0), T.icmp);
    }

    #[test]
    fn the_defaults_meet_the_rfc_minimums() {
        let t = FlowTimeouts::with_udp(Duration::from_secs(120));
        assert!(t.tcp_established >= Duration::from_secs(7440));
        assert!(t.tcp_transitory >= Duration::from_secs(240));
        assert!(t.udp >= Duration::from_secs(120));
    }
}
