//! The per-client aggregates every worker of a process shares: open
//! orders, open notional and the throttle's bucket, as atomics. Checks
//! reserve with compare-exchange and roll back on refusal, so no lock is
//! taken and two workers cannot both take the last unit of a limit.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One client's shared counters. Aligned to a cache line so that two
/// clients trading on two workers do not contend on one line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct ClientState {
    open_orders: AtomicU64,
    open_notional: AtomicU64,
    /// The throttle's theoretical arrival time (GCRA): the bucket is empty
    /// while `tat - tolerance > now`.
    tat_ns: AtomicU64,
}

/// Why a reservation failed: the value it would have reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Over(pub u128);

impl ClientState {
    pub(crate) fn open_orders(&self) -> u64 {
        self.open_orders.load(Relaxed)
    }

    pub(crate) fn open_notional(&self) -> u64 {
        self.open_notional.load(Relaxed)
    }

    /// Takes one message from the bucket at `now_ns`; `false` when empty.
    /// A generic cell-rate algorithm: one word holds the whole bucket.
    pub(crate) fn take_token(&self, now_ns: u64, interval_ns: u64, tolerance_ns: u64) -> bool {
        let mut tat = self.tat_ns.load(Relaxed);
        loop {
            if tat.saturating_sub(tolerance_ns) > now_ns {
                return false;
            }
            let next = tat.max(now_ns).saturating_add(interval_ns);
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Counts one more open order unless that passes `max`.
    pub(crate) fn reserve_order(&self, max: Option<u64>) -> Result<(), Over> {
        let prev = self.open_orders.fetch_add(1, Relaxed);
        let now = u128::from(prev) + 1;
        if max.is_some_and(|m| now > u128::from(m)) {
            self.open_orders.fetch_sub(1, Relaxed);
            return Err(Over(now));
        }
        Ok(())
    }

    /// Adds `notional` to the open notional unless that passes `max` (or
    /// the counter's range).
    pub(crate) fn reserve_notional(&self, notional: u64, max: Option<u64>) -> Result<(), Over> {
        let cap = max.unwrap_or(u64::MAX);
        let mut cur = self.open_notional.load(Relaxed);
        loop {
            let next = u128::from(cur) + u128::from(notional);
            if next > u128::from(cap) {
                return Err(Over(next));
            }
            // `next <= cap <= u64::MAX`, so the cast keeps every bit.
            let next = next as u64;
            match self
                .open_notional
                .compare_exchange_weak(cur, next, Relaxed, Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Adds exposure the exchange reported, without a limit: it exists
    /// whether we like it or not.
    pub(crate) fn add(&self, orders: u64, notional: u64) {
        let prev = self.open_notional.fetch_add(notional, Relaxed);
        assert!(
            prev.checked_add(notional).is_some(),
            "open notional overflowed: {prev} + {notional}"
        );
        let prev = self.open_orders.fetch_add(orders, Relaxed);
        assert!(prev.checked_add(orders).is_some(), "open orders overflowed");
    }

    /// Removes exposure. Removing more than is open means the caller's
    /// bookkeeping is broken: that is a bug, and it panics.
    pub(crate) fn sub(&self, orders: u64, notional: u64) {
        let notional_prev = self
            .open_notional
            .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(notional));
        assert!(
            notional_prev.is_ok(),
            "open notional would go negative: {} - {notional}",
            self.open_notional()
        );
        let orders_prev = self
            .open_orders
            .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(orders));
        assert!(
            orders_prev.is_ok(),
            "open orders would go negative: {} - {orders}",
            self.open_orders()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_order_reservation_is_rolled_back() {
        let s = ClientState::default();
        assert_eq!(s.reserve_order(Some(1)), Ok(()));
        assert_eq!(s.reserve_order(Some(1)), Err(Over(2)));
        assert_eq!(s.open_orders(), 1);
    }

    #[test]
    fn a_notional_reservation_never_wraps_the_counter() {
        let s = ClientState::default();
        assert_eq!(s.reserve_notional(u64::MAX, None), Ok(()));
        assert_eq!(
            s.reserve_notional(1, None),
            Err(Over(u128::from(u64::MAX) + 1))
        );
        assert_eq!(s.open_notional(), u64::MAX);
    }

    #[test]
    #[should_panic(expected = "would go negative")]
    fn removing_more_than_is_open_is_a_bug_that_panics() {
        let s = ClientState::default();
        s.add(1, 10);
        s.sub(1, 11);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_refills_at_the_rate() {
        let s = ClientState::default();
        let (interval, tolerance) = (100, 200); // burst 3
        assert!(s.take_token(1_000, interval, tolerance));
        assert!(s.take_token(1_000, interval, tolerance));
        assert!(s.take_token(1_000, interval, tolerance));
        assert!(!s.take_token(1_000, interval, tolerance));
        assert!(!s.take_token(1_099, interval, tolerance));
        assert!(s.take_token(1_100, interval, tolerance));
        assert!(!s.take_token(1_100, interval, tolerance));
    }
}
