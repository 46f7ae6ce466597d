//! Many seeds at once, and the shrinking of a failing one.
//!
//! A sweep runs one simulation per OS thread at a time (each simulation is
//! single-threaded and shares nothing), taking seeds from a shared counter,
//! so all cores stay busy whatever each run costs. Results come back sorted
//! by seed: the report of a sweep does not depend on the scheduling.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::faults::FaultPlan;
use crate::run::{run, Outcome, RunConfig};

/// One seed's result, kept small for a sweep of thousands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// The trace digest.
    pub digest: u64,
    /// Round trips answered (pongs and rejects read by the clients).
    pub answered: u64,
    /// The first broken invariant and its first violation, if any.
    pub failure: Option<String>,
}

/// What a sweep found.
#[derive(Debug)]
pub struct Sweep {
    /// Every seed, in order.
    pub results: Vec<SeedResult>,
    /// Wall-clock time of the sweep.
    pub wall: Duration,
}

impl Sweep {
    /// The failed seeds.
    pub fn failures(&self) -> impl Iterator<Item = &SeedResult> {
        self.results.iter().filter(|r| r.failure.is_some())
    }

    /// Simulated round trips over all seeds.
    pub fn round_trips(&self) -> u64 {
        self.results.iter().map(|r| r.answered).sum()
    }
}

fn summarize(outcome: &Outcome) -> SeedResult {
    let failure = outcome.first_failure().map(|v| {
        let first = v.violations.first().map_or("", String::as_str);
        format!("{}: {first}", v.name)
    });
    SeedResult {
        seed: outcome.config.seed,
        digest: outcome.digest,
        answered: outcome.answered,
        failure,
    }
}

/// Runs `config(seed)` for every seed in `seeds` on `threads` threads.
pub fn sweep(config: impl Fn(u64) -> RunConfig + Sync, seeds: Range<u64>, threads: usize) -> Sweep {
    let started = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let config = config(seed);
                assert_eq!(config.seed, seed, "a sweep runs the seed it is given");
                let result = summarize(&run(&config));
                results
                    .lock()
                    .expect("no thread panics holding it")
                    .push(result);
            });
        }
    });
    let mut results = results.into_inner().expect("threads joined");
    results.sort_by_key(|r| r.seed);
    Sweep {
        results,
        wall: started.elapsed(),
    }
}

/// The threads a sweep uses: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn fails_like(config: &RunConfig, invariant: &str) -> bool {
    run(config)
        .first_failure()
        .is_some_and(|v| v.name == invariant)
}

/// The smallest run found that still breaks the invariant `config` breaks:
/// faults pinned to their seeded times, then dropped one by one, then the
/// pings halved, each step kept only while the same invariant still fails.
/// `None` if `config` passes.
pub fn shrink(config: &RunConfig) -> Option<RunConfig> {
    let first = run(config);
    let invariant = first.first_failure()?.name;
    let mut best = RunConfig {
        faults: FaultPlan::pinned(&first.faults),
        ..config.clone()
    };
    let mut i = 0;
    while i < best.faults.items.len() {
        let mut candidate = best.clone();
        candidate.faults.items.remove(i);
        if fails_like(&candidate, invariant) {
            best = candidate;
        } else {
            i += 1;
        }
    }
    while best.pings > 1 {
        let candidate = RunConfig {
            pings: best.pings / 2,
            ..best.clone()
        };
        if !fails_like(&candidate, invariant) {
            break;
        }
        best = candidate;
    }
    let mut step = best.pings / 4;
    while step > 0 {
        let candidate = RunConfig {
            pings: best.pings - step,
            ..best.clone()
        };
        if candidate.pings > 0 && fails_like(&candidate, invariant) {
            best = candidate;
        } else {
            step /= 2;
        }
    }
    Some(best)
}
