//! The pure DHCPv4 logic (RFC 2131): bytes to [`Message`] in [`parse`],
//! [`Message`] to [`Action`] in [`handle`]. No sockets, no clock, no files:
//! the server loop does those.

use std::net::Ipv4Addr;
use std::time::SystemTime;

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder};

use super::leases::{Client, LeaseState};
use super::options::ClientFacts;
use super::{DhcpConfig, StaticLease};

/// The fixed BOOTP header before the magic cookie (RFC 2131 figure 1).
const HEADER_LEN: usize = 236;
/// RFC 2131 3: 99.130.83.99.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The longest request served. A DUT behind a 1500-byte MTU NIC sends at
/// most 1472 bytes (576 is the RFC 2131 minimum); this leaves room for jumbo
/// frames. The server reads one byte more, so a longer datagram is seen as
/// such instead of silently truncated into something that parses.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Where a reply goes (RFC 2131 4.1, giaddr always 0 here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 out of the bound device.
    Broadcast,
    /// ciaddr:68: the client has a configured address (RENEWING, INFORM).
    Unicast(Ipv4Addr),
    /// yiaddr:68 to a client that has no address yet and did not ask for a
    /// broadcast: the caller installs an ARP entry `ip -> mac` first, since
    /// the client cannot answer ARP (falls back to broadcast if it can't).
    UnicastNoArp { ip: Ipv4Addr, mac: [u8; 6] },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Offer,
    Ack,
    Nak,
    /// The answer to an INFORM: options, no lease.
    InformAck,
}

/// Why a packet got no answer. [`NoReplyReason::is_malformed`] tells bad
/// input from deliberate silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReplyReason {
    /// Shorter than the fixed header plus the magic cookie.
    Truncated {
        len: usize,
    },
    /// Longer than [`MAX_MESSAGE_LEN`].
    Oversized {
        len: usize,
    },
    BadMagicCookie,
    /// A BOOTREPLY or unknown op: a server's packet, not a client's.
    NotBootRequest,
    /// Only Ethernet (htype 1, hlen 6) DUTs exist behind a DUT NIC.
    UnsupportedHardware {
        htype: u8,
        hlen: u8,
    },
    /// A zero, multicast or broadcast chaddr: nothing to bind or ARP to.
    BadChaddr,
    /// An option runs past the packet or has an impossible length.
    BadOption {
        code: u8,
    },
    /// dhcproto could not decode the packet.
    Undecodable,
    NoMessageType,
    /// OFFER/ACK/NAK/lease query/unknown: not for a server to answer.
    UnexpectedMessageType {
        code: u8,
    },
    /// A REQUEST (SELECTING) or DECLINE naming another server.
    OtherServer,
    /// giaddr set: relayed packets are not served (no relays on DUT networks).
    Relayed,
    /// A REQUEST or DECLINE without the address it is about.
    NoRequestedAddress,
    /// No free address for a DISCOVER.
    Exhausted,
    /// DECLINE handled: address quarantined.
    Declined,
    /// RELEASE handled.
    Released,
    /// RELEASE of an address this client does not hold.
    UnknownRelease,
}

impl NoReplyReason {
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            Self::Truncated { .. }
                | Self::Oversized { .. }
                | Self::BadMagicCookie
                | Self::NotBootRequest
                | Self::UnsupportedHardware { .. }
                | Self::BadChaddr
                | Self::BadOption { .. }
                | Self::Undecodable
                | Self::NoMessageType
                | Self::UnexpectedMessageType { .. }
        )
    }
}

/// What the server loop does with a request.
///
/// `persist` is the "write before you answer" contract: when set, the lease
/// table changed and the caller MUST write the lease file (and see the write
/// succeed) before sending the reply, so an ACKed lease survives a crash.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Reply {
        msg: Box<Message>,
        destination: Destination,
        kind: ReplyKind,
        persist: bool,
    },
    NoReply {
        reason: NoReplyReason,
        persist: bool,
    },
}

