//! `fepsim sweep --json` lines and `fepsim merge`: a sweep cut into shards
//! on many machines, put back together into one report.
//!
//! One line per seed, one JSON object each:
//!
//! ```json
//! {"scenario":"s3","seed":7,"digest":"9f3c0a7e12b4d5e6","answered":1000,"passed":true,"failure":null,"replay":"fepsim run s3 --seed 7 …"}
//! ```
//!
//! The digest is a hex string: as a JSON number a `u64` would lose bits in
//! any reader that parses numbers as doubles.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fep_sim::sweep::{merge, MergeError, SeedResult};
use serde::{Deserialize, Serialize};

/// One seed's result as `fepsim sweep --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedLine {
    /// `s1`, `s2` or `s3`.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The trace digest, 16 hex digits.
    pub digest: String,
    /// Round trips answered.
    pub answered: u64,
    /// True when every invariant held.
    pub passed: bool,
    /// The first broken invariant and its first violation.
    pub failure: Option<String>,
    /// The `fepsim run …` command that repeats this seed bit for bit.
    pub replay: String,
}

impl SeedLine {
    /// The line of `result` in `scenario`, repeated by `replay`.
    pub fn new(scenario: &str, result: &SeedResult, replay: &str) -> SeedLine {
        SeedLine {
            scenario: scenario.to_owned(),
            seed: result.seed,
            digest: format!("{:016x}", result.digest),
            answered: result.answered,
            passed: result.failure.is_none(),
            failure: result.failure.clone(),
            replay: replay.to_owned(),
        }
    }

    fn result(&self) -> Result<SeedResult, String> {
        let digest = u64::from_str_radix(&self.digest, 16)
            .map_err(|_| format!("seed {}: digest {:?} is not hex", self.seed, self.digest))?;
        if self.passed != self.failure.is_none() {
            return Err(format!(
                "seed {}: `passed` and `failure` disagree",
                self.seed
            ));
        }
        Ok(SeedResult {
            seed: self.seed,
            digest,
            answered: self.answered,
            failure: self.failure.clone(),
        })
    }
}

/// The JSON text of one seed's line (no newline).
pub fn seed_line(scenario: &str, result: &SeedResult, replay: &str) -> String {
    let line = SeedLine::new(scenario, result, replay);
    serde_json::to_string(&line).expect("a SeedLine always serialises")
}

/// Parses a file of seed lines; blank lines are skipped, any other line
/// that is not a seed line is an error naming its line number.
pub fn read_seed_lines(text: &str) -> Result<Vec<SeedLine>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| format!("line {}: not a seed line: {e}", n + 1))
        })
        .collect()
}

/// A merged sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// Every seed of every scenario, scenarios in name order, seeds in
    /// order.
    pub seeds: Vec<SeedLine>,
    /// Seeds that failed.
    pub failed: usize,
    /// Seeds of the expected range that no shard reported (a shard that
    /// crashed or was never run), over all scenarios.
    pub missing: u64,
    /// The report: a count per scenario, then each failing seed with its
    /// replay command.
    pub text: String,
}

