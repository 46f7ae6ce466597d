//! The one clock of the real backend: CLOCK_MONOTONIC in nanoseconds, the
//! clock PROTOCOL.md's hop timestamps share between processes on one host.

use fep_core::Nanos;

/// Now on CLOCK_MONOTONIC. `std::time::Instant` reads the same clock but
/// hides the raw count, and the raw count is what crosses process boundaries
/// in the ping timestamps.
pub fn monotonic_now() -> Nanos {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(ts.tv_sec).expect("CLOCK_MONOTONIC is never negative");
    let nanos = u64::try_from(ts.tv_nsec).expect("tv_nsec is in 0..1e9");
    Nanos(secs * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_clock_counts_nanoseconds_of_the_same_clock_as_instant() {
        // Nested intervals: the raw count must advance by no more than
        // `Instant` (the same clock) around it, and by at least the sleep.
        // A wrong clock id or unit (micro- for nanoseconds) fails one side.
        let outer_start = Instant::now();
        let start = monotonic_now();
        std::thread::sleep(Duration::from_millis(20));
        let end = monotonic_now();
        let outer = outer_start.elapsed();
        let inner = end.checked_since(start).expect("monotonic");
        assert!(
            inner >= Nanos::from_millis(20),
            "{inner:?} for a 20 ms sleep"
        );
        assert!(
            u128::from(inner.as_u64()) <= outer.as_nanos(),
            "{inner:?} inside {outer:?}"
        );
    }
}