impl Action {
    pub fn persist(&self) -> bool {
        match self {
            Action::Reply { persist, .. } | Action::NoReply { persist, .. } => *persist,
        }
    }
}

/// The options the handler reads; [`parse`] hands only these to dhcproto.
const USED_OPTIONS: [u8; 10] = [
    53, // message type
    50, // requested IP address
    54, // server identifier
    61, // client identifier
    12, // hostname
    55, // parameter request list
    60, // vendor class identifier
    77, // user class
    93, // client system architecture
    57, // maximum DHCP message size
];

/// Decodes a datagram, checking what dhcproto does not: length, op, magic
/// cookie, and that every option fits in the packet.
///
/// Only the options in [`USED_OPTIONS`] reach dhcproto's decoder. Its
/// option decoder stops at the first option it cannot decode (so an odd
/// option 81 before option 53 would lose the message type) and some of its
/// decoders `debug_assert!` on lengths a client controls.
pub fn parse(bytes: &[u8]) -> Result<Message, NoReplyReason> {
    if bytes.len() < HEADER_LEN + MAGIC_COOKIE.len() {
        return Err(NoReplyReason::Truncated { len: bytes.len() });
    }
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(NoReplyReason::Oversized { len: bytes.len() });
    }
    if bytes[0] != 1 {
        return Err(NoReplyReason::NotBootRequest);
    }
    if bytes[HEADER_LEN..HEADER_LEN + 4] != MAGIC_COOKIE {
        return Err(NoReplyReason::BadMagicCookie);
    }
    // RFC 3396 lets an option be split into several instances that
    // concatenate: gather each used option's data across instances.
    let mut data: [Vec<u8>; USED_OPTIONS.len()] = Default::default();
    let mut present = [false; USED_OPTIONS.len()];
    let mut i = HEADER_LEN + 4;
    while i < bytes.len() {
        let code = bytes[i];
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let Some(&len) = bytes.get(i + 1) else {
                    return Err(NoReplyReason::BadOption { code });
                };
                let end = i + 2 + usize::from(len);
                let Some(value) = bytes.get(i + 2..end) else {
                    return Err(NoReplyReason::BadOption { code });
                };
                if let Some(k) = USED_OPTIONS.iter().position(|c| *c == code) {
                    present[k] = true;
                    data[k].extend_from_slice(value);
                }
                i = end;
            }
        }
    }
    let mut clean = bytes[..HEADER_LEN + 4].to_vec();
    let mut written = [false; USED_OPTIONS.len()];
    for (k, code) in USED_OPTIONS.iter().enumerate() {
        if !present[k] {
            continue;
        }
        let mut value = data[k].as_slice();
        match code {
            53 if value.len() != 1 => return Err(NoReplyReason::BadOption { code: *code }),
            50 | 54 if value.len() != 4 => return Err(NoReplyReason::BadOption { code: *code }),
            // A hostname is a nicety: a bad one is ignored, not fatal,
            // so the DUT still gets its address.
            12 if value.is_empty() || std::str::from_utf8(value).is_err() => continue,
            // Boot matching and the request list are niceties too.
            61 | 55 | 60 | 77 if value.is_empty() => continue,
            // RFC 4578 2.1 allows a list of architectures; dhcproto reads
            // exactly one, so keep the first (the client's preferred).
            93 if value.len() < 2 => continue,
            93 => value = &value[..2],
            // RFC 2132 9.10: two octets; anything else is ignored (576 holds).
            57 if value.len() != 2 => continue,
            _ => {}
        }
        written[k] = true;
        // Re-split into instances of at most 255 bytes (RFC 3396).
        for chunk in value.chunks(255) {
            clean.push(*code);
            clean.push(chunk.len() as u8);
            clean.extend_from_slice(chunk);
        }
    }
    clean.push(255);
    let msg = Message::decode(&mut Decoder::new(&clean)).map_err(|_| NoReplyReason::Undecodable)?;
    for (k, code) in USED_OPTIONS.iter().enumerate() {
        if written[k]
            && *code != 12
            && *code != 61
            && msg.opts().get(OptionCode::from(*code)).is_none()
        {
            return Err(NoReplyReason::BadOption { code: *code });
        }
    }
    Ok(msg)
}

