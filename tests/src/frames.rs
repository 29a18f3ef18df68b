//! Crafting Ethernet/IPv4 frames for `BPF_PROG_TEST_RUN`, with checksums
//! computed here, independently of dutnet's own code.
use std::net::Ipv4Addr;

pub const ETH_HLEN: usize = 14;
pub const IPV4_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const TCP_HLEN: usize = 20;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// The RFC 1071 Internet checksum of `data` (plus an already summed `initial`).
#[must_use]
pub fn internet_checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame with valid checksums.
#[must_use]
pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HLEN + payload.len();
    let mut frame = ethernet_ipv4_header(src.0, dst.0, 17, udp_len);
    let mut l4 = Vec::with_capacity(udp_len);
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&(udp_len as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    let mut sum = internet_checksum(&l4, pseudo_header_sum(src.0, dst.0, 17, udp_len));
    if sum == 0 {
        sum = 0xffff;
    }
    l4[6..8].copy_from_slice(&sum.to_be_bytes());
    frame.extend_from_slice(&l4);
    frame
}

/// An Ethernet + IPv4 + UDP frame whose UDP checksum is 0 ("none").
#[must_use]
pub fn udp_without_checksum(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut frame = udp(src, dst, payload);
    let at = ETH_HLEN + IPV4_HLEN + 6;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    frame
}

/// An Ethernet + IPv4 + TCP frame (no options) with `flags` (0x02 = SYN,
/// 0x12 = SYN+ACK, 0x10 = ACK) and valid checksums.
#[must_use]
pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, payload: &[u8]) -> Vec<u8> {
    let tcp_len = TCP_HLEN + payload.len();
    let mut frame = ethernet_ipv4_header(src.0, dst.0, PROTO_TCP, tcp_len);
    let mut l4 = vec![0u8; TCP_HLEN];
    l4[0..2].copy_from_slice(&src.1.to_be_bytes());
    l4[2..4].copy_from_slice(&dst.1.to_be_bytes());
    l4[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags;
    l4[14..16].copy_from_slice(&64240u16.to_be_bytes());
    l4.extend_from_slice(payload);
    let sum = internet_checksum(&l4, pseudo_header_sum(src.0, dst.0, PROTO_TCP, tcp_len));
    l4[16..18].copy_from_slice(&sum.to_be_bytes());
    frame.extend_from_slice(&l4);
    frame
}

/// An Ethernet + IPv4 + ICMP echo request (`icmp_type` 8) or reply (0).
#[must_use]
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![icmp_type, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"ping payload 0123456789");
    icmp_frame(src, dst, icmp)
}

/// An Ethernet + IPv4 + ICMP error (`icmp_type` 3 or 11) from `src` to `dst`
/// quoting `quoted` (an IPv4 packet, cut to `quoted_len` bytes as routers do).
/// For fragmentation-needed (3/4), `mtu` goes in the second word.
#[must_use]
pub fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    (icmp_type, code): (u8, u8),
    mtu: u16,
    quoted: &[u8],
    quoted_len: usize,
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&quoted[..quoted_len.min(quoted.len())]);
    icmp_frame(src, dst, icmp)
}

fn icmp_frame(src: Ipv4Addr, dst: Ipv4Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let sum = internet_checksum(&icmp, 0);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame = ethernet_ipv4_header(src, dst, PROTO_ICMP, icmp.len());
    frame.extend_from_slice(&icmp);
    frame
}

/// Sets the frame's destination and source MACs.
pub fn set_macs(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}

/// The IPv4 packet inside an Ethernet frame.
#[must_use]
pub fn ip_packet(frame: &[u8]) -> &[u8] {
    &frame[ETH_HLEN..]
}

/// What a receiver would check of an IPv4 packet, parsed independently of
/// dutnet: every field the translation touches and whether each checksum
/// verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    /// Ports (TCP/UDP), or the identifier and 0 (ICMP echo).
    pub sport: u16,
    pub dport: u16,
    pub ip_checksum_ok: bool,
    /// TCP/UDP with the pseudo-header, ICMP over the whole message. A UDP
    /// checksum of 0 ("none") counts as ok.
    pub l4_checksum_ok: bool,
    pub udp_checksum_zero: bool,
}

