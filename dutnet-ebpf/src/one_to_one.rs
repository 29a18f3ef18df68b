//! 1:1 NAT: a DUT with a public address of its own. Stateless: each packet
//! is one map lookup and an address rewrite, ports untouched, so inbound
//! connections on any port reach the DUT and no connection table is needed.
use aya_ebpf::programs::TcContext;
use dutnet_common::{
    filter::direction,
    nat::{FlowKey, Mapping, PrivateKey, protocol},
    stats::{drop, punt},
};

use crate::{
    filter::{self, Head},
    forward,
    icmp_error::{self, QuotedSide},
    maps::{NAT_1TO1_IN, NAT_1TO1_OUT},
    parse::{self, IP_DST_OFF, IP_OFF, IP_SRC_OFF, Ipv4},
    rewrite::{self, Address, Failed, Ipv4Rewrite, L4Check},
    stats::{self, Direction},
    verdict::{self, Verdict},
};

/// The mapping of DUT address `src` on DUT NIC `dut_ifindex`, if it has one.
#[inline(always)]
pub fn of_private(dut_ifindex: u32, src: u32) -> Option<Mapping> {
    let key = PrivateKey {
        dut_ifindex,
        private_addr: src,
    };
    // SAFETY: the value is copied out at once.
    NAT_1TO1_OUT.get_ptr(key).map(|m| unsafe { *m })
}

/// The mapping whose public address is `dst`, if any.
#[inline(always)]
pub fn of_public(dst: u32) -> Option<Mapping> {
    // SAFETY: the value is copied out at once.
    NAT_1TO1_IN.get_ptr(dst).map(|m| unsafe { *m })
}

/// Whether an inbound frame for `m` came on `m`'s VLAN (untagged for a
/// mapping without one: unchanged from before VLANs). The kernel takes the
/// 802.1Q tag off into the skb before TC ingress on the parent interface
/// (`skb_vlan_untag` in `__netif_receive_skb_core`), so the program of the
/// upstream sees the VLAN's frames before the sub-interface would; the
/// tag is popped here so the DUT gets the frame untagged.
#[inline(always)]
pub fn on_its_vlan(ctx: &TcContext, m: &Mapping) -> bool {
    if m.vlan_id == 0 {
        return true;
    }
    // SAFETY: `skb` points at the kernel's __sk_buff for this program run.
    let (present, tci) = unsafe { ((*ctx.skb.skb).vlan_present, (*ctx.skb.skb).vlan_tci) };
    if present == 0 || (tci & 0x0fff) as u16 != m.vlan_id {
        return false;
    }
    untag(ctx)
}

/// Takes the frame's VLAN tag off, if it has one; false if that failed.
#[inline(always)]
pub fn untag(ctx: &TcContext) -> bool {
    // SAFETY: `skb` points at the kernel's __sk_buff for this program run.
    if unsafe { (*ctx.skb.skb).vlan_present } == 0 {
        return true;
    }
    // SAFETY: plain helper call on this program's skb; with the tag in the
    // skb's metadata it only clears it (the packet bytes do not move).
    unsafe { aya_ebpf::helpers::bpf_skb_vlan_pop(ctx.skb.skb.cast()) == 0 }
}

/// Rewrites the source (outbound) or destination (inbound) address of a
/// TCP, UDP or ICMP packet, and decrements the TTL.
#[inline(always)]
fn translate(ctx: &TcContext, ip: &Ipv4, which: Address, new: u32) -> Result<(), Failed> {
    let l4 = L4Check::pseudo_header(ip.protocol, Ipv4::L4_OFF);
    rewrite::translate_address(ctx, ip, which, new, l4)
}

/// Outbound from a mapped DUT: leaves from its public address.
#[inline(always)]
pub fn outbound(
    ctx: &TcContext,
    ip: &Ipv4,
    m: &Mapping,
    out_ifindex: u32,
    next_hop: u32,
) -> Verdict {
    if translate(ctx, ip, Address::Source, m.public_addr).is_err() {
        return verdict::dropped(m.dut_ifindex, drop::MALFORMED);
    }
    stats::count(m.dut_ifindex, Direction::NatOut, ctx.len());
    Verdict::Redirect(forward::to_next_hop(out_ifindex, next_hop))
}

/// Inbound to a public address: any packet the fast path parses goes to the
/// DUT, new connections included; the kernel's neighbour table of the DUT
/// NIC gives the DUT's MAC.
#[inline(always)]
pub fn inbound(
    ctx: &TcContext,
    ip: &Ipv4,
    icmp_type: Option<u8>,
    icmp_check: u16,
    m: &Mapping,
) -> Verdict {
    if ip.ttl <= 1 {
        return verdict::punted(m.dut_ifindex, punt::TTL_EXPIRED);
    }
    let result = match icmp_type {
        // An error about a packet the DUT sent from its public address.
        Some(t) if icmp_error::is_error(t) => {
            let Some(quoted) = icmp_error::quoted(ctx, ip, Ipv4::L4_OFF) else {
                return Verdict::Pass;
            };
            if quoted.src != m.public_addr {
                return Verdict::Pass;
            }
            icmp_error::translate(
                ctx,
                ip,
                &quoted,
                QuotedSide::Source,
                m.private_addr,
                quoted.sport,
                icmp_check,
            )
        }
        _ => translate(ctx, ip, Address::Destination, m.private_addr),
    };
    if result.is_err() {
        return verdict::dropped(m.dut_ifindex, drop::MALFORMED);
    }
    stats::delivered(m.dut_ifindex, m.private_addr, ctx.len());
    Verdict::Redirect(forward::to_next_hop(m.dut_ifindex, m.private_addr))
}

