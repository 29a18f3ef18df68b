//! TC ingress on a DUT NIC: packets from a DUT towards the world are
//! source-translated to the upstream address and sent out of the upstream
//! NIC, bypassing the kernel's forwarding path and netfilter.
use aya_ebpf::programs::TcContext;
use dutnet_common::{
    filter::direction as filter_direction,
    nat::{DutConfig, FlowEntry, FlowKey, FragEntry, direction, mode, protocol},
    stats::{drop, punt},
};

use crate::{
    conntrack::{self, Macs},
    filter,
    forward::{self, Route},
    fragments,
    icmp_error::{self, Quoted, QuotedSide},
    maps::DUT_CONFIG,
    one_to_one,
    parse::{self, Ipv4, NotIpv4},
    rewrite::{self, Address, L4Check},
    stats::{self, Direction},
    verdict::{self, Verdict},
};

const PACKET_HOST: u32 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const NTP_PORT: u16 = 123;

pub fn handle(ctx: &TcContext) -> Verdict {
    let ifindex = stats::ifindex(ctx);
    stats::count(ifindex, Direction::Ingress, ctx.len());
    // SAFETY: get_ptr returns a pointer into the map's value, valid for the
    // whole program run; copied out because the controller may update it
    // while this runs.
    let Some(cfg) = DUT_CONFIG.get_ptr(ifindex).map(|c| unsafe { *c }) else {
        return Verdict::Pass;
    };
    if cfg.reply_mark != 0 {
        // Marks what reaches the stack (the exporter's own services,
        // punts); translated packets leave the namespace, which clears it.
        ctx.set_mark(cfg.reply_mark);
    }
    // SAFETY: `skb` points at the kernel's __sk_buff for this program run.
    let (pkt_type, vlan_present) =
        unsafe { ((*ctx.skb.skb).pkt_type, (*ctx.skb.skb).vlan_present) };
    if cfg.nat_mode == mode::DISABLED || pkt_type != PACKET_HOST {
        return Verdict::Pass;
    }
    if vlan_present != 0 {
        // A tag the NIC took off: the DUT network is untagged, and
        // translating the frame would send it on without it.
        return verdict::dropped(ifindex, drop::VLAN_TAGGED);
    }
    let (eth, ip) = match parse::ipv4(ctx) {
        Ok(headers) => headers,
        Err(NotIpv4::OtherProtocol) => return Verdict::Pass,
        Err(NotIpv4::Malformed) => return verdict::dropped(ifindex, drop::MALFORMED),
    };
    let from_a_dut = from_a_dut(&cfg, ip.src);
    if from_a_dut {
        stats::sent_by_dut(ifindex, ip.src, ctx.len());
    }
    if for_the_segment(&cfg, ip.dst) {
        return Verdict::Pass;
    }
    if !from_a_dut {
        // Never translated, never given a flow (nor a DUT's share of the
        // table), never handed to the kernel to forward raw.
        return verdict::dropped(ifindex, drop::SPOOFED);
    }
    if ip.has_options() {
        return verdict::punted(ifindex, punt::IP_OPTIONS);
    }
    if ip.is_later_fragment {
        return fragments::follow_outbound(ctx, ifindex, &ip);
    }
    if ip.ttl <= 1 {
        return verdict::punted(ifindex, punt::TTL_EXPIRED);
    }
    if !conntrack::is_tracked(ip.protocol) {
        return verdict::punted(ifindex, punt::PROTOCOL);
    }
    let Ok(l4) = parse::l4_head(ctx, &ip, Ipv4::L4_OFF) else {
        return verdict::dropped(ifindex, drop::MALFORMED);
    };
    let (sport, dport, tcp_flags) = match ip.protocol {
        protocol::ICMP if l4[0] == ICMP_ECHO_REQUEST => (parse::port(&l4, 4), 0, 0),
        protocol::ICMP if icmp_error::is_error(l4[0]) => {
            return error_from_dut(ctx, ifindex, &cfg, &ip, &l4);
        }
        // Echo replies and the like from a 1:1 DUT (the LAN pinged it).
        protocol::ICMP
            if cfg.nat_mode == mode::ONE_TO_ONE
                && one_to_one::of_private(ifindex, ip.src).is_some() =>
        {
            (0, 0, 0)
        }
        protocol::ICMP => return verdict::punted(ifindex, punt::PROTOCOL),
        protocol::TCP => {
            if usize::from(ip.total_len) < ip.header_len + 20 {
                return verdict::dropped(ifindex, drop::MALFORMED);
            }
            // Data offset (high nibble) and flags.
            let Ok([offset, flags]) = ctx.load::<[u8; 2]>(Ipv4::L4_OFF + 12) else {
                return verdict::dropped(ifindex, drop::MALFORMED);
            };
            let tcp_len = usize::from(offset >> 4) * 4;
            if tcp_len < 20
                || (!ip.is_fragment && ip.header_len + tcp_len > usize::from(ip.total_len))
            {
                return verdict::dropped(ifindex, drop::MALFORMED);
            }
            (
                parse::port(&l4, 0),
                parse::port(&l4, 2),
                conntrack::tcp_bits(flags),
            )
        }
        _ => {
            // UDP: its length covers at least its header and at most the
            // packet (a whole datagram's, when not fragmented).
            let udp_len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if udp_len < 8
                || (!ip.is_fragment && ip.header_len + udp_len > usize::from(ip.total_len))
            {
                return verdict::dropped(ifindex, drop::MALFORMED);
            }
            (parse::port(&l4, 0), parse::port(&l4, 2), 0)
        }
    };
    if cfg.local_ntp != 0 && ip.protocol == protocol::UDP && u16::from_be(dport) == NTP_PORT {
        // NTP to anywhere is the exporter's to answer (`local_ntp`): the
        // stack's nft rule redirects it to the gateway, as it does on the
        // nft datapath.
        return Verdict::Pass;
    }
    if cfg.nat_mode == mode::ONE_TO_ONE
        && let Some(target) = one_to_one::of_public(ip.dst)
        && let Some(mapping) = one_to_one::of_private(ifindex, ip.src)
    {
        if filter::head(target.slot).is_some_and(|h| h.ingress != 0) {
            // The target's ingress filter needs the state of the flow's
            // both halves across two networks: conntrack and the nft
            // rules keep it (hairpins are rare, and never bulk).
            return Verdict::Pass;
        }
        // One published DUT to another's public address: straight across,
        // even when both DUT NICs carry the same subnet.
        return one_to_one::hairpin(ctx, &ip, &mapping, &target);
    }
    let mapping = if cfg.nat_mode == mode::ONE_TO_ONE {
        one_to_one::of_private(ifindex, ip.src)
    } else {
        None
    };
    let policy_out = mapping.map_or(0, |m| m.out_ifindex);
    let (out_ifindex, next_hop) =
        match upstream_route(ctx, &cfg, &ip, ifindex, sport, dport, policy_out) {
            Ok(hop) => hop,
            Err(verdict) => return verdict,
        };
    if let Some(mapping) = mapping {
        if let Some(head) = filter::head(mapping.slot) {
            let flow = one_to_one::flow_key(&mapping, ip.dst, sport, dport, ip.protocol);
            if !one_to_one::opens_or_continues(
                &mapping,
                &head,
                &flow,
                filter_direction::EGRESS,
                ip.dst,
                dport,
            ) {
                return verdict::dropped(ifindex, drop::FILTERED);
            }
        }
        if ip.is_fragment {
            remember_fragment(ifindex, &ip, mapping.public_addr, out_ifindex, next_hop);
        }
        return one_to_one::outbound(ctx, &ip, &mapping, out_ifindex, next_hop);
    }
    let key = FlowKey {
        ifindex,
        src_addr: ip.src,
        dst_addr: ip.dst,
        src_port: sport,
        dst_port: dport,
        protocol: ip.protocol,
        _pad: [0; 3],
    };
    let entry = match conntrack::lookup(&key, tcp_flags) {
        Some(entry) => entry,
        None => {
            if let Some(head) = filter::head(cfg.budget.slot)
                && !filter::allows(
                    cfg.budget.slot,
                    &head,
                    filter_direction::EGRESS,
                    ip.dst,
                    ip.protocol,
                    dport,
                )
            {
                return verdict::dropped(ifindex, drop::FILTERED);
            }
            let macs = Macs {
                dut: eth.src_addr,
                gateway: eth.dst_addr,
            };
            match conntrack::create(&key, &cfg, &macs, tcp_flags) {
                Ok(entry) => {
                    stats::new_flow(ifindex);
                    entry
                }
                Err(reason) => return verdict::dropped(ifindex, reason),
            }
        }
    };
    if translate(ctx, &ip, sport, &entry).is_err() {
        return verdict::dropped(ifindex, drop::MALFORMED);
    }
    if ip.is_fragment {
        remember_fragment(ifindex, &ip, entry.rewrite_addr, out_ifindex, next_hop);
    }
    stats::count(ifindex, Direction::NatOut, ctx.len());
    Verdict::Redirect(forward::to_next_hop(out_ifindex, next_hop))
}

