//! What a run measured: counts, histograms per hop, the trace, intervals.

use super::*;

/// How a ping was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A pong.
    Pong,
    /// A `Reject` with this code.
    Reject(ErrorCode),
}

/// One answered ping, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundTrip {
    /// Connection index (`0..connections`).
    pub conn: u32,
    /// The ping's seq.
    pub seq: u64,
    /// The gateway's routing tag (0 when rejected or direct).
    pub route: u64,
    /// Hop timestamps (t2..t4 are 0 in a reject).
    pub t: [Nanos; 5],
    /// The answer.
    pub answer: Answer,
}

/// One live interval of a long run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntervalSample {
    /// End of the interval, from the start of the run.
    pub at: Nanos,
    /// Answers (pongs and rejects) in the interval.
    pub answers: u64,
    /// Answers per second over the interval.
    pub rate_per_s: f64,
    /// Median rtt of the interval's pongs, ns (0 when none).
    pub p50_ns: u64,
    /// 99th percentile rtt, ns (0 when none).
    pub p99_ns: u64,
    /// Errors, rejects and losses in the interval.
    pub errors: u64,
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Round-trip times of recorded pongs, ns: from the ping's intended
    /// send time in open loop, so `rtt = send_lag + hop1 + … + hop4`.
    pub rtt: Histogram<u64>,
    /// How late recorded pings left against their schedule (`t1 −
    /// intended`), ns: open loop only (closed loop sends on time by
    /// definition). A large lag means the load generator, not the system
    /// under test, is behind: its host is too slow or too busy for the rate.
    pub send_lag: Histogram<u64>,
    /// `t2 − t1`, `t3 − t2`, `t4 − t3`, `t5 − t4`, ns (empty without a gateway).
    pub hops: [Histogram<u64>; 4],
    /// The order flow's `rtt` by request kind, indexed as
    /// [`Request::ALL`](crate::flow::Request::ALL), to two significant
    /// figures (1%); none for pings.
    pub rtt_by_request: Vec<Histogram<u64>>,
    /// Pings sent.
    pub sent: u64,
    /// Pongs received.
    pub pongs: u64,
    /// `Reject`s received.
    pub rejects: u64,
    /// `Error` frames received, and connections that could not be opened.
    pub errors: u64,
    /// Of `errors`, connections that could not be opened (no room to dial,
    /// the dial failed, or it had not finished its hand-shake by the
    /// deadline).
    pub dials_failed: u64,
    /// Pings that got no answer at all.
    pub lost: u64,
    /// Connections still waiting for answers when the drain deadline passed.
    pub drain_timeouts: u64,
    /// Answers out of order or for no ping in flight: a pong that is not for
    /// the oldest ping in flight on its connection, a `Reject` for a seq not
    /// in flight (rejects may overtake pongs; pongs keep send order).
    pub window_violations: u64,
    /// Pongs whose pad did not come back unchanged.
    pub corrupt: u64,
    /// Pongs whose stamps were not ordered `t1 ≤ … ≤ t5` (clocks not shared).
    pub clock_skews: u64,
    /// Pongs that went straight to an exchange (`t2 = t4 = 0`).
    pub direct: u64,
    /// When the first recorded answer's ping could leave (end of warm-up).
    pub measure_start: Nanos,
    /// When the last answer arrived.
    pub measure_end: Nanos,
    /// Connections that ended before the run did: a failed dial, a close
    /// by the peer (before or after the hand-shake), or an `Error`. The run
    /// went on with fewer connections than asked for.
    pub connections_lost: u64,
    /// When the first ping could leave (every connection hand-shaked): the
    /// whole run, warm-up included, is `run_start..measure_end`.
    pub run_start: Nanos,
    /// The first round trips, up to `trace_max`.
    pub trace: Vec<RoundTrip>,
    /// Live intervals, when configured: the last [`INTERVALS_KEPT_MAX`]
    /// at most (the run's first ones go once it has more).
    pub intervals: Vec<IntervalSample>,
    /// Intervals sampled in all, kept or not.
    pub intervals_taken: u64,
    /// Intended send time of the first and the last ping (open loop).
    pub intended: Option<(Nanos, Nanos)>,
    /// With an order flow: messages by kind, rejects by code, and messages
    /// that broke the contract or disagreed with this client's orders.
    pub flow: Option<crate::flow::FlowStats>,
}

/// Interval samples a report keeps (480 KB; at `--interval 1s`, the last
/// 2.8 hours). A long run at a short interval would otherwise grow them,
/// and every live look at the report, without end.
pub const INTERVALS_KEPT_MAX: usize = 10_000;

impl Report {
    /// A sample just taken: counted, and kept.
    pub(super) fn record_interval(&mut self, sample: IntervalSample) {
        self.intervals_taken += 1;
        self.keep_interval(sample);
    }

    /// Adds a sample, dropping the oldest tenth when full (amortised O(1)).
    pub(super) fn keep_interval(&mut self, sample: IntervalSample) {
        if self.intervals.len() >= INTERVALS_KEPT_MAX {
            self.intervals.drain(..INTERVALS_KEPT_MAX / 10);
        }
        self.intervals.push(sample);
    }

