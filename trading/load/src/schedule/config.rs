//! What a schedule is made of: its shape, its base rate, its seed.

use super::*;

/// How arrivals are spread over the intended rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (a Poisson process at the intended rate).
    Poisson,
    /// Poisson arrivals on a rate with spikes and noise.
    Spiky(SpikyConfig),
}

impl Shape {
    /// The shape's name as loadgen's `--shape` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Shape::Constant => "constant",
            Shape::Poisson => "poisson",
            Shape::Spiky(_) => "spiky",
        }
    }
}

impl FromStr for Shape {
    type Err = ScheduleError;

    /// `constant`, `poisson`, or `spiky` (with [`SpikyConfig::default`]).
    fn from_str(s: &str) -> Result<Shape, ScheduleError> {
        match s.trim() {
            "constant" => Ok(Shape::Constant),
            "poisson" => Ok(Shape::Poisson),
            "spiky" => Ok(Shape::Spiky(SpikyConfig::default())),
            other => Err(ScheduleError::UnknownShape {
                name: other.to_string(),
            }),
        }
    }
}

/// The spiky shape's knobs (kar98k's traffic model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikyConfig {
    /// Mean spikes per second; the gap from one spike's end to the next
    /// spike's start is exponential with this rate.
    pub spikes_per_s: f64,
    /// The peak rate as a multiple of the base rate (> 1).
    pub factor: f64,
    /// Time from the spike's start to its peak.
    pub ramp_up: Nanos,
    /// Time held at the peak.
    pub peak: Nanos,
    /// Time from the peak back down to the base rate.
    pub ramp_down: Nanos,
    /// The noise's bound as a fraction of the base rate, in `[0, 1)`.
    pub noise_amplitude: f64,
}

impl Default for SpikyConfig {
    /// A spike every 5 s on average, to 4× the base rate, 200 ms up, 500 ms
    /// at the peak, 500 ms down; noise within ±15% of the base rate.
    fn default() -> SpikyConfig {
        SpikyConfig {
            spikes_per_s: 0.2,
            factor: 4.0,
            ramp_up: Nanos::from_millis(200),
            peak: Nanos::from_millis(500),
            ramp_down: Nanos::from_millis(500),
            noise_amplitude: 0.15,
        }
    }
}

/// Where the base rate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseRate {
    /// A fixed rate in arrivals per second.
    Fixed(f64),
    /// A piecewise schedule of steps and ramps.
    Profile(Profile),
}

/// Everything a [`Schedule`] is a function of.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// The base rate.
    pub rate: BaseRate,
    /// How arrivals are spread.
    pub shape: Shape,
    /// Seeds the arrival gaps and the spiky shape (ChaCha8).
    pub seed: u64,
    /// A linear rise from zero to the base rate, prepended to the schedule
    /// (the profile, if any, starts after it). Zero for none.
    pub ramp_up: Nanos,
}

impl ScheduleConfig {
    /// A fixed `rate_per_s` with the given shape, seed 0, no ramp-up.
    pub fn fixed(rate_per_s: f64, shape: Shape) -> ScheduleConfig {
        ScheduleConfig {
            rate: BaseRate::Fixed(rate_per_s),
            shape,
            seed: 0,
            ramp_up: Nanos::ZERO,
        }
    }
}
