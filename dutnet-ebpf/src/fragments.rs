//! IP fragments of translated flows. Only the first fragment of a datagram
//! carries the ports, so it is translated like any packet of its flow and
//! leaves a note of how; the later fragments follow that note (an address
//! rewrite and the same way out). A later fragment that arrives before its
//! first is left to the kernel.
use aya_ebpf::programs::TcContext;
use dutnet_common::{
    nat::{FRAG_UNTRACKED, FragEntry, FragKey},
    stats::{drop, punt},
};

use crate::{
    forward,
    maps::NAT_FRAGS,
    parse::Ipv4,
    rewrite::{self, Address},
    stats::{self, Direction},
    verdict::{self, Verdict},
};

/// The datagram `ip` belongs to, as seen on interface `ifindex`.
#[inline(always)]
pub fn key(ifindex: u32, ip: &Ipv4) -> FragKey {
    FragKey {
        ifindex,
        src_addr: ip.src,
        dst_addr: ip.dst,
        id: ip.id,
        protocol: ip.protocol,
        _pad: 0,
    }
}

/// Notes how the first fragment `first` of a datagram was translated. A
/// full table evicts the oldest note: at worst the rest of an old datagram
/// goes to the kernel.
#[inline(always)]
pub fn remember(key: &FragKey, mut entry: FragEntry, first: &Ipv4) {
    entry.covered = first.payload_len();
    let _ = NAT_FRAGS.insert(key, entry, 0);
}

/// The note of the datagram later fragment `ip` belongs to, and whether the
/// fragment is acceptable: `Err` (with the note) for one that overlaps what
/// came before it (an attack on reassembly further on; the kernel drops
/// them).
#[inline(always)]
fn note(ifindex: u32, ip: &Ipv4) -> Option<Result<FragEntry, FragEntry>> {
    let entry = NAT_FRAGS.get_ptr_mut(key(ifindex, ip))?;
    // SAFETY: valid for this program run; the fragments of one datagram
    // come one after the other, and a lost update only stops the tracking.
    unsafe {
        let covered = (*entry).covered;
        if covered != FRAG_UNTRACKED {
            if ip.frag_offset < covered {
                return Some(Err(*entry));
            }
            (*entry).covered = if ip.frag_offset == covered {
                covered
                    .saturating_add(ip.payload_len())
                    .min(FRAG_UNTRACKED - 1)
            } else {
                FRAG_UNTRACKED
            };
        }
        Some(Ok(*entry))
    }
}

/// A later fragment from a DUT: the source its first fragment got, out of
/// the same NIC.
#[inline(always)]
pub fn follow_outbound(ctx: &TcContext, ifindex: u32, ip: &Ipv4) -> Verdict {
    let entry = match note(ifindex, ip) {
        Some(Ok(entry)) => entry,
        Some(Err(_)) => return verdict::dropped(ifindex, drop::MALFORMED),
        None => return verdict::punted(ifindex, punt::FRAGMENT),
    };
    if ip.ttl <= 1 {
        return verdict::punted(ifindex, punt::TTL_EXPIRED);
    }
    if rewrite::translate_address(ctx, ip, Address::Source, entry.rewrite_addr, None).is_err() {
        return verdict::dropped(ifindex, drop::MALFORMED);
    }
    stats::count(ifindex, Direction::NatOut, ctx.len());
    Verdict::Redirect(forward::to_next_hop(entry.out_ifindex, entry.next_hop))
}

/// A later fragment arriving upstream: the destination its first fragment
/// got, to the same DUT NIC. `None`: no note, not ours.
#[inline(always)]
pub fn follow_inbound(ctx: &TcContext, ifindex: u32, ip: &Ipv4) -> Option<Verdict> {
    let entry = match note(ifindex, ip)? {
        Ok(entry) => entry,
        Err(entry) => return Some(verdict::dropped(entry.dut_ifindex, drop::MALFORMED)),
    };
    if ip.ttl <= 1 {
        return Some(verdict::punted(entry.dut_ifindex, punt::TTL_EXPIRED));
    }
    if rewrite::translate_address(ctx, ip, Address::Destination, entry.rewrite_addr, None).is_err()
    {
        return Some(verdict::dropped(entry.dut_ifindex, drop::MALFORMED));
    }
    stats::delivered(entry.dut_ifindex, entry.rewrite_addr, ctx.len());
    Some(to_dut(ctx, &entry))
}

/// Sends an inbound fragment to its DUT: with the flow's MACs, or through
/// the DUT NIC's neighbour table for a 1:1 DUT (whose MAC no flow recorded).
#[inline(always)]
fn to_dut(ctx: &TcContext, entry: &FragEntry) -> Verdict {
    if entry.dut_mac == [0; 6] {
        return Verdict::Redirect(forward::to_next_hop(entry.out_ifindex, entry.rewrite_addr));
    }
    match forward::to_dut(ctx, entry.out_ifindex, &entry.dut_mac, &entry.gateway_mac) {
        Ok(code) => Verdict::Redirect(code),
        Err(_) => verdict::dropped(entry.dut_ifindex, drop::MALFORMED),
    }
}
