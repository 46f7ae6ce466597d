//! Piecewise rate profiles (`TIME:RATE`, `ramp TIME:RATE`, `end TIME`),
//! durations, and the errors of a schedule's configuration.

use super::*;

/// One point of a [`Profile`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfilePoint {
    /// When the point takes effect, from the profile's start.
    pub at: Nanos,
    /// The rate at `at`, per second.
    pub rate_per_s: f64,
    /// True when the rate ramps linearly from the previous point to this
    /// one; false for a step at `at`.
    pub ramp: bool,
}

/// A piecewise rate schedule: steps and linear ramps, optionally ending.
///
/// Parse it from the text syntax in the [module docs](crate::schedule).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub(super) points: Vec<ProfilePoint>,
    pub(super) end: Option<Nanos>,
}

impl Profile {
    /// A profile from points, checked like the parsed syntax.
    pub fn new(points: Vec<ProfilePoint>, end: Option<Nanos>) -> Result<Profile, ScheduleError> {
        let first = points.first().ok_or(ScheduleError::EmptyProfile)?;
        if first.at != Nanos::ZERO || first.ramp {
            return Err(ScheduleError::ProfileMustStartAtZero);
        }
        if points.len() > PROFILE_POINTS_MAX {
            return Err(ScheduleError::ProfileTooLong {
                points: points.len(),
                max: PROFILE_POINTS_MAX,
            });
        }
        for (index, point) in points.iter().enumerate() {
            check_rate(point.rate_per_s)?;
            if index > 0 && point.at <= points[index - 1].at {
                return Err(ScheduleError::ProfileNotIncreasing { index });
            }
        }
        if let Some(end) = end {
            let last = points[points.len() - 1].at;
            if end <= last {
                return Err(ScheduleError::ProfileNotIncreasing {
                    index: points.len(),
                });
            }
        }
        Ok(Profile { points, end })
    }

    /// The points in time order.
    pub fn points(&self) -> &[ProfilePoint] {
        &self.points
    }

    /// When the profile ends, if it does.
    pub fn end(&self) -> Option<Nanos> {
        self.end
    }

    /// The base rate at `t` from the profile's start, or `None` past its end.
    /// `hint` is the index of the segment last used, so a forward scan costs
    /// O(1) amortised; it is updated.
    pub(super) fn rate_at(&self, t: f64, hint: &mut usize) -> Option<f64> {
        if self.end.is_some_and(|end| t >= end.as_u64() as f64) {
            return None;
        }
        while *hint + 1 < self.points.len() && (self.points[*hint + 1].at.as_u64() as f64) <= t {
            *hint += 1;
        }
        let here = self.points[*hint];
        match self.points.get(*hint + 1) {
            Some(next) if next.ramp => {
                let t0 = here.at.as_u64() as f64;
                let t1 = next.at.as_u64() as f64;
                let frac = (t - t0) / (t1 - t0);
                Some(here.rate_per_s + (next.rate_per_s - here.rate_per_s) * frac)
            }
            _ => Some(here.rate_per_s),
        }
    }

    /// True when the rate is zero from `t` on and nothing raises it again.
    pub(super) fn is_zero_forever_after(&self, t: f64, hint: usize) -> bool {
        hint + 1 == self.points.len()
            && self.points[hint].rate_per_s == 0.0
            && t >= self.points[hint].at.as_u64() as f64
    }
}

impl FromStr for Profile {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Profile, ScheduleError> {
        let mut points = Vec::new();
        let mut end = None;
        for (index, item) in text.split(',').map(str::trim).enumerate() {
            let bad = || ScheduleError::BadProfilePoint {
                index,
                text: item.to_string(),
            };
            if item.is_empty() {
                return Err(bad());
            }
            if end.is_some() {
                // Nothing may follow `end`.
                return Err(bad());
            }
            if let Some(rest) = item.strip_prefix("end") {
                end = Some(parse_duration(rest.trim())?);
                continue;
            }
            let (ramp, rest) = match item.strip_prefix("ramp") {
                Some(rest) => (true, rest.trim()),
                None => (false, item),
            };
            let (at, rate) = rest.split_once(':').ok_or_else(bad)?;
            let rate_per_s: f64 = rate.trim().parse().map_err(|_| ScheduleError::BadRate {
                text: rate.trim().to_string(),
            })?;
            points.push(ProfilePoint {
                at: parse_duration(at.trim())?,
                rate_per_s,
                ramp,
            });
        }
        Profile::new(points, end)
    }
}

