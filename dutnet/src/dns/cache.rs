//! A small answer cache for forwarded queries.
//!
//! Positive answers live for their smallest TTL, negative ones (NXDOMAIN
//! and NODATA) for the RFC 2308 §5 SOA-derived TTL capped at
//! [`MAX_NEGATIVE_TTL`]. The clock is a parameter so expiry is tested
//! without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

/// Default number of cached answers per network: a DUT asks for a handful
/// of names; this bounds memory at well under a megabyte.
pub const DEFAULT_CAPACITY: usize = 1024;
/// Longest a positive answer is kept even if the upstream says longer:
/// bounds how long a changed upstream record stays hidden behind dutnet.
pub const MAX_POSITIVE_TTL: u32 = 3600;
/// Longest a negative answer is kept: a name the lab is about to create
/// should appear within a minute.
pub const MAX_NEGATIVE_TTL: u32 = 60;

/// What makes two queries share an answer. The DO and CD bits change what
/// an upstream returns (RRSIGs, unvalidated data), so they are part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: String,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl CacheKey {
    /// The key of a question.
    pub fn new(question: &Query, dnssec_ok: bool, checking_disabled: bool) -> Self {
        Self {
            name: question.name().to_ascii().to_ascii_lowercase(),
            qtype: u16::from(question.query_type()),
            qclass: u16::from(question.query_class()),
            dnssec_ok,
            checking_disabled,
        }
    }
}

#[derive(Debug)]
struct Entry {
    message: Message,
    stored: Instant,
    expires: Instant,
}

/// A bounded map from question to upstream answer.
#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
}

