//! One connection of the load generator: its state and window of pings
//! in flight, and the live-interval bookkeeping.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LinkState {
    /// Not dialled yet: dials are paced.
    Idle,
    Dialing,
    Hello,
    Ready,
    Closed,
}

#[derive(Debug)]
pub(super) struct Link {
    pub(super) conn: Option<ConnId>,
    pub(super) state: LinkState,
    pub(super) next_seq: u64,
    /// Pings in flight, oldest first.
    pub(super) window: VecDeque<InFlight>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct InFlight {
    pub(super) seq: u64,
    pub(super) t1: Nanos,
    /// When the ping was due: t1 in closed loop, the schedule's time in open.
    pub(super) intended: Nanos,
    /// What an order-flow request is (`None`: a ping).
    pub(super) request: Option<crate::flow::Request>,
}

/// Live-interval bookkeeping.
#[derive(Debug)]
pub(super) struct Intervals {
    pub(super) every: Nanos,
    pub(super) next: Nanos,
    pub(super) rtt: Histogram<u64>,
    pub(super) answers: u64,
    pub(super) errors: u64,
}

impl Intervals {
    /// The sample of the interval ending at `at` and lasting `length`;
    /// starts the next one.
    pub(super) fn take(&mut self, at: Nanos, length: Nanos) -> IntervalSample {
        let quantile = |q| {
            if self.rtt.is_empty() {
                0
            } else {
                self.rtt.value_at_quantile(q)
            }
        };
        let sample = IntervalSample {
            at,
            answers: self.answers,
            rate_per_s: self.answers as f64 / (length.as_u64().max(1) as f64 / 1e9),
            p50_ns: quantile(0.5),
            p99_ns: quantile(0.99),
            errors: self.errors,
        };
        self.rtt.reset();
        self.answers = 0;
        self.errors = 0;
        sample
    }
}
