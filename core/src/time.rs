//! Time as a value: the engine never reads a clock, drivers pass `now` in.

use std::fmt;
use std::ops::{Add, Sub};

/// A point in time or a duration, in nanoseconds on the driver's clock.
///
/// The real backend uses CLOCK_MONOTONIC, the simulation uses simulated time;
/// the engine only compares and subtracts them.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// The zero instant (also "not stamped" in hop timestamps).
    pub const ZERO: Nanos = Nanos(0);
    /// Later than every real deadline.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// `n` microseconds.
    pub const fn from_micros(n: u64) -> Nanos {
        Nanos(n.saturating_mul(1_000))
    }

    /// `n` milliseconds.
    pub const fn from_millis(n: u64) -> Nanos {
        Nanos(n.saturating_mul(1_000_000))
    }

    /// `n` seconds.
    pub const fn from_secs(n: u64) -> Nanos {
        Nanos(n.saturating_mul(1_000_000_000))
    }

    /// The raw nanosecond count.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or `None` when `earlier` is later (clock skew).
    pub const fn checked_since(self, earlier: Nanos) -> Option<Nanos> {
        match self.0.checked_sub(earlier.0) {
            Some(d) => Some(Nanos(d)),
            None => None,
        }
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    /// Saturates at zero: a duration is never negative.
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ns", self.0)
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ns", self.0)
    }
}
