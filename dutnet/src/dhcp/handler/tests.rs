//! RFC 2131 cases against the pure handler: no sockets, a fixed clock.

use std::time::Duration;

use dhcproto::Encodable;
use proptest::prelude::*;

use super::*;
use crate::dhcp::leases::DECLINE_QUARANTINE;
use crate::dhcp::testutil::{client_message, config};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 50, last)
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn msg(ty: MessageType, mac: [u8; 6]) -> Message {
    client_message(0x1234, ty, mac)
}

fn with(mut m: Message, opt: DhcpOption) -> Message {
    m.opts_mut().insert(opt);
    m
}

fn discover(mac: [u8; 6]) -> Message {
    msg(MessageType::Discover, mac)
}

fn select(mac: [u8; 6], addr: Ipv4Addr, server: Ipv4Addr) -> Message {
    with(
        with(
            msg(MessageType::Request, mac),
            DhcpOption::RequestedIpAddress(addr),
        ),
        DhcpOption::ServerIdentifier(server),
    )
}

fn init_reboot(mac: [u8; 6], addr: Ipv4Addr) -> Message {
    with(
        msg(MessageType::Request, mac),
        DhcpOption::RequestedIpAddress(addr),
    )
}

fn renew(mac: [u8; 6], ciaddr: Ipv4Addr) -> Message {
    let mut m = msg(MessageType::Request, mac);
    m.set_ciaddr(ciaddr);
    m
}

struct Fixture {
    state: LeaseState,
    config: DhcpConfig,
}

impl Fixture {
    fn new() -> Self {
        let config = config();
        Fixture {
            state: LeaseState::new(&config, vec![], t0()),
            config,
        }
    }

    fn run(&mut self, m: &Message) -> Action {
        self.run_at(m, t0())
    }

    fn run_at(&mut self, m: &Message, now: SystemTime) -> Action {
        // Every message goes through the wire, as in the server.
        let parsed = parse(&m.to_vec().unwrap()).unwrap();
        handle(&parsed, now, &mut self.state, &self.config)
    }

    /// DISCOVER + REQUEST; returns the bound address.
    fn bind(&mut self, mac: [u8; 6]) -> Ipv4Addr {
        let offered = reply(&self.run(&discover(mac)), ReplyKind::Offer).yiaddr();
        let ack = self.run(&select(mac, offered, SERVER));
        assert_eq!(reply(&ack, ReplyKind::Ack).yiaddr(), offered);
        offered
    }
}

