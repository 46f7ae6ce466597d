//! Open-loop arrival schedules: when a load generator *intends* to send.
//!
//! Latency in open-loop mode is measured from the intended send time
//! (coordinated-omission correction, as wrk2 does), so the schedule must be a
//! pure function of its configuration: no clock, no OS randomness, no
//! `HashMap`. The same [`ScheduleConfig`] (seed included) always yields the
//! same arrival offsets.
//!
//! # Model
//!
//! A schedule is an intended rate λ(t) (arrivals per second) and a shape:
//!
//! - the **base rate** is a fixed `rate`, or a piecewise [`Profile`] of steps
//!   and linear ramps; `ramp_up` prepends a linear rise from zero to the
//!   base rate at time zero;
//! - [`Shape::Constant`] spaces arrivals evenly in λ: one arrival per unit of
//!   the integrated rate Λ(t) = ∫λ;
//! - [`Shape::Poisson`] draws exponential gaps in Λ (an inhomogeneous Poisson
//!   process by time rescaling);
//! - [`Shape::Spiky`] is Poisson arrivals on a rate modulated the way kar98k
//!   shapes traffic: spikes start at Poisson-timed instants and rise linearly
//!   to `factor` × the base rate, hold at the peak, and fall back linearly;
//!   between them a spring-damper noise wanders around the base rate.
//!
//! The rate is evaluated once per [`RATE_TICK`] (at the tick's midpoint) and
//! held within the tick, so Λ is piecewise linear and each arrival is found
//! exactly within its tick, with no allocation per arrival.
//!
//! # Profile syntax
//!
//! A comma-separated list of points, each `TIME:RATE`, `ramp TIME:RATE`, or
//! a final `end TIME`:
//!
//! ```text
//! 0s:1000, 10s:5000, ramp 20s:1000, end 30s
//! ```
//!
//! - `TIME:RATE` is a step: from `TIME` on the rate is `RATE` per second;
//! - `ramp TIME:RATE` rises (or falls) linearly from the previous point's
//!   rate to `RATE`, reaching it at `TIME`;
//! - `end TIME` ends the schedule at `TIME` (otherwise the last rate holds);
//! - the first point is a step at time zero; times strictly increase;
//! - durations take a unit: `ns`, `us`, `ms`, `s`, `m` (`1.5s` is allowed).
//!
//! The example sends 1,000/s for 10 s, steps to 5,000/s at 10 s, ramps down
//! to 1,000/s by 20 s, holds that, and stops at 30 s.

use std::fmt;
use std::str::FromStr;

use fep_core::Nanos;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod config;
mod profile;
mod spiky;

pub use config::*;
pub use profile::*;
use spiky::*;

/// The rate is held constant over each tick of this length.
pub const RATE_TICK: Nanos = Nanos::from_millis(1);

/// The spiky shape's noise takes one spring-damper step per this interval.
pub const NOISE_STEP: Nanos = Nanos::from_millis(100);

/// The highest rate a schedule accepts: one arrival per 10 ns.
pub const RATE_PER_S_MAX: f64 = 100_000_000.0;

/// The most points a [`Profile`] may have.
pub const PROFILE_POINTS_MAX: usize = 1_024;

const NANOS_PER_S: f64 = 1_000_000_000.0;
const TICKS_PER_NOISE_STEP: u64 = NOISE_STEP.as_u64() / RATE_TICK.as_u64();
const _: () = assert!(NOISE_STEP.as_u64() % RATE_TICK.as_u64() == 0);
const _: () = assert!(TICKS_PER_NOISE_STEP >= 1);

/// An open-loop arrival schedule; see the [module docs](self).
///
/// Call [`Schedule::next_arrival`] for each send: it returns the intended
/// send time as an offset from the schedule's start, in non-decreasing
/// order, or `None` once a profile has ended (or its rate fell to zero for
/// good).
#[derive(Debug, Clone)]
pub struct Schedule {
    rate: BaseRate,
    ramp_up: f64,
    poisson: bool,
    arrivals_rng: ChaCha8Rng,
    spiky: Option<SpikyState>,
    /// The current tick.
    tick: u64,
    /// The rate held over the current tick, per ns.
    tick_rate_per_ns: f64,
    /// Λ at the current tick's start.
    lambda_at_tick: f64,
    /// Λ of the next arrival.
    lambda_target: f64,
    profile_hint: usize,
    emitted: u64,
    ended: bool,
}

