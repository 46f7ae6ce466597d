//! `summary.md`: runs grouped by scenario, the median across runs with the
//! min–max spread, and the costs of scaling (s2/s1) and handoff (s3/s1).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::summary::{LatencySummary, Percentile, RunSummary};

/// The percentiles the summary tables show.
pub const TABLE_PERCENTILES: [Percentile; 3] = [Percentile::P50, Percentile::P99, Percentile::P999];

/// Median, minimum and maximum of a set of runs' figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Median across runs (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// One summary.json found under a directory.
#[derive(Debug, Clone)]
pub struct FoundRun {
    /// Its directory.
    pub dir: PathBuf,
    /// Its content.
    pub summary: RunSummary,
}

/// Reads every `summary.json` below `root` (any depth), in path order.
/// Unreadable ones are returned as errors alongside, so one bad file does
/// not hide the rest.
pub fn find_runs(root: &Path) -> (Vec<FoundRun>, Vec<String>) {
    let mut files = Vec::new();
    collect_summaries(root, &mut files);
    files.sort();
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<RunSummary>(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(summary) => runs.push(FoundRun {
                dir: file.parent().unwrap_or(root).to_path_buf(),
                summary,
            }),
            Err(e) => errors.push(format!("{}: {e}", file.display())),
        }
    }
    (runs, errors)
}

fn collect_summaries(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_summaries(&path, out);
        } else if path.file_name().is_some_and(|n| n == "summary.json") {
            out.push(path);
        }
    }
}

/// The complete (not partial) runs of each scenario, scenarios in name order.
pub fn group_by_scenario(runs: &[FoundRun]) -> BTreeMap<String, Vec<&RunSummary>> {
    let mut groups: BTreeMap<String, Vec<&RunSummary>> = BTreeMap::new();
    for run in runs
        .iter()
        .filter(|r| !r.summary.partial && r.summary.loadgen.is_some())
    {
        groups
            .entry(run.summary.settings.scenario.clone())
            .or_default()
            .push(&run.summary);
    }
    groups
}

/// The spread of one figure of one series over runs.
fn spread_of(runs: &[&RunSummary], series: usize, p: Percentile) -> Option<Spread> {
    let values: Vec<f64> = runs
        .iter()
        .filter_map(|r| series_of(r, series))
        .map(|s| s.at(p))
        .collect();
    Spread::of(&values)
}

/// Series 0 is rtt, 1–4 are the hops.
fn series_of(run: &RunSummary, series: usize) -> Option<&LatencySummary> {
    let loadgen = run.loadgen.as_ref()?;
    match series {
        0 => Some(&loadgen.rtt),
        n => loadgen.hops()[n - 1],
    }
}

const SERIES_NAMES: [&str; 5] = ["rtt", "hop1", "hop2", "hop3", "hop4"];

/// Renders `summary.md` for the runs found (partial runs are counted but
/// left out of the figures).
pub fn render_markdown(runs: &[FoundRun]) -> String {
    let groups = group_by_scenario(runs);
    let mut md = String::new();
    let _ = writeln!(md, "# fepbench summary\n");
    let partial = runs
        .iter()
        .filter(|r| r.summary.partial || r.summary.loadgen.is_none())
        .count();
    let _ = writeln!(
        md,
        "{} run(s) found, {} complete, {partial} partial (left out). Latencies in µs: median across runs, (min–max) below.\n",
        runs.len(),
        runs.len() - partial
    );
    if let Some(first) = runs.first() {
        let m = &first.summary.machine;
        let _ = writeln!(
            md,
            "Machine: {} × {}, kernel {}{}; pinning: {} ({}).\n",
            m.cores,
            m.cpu_model,
            m.kernel,
            first.summary.settings.congestion_clause(),
            first.summary.pinning.plan,
            first.summary.pinning.reason
        );
    }
    let commits: std::collections::BTreeSet<&str> = runs
        .iter()
        .filter_map(|r| r.summary.machine.git_commit.as_deref())
        .collect();
    if !commits.is_empty() {
        let list: Vec<&str> = commits.into_iter().collect();
        let _ = writeln!(md, "Commit(s): {}\n", list.join(", "));
    }

    let _ = writeln!(md, "| scenario | runs | series | p50 | p99 | p99.9 |");
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|");
    for (scenario, group) in &groups {
        for (series, name) in SERIES_NAMES.iter().enumerate() {
            let cells: Vec<Option<Spread>> = TABLE_PERCENTILES
                .iter()
                .map(|&p| spread_of(group, series, p))
                .collect();
            if cells.iter().all(Option::is_none) {
                continue;
            }
            let head = if series == 0 {
                format!("{scenario} | {}", group.len())
            } else {
                " | ".to_string()
            };
            let _ = write!(md, "| {head} | {name} |");
            for cell in cells {
                let _ = match cell {
                    Some(s) => write!(md, " {:.1} ({:.1}–{:.1}) |", s.median, s.min, s.max),
                    None => write!(md, " – |"),
                };
            }
            let _ = writeln!(md);
        }
    }

    let _ = writeln!(md, "\n## Throughput\n");
    let _ = writeln!(md, "| scenario | msgs/s median (min–max) |");
    let _ = writeln!(md, "|---|---:|");
    for (scenario, group) in &groups {
        let values: Vec<f64> = group
            .iter()
            .filter_map(|r| r.loadgen.as_ref())
            .map(|l| l.throughput_msgs_per_s)
            .collect();
        if let Some(s) = Spread::of(&values) {
            let _ = writeln!(
                md,
                "| {scenario} | {:.0} ({:.0}–{:.0}) |",
                s.median, s.min, s.max
            );
        }
    }

    by_request_section(&mut md, &groups);

    let ratios = ratio_rows(&groups);
    if !ratios.is_empty() {
        let _ = writeln!(md, "\n## Costs relative to s1 (ratio of medians, rtt)\n");
        let _ = writeln!(md, "| ratio | p50 | p99 | p99.9 |");
        let _ = writeln!(md, "|---|---:|---:|---:|");
        for (name, values) in ratios {
            let _ = write!(md, "| {name} |");
            for v in values {
                let _ = write!(md, " {v:.2} |");
            }
            let _ = writeln!(md);
        }
    }
    md
}

