//! What the seed-sweep tests share: the seeds a sweep runs (from the
//! environment, or the test's default) and the one assertion that a sweep
//! passed, printing every failing seed with the `fepsim` command that
//! reproduces it.

use std::ops::Range;

use fep_sim::run::{Outcome, RunConfig};
use fep_sim::sweep::{default_threads, sweep};

/// `name` from the environment, as a number; a value that is not one
/// stops the test with one clear line.
pub fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// `FEP_SIM_SEED=N` runs seed `N` alone; `FEP_SIM_SEEDS=N` runs `0..N`;
/// otherwise `0..default`.
pub fn seeds(default: u64) -> Range<u64> {
    match env_u64("FEP_SIM_SEED") {
        Some(seed) => seed..seed + 1,
        None => 0..env_u64("FEP_SIM_SEEDS").unwrap_or(default),
    }
}

/// Sweeps `seeds` of `config` and asserts every seed passed and round
/// trips ran; a failure lists each failing seed and its replay command.
pub fn assert_sweep_passes(config: impl Fn(u64) -> RunConfig + Sync, seeds: Range<u64>) {
    let result = sweep(&config, seeds, default_threads());
    let failures: Vec<String> = result
        .failures()
        .map(|f| {
            format!(
                "seed {}: {}\n  reproduce: {}",
                f.seed,
                f.failure.as_deref().unwrap_or(""),
                config(f.seed).command()
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        result.results.len(),
        failures.join("\n")
    );
    assert!(result.round_trips() > 0, "the sweep ran no round trip");
}

/// One run passed; its first failure and the command that replays it
/// otherwise. (Used by the order tests, not the sweeps.)
#[allow(dead_code)]
pub fn assert_passed(outcome: &Outcome) {
    assert!(
        outcome.passed(),
        "{:?}\n  reproduce: {}",
        outcome.first_failure(),
        outcome.config.command()
    );
}
