//! The connection table: finding a flow, creating one with a translated
//! port, and recording what each direction carried.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
};
use dutnet_common::{
    nat::{Binding, BindingKey, DutConfig, FlowEntry, FlowKey, direction, protocol, tcp_seen},
    stats::drop,
};

use crate::{
    budget,
    maps::{NAT_BINDINGS, NAT_FLOWS},
};

/// How many ports of the translation range are tried before giving up on a
/// new flow. Each try is one hash insert; 32 keep the program's worst case
/// small while exhausting a range only when it is nearly full.
const PORT_TRIES: u32 = 32;

const EEXIST: i32 = -17;

/// Looks up the entry of one direction of a flow and records the packet in
/// it. Returns a copy: the entry may be removed by the sweeper meanwhile.
#[inline(always)]
pub fn lookup(key: &FlowKey, tcp_flags: u8) -> Option<FlowEntry> {
    let entry = NAT_FLOWS.get_ptr_mut(key)?;
    // SAFETY: the pointer is valid for this program run. Another CPU may write
    // the same fields concurrently; each write is a timestamp, a superset of
    // flags or a count, so a lost update costs at most one packet's worth.
    unsafe {
        (*entry).last_seen_ns = bpf_ktime_get_ns();
        (*entry).packets = (*entry).packets.saturating_add(1);
        if (*entry).direction == direction::OUTBOUND && reopens(tcp_flags, (*entry).tcp_flags) {
            reopen(&mut *entry);
        } else if (*entry).tcp_flags & tcp_flags != tcp_flags {
            (*entry).tcp_flags |= tcp_flags;
        }
        Some(*entry)
    }
}

/// A SYN from the DUT on a connection that was closed: the DUT reuses the
/// 4-tuple for a new connection (conntrack reopens the entry too).
#[inline(always)]
fn reopens(tcp_flags: u8, seen: u8) -> bool {
    tcp_flags & (tcp_seen::SYN | tcp_seen::ACK) == tcp_seen::SYN
        && seen & (tcp_seen::FIN | tcp_seen::RST) != 0
}

/// Starts the flow's state afresh, keeping its translation: a new
/// connection on the same ports is not a closed one to evict or expire.
#[inline(always)]
fn reopen(outbound: &mut FlowEntry) {
    outbound.tcp_flags = tcp_seen::SYN;
    if let Some(inbound) = NAT_FLOWS.get_ptr_mut(outbound.peer) {
        // SAFETY: valid for this program run.
        unsafe {
            (*inbound).tcp_flags = 0;
            (*inbound).packets = 0;
        }
    }
}

/// Looks up the entry of one direction of a flow without recording a packet
/// in it (ICMP errors never keep a mapping alive).
#[inline(always)]
pub fn peek(key: &FlowKey) -> Option<FlowEntry> {
    // SAFETY: the pointer is valid for this program run; the entry is copied.
    NAT_FLOWS.get_ptr(key).map(|entry| unsafe { *entry })
}

/// The frame's MACs, kept in the flow so replies can be redirected to the
/// DUT with no neighbour lookup on its (possibly shared) subnet.
pub struct Macs {
    pub dut: [u8; 6],
    pub gateway: [u8; 6],
}

/// Creates both directions of a new outbound flow `out` from DUT NIC
/// `dut_ifindex`, within its DUT's and network's budgets (evicting a flow
/// to make room when one is full). The external port is the one the DUT's
/// address and port already have (endpoint-independent mapping), else the
/// DUT's own port (or echo identifier) when no other flow to the same
/// destination uses it on the external address, else one of the
/// configured range. Returns the outbound
/// entry, or why the flow cannot be created (a `stats::drop` reason).
#[inline(always)]
pub fn create(
    out: &FlowKey,
    cfg: &DutConfig,
    macs: &Macs,
    tcp_flags: u8,
) -> Result<FlowEntry, usize> {
    budget::make_room(out, cfg)?;
    // SAFETY: plain helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut inbound = FlowKey {
        ifindex: cfg.upstream_ifindex,
        src_addr: out.dst_addr,
        dst_addr: cfg.external_addr,
        src_port: out.dst_port,
        dst_port: out.src_port,
        protocol: out.protocol,
        _pad: [0; 3],
    };
    let in_entry = FlowEntry {
        last_seen_ns: now,
        peer: *out,
        rewrite_addr: out.src_addr,
        rewrite_port: out.src_port,
        direction: direction::INBOUND,
        tcp_flags: 0,
        dut_ifindex: out.ifindex,
        dut_mac: macs.dut,
        gateway_mac: macs.gateway,
        packets: 0,
    };
    claim_port(out, &mut inbound, &in_entry, cfg)?;
    let out_entry = FlowEntry {
        last_seen_ns: now,
        peer: inbound,
        rewrite_addr: cfg.external_addr,
        rewrite_port: inbound.dst_port,
        direction: direction::OUTBOUND,
        tcp_flags,
        dut_ifindex: out.ifindex,
        dut_mac: macs.dut,
        gateway_mac: macs.gateway,
        packets: 1,
    };
    match NAT_FLOWS.insert(out, out_entry, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            budget::admitted(out, cfg);
            Ok(out_entry)
        }
        Err(e) => {
            // Never leave a half: the inbound entry goes too.
            let _ = NAT_FLOWS.remove(inbound);
            if e == EEXIST {
                // Another CPU created this flow a moment ago: use its entry.
                lookup(out, tcp_flags).ok_or(drop::TABLE_FULL)
            } else {
                Err(drop::TABLE_FULL)
            }
        }
    }
}