/// The request's facts the RFC 2131 cases turn on.
struct Request<'a> {
    msg: &'a Message,
    client: Client,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    hostname: Option<String>,
}

/// Answers one request. Pure: all effects are in `state` and the returned
/// [`Action`]. Never panics on any `Message`, decoded from anything.
pub fn handle(
    request: &Message,
    now: SystemTime,
    state: &mut LeaseState,
    config: &DhcpConfig,
) -> Action {
    state.expire(now);
    let outcome = handle_inner(request, now, state, config);
    let persist = state.take_dirty();
    match outcome {
        Ok((msg, destination, kind)) => Action::Reply {
            msg: Box::new(msg),
            destination,
            kind,
            persist,
        },
        Err(reason) => Action::NoReply { reason, persist },
    }
}

type Outcome = Result<(Message, Destination, ReplyKind), NoReplyReason>;

fn handle_inner(
    msg: &Message,
    now: SystemTime,
    state: &mut LeaseState,
    config: &DhcpConfig,
) -> Outcome {
    if msg.opcode() != Opcode::BootRequest {
        return Err(NoReplyReason::NotBootRequest);
    }
    // hlen must be checked before `chaddr()`, which slices by it.
    if msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(NoReplyReason::UnsupportedHardware {
            htype: msg.htype().into(),
            hlen: msg.hlen(),
        });
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(msg.chaddr().get(..6).ok_or(NoReplyReason::BadChaddr)?);
    if mac == [0; 6] || mac[0] & 1 == 1 {
        return Err(NoReplyReason::BadChaddr);
    }
    let msg_type = msg.opts().msg_type().ok_or(NoReplyReason::NoMessageType)?;
    if !msg.giaddr().is_unspecified() {
        return Err(NoReplyReason::Relayed);
    }
    let client_id = match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => Some(id.clone()),
        _ => None,
    };
    let req = Request {
        msg,
        client: Client { mac, client_id },
        requested: match msg.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        },
        server_id: match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        },
        hostname: match msg.opts().get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) => sanitize_hostname(h),
            _ => None,
        },
    };
    match msg_type {
        MessageType::Discover => discover(&req, now, state, config),
        MessageType::Request => request(&req, now, state, config),
        MessageType::Decline => decline(&req, now, state, config),
        MessageType::Release => release(&req, state, config),
        MessageType::Inform => inform(&req, state, config),
        other => Err(NoReplyReason::UnexpectedMessageType {
            code: u8::from(other),
        }),
    }
}

/// RFC 2131 4.3.1.
fn discover(
    req: &Request<'_>,
    now: SystemTime,
    state: &mut LeaseState,
    config: &DhcpConfig,
) -> Outcome {
    let ip = state
        .choose(&req.client, req.requested, now, config)
        .ok_or(NoReplyReason::Exhausted)?;
    state.offer(&req.client, ip, now);
    let dut = state.static_for_mac(&req.client.mac);
    let reply = reply(req.msg, MessageType::Offer, ip, dut, true, config);
    Ok((reply, reply_destination(req.msg, ip), ReplyKind::Offer))
}

