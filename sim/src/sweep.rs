//! Many seeds at once, and the shrinking of a failing one.
//!
//! A sweep runs one simulation per OS thread at a time (each simulation is
//! single-threaded and shares nothing), taking seeds from a shared counter,
//! so all cores stay busy whatever each run costs. Results come back sorted
//! by seed: the report of a sweep does not depend on the scheduling.
//!
//! A sweep too big for one machine is cut into [`Shard`]s: shard `I/N`
//! runs the seeds with `seed % N == I - 1`, a partition that depends on
//! nothing but the seed, so N machines given `1/N` … `N/N` cover every seed
//! exactly once, and [`merge`] puts their results back together.

use std::fmt;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::str::FromStr;
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

/// Runs one seed; a panic anywhere in it (harness, driver or product) is
/// that seed's failure, not the sweep's end. The release profile unwinds,
/// so the panic is caught here rather than in a child process per seed.
fn run_caught(config: &RunConfig) -> SeedResult {
    // A run owns everything it touches (its turmoil sim, hosts and recorder
    // are dropped while unwinding), so nothing half-updated is seen after.
    match panic::catch_unwind(AssertUnwindSafe(|| run(config))) {
        Ok(outcome) => summarize(&outcome),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".to_owned());
            SeedResult {
                seed: config.seed,
                digest: 0,
                answered: 0,
                failure: Some(format!("{PANICKED}: {message}")),
            }
        }
    }
}

/// The invariant name a seed that panicked fails with.
pub const PANICKED: &str = "the run panicked";

/// Runs `config(seed)` for every seed in `seeds` on `threads` threads.
pub fn sweep(config: impl Fn(u64) -> RunConfig + Sync, seeds: Range<u64>, threads: usize) -> Sweep {
    sweep_shard(config, seeds, Shard::WHOLE, threads)
}

/// Runs `config(seed)` for the seeds of `seeds` that belong to `shard`, on
/// `threads` threads.
pub fn sweep_shard(
    config: impl Fn(u64) -> RunConfig + Sync,
    seeds: Range<u64>,
    shard: Shard,
    threads: usize,
) -> Sweep {
    let started = Instant::now();
    // The shard's seeds are `first, first + N, …`: a counter of steps.
    let first = shard.first_seed(seeds.start);
    let stride = shard.count;
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let step = next.fetch_add(1, Ordering::Relaxed);
                let seed = match step.checked_mul(stride).and_then(|o| first.checked_add(o)) {
                    Some(seed) if seed < seeds.end => seed,
                    _ => return,
                };
                let config = config(seed);
                assert_eq!(config.seed, seed, "a sweep runs the seed it is given");
                let result = run_caught(&config);
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

/// One part of a sweep split over machines: the `index`-th (1-based) of
/// `count`. It holds the seeds with `seed % count == index - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1 … `count`.
    pub index: u64,
    /// How many shards the sweep is cut into (at least 1).
    pub count: u64,
}

impl Shard {
    /// The whole sweep: shard 1 of 1.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Shard `index` of `count`; `None` unless `1 <= index <= count`.
    pub fn new(index: u64, count: u64) -> Option<Shard> {
        (index >= 1 && index <= count).then_some(Shard { index, count })
    }

    /// Whether `seed` belongs to this shard.
    pub fn contains(self, seed: u64) -> bool {
        seed % self.count == self.index - 1
    }

    /// The smallest seed at or above `start` in this shard (may pass the
    /// end of the range; the caller checks).
    fn first_seed(self, start: u64) -> u64 {
        let offset = (self.index - 1 + self.count - start % self.count) % self.count;
        start.saturating_add(offset)
    }

