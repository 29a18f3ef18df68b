//! `filter:` wire -> model, with jumpstarter 0.9's rules (`action` and
//! `policy` are `accept` or `drop`, `protocol` is `tcp` or `udp`, `port`
//! needs a protocol, an empty mapping is no filter) and two it leaves to
//! chance: a `port` outside 1-65535 (nft refuses it at start-up there) and
//! the address key of the other direction (`source` in an egress rule,
//! which jumpstarter silently ignores, so the rule matches every
//! destination).
use ipnet::Ipv4Net;

use super::{
    error::{Problem, join},
    wire::{FilterDirectionWire, FilterRuleWire, FilterWire},
};
use crate::datapath::filter::{Action, Direction, DirectionFilter, Filter, Protocol, Rule};
use dutnet_common::filter::MAX_RULES;

/// `None`: no filter (absent, `{}`, or directions without content are still
/// a filter: `egress: {}` judges with policy accept and no rules).
pub fn filter(p: &mut Vec<Problem>, w: Option<FilterWire>) -> Option<Filter> {
    let w = w?;
    let mut direction =
        |which: Direction, d: Option<FilterDirectionWire>| d.map(|d| self::direction(p, which, d));
    let f = Filter {
        egress: direction(Direction::Egress, w.egress),
        ingress: direction(Direction::Ingress, w.ingress),
    };
    (!f.is_empty()).then_some(f)
}

fn direction(p: &mut Vec<Problem>, which: Direction, w: FilterDirectionWire) -> DirectionFilter {
    let path = join("filter", which.key());
    let policy = match w.policy.as_deref() {
        None => Action::Accept,
        Some(text) => one_of(p, &join(&path, "policy"), "policy", text).unwrap_or(Action::Accept),
    };
    let written = w.rules.unwrap_or_default();
    if written.len() > MAX_RULES {
        p.push(Problem::new(
            join(&path, "rules"),
            format!(
                "has {} rules; a direction takes at most {MAX_RULES} (a prefix rule covers many hosts)",
                written.len()
            ),
        ));
    }
    let rules = written
        .into_iter()
        .take(MAX_RULES)
        .enumerate()
        .filter_map(|(i, r)| rule(p, &format!("{path}.rules[{i}]"), which, r))
        .collect();
    DirectionFilter { policy, rules }
}

fn one_of(p: &mut Vec<Problem>, path: &str, what: &str, text: &str) -> Option<Action> {
    match text {
        "accept" => Some(Action::Accept),
        "drop" => Some(Action::Drop),
        _ => {
            p.push(Problem::new(
                path,
                format!("{what} must be `accept` or `drop`, not `{text}`"),
            ));
            None
        }
    }
}

fn rule(p: &mut Vec<Problem>, path: &str, which: Direction, w: FilterRuleWire) -> Option<Rule> {
    let before = p.len();
    let action = match w.action.as_deref() {
        Some(text) => one_of(p, &join(path, "action"), "action", text),
        None => {
            p.push(Problem::new(
                join(path, "action"),
                "is required: `accept` or `drop`",
            ));
            None
        }
    };
    let (own, other) = match which {
        Direction::Egress => (w.destination, w.source),
        Direction::Ingress => (w.source, w.destination),
    };
    if other.is_some() {
        let other_key = match which {
            Direction::Egress => "source",
            Direction::Ingress => "destination",
        };
        p.push(Problem::new(
            join(path, other_key),
            format!(
                "{} rules match the far side's address, their `{}`; a `{other_key}` here would be ignored (jumpstarter ignores it silently, so the rule matched everything): write `{}` or remove it",
                which.key(),
                which.peer_key(),
                which.peer_key()
            ),
        ));
    }
    let peer = own.and_then(|text| network(p, &join(path, which.peer_key()), &text));
    let protocol = w.protocol.as_deref().and_then(|text| match text {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => {
            p.push(Problem::new(
                join(path, "protocol"),
                format!("protocol must be `tcp` or `udp`, not `{text}`"),
            ));
            None
        }
    });
    let port = w.port.and_then(|n| match u16::try_from(n) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            p.push(Problem::new(
                join(path, "port"),
                format!("{n} is not a port; ports are 1-65535"),
            ));
            None
        }
    });
    if port.is_some() && w.protocol.is_none() {
        p.push(Problem::new(
            join(path, "port"),
            "port requires protocol to be set (`protocol: tcp` or `protocol: udp`)",
        ));
    }
    (p.len() == before).then_some(Rule {
        action: action?,
        peer,
        protocol,
        port,
    })
}

/// An address or a network, host bits allowed (`10.0.0.5/8` is 10.0.0.0/8,
/// as Python's `ip_network(strict=False)` reads it).
fn network(p: &mut Vec<Problem>, path: &str, text: &str) -> Option<Ipv4Net> {
    let parsed = text
        .parse::<Ipv4Net>()
        .or_else(|_| text.parse::<std::net::Ipv4Addr>().map(Ipv4Net::from));
    match parsed {
        Ok(net) => Some(net.trunc()),
        Err(_) if text.contains(':') => {
            p.push(Problem::new(
                path,
                format!("`{text}` is an IPv6 network; dutnet's DUT networks are IPv4, so an IPv6 rule could never match"),
            ));
            None
        }
        Err(_) => {
            p.push(Problem::new(
                path,
                format!("`{text}` is not a valid network address; write an address or a prefix, e.g. 10.0.0.5 or 10.0.0.0/8"),
            ));
            None
        }
    }
}