/// Inserts the inbound entry under the external port the DUT's address and
/// port already have for other destinations (endpoint-independent mapping),
/// else under the DUT's own port if free, else under a port of the range;
/// `inbound.dst_port` is the port it got, and becomes the binding.
#[inline(always)]
fn claim_port(
    out: &FlowKey,
    inbound: &mut FlowKey,
    entry: &FlowEntry,
    cfg: &DutConfig,
) -> Result<(), usize> {
    let binding = BindingKey {
        ifindex: out.ifindex,
        src_addr: out.src_addr,
        src_port: out.src_port,
        protocol: out.protocol,
        _pad: 0,
    };
    // SAFETY: the value is copied out at once.
    let bound = NAT_BINDINGS.get_ptr(binding).map(|p| unsafe { (*p).port });
    let claimed = claim(inbound, entry, cfg, bound);
    if claimed.is_ok() {
        let value = Binding {
            port: inbound.dst_port,
            _pad: [0; 6],
            refreshed_ns: entry.last_seen_ns,
        };
        let _ = NAT_BINDINGS.insert(binding, value, 0);
    }
    claimed
}

/// Tries the bound port, then the DUT's own, then the range.
#[inline(always)]
fn claim(
    inbound: &mut FlowKey,
    entry: &FlowEntry,
    cfg: &DutConfig,
    bound: Option<u16>,
) -> Result<(), usize> {
    let own = inbound.dst_port;
    if let Some(port) = bound {
        inbound.dst_port = port;
        if try_insert(inbound, entry)? {
            return Ok(());
        }
        inbound.dst_port = own;
    }
    if bound != Some(own) && try_insert(inbound, entry)? {
        return Ok(());
    }
    let span = u32::from(cfg.port_max.saturating_sub(cfg.port_min)) + 1;
    // A random start spreads new flows over the range instead of piling
    // them on its first ports. SAFETY: plain helper call without arguments.
    let start = unsafe { bpf_get_prandom_u32() } % span;
    for i in 0..PORT_TRIES {
        let port = u32::from(cfg.port_min) + (start + i) % span;
        inbound.dst_port = (port as u16).to_be();
        if try_insert(inbound, entry)? {
            return Ok(());
        }
    }
    Err(drop::PORTS_EXHAUSTED)
}

/// Inserts `entry` under `key` unless the key is taken: `Ok(false)` when it
/// is, `Err` when the table is full.
#[inline(always)]
fn try_insert(key: &FlowKey, entry: &FlowEntry) -> Result<bool, usize> {
    match NAT_FLOWS.insert(key, entry, u64::from(BPF_NOEXIST)) {
        Ok(()) => Ok(true),
        Err(EEXIST) => Ok(false),
        Err(_) => Err(drop::TABLE_FULL),
    }
}

/// The [`tcp_seen`] bits of a TCP flags byte (offset 13 of the header).
#[inline(always)]
pub fn tcp_bits(flags: u8) -> u8 {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    let mut seen = 0;
    if flags & SYN != 0 {
        seen |= tcp_seen::SYN;
    }
    if flags & FIN != 0 {
        seen |= tcp_seen::FIN;
    }
    if flags & RST != 0 {
        seen |= tcp_seen::RST;
    }
    if flags & ACK != 0 {
        seen |= tcp_seen::ACK;
    }
    seen
}

/// Whether `protocol` is one the connection table tracks.
#[inline(always)]
pub fn is_tracked(protocol: u8) -> bool {
    matches!(protocol, protocol::TCP | protocol::UDP | protocol::ICMP)
}