#[track_caller]
fn reply(action: &Action, want: ReplyKind) -> &Message {
    match action {
        Action::Reply { msg, kind, .. } if *kind == want => msg,
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

#[track_caller]
fn no_reply(action: &Action) -> NoReplyReason {
    match action {
        Action::NoReply { reason, .. } => *reason,
        other => panic!("expected no reply, got {other:?}"),
    }
}

fn destination(action: &Action) -> Destination {
    match action {
        Action::Reply { destination, .. } => *destination,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn offer_carries_all_options() {
    let mut f = Fixture::new();
    let action = f.run(&discover(mac(1)));
    let m = reply(&action, ReplyKind::Offer);
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(m.xid(), 0x1234);
    assert_eq!(m.chaddr(), &mac(1));
    assert_eq!(m.yiaddr(), ip(100));
    let o = m.opts();
    assert_eq!(o.msg_type(), Some(MessageType::Offer));
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![SERVER]))
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![SERVER]))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("lab.test".into()))
    );
    assert_eq!(
        o.get(OptionCode::BroadcastAddr),
        Some(&DhcpOption::BroadcastAddr(ip(255)))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(
        o.get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert!(o.get(OptionCode::Hostname).is_none());
    // An offer changes no binding: nothing to persist.
    assert!(!action.persist());
}

#[test]
fn no_domain_option_when_unset() {
    let mut f = Fixture::new();
    f.config.domain = None;
    let action = f.run(&discover(mac(1)));
    assert!(
        reply(&action, ReplyKind::Offer)
            .opts()
            .get(OptionCode::DomainName)
            .is_none()
    );
}

#[test]
fn destinations_follow_rfc2131_4_1() {
    let mut f = Fixture::new();
    // Flag clear, no ciaddr: unicast to yiaddr via an ARP entry.
    let a = f.run(&discover(mac(1)));
    assert_eq!(
        destination(&a),
        Destination::UnicastNoArp {
            ip: ip(100),
            mac: mac(1)
        }
    );
    // Broadcast flag set.
    let mut d = discover(mac(2));
    d.set_flags(Flags::default().set_broadcast());
    let a = f.run(&d);
    assert_eq!(destination(&a), Destination::Broadcast);
    assert!(reply(&a, ReplyKind::Offer).flags().broadcast());
    // ciaddr set (RENEWING): unicast to ciaddr.
    let bound = f.bind(mac(3));
    let a = f.run(&renew(mac(3), bound));
    assert_eq!(destination(&a), Destination::Unicast(bound));
}

#[test]
fn sequential_allocation_and_offer_reservation() {
    let mut f = Fixture::new();
    let a = reply(&f.run(&discover(mac(1))), ReplyKind::Offer).yiaddr();
    let b = reply(&f.run(&discover(mac(2))), ReplyKind::Offer).yiaddr();
    let c = reply(&f.run(&discover(mac(3))), ReplyKind::Offer).yiaddr();
    // .101 is reserved in the test config.
    assert_eq!((a, b, c), (ip(100), ip(102), ip(103)));
    // A repeated DISCOVER gets the same offer back.
    assert_eq!(
        reply(&f.run(&discover(mac(1))), ReplyKind::Offer).yiaddr(),
        ip(100)
    );
}

#[test]
fn requested_address_honoured_when_free() {
    let mut f = Fixture::new();
    let d = with(discover(mac(1)), DhcpOption::RequestedIpAddress(ip(105)));
    assert_eq!(reply(&f.run(&d), ReplyKind::Offer).yiaddr(), ip(105));
    // Taken by an offer, reserved, outside the range, static: not honoured.
    for wanted in [ip(105), ip(101), ip(200), ip(10), SERVER] {
        let d = with(discover(mac(2)), DhcpOption::RequestedIpAddress(wanted));
        let got = reply(&f.run(&d), ReplyKind::Offer).yiaddr();
        assert_ne!(got, wanted);
        assert_eq!(got, ip(100));
    }
}

#[test]
fn existing_lease_returned() {
    let mut f = Fixture::new();
    f.bind(mac(1));
    let second = f.bind(mac(2));
    assert_eq!(second, ip(102));
    // Rebooted client comes back through DISCOVER: same address.
    assert_eq!(
        reply(&f.run(&discover(mac(2))), ReplyKind::Offer).yiaddr(),
        second
    );
}

#[test]
fn static_lease_by_mac_with_hostname() {
    let mut f = Fixture::new();
    let m = mac(0x99);
    let a = f.run(&discover(m));
    let offer = reply(&a, ReplyKind::Offer);
    assert_eq!(offer.yiaddr(), ip(10));
    assert_eq!(
        offer.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("board-a".into()))
    );
    let a = f.run(&with(
        select(m, ip(10), SERVER),
        DhcpOption::Hostname("whatever".into()),
    ));
    let ack = reply(&a, ReplyKind::Ack);
    assert_eq!(
        ack.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("board-a".into()))
    );
    let leases = f.state.leases();
    assert_eq!(leases.len(), 1);
    assert!(leases[0].is_static);
    assert_eq!(leases[0].hostname.as_deref(), Some("board-a"));
    // A static client asking for another address is refused.
    reply(&f.run(&init_reboot(m, ip(100))), ReplyKind::Nak);
}

#[test]
fn client_hostname_and_id_recorded() {
    let mut f = Fixture::new();
    let id = vec![1, 2, 0, 0, 0, 0, 1];
    let d = with(discover(mac(1)), DhcpOption::ClientIdentifier(id.clone()));
    let offer = reply(&f.run(&d), ReplyKind::Offer).clone();
    // RFC 6842: the client identifier is echoed.
    assert_eq!(
        offer.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(id.clone()))
    );
    let r = with(
        with(
            select(mac(1), offer.yiaddr(), SERVER),
            DhcpOption::ClientIdentifier(id.clone()),
        ),
        DhcpOption::Hostname("dut-1".into()),
    );
    let a = f.run(&r);
    reply(&a, ReplyKind::Ack);
    assert!(a.persist(), "an ACK must be persisted before it is sent");
    let leases = f.state.leases();
    assert_eq!(leases[0].client_id, Some(id));
    assert_eq!(leases[0].hostname.as_deref(), Some("dut-1"));
    assert_eq!(leases[0].expires, t0() + Duration::from_secs(3600));
}

