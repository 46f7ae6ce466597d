//! Time as a value: the engine never reads a clock, drivers pass `now` in.

use std::fmt;
use std::ops::{Add, Sub};
use std::str::FromStr;

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

/// A duration that is not a number with a unit (`ns`, `us`, `ms`, `s`,
/// `m`), or one that is negative or past `u64::MAX` nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadDuration(pub String);

impl fmt::Display for BadDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a duration with a unit (ns, us, ms, s, m), e.g. 250us or 1.5s",
            self.0
        )
    }
}

impl std::error::Error for BadDuration {}

/// Parses a duration with a unit, as every command line of the project
/// takes one: `250us` (or `250µs`), `1.5s`, `2m`, `100ms`, `10ns`.
impl FromStr for Nanos {
    type Err = BadDuration;

    fn from_str(text: &str) -> Result<Nanos, BadDuration> {
        let bad = || BadDuration(text.to_owned());
        let split = text.find(|c: char| c.is_alphabetic()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: f64 = number.trim().parse().map_err(|_| bad())?;
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            _ => return Err(bad()),
        };
        let nanos = number * scale;
        if !nanos.is_finite() || nanos < 0.0 || nanos >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Nanos(nanos.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_parses_with_each_unit() {
        assert_eq!("250us".parse(), Ok(Nanos(250_000)));
        assert_eq!("250µs".parse(), Ok(Nanos(250_000)));
        assert_eq!("1.5s".parse(), Ok(Nanos(1_500_000_000)));
        assert_eq!("2m".parse(), Ok(Nanos::from_secs(120)));
        assert_eq!("100ms".parse(), Ok(Nanos::from_millis(100)));
        assert_eq!("7ns".parse(), Ok(Nanos(7)));
    }

    #[test]
    fn a_duration_without_a_known_unit_or_sign_is_refused() {
        for text in ["5", "-1s", "s", "1h", "", "1e400s", "nan s"] {
            assert_eq!(
                text.parse::<Nanos>(),
                Err(BadDuration(text.into())),
                "{text}"
            );
        }
    }
}
