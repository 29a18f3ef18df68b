//! ICMP errors (destination unreachable, fragmentation needed, time exceeded,
//! parameter problem) about a translated flow: the quoted header inside is
//! translated too, so traceroute and path-MTU discovery work from a DUT.
//!
//! The quoted packet is the one that travelled the other way: a reply
//! arriving upstream quotes the packet dutnet sent out (source = external
//! address and port), an error the DUT sends quotes the reply it received
//! (destination = DUT address and port).
use aya_ebpf::programs::TcContext;
use dutnet_common::{
    csum,
    nat::{FlowKey, protocol},
};
use network_types::ip::Ipv4Hdr;

use crate::{
    parse::{IP_CHECK_OFF, IP_DST_OFF, IP_LEN, IP_SRC_OFF, Ipv4},
    rewrite::{self, Address, Failed},
};

pub const DEST_UNREACHABLE: u8 = 3;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAMETER_PROBLEM: u8 = 12;
const ECHO_REQUEST: u8 = 8;

#[inline(always)]
pub fn is_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        DEST_UNREACHABLE | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// The header an ICMP error quotes, as far as the translation needs it.
pub struct Quoted {
    /// Frame offset of the quoted IPv4 header.
    pub ip_off: usize,
    pub src: u32,
    pub dst: u32,
    pub protocol: u8,
    /// Raw ports (for quoted ICMP echo: identifier and 0).
    pub sport: u16,
    pub dport: u16,
    check: u16,
    l4_off: usize,
    /// Bytes of the quoted L4 header present in the error.
    l4_len: usize,
}

impl Quoted {
    /// The flow key of a reply to the quoted packet, arriving on `ifindex`:
    /// the entry whose translation the error needs.
    #[inline(always)]
    pub fn reply_key(&self, ifindex: u32) -> FlowKey {
        FlowKey {
            ifindex,
            src_addr: self.dst,
            dst_addr: self.src,
            src_port: self.dport,
            dst_port: self.sport,
            protocol: self.protocol,
            _pad: [0; 3],
        }
    }
}

/// Reads the header quoted by the ICMP error whose ICMP header is at
/// `icmp_off`. `None` when it is not one the table can match: options,
/// fragments, untracked protocols, or too short to carry the ports.
#[inline(always)]
pub fn quoted(ctx: &TcContext, outer: &Ipv4, icmp_off: usize) -> Option<Quoted> {
    let ip_off = icmp_off + 8;
    let ip: Ipv4Hdr = ctx.load(ip_off).ok()?;
    if ip.version() != 4 || usize::from(ip.ihl()) != IP_LEN {
        return None;
    }
    let l4_off = ip_off + IP_LEN;
    let end = crate::parse::IP_OFF + usize::from(outer.total_len);
    if end < l4_off + 8 {
        return None;
    }
    let head: [u8; 8] = ctx.load(l4_off).ok()?;
    let (sport, dport) = match ip.proto {
        protocol::TCP | protocol::UDP => (
            u16::from_ne_bytes([head[0], head[1]]),
            u16::from_ne_bytes([head[2], head[3]]),
        ),
        // An echo request dutnet sent: its identifier is the flow's port.
        protocol::ICMP if head[0] == ECHO_REQUEST => (u16::from_ne_bytes([head[4], head[5]]), 0),
        _ => return None,
    };
    Some(Quoted {
        ip_off,
        src: u32::from_ne_bytes(ip.src_addr),
        dst: u32::from_ne_bytes(ip.dst_addr),
        protocol: ip.proto,
        sport,
        dport,
        check: u16::from_ne_bytes(ip.check),
        l4_off,
        l4_len: end - l4_off,
    })
}

/// Which side of the quoted header is translated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum QuotedSide {
    /// The quoted source (an error arriving upstream about an outbound packet).
    Source,
    /// The quoted destination (an error a DUT sends about a reply).
    Destination,
}

/// Translates a whole ICMP error (whose ICMP checksum is `icmp_check`): the
/// quoted header's `side` becomes `addr`/`port`, and so does the matching
/// outer address (the error's destination when the quoted source changes,
/// its source when the quoted destination does); the TTL is decremented and
/// every checksum kept valid.
#[inline(always)]
pub fn translate(
    ctx: &TcContext,
    ip: &Ipv4,
    q: &Quoted,
    side: QuotedSide,
    addr: u32,
    port: u16,
    icmp_check: u16,
) -> Result<(), Failed> {
    let icmp_check = translate_quoted(ctx, q, side, addr, port, icmp_check)?;
    ctx.store(Ipv4::L4_OFF + 2, &icmp_check, 0)?;
    let outer = match side {
        QuotedSide::Source => Address::Destination,
        QuotedSide::Destination => Address::Source,
    };
    rewrite::translate_address(ctx, ip, outer, addr, None)
}

/// Rewrites the quoted address and port to `addr`/`port` and returns the
/// adjusted ICMP checksum: every byte changed inside the ICMP payload is
/// folded into it.
#[inline(always)]
fn translate_quoted(
    ctx: &TcContext,
    q: &Quoted,
    side: QuotedSide,
    addr: u32,
    port: u16,
    icmp_check: u16,
) -> Result<u16, Failed> {
    let mut icmp_check = icmp_check;
    let (addr_off, old_addr, port_off, old_port) = match side {
        QuotedSide::Source => (IP_SRC_OFF, q.src, 0, q.sport),
        QuotedSide::Destination => (IP_DST_OFF, q.dst, 2, q.dport),
    };
    // The quoted IPv4 header: address and its checksum.
    let ip_check = csum::replace32(q.check, old_addr, addr);
    ctx.store(q.ip_off + addr_off, &addr, 0)?;
    ctx.store(q.ip_off + IP_CHECK_OFF, &ip_check, 0)?;
    icmp_check = csum::replace32(icmp_check, old_addr, addr);
    icmp_check = csum::replace16(icmp_check, q.check, ip_check);
    // The quoted L4 header: port (or echo identifier) and, when quoted in
    // full enough to be present, its checksum.
    let (port_off, l4_check_off, pseudo) = match q.protocol {
        protocol::TCP => (q.l4_off + port_off, q.l4_off + 16, true),
        protocol::UDP => (q.l4_off + port_off, q.l4_off + 6, true),
        _ => (q.l4_off + 4, q.l4_off + 2, false),
    };
    if old_port != port {
        ctx.store(port_off, &port, 0)?;
        icmp_check = csum::replace16(icmp_check, old_port, port);
    }
    if l4_check_off + 2 <= q.l4_off + q.l4_len {
        let old: u16 = ctx.load(l4_check_off)?;
        let mut new = csum::replace16(old, old_port, port);
        if pseudo {
            new = csum::replace32(new, old_addr, addr);
        }
        if q.protocol == protocol::UDP {
            new = if old == 0 {
                0
            } else if new == 0 {
                0xffff
            } else {
                new
            };
        }
        if new != old {
            ctx.store(l4_check_off, &new, 0)?;
            icmp_check = csum::replace16(icmp_check, old, new);
        }
    }
    Ok(icmp_check)
}
