//! `fepbench compare A B`: did B change against A, for real or by noise?
//!
//! Each side is a results directory (one run, or a sweep of repeated runs).
//! For every scenario in both and every metric, the per-run values of A and
//! B are compared with the Mann–Whitney U test (two-sided, as benchstat
//! does): it assumes no distribution, only that runs are independent, and a
//! single wild run cannot drag it the way it drags a mean. A change is
//! reported only when `p < alpha`; otherwise the row says the difference is
//! inside the noise, whatever the medians say. With one run a side there is
//! no test, and the row says so.
//!
//! `--fail-on METRIC:+X%` gates CI: it fails on a *significant* change of
//! METRIC's median past X% in the sign given (`p99:+10%`: ten percent
//! slower; `throughput:-5%`: five percent fewer msgs/s).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::report::{find_runs, group_by_scenario, FoundRun, Spread};
use super::summary::{LatencySummary, Percentile, RunSummary};

/// The significance level of the tests.
pub const ALPHA_DEFAULT: f64 = 0.05;

/// Resamples of the bootstrap interval of a change.
pub const BOOTSTRAP_RESAMPLES: usize = 2_000;

/// The bootstrap's seed: a report is the same every time it is rebuilt.
const BOOTSTRAP_SEED: u64 = 0x5eed_b007;

/// Above this many runs in all, or with ties, the U test uses the normal
/// approximation; at or below, the exact distribution (as benchstat).
pub const EXACT_RUNS_MAX: usize = 50;

/// A figure read from each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A percentile of the round trip.
    Rtt(Percentile),
    /// The median of hop 1–4.
    Hop(u8),
    /// Answered pings per second.
    Throughput,
}

impl Metric {
    /// Every metric `compare` reports, in table order.
    pub const ALL: [Metric; 9] = [
        Metric::Rtt(Percentile::P50),
        Metric::Rtt(Percentile::P99),
        Metric::Rtt(Percentile::P999),
        Metric::Rtt(Percentile::Max),
        Metric::Hop(1),
        Metric::Hop(2),
        Metric::Hop(3),
        Metric::Hop(4),
        Metric::Throughput,
    ];

    /// The name used in tables and in `--fail-on`: `p50`, `p99`, `p99.9`,
    /// `max` (of the rtt), `hop1` … `hop4` (their p50), `throughput`.
    pub fn name(self) -> String {
        match self {
            Metric::Rtt(p) => p.label().to_string(),
            Metric::Hop(n) => format!("hop{n}"),
            Metric::Throughput => "throughput".to_string(),
        }
    }

    /// The unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Throughput => "msgs/s",
            _ => "µs",
        }
    }

    /// True when a larger value is worse (latency), false for throughput.
    pub fn larger_is_worse(self) -> bool {
        !matches!(self, Metric::Throughput)
    }

    /// Parses a metric name (`rtt.p99` is accepted for `p99`).
    pub fn parse(text: &str) -> Option<Metric> {
        let text = text.strip_prefix("rtt.").unwrap_or(text);
        Metric::ALL.into_iter().find(|m| m.name() == text)
    }

    /// The metric's value in one run, if the run has it.
    pub fn of(self, run: &RunSummary) -> Option<f64> {
        let l = run.loadgen.as_ref()?;
        match self {
            Metric::Rtt(p) => Some(l.rtt.at(p)),
            Metric::Hop(n) => l.hops()[usize::from(n) - 1].map(|h: &LatencySummary| h.p50_us),
            Metric::Throughput => Some(l.throughput_msgs_per_s),
        }
    }
}

/// A `--fail-on` rule: fail on a significant change of `metric` past
/// `change_pct` (signed: `+10` slower/higher, `-5` lower).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// The metric watched.
    pub metric: Metric,
    /// The threshold in percent of A's median, with its sign.
    pub change_pct: f64,
}