/// From published DUT `from` to the public address of published DUT `to`:
/// the source becomes `from`'s public address and the destination `to`'s
/// private one, and the packet goes straight to `to`'s DUT NIC. Its reply
/// takes the same way back.
#[inline(always)]
pub fn hairpin(ctx: &TcContext, ip: &Ipv4, from: &Mapping, to: &Mapping) -> Verdict {
    if ip.ttl <= 1 {
        return verdict::punted(from.dut_ifindex, punt::TTL_EXPIRED);
    }
    let l4 = L4Check::pseudo_header(ip.protocol, Ipv4::L4_OFF);
    let mut header = Ipv4Rewrite::new(ip);
    let result = header
        .address(ctx, IP_OFF + IP_SRC_OFF, ip.src, from.public_addr, l4)
        .and_then(|()| header.address(ctx, IP_OFF + IP_DST_OFF, ip.dst, to.private_addr, l4))
        .and_then(|()| header.decrement_ttl(ctx, ip))
        .and_then(|()| header.finish(ctx));
    if result.is_err() {
        return verdict::dropped(from.dut_ifindex, drop::MALFORMED);
    }
    stats::count(from.dut_ifindex, Direction::NatOut, ctx.len());
    stats::delivered(to.dut_ifindex, to.private_addr, ctx.len());
    Verdict::Redirect(forward::to_next_hop(to.dut_ifindex, to.private_addr))
}

const ICMP_ECHO_REPLY: u8 = 0;

/// The key a 1:1 DUT's flow is remembered by once its filter accepted it:
/// its outbound key on the DUT NIC, whichever side opened it. For ICMP
/// echo the DUT's "port" is the identifier of the echoes it sends (0 for
/// the replies it gives), the remote's is 0.
#[inline(always)]
pub fn flow_key(m: &Mapping, remote: u32, dut_port: u16, remote_port: u16, proto: u8) -> FlowKey {
    FlowKey {
        ifindex: m.dut_ifindex,
        src_addr: m.private_addr,
        dst_addr: remote,
        src_port: dut_port,
        dst_port: remote_port,
        protocol: proto,
        _pad: [0; 3],
    }
}

/// Whether the packet of flow `key` may pass: its flow was accepted
/// already, or it opens one the filter accepts in `dir` (remembered then).
#[inline(always)]
pub fn opens_or_continues(
    m: &Mapping,
    head: &Head,
    key: &FlowKey,
    dir: u32,
    peer: u32,
    port: u16,
) -> bool {
    if filter::remembered(key, head) {
        return true;
    }
    if !filter::allows(m.slot, head, dir, peer, key.protocol, port) {
        return false;
    }
    filter::remember(key);
    true
}

/// An ICMP error about 1:1 flow `quoted_key`: passes with its flow (as
/// conntrack's `related`), else is judged like any ICMP in `dir`.
#[inline(always)]
pub fn error_allowed(m: &Mapping, quoted_key: &FlowKey, dir: u32, peer: u32) -> bool {
    let Some(head) = filter::head(m.slot) else {
        return true;
    };
    filter::remembered(quoted_key, &head)
        || filter::allows(m.slot, &head, dir, peer, protocol::ICMP, 0)
}

/// Whether the network's ingress filter lets a packet from the far side to
/// 1:1 DUT `m` through (see [`opens_or_continues`]).
#[inline(always)]
pub fn inbound_allowed(ctx: &TcContext, ip: &Ipv4, l4: &[u8; 8], m: &Mapping) -> bool {
    let Some(head) = filter::head(m.slot) else {
        return true;
    };
    let (dut_port, remote_port, port) = match ip.protocol {
        protocol::ICMP if icmp_error::is_error(l4[0]) => {
            let Some(q) = icmp_error::quoted(ctx, ip, Ipv4::L4_OFF) else {
                return filter::allows(
                    m.slot,
                    &head,
                    direction::INGRESS,
                    ip.src,
                    protocol::ICMP,
                    0,
                );
            };
            // The quoted packet is one the DUT sent from its public address.
            let key = flow_key(m, q.dst, q.sport, q.dport, q.protocol);
            return error_allowed(m, &key, direction::INGRESS, ip.src);
        }
        protocol::ICMP if l4[0] == ICMP_ECHO_REPLY => (parse::port(l4, 4), 0, 0),
        protocol::ICMP => (0, 0, 0),
        _ => (parse::port(l4, 2), parse::port(l4, 0), parse::port(l4, 2)),
    };
    let key = flow_key(m, ip.src, dut_port, remote_port, ip.protocol);
    opens_or_continues(m, &head, &key, direction::INGRESS, ip.src, port)
}
