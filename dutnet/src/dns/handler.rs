//! Pure query handling: bytes in, a decision out. No sockets, no clock, no
//! shared state, so every rule here is unit-tested directly.
//!
//! The pipeline is [`classify`] (is this a query we can serve at all?),
//! [`answer_local`] (is the name ours?), then for forwarded names
//! [`forwarded_response`] to turn the upstream answer into the client's,
//! and finally [`encode`] to fit the result into the client's transport.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::zone::{Lookup, Zone};

/// TTL of local answers. Short because everything local can change at
/// runtime (`add-dns`/`remove-dns`, DHCP leases moving a hostname) and a DUT
/// with a caching stub (systemd-resolved) would otherwise keep a stale
/// address across a test step; long enough that a test loop resolving the
/// same name in a burst does not ask for every connection. dnsmasq, which
/// this replaces, used 0, which some stubs mishandle.
pub const LOCAL_TTL: u32 = 10;

/// The EDNS payload size we advertise and the most we send over UDP
/// (DNS flag day 2020: avoids IP fragmentation on any sane path).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Plain DNS over UDP without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_LIMIT: usize = 512;

/// Largest DNS message (the TCP length prefix is 16 bits).
pub const TCP_LIMIT: usize = u16::MAX as usize;

/// Why a datagram or TCP frame got no reply at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not even a DNS header: nothing to address a reply to.
    Malformed,
    /// QR=1: a response sent to a server. Answering responses is how
    /// reflection loops between two servers start (RFC 1035 §7.3 spirit).
    Response,
}

/// What [`classify`] made of the bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// No reply.
    Drop(DropReason),
    /// A reply decided already (FORMERR, NOTIMP, REFUSED, BADVERS).
    Reply(Message),
    /// A well-formed standard query with exactly one question.
    Query(Message),
}

/// What the zone makes of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalAnswer {
    /// The name is ours; this is the complete (authoritative) answer.
    Answer(Message),
    /// Not ours: ask the upstreams.
    Forward,
}

/// Decides what a received message is. Never panics, whatever the bytes.
pub fn classify(bytes: &[u8]) -> Inbound {
    let mut decoder = BinDecoder::new(bytes);
    let Ok(header) = hickory_proto::op::Header::read(&mut decoder) else {
        return Inbound::Drop(DropReason::Malformed);
    };
    if header.message_type == MessageType::Response {
        return Inbound::Drop(DropReason::Response);
    }
    let Ok(query) = Message::from_vec(bytes) else {
        // RFC 1035 §4.1.1: FORMERR, with what we could read of the header.
        let mut reply = Message::error_msg(header.id, header.op_code, ResponseCode::FormErr);
        reply.metadata.recursion_desired = header.recursion_desired;
        return Inbound::Reply(reply);
    };
    // These two replies carry no question: echoing an arbitrary number of
    // them could outgrow the client's UDP limit.
    if query.metadata.op_code != OpCode::Query {
        let mut reply = error_response(&query, ResponseCode::NotImp);
        reply.queries.clear();
        return Inbound::Reply(reply);
    }
    // RFC 9619: QDCOUNT must be 1 for a standard query.
    if query.queries.len() != 1 {
        let mut reply = error_response(&query, ResponseCode::FormErr);
        reply.queries.clear();
        return Inbound::Reply(reply);
    }
    // RFC 6891 §6.1.3: we only speak EDNS version 0.
    if query.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Inbound::Reply(error_response(&query, ResponseCode::BADVERS));
    }
    let qtype = query.queries[0].query_type();
    // Zone transfers are not a resolver's job and would only relay an
    // upstream's zone to a DUT.
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::OPT) {
        return Inbound::Reply(error_response(&query, ResponseCode::Refused));
    }
    Inbound::Query(query)
}

/// Answers a classified query from the zone, or says to forward it.
///
/// A local name answers A (and ANY) with its addresses and every other type
/// with NOERROR and no records (NODATA, RFC 2308 §2.2): NXDOMAIN would tell
/// the DUT the name does not exist at all, and a happy-eyeballs client that
/// asks AAAA first would then give up on the A answer.
pub fn answer_local(query: &Message, zone: &Zone) -> LocalAnswer {
    let Some(question) = query.queries.first() else {
        return LocalAnswer::Forward;
    };
    if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
        return LocalAnswer::Forward;
    }
    let qname = question.name();
    let lookup = zone.lookup(&qname.to_ascii());
    let qtype = question.query_type();
    let mut reply = response_to(query);
    reply.metadata.authoritative = true;
    match lookup {
        Lookup::NotLocal => return LocalAnswer::Forward,
        Lookup::Addresses(ips) => {
            if matches!(qtype, RecordType::A | RecordType::ANY) {
                for ip in ips {
                    reply.add_answer(Record::from_rdata(
                        qname.clone(),
                        LOCAL_TTL,
                        RData::A(A(ip)),
                    ));
                }
            }
        }
        Lookup::Pointer(target) => {
            if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                // The zone only holds validated names; a failure here would be
                // a zone bug, and an empty NODATA is the safe answer for it.
                if let Ok(target) = Name::from_ascii(format!("{target}.")) {
                    reply.add_answer(Record::from_rdata(
                        qname.clone(),
                        LOCAL_TTL,
                        RData::PTR(PTR(target)),
                    ));
                }
            }
        }
    }
    LocalAnswer::Answer(reply)
}