    /// The seeds of `seeds` in this shard, in order.
    pub fn seeds(self, seeds: Range<u64>) -> impl Iterator<Item = u64> {
        seeds.filter(move |&s| self.contains(s))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A `--shard` that is not `I/N` with `1 <= I <= N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadShard(pub String);

impl fmt::Display for BadShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a shard I/N with 1 <= I <= N", self.0)
    }
}

impl std::error::Error for BadShard {}

impl FromStr for Shard {
    type Err = BadShard;

    fn from_str(s: &str) -> Result<Shard, BadShard> {
        let bad = || BadShard(s.to_owned());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i: u64 = i.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).ok_or_else(bad)
    }
}

/// Why shard results do not merge into one sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeError {
    /// Two shards both ran this seed (overlapping `--shard`s or a file
    /// given twice): the partition was not a partition.
    DuplicateSeed {
        /// The seed seen twice.
        seed: u64,
    },
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::DuplicateSeed { seed } => {
                write!(f, "seed {seed} appears in more than one shard result")
            }
        }
    }
}

impl std::error::Error for MergeError {}

/// Puts shard results back into one list sorted by seed, as one unsharded
/// sweep returns it. A seed present twice is an error, never silently kept
/// once: it means the shards overlapped.
pub fn merge(
    shards: impl IntoIterator<Item = Vec<SeedResult>>,
) -> Result<Vec<SeedResult>, MergeError> {
    let mut all: Vec<SeedResult> = shards.into_iter().flatten().collect();
    all.sort_by_key(|r| r.seed);
    if let Some(pair) = all.windows(2).find(|w| w[0].seed == w[1].seed) {
        return Err(MergeError::DuplicateSeed { seed: pair[0].seed });
    }
    Ok(all)
}

/// The threads a sweep uses: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The invariant `config` breaks first, or [`PANICKED`] when the run
/// itself panics (caught here as [`sweep`] catches it, so that shrinking a
/// panicking seed goes on and ends in a smaller run that still panics).
fn failure_of(config: &RunConfig) -> Option<String> {
    match panic::catch_unwind(AssertUnwindSafe(|| run(config))) {
        Ok(outcome) => outcome.first_failure().map(|v| v.name.to_owned()),
        Err(_) => Some(PANICKED.to_owned()),
    }
}

fn fails_like(config: &RunConfig, invariant: &str) -> bool {
    failure_of(config).is_some_and(|name| name == invariant)
}

/// The smallest run found that still breaks the invariant `config` breaks
/// (a panic of the run counts as one, [`PANICKED`]): faults pinned to
/// their seeded times, then dropped one by one, then the pings halved,
/// each step kept only while the same invariant still fails. `None` if
/// `config` passes.
pub fn shrink(config: &RunConfig) -> Option<RunConfig> {
    let invariant = failure_of(config)?;
    let invariant = invariant.as_str();
    // The faults as the run resolves them, without the run's outcome (a
    // run that panicked has none).
    let faults = config
        .faults
        .resolve(config.seed, config.horizon_ms(), config.clients);
    let mut best = RunConfig {
        faults: FaultPlan::pinned(&faults),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_seed_exactly_once() {
        for count in 1..=7u64 {
            for start in [0u64, 1, 5, 13] {
                let seeds = start..start + 50;
                let mut seen = vec![0u32; 50];
                for index in 1..=count {
                    let shard = Shard::new(index, count).unwrap();
                    for seed in shard.seeds(seeds.clone()) {
                        seen[(seed - start) as usize] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|&n| n == 1),
                    "{count} shards from {start}: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn a_shards_first_seed_is_its_smallest_member() {
        for count in 1..=5u64 {
            for index in 1..=count {
                let shard = Shard::new(index, count).unwrap();
                for start in 0..12u64 {
                    let expected = (start..).find(|&s| shard.contains(s)).unwrap();
                    assert_eq!(shard.first_seed(start), expected, "{shard} from {start}");
                }
            }
        }
    }

    #[test]
    fn shard_flags_parse_and_bad_ones_are_refused() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!("1/1".parse(), Ok(Shard::WHOLE));
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/2/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} was accepted");
        }
    }

    fn result(seed: u64) -> SeedResult {
        SeedResult {
            seed,
            digest: seed * 31,
            answered: 10,
            failure: (seed == 4).then(|| "exactly_once: lost".to_owned()),
        }
    }

    #[test]
    fn merge_sorts_by_seed_and_refuses_a_seed_twice() {
        let merged = merge([vec![result(1), result(3)], vec![result(0), result(2)]]).unwrap();
        let seeds: Vec<u64> = merged.iter().map(|r| r.seed).collect();
        assert_eq!(seeds, vec![0, 1, 2, 3]);
        assert_eq!(
            merge([vec![result(1)], vec![result(1)]]),
            Err(MergeError::DuplicateSeed { seed: 1 })
        );
    }
}