impl Schedule {
    /// Builds a schedule; fails on an out-of-range rate or spiky knob.
    pub fn new(config: ScheduleConfig) -> Result<Schedule, ScheduleError> {
        if let BaseRate::Fixed(rate) = config.rate {
            check_rate(rate)?;
            if rate == 0.0 {
                return Err(ScheduleError::ZeroRate);
            }
        }
        let spiky = match config.shape {
            Shape::Spiky(spiky) => Some(SpikyState::new(spiky, config.seed)?),
            Shape::Constant | Shape::Poisson => None,
        };
        let mut arrivals_rng = ChaCha8Rng::seed_from_u64(config.seed);
        arrivals_rng.set_stream(STREAM_ARRIVALS);
        let mut schedule = Schedule {
            rate: config.rate,
            ramp_up: config.ramp_up.as_u64() as f64,
            poisson: !matches!(config.shape, Shape::Constant),
            arrivals_rng,
            spiky,
            tick: 0,
            tick_rate_per_ns: 0.0,
            lambda_at_tick: 0.0,
            lambda_target: 0.0,
            profile_hint: 0,
            emitted: 0,
            ended: false,
        };
        schedule.enter_tick();
        Ok(schedule)
    }

    /// The intended send time of the next arrival, from the start.
    pub fn next_arrival(&mut self) -> Option<Nanos> {
        if self.ended {
            return None;
        }
        self.lambda_target += if self.poisson {
            exponential(&mut self.arrivals_rng)
        } else if self.emitted == 0 {
            // The first evenly spaced arrival goes out at once.
            0.0
        } else {
            1.0
        };
        let tick_ns = RATE_TICK.as_u64() as f64;
        loop {
            let capacity = self.tick_rate_per_ns * tick_ns;
            let needed = self.lambda_target - self.lambda_at_tick;
            if self.tick_rate_per_ns > 0.0 && needed <= capacity {
                let at = self.tick_start() + needed / self.tick_rate_per_ns;
                self.emitted += 1;
                return Some(Nanos(at.round() as u64));
            }
            self.lambda_at_tick += capacity;
            self.tick += 1;
            self.enter_tick();
            if self.ended {
                return None;
            }
        }
    }

    /// Arrivals returned so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The intended rate (per second) at the last arrival: what a live
    /// metric puts next to the achieved rate.
    pub fn rate_per_s_now(&self) -> f64 {
        self.tick_rate_per_ns * 1e9
    }

    /// Spikes completed so far (always 0 unless the shape is spiky).
    pub fn spikes(&self) -> u64 {
        self.spiky.as_ref().map_or(0, |s| s.spikes)
    }

    /// Whether a spike is under way at the last arrival (never unless the
    /// shape is spiky): the spike's start has passed and the next one has
    /// not been drawn yet.
    pub fn spike_active(&self) -> bool {
        self.spiky
            .as_ref()
            .is_some_and(|s| self.tick_start() >= s.spike_start)
    }

    fn tick_start(&self) -> f64 {
        (self.tick * RATE_TICK.as_u64()) as f64
    }

    /// Computes the rate held over the current tick (at its midpoint).
    fn enter_tick(&mut self) {
        let t = self.tick_start() + RATE_TICK.as_u64() as f64 / 2.0;
        if let Some(spiky) = self.spiky.as_mut() {
            if self.tick % TICKS_PER_NOISE_STEP == 0 {
                spiky.step_noise();
            }
        }
        let base = if t < self.ramp_up {
            self.base_rate_at(0.0).map(|rate| rate * t / self.ramp_up)
        } else {
            self.base_rate_at(t - self.ramp_up)
        };
        let Some(base) = base else {
            self.ended = true;
            return;
        };
        let multiplier = self.spiky.as_mut().map_or(1.0, |s| s.multiplier(t));
        self.tick_rate_per_ns = base * multiplier / NANOS_PER_S;
        if base == 0.0 {
            if let BaseRate::Profile(profile) = &self.rate {
                self.ended = profile.is_zero_forever_after(t - self.ramp_up, self.profile_hint);
            }
        }
    }

