//! TC ingress on an upstream NIC: replies to translated flows are translated
//! back and redirected straight to the DUT NIC the flow came from, with the
//! MACs stored in the flow: no routing lookup on the DUT subnet, so DUT NICs
//! with identical subnets each get their own replies. Everything else (the
//! exporter's own traffic) goes to the stack untouched, except new
//! connections towards a masqueraded DUT subnet, which are dropped.
use aya_ebpf::{maps::lpm_trie::Key, programs::TcContext};
use dutnet_common::{
    nat::{FlowEntry, FlowKey, FragEntry, direction, protocol},
    stats::{drop, punt},
};

use crate::{
    conntrack, forward, fragments,
    icmp_error::{self, QuotedSide},
    maps::DUT_SUBNETS,
    one_to_one,
    parse::{self, Ipv4},
    rewrite::{self, Address, L4Check},
    stats,
    verdict::{self, Verdict},
};

const ICMP_ECHO_REPLY: u8 = 0;

pub fn handle(ctx: &TcContext) -> Verdict {
    let ifindex = stats::ifindex(ctx);
    // Frames the fast path cannot match are the host's to judge.
    let Ok((_, ip)) = parse::ipv4(ctx) else {
        return Verdict::Pass;
    };
    if ip.has_options() || !conntrack::is_tracked(ip.protocol) {
        return unsolicited_or_pass(&ip);
    }
    if ip.is_later_fragment {
        let verdict = fragments::follow_inbound(ctx, ifindex, &ip);
        if let Some(Verdict::Redirect(_)) = verdict {
            // A later fragment of a datagram that came on a 1:1 DUT's VLAN
            // carries the tag too; the DUT's network is untagged.
            one_to_one::untag(ctx);
        }
        return verdict.unwrap_or_else(|| unsolicited_or_pass(&ip));
    }
    let Ok(l4) = parse::l4_head(ctx, &ip, Ipv4::L4_OFF) else {
        return Verdict::Pass;
    };
    if let Some(mapping) = one_to_one::of_public(ip.dst) {
        if !one_to_one::on_its_vlan(ctx, &mapping) {
            // Another VLAN's (or an untagged) frame for a DUT published on
            // a VLAN: not that DUT's; the host judges it.
            return Verdict::Pass;
        }
        if !ip.is_later_fragment && !one_to_one::inbound_allowed(ctx, &ip, &l4, &mapping) {
            return verdict::dropped(mapping.dut_ifindex, drop::FILTERED);
        }
        let icmp = (ip.protocol == protocol::ICMP).then_some(l4[0]);
        let icmp_check = u16::from_ne_bytes([l4[2], l4[3]]);
        if ip.is_fragment {
            remember_fragment(
                ifindex,
                &ip,
                mapping.private_addr,
                mapping.dut_ifindex,
                None,
            );
        }
        return one_to_one::inbound(ctx, &ip, icmp, icmp_check, &mapping);
    }
    let (sport, dport, tcp_flags) = match ip.protocol {
        protocol::ICMP if l4[0] == ICMP_ECHO_REPLY => (0, parse::port(&l4, 4), 0),
        protocol::ICMP if icmp_error::is_error(l4[0]) => return error_to_dut(ctx, &ip, &l4),
        protocol::ICMP => return unsolicited_or_pass(&ip),
        protocol::TCP => {
            let Ok(flags) = ctx.load::<u8>(Ipv4::L4_OFF + 13) else {
                return Verdict::Pass;
            };
            (
                parse::port(&l4, 0),
                parse::port(&l4, 2),
                conntrack::tcp_bits(flags),
            )
        }
        _ => (parse::port(&l4, 0), parse::port(&l4, 2), 0),
    };
    let key = FlowKey {
        ifindex,
        src_addr: ip.src,
        dst_addr: ip.dst,
        src_port: sport,
        dst_port: dport,
        protocol: ip.protocol,
        _pad: [0; 3],
    };
    let Some(entry) = conntrack::lookup(&key, tcp_flags) else {
        return unsolicited_or_pass(&ip);
    };
    if entry.direction != direction::INBOUND {
        return Verdict::Pass;
    }
    if ip.ttl <= 1 {
        return verdict::punted(entry.dut_ifindex, punt::TTL_EXPIRED);
    }
    if translate(ctx, &ip, dport, &entry).is_err() {
        return verdict::dropped(entry.dut_ifindex, drop::MALFORMED);
    }
    if ip.is_fragment {
        remember_fragment(
            ifindex,
            &ip,
            entry.rewrite_addr,
            entry.dut_ifindex,
            Some(&entry),
        );
    }
    redirect(ctx, &entry)
}