/// The first fragment of a datagram from DUT NIC `ifindex` was given source
/// `source` and sent to `next_hop`: its later fragments follow.
#[inline(always)]
fn remember_fragment(ifindex: u32, ip: &Ipv4, source: u32, out_ifindex: u32, next_hop: u32) {
    fragments::remember(
        &fragments::key(ifindex, ip),
        FragEntry {
            rewrite_addr: source,
            out_ifindex,
            next_hop,
            dut_mac: [0; 6],
            gateway_mac: [0; 6],
            dut_ifindex: ifindex,
            covered: 0,
            _pad: 0,
        },
        ip,
    );
}

/// Packets to the gateway, to other hosts of the DUT subnet, broadcast and
/// multicast are the exporter's or the segment's business, not NAT's.
#[inline(always)]
fn for_the_segment(cfg: &DutConfig, dst: u32) -> bool {
    let first_octet = dst.to_ne_bytes()[0];
    dst == cfg.gateway_addr || dst & cfg.subnet_mask_addr == cfg.subnet_addr || first_octet >= 224
}

/// Whether `src` is an address a DUT of the subnet can have: inside it, and
/// neither its network nor its broadcast address nor the gateway's.
#[inline(always)]
fn from_a_dut(cfg: &DutConfig, src: u32) -> bool {
    let broadcast = cfg.subnet_addr | !cfg.subnet_mask_addr;
    src & cfg.subnet_mask_addr == cfg.subnet_addr
        && src != cfg.subnet_addr
        && src != broadcast
        && src != cfg.gateway_addr
}