    fn base_rate_at(&mut self, t: f64) -> Option<f64> {
        match &self.rate {
            BaseRate::Fixed(rate) => Some(*rate),
            BaseRate::Profile(profile) => profile.rate_at(t, &mut self.profile_hint),
        }
    }
}

/// A draw from Exp(1).
fn exponential(rng: &mut ChaCha8Rng) -> f64 {
    // `random` is in [0, 1): 1 − u is in (0, 1], so the log is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(config: ScheduleConfig, n: usize) -> Vec<u64> {
        let mut schedule = Schedule::new(config).unwrap();
        (0..n)
            .map_while(|_| schedule.next_arrival())
            .map(Nanos::as_u64)
            .collect()
    }

    fn achieved_rate_per_s(times: &[u64]) -> f64 {
        (times.len() - 1) as f64 / (times[times.len() - 1] - times[0]) as f64 * NANOS_PER_S
    }

    fn seeded(rate: BaseRate, shape: Shape, seed: u64) -> ScheduleConfig {
        ScheduleConfig {
            rate,
            shape,
            seed,
            ramp_up: Nanos::ZERO,
        }
    }

    #[test]
    fn constant_rate_is_exact_and_evenly_spaced() {
        let times = arrivals(ScheduleConfig::fixed(5_000.0, Shape::Constant), 10_001);
        assert_eq!(times[0], 0);
        assert_eq!(times[1], 200_000);
        assert_eq!(times[10_000], 2_000_000_000);
        assert!(times.windows(2).all(|w| w[1] - w[0] == 200_000));
    }

    #[test]
    fn constant_rate_that_does_not_divide_a_tick_stays_on_rate() {
        let times = arrivals(ScheduleConfig::fixed(3_333.0, Shape::Constant), 50_001);
        let rate = achieved_rate_per_s(&times);
        assert!((rate - 3_333.0).abs() < 0.01, "rate = {rate}");
        let gap = NANOS_PER_S / 3_333.0;
        assert!(times
            .windows(2)
            .all(|w| ((w[1] - w[0]) as f64 - gap).abs() <= 1.0));
    }

    #[test]
    fn poisson_rate_is_within_two_percent_over_100k_arrivals() {
        for seed in [1, 2, 3] {
            let times = arrivals(
                seeded(BaseRate::Fixed(20_000.0), Shape::Poisson, seed),
                100_000,
            );
            let rate = achieved_rate_per_s(&times);
            assert!(
                (rate / 20_000.0 - 1.0).abs() < 0.02,
                "seed {seed}: rate = {rate}"
            );
        }
    }

    #[test]
    fn poisson_gaps_look_exponential() {
        // For Exp, the standard deviation equals the mean, and about
        // 1 − e⁻¹ ≈ 63.2% of gaps are below the mean.
        let times = arrivals(
            seeded(BaseRate::Fixed(10_000.0), Shape::Poisson, 7),
            100_001,
        );
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.03,
            "cv = {}",
            var.sqrt() / mean
        );
        let below = gaps.iter().filter(|&&g| g < mean).count() as f64 / gaps.len() as f64;
        assert!((below - 0.632).abs() < 0.01, "below = {below}");
    }

    #[test]
    fn same_seed_gives_the_same_schedule_and_another_seed_does_not() {
        for shape in [Shape::Poisson, Shape::Spiky(SpikyConfig::default())] {
            let a = arrivals(seeded(BaseRate::Fixed(5_000.0), shape, 42), 20_000);
            let b = arrivals(seeded(BaseRate::Fixed(5_000.0), shape, 42), 20_000);
            let c = arrivals(seeded(BaseRate::Fixed(5_000.0), shape, 43), 20_000);
            assert_eq!(a, b, "{}", shape.name());
            assert_ne!(a, c, "{}", shape.name());
        }
    }

    #[test]
    fn arrivals_never_go_backwards() {
        let profile: Profile = "0s:100, 1s:50000, ramp 2s:0, 3s:2000".parse().unwrap();
        for shape in [
            Shape::Constant,
            Shape::Poisson,
            Shape::Spiky(SpikyConfig::default()),
        ] {
            let times = arrivals(seeded(BaseRate::Profile(profile.clone()), shape, 5), 60_000);
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}", shape.name());
        }
    }

    /// Arrivals per `window` over the first `span`.
    fn per_window(times: &[u64], window: Nanos, span: Nanos) -> Vec<f64> {
        let slots = (span.as_u64() / window.as_u64()) as usize;
        let mut counts = vec![0u64; slots];
        for &t in times {
            if let Some(c) = counts.get_mut((t / window.as_u64()) as usize) {
                *c += 1;
            }
        }
        let per_s = NANOS_PER_S / window.as_u64() as f64;
        counts.into_iter().map(|c| c as f64 * per_s).collect()
    }

    #[test]
    fn spiky_has_spikes_well_above_a_noisy_base_rate() {
        let config = seeded(
            BaseRate::Fixed(2_000.0),
            Shape::Spiky(SpikyConfig::default()),
            9,
        );
        let mut schedule = Schedule::new(config).unwrap();
        let mut times = Vec::new();
        while let Some(t) = schedule.next_arrival() {
            if t >= Nanos::from_secs(60) {
                break;
            }
            times.push(t.as_u64());
        }
        // About 60 s × 0.2/s = 12 spikes; seeded, so the exact count is fixed.
        assert!(
            (5..=25).contains(&schedule.spikes()),
            "spikes = {}",
            schedule.spikes()
        );
        let mut rates = per_window(&times, Nanos::from_millis(100), Nanos::from_secs(60));
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let peak = rates[rates.len() - 1];
        assert!((median / 2_000.0 - 1.0).abs() < 0.25, "median = {median}");
        assert!(peak > 2.5 * 2_000.0, "peak = {peak}");
        // Between spikes the noise moves the rate but keeps it within its
        // ±15% band (plus Poisson counting noise over 100 ms windows).
        let p10 = rates[rates.len() / 10];
        assert!(p10 > 2_000.0 * 0.6, "p10 = {p10}");
    }

    #[test]
    fn ramp_up_rises_linearly_from_zero() {
        let config = ScheduleConfig {
            rate: BaseRate::Fixed(10_000.0),
            shape: Shape::Constant,
            seed: 0,
            ramp_up: Nanos::from_secs(2),
        };
        let times = arrivals(config, 40_000);
        // Over the ramp Λ(t) = R t² / 2D: half the rate's arrivals in 2 s.
        let in_ramp = times.iter().filter(|&&t| t < 2_000_000_000).count();
        assert!(
            (in_ramp as f64 - 10_000.0).abs() < 5.0,
            "in_ramp = {in_ramp}"
        );
        let first_half = times.iter().filter(|&&t| t < 1_000_000_000).count();
        assert!(
            (first_half as f64 - 2_500.0).abs() < 5.0,
            "first_half = {first_half}"
        );
        let after: Vec<u64> = times
            .iter()
            .copied()
            .filter(|&t| t >= 2_000_000_000)
            .collect();
        assert!((achieved_rate_per_s(&after) - 10_000.0).abs() < 1.0);
    }

    #[test]
    fn profile_steps_ramps_and_ends() {
        let profile: Profile = "0s:1000, 1s:4000, ramp 2s:0, end 3s".parse().unwrap();
        let times = arrivals(
            seeded(BaseRate::Profile(profile), Shape::Constant, 0),
            1_000_000,
        );
        let in_range = |a: u64, b: u64| {
            times
                .iter()
                .filter(|&&t| t >= a * 1_000_000 && t < b * 1_000_000)
                .count()
        };
        assert!(
            in_range(0, 1_000).abs_diff(1_000) <= 1,
            "{}",
            in_range(0, 1_000)
        );
        // The ramp from 4000/s to 0 over 1 s carries 2000 arrivals.
        assert!(
            in_range(1_000, 2_000).abs_diff(2_000) <= 2,
            "{}",
            in_range(1_000, 2_000)
        );
        // Rate 0 from 2 s to the end at 3 s: nothing (the arrival that
        // completes the ramp's integral may land on 2 s itself), then the
        // schedule ends.
        assert_eq!(in_range(2_001, 10_000), 0);
        assert!(times.len() < 1_000_000);
    }

    #[test]
    fn profile_ending_at_rate_zero_ends_the_schedule() {
        let profile: Profile = "0s:1000, 1s:0".parse().unwrap();
        let times = arrivals(
            seeded(BaseRate::Profile(profile), Shape::Poisson, 3),
            1_000_000,
        );
        assert!(times.len() < 1_500, "{}", times.len());
        assert!(times.iter().all(|&t| t < 1_000_000_000));
    }

    #[test]
    fn profile_parse_errors_are_typed() {
        let err = |s: &str| s.parse::<Profile>().unwrap_err();
        assert_eq!(
            err(""),
            ScheduleError::BadProfilePoint {
                index: 0,
                text: String::new()
            }
        );
        assert_eq!(err("1s:100"), ScheduleError::ProfileMustStartAtZero);
        assert_eq!(err("ramp 0s:100"), ScheduleError::ProfileMustStartAtZero);
        assert_eq!(
            err("0s:100, 5s:10, 5s:20"),
            ScheduleError::ProfileNotIncreasing { index: 2 }
        );
        assert_eq!(
            err("0s:100, end 0s"),
            ScheduleError::ProfileNotIncreasing { index: 1 }
        );
        assert_eq!(
            err("0s:fast"),
            ScheduleError::BadRate {
                text: "fast".into()
            }
        );
        assert_eq!(
            err("0s:-5"),
            ScheduleError::RateOutOfRange {
                rate_per_s: -5.0,
                max: RATE_PER_S_MAX
            }
        );
        assert_eq!(
            err("0:100"),
            ScheduleError::BadDuration { text: "0".into() }
        );
        assert_eq!(
            err("0s:100, 1h:5"),
            ScheduleError::BadDuration { text: "1h".into() }
        );
        assert_eq!(
            err("0s:100, end 2s, 3s:4"),
            ScheduleError::BadProfilePoint {
                index: 2,
                text: "3s:4".into()
            }
        );
        assert_eq!(
            err("0s 100"),
            ScheduleError::BadProfilePoint {
                index: 0,
                text: "0s 100".into()
            }
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("250us"), Ok(Nanos(250_000)));
        assert_eq!(parse_duration("1.5s"), Ok(Nanos(1_500_000_000)));
        assert_eq!(parse_duration("2m"), Ok(Nanos::from_secs(120)));
        assert_eq!(parse_duration("7ns"), Ok(Nanos(7)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn bad_configs_are_refused() {
        assert_eq!(
            Schedule::new(ScheduleConfig::fixed(0.0, Shape::Constant)).unwrap_err(),
            ScheduleError::ZeroRate
        );
        assert!(matches!(
            Schedule::new(ScheduleConfig::fixed(f64::NAN, Shape::Poisson)),
            Err(ScheduleError::RateOutOfRange { .. })
        ));
        let spiky = SpikyConfig {
            factor: 1.0,
            ..SpikyConfig::default()
        };
        assert!(matches!(
            Schedule::new(ScheduleConfig::fixed(10.0, Shape::Spiky(spiky))),
            Err(ScheduleError::BadSpiky { .. })
        ));
        assert_eq!(
            "sawtooth".parse::<Shape>(),
            Err(ScheduleError::UnknownShape {
                name: "sawtooth".into()
            })
        );
    }
}
