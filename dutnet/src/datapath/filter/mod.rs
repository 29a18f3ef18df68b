//! Traffic filters (jumpstarter 0.9's `filter:`): what a network lets its
//! DUTs open beyond the gateway (`egress`) and what it lets the far side open
//! towards its DUTs (`ingress`). Rules are judged in order, the first that
//! matches decides, else the direction's policy.
//!
//! A filter judges the packet that opens a flow; the flow's other packets,
//! both ways, follow that judgement (as nftables' `ct state established`
//! does on the kernel path): a drop-policy ingress never breaks the replies
//! to a connection a DUT opened, a drop-policy egress never breaks a DUT's
//! answers to a connection the ingress let in. A changed filter judges new
//! flows; open ones are kept until they close or idle out, on both
//! datapaths (docs/filters.md).
//!
//! [`compile`] turns a direction into the fast path's lookup tables; the
//! nft datapath renders the same rules as nft statements.
pub mod compile;

use std::{fmt, net::Ipv4Addr, time::Duration};

use ipnet::Ipv4Net;
use serde::{Serialize, Serializer, ser::SerializeMap};

/// A network's filter: either direction may be absent (nothing judged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub egress: Option<DirectionFilter>,
    pub ingress: Option<DirectionFilter>,
}

impl Filter {
    /// Whether nothing is judged either way (`filter: {}`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.egress.is_none() && self.ingress.is_none()
    }

    #[must_use]
    pub fn direction(&self, which: Direction) -> Option<&DirectionFilter> {
        match which {
            Direction::Egress => self.egress.as_ref(),
            Direction::Ingress => self.ingress.as_ref(),
        }
    }
}

/// A filter as a datapath enforces it, with how long a flow it accepted
/// is remembered where no connection table keeps it (a 1:1 DUT's, on the
/// fast path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterPlan {
    pub filter: Filter,
    /// The network's `udp_timeout` (UDP and ICMP).
    pub udp_idle: Duration,
    /// The network's `nat_timeouts.tcp_established`.
    pub tcp_idle: Duration,
}

/// Flows each rule decided since the filter was set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FilterHits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<DirectionHits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<DirectionHits>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DirectionHits {
    /// By rule, in the file's order.
    pub rules: Vec<u64>,
    /// Flows no rule matched.
    pub policy: u64,
}

impl FilterHits {
    /// Both datapaths' counts (the fast path's and what it left to nft).
    #[must_use]
    pub fn plus(mut self, other: &Self) -> Self {
        fn add(a: &mut Option<DirectionHits>, b: Option<&DirectionHits>) {
            let Some(b) = b else { return };
            let a = a.get_or_insert_with(|| DirectionHits {
                rules: vec![0; b.rules.len()],
                policy: 0,
            });
            for (x, y) in a.rules.iter_mut().zip(&b.rules) {
                *x += y;
            }
            a.policy += b.policy;
        }
        add(&mut self.egress, other.egress.as_ref());
        add(&mut self.ingress, other.ingress.as_ref());
        self
    }
}

/// Which way a flow was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// By a DUT, towards anything beyond its gateway.
    Egress,
    /// By the far side, towards a DUT (a 1:1 DUT's public address).
    Ingress,
}

impl Direction {
    pub const BOTH: [Self; 2] = [Self::Egress, Self::Ingress];

    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Egress => "egress",
            Self::Ingress => "ingress",
        }
    }

    /// The rule key naming the far side's address: where an egress flow
    /// goes, where an ingress flow comes from.
    #[must_use]
    pub fn peer_key(self) -> &'static str {
        match self {
            Self::Egress => "destination",
            Self::Ingress => "source",
        }
    }
}

/// One direction: its rules in order, then its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionFilter {
    pub policy: Action,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Drop,
}

impl Action {
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Drop => "drop",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// One rule: every part it names must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// The far side's address: the destination of an egress flow, the
    /// source of an ingress one. `None`: any.
    pub peer: Option<Ipv4Net>,
    /// `None`: any protocol (ICMP and the rest included).
    pub protocol: Option<Protocol>,
    /// The DUT's service port for ingress, the far side's for egress (the
    /// destination port either way); only with a protocol.
    pub port: Option<u16>,
}

/// The opening packet of a flow, as a filter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The far side's address.
    pub peer: Ipv4Addr,
    /// The IP protocol number.
    pub protocol: u8,
    /// The destination port (TCP and UDP only).
    pub port: u16,
}

/// Which rule decided: its index, or the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decider {
    Rule(usize),
    Policy,
}

impl Rule {
    #[must_use]
    pub fn matches(&self, packet: &Opening) -> bool {
        self.peer.is_none_or(|net| net.contains(&packet.peer))
            && self
                .protocol
                .is_none_or(|p| protocol_number(p) == packet.protocol)
            && self.port.is_none_or(|port| port == packet.port)
    }
}

impl DirectionFilter {
    /// The decision for a flow opened by `packet`: the reference the
    /// compiled tables and the nft rules are tested against.
    #[must_use]
    pub fn judge(&self, packet: &Opening) -> (Action, Decider) {
        self.rules
            .iter()
            .position(|r| r.matches(packet))
            .map_or((self.policy, Decider::Policy), |i| {
                (self.rules[i].action, Decider::Rule(i))
            })
    }
}

#[must_use]
pub fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => dutnet_common::nat::protocol::TCP,
        Protocol::Udp => dutnet_common::nat::protocol::UDP,
    }
}

impl fmt::Display for Rule {
    /// `drop tcp 10.0.0.0/8 port 22`, for listings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action.key())?;
        if let Some(p) = self.protocol {
            write!(f, " {}", p.key())?;
        }
        match self.peer {
            Some(net) if net.prefix_len() == 32 => write!(f, " {}", net.addr())?,
            Some(net) => write!(f, " {net}")?,
            None => f.write_str(" any")?,
        }
        if let Some(port) = self.port {
            write!(f, " port {port}")?;
        }
        Ok(())
    }
}

/// Written as the file writes it (jumpstarter's keys), so that what
/// `config check` prints loads again.
impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for which in Direction::BOTH {
            if let Some(d) = self.direction(which) {
                map.serialize_entry(which.key(), &Written(which, d))?;
            }
        }
        map.end()
    }
}

struct Written<'a>(Direction, &'a DirectionFilter);

impl Serialize for Written<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Written(which, d) = *self;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("policy", d.policy.key())?;
        let rules: Vec<WrittenRule> = d.rules.iter().map(|r| WrittenRule(which, r)).collect();
        map.serialize_entry("rules", &rules)?;
        map.end()
    }
}

struct WrittenRule<'a>(Direction, &'a Rule);

impl Serialize for WrittenRule<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let WrittenRule(which, r) = *self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("action", r.action.key())?;
        if let Some(net) = r.peer {
            map.serialize_entry(which.peer_key(), &net.to_string())?;
        }
        if let Some(p) = r.protocol {
            map.serialize_entry("protocol", p.key())?;
        }
        if let Some(port) = r.port {
            map.serialize_entry("port", &port)?;
        }
        map.end()
    }
}
