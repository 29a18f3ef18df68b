//! The DNS server's decision for one datagram: classified, answered from a
//! zone or forwarded, and encoded within the client's UDP limit. The input
//! is the query, then (after a 2-byte length) what the upstream answers to
//! a forwarded one. Checked: every reply encodes within the limit (or
//! truncated), and a reply never claims to be a query.
#![no_main]

use std::net::Ipv4Addr;

use dutnet::dns::{
    handler::{self, Inbound, LocalAnswer},
    zone::Zone,
};
use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;

fn zone() -> Zone {
    let mut zone = Zone::new(Some("lab")).unwrap();
    zone.upsert_entry("controller.lab.local", Ipv4Addr::new(10, 0, 0, 1))
        .unwrap();
    zone.set_static_hosts(vec![("board1".into(), Ipv4Addr::new(192, 168, 100, 10))]);
    zone.set_dynamic_hosts(vec![("dut-7".into(), Ipv4Addr::new(192, 168, 100, 107))]);
    zone
}

fn check(reply: &Message, limit: usize) {
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    if let Ok(bytes) = handler::encode(reply, limit) {
        assert!(
            bytes.len() <= limit.max(512),
            "{} bytes over {limit}",
            bytes.len()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (query, upstream) = match data.split_first_chunk::<2>() {
        Some((len, rest)) => rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len())),
        None => (data, &[][..]),
    };
    match handler::classify(query) {
        Inbound::Drop(_) => {}
        Inbound::Reply(reply) => check(&reply, 512),
        Inbound::Query(query) => {
            let limit = handler::udp_limit(&query);
            match handler::answer_local(&query, &zone()) {
                LocalAnswer::Answer(reply) => check(&reply, limit),
                LocalAnswer::Forward => {
                    if let Ok(answer) = Message::from_vec(upstream) {
                        check(&handler::forwarded_response(&query, &answer), limit);
                    }
                }
            }
        }
    }
});
