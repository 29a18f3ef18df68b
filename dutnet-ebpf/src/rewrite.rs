//! Writing translated fields with every checksum that covers them kept valid.
//!
//! TCP and UDP checksums go through the kernel's `bpf_l4_csum_replace`, which
//! knows whether the skb carries a finished checksum or a partial one (a
//! packet from a local socket or a veth with offload): doing that arithmetic
//! by hand would corrupt offloaded packets. The IPv4 header checksum and the
//! headers quoted inside ICMP errors are plain data, updated with
//! `dutnet_common::csum`.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use dutnet_common::{csum, nat::protocol};

use crate::parse::{IP_CHECK_OFF, IP_DST_OFF, IP_OFF, IP_SRC_OFF, IP_TTL_OFF, Ipv4};

/// The helpers' error code; the caller drops the packet on any.
pub type Failed = aya_ebpf::cty::c_long;

/// Where the L4 checksum of a TCP or UDP packet is, and how to update it.
#[derive(Clone, Copy)]
pub struct L4Check {
    offset: usize,
    flags: u64,
}

impl L4Check {
    /// The checksum of the L4 header at `l4_off`, for `protocol`. ICMP has no
    /// pseudo-header, so its checksum does not cover the addresses: `None`.
    #[inline(always)]
    pub fn pseudo_header(protocol: u8, l4_off: usize) -> Option<Self> {
        match protocol {
            protocol::TCP => Some(Self {
                offset: l4_off + 16,
                flags: 0,
            }),
            // A UDP checksum of 0 means none: the helper keeps it 0.
            protocol::UDP => Some(Self {
                offset: l4_off + 6,
                flags: BPF_F_MARK_MANGLED_0 as u64,
            }),
            _ => None,
        }
    }

    /// The checksum of the L4 header at `l4_off`, for a change inside the L4
    /// header itself (a port, an ICMP identifier).
    #[inline(always)]
    pub fn header(protocol: u8, l4_off: usize) -> Self {
        match protocol {
            protocol::ICMP => Self {
                offset: l4_off + 2,
                flags: 0,
            },
            protocol::UDP => Self {
                offset: l4_off + 6,
                flags: BPF_F_MARK_MANGLED_0 as u64,
            },
            _ => Self {
                offset: l4_off + 16,
                flags: 0,
            },
        }
    }
}

/// An IPv4 header being rewritten: its checksum is updated in a register and
/// stored once, by [`Ipv4Rewrite::finish`].
pub struct Ipv4Rewrite {
    check: u16,
}

impl Ipv4Rewrite {
    pub fn new(ip: &Ipv4) -> Self {
        Self { check: ip.check }
    }

    /// Replaces the address at `field_off` (a frame offset) and the L4
    /// checksum that covers it through the pseudo-header.
    #[inline(always)]
    pub fn address(
        &mut self,
        ctx: &TcContext,
        field_off: usize,
        old: u32,
        new: u32,
        l4: Option<L4Check>,
    ) -> Result<(), Failed> {
        if let Some(l4) = l4 {
            ctx.l4_csum_replace(
                l4.offset,
                u64::from(old),
                u64::from(new),
                l4.flags | BPF_F_PSEUDO_HDR as u64 | 4,
            )?;
        }
        self.check = csum::replace32(self.check, old, new);
        ctx.store(field_off, &new, 0)
    }

    /// Decrements the TTL, as a router does. The caller made sure it is > 1.
    #[inline(always)]
    pub fn decrement_ttl(&mut self, ctx: &TcContext, ip: &Ipv4) -> Result<(), Failed> {
        let old = u16::from_ne_bytes([ip.ttl, ip.protocol]);
        let new = u16::from_ne_bytes([ip.ttl - 1, ip.protocol]);
        self.check = csum::replace16(self.check, old, new);
        ctx.store(IP_OFF + IP_TTL_OFF, &(ip.ttl - 1), 0)
    }

    /// Stores the updated header checksum.
    #[inline(always)]
    pub fn finish(self, ctx: &TcContext) -> Result<(), Failed> {
        ctx.store(IP_OFF + IP_CHECK_OFF, &self.check, 0)
    }
}

/// One address of the IPv4 header.
#[derive(Clone, Copy)]
pub enum Address {
    Source,
    Destination,
}

/// A translating router's IPv4 work on a packet: replaces one address (and
/// the L4 checksum `l4` that covers it, if any), decrements the TTL (the
/// caller made sure it is > 1) and stores the header checksum.
#[inline(always)]
pub fn translate_address(
    ctx: &TcContext,
    ip: &Ipv4,
    which: Address,
    new: u32,
    l4: Option<L4Check>,
) -> Result<(), Failed> {
    let (field_off, old) = match which {
        Address::Source => (IP_SRC_OFF, ip.src),
        Address::Destination => (IP_DST_OFF, ip.dst),
    };
    let mut header = Ipv4Rewrite::new(ip);
    header.address(ctx, IP_OFF + field_off, old, new, l4)?;
    header.decrement_ttl(ctx, ip)?;
    header.finish(ctx)
}

/// Replaces a 16-bit field of the L4 header (a port, an ICMP identifier) and
/// the L4 checksum.
#[inline(always)]
pub fn l4_field(
    ctx: &TcContext,
    field_off: usize,
    old: u16,
    new: u16,
    check: L4Check,
) -> Result<(), Failed> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(
        check.offset,
        u64::from(old),
        u64::from(new),
        check.flags | 2,
    )?;
    ctx.store(field_off, &new, 0)
}
