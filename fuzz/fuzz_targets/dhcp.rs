//! The DHCP server's decision, message by message: the input is a sequence
//! of datagrams (each led by a 2-byte length) answered against one lease
//! store, so a DISCOVER, REQUEST, RELEASE or DECLINE can meet the state an
//! earlier one left. Checked on every reply: it encodes and decodes again,
//! an OFFER or ACK hands out an address of the subnet (never the gateway,
//! the network or the broadcast address), and no address is leased twice.
#![no_main]

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use dhcproto::{Decodable as _, Decoder, Encodable as _};
use dutnet::dhcp::{self, Action, DhcpConfig, DhcpOptions, LeaseState, ReplyKind, StaticLease};
use libfuzzer_sys::fuzz_target;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);

fn config() -> DhcpConfig {
    DhcpConfig {
        network: "fuzz".into(),
        interface: "dn-fuzz".into(),
        subnet: "192.168.100.0/24".parse().unwrap(),
        server_ip: GATEWAY,
        range_start: Ipv4Addr::new(192, 168, 100, 100),
        // A small pool: exhaustion is reachable.
        range_end: Ipv4Addr::new(192, 168, 100, 104),
        lease_time: Duration::from_secs(3600),
        domain: Some("lab".into()),
        static_leases: vec![StaticLease {
            mac: [0x02, 0, 0, 0, 0, 0x10],
            ip: Ipv4Addr::new(192, 168, 100, 10),
            hostname: Some("board1".into()),
            options: DhcpOptions::default(),
        }],
        reserved: vec![Ipv4Addr::new(192, 168, 100, 20)],
        lease_file: PathBuf::from("/nonexistent/fuzz.leases"),
        options: DhcpOptions::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut state = LeaseState::new(&config, Vec::new(), start);
    let mut rest = data;
    for step in 0u64..16 {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        let Ok(request) = dhcp::parse(datagram) else {
            continue;
        };
        // Time moves: leases and offers expire between some messages.
        let now = start + Duration::from_secs(step * 700);
        if let Action::Reply { msg, kind, .. } = dhcp::handle(&request, now, &mut state, &config) {
            let bytes = msg.to_vec().expect("a reply always encodes");
            dhcproto::v4::Message::decode(&mut Decoder::new(&bytes))
                .expect("an encoded reply decodes again");
            if matches!(kind, ReplyKind::Offer | ReplyKind::Ack) {
                let ip = msg.yiaddr();
                assert!(
                    config.subnet.contains(&ip)
                        && ip != GATEWAY
                        && ip != config.subnet.network()
                        && ip != config.subnet.broadcast(),
                    "{kind:?} of {ip}"
                );
            }
        }
        let leases = state.leases();
        let distinct: HashSet<Ipv4Addr> = leases.iter().map(|l| l.ip).collect();
        assert_eq!(
            distinct.len(),
            leases.len(),
            "an address leased twice: {leases:?}"
        );
    }
});
