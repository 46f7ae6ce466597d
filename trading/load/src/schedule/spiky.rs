//! The spiky shape's state: spring-damper noise around the base rate and
//! a Poisson timeline of spikes.

use super::*;

/// Stream ids that keep the arrival gaps and the spiky shape's decisions
/// independent: changing how many arrivals a tick holds does not shift when
/// spikes happen.
pub(super) const STREAM_ARRIVALS: u64 = 0;

pub(super) const STREAM_SHAPE: u64 = 1;

/// The spiky shape's evolving state: the noise and the spike timeline.
#[derive(Debug, Clone)]
pub(super) struct SpikyState {
    pub(super) config: SpikyConfig,
    pub(super) rng: ChaCha8Rng,
    pub(super) noise: f64,
    pub(super) noise_target: f64,
    pub(super) noise_velocity: f64,
    /// Start of the current or next spike, in ns from the schedule's start.
    pub(super) spike_start: f64,
    /// Peaks seen so far (for tests and reports).
    pub(super) spikes: u64,
}

/// kar98k's spring-damper constants: pull towards the target, keep a third
/// of the velocity each step; a new target with probability 0.1 per step.
pub(super) const NOISE_SPRING: f64 = 0.1;

pub(super) const NOISE_DAMPING: f64 = 0.3;

pub(super) const NOISE_RETARGET_P: f64 = 0.1;

impl SpikyState {
    pub(super) fn new(config: SpikyConfig, seed: u64) -> Result<SpikyState, ScheduleError> {
        if !(config.spikes_per_s.is_finite() && config.spikes_per_s > 0.0) {
            return Err(ScheduleError::BadSpiky {
                what: "spikes_per_s must be > 0",
            });
        }
        if !(config.factor.is_finite() && config.factor > 1.0) {
            return Err(ScheduleError::BadSpiky {
                what: "factor must be > 1",
            });
        }
        if !(0.0..1.0).contains(&config.noise_amplitude) {
            return Err(ScheduleError::BadSpiky {
                what: "noise_amplitude must be in [0, 1)",
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_SHAPE);
        let mut state = SpikyState {
            config,
            rng,
            noise: 0.0,
            noise_target: 0.0,
            noise_velocity: 0.0,
            spike_start: 0.0,
            spikes: 0,
        };
        state.spike_start = state.spike_gap();
        Ok(state)
    }

    pub(super) fn spike_gap(&mut self) -> f64 {
        exponential(&mut self.rng) / self.config.spikes_per_s * NANOS_PER_S
    }

    pub(super) fn spike_len(&self) -> f64 {
        (self.config.ramp_up + self.config.peak + self.config.ramp_down).as_u64() as f64
    }

    pub(super) fn step_noise(&mut self) {
        let amplitude = self.config.noise_amplitude;
        if self.rng.random::<f64>() < NOISE_RETARGET_P {
            self.noise_target = (self.rng.random::<f64>() * 2.0 - 1.0) * amplitude;
        }
        self.noise_velocity =
            self.noise_velocity * NOISE_DAMPING + NOISE_SPRING * (self.noise_target - self.noise);
        self.noise += self.noise_velocity;
        if self.noise.abs() > amplitude {
            self.noise = self.noise.clamp(-amplitude, amplitude);
            self.noise_velocity = 0.0;
        }
    }

    /// The multiplier on the base rate at `t` (ns). Called with rising `t`.
    pub(super) fn multiplier(&mut self, t: f64) -> f64 {
        while t >= self.spike_start + self.spike_len() {
            self.spikes += 1;
            self.spike_start += self.spike_len() + self.spike_gap();
        }
        let spike = if t < self.spike_start {
            0.0
        } else {
            let into = t - self.spike_start;
            let up = self.config.ramp_up.as_u64() as f64;
            let peak = self.config.peak.as_u64() as f64;
            let down = self.config.ramp_down.as_u64() as f64;
            if into < up {
                into / up
            } else if into < up + peak {
                1.0
            } else {
                1.0 - (into - up - peak) / down
            }
        };
        (1.0 + self.noise) * (1.0 + (self.config.factor - 1.0) * spike)
    }
}