/// The first fragment of a datagram arriving on `ifindex` went to
/// `destination` on DUT NIC `dut_ifindex` (with the flow's MACs, or by the
/// neighbour table for a 1:1 DUT): its later fragments follow.
#[inline(always)]
fn remember_fragment(
    ifindex: u32,
    ip: &Ipv4,
    destination: u32,
    dut_ifindex: u32,
    flow: Option<&FlowEntry>,
) {
    fragments::remember(
        &fragments::key(ifindex, ip),
        FragEntry {
            rewrite_addr: destination,
            out_ifindex: dut_ifindex,
            next_hop: 0,
            dut_mac: flow.map_or([0; 6], |f| f.dut_mac),
            gateway_mac: flow.map_or([0; 6], |f| f.gateway_mac),
            dut_ifindex,
            covered: 0,
            _pad: 0,
        },
        ip,
    );
}

/// Rewrites the destination address and port (or echo identifier) back to
/// the DUT's, and decrements the TTL.
#[inline(always)]
fn translate(
    ctx: &TcContext,
    ip: &Ipv4,
    dport: u16,
    entry: &FlowEntry,
) -> Result<(), rewrite::Failed> {
    let l4_off = Ipv4::L4_OFF;
    rewrite::translate_address(
        ctx,
        ip,
        Address::Destination,
        entry.rewrite_addr,
        L4Check::pseudo_header(ip.protocol, l4_off),
    )?;
    let port_off = match ip.protocol {
        protocol::ICMP => l4_off + 4,
        _ => l4_off + 2,
    };
    rewrite::l4_field(
        ctx,
        port_off,
        dport,
        entry.rewrite_port,
        L4Check::header(ip.protocol, l4_off),
    )
}

/// An ICMP error about a packet a DUT sent (a router's time exceeded, a
/// fragmentation-needed, a port unreachable): the quoted packet carries the
/// external address and port, and becomes the DUT's again.
#[inline(always)]
fn error_to_dut(ctx: &TcContext, ip: &Ipv4, l4: &[u8; 8]) -> Verdict {
    let Some(quoted) = icmp_error::quoted(ctx, ip, Ipv4::L4_OFF) else {
        return Verdict::Pass;
    };
    // The quoted packet went external -> remote; a reply to it would carry
    // the inbound key.
    let key = quoted.reply_key(stats::ifindex(ctx));
    let Some(entry) = conntrack::peek(&key) else {
        return Verdict::Pass;
    };
    if entry.direction != direction::INBOUND || quoted.src != ip.dst {
        return Verdict::Pass;
    }
    if ip.ttl <= 1 {
        return verdict::punted(entry.dut_ifindex, punt::TTL_EXPIRED);
    }
    let icmp_check = u16::from_ne_bytes([l4[2], l4[3]]);
    let result = icmp_error::translate(
        ctx,
        ip,
        &quoted,
        QuotedSide::Source,
        entry.rewrite_addr,
        entry.rewrite_port,
        icmp_check,
    );
    if result.is_err() {
        return verdict::dropped(entry.dut_ifindex, drop::MALFORMED);
    }
    redirect(ctx, &entry)
}

#[inline(always)]
fn redirect(ctx: &TcContext, entry: &FlowEntry) -> Verdict {
    match forward::to_dut(ctx, entry.dut_ifindex, &entry.dut_mac, &entry.gateway_mac) {
        Ok(code) => {
            stats::delivered(entry.dut_ifindex, entry.rewrite_addr, ctx.len());
            Verdict::Redirect(code)
        }
        Err(_) => verdict::dropped(entry.dut_ifindex, drop::MALFORMED),
    }
}

/// A packet no flow expects: dropped when it heads for a masqueraded DUT
/// subnet (a LAN host with a route to it via the exporter must not reach a
/// DUT), left to the stack otherwise (it is the exporter's own traffic).
#[inline(always)]
fn unsolicited_or_pass(ip: &Ipv4) -> Verdict {
    match DUT_SUBNETS.get(Key::new(32, ip.dst)) {
        Some(&dut_ifindex) => verdict::dropped(dut_ifindex, drop::UNSOLICITED),
        None => Verdict::Pass,
    }
}
