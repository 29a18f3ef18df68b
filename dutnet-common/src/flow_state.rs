//! What state a flow is in, from what its two halves carried: one
//! classification for the programs (which flow a full budget may evict) and
//! the controller (how long an idle flow lives, what `dutnet flows` shows).
//!
//! The states follow the kernel's conntrack, coarsened to what the two
//! halves' [`crate::nat::tcp_seen`] bits and packet counts can tell.
use crate::nat::{protocol, tcp_seen};

/// The state of one flow. `repr(u8)`: `dutnet flows` and the stats carry it
/// as a number inside the ABI types nowhere; it is derived on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// UDP or ICMP with no packet back yet (conntrack: UNREPLIED).
    Unreplied,
    /// UDP or ICMP that has seen a reply.
    Replied,
    /// TCP: a SYN went out, the handshake has not completed (SYN_SENT,
    /// SYN_RECV).
    Opening,
    /// TCP: both sides acknowledged, no FIN or RST (ESTABLISHED).
    Established,
    /// TCP: one side sent FIN (FIN_WAIT, CLOSE_WAIT, LAST_ACK).
    Closing,
    /// TCP: both sides sent FIN (TIME_WAIT).
    TimeWait,
    /// TCP: a RST ended it (CLOSE).
    Closed,
}

/// How willing a full budget is to give a flow's entries to a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Eviction {
    /// Nothing is lost: nobody answered it, or it is over.
    First,
    /// A flow that worked but is not an established connection; the least
    /// recently used of these goes when there is no `First` to take.
    Later,
    /// An established TCP connection: never evicted.
    Never,
}

impl FlowState {
    /// The state of a flow of `protocol` whose outbound half carried the
    /// `out_tcp` bits and whose inbound half carried `in_tcp` over
    /// `in_packets` packets.
    #[must_use]
    pub fn of(protocol: u8, out_tcp: u8, in_tcp: u8, in_packets: u32) -> Self {
        if protocol != protocol::TCP {
            return if in_packets == 0 {
                Self::Unreplied
            } else {
                Self::Replied
            };
        }
        let both = out_tcp | in_tcp;
        if both & tcp_seen::RST != 0 {
            Self::Closed
        } else if out_tcp & in_tcp & tcp_seen::FIN != 0 {
            Self::TimeWait
        } else if both & tcp_seen::FIN != 0 {
            Self::Closing
        } else if out_tcp & tcp_seen::ACK != 0 && in_tcp & tcp_seen::ACK != 0 {
            // Each side acknowledged the other: the handshake completed (or
            // dutnet picked up a connection that was already running).
            Self::Established
        } else {
            Self::Opening
        }
    }

    #[must_use]
    pub fn eviction(self) -> Eviction {
        match self {
            Self::Unreplied | Self::Opening | Self::TimeWait | Self::Closed => Eviction::First,
            Self::Replied | Self::Closing => Eviction::Later,
            Self::Established => Eviction::Never,
        }
    }

    /// The name `dutnet flows` shows (conntrack's, in lower case).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreplied => "unreplied",
            Self::Replied => "replied",
            Self::Opening => "syn_sent",
            Self::Established => "established",
            Self::Closing => "fin_wait",
            Self::TimeWait => "time_wait",
            Self::Closed => "close",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::tcp_seen::{ACK, FIN, RST, SYN};

    fn tcp(out: u8, inb: u8) -> FlowState {
        FlowState::of(protocol::TCP, out, inb, u32::from(inb != 0))
    }

    #[test]
    fn udp_and_icmp_are_unreplied_until_a_packet_comes_back() {
        assert_eq!(FlowState::of(protocol::UDP, 0, 0, 0), FlowState::Unreplied);
        assert_eq!(FlowState::of(protocol::UDP, 0, 0, 1), FlowState::Replied);
        assert_eq!(FlowState::of(protocol::ICMP, 0, 0, 0), FlowState::Unreplied);
        assert_eq!(FlowState::Unreplied.eviction(), Eviction::First);
        assert_eq!(FlowState::Replied.eviction(), Eviction::Later);
    }

    #[test]
    fn tcp_follows_the_handshake_and_the_close() {
        assert_eq!(tcp(SYN, 0), FlowState::Opening);
        assert_eq!(tcp(SYN, SYN | ACK), FlowState::Opening);
        assert_eq!(tcp(SYN | ACK, SYN | ACK), FlowState::Established);
        assert_eq!(tcp(SYN | ACK | FIN, SYN | ACK), FlowState::Closing);
        assert_eq!(tcp(SYN | ACK | FIN, SYN | ACK | FIN), FlowState::TimeWait);
        assert_eq!(tcp(SYN | ACK, SYN | ACK | RST), FlowState::Closed);
        assert_eq!(tcp(SYN, RST | ACK), FlowState::Closed);
    }

    #[test]
    fn only_an_established_connection_is_never_evicted() {
        assert_eq!(FlowState::Established.eviction(), Eviction::Never);
        for state in [
            FlowState::Opening,
            FlowState::TimeWait,
            FlowState::Closed,
            FlowState::Unreplied,
        ] {
            assert_eq!(state.eviction(), Eviction::First, "{state:?}");
        }
        assert_eq!(FlowState::Closing.eviction(), Eviction::Later);
    }
}