/// The order scenarios' rtt p50 by request kind (loadgen's
/// `rtt_by_request`), median across runs; nothing without one.
fn by_request_section(md: &mut String, groups: &BTreeMap<String, Vec<&RunSummary>>) {
    // loadgen's names (`fep_load::flow::Request`), which the servers'
    // library does not link.
    const KINDS: [&str; 5] = ["new_day", "new_ioc", "cancel", "replace", "query"];
    let p50 = |run: &RunSummary, kind: &str| {
        run.loadgen.as_ref()?.extra.get("rtt_by_request")?[kind]["p50_us"].as_f64()
    };
    let rows: Vec<(&String, Vec<Option<Spread>>)> = groups
        .iter()
        .map(|(scenario, group)| {
            let cells = KINDS
                .iter()
                .map(|kind| {
                    let values: Vec<f64> = group.iter().filter_map(|r| p50(r, kind)).collect();
                    Spread::of(&values)
                })
                .collect::<Vec<_>>();
            (scenario, cells)
        })
        .filter(|(_, cells)| cells.iter().any(Option::is_some))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Order rtt p50 by request kind (median across runs, µs)\n"
    );
    let _ = writeln!(md, "| scenario | {} |", KINDS.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(KINDS.len()));
    for (scenario, cells) in rows {
        let _ = write!(md, "| {scenario} |");
        for cell in cells {
            let _ = match cell {
                Some(s) => write!(md, " {:.1} |", s.median),
                None => write!(md, " – |"),
            };
        }
        let _ = writeln!(md);
    }
}