/// The route to the destination, which must leave by this network's
/// upstream NIC, or by `policy_out` (non-zero: where a 1:1 DUT's policy
/// route goes, its VLAN sub-interface; the lookup sees the rule because it
/// is made as the kernel's forwarding would, from the DUT's address on its
/// NIC); anything else is passed to the kernel or dropped.
#[inline(always)]
fn upstream_route(
    ctx: &TcContext,
    cfg: &DutConfig,
    ip: &Ipv4,
    ifindex: u32,
    sport: u16,
    dport: u16,
    policy_out: u32,
) -> Result<(u32, u32), Verdict> {
    match forward::route(ctx, ip, ifindex, sport, dport) {
        Route::Via {
            ifindex: out,
            next_hop,
        } if out == cfg.upstream_ifindex || (policy_out != 0 && out == policy_out) => {
            Ok((out, next_hop))
        }
        // Another DUT network or a host interface: isolation says no.
        Route::Via { .. } => Err(verdict::dropped(ifindex, drop::NOT_UPSTREAM)),
        // The exporter's own upstream address (SSH to it, say).
        Route::Local => Err(Verdict::Pass),
        Route::Kernel(reason) => Err(verdict::punted(ifindex, reason)),
    }
}

/// Rewrites the source address and port (or echo identifier) of a TCP, UDP
/// or ICMP echo packet, and decrements the TTL.
#[inline(always)]
fn translate(
    ctx: &TcContext,
    ip: &Ipv4,
    sport: u16,
    entry: &FlowEntry,
) -> Result<(), rewrite::Failed> {
    let l4_off = Ipv4::L4_OFF;
    rewrite::translate_address(
        ctx,
        ip,
        Address::Source,
        entry.rewrite_addr,
        L4Check::pseudo_header(ip.protocol, l4_off),
    )?;
    let port_off = if ip.protocol == protocol::ICMP {
        l4_off + 4
    } else {
        l4_off
    };
    rewrite::l4_field(
        ctx,
        port_off,
        sport,
        entry.rewrite_port,
        L4Check::header(ip.protocol, l4_off),
    )
}