/// Parses a duration with a unit: `250us`, `1.5s`, `2m`, `100ms`, `10ns`
/// (fep-core's [`Nanos`] parser, with this module's error).
pub fn parse_duration(text: &str) -> Result<Nanos, ScheduleError> {
    text.parse().map_err(|_| ScheduleError::BadDuration {
        text: text.to_string(),
    })
}

pub(super) fn check_rate(rate_per_s: f64) -> Result<(), ScheduleError> {
    if rate_per_s.is_finite() && (0.0..=RATE_PER_S_MAX).contains(&rate_per_s) {
        Ok(())
    } else {
        Err(ScheduleError::RateOutOfRange {
            rate_per_s,
            max: RATE_PER_S_MAX,
        })
    }
}

/// Why a schedule could not be built.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A rate is negative, not finite, or above [`RATE_PER_S_MAX`].
    RateOutOfRange {
        /// The rate given.
        rate_per_s: f64,
        /// The bound.
        max: f64,
    },
    /// A fixed rate of zero: the schedule would never send.
    ZeroRate,
    /// A rate is not a number.
    BadRate {
        /// The text given.
        text: String,
    },
    /// A duration is not a number with a unit (`ns`, `us`, `ms`, `s`, `m`).
    BadDuration {
        /// The text given.
        text: String,
    },
    /// `--shape` names no shape.
    UnknownShape {
        /// The name given.
        name: String,
    },
    /// The profile has no points.
    EmptyProfile,
    /// A profile point is not `TIME:RATE`, `ramp TIME:RATE` or `end TIME`,
    /// or something follows `end`.
    BadProfilePoint {
        /// 0-based position in the list.
        index: usize,
        /// The point's text.
        text: String,
    },
    /// The first point is not a step at `0s`.
    ProfileMustStartAtZero,
    /// A point (or `end`, at index = number of points) is not after the
    /// previous one.
    ProfileNotIncreasing {
        /// 0-based position of the offending point.
        index: usize,
    },
    /// More than [`PROFILE_POINTS_MAX`] points.
    ProfileTooLong {
        /// Points given.
        points: usize,
        /// The bound.
        max: usize,
    },
    /// A spiky knob is out of range.
    BadSpiky {
        /// Which knob, and its allowed range.
        what: &'static str,
    },
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::RateOutOfRange { rate_per_s, max } => {
                write!(f, "rate {rate_per_s}/s is out of range (0 ..= {max})")
            }
            ScheduleError::ZeroRate => write!(f, "a rate of 0/s never sends"),
            ScheduleError::BadRate { text } => write!(f, "rate {text:?} is not a number"),
            ScheduleError::BadDuration { text } => {
                write!(f, "duration {text:?} is not a number with a unit (ns, us, ms, s, m)")
            }
            ScheduleError::UnknownShape { name } => {
                write!(f, "shape {name:?} is not one of constant, poisson, spiky")
            }
            ScheduleError::EmptyProfile => write!(f, "the profile has no points"),
            ScheduleError::BadProfilePoint { index, text } => write!(
                f,
                "profile point {index} ({text:?}) is not TIME:RATE, ramp TIME:RATE or a final end TIME"
            ),
            ScheduleError::ProfileMustStartAtZero => {
                write!(f, "the profile must start with a step at 0s (e.g. 0s:1000)")
            }
            ScheduleError::ProfileNotIncreasing { index } => {
                write!(f, "profile point {index} is not later than the one before it")
            }
            ScheduleError::ProfileTooLong { points, max } => {
                write!(f, "the profile has {points} points, more than {max}")
            }
            ScheduleError::BadSpiky { what } => write!(f, "spiky shape: {what}"),
        }
    }
}

impl std::error::Error for ScheduleError {}