/// RFC 2131 4.3.2: SELECTING, INIT-REBOOT, RENEWING and REBINDING.
fn request(
    req: &Request<'_>,
    now: SystemTime,
    state: &mut LeaseState,
    config: &DhcpConfig,
) -> Outcome {
    let ciaddr = req.msg.ciaddr();
    let ip = match (req.server_id, req.requested) {
        // SELECTING: the client chose among offers.
        (Some(sid), _) if sid != config.server_ip => {
            state.withdraw_offer(&req.client);
            return Err(NoReplyReason::OtherServer);
        }
        (Some(_), Some(ip)) => ip,
        (Some(_), None) if !ciaddr.is_unspecified() => ciaddr,
        (Some(_), None) => return Err(NoReplyReason::NoRequestedAddress),
        // RENEWING (unicast) / REBINDING (broadcast): extending a lease.
        (None, _) if !ciaddr.is_unspecified() => ciaddr,
        // INIT-REBOOT: verifying a remembered address.
        (None, Some(ip)) => ip,
        (None, None) => return Err(NoReplyReason::NoRequestedAddress),
    };
    // INIT-REBOOT, RENEWING and REBINDING verify an address the client
    // believes it holds: if we know it holds another one, it is wrong.
    let verifying = req.server_id.is_none();
    let holds_other = state.binding_for(&req.client).is_some_and(|l| l.ip != ip);
    if !config.is_host_addr(ip)
        || !state.may_bind(&req.client, ip, now, config)
        || (verifying && holds_other)
    {
        // Wrong subnet (the DUT moved networks), someone else's address, or
        // not the address this client holds.
        return Ok((nak(req.msg, config), Destination::Broadcast, ReplyKind::Nak));
    }
    state.bind(
        &req.client,
        ip,
        req.hostname.clone(),
        now,
        config.lease_time,
    );
    let dut = state.static_for_mac(&req.client.mac);
    let reply = reply(req.msg, MessageType::Ack, ip, dut, true, config);
    Ok((reply, reply_destination(req.msg, ip), ReplyKind::Ack))
}

/// RFC 2131 4.3.3.
fn decline(
    req: &Request<'_>,
    now: SystemTime,
    state: &mut LeaseState,
    config: &DhcpConfig,
) -> Outcome {
    if req.server_id.is_some_and(|sid| sid != config.server_ip) {
        return Err(NoReplyReason::OtherServer);
    }
    let ip = req.requested.ok_or(NoReplyReason::NoRequestedAddress)?;
    if !config.is_host_addr(ip) {
        return Err(NoReplyReason::NoRequestedAddress);
    }
    state.decline(&req.client, ip, now);
    Err(NoReplyReason::Declined)
}

/// RFC 2131 4.3.4.
fn release(req: &Request<'_>, state: &mut LeaseState, config: &DhcpConfig) -> Outcome {
    if req.server_id.is_some_and(|sid| sid != config.server_ip) {
        return Err(NoReplyReason::OtherServer);
    }
    if state.release(&req.client, req.msg.ciaddr()) {
        Err(NoReplyReason::Released)
    } else {
        Err(NoReplyReason::UnknownRelease)
    }
}

/// RFC 2131 4.3.5: options only, no yiaddr, no lease time.
/// A known DUT still gets its own boot options, not its host name.
fn inform(req: &Request<'_>, state: &LeaseState, config: &DhcpConfig) -> Outcome {
    let dut = state.static_for_mac(&req.client.mac);
    let mut reply = reply(
        req.msg,
        MessageType::Ack,
        Ipv4Addr::UNSPECIFIED,
        dut,
        false,
        config,
    );
    if dut.is_some_and(|d| d.hostname.is_some()) {
        reply.opts_mut().remove(OptionCode::Hostname);
    }
    reply.set_yiaddr(Ipv4Addr::UNSPECIFIED);
    let ciaddr = req.msg.ciaddr();
    let destination = if ciaddr.is_unspecified() || req.msg.flags().broadcast() {
        Destination::Broadcast
    } else {
        Destination::Unicast(ciaddr)
    };
    Ok((reply, destination, ReplyKind::InformAck))
}

/// RFC 2131 4.1 with giaddr 0: ciaddr if the client has one, broadcast if
/// it asked, else unicast to the new address via a static ARP entry.
fn reply_destination(request: &Message, yiaddr: Ipv4Addr) -> Destination {
    let ciaddr = request.ciaddr();
    if !ciaddr.is_unspecified() {
        Destination::Unicast(ciaddr)
    } else if request.flags().broadcast() {
        Destination::Broadcast
    } else {
        let mut mac = [0u8; 6];
        // The handler checked hlen == 6 before getting here.
        if let Some(c) = request.chaddr().get(..6) {
            mac.copy_from_slice(c);
        }
        Destination::UnicastNoArp { ip: yiaddr, mac }
    }
}