impl Gate {
    /// Parses `p99:+10%` (the `%` and the `+` are optional; a threshold
    /// of 0 is refused, it would make every significant change fatal in
    /// neither direction).
    pub fn parse(text: &str) -> Result<Gate, String> {
        let bad = |why: &str| format!("--fail-on {text:?}: {why} (expected e.g. p99:+10%)");
        let (metric, threshold) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let metric = Metric::parse(metric.trim()).ok_or_else(|| {
            let names: Vec<String> = Metric::ALL.iter().map(|m| m.name()).collect();
            bad(&format!("unknown metric; use one of {}", names.join(", ")))
        })?;
        let number = threshold.trim().trim_end_matches('%');
        let change_pct: f64 = number
            .parse()
            .map_err(|_| bad("the threshold is not a number"))?;
        if !change_pct.is_finite() || change_pct == 0.0 {
            return Err(bad("the threshold must be a non-zero percentage"));
        }
        Ok(Gate { metric, change_pct })
    }

    /// True when `row` breaks the rule: significant, and its change in
    /// the rule's direction at least the threshold.
    pub fn fails(&self, row: &Row) -> bool {
        row.metric == self.metric.name()
            && row.significant
            && row.change_pct.is_some_and(|c| {
                if self.change_pct > 0.0 {
                    c >= self.change_pct
                } else {
                    c <= self.change_pct
                }
            })
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:+}%", self.metric.name(), self.change_pct)
    }
}

/// The outcome of a two-sided Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UTest {
    /// U of the first sample.
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// The smallest p-value these sample sizes can give at all: above
    /// alpha, no difference can ever be significant.
    pub p_value_min: f64,
    /// Exact distribution (true) or the normal approximation.
    pub exact: bool,
}

/// Mann–Whitney U of `a` against `b`; `None` when a side is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<UTest> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let n = n1 + n2;
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Mid-ranks for ties; `tie_term` is Σ(t³ − t) over tie groups.
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + j + 1) as f64 / 2.0;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        rank_sum_a += mid_rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let u = rank_sum_a - (n1 * (n1 + 1)) as f64 / 2.0;
    let exact = tie_term == 0.0 && n <= EXACT_RUNS_MAX;
    let p_value_min = exact_p_value_min(n1, n2);
    let p_value = if exact {
        exact_two_sided(u as usize, n1, n2)
    } else {
        normal_two_sided(u, n1, n2, tie_term)
    };
    Some(UTest {
        u,
        p_value,
        p_value_min,
        exact,
    })
}

/// `counts[u]`: how many of the C(n1+n2, n1) equally likely orderings give
/// the first sample the statistic U = u (no ties).
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    // dp[k][s]: ways to choose k of the ranks seen so far with rank sum s.
    let n = n1 + n2;
    let s_max = n * (n + 1) / 2;
    let mut dp = vec![vec![0.0f64; s_max + 1]; n1 + 1];
    dp[0][0] = 1.0;
    for rank in 1..=n {
        for k in (1..=n1.min(rank)).rev() {
            for s in (rank..=s_max).rev() {
                dp[k][s] += dp[k - 1][s - rank];
            }
        }
    }
    let offset = n1 * (n1 + 1) / 2;
    dp[n1][offset..=offset + n1 * n2].to_vec()
}

fn exact_two_sided(u: usize, n1: usize, n2: usize) -> f64 {
    let counts = u_distribution(n1, n2);
    let total: f64 = counts.iter().sum();
    let below: f64 = counts[..=u].iter().sum();
    let above: f64 = counts[u..].iter().sum();
    (2.0 * below.min(above) / total).min(1.0)
}

fn exact_p_value_min(n1: usize, n2: usize) -> f64 {
    if n1 + n2 > EXACT_RUNS_MAX {
        // Large samples reach any p-value that matters here.
        return 0.0;
    }
    let counts = u_distribution(n1, n2);
    let total: f64 = counts.iter().sum();
    (2.0 * counts[0] / total).min(1.0)
}

fn normal_two_sided(u: f64, n1: usize, n2: usize, tie_term: f64) -> f64 {
    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        // Every value equal: nothing differs.
        return 1.0;
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / variance.sqrt();
    erfc(z / std::f64::consts::SQRT_2).min(1.0)
}

/// The complementary error function, to about 1e-7 (W. J. Cody's rational
/// approximation as in Numerical Recipes' `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// One side of a row: its per-run values and their spread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// Runs that had the metric.
    pub runs: usize,
    /// Median across runs.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// The values, in run order.
    pub values: Vec<f64>,
}

impl Side {
    fn of(values: Vec<f64>) -> Option<Side> {
        let s = Spread::of(&values)?;
        Some(Side {
            runs: values.len(),
            median: s.median,
            min: s.min,
            max: s.max,
            values,
        })
    }
}

