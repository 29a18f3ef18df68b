//! One network's DNS service without its sockets: the zone, the cache, the
//! forwarder and the counters, and [`Service::handle`], which turns the
//! bytes of one query into the bytes of its reply. The UDP and TCP tasks in
//! `server` only move bytes in and out of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use hickory_proto::op::{Message, ResponseCode};
use tokio::time::Instant;

use super::cache::{Cache, CacheKey};
use super::forward::Forwarder;
use super::handler::{self, DropReason, Inbound, LocalAnswer};
use super::latency::LatencyHistogram;
use super::zone::Zone;
use super::{DnsCounters, query_type};

/// The transport a query came in on, which sets the reply size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Default)]
struct Counters {
    by_type: [AtomicU64; query_type::COUNT],
    queries: AtomicU64,
    local_answers: AtomicU64,
    forwarded: AtomicU64,
    cache_hits: AtomicU64,
    servfail: AtomicU64,
    formerr: AtomicU64,
    notimp: AtomicU64,
    refused: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_responses: AtomicU64,
    upstream_latency: LatencyHistogram,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Shared by the UDP task, the TCP connections and the [`super::DnsServer`]
/// handle.
#[derive(Debug)]
pub struct Service {
    network: String,
    /// Readers clone the `Arc` and never hold the lock across an await;
    /// writers build a new zone and swap it in.
    zone: RwLock<Arc<Zone>>,
    cache: Mutex<Cache>,
    /// `None` when no upstream is usable (all would loop): non-local names
    /// are REFUSED.
    forwarder: Option<Forwarder>,
    counters: Counters,
    /// "forwarding failed" at most once per period (a DUT retrying a name
    /// whose upstream is down would write a line per query).
    forward_failures: crate::log_limit::LogLimit,
}

impl Service {
    /// A service answering from `zone` and forwarding through `forwarder`.
    pub fn new(network: String, zone: Zone, cache: Cache, forwarder: Option<Forwarder>) -> Self {
        Self {
            network,
            zone: RwLock::new(Arc::new(zone)),
            cache: Mutex::new(cache),
            forwarder,
            counters: Counters::default(),
            forward_failures: crate::log_limit::LogLimit::default(),
        }
    }