/// An ICMP error a DUT sends about a reply it received (port unreachable for
/// a UDP reply, say): translated like the flow's outbound packets, with the
/// quoted reply's destination rewritten too.
#[inline(always)]
fn error_from_dut(
    ctx: &TcContext,
    ifindex: u32,
    cfg: &DutConfig,
    ip: &Ipv4,
    l4: &[u8; 8],
) -> Verdict {
    let Some(quoted) = icmp_error::quoted(ctx, ip, Ipv4::L4_OFF) else {
        return verdict::punted(ifindex, punt::PROTOCOL);
    };
    let Some((addr, port)) = error_translation(ifindex, cfg, ip, &quoted) else {
        return verdict::punted(ifindex, punt::PROTOCOL);
    };
    let mut policy_out = 0;
    if cfg.nat_mode == mode::ONE_TO_ONE
        && let Some(m) = one_to_one::of_private(ifindex, ip.src)
    {
        // The quoted packet came from the far side to the DUT.
        let flow =
            one_to_one::flow_key(&m, quoted.src, quoted.dport, quoted.sport, quoted.protocol);
        if !one_to_one::error_allowed(&m, &flow, filter_direction::EGRESS, ip.dst) {
            return verdict::dropped(ifindex, drop::FILTERED);
        }
        policy_out = m.out_ifindex;
    }
    let (out_ifindex, next_hop) = match upstream_route(ctx, cfg, ip, ifindex, 0, 0, policy_out) {
        Ok(hop) => hop,
        Err(verdict) => return verdict,
    };
    let icmp_check = u16::from_ne_bytes([l4[2], l4[3]]);
    if icmp_error::translate(
        ctx,
        ip,
        &quoted,
        QuotedSide::Destination,
        addr,
        port,
        icmp_check,
    )
    .is_err()
    {
        return verdict::dropped(ifindex, drop::MALFORMED);
    }
    stats::count(ifindex, Direction::NatOut, ctx.len());
    Verdict::Redirect(forward::to_next_hop(out_ifindex, next_hop))
}

/// What the quoted reply's destination (the DUT's address and port) becomes:
/// the DUT's public address for a 1:1 DUT, else its flow's translation.
/// Errors never refresh or create a mapping. `None`: no flow of this DUT.
#[inline(always)]
fn error_translation(
    ifindex: u32,
    cfg: &DutConfig,
    ip: &Ipv4,
    quoted: &Quoted,
) -> Option<(u32, u16)> {
    if cfg.nat_mode == mode::ONE_TO_ONE
        && quoted.dst == ip.src
        && let Some(mapping) = one_to_one::of_private(ifindex, quoted.dst)
    {
        return Some((mapping.public_addr, quoted.dport));
    }
    // The quoted reply went remote -> DUT; its flow's outbound key is the
    // reverse.
    let key = quoted.reply_key(ifindex);
    let entry = conntrack::peek(&key)?;
    (entry.direction == direction::OUTBOUND && quoted.src == ip.dst)
        .then_some((entry.rewrite_addr, entry.rewrite_port))
}