#[test]
fn unsafe_client_hostname_dropped() {
    let mut f = Fixture::new();
    let offered = reply(&f.run(&discover(mac(1))), ReplyKind::Offer).yiaddr();
    let r = with(
        select(mac(1), offered, SERVER),
        DhcpOption::Hostname("evil host\n1".into()),
    );
    reply(&f.run(&r), ReplyKind::Ack);
    assert_eq!(f.state.leases()[0].hostname, None);
}

#[test]
fn client_id_preferred_over_chaddr() {
    let mut f = Fixture::new();
    // Same NIC, two client identifiers (PXE firmware, then the OS).
    let pxe = DhcpOption::ClientIdentifier(vec![0xff, 1]);
    let os = DhcpOption::ClientIdentifier(vec![0xff, 2]);
    let a = reply(
        &f.run(&with(discover(mac(1)), pxe.clone())),
        ReplyKind::Offer,
    )
    .yiaddr();
    reply(
        &f.run(&with(select(mac(1), a, SERVER), pxe.clone())),
        ReplyKind::Ack,
    );
    let b = reply(
        &f.run(&with(discover(mac(1)), os.clone())),
        ReplyKind::Offer,
    )
    .yiaddr();
    assert_ne!(a, b);
    // The OS renewing the PXE address is refused: it is not its lease.
    let mut r = with(renew(mac(1), a), os);
    reply(&f.run(&r), ReplyKind::Nak);
    // ... while the PXE identity renews fine.
    r = with(renew(mac(1), a), pxe);
    reply(&f.run(&r), ReplyKind::Ack);
}

#[test]
fn selecting_for_another_server_is_ignored_and_frees_offer() {
    let mut f = Fixture::new();
    let offered = reply(&f.run(&discover(mac(1))), ReplyKind::Offer).yiaddr();
    let a = f.run(&select(mac(1), offered, Ipv4Addr::new(192, 168, 50, 2)));
    assert_eq!(no_reply(&a), NoReplyReason::OtherServer);
    // The reservation is gone: the next client gets that address.
    assert_eq!(
        reply(&f.run(&discover(mac(2))), ReplyKind::Offer).yiaddr(),
        offered
    );
}

#[test]
fn selecting_an_address_taken_by_another_client_is_naked() {
    let mut f = Fixture::new();
    let taken = f.bind(mac(1));
    let a = f.run(&select(mac(2), taken, SERVER));
    reply(&a, ReplyKind::Nak);
    assert_eq!(destination(&a), Destination::Broadcast);
    // Two different clients never hold the same address.
    assert_eq!(f.state.leases().len(), 1);
}