/// Parses the IPv4 packet `ip` (no options) and verifies its checksums. The
/// L4 checksum can only be verified when the packet is complete: for a quote
/// cut short inside an ICMP error, `l4_checksum_ok` is true.
#[must_use]
pub fn parse(ip: &[u8]) -> Parsed {
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let protocol = ip[9];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &ip[IPV4_HLEN..total.min(ip.len())];
    let complete = total <= ip.len();
    let word = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let (sport, dport) = match protocol {
        PROTO_ICMP => (word(l4, 4), 0),
        _ => (word(l4, 0), word(l4, 2)),
    };
    let udp_checksum_zero = protocol == PROTO_UDP && word(l4, 6) == 0;
    let l4_checksum_ok = !complete
        || udp_checksum_zero
        || match protocol {
            PROTO_ICMP => internet_checksum(l4, 0) == 0,
            _ => internet_checksum(l4, pseudo_header_sum(src, dst, protocol, l4.len())) == 0,
        };
    Parsed {
        src,
        dst,
        ttl: ip[8],
        protocol,
        sport,
        dport,
        ip_checksum_ok: internet_checksum(&ip[..IPV4_HLEN], 0) == 0,
        l4_checksum_ok,
        udp_checksum_zero,
    }
}

/// Sum of the IPv4 pseudo-header, for TCP/UDP checksums.
#[must_use]
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: usize) -> u32 {
    let words = |ip: Ipv4Addr| {
        let o = ip.octets();
        u32::from(u16::from_be_bytes([o[0], o[1]])) + u32::from(u16::from_be_bytes([o[2], o[3]]))
    };
    words(src) + words(dst) + u32::from(protocol) + l4_len as u32
}

fn ethernet_ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_HLEN + IPV4_HLEN + l4_len);
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination MAC
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source MAC
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (IPV4_HLEN + l4_len) as u16;
    let mut ip = [0u8; IPV4_HLEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = internet_checksum(&ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame
}

/// An Ethernet + IPv4 frame of any `protocol` carrying `payload` as is
/// (SCTP, GRE, ESP...: no port the NAT could translate).
#[must_use]
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = ethernet_ipv4_header(src, dst, protocol, payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// Recomputes the IPv4 header checksum of `frame` after an edit (over what
/// the frame has of the header, when it lies about its length).
pub fn fix_ip_checksum(frame: &mut [u8]) {
    let header_len = usize::from(frame[ETH_HLEN] & 0x0f) * 4;
    let end = (ETH_HLEN + header_len.max(IPV4_HLEN)).min(frame.len());
    let ip = &mut frame[ETH_HLEN..end];
    ip[10..12].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// `frame` with its TTL set to `ttl`.
#[must_use]
pub fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    frame[ETH_HLEN + 8] = ttl;
    fix_ip_checksum(&mut frame);
    frame
}

/// `frame` as one fragment: the IP flags and offset set (`offset` in 8-byte
/// units, `more`: more fragments follow); the payload is kept as is.
#[must_use]
pub fn as_fragment(mut frame: Vec<u8>, offset: u16, more: bool) -> Vec<u8> {
    let field = (offset & 0x1fff) | if more { 0x2000 } else { 0 };
    frame[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&field.to_be_bytes());
    fix_ip_checksum(&mut frame);
    frame
}

/// `frame` with a 4-byte IPv4 option (a router alert) inserted after the
/// fixed header.
#[must_use]
pub fn with_ip_option(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..ETH_HLEN + IPV4_HLEN].to_vec();
    out.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
    out.extend_from_slice(&frame[ETH_HLEN + IPV4_HLEN..]);
    out[ETH_HLEN] = 0x46;
    let total = u16::from_be_bytes([out[ETH_HLEN + 2], out[ETH_HLEN + 3]]) + 4;
    out[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut out);
    out
}

/// Frames from `src` to `dst` that the kernel's IP input (or its UDP/TCP
/// checks) would refuse, each with what is wrong: a bad IPv4 header
/// checksum, TCP data offsets 0, 4 and 15, UDP lengths 0, 4 and 400. Every
/// other field, and every other checksum, is valid.
#[must_use]
pub fn malformed(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<(String, Vec<u8>)> {
    let udp = udp((src, 40300), (dst, 5300), b"malformed");
    let tcp = tcp((src, 40301), (dst, 5301), 0x02, b"");
    let mut cases = Vec::new();
    let mut bad_sum = udp.clone();
    bad_sum[ETH_HLEN + 10] ^= 0x5a;
    cases.push(("a bad IPv4 header checksum".to_owned(), bad_sum));
    for offset in [0u8, 4, 15] {
        let mut frame = tcp.clone();
        frame[ETH_HLEN + IPV4_HLEN + 12] = offset << 4;
        cases.push((format!("TCP data offset {offset}"), frame));
    }
    for length in [0u16, 4, 400] {
        let mut frame = udp.clone();
        let at = ETH_HLEN + IPV4_HLEN + 4;
        frame[at..at + 2].copy_from_slice(&length.to_be_bytes());
        cases.push((format!("UDP length {length}"), frame));
    }
    cases
}

/// `frame` with an 802.1Q tag for VLAN `id` after its MACs.
#[must_use]
pub fn vlan_tagged(frame: &[u8], id: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&0x8100u16.to_be_bytes());
    out.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}
