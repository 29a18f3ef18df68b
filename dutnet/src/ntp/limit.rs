//! Per-client rate limiting (RFC 5905 7.4 "RATE" kiss code): a token
//! bucket per client address in a bounded table, pure (time is passed in).
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// The client's bucket ran dry: one kiss-o'-death.
    Kiss,
    /// Already kissed and still over its rate: silence.
    Drop,
}

/// The bucket's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests a client may send at once: chrony's `iburst` sends 4 to 8,
    /// ntpdate 1 to 4, and a test suite may run several in a row.
    pub burst: u32,
    /// One token back per this long; ntpd's `discard average` is 8 s, a
    /// lab's DUTs reboot more often than internet clients.
    pub refill: Duration,
    /// Clients remembered; past it the least recently seen is forgotten.
    pub clients: usize,
}

impl Default for Rate {
    fn default() -> Self {
        Self {
            burst: 16,
            refill: Duration::from_secs(1),
            clients: 1024,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
    /// Whether this dry spell already got its kiss.
    kissed: bool,
    last_seen: Instant,
    last_seen_wall: SystemTime,
    requests: u64,
}

/// One client as the status verb shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientSeen {
    pub ip: Ipv4Addr,
    /// Unix seconds of its last request.
    pub last_seen: u64,
    pub requests: u64,
    /// Whether it is over its rate now.
    pub limited: bool,
}

/// The table of buckets.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: HashMap<Ipv4Addr, Bucket>,
}

impl Limiter {
    #[must_use]
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for a request from `ip` at `now`.
    pub fn check(&mut self, ip: Ipv4Addr, now: Instant, wall: SystemTime) -> Verdict {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.rate.clients.max(1) {
            self.evict_oldest();
        }
        let rate = self.rate;
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: rate.burst,
            refilled: now,
            kissed: false,
            last_seen: now,
            last_seen_wall: wall,
            requests: 0,
        });
        b.last_seen = now;
        b.last_seen_wall = wall;
        b.requests = b.requests.saturating_add(1);
        let refill = rate.refill.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(b.refilled);
        let earned = elapsed.as_nanos() / refill.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            b.tokens = b.tokens.saturating_add(earned).min(rate.burst);
            b.refilled += refill * earned.min(rate.burst);
            if b.tokens == rate.burst {
                b.refilled = now;
            }
        }
        if b.kissed && b.tokens < rate.burst {
            // Silence until the client has slowed down for as long as a
            // whole burst takes to come back (RFC 5905 7.4: a kissed
            // client backs off; one that does not gets nothing).
            Verdict::Drop
        } else if b.tokens > 0 {
            b.tokens -= 1;
            b.kissed = false;
            Verdict::Answer
        } else {
            b.kissed = true;
            Verdict::Kiss
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(ip) = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.last_seen)
            .map(|(ip, _)| *ip)
        {
            self.buckets.remove(&ip);
        }
    }

    /// The clients remembered, by address.
    #[must_use]
    pub fn clients(&self) -> Vec<ClientSeen> {
        let mut v: Vec<ClientSeen> = self
            .buckets
            .iter()
            .map(|(ip, b)| ClientSeen {
                ip: *ip,
                last_seen: b
                    .last_seen_wall
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                requests: b.requests,
                limited: b.tokens == 0,
            })
            .collect();
        v.sort_by_key(|c| c.ip);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);

    fn limiter(burst: u32, clients: usize) -> Limiter {
        Limiter::new(Rate {
            burst,
            refill: Duration::from_secs(1),
            clients,
        })
    }

    #[test]
    fn a_flood_gets_one_kiss_then_silence_and_others_are_untouched() {
        let mut l = limiter(4, 16);
        let t = Instant::now();
        let w = SystemTime::now();
        for _ in 0..4 {
            assert_eq!(l.check(A, t, w), Verdict::Answer);
        }
        assert_eq!(l.check(A, t, w), Verdict::Kiss);
        for _ in 0..100 {
            assert_eq!(l.check(A, t, w), Verdict::Drop);
        }
        assert_eq!(l.check(B, t, w), Verdict::Answer);
        let clients = l.clients();
        assert_eq!(clients.len(), 2);
        assert_eq!(
            (clients[0].ip, clients[0].requests, clients[0].limited),
            (A, 105, true)
        );
        assert!(!clients[1].limited);
    }

    #[test]
    fn tokens_come_back_with_time_up_to_the_burst() {
        let mut l = limiter(2, 16);
        let t = Instant::now();
        let w = SystemTime::now();
        assert_eq!(l.check(A, t, w), Verdict::Answer);
        assert_eq!(l.check(A, t, w), Verdict::Answer);
        assert_eq!(l.check(A, t, w), Verdict::Kiss);
        // Kissed: silent until the whole burst is back.
        let later = t + Duration::from_millis(1_500);
        assert_eq!(l.check(A, later, w), Verdict::Drop);
        assert_eq!(l.check(A, t + Duration::from_secs(2), w), Verdict::Answer);
        assert_eq!(l.check(A, t + Duration::from_secs(2), w), Verdict::Answer);
        assert_eq!(l.check(A, t + Duration::from_secs(2), w), Verdict::Kiss);
        // An hour idle refills to the burst, not beyond.
        let much_later = t + Duration::from_secs(3_600);
        for _ in 0..2 {
            assert_eq!(l.check(A, much_later, w), Verdict::Answer);
        }
        assert_eq!(l.check(A, much_later, w), Verdict::Kiss);
    }

    #[test]
    fn the_table_forgets_the_least_recently_seen() {
        let mut l = limiter(1, 2);
        let t = Instant::now();
        let w = SystemTime::now();
        l.check(A, t, w);
        l.check(B, t + Duration::from_millis(1), w);
        let c = Ipv4Addr::new(10, 0, 0, 1);
        l.check(c, t + Duration::from_millis(2), w);
        let ips: Vec<_> = l.clients().into_iter().map(|c| c.ip).collect();
        assert_eq!(ips, vec![c, B]);
        // A, forgotten, starts again with a full bucket.
        assert_eq!(l.check(A, t + Duration::from_millis(3), w), Verdict::Answer);
    }
}