    /// The current zone.
    pub fn zone(&self) -> Arc<Zone> {
        Arc::clone(&self.zone.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies `change` to a copy of the zone and publishes it if `change`
    /// succeeds; the next query sees it.
    pub fn update_zone<T, E>(
        &self,
        change: impl FnOnce(&mut Zone) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut guard = self.zone.write().unwrap_or_else(PoisonError::into_inner);
        let mut zone = Zone::clone(&guard);
        let out = change(&mut zone)?;
        *guard = Arc::new(zone);
        Ok(out)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> DnsCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DnsCounters {
            by_type: std::array::from_fn(|i| get(&c.by_type[i])),
            queries: get(&c.queries),
            local_answers: get(&c.local_answers),
            forwarded: get(&c.forwarded),
            cache_hits: get(&c.cache_hits),
            servfail: get(&c.servfail),
            formerr: get(&c.formerr),
            notimp: get(&c.notimp),
            refused: get(&c.refused),
            dropped_malformed: get(&c.dropped_malformed),
            dropped_responses: get(&c.dropped_responses),
            upstream_latency: c.upstream_latency.snapshot(),
        }
    }

    /// Counts a query turned away before [`Service::handle`] (too many in
    /// flight) and returns its SERVFAIL, or `None` if it was not a query.
    pub fn overloaded(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        match handler::classify(bytes) {
            Inbound::Query(query) => {
                bump(&self.counters.queries);
                bump(&self.counters.servfail);
                let reply = handler::error_response(&query, ResponseCode::ServFail);
                Some(self.encode(&query, &reply, Transport::Udp))
            }
            _ => None,
        }
    }

    /// The reply to one received message, or `None` to send nothing.
    pub async fn handle(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let query = match handler::classify(bytes) {
            Inbound::Drop(reason) => {
                let counter = match reason {
                    DropReason::Malformed => &self.counters.dropped_malformed,
                    DropReason::Response => &self.counters.dropped_responses,
                };
                bump(counter);
                tracing::debug!(network = %self.network, ?reason, len = bytes.len(), "message dropped");
                return None;
            }
            Inbound::Reply(reply) => {
                bump(&self.counters.queries);
                self.count_rcode(reply.metadata.response_code);
                let limit = match transport {
                    Transport::Udp => handler::CLASSIC_UDP_LIMIT,
                    Transport::Tcp => handler::TCP_LIMIT,
                };
                return Some(encode_or_servfail(&reply, limit));
            }
            Inbound::Query(query) => query,
        };
        bump(&self.counters.queries);
        if let Some(question) = handler::question(&query) {
            bump(&self.counters.by_type[query_type::index(question.query_type())]);
        }

        if let LocalAnswer::Answer(reply) = handler::answer_local(&query, &self.zone()) {
            bump(&self.counters.local_answers);
            return Some(self.encode(&query, &reply, transport));
        }

        let reply = self.forward(&query).await;
        self.count_rcode(reply.metadata.response_code);
        Some(self.encode(&query, &reply, transport))
    }

    async fn forward(&self, query: &Message) -> Message {
        let Some(question) = handler::question(query) else {
            return handler::error_response(query, ResponseCode::FormErr);
        };
        let Some(forwarder) = &self.forwarder else {
            return handler::error_response(query, ResponseCode::Refused);
        };
        let dnssec_ok = handler::dnssec_ok(query);
        let cd = query.metadata.checking_disabled;
        let key = CacheKey::new(question, dnssec_ok, cd);
        let cached = self.cache().get(&key, Instant::now().into_std());
        if let Some(answer) = cached {
            bump(&self.counters.cache_hits);
            return handler::forwarded_response(query, &answer);
        }
        bump(&self.counters.forwarded);
        let asked = Instant::now();
        match forwarder.resolve(question, dnssec_ok, cd).await {
            Ok(answer) => {
                self.counters.upstream_latency.observe(asked.elapsed());
                self.cache().insert(key, &answer, Instant::now().into_std());
                handler::forwarded_response(query, &answer)
            }
            Err(error) => {
                if let Some(held_back) = self.forward_failures.allow(std::time::Instant::now()) {
                    tracing::warn!(
                        network = %self.network,
                        qname = %question.name(),
                        qtype = %question.query_type(),
                        %error,
                        held_back,
                        "forwarding failed, answering SERVFAIL (one line per 10 s; held_back: the failures since the last line)"
                    );
                }
                handler::error_response(query, ResponseCode::ServFail)
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_rcode(&self, rcode: ResponseCode) {
        let c = &self.counters;
        match rcode {
            ResponseCode::ServFail => bump(&c.servfail),
            ResponseCode::FormErr | ResponseCode::BADVERS => bump(&c.formerr),
            ResponseCode::NotImp => bump(&c.notimp),
            ResponseCode::Refused => bump(&c.refused),
            _ => {}
        }
    }

    fn encode(&self, query: &Message, reply: &Message, transport: Transport) -> Vec<u8> {
        let limit = match transport {
            Transport::Udp => handler::udp_limit(query),
            Transport::Tcp => handler::TCP_LIMIT,
        };
        match handler::encode(reply, limit) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(network = %self.network, %error, "reply not encodable, answering SERVFAIL");
                bump(&self.counters.servfail);
                handler::bare_servfail(query.metadata.id, query.metadata.recursion_desired)
            }
        }
    }
}

fn encode_or_servfail(reply: &Message, limit: usize) -> Vec<u8> {
    handler::encode(reply, limit).unwrap_or_else(|_| {
        handler::bare_servfail(reply.metadata.id, reply.metadata.recursion_desired)
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::RecordType;
    use proptest::prelude::*;

    use super::*;
    use crate::dns::fixtures::{lab_zone, query_msg};

    fn service() -> Service {
        Service::new("test".into(), lab_zone(), Cache::new(16), None)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn local_and_refused_without_upstreams_and_counters() {
        let s = service();
        let rt = rt();
        let local = query_msg("controller.lab.local.", RecordType::A)
            .to_vec()
            .unwrap();
        let reply = rt.block_on(s.handle(&local, Transport::Udp)).unwrap();
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.answers.len(), 1);

        let remote = query_msg("example.com.", RecordType::A).to_vec().unwrap();
        let reply = rt.block_on(s.handle(&remote, Transport::Udp)).unwrap();
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);

        assert!(rt.block_on(s.handle(&[1, 2, 3], Transport::Udp)).is_none());
        let mut response = query_msg("a.", RecordType::A);
        response.metadata.message_type = hickory_proto::op::MessageType::Response;
        let bytes = response.to_vec().unwrap();
        assert!(rt.block_on(s.handle(&bytes, Transport::Tcp)).is_none());
        let formerr = [0u8, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(rt.block_on(s.handle(&formerr, Transport::Udp)).is_some());

        let c = s.counters();
        assert_eq!(c.queries, 3);
        assert_eq!(c.local_answers, 1);
        assert_eq!(c.refused, 1);
        assert_eq!(c.formerr, 1);
        assert_eq!(c.dropped_malformed, 1);
        assert_eq!(c.dropped_responses, 1);
        assert_eq!(c.forwarded, 0);
    }

    #[test]
    fn zone_updates_are_all_or_nothing() {
        let s = service();
        let r: Result<(), ()> = s.update_zone(|z| {
            z.upsert_entry("new.lab", Ipv4Addr::new(1, 2, 3, 4))
                .unwrap();
            Err(())
        });
        assert!(r.is_err());
        assert_eq!(s.zone().entries().len(), 1);
    }

    fn valid_query_bytes() -> impl Strategy<Value = Vec<u8>> {
        let names = prop::sample::select(vec![
            "controller.lab.local.",
            "dut1.lab.",
            "1.0.0.10.in-addr.arpa.",
            "example.com.",
        ]);
        let types = prop::sample::select(vec![
            RecordType::A,
            RecordType::AAAA,
            RecordType::PTR,
            RecordType::ANY,
            RecordType::TXT,
        ]);
        (names, types).prop_map(|(n, t)| query_msg(n, t).to_vec().unwrap())
    }

    /// Flips, overwrites, inserts and truncates bytes of a valid query.
    fn mutated_query_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            valid_query_bytes(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
        )
            .prop_map(|(mut bytes, edits)| {
                for (at, value, op) in edits {
                    if bytes.is_empty() {
                        break;
                    }
                    let i = at.index(bytes.len());
                    match op {
                        0 => bytes[i] ^= value,
                        1 => bytes[i] = value,
                        2 => bytes.insert(i, value),
                        _ => bytes.truncate(i),
                    }
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The whole handler (classify, zone, REFUSED path, encode) never
        /// panics, and any reply it produces is a parseable DNS response
        /// that fits a UDP datagram.
        #[test]
        fn handler_never_panics(bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            mutated_query_bytes(),
        ]) {
            let s = service();
            let rt = rt();
            for transport in [Transport::Udp, Transport::Tcp] {
                if let Some(reply) = rt.block_on(s.handle(&bytes, transport)) {
                    prop_assert!(reply.len() >= 12);
                    prop_assert!(reply[2] & 0x80 != 0, "QR set on every reply");
                    if transport == Transport::Udp {
                        prop_assert!(reply.len() <= usize::from(handler::EDNS_PAYLOAD));
                    }
                }
            }
        }
    }
}