/// The BOOTREPLY skeleton (RFC 2131 table 3): xid, flags, ciaddr, giaddr
/// and chaddr copied; client identifier echoed (RFC 6842).
fn skeleton(request: &Message, msg_type: MessageType, config: &DhcpConfig) -> Message {
    let mut reply = Message::default();
    reply
        .set_opcode(Opcode::BootReply)
        .set_htype(request.htype())
        .set_chaddr(request.chaddr())
        .set_xid(request.xid())
        .set_flags(request.flags())
        .set_giaddr(request.giaddr());
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(msg_type));
    opts.insert(DhcpOption::ServerIdentifier(config.server_ip));
    if let Some(id @ DhcpOption::ClientIdentifier(_)) =
        request.opts().get(OptionCode::ClientIdentifier)
    {
        opts.insert(id.clone());
    }
    reply
}

/// A configured reply. `dut`: the client's static lease, whose host name
/// and options it gets.
fn reply(
    request: &Message,
    msg_type: MessageType,
    yiaddr: Ipv4Addr,
    dut: Option<&StaticLease>,
    with_lease: bool,
    config: &DhcpConfig,
) -> Message {
    let hostname = dut.and_then(|d| d.hostname.as_deref());
    let mut reply = skeleton(request, msg_type, config);
    reply.set_yiaddr(yiaddr);
    if msg_type == MessageType::Ack {
        // RFC 2131 table 3: ciaddr of the request in an ACK.
        reply.set_ciaddr(request.ciaddr());
    }
    let net = config.subnet.trunc();
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::SubnetMask(net.netmask()));
    opts.insert(DhcpOption::Router(vec![config.server_ip]));
    opts.insert(DhcpOption::DomainNameServer(vec![config.server_ip]));
    opts.insert(DhcpOption::BroadcastAddr(net.broadcast()));
    if let Some(domain) = &config.domain {
        opts.insert(DhcpOption::DomainName(domain.clone()));
    }
    if let Some(h) = hostname {
        opts.insert(DhcpOption::Hostname(h.to_owned()));
    }
    if with_lease {
        // validate() bounds lease_time to u32 seconds; saturate regardless.
        let secs = u32::try_from(config.lease_time.as_secs()).unwrap_or(u32::MAX);
        opts.insert(DhcpOption::AddressLeaseTime(secs));
        // RFC 2131 4.4.5 defaults: T1 = 0.5, T2 = 0.875 of the lease.
        opts.insert(DhcpOption::Renewal(secs / 2));
        opts.insert(DhcpOption::Rebinding((u64::from(secs) * 7 / 8) as u32));
    }
    let client = ClientFacts::of(request);
    match dut.filter(|d| !d.options.is_empty()) {
        Some(d) => d
            .options
            .overlay(&config.options)
            .apply(&mut reply, &client, config.server_ip),
        None => config.options.apply(&mut reply, &client, config.server_ip),
    }
    reply
}

/// RFC 2131 table 3: a NAK carries no address and no configuration.
fn nak(request: &Message, config: &DhcpConfig) -> Message {
    let mut reply = skeleton(request, MessageType::Nak, config);
    // The client sees why in its logs.
    reply.opts_mut().insert(DhcpOption::Message(
        "address not valid on this network".into(),
    ));
    // RFC 2131 4.3.2: broadcast the NAK, the client may have a wrong address.
    reply.set_flags(Flags::default().set_broadcast());
    reply
}

/// A client-sent hostname goes to the lease file and to DNS: keep it only
/// if it is a plausible DNS name (letters, digits, '-', '_', '.').
fn sanitize_hostname(h: &str) -> Option<String> {
    let h = h.trim_end_matches('\0').trim_end_matches('.');
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| h.to_owned())
}

#[cfg(test)]
mod tests;