    /// Gives the report its histograms of rtt by request kind (an order
    /// flow's; 30 KiB each at two significant figures, where three would
    /// take 210 KiB, zeroed for every simulated client).
    pub(super) fn by_request(mut self) -> Report {
        self.rtt_by_request = crate::flow::Request::ALL
            .iter()
            .map(|_| {
                Histogram::new_with_bounds(1, LATENCY_NS_MAX, 2).expect("static bounds are valid")
            })
            .collect();
        self
    }

    pub(super) fn new(trace_max: usize) -> Report {
        let histogram =
            || Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static bounds are valid");
        Report {
            rtt: histogram(),
            send_lag: histogram(),
            hops: [histogram(), histogram(), histogram(), histogram()],
            rtt_by_request: Vec::new(),
            sent: 0,
            pongs: 0,
            rejects: 0,
            errors: 0,
            dials_failed: 0,
            lost: 0,
            drain_timeouts: 0,
            window_violations: 0,
            corrupt: 0,
            clock_skews: 0,
            direct: 0,
            measure_start: Nanos::ZERO,
            measure_end: Nanos::ZERO,
            run_start: Nanos::ZERO,
            connections_lost: 0,
            trace: Vec::with_capacity(trace_max),
            intervals: Vec::new(),
            intervals_taken: 0,
            intended: None,
            flow: None,
        }
    }

    /// Folds another worker's report into this one.
    pub fn merge(&mut self, other: &Report) {
        self.rtt.add(&other.rtt).expect("same bounds");
        self.send_lag.add(&other.send_lag).expect("same bounds");
        for (a, b) in self.hops.iter_mut().zip(&other.hops) {
            a.add(b).expect("same bounds");
        }
        if self.rtt_by_request.is_empty() {
            self.rtt_by_request = other.rtt_by_request.clone();
        } else {
            for (a, b) in self.rtt_by_request.iter_mut().zip(&other.rtt_by_request) {
                a.add(b).expect("same bounds");
            }
        }
        self.sent += other.sent;
        self.pongs += other.pongs;
        self.rejects += other.rejects;
        self.errors += other.errors;
        self.dials_failed += other.dials_failed;
        self.lost += other.lost;
        self.drain_timeouts += other.drain_timeouts;
        self.window_violations += other.window_violations;
        self.corrupt += other.corrupt;
        self.clock_skews += other.clock_skews;
        self.direct += other.direct;
        self.connections_lost += other.connections_lost;
        if self.measure_start == Nanos::ZERO || other.measure_start < self.measure_start {
            self.measure_start = other.measure_start;
        }
        self.measure_end = self.measure_end.max(other.measure_end);
        if self.run_start == Nanos::ZERO || other.run_start < self.run_start {
            self.run_start = other.run_start;
        }
        self.trace.extend_from_slice(&other.trace);
        self.intervals_taken += other.intervals_taken;
        for &sample in &other.intervals {
            self.keep_interval(sample);
        }
        self.intended = match (self.intended, other.intended) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        if let Some(theirs) = &other.flow {
            self.flow.get_or_insert_with(Default::default).merge(theirs);
        }
    }

    /// The rate the schedule intended (open loop): pings over the span of
    /// their intended send times.
    pub fn intended_rate_per_s(&self) -> Option<f64> {
        let (first, last) = self.intended?;
        let span = (last - first).as_u64() as f64 / 1e9;
        (span > 0.0).then(|| self.sent.saturating_sub(1) as f64 / span)
    }

    /// Answers of every kind.
    pub fn answered(&self) -> u64 {
        self.pongs + self.rejects
    }

    /// Seconds from the end of warm-up to the last answer.
    pub fn elapsed_secs(&self) -> f64 {
        (self.measure_end - self.measure_start).as_u64() as f64 / 1e9
    }

    /// Answers per second over the whole run, warm-up, pipeline fill and
    /// drain included: a floor of the throughput that holds even when the
    /// run is too short for a steady state (a few windows in flight).
    pub fn overall_rate_per_s(&self) -> f64 {
        let secs = (self.measure_end - self.run_start).as_u64() as f64 / 1e9;
        if secs > 0.0 {
            self.answered() as f64 / secs
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_its_last_intervals_only() {
        let mut r = Report::new(0);
        let sample = |i: u64| IntervalSample {
            at: Nanos(i),
            answers: i,
            rate_per_s: 0.0,
            p50_ns: 0,
            p99_ns: 0,
            errors: 0,
        };
        for i in 0..25_000 {
            r.keep_interval(sample(i));
            assert!(r.intervals.len() <= INTERVALS_KEPT_MAX);
        }
        assert!(r.intervals.len() >= INTERVALS_KEPT_MAX * 9 / 10);
        assert_eq!(r.intervals.last().unwrap().answers, 24_999);
        // In order, no gap: the oldest went first.
        assert!(r
            .intervals
            .windows(2)
            .all(|w| w[1].answers == w[0].answers + 1));
    }
}