impl Cache {
    /// A cache holding at most `capacity` answers (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
        }
    }

    /// Number of answers held (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached answer with every TTL reduced by the time it spent here
    /// (RFC 1035 §7.1), or `None` if absent or expired.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Message> {
        let entry = self.entries.get(key)?;
        if now >= entry.expires {
            self.entries.remove(key);
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut message = entry.message.clone();
        for record in message
            .answers
            .iter_mut()
            .chain(message.authorities.iter_mut())
            .chain(message.additionals.iter_mut())
        {
            record.decrement_ttl(age);
        }
        Some(message)
    }

    /// Stores an upstream answer if [`cacheable_ttl`] allows it. When full,
    /// expired answers go first, then the one closest to expiry (it would
    /// have been the next to go anyway).
    pub fn insert(&mut self, key: CacheKey, message: &Message, now: Instant) {
        let Some(ttl) = cacheable_ttl(message) else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(
            key,
            Entry {
                message: message.clone(),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }
}

/// How long an upstream answer may be cached, or `None` for "not at all".
///
/// - NOERROR with answers: the smallest TTL of the answer and authority
///   records, capped at [`MAX_POSITIVE_TTL`];
/// - NXDOMAIN, or NOERROR without answers (NODATA): RFC 2308 §5, the SOA in
///   the authority section gives min(SOA TTL, SOA MINIMUM), capped at
///   [`MAX_NEGATIVE_TTL`]; without an SOA it is not cached (RFC 2308 §5);
/// - anything else (SERVFAIL, REFUSED, truncated answers): not cached, so a
///   recovering upstream is asked again at once.
///
/// A TTL of 0 means "use once" (RFC 1035 §3.2.1) and is not cached.
pub fn cacheable_ttl(message: &Message) -> Option<u32> {
    if message.metadata.truncation {
        return None;
    }
    let ttl = match message.metadata.response_code {
        ResponseCode::NoError if !message.answers.is_empty() => message
            .answers
            .iter()
            .chain(&message.authorities)
            .filter(|r| r.record_type() != RecordType::OPT)
            .map(|r| r.ttl)
            .min()?
            .min(MAX_POSITIVE_TTL),
        ResponseCode::NoError | ResponseCode::NXDomain => message
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .min()?
            .min(MAX_NEGATIVE_TTL),
        _ => return None,
    };
    (ttl > 0).then_some(ttl)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;

    use super::*;
    use crate::dns::fixtures::{self, example_soa, name};

    fn question(s: &str) -> Query {
        fixtures::question(s, RecordType::A)
    }

    fn answer(ttls: &[u32]) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        m.add_query(question("a.example."));
        for (i, ttl) in ttls.iter().enumerate() {
            m.add_answer(Record::from_rdata(
                name("a.example."),
                *ttl,
                RData::A(A(Ipv4Addr::new(10, 0, 0, u8::try_from(i).unwrap()))),
            ));
        }
        m
    }

    fn negative(rcode: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        m.metadata.response_code = rcode;
        m.add_query(question("nope.example."));
        m.add_authority(example_soa(soa_ttl, minimum));
        m
    }

    #[test]
    fn ttl_rules() {
        assert_eq!(cacheable_ttl(&answer(&[300, 30, 600])), Some(30));
        assert_eq!(cacheable_ttl(&answer(&[100_000])), Some(MAX_POSITIVE_TTL));
        assert_eq!(cacheable_ttl(&answer(&[0, 300])), None);
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::NXDomain, 900, 30)),
            Some(30)
        );
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::NoError, 20, 900)),
            Some(20)
        );
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::NXDomain, 3600, 3600)),
            Some(MAX_NEGATIVE_TTL)
        );
        // Negative without SOA, SERVFAIL, truncated: never.
        let mut bare = answer(&[]);
        bare.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(cacheable_ttl(&bare), None);
        let mut fail = answer(&[300]);
        fail.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(cacheable_ttl(&fail), None);
        let mut tc = answer(&[300]);
        tc.metadata.truncation = true;
        assert_eq!(cacheable_ttl(&tc), None);
    }

    #[test]
    fn hit_within_ttl_with_aged_ttls_then_expiry() {
        let mut c = Cache::new(4);
        let t0 = Instant::now();
        let key = CacheKey::new(&question("a.example."), false, false);
        c.insert(key.clone(), &answer(&[30, 60]), t0);
        let hit = c.get(&key, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(hit.answers[0].ttl, 20);
        assert_eq!(hit.answers[1].ttl, 50);
        assert!(c.get(&key, t0 + Duration::from_secs(30)).is_none());
        assert!(c.is_empty(), "expired entry removed on access");
    }

    #[test]
    fn key_is_case_insensitive_and_includes_type_and_do() {
        let a = CacheKey::new(&question("A.Example."), false, false);
        assert_eq!(a, CacheKey::new(&question("a.example."), false, false));
        assert_ne!(a, CacheKey::new(&question("a.example."), true, false));
        assert_ne!(a, CacheKey::new(&question("a.example."), false, true));
        let aaaa = Query::query(name("a.example."), RecordType::AAAA);
        assert_ne!(a, CacheKey::new(&aaaa, false, false));
    }

    #[test]
    fn bounded_evicts_soonest_expiry() {
        let mut c = Cache::new(2);
        let t0 = Instant::now();
        let k = |n: &str| CacheKey::new(&question(n), false, false);
        c.insert(k("short."), &answer(&[10]), t0);
        c.insert(k("long."), &answer(&[100]), t0);
        c.insert(k("new."), &answer(&[50]), t0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&k("short."), t0).is_none());
        assert!(c.get(&k("long."), t0).is_some());
        assert!(c.get(&k("new."), t0).is_some());
    }

    #[test]
    fn full_cache_drops_expired_first() {
        let mut c = Cache::new(2);
        let t0 = Instant::now();
        let k = |n: &str| CacheKey::new(&question(n), false, false);
        c.insert(k("old."), &answer(&[5]), t0);
        c.insert(k("keep."), &answer(&[100]), t0);
        let later = t0 + Duration::from_secs(6);
        c.insert(k("new."), &answer(&[50]), later);
        assert_eq!(c.len(), 2);
        assert!(c.get(&k("keep."), later).is_some());
        assert!(c.get(&k("new."), later).is_some());
    }

    #[test]
    fn zero_capacity_never_stores() {
        let mut c = Cache::new(0);
        let key = CacheKey::new(&question("a.example."), false, false);
        c.insert(key.clone(), &answer(&[30]), Instant::now());
        assert!(c.get(&key, Instant::now()).is_none());
    }
}
