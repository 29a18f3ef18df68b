//! Reading the headers the fast path needs, with bounds checked by the load
//! helper: a frame too short for a header is reported, never read past.
use aya_ebpf::programs::TcContext;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

pub const ETH_LEN: usize = EthHdr::LEN;
pub const IP_OFF: usize = ETH_LEN;
/// Offsets inside an IPv4 header without options.
pub const IP_TTL_OFF: usize = 8;
pub const IP_CHECK_OFF: usize = 10;
pub const IP_SRC_OFF: usize = 12;
pub const IP_DST_OFF: usize = 16;
pub const IP_LEN: usize = Ipv4Hdr::LEN;

const ETHERTYPE_IPV4: u16 = 0x0800;
const IP_MF: u16 = 0x2000;
const IP_OFFSET_MASK: u16 = 0x1fff;

/// Why a frame cannot be looked at as IPv4.
pub enum NotIpv4 {
    /// ARP, IPv6, LLDP...: not the fast path's business.
    OtherProtocol,
    /// An IPv4 frame whose headers claim more than it carries.
    Malformed,
}

/// The fields of an IPv4 header the fast path uses. Addresses are raw
/// (network order, as loaded); lengths are host order.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    pub src: u32,
    pub dst: u32,
    pub protocol: u8,
    pub ttl: u8,
    /// Raw header checksum.
    pub check: u16,
    pub header_len: usize,
    pub total_len: u16,
    pub is_fragment: bool,
    /// A fragment other than the first: it has no L4 header.
    pub is_later_fragment: bool,
    /// Where the fragment's payload starts in the datagram's, in bytes.
    pub frag_offset: u16,
    /// Raw identification field.
    pub id: u16,
    pub tos: u8,
}

impl Ipv4 {
    /// Offset of the L4 header in the frame (for a header without options).
    pub const L4_OFF: usize = IP_OFF + IP_LEN;

    pub fn has_options(&self) -> bool {
        self.header_len != IP_LEN
    }

    /// Bytes of payload after the header.
    pub fn payload_len(&self) -> u16 {
        self.total_len.saturating_sub(self.header_len as u16)
    }
}

/// Reads the Ethernet and IPv4 headers at the start of the frame.
#[inline(always)]
pub fn ipv4(ctx: &TcContext) -> Result<(EthHdr, Ipv4), NotIpv4> {
    let eth: EthHdr = ctx.load(0).map_err(|_| NotIpv4::OtherProtocol)?;
    if u16::from_be(eth.ether_type) != ETHERTYPE_IPV4 {
        return Err(NotIpv4::OtherProtocol);
    }
    let ip: Ipv4Hdr = ctx.load(IP_OFF).map_err(|_| NotIpv4::Malformed)?;
    let header_len = usize::from(ip.ihl());
    let total_len = ip.tot_len();
    let frame_len = ctx.len() as usize;
    if ip.version() != 4
        || header_len < IP_LEN
        || usize::from(total_len) < header_len
        || IP_OFF + usize::from(total_len) > frame_len
    {
        return Err(NotIpv4::Malformed);
    }
    if header_len == IP_LEN && !checksum_ok(&ip) {
        // The kernel's IP input drops it; so does the fast path. (A header
        // with options is left to the kernel, which checks it.)
        return Err(NotIpv4::Malformed);
    }
    let frags = u16::from_be_bytes(ip.frags);
    Ok((
        eth,
        Ipv4 {
            src: u32::from_ne_bytes(ip.src_addr),
            dst: u32::from_ne_bytes(ip.dst_addr),
            protocol: ip.proto,
            ttl: ip.ttl,
            check: u16::from_ne_bytes(ip.check),
            header_len,
            total_len,
            is_fragment: frags & (IP_MF | IP_OFFSET_MASK) != 0,
            is_later_fragment: frags & IP_OFFSET_MASK != 0,
            frag_offset: (frags & IP_OFFSET_MASK) << 3,
            id: u16::from_ne_bytes(ip.id),
            tos: ip.tos,
        },
    ))
}

/// Whether a 20-byte IPv4 header's checksum verifies (RFC 1071: the one's
/// complement sum of its words, checksum included, is all ones).
#[inline(always)]
fn checksum_ok(ip: &Ipv4Hdr) -> bool {
    // SAFETY: Ipv4Hdr is a plain 20-byte `repr(C)` header.
    let raw: [u8; IP_LEN] = unsafe { core::mem::transmute(*ip) };
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IP_LEN {
        sum += u32::from(u16::from_ne_bytes([raw[i], raw[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

/// The first 8 bytes of the L4 header: ports (or ICMP type, code, checksum,
/// identifier), which is all the fast path reads of TCP, UDP and ICMP.
#[inline(always)]
pub fn l4_head(ctx: &TcContext, ip: &Ipv4, offset: usize) -> Result<[u8; 8], NotIpv4> {
    if usize::from(ip.total_len) < ip.header_len + 8 {
        return Err(NotIpv4::Malformed);
    }
    ctx.load(offset).map_err(|_| NotIpv4::Malformed)
}

/// The raw 16-bit field at `at` of an L4 head (a port, an identifier).
#[inline(always)]
pub fn port(l4: &[u8; 8], at: usize) -> u16 {
    match at {
        0 => u16::from_ne_bytes([l4[0], l4[1]]),
        2 => u16::from_ne_bytes([l4[2], l4[3]]),
        _ => u16::from_ne_bytes([l4[4], l4[5]]),
    }
}