/// What a row concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significantly worse in B.
    Regression,
    /// Significantly better in B.
    Improvement,
    /// The test ran and the difference is inside the noise.
    NoSignificantChange,
    /// Too few runs for a test at this alpha (one a side, or a minimum
    /// p-value above alpha).
    NoTestPossible,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::NoSignificantChange => "~ (noise)",
            Verdict::NoTestPossible => "no test possible",
        }
    }
}

/// One metric of one scenario, A against B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The scenario (or baseline leg) name.
    pub scenario: String,
    /// The metric's name.
    pub metric: String,
    /// Its unit.
    pub unit: &'static str,
    /// A's runs.
    pub a: Side,
    /// B's runs.
    pub b: Side,
    /// B's median against A's, in percent; `None` when A's median is 0.
    pub change_pct: Option<f64>,
    /// The test, when one was possible.
    pub test: Option<UTest>,
    /// A 95% bootstrap interval of the change in percent (medians of
    /// resampled runs, percentile method), when both sides have two runs
    /// or more: how large the change may be, which the test does not say.
    pub change_ci95_pct: Option<(f64, f64)>,
    /// `p < alpha`.
    pub significant: bool,
    /// The conclusion.
    pub verdict: Verdict,
    /// Why there was no test, when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// A's directory.
    pub a: String,
    /// B's directory.
    pub b: String,
    /// The significance level.
    pub alpha: f64,
    /// The commits each side was measured at.
    pub commits_a: Vec<String>,
    /// B's.
    pub commits_b: Vec<String>,
    /// Every row, scenarios in name order, metrics in [`Metric::ALL`] order.
    pub rows: Vec<Row>,
    /// Scenarios only one side has.
    pub unmatched: Vec<String>,
    /// Each `--fail-on` rule and the rows that broke it.
    pub gates: Vec<GateResult>,
}

/// A `--fail-on` rule's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    /// The rule as given, normalised (`p99:+10%`).
    pub rule: String,
    /// The `scenario metric` rows that broke it.
    pub broken_by: Vec<String>,
}

impl Comparison {
    /// True when any gate was broken (`fepbench compare` exits 1).
    pub fn failed(&self) -> bool {
        self.gates.iter().any(|g| !g.broken_by.is_empty())
    }
}

/// Compares the complete runs of `a` and `b` per scenario and metric.
pub fn compare_runs(
    a: &[FoundRun],
    b: &[FoundRun],
    alpha: f64,
    gates: &[Gate],
) -> (Vec<Row>, Vec<String>, Vec<GateResult>) {
    let (ga, gb) = (group_by_scenario(a), group_by_scenario(b));
    let mut rows = Vec::new();
    for (scenario, runs_a) in &ga {
        let Some(runs_b) = gb.get(scenario) else {
            continue;
        };
        for metric in Metric::ALL {
            if let Some(mut row) = compare_metric(scenario, metric, runs_a, runs_b, alpha) {
                if row.a.runs >= 2 && row.b.runs >= 2 {
                    row.change_ci95_pct = bootstrap_change_ci95(&row.a.values, &row.b.values);
                }
                rows.push(row);
            }
        }
    }
    let unmatched = ga
        .keys()
        .filter(|k| !gb.contains_key(*k))
        .map(|k| format!("{k} (only in A)"))
        .chain(
            gb.keys()
                .filter(|k| !ga.contains_key(*k))
                .map(|k| format!("{k} (only in B)")),
        )
        .collect();
    let gate_results = gates
        .iter()
        .map(|g| GateResult {
            rule: g.to_string(),
            broken_by: rows
                .iter()
                .filter(|r| g.fails(r))
                .map(|r| format!("{} {}", r.scenario, r.metric))
                .collect(),
        })
        .collect();
    (rows, unmatched, gate_results)
}