#[test]
fn nak_has_no_address_or_configuration() {
    let mut f = Fixture::new();
    let a = f.run(&init_reboot(mac(1), Ipv4Addr::new(10, 0, 0, 5)));
    let nak = reply(&a, ReplyKind::Nak);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        nak.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert!(nak.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(nak.opts().get(OptionCode::Router).is_none());
    assert_eq!(destination(&a), Destination::Broadcast);
}

#[test]
fn init_reboot_cases() {
    let mut f = Fixture::new();
    let mine = f.bind(mac(1));
    let theirs = f.bind(mac(2));
    // Own address: ACK.
    let a = f.run(&init_reboot(mac(1), mine));
    assert_eq!(reply(&a, ReplyKind::Ack).yiaddr(), mine);
    // Wrong subnet (moved from another lab network): NAK.
    reply(
        &f.run(&init_reboot(mac(1), Ipv4Addr::new(10, 1, 2, 3))),
        ReplyKind::Nak,
    );
    // Another client's address: NAK.
    reply(&f.run(&init_reboot(mac(1), theirs)), ReplyKind::Nak);
    // A free address, but the client holds another one: NAK.
    reply(&f.run(&init_reboot(mac(1), ip(107))), ReplyKind::Nak);
    // Unknown client asking for a free in-range address (lease file lost):
    // authoritative ACK.
    let a = f.run(&init_reboot(mac(3), ip(107)));
    assert_eq!(reply(&a, ReplyKind::Ack).yiaddr(), ip(107));
    // Unknown client asking for a reserved address: NAK.
    reply(&f.run(&init_reboot(mac(4), ip(101))), ReplyKind::Nak);
}

#[test]
fn renewing_and_rebinding() {
    let mut f = Fixture::new();
    let bound = f.bind(mac(1));
    let later = t0() + Duration::from_secs(1800);
    // RENEWING: unicast, ciaddr set, extends the lease.
    let a = f.run_at(&renew(mac(1), bound), later);
    let ack = reply(&a, ReplyKind::Ack);
    assert_eq!(ack.yiaddr(), bound);
    assert_eq!(ack.ciaddr(), bound);
    assert!(a.persist());
    assert_eq!(
        f.state.leases()[0].expires,
        later + Duration::from_secs(3600)
    );
    // REBINDING: same, broadcast flag set; still answered at ciaddr.
    let mut r = renew(mac(1), bound);
    r.set_flags(Flags::default().set_broadcast());
    let a = f.run_at(&r, later);
    reply(&a, ReplyKind::Ack);
    assert_eq!(destination(&a), Destination::Unicast(bound));
    // Renewing someone else's address: NAK.
    let other = f.bind(mac(2));
    reply(&f.run_at(&renew(mac(1), other), later), ReplyKind::Nak);
    // Renewing a foreign-subnet address: NAK.
    reply(
        &f.run_at(&renew(mac(1), Ipv4Addr::new(10, 0, 0, 9)), later),
        ReplyKind::Nak,
    );
}

#[test]
fn decline_quarantines() {
    let mut f = Fixture::new();
    let bound = f.bind(mac(1));
    let d = with(
        with(
            msg(MessageType::Decline, mac(1)),
            DhcpOption::RequestedIpAddress(bound),
        ),
        DhcpOption::ServerIdentifier(SERVER),
    );
    let a = f.run(&d);
    assert_eq!(no_reply(&a), NoReplyReason::Declined);
    assert!(a.persist());
    assert!(f.state.leases().is_empty());
    assert!(f.state.is_quarantined(bound, t0()));
    // Neither this client nor another gets it during quarantine.
    assert_ne!(
        reply(&f.run(&discover(mac(1))), ReplyKind::Offer).yiaddr(),
        bound
    );
    assert_ne!(
        reply(&f.run(&discover(mac(2))), ReplyKind::Offer).yiaddr(),
        bound
    );
    // ... but after it.
    let after = t0() + DECLINE_QUARANTINE + Duration::from_secs(31);
    assert_eq!(
        reply(&f.run_at(&discover(mac(3)), after), ReplyKind::Offer).yiaddr(),
        bound
    );
}

#[test]
fn decline_for_other_server_ignored() {
    let mut f = Fixture::new();
    let d = with(
        with(
            msg(MessageType::Decline, mac(1)),
            DhcpOption::RequestedIpAddress(ip(100)),
        ),
        DhcpOption::ServerIdentifier(ip(2)),
    );
    assert_eq!(no_reply(&f.run(&d)), NoReplyReason::OtherServer);
    assert!(!f.state.is_quarantined(ip(100), t0()));
}

#[test]
fn release_frees_the_address() {
    let mut f = Fixture::new();
    let bound = f.bind(mac(1));
    // Someone else's release does nothing.
    let mut r = msg(MessageType::Release, mac(2));
    r.set_ciaddr(bound);
    assert_eq!(no_reply(&f.run(&r)), NoReplyReason::UnknownRelease);
    assert_eq!(f.state.leases().len(), 1);
    let mut r = msg(MessageType::Release, mac(1));
    r.set_ciaddr(bound);
    let a = f.run(&r);
    assert_eq!(no_reply(&a), NoReplyReason::Released);
    assert!(a.persist());
    assert!(f.state.leases().is_empty());
    assert_eq!(
        reply(&f.run(&discover(mac(2))), ReplyKind::Offer).yiaddr(),
        bound
    );
}

#[test]
fn inform_gets_options_without_lease() {
    let mut f = Fixture::new();
    let mut m = msg(MessageType::Inform, mac(1));
    m.set_ciaddr(ip(50));
    let a = f.run(&m);
    let ack = reply(&a, ReplyKind::InformAck);
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(ack.opts().get(OptionCode::Renewal).is_none());
    assert_eq!(
        ack.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![SERVER]))
    );
    assert_eq!(destination(&a), Destination::Unicast(ip(50)));
    assert!(f.state.leases().is_empty());
}

