//! Sending translated packets on: out the upstream NIC by the host's routes,
//! or straight to the DUT NIC a flow belongs to.
use core::mem;

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup, bpf_redir_neigh,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use dutnet_common::stats::punt;

use crate::parse::Ipv4;

const AF_INET: u8 = 2;

/// Where the host's routing table sends a packet from a DUT.
pub enum Route {
    /// Out of `ifindex`, to the neighbour `next_hop` (network order).
    Via { ifindex: u32, next_hop: u32 },
    /// To an address of the exporter itself: the stack delivers it.
    Local,
    /// The kernel must handle it (a `stats::punt` reason): it sends the ICMP
    /// error or fragments.
    Kernel(usize),
}

/// Looks the packet's destination up as the kernel's forwarding path would,
/// for a packet received on `in_ifindex` (so per-interface forwarding and
/// policy rules apply), without requiring a neighbour entry:
/// `bpf_redirect_neigh` resolves it.
#[inline(always)]
pub fn route(ctx: &TcContext, ip: &Ipv4, in_ifindex: u32, sport: u16, dport: u16) -> Route {
    // SAFETY: an all-zero bpf_fib_lookup is a valid input (plain integers).
    let mut params: bpf_fib_lookup = unsafe { mem::zeroed() };
    params.family = AF_INET;
    params.l4_protocol = ip.protocol;
    params.sport = sport;
    params.dport = dport;
    // A GSO packet (TCP from a local or veth sender with offloads on) is
    // segmented to the MTU on the way out: its total length is no MTU
    // problem, and 0 tells the lookup to skip the check.
    // SAFETY: `skb` points at the kernel's __sk_buff for this program run.
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    params.__bindgen_anon_1.tot_len = if gso { 0 } else { ip.total_len };
    params.ifindex = in_ifindex;
    params.__bindgen_anon_2.tos = ip.tos;
    params.__bindgen_anon_3.ipv4_src = ip.src;
    params.__bindgen_anon_4.ipv4_dst = ip.dst;
    // SAFETY: `params` is a valid bpf_fib_lookup of the size passed.
    let ret = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            &mut params,
            mem::size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_SKIP_NEIGH,
        )
    };
    match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Route::Via {
            ifindex: params.ifindex,
            // SAFETY: on success the kernel wrote the IPv4 next hop here.
            next_hop: unsafe { params.__bindgen_anon_4.ipv4_dst },
        },
        BPF_FIB_LKUP_RET_NOT_FWDED => Route::Local,
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Route::Kernel(punt::MTU),
        _ => Route::Kernel(punt::NO_ROUTE),
    }
}

/// Redirects the frame out of `ifindex` to `next_hop`; the kernel's
/// neighbour subsystem writes the MACs (and resolves them if needed).
#[inline(always)]
pub fn to_next_hop(ifindex: u32, next_hop: u32) -> i32 {
    let mut nh = bpf_redir_neigh {
        nh_family: u32::from(AF_INET),
        __bindgen_anon_1: aya_ebpf::bindings::bpf_redir_neigh__bindgen_ty_1 { ipv4_nh: next_hop },
    };
    // SAFETY: `nh` is a valid bpf_redir_neigh of the size passed.
    unsafe {
        bpf_redirect_neigh(
            ifindex,
            &mut nh,
            mem::size_of::<bpf_redir_neigh>() as i32,
            0,
        ) as i32
    }
}

/// Redirects the frame out of DUT NIC `ifindex` with the MACs stored in the
/// flow, so no neighbour lookup on the DUT subnet is needed (several DUT NICs
/// may carry the same subnet).
#[inline(always)]
pub fn to_dut(
    ctx: &TcContext,
    ifindex: u32,
    dut_mac: &[u8; 6],
    gateway_mac: &[u8; 6],
) -> Result<i32, crate::rewrite::Failed> {
    ctx.store(0, dut_mac, 0)?;
    ctx.store(6, gateway_mac, 0)?;
    // SAFETY: plain helper call.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as i32)
}