fn compare_metric(
    scenario: &str,
    metric: Metric,
    runs_a: &[&RunSummary],
    runs_b: &[&RunSummary],
    alpha: f64,
) -> Option<Row> {
    let values = |runs: &[&RunSummary]| runs.iter().filter_map(|r| metric.of(r)).collect();
    let (a, b) = (Side::of(values(runs_a))?, Side::of(values(runs_b))?);
    let change_pct = (a.median != 0.0).then(|| (b.median / a.median - 1.0) * 100.0);
    let test = mann_whitney(&a.values, &b.values);
    let (significant, verdict, note) = match test {
        _ if a.runs < 2 || b.runs < 2 => (
            false,
            Verdict::NoTestPossible,
            Some(format!(
                "{} run(s) in A, {} in B: a test needs repeated runs on both sides",
                a.runs, b.runs
            )),
        ),
        Some(t) if t.p_value_min >= alpha => (
            false,
            Verdict::NoTestPossible,
            Some(format!(
                "{} vs {} runs: the smallest possible p is {:.3} ≥ alpha {alpha}; use more runs",
                a.runs, b.runs, t.p_value_min
            )),
        ),
        Some(t) if t.p_value < alpha => {
            let worse = (b.median > a.median) == metric.larger_is_worse();
            let verdict = if b.median == a.median {
                Verdict::NoSignificantChange
            } else if worse {
                Verdict::Regression
            } else {
                Verdict::Improvement
            };
            (verdict != Verdict::NoSignificantChange, verdict, None)
        }
        _ => (false, Verdict::NoSignificantChange, None),
    };
    Some(Row {
        scenario: scenario.to_string(),
        metric: metric.name(),
        unit: metric.unit(),
        a,
        b,
        change_pct,
        change_ci95_pct: None,
        test,
        significant,
        verdict,
        note,
    })
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The 2.5th and 97.5th percentiles of `(median(b*) / median(a*) − 1) ×
/// 100` over [`BOOTSTRAP_RESAMPLES`] resamples of each side with
/// replacement, from a fixed seed; `None` when a resampled A median is 0.
pub fn bootstrap_change_ci95(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut scratch_a = vec![0.0; a.len()];
    let mut scratch_b = vec![0.0; b.len()];
    let mut changes = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for v in scratch_a.iter_mut() {
            *v = a[rng.random_range(0..a.len())];
        }
        for v in scratch_b.iter_mut() {
            *v = b[rng.random_range(0..b.len())];
        }
        let (ma, mb) = (median_of(&mut scratch_a), median_of(&mut scratch_b));
        if ma == 0.0 {
            return None;
        }
        changes.push((mb / ma - 1.0) * 100.0);
    }
    changes.sort_by(f64::total_cmp);
    let at = |q: f64| changes[((changes.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// Reads both directories and compares them. `Err` when a side has no
/// complete run.
pub fn compare_dirs(a: &Path, b: &Path, alpha: f64, gates: &[Gate]) -> Result<Comparison, String> {
    let load = |dir: &Path| {
        let (runs, errors) = find_runs(dir);
        for e in errors {
            eprintln!("fepbench: skipped {e}");
        }
        if runs
            .iter()
            .all(|r| r.summary.partial || r.summary.loadgen.is_none())
        {
            return Err(format!(
                "no complete run (summary.json) below {}",
                dir.display()
            ));
        }
        Ok(runs)
    };
    let (runs_a, runs_b) = (load(a)?, load(b)?);
    let commits = |runs: &[FoundRun]| {
        let set: std::collections::BTreeSet<String> = runs
            .iter()
            .filter_map(|r| r.summary.machine.git_commit.clone())
            .collect();
        set.into_iter().collect()
    };
    let (rows, unmatched, gates) = compare_runs(&runs_a, &runs_b, alpha, gates);
    Ok(Comparison {
        a: a.display().to_string(),
        b: b.display().to_string(),
        alpha,
        commits_a: commits(&runs_a),
        commits_b: commits(&runs_b),
        rows,
        unmatched,
        gates,
    })
}

fn value(v: f64, unit: &str) -> String {
    if unit == "msgs/s" {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The comparison as a markdown table (also what stdout shows).
pub fn render_markdown(c: &Comparison) -> String {
    let mut md = String::from("# fepbench compare\n\n");
    let _ = writeln!(md, "A: `{}` ({})  ", c.a, commits_text(&c.commits_a));
    let _ = writeln!(md, "B: `{}` ({})\n", c.b, commits_text(&c.commits_b));
    let _ = writeln!(
        md,
        "Per metric: median across runs (runs), B against A, and a two-sided Mann–Whitney U test over the per-run values at alpha {}. \
         `~` means the difference is inside the noise: not a change. \
         The 95% CI is a bootstrap interval of the change of medians: how large it may be.\n",
        c.alpha
    );
    let _ = writeln!(
        md,
        "| scenario | metric | A median (n) | B median (n) | change | 95% CI | p | verdict |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---|");
    let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &c.rows {
        let change = match (r.verdict, r.change_pct) {
            (Verdict::Regression | Verdict::Improvement, Some(pct)) => format!("{pct:+.1}%"),
            (_, Some(pct)) => format!("~ ({pct:+.1}%)"),
            (_, None) => "–".to_string(),
        };
        let p = r
            .test
            .map_or("–".to_string(), |t| format!("{:.3}", t.p_value));
        let ci = r.change_ci95_pct.map_or("–".to_string(), |(lo, hi)| {
            format!("{lo:+.1}% … {hi:+.1}%")
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} {} ({}) | {} {} ({}) | {change} | {ci} | {p} | {} |",
            r.scenario,
            r.metric,
            value(r.a.median, r.unit),
            r.unit,
            r.a.runs,
            value(r.b.median, r.unit),
            r.unit,
            r.b.runs,
            r.verdict.text()
        );
        if let Some(note) = &r.note {
            notes
                .entry(note.clone())
                .or_default()
                .push(r.scenario.clone());
        }
    }
    for (note, mut scenarios) in notes {
        scenarios.dedup();
        let _ = writeln!(md, "\nNo test for {}: {note}.", scenarios.join(", "));
    }
    for u in &c.unmatched {
        let _ = writeln!(md, "\nNot compared: {u}.");
    }
    for g in &c.gates {
        if g.broken_by.is_empty() {
            let _ = writeln!(md, "\nGate `{}`: passed.", g.rule);
        } else {
            let _ = writeln!(
                md,
                "\nGate `{}`: FAILED by {}.",
                g.rule,
                g.broken_by.join(", ")
            );
        }
    }
    md
}

fn commits_text(commits: &[String]) -> String {
    if commits.is_empty() {
        "commit unknown".to_string()
    } else {
        format!("commit {}", commits.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` samples around `mean` with relative noise `cv`: the sum of
    /// twelve uniforms, a normal close enough for run-to-run noise.
    fn samples(rng: &mut ChaCha8Rng, n: usize, mean: f64, cv: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                mean * (1.0 + cv * z)
            })
            .collect()
    }

    #[test]
    fn the_exact_u_test_matches_textbook_values() {
        // All of A below all of B, 4 vs 4: U = 0, p = 2/70.
        let t = mann_whitney(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(t.u, 0.0);
        assert!(t.exact);
        assert!((t.p_value - 2.0 / 70.0).abs() < 1e-12, "{t:?}");
        assert!((t.p_value_min - 2.0 / 70.0).abs() < 1e-12);
        // 3 vs 3 can never reach 0.05: the minimum is 2/20.
        let t = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((t.p_value_min - 0.1).abs() < 1e-12, "{t:?}");
        // Interleaved samples: p = 1.
        let t = mann_whitney(&[1.0, 4.0, 5.0, 8.0], &[2.0, 3.0, 6.0, 7.0]).unwrap();
        assert!((t.p_value - 1.0).abs() < 1e-12, "{t:?}");
    }

    #[test]
    fn the_normal_approximation_agrees_with_the_exact_test_on_large_samples() {
        let a: Vec<f64> = (0..20).map(|i| f64::from(i) * 2.0).collect();
        let b: Vec<f64> = (0..20).map(|i| f64::from(i) * 2.0 + 7.0).collect();
        let exact = mann_whitney(&a, &b).unwrap();
        assert!(exact.exact);
        let approx = normal_two_sided(exact.u, 20, 20, 0.0);
        assert!(
            (exact.p_value - approx).abs() < 0.01,
            "{exact:?} vs {approx}"
        );
    }

    #[test]
    fn ties_use_mid_ranks_and_identical_samples_give_p_one() {
        let t = mann_whitney(&[5.0; 6], &[5.0; 6]).unwrap();
        assert!(!t.exact);
        assert_eq!(t.p_value, 1.0);
        assert_eq!(t.u, 18.0);
    }

    #[test]
    fn a_known_ten_percent_shift_is_flagged_as_a_regression() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut flagged = 0;
        for _ in 0..200 {
            let a = samples(&mut rng, 10, 100.0, 0.03);
            let b = samples(&mut rng, 10, 110.0, 0.03);
            let t = mann_whitney(&a, &b).unwrap();
            if t.p_value < ALPHA_DEFAULT {
                flagged += 1;
            }
        }
        assert!(flagged >= 195, "only {flagged}/200 shifts found");
    }

    #[test]
    fn identical_distributions_raise_no_alarm_at_the_default_threshold() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let gate = Gate::parse("p99:+10%").unwrap();
        let trials = 2_000;
        let (mut significant, mut alarms) = (0, 0);
        for _ in 0..trials {
            let a = samples(&mut rng, 10, 50.0, 0.05);
            let b = samples(&mut rng, 10, 50.0, 0.05);
            let row = row_of("p99", &a, &b);
            significant += usize::from(row.significant);
            alarms += usize::from(gate.fails(&row));
        }
        // The test's false-positive rate is alpha (give or take sampling);
        // the gate also needs a 10% move of the median, which noise of this
        // size (5%) does not make together with significance.
        assert!(
            significant <= trials * 6 / 100,
            "{significant}/{trials} false positives"
        );
        assert_eq!(alarms, 0, "{alarms}/{trials} false alarms");
    }

    fn row_of(metric: &str, a: &[f64], b: &[f64]) -> Row {
        let template: RunSummary = serde_json::from_str(SAMPLE_RUN).unwrap();
        let run = |v: f64| {
            let mut r = template.clone();
            if let Some(l) = r.loadgen.as_mut() {
                l.rtt.p99_us = v;
                l.rtt.p50_us = v;
                l.throughput_msgs_per_s = v;
            }
            r
        };
        let ra: Vec<RunSummary> = a.iter().map(|&v| run(v)).collect();
        let rb: Vec<RunSummary> = b.iter().map(|&v| run(v)).collect();
        let (ra, rb): (Vec<&RunSummary>, Vec<&RunSummary>) =
            (ra.iter().collect(), rb.iter().collect());
        compare_metric(
            "s1",
            Metric::parse(metric).unwrap(),
            &ra,
            &rb,
            ALPHA_DEFAULT,
        )
        .unwrap()
    }

    const SAMPLE_RUN: &str = r#"{"started_utc":"2026-11-29T10:00:00Z","partial":false,"partial_reason":null,
      "settings":{"scenario":"s1","workers":1,"routing":"local","write_mode":"speculative","target":"gateway",
        "connections":10,"inflight":1,"size":64,"warmup":10,"count":100,"commands":[]},
      "pinning":{"plan":"none","reason":"requested","exchange_cpu":null,"gateway_cpus":[],"loadgen_cpu":null},
      "machine":{"cores":2,"kernel":"k","cpu_model":"c","git_commit":"abc"},
      "scenario":"s1","connections":10,"inflight":1,"size":64,"count":100,"errors":0,"rejects":0,"lost":0,
      "drain_timeouts":0,"window_violations":0,"elapsed_s":1.0,"throughput_msgs_per_s":1000.0,
      "rtt":{"p50_us":30,"p90_us":35,"p99_us":50,"p999_us":90,"max_us":400,"mean_us":31},
      "hop1":null,"hop2":null,"hop3":null,"hop4":null}"#;

    #[test]
    fn a_significant_slowdown_past_the_threshold_breaks_the_gate() {
        let a = [30.0, 31.0, 30.5, 29.8, 30.2, 30.9];
        let b = [36.0, 35.5, 36.2, 35.8, 36.4, 35.9];
        let row = row_of("p99", &a, &b);
        assert_eq!(row.verdict, Verdict::Regression);
        assert!(Gate::parse("p99:+10%").unwrap().fails(&row));
        assert!(
            !Gate::parse("p99:+25%").unwrap().fails(&row),
            "past +25%? no"
        );
        assert!(
            !Gate::parse("p50:+10%").unwrap().fails(&row),
            "another metric"
        );
        // Higher throughput is an improvement, and does not break a `-` gate.
        let row = row_of("throughput", &a, &b);
        assert_eq!(row.verdict, Verdict::Improvement);
        assert!(!Gate::parse("throughput:-5%").unwrap().fails(&row));
        let row = row_of("throughput", &b, &a);
        assert_eq!(row.verdict, Verdict::Regression);
        assert!(Gate::parse("throughput:-5%").unwrap().fails(&row));
    }

    #[test]
    fn one_run_a_side_says_no_test_is_possible_and_never_fails_a_gate() {
        let row = row_of("p99", &[30.0], &[60.0]);
        assert_eq!(row.verdict, Verdict::NoTestPossible);
        assert!(!row.significant);
        assert!(row
            .note
            .as_deref()
            .unwrap()
            .contains("1 run(s) in A, 1 in B"));
        assert!(!Gate::parse("p99:+10%").unwrap().fails(&row));
        let row = row_of("p99", &[30.0, 31.0, 30.5], &[60.0, 61.0, 62.0]);
        assert_eq!(
            row.verdict,
            Verdict::NoTestPossible,
            "3 vs 3 cannot reach 0.05"
        );
    }

    #[test]
    fn the_bootstrap_interval_mostly_covers_a_known_shift_and_is_reproducible() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let trials = 100;
        let (mut covered, mut excludes_zero) = (0, 0);
        for _ in 0..trials {
            let a = samples(&mut rng, 10, 100.0, 0.02);
            let b = samples(&mut rng, 10, 120.0, 0.02);
            let (lo, hi) = bootstrap_change_ci95(&a, &b).unwrap();
            covered += usize::from(lo <= 20.0 && 20.0 <= hi);
            excludes_zero += usize::from(lo > 0.0);
            assert_eq!(bootstrap_change_ci95(&a, &b), Some((lo, hi)), "seeded");
        }
        // The percentile bootstrap of a median of 10 runs under-covers a
        // little; it must still catch the truth most of the time.
        assert!(covered >= 80, "{covered}/{trials} intervals hold +20%");
        assert_eq!(excludes_zero, trials);
        // Identical sides: the interval straddles zero.
        let a = samples(&mut rng, 10, 100.0, 0.02);
        let (lo, hi) = bootstrap_change_ci95(&a, &a).unwrap();
        assert!(lo <= 0.0 && 0.0 <= hi, "{lo}..{hi}");
    }

    #[test]
    fn gate_rules_parse_and_bad_ones_say_why() {
        let g = Gate::parse("p99:+10%").unwrap();
        assert_eq!(
            (g.metric, g.change_pct),
            (Metric::Rtt(Percentile::P99), 10.0)
        );
        assert_eq!(g.to_string(), "p99:+10%");
        assert_eq!(
            Gate::parse("rtt.p99.9:5").unwrap().metric,
            Metric::Rtt(Percentile::P999)
        );
        assert_eq!(Gate::parse("throughput:-5%").unwrap().change_pct, -5.0);
        assert!(Gate::parse("p98:+10%")
            .unwrap_err()
            .contains("unknown metric"));
        assert!(Gate::parse("p99").unwrap_err().contains("no ':'"));
        assert!(Gate::parse("p99:+0%").is_err());
        assert!(Gate::parse("p99:ten").is_err());
    }

    #[test]
    fn the_markdown_says_noise_is_noise() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let a = samples(&mut rng, 8, 50.0, 0.05);
        let b = samples(&mut rng, 8, 50.0, 0.05);
        let row = row_of("p99", &a, &b);
        assert_eq!(row.verdict, Verdict::NoSignificantChange);
        let c = Comparison {
            a: "A".into(),
            b: "B".into(),
            alpha: ALPHA_DEFAULT,
            commits_a: vec![],
            commits_b: vec![],
            rows: vec![row],
            unmatched: vec!["s9 (only in B)".into()],
            gates: vec![GateResult {
                rule: "p99:+10%".into(),
                broken_by: vec![],
            }],
        };
        let md = render_markdown(&c);
        // Every row of the table has the header's cells.
        let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        let cells = |l: &str| l.matches('|').count();
        assert!(table.len() >= 3, "{md}");
        assert!(table.iter().all(|l| cells(l) == cells(table[0])), "{md}");
        assert!(md.contains("| ~ ("), "{md}");
        assert!(md.contains("~ (noise)"), "{md}");
        assert!(md.contains("Not compared: s9 (only in B)."), "{md}");
        assert!(md.contains("Gate `p99:+10%`: passed."), "{md}");
    }
}
