//! Fixed-bucket latency histograms a worker keeps in plain memory: a record
//! is a short search over constant bounds and three additions, no lock and
//! no allocation, so it can sit on the hot path. A metrics scrape reads the
//! per-worker copies and merges them (bucket by bucket, the sums add).
//!
//! Times are the driver's `now` as passed in: the gateway's legs measure
//! what its clock can see (a read batch carries one time, so two events of
//! one batch are 0 ns apart).

/// Upper bounds of the buckets, in nanoseconds (a last bucket, without a
/// bound, takes everything above): 1-2-5 steps from 1 µs to 100 ms.
pub const LATENCY_BOUNDS_NS: [u64; 16] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
];

/// Buckets of a [`LatencyHistogram`]: one per bound and one past the last.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

const _: () = {
    let mut i = 1;
    while i < LATENCY_BOUNDS_NS.len() {
        assert!(LATENCY_BOUNDS_NS[i - 1] < LATENCY_BOUNDS_NS[i]);
        i += 1;
    }
};

/// A latency histogram over [`LATENCY_BOUNDS_NS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Counts per bucket, not cumulative: `buckets[i]` holds the values
    /// above bound `i - 1` and at most bound `i`; the last holds the rest.
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Values recorded.
    pub count: u64,
    /// Their sum, in nanoseconds (saturating).
    pub sum_ns: u64,
}

impl LatencyHistogram {
    /// Records one latency of `latency_ns`.
    pub fn record(&mut self, latency_ns: u64) {
        let i = LATENCY_BOUNDS_NS.partition_point(|&bound| bound < latency_ns);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(latency_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_at_a_bound_falls_in_that_bounds_bucket_and_one_above_in_the_next() {
        let mut h = LatencyHistogram::default();
        h.record(0);
        h.record(1_000);
        h.record(1_001);
        h.record(100_000_000);
        h.record(100_000_001);
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[LATENCY_BOUNDS_NS.len() - 1], 1);
        assert_eq!(h.buckets[LATENCY_BOUNDS_NS.len()], 1);
        assert_eq!(h.count, 5);
        assert_eq!(h.sum_ns, 200_002_002);
    }
}