/// A reply skeleton for `query`: same id, opcode, RD/CD and question, RA
/// set (we recurse through the upstreams), and an OPT record when the
/// client sent one (RFC 6891 §6.1.1).
pub fn response_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata = Metadata::response_from_request(&query.metadata);
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        // RFC 3225 §3: the DO bit is copied into the response.
        edns.set_dnssec_ok(dnssec_ok(query));
        reply.set_edns(edns);
    }
    reply
}

/// An error reply (SERVFAIL, REFUSED, ...) to `query`.
pub fn error_response(query: &Message, rcode: ResponseCode) -> Message {
    let mut reply = response_to(query);
    reply.metadata.response_code = rcode;
    if rcode.high() > 0 && reply.edns.is_none() {
        // An extended rcode only exists inside OPT (RFC 6891 §6.1.3).
        reply.set_edns(Edns::new());
    }
    reply
}

/// The client's reply built from an upstream answer: the upstream's rcode,
/// AD flag and records, under the client's id, flags and question (its
/// exact spelling, which 0x20-randomising stubs check).
///
/// AA stays clear even when the upstream set it: dutnet is no authority
/// for a forwarded name (RFC 1035 §4.1.1), and the same answer is served
/// from the cache with aged TTLs, which RFC 2181 §5.4.1 ranks below
/// authoritative data. AA thus marks dutnet's own names only.
pub fn forwarded_response(query: &Message, upstream: &Message) -> Message {
    let mut reply = response_to(query);
    reply.metadata.response_code = upstream.metadata.response_code;
    reply.metadata.authentic_data = upstream.metadata.authentic_data;
    reply.answers = upstream.answers.clone();
    reply.authorities = upstream.authorities.clone();
    reply.additionals = upstream.additionals.clone();
    if reply.metadata.response_code.high() > 0 && reply.edns.is_none() {
        reply.set_edns(Edns::new());
    }
    reply
}

/// The most a client accepts over UDP: 512 without EDNS, else its payload
/// size clamped to 512..=[`EDNS_PAYLOAD`].
pub fn udp_limit(query: &Message) -> usize {
    match &query.edns {
        Some(edns) => usize::from(edns.max_payload().clamp(512, EDNS_PAYLOAD)),
        None => CLASSIC_UDP_LIMIT,
    }
}

/// Why a reply could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode DNS reply: {source}")]
pub struct EncodeError {
    #[source]
    source: hickory_proto::ProtoError,
}

/// Encodes `reply` in at most `limit` bytes.
///
/// Too big: first drop the additional section (RFC 2181 §9: no TC for
/// that), then send only header, question and OPT with TC set so the client
/// retries over TCP (RFC 1035 §4.2.1, RFC 7766). A partial answer section
/// would be a valid but misleading subset.
pub fn encode(reply: &Message, limit: usize) -> Result<Vec<u8>, EncodeError> {
    let full = reply.to_vec().map_err(|source| EncodeError { source })?;
    if full.len() <= limit {
        return Ok(full);
    }
    if !reply.additionals.is_empty() {
        let mut lean = reply.clone();
        lean.additionals.clear();
        let bytes = lean.to_vec().map_err(|source| EncodeError { source })?;
        if bytes.len() <= limit {
            return Ok(bytes);
        }
    }
    let mut truncated = reply.clone();
    truncated.metadata.truncation = true;
    truncated.answers.clear();
    truncated.authorities.clear();
    truncated.additionals.clear();
    truncated.to_vec().map_err(|source| EncodeError { source })
}

