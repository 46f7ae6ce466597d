//! The one clock of the real backend: CLOCK_MONOTONIC in nanoseconds, the
//! clock PROTOCOL.md's hop timestamps share between processes on one host.

use fep_core::Nanos;

/// Now on CLOCK_MONOTONIC. `std::time::Instant` reads the same clock but
/// hides the raw count, and the raw count is what crosses process boundaries
/// in the ping timestamps.
#[allow(unsafe_code)]
pub fn monotonic_now() -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec living across the call, and
    // CLOCK_MONOTONIC is a clock id every Linux kernel supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    let secs = u64::try_from(ts.tv_sec).expect("CLOCK_MONOTONIC is never negative");
    let nanos = u64::try_from(ts.tv_nsec).expect("tv_nsec is in 0..1e9");
    Nanos(secs * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let mut last = monotonic_now();
        assert!(last > Nanos::ZERO);
        for _ in 0..1000 {
            let now = monotonic_now();
            assert!(now >= last);
            last = now;
        }
    }
}
