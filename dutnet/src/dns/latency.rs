//! How long the upstream servers take to answer what dutnet forwards: a
//! histogram with fixed buckets, counted lock-free by every query task and
//! read as a snapshot by `stats` and `/metrics`.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in microseconds: a resolver on the LAN
/// answers in well under a millisecond, a public one in tens, and the
/// forwarder gives up after `dns_timeout` (2 s by default). A last bucket
/// holds everything slower (`+Inf`).
pub const BOUNDS_MICROS: [u64; 11] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000,
];
const BUCKETS: usize = BOUNDS_MICROS.len() + 1;

/// Answers by how long they took, since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamLatency {
    /// Answers per bucket (not cumulative): `counts[i]` took at most
    /// `BOUNDS_MICROS[i]` and more than the bound before; the last, more
    /// than every bound.
    pub counts: [u64; BUCKETS],
    /// The answers' time added up.
    pub sum_micros: u64,
}

impl UpstreamLatency {
    /// Answers counted.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The live histogram.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one answer that took `took`.
    pub fn observe(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(BUCKETS - 1);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    #[must_use]
    pub fn snapshot(&self) -> UpstreamLatency {
        UpstreamLatency {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_lands_in_the_first_bucket_that_holds_it() {
        let histogram = LatencyHistogram::default();
        for micros in [100, 500, 501, 3_000_000] {
            histogram.observe(Duration::from_micros(micros));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts[0], 2, "100 µs and exactly 500 µs");
        assert_eq!(snapshot.counts[1], 1, "501 µs");
        assert_eq!(snapshot.counts[BUCKETS - 1], 1, "slower than every bound");
        assert_eq!(snapshot.count(), 4);
        assert_eq!(snapshot.sum_micros, 100 + 500 + 501 + 3_000_000);
    }
}