/// A minimal SERVFAIL when even encoding failed: just the 12-byte header
/// with the client's id and RD (and QR, RA, RCODE=2).
pub fn bare_servfail(id: u16, recursion_desired: bool) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    let flags1 = 0x80 | u8::from(recursion_desired);
    vec![hi, lo, flags1, 0x80 | 2, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The question a cache or forwarder keys on.
pub fn question(query: &Message) -> Option<&Query> {
    query.queries.first()
}

/// Whether the client set the EDNS DO bit (RFC 3225).
pub fn dnssec_ok(query: &Message) -> bool {
    query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::fixtures::{lab_zone as zone, name, query_msg};

    fn local(query: &Message) -> Message {
        match answer_local(query, &zone()) {
            LocalAnswer::Answer(m) => m,
            LocalAnswer::Forward => panic!("expected a local answer"),
        }
    }

    fn classify_ok(bytes: &[u8]) -> Message {
        match classify(bytes) {
            Inbound::Query(m) => m,
            other => panic!("expected a query, got {other:?}"),
        }
    }

    fn reply_of(bytes: &[u8]) -> Message {
        match classify(bytes) {
            Inbound::Reply(m) => m,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn local_a_is_authoritative_with_short_ttl() {
        let q = query_msg("Controller.LAB.local.", RecordType::A);
        let r = local(&q);
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert!(r.metadata.authoritative);
        assert!(r.metadata.recursion_desired);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.queries, q.queries);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, LOCAL_TTL);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(10, 0, 0, 1))));
        // The owner keeps the client's spelling.
        assert_eq!(r.answers[0].name.to_ascii(), "Controller.LAB.local.");
    }

    #[test]
    fn host_under_domain_and_bare() {
        for name in ["dut1.", "DUT1.lab."] {
            let r = local(&query_msg(name, RecordType::A));
            assert_eq!(
                r.answers[0].data,
                RData::A(A(Ipv4Addr::new(192, 168, 100, 10)))
            );
        }
    }

    #[test]
    fn other_types_on_local_names_are_nodata_not_nxdomain() {
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let r = local(&query_msg("controller.lab.local.", qtype));
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert!(r.metadata.authoritative);
            assert!(r.answers.is_empty());
        }
    }

    #[test]
    fn ptr_for_entries_and_hosts() {
        let r = local(&query_msg("1.0.0.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(
            r.answers[0].data,
            RData::PTR(PTR(name("controller.lab.local.")))
        );
        let r = local(&query_msg("10.100.168.192.in-addr.arpa.", RecordType::PTR));
        assert_eq!(r.answers[0].data, RData::PTR(PTR(name("dut1.lab."))));
        let r = local(&query_msg("10.100.168.192.in-addr.arpa.", RecordType::A));
        assert!(r.answers.is_empty());
    }

    #[test]
    fn unknown_names_and_other_classes_are_forwarded() {
        let q = query_msg("example.com.", RecordType::A);
        assert_eq!(answer_local(&q, &zone()), LocalAnswer::Forward);
        let q = query_msg("9.9.9.9.in-addr.arpa.", RecordType::PTR);
        assert_eq!(answer_local(&q, &zone()), LocalAnswer::Forward);
        let mut q = query_msg("controller.lab.local.", RecordType::TXT);
        let mut question = q.queries[0].clone();
        question.set_query_class(DNSClass::CH);
        q.queries = vec![question];
        assert_eq!(answer_local(&q, &zone()), LocalAnswer::Forward);
    }

    #[test]
    fn edns_in_means_opt_out() {
        let mut q = query_msg("controller.lab.local.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns);
        let r = local(&q);
        assert_eq!(r.edns.as_ref().unwrap().max_payload(), EDNS_PAYLOAD);
        assert_eq!(udp_limit(&q), usize::from(EDNS_PAYLOAD));
        let plain = query_msg("controller.lab.local.", RecordType::A);
        assert!(local(&plain).edns.is_none());
        assert_eq!(udp_limit(&plain), 512);
    }

    #[test]
    fn udp_limit_is_clamped() {
        let mut q = query_msg("a.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(100);
        q.set_edns(edns.clone());
        assert_eq!(udp_limit(&q), 512);
        edns.set_max_payload(1400);
        q.set_edns(edns);
        assert_eq!(udp_limit(&q), 1232);
    }

    #[test]
    fn classify_valid_query() {
        let q = query_msg("example.com.", RecordType::A);
        assert_eq!(classify_ok(&q.to_vec().unwrap()), q);
    }

    #[test]
    fn classify_drops_short_and_responses() {
        assert_eq!(classify(&[]), Inbound::Drop(DropReason::Malformed));
        assert_eq!(classify(&[0; 11]), Inbound::Drop(DropReason::Malformed));
        let mut q = query_msg("example.com.", RecordType::A);
        q.metadata.message_type = MessageType::Response;
        assert_eq!(
            classify(&q.to_vec().unwrap()),
            Inbound::Drop(DropReason::Response)
        );
    }

    #[test]
    fn classify_formerr_on_garbage_after_header() {
        let mut bytes = query_msg("example.com.", RecordType::A).to_vec().unwrap();
        bytes.truncate(bytes.len() - 3);
        let r = reply_of(&bytes);
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        // Header only, with QDCOUNT 1 but no question: FORMERR.
        let r = reply_of(&[0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.metadata.id, 0xabcd);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert!(r.metadata.recursion_desired);
    }

    #[test]
    fn classify_formerr_on_a_label_over_63_or_a_name_over_255_bytes() {
        let question = |labels: &[Vec<u8>]| {
            let mut bytes = vec![0x43, 0x21, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in labels {
                bytes.push(u8::try_from(label.len()).unwrap());
                bytes.extend_from_slice(label);
            }
            bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
            bytes
        };
        // 64 in a length byte is not a length (RFC 1035 allows 63).
        let long_label = question(&[vec![b'a'; 64], b"lab".to_vec()]);
        // Five labels of 63: 320 bytes of name.
        let long_name = question(&vec![vec![b'b'; 63]; 5]);
        for bytes in [long_label, long_name] {
            let r = reply_of(&bytes);
            assert_eq!(r.metadata.id, 0x4321);
            assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        }
    }

    #[test]
    fn classify_rejects_zero_or_two_questions_and_other_opcodes() {
        let mut q = query_msg("a.", RecordType::A);
        q.queries.clear();
        let r = reply_of(&q.to_vec().unwrap());
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

        let mut q = query_msg("a.", RecordType::A);
        q.add_query(Query::query(name("b."), RecordType::A));
        let r = reply_of(&q.to_vec().unwrap());
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

        let mut q = query_msg("a.", RecordType::A);
        q.metadata.op_code = OpCode::Status;
        let r = reply_of(&q.to_vec().unwrap());
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);

        let q = query_msg("a.", RecordType::AXFR);
        let r = reply_of(&q.to_vec().unwrap());
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn classify_badvers_for_edns1() {
        let mut q = query_msg("a.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_version(1);
        q.set_edns(edns);
        let bytes = reply_of(&q.to_vec().unwrap()).to_vec().unwrap();
        let decoded = Message::from_vec(&bytes).unwrap();
        // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
        assert_eq!(u16::from(decoded.metadata.response_code), 16);
        assert!(decoded.edns.is_some(), "extended rcode needs OPT");
    }

    fn big_reply(n: u8) -> Message {
        let q = query_msg("big.example.", RecordType::A);
        let mut up = response_to(&q);
        for i in 0..n {
            up.add_answer(Record::from_rdata(
                name("big.example."),
                300,
                RData::A(A(Ipv4Addr::new(10, 0, 1, i))),
            ));
        }
        up
    }

    #[test]
    fn encode_fits_untouched() {
        let r = big_reply(3);
        let bytes = encode(&r, 512).unwrap();
        assert_eq!(Message::from_vec(&bytes).unwrap(), r);
    }

    #[test]
    fn encode_truncates_with_tc_and_keeps_question() {
        let r = big_reply(40);
        assert!(r.to_vec().unwrap().len() > 512);
        let bytes = encode(&r, 512).unwrap();
        assert!(bytes.len() <= 512);
        let t = Message::from_vec(&bytes).unwrap();
        assert!(t.metadata.truncation);
        assert!(t.answers.is_empty());
        assert_eq!(t.queries, r.queries);
        assert_eq!(t.metadata.id, r.metadata.id);
        // Over TCP the same reply goes whole.
        let whole = Message::from_vec(&encode(&r, TCP_LIMIT).unwrap()).unwrap();
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 40);
        // And with a 1232 EDNS limit, 40 records fit.
        assert!(
            !Message::from_vec(&encode(&r, 1232).unwrap())
                .unwrap()
                .metadata
                .truncation
        );
    }

    #[test]
    fn encode_drops_additionals_before_truncating() {
        let mut r = big_reply(2);
        for i in 0..40 {
            r.add_additional(Record::from_rdata(
                name("extra.example."),
                300,
                RData::A(A(Ipv4Addr::new(10, 0, 2, i))),
            ));
        }
        let t = Message::from_vec(&encode(&r, 512).unwrap()).unwrap();
        assert!(!t.metadata.truncation);
        assert_eq!(t.answers.len(), 2);
        assert!(t.additionals.is_empty());
    }

    #[test]
    fn forwarded_reply_takes_client_id_flags_and_question() {
        let q = query_msg("WWW.Example.com.", RecordType::A);
        let mut up = Message::response(0x9999, OpCode::Query);
        up.metadata.response_code = ResponseCode::NXDomain;
        up.metadata.authoritative = true;
        up.add_query(Query::query(name("www.example.com."), RecordType::A));
        let r = forwarded_response(&q, &up);
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.queries[0].name().to_ascii(), "WWW.Example.com.");
        assert!(r.metadata.recursion_available);
        assert!(!r.metadata.authoritative, "AA is for our own names only");
    }

    #[test]
    fn bare_servfail_parses() {
        let m = Message::from_vec(&bare_servfail(0xbeef, true)).unwrap();
        assert_eq!(m.metadata.id, 0xbeef);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(m.metadata.recursion_desired);
    }
}