#[test]
fn expired_lease_reclaimed() {
    let mut f = Fixture::new();
    f.config.range_end = ip(100);
    let bound = f.bind(mac(1));
    assert_eq!(
        no_reply(&f.run(&discover(mac(2)))),
        NoReplyReason::Exhausted
    );
    let after = t0() + Duration::from_secs(3601);
    let a = f.run_at(&discover(mac(2)), after);
    assert_eq!(reply(&a, ReplyKind::Offer).yiaddr(), bound);
    assert!(a.persist(), "the reclaimed lease must leave the file");
}

#[test]
fn exhaustion_means_no_offer() {
    let mut f = Fixture::new();
    f.config.range_start = ip(100);
    f.config.range_end = ip(102);
    f.bind(mac(1));
    f.bind(mac(2));
    assert_eq!(
        no_reply(&f.run(&discover(mac(3)))),
        NoReplyReason::Exhausted
    );
    // A pending offer does not: the next DISCOVER takes its address when
    // nothing else is free, and the first REQUEST wins it.
    f.config.range_end = ip(103);
    let first = reply(&f.run(&discover(mac(3))), ReplyKind::Offer).yiaddr();
    let second = reply(&f.run(&discover(mac(4))), ReplyKind::Offer).yiaddr();
    assert_eq!(first, second);
}

#[test]
fn unexpected_types_and_bad_headers() {
    let mut f = Fixture::new();
    for ty in [
        MessageType::Offer,
        MessageType::Ack,
        MessageType::Nak,
        MessageType::Unknown(200),
    ] {
        let r = no_reply(&f.run(&msg(ty, mac(1))));
        assert!(
            matches!(r, NoReplyReason::UnexpectedMessageType { .. }),
            "{ty:?}: {r:?}"
        );
        assert!(r.is_malformed());
    }
    let mut m = discover(mac(1));
    m.opts_mut().remove(OptionCode::MessageType);
    assert_eq!(no_reply(&f.run(&m)), NoReplyReason::NoMessageType);
    let m = discover([0xff; 6]);
    assert_eq!(no_reply(&f.run(&m)), NoReplyReason::BadChaddr);
    let mut m = discover(mac(1));
    m.set_chaddr(&[1, 2, 3, 4]);
    assert!(matches!(
        no_reply(&f.run(&m)),
        NoReplyReason::UnsupportedHardware { hlen: 4, .. }
    ));
    let mut m = discover(mac(1));
    m.set_htype(HType::from(6u8));
    assert!(matches!(
        no_reply(&f.run(&m)),
        NoReplyReason::UnsupportedHardware { htype: 6, .. }
    ));
    let mut m = discover(mac(1));
    m.set_giaddr(ip(9));
    assert_eq!(no_reply(&f.run(&m)), NoReplyReason::Relayed);
}

fn valid_bytes() -> Vec<u8> {
    with(
        discover(mac(1)),
        DhcpOption::ClientIdentifier(vec![1, 2, 3]),
    )
    .to_vec()
    .unwrap()
}

#[test]
fn parse_rejects_bad_wire_input() {
    let good = valid_bytes();
    parse(&good).unwrap();
    assert_eq!(
        parse(&good[..100]),
        Err(NoReplyReason::Truncated { len: 100 })
    );
    // Pad (option 0) up to the limit still parses; one byte more does not,
    // even though its prefix is a well-formed DISCOVER.
    let mut b = good.clone();
    b.resize(MAX_MESSAGE_LEN, 0);
    parse(&b).unwrap();
    b.push(0);
    assert_eq!(
        parse(&b),
        Err(NoReplyReason::Oversized {
            len: MAX_MESSAGE_LEN + 1
        })
    );
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(parse(&b), Err(NoReplyReason::NotBootRequest));
    let mut b = good.clone();
    b[236] = 0;
    assert_eq!(parse(&b), Err(NoReplyReason::BadMagicCookie));
    // An option whose length runs past the packet.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 61, 200, 1, 2]);
    assert_eq!(parse(&b), Err(NoReplyReason::BadOption { code: 61 }));
    // A message type of the wrong length.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 2, 1, 1, 255]);
    assert_eq!(parse(&b), Err(NoReplyReason::BadOption { code: 53 }));
    // A length byte missing at the very end.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 12]);
    assert_eq!(parse(&b), Err(NoReplyReason::BadOption { code: 12 }));
    // A non-UTF-8 hostname is ignored, the request still served.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[12, 2, 0xff, 0xfe, 53, 1, 1, 255]);
    let m = parse(&b).unwrap();
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    assert!(m.opts().get(OptionCode::Hostname).is_none());
    // An option dhcproto cannot decode (FQDN with a bad name) before the
    // message type does not hide it.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[81, 4, 0, 0, 0, 63, 53, 1, 1, 255]);
    assert_eq!(
        parse(&b).unwrap().opts().msg_type(),
        Some(MessageType::Discover)
    );
    // RFC 3396: a client identifier split in two instances is joined.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[61, 2, 1, 2, 53, 1, 1, 61, 1, 3, 255]);
    assert_eq!(
        parse(&b).unwrap().opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(vec![1, 2, 3]))
    );
    // No End option but everything fits: accepted.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1]);
    assert_eq!(
        parse(&b).unwrap().opts().msg_type(),
        Some(MessageType::Discover)
    );
}