/// `s2/s1` ("scale"), `s3/s1` ("handoff") and `o1/s1` … `o3/s1` (an order
/// against a ping) on the rtt medians, for the scenarios present.
pub fn ratio_rows(groups: &BTreeMap<String, Vec<&RunSummary>>) -> Vec<(String, [f64; 3])> {
    let Some(base) = groups.get("s1") else {
        return Vec::new();
    };
    let medians = |g: &[&RunSummary]| {
        TABLE_PERCENTILES.map(|p| spread_of(g, 0, p).map_or(f64::NAN, |s| s.median))
    };
    let base = medians(base);
    ["s2", "s3", "o1", "o2", "o3"]
        .iter()
        .filter_map(|name| groups.get(*name).map(|g| (name, medians(g))))
        .map(|(name, m)| (format!("{name}/s1"), [0, 1, 2].map(|i| m[i] / base[i])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::summary::{LoadgenSummary, Machine, PinningReport, Settings};

    fn lat(p50: f64) -> LatencySummary {
        LatencySummary {
            p50_us: p50,
            p90_us: p50 * 1.2,
            p99_us: p50 * 2.0,
            p999_us: p50 * 4.0,
            max_us: p50 * 10.0,
            mean_us: p50,
        }
    }

    fn run(scenario: &str, p50: f64, partial: bool) -> RunSummary {
        RunSummary {
            started_utc: "2026-11-05T10:00:00Z".into(),
            partial,
            partial_reason: None,
            warnings: Vec::new(),
            settings: Settings {
                scenario: scenario.into(),
                workers: 1,
                routing: Some("local".into()),
                write_mode: None,
                upstream_connections: None,
                target: "gateway".into(),
                connections: 10,
                inflight: 1,
                size: 64,
                warmup: 10,
                count: 100,
                tcp_congestion: None,
                commands: Vec::new(),
            },
            pinning: PinningReport {
                plan: "none".into(),
                reason: "requested".into(),
                exchange_cpu: None,
                gateway_cpus: vec![],
                loadgen_cpu: None,
            },
            machine: Machine {
                cores: 2,
                kernel: "k".into(),
                cpu_model: "c".into(),
                git_commit: Some("abc".into()),
            },
            tcp: None,
            loadgen: Some(LoadgenSummary {
                scenario: Some(scenario.into()),
                connections: 10,
                inflight: 1,
                size: 64,
                count: 100,
                errors: 0,
                rejects: 0,
                lost: 0,
                drain_timeouts: 0,
                window_violations: 0,
                elapsed_s: 1.0,
                throughput_msgs_per_s: 1000.0 / p50,
                rtt: lat(p50),
                hop1: Some(lat(p50 / 4.0)),
                hop2: Some(lat(p50 / 4.0)),
                hop3: Some(lat(p50 / 4.0)),
                hop4: Some(lat(p50 / 4.0)),
                send_lag: None,
                extra: Default::default(),
            }),
        }
    }

    fn found(runs: Vec<RunSummary>) -> Vec<FoundRun> {
        runs.into_iter()
            .map(|summary| FoundRun {
                dir: PathBuf::from("x"),
                summary,
            })
            .collect()
    }

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Some(Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn ratios_are_of_medians_and_partial_runs_are_left_out() {
        let runs = found(vec![
            run("s1", 30.0, false),
            run("s1", 32.0, false),
            run("s1", 34.0, false),
            run("s1", 1_000.0, true),
            run("s3", 40.0, false),
            run("s2", 33.0, false),
        ]);
        let groups = group_by_scenario(&runs);
        assert_eq!(groups["s1"].len(), 3);
        let ratios = ratio_rows(&groups);
        assert_eq!(ratios[0].0, "s2/s1");
        assert!((ratios[0].1[0] - 33.0 / 32.0).abs() < 1e-9);
        assert_eq!(ratios[1].0, "s3/s1");
        assert!((ratios[1].1[2] - 160.0 / 128.0).abs() < 1e-9);
    }

    #[test]
    fn orders_are_set_against_pings_and_split_by_request_kind() {
        let mut o1 = run("o1", 33.0, false);
        let mut o1b = run("o1", 35.0, false);
        for (r, replace) in [(&mut o1, 31.0), (&mut o1b, 33.0)] {
            r.loadgen.as_mut().unwrap().extra.insert(
                "rtt_by_request".into(),
                serde_json::json!({
                    "new_ioc": {"p50_us": 40.0, "p90_us": 0.0, "p99_us": 0.0,
                                "p999_us": 0.0, "max_us": 0.0, "mean_us": 0.0},
                    "replace": {"p50_us": replace, "p90_us": 0.0, "p99_us": 0.0,
                                "p999_us": 0.0, "max_us": 0.0, "mean_us": 0.0},
                }),
            );
        }
        let runs = found(vec![run("s1", 30.0, false), o1, o1b]);
        let md = render_markdown(&runs);
        assert!(md.contains("| o1/s1 | 1.13 | 1.13 | 1.13 |"), "{md}");
        assert!(
            md.contains("| o1 | – | 40.0 | – | 32.0 | – |"),
            "the medians by kind: {md}"
        );
        assert!(!md.contains("| s1 | –"), "pings have no kinds: {md}");
        // Without order scenarios there is no such section.
        let md = render_markdown(&found(vec![run("s1", 30.0, false)]));
        assert!(!md.contains("by request kind"), "{md}");
    }

    #[test]
    fn markdown_has_a_row_per_series_and_the_ratios() {
        let runs = found(vec![
            run("s1", 30.0, false),
            run("s1", 34.0, false),
            run("s3", 40.0, false),
        ]);
        let md = render_markdown(&runs);
        assert!(
            md.contains(
                "| s1 | 2 | rtt | 32.0 (30.0–34.0) | 64.0 (60.0–68.0) | 128.0 (120.0–136.0) |"
            ),
            "{md}"
        );
        assert!(md.contains("|  |  | hop4 | 8.0 (7.5–8.5) |"), "{md}");
        assert!(md.contains("| s3/s1 | 1.25 | 1.25 | 1.25 |"), "{md}");
        assert!(!md.contains("s2/s1"));
        assert!(md.contains("3 run(s) found, 3 complete, 0 partial"));
    }

    #[test]
    fn summaries_are_found_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("s1/20261105T100000Z");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(
            deep.join("summary.json"),
            serde_json::to_string(&run("s1", 30.0, false)).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("s2/x")).unwrap();
        std::fs::write(dir.path().join("s2/x/summary.json"), "{not json").unwrap();
        let (runs, errors) = find_runs(dir.path());
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].dir, deep);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