/// Merges the shards' lines. A seed of a scenario in two shards is an
/// error: the shards overlapped. With `expected`, every scenario must have
/// every seed of the range, and the seeds missing are counted and named.
pub fn merge_report(
    shards: Vec<Vec<SeedLine>>,
    expected: Option<std::ops::Range<u64>>,
) -> Result<MergeReport, String> {
    // scenario -> shard -> its seeds, so `merge` checks each scenario.
    let mut by_scenario: BTreeMap<String, Vec<Vec<SeedLine>>> = BTreeMap::new();
    for shard in shards {
        let mut parts: BTreeMap<String, Vec<SeedLine>> = BTreeMap::new();
        for line in shard {
            parts.entry(line.scenario.clone()).or_default().push(line);
        }
        for (scenario, lines) in parts {
            by_scenario.entry(scenario).or_default().push(lines);
        }
    }
    let mut seeds = Vec::new();
    let mut text = String::new();
    let mut missing_total = 0;
    for (scenario, shards) in by_scenario {
        let mut replay: BTreeMap<u64, SeedLine> = BTreeMap::new();
        let mut results = Vec::new();
        for shard in shards {
            let mut part = Vec::with_capacity(shard.len());
            for line in shard {
                part.push(line.result()?);
                replay.insert(line.seed, line);
            }
            results.push(part);
        }
        let merged = merge(results).map_err(|e: MergeError| format!("{scenario}: {e}"))?;
        let failed: Vec<&SeedResult> = merged.iter().filter(|r| r.failure.is_some()).collect();
        let (first, last) = (
            merged.first().map(|r| r.seed),
            merged.last().map(|r| r.seed),
        );
        let _ = writeln!(
            text,
            "{scenario}: {} seeds ({}..={}), {} failed, {} round trips",
            merged.len(),
            first.unwrap_or(0),
            last.unwrap_or(0),
            failed.len(),
            merged.iter().map(|r| r.answered).sum::<u64>()
        );
        for r in &failed {
            let _ = writeln!(
                text,
                "FAIL {scenario} seed {}: {}",
                r.seed,
                r.failure.as_deref().unwrap_or("")
            );
            let _ = writeln!(text, "  reproduce: {}", replay[&r.seed].replay);
        }
        if let Some(range) = &expected {
            let missing: Vec<u64> = range.clone().filter(|s| !replay.contains_key(s)).collect();
            if let Some(first) = missing.first() {
                let _ = writeln!(
                    text,
                    "MISSING {scenario}: {} of {}..{} never reported (first: seed {first})",
                    missing.len(),
                    range.start,
                    range.end
                );
            }
            missing_total += missing.len() as u64;
        }
        seeds.extend(merged.iter().map(|r| replay[&r.seed].clone()));
    }
    let failed = seeds.iter().filter(|s| !s.passed).count();
    let verdict = match (failed, missing_total) {
        (0, 0) => "PASS".to_owned(),
        (0, m) => format!("INCOMPLETE: {m} seed(s) missing"),
        (f, 0) => format!("FAIL: {f} seed(s)"),
        (f, m) => format!("FAIL: {f} seed(s), and {m} missing"),
    };
    let _ = writeln!(text, "{verdict}");
    Ok(MergeReport {
        seeds,
        failed,
        missing: missing_total,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(seed: u64, failure: Option<&str>) -> SeedResult {
        SeedResult {
            seed,
            digest: u64::MAX - seed,
            answered: 100 + seed,
            failure: failure.map(str::to_owned),
        }
    }

    fn line(seed: u64, failure: Option<&str>) -> SeedLine {
        SeedLine::new(
            "s3",
            &result(seed, failure),
            &format!("fepsim run s3 --seed {seed}"),
        )
    }

    #[test]
    fn a_seed_line_round_trips_through_json_with_every_digest_bit() {
        let text = seed_line(
            "s3",
            &result(7, Some("order: swapped")),
            "fepsim run s3 --seed 7",
        );
        let back = read_seed_lines(&format!("\n{text}\n\n")).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].result().unwrap(), result(7, Some("order: swapped")));
        assert!(text.contains(r#""digest":"fffffffffffffff8""#), "{text}");
        assert!(!back[0].passed);
    }

    #[test]
    fn a_line_that_is_not_a_seed_line_is_named_by_number() {
        let err = read_seed_lines("\n{\"seed\":1}\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn merged_shards_list_every_failure_with_its_replay_command() {
        let report = merge_report(
            vec![
                vec![line(0, None), line(2, Some("exactly_once: lost 1"))],
                vec![line(1, None), line(3, None)],
            ],
            None,
        )
        .unwrap();
        let seeds: Vec<u64> = report.seeds.iter().map(|s| s.seed).collect();
        assert_eq!(seeds, vec![0, 1, 2, 3]);
        assert_eq!(report.failed, 1);
        assert!(
            report.text.contains("s3: 4 seeds (0..=3), 1 failed"),
            "{}",
            report.text
        );
        assert!(
            report.text.contains(
                "FAIL s3 seed 2: exactly_once: lost 1\n  reproduce: fepsim run s3 --seed 2\n"
            ),
            "{}",
            report.text
        );
        assert!(report.text.ends_with("FAIL: 1 seed(s)\n"));
    }

    #[test]
    fn overlapping_shards_are_refused() {
        let err = merge_report(vec![vec![line(0, None)], vec![line(0, None)]], None).unwrap_err();
        assert!(
            err.contains("seed 0 appears in more than one shard"),
            "{err}"
        );
    }

    #[test]
    fn a_clean_merge_says_pass() {
        let report = merge_report(vec![vec![line(5, None)]], Some(5..6)).unwrap();
        assert_eq!((report.failed, report.missing), (0, 0));
        assert!(report.text.ends_with("PASS\n"));
    }

    #[test]
    fn a_shard_that_never_reported_is_counted_as_missing() {
        let report = merge_report(vec![vec![line(0, None), line(2, None)]], Some(0..4)).unwrap();
        assert_eq!(report.missing, 2);
        assert!(
            report
                .text
                .contains("MISSING s3: 2 of 0..4 never reported (first: seed 1)"),
            "{}",
            report.text
        );
        assert!(report.text.ends_with("INCOMPLETE: 2 seed(s) missing\n"));
    }
}