fn run_any(bytes: &[u8]) {
    let config = config();
    let mut state = LeaseState::new(&config, vec![], t0());
    if let Ok(m) = parse(bytes) {
        let _ = handle(&m, t0(), &mut state, &config);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// handle() on messages that never went through parse().
    #[test]
    fn arbitrary_messages_never_panic(
        op in any::<u8>(),
        htype in any::<u8>(),
        chaddr in proptest::collection::vec(any::<u8>(), 0..=16),
        flags in any::<u16>(),
        ciaddr in any::<u32>(),
        giaddr in any::<u32>(),
        ty in any::<u8>(),
        requested in proptest::option::of(any::<u32>()),
        server in proptest::option::of(prop_oneof![Just(u32::from(SERVER)), any::<u32>()]),
        client_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        hostname in proptest::option::of(".{0,20}"),
        steps in 1usize..6,
    ) {
        let config = config();
        let mut state = LeaseState::new(&config, vec![], t0());
        let mut m = Message::default();
        m.set_opcode(Opcode::from(op))
            .set_htype(HType::from(htype))
            .set_chaddr(&chaddr)
            .set_flags(Flags::new(flags))
            .set_ciaddr(Ipv4Addr::from(ciaddr))
            .set_giaddr(Ipv4Addr::from(giaddr));
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::from(ty)));
        if let Some(r) = requested { o.insert(DhcpOption::RequestedIpAddress(r.into())); }
        if let Some(s) = server { o.insert(DhcpOption::ServerIdentifier(s.into())); }
        if let Some(id) = client_id { o.insert(DhcpOption::ClientIdentifier(id)); }
        if let Some(h) = hostname { o.insert(DhcpOption::Hostname(h)); }
        for step in 0..steps {
            let now = t0() + Duration::from_secs(step as u64 * 1000);
            let _ = handle(&m, now, &mut state, &config);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        run_any(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic(
        ty in 1u8..=18,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let base = with(
            with(
                with(select(mac(1), ip(100), SERVER), DhcpOption::ClientIdentifier(vec![1, 2, 3])),
                DhcpOption::Hostname("dut".into()),
            ),
            DhcpOption::MessageType(MessageType::from(ty)),
        );
        let mut bytes = base.to_vec().unwrap();
        bytes.extend_from_slice(&extra);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        run_any(&bytes);
        run_any(&bytes[..cut.index(bytes.len() + 1)]);
    }
}

mod boot_options {
    use super::*;
    use crate::dhcp::options::{BootRule, CustomOption, DhcpOptions, OptionValue};

    const STATIC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
    const TFTP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 5);

    fn boot_fixture() -> Fixture {
        let mut f = Fixture::new();
        f.config.options = DhcpOptions {
            next_server: Some(TFTP),
            boot_file: Some("pxelinux.0".into()),
            mtu: Some(1400),
            custom: vec![CustomOption {
                code: 224,
                value: OptionValue::String("lab".into()),
            }],
            boot_rules: vec![BootRule {
                arch: Some(7),
                vendor_class: None,
                user_class: None,
                boot_file: "grubx64.efi".into(),
                next_server: None,
            }],
            ..DhcpOptions::default()
        };
        f.config.static_leases[0].options = DhcpOptions {
            boot_file: Some("board-a/u-boot.scr".into()),
            ..DhcpOptions::default()
        };
        f.state = LeaseState::new(&f.config, vec![], t0());
        f
    }

    fn asking(m: Message, codes: &[u8]) -> Message {
        with(
            m,
            DhcpOption::ParameterRequestList(codes.iter().map(|c| OptionCode::from(*c)).collect()),
        )
    }

    fn file(m: &Message) -> Option<&[u8]> {
        m.fname()
    }

    #[test]
    fn siaddr_and_file_always_options_only_when_asked() {
        let mut f = boot_fixture();
        let action = f.run(&asking(discover(mac(1)), &[1, 3, 6]));
        let m = reply(&action, ReplyKind::Offer);
        assert_eq!(m.siaddr(), TFTP);
        assert_eq!(file(m), Some(&b"pxelinux.0"[..]));
        assert!(m.opts().get(OptionCode::BootfileName).is_none());
        assert!(m.opts().get(OptionCode::InterfaceMtu).is_none());
        assert!(m.opts().get(OptionCode::from(224)).is_none());

        let action = f.run(&asking(discover(mac(2)), &[1, 26, 67, 224]));
        let m = reply(&action, ReplyKind::Offer);
        assert_eq!(
            m.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"pxelinux.0".to_vec()))
        );
        assert_eq!(
            m.opts().get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1400))
        );
        // Through the wire and back: option 224 carries the string.
        let bytes = m.to_vec().unwrap();
        let needle = [224u8, 3, b'l', b'a', b'b'];
        assert!(bytes.windows(5).any(|w| w == needle));
    }

    #[test]
    fn no_request_list_gets_everything_configured() {
        let mut f = boot_fixture();
        let action = f.run(&discover(mac(1)));
        let m = reply(&action, ReplyKind::Offer);
        assert!(m.opts().get(OptionCode::InterfaceMtu).is_some());
        assert!(m.opts().get(OptionCode::BootfileName).is_some());
    }

    #[test]
    fn uefi_client_gets_the_uefi_file() {
        let mut f = boot_fixture();
        let uefi = with(
            discover(mac(1)),
            DhcpOption::ClientSystemArchitecture(7u16.into()),
        );
        let m = reply(&f.run(&uefi), ReplyKind::Offer).clone();
        assert_eq!(file(&m), Some(&b"grubx64.efi"[..]));
        let bios = with(
            discover(mac(2)),
            DhcpOption::ClientSystemArchitecture(0u16.into()),
        );
        let m = reply(&f.run(&bios), ReplyKind::Offer).clone();
        assert_eq!(file(&m), Some(&b"pxelinux.0"[..]));
    }

    #[test]
    fn dut_override_wins_in_offer_ack_and_inform() {
        let mut f = boot_fixture();
        let offer = reply(&f.run(&discover(STATIC_MAC)), ReplyKind::Offer).clone();
        assert_eq!(file(&offer), Some(&b"board-a/u-boot.scr"[..]));
        // The network's other values still apply.
        assert_eq!(offer.siaddr(), TFTP);
        let ack = f.run(&select(STATIC_MAC, offer.yiaddr(), SERVER));
        assert_eq!(
            file(reply(&ack, ReplyKind::Ack)),
            Some(&b"board-a/u-boot.scr"[..])
        );
        let mut inform = msg(MessageType::Inform, STATIC_MAC);
        inform.set_ciaddr(offer.yiaddr());
        let m = reply(&f.run(&inform), ReplyKind::InformAck).clone();
        assert_eq!(file(&m), Some(&b"board-a/u-boot.scr"[..]));
        assert!(m.opts().get(OptionCode::Hostname).is_none());
    }

    #[test]
    fn boot_file_without_next_server_points_at_the_gateway() {
        let mut f = boot_fixture();
        f.config.options.next_server = None;
        let m = reply(&f.run(&discover(mac(1))), ReplyKind::Offer).clone();
        assert_eq!(m.siaddr(), SERVER);
    }

    #[test]
    fn multi_arch_and_empty_boot_hints_still_parse() {
        let mut m = discover(mac(1)).to_vec().unwrap();
        // Replace the end option by 93 (two architectures), empty 60 and 77.
        m.pop();
        m.extend_from_slice(&[93, 4, 0, 7, 0, 0, 60, 0, 77, 0, 55, 0, 255]);
        let parsed = parse(&m).unwrap();
        let facts = ClientFacts::of(&parsed);
        assert_eq!(facts.arch, Some(7));
        assert_eq!(facts.vendor_class, None);
        assert_eq!(facts.requested, None);
    }
}
