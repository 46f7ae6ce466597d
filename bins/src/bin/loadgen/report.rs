//! loadgen's results: the `--json` summary line and the `--out DIR` files.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use fep_load::client::Report;
use fep_load::flow::Request;
use serde_json::Map;

use fep_bins::bench::hgrm::write_hgrm;
use fep_bins::bench::run::HGRM_FILES;
use fep_bins::bench::summary::{latency_table, LatencySummary, LoadgenSummary};

/// The load's settings as the summary repeats them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadShape {
    /// `--scenario`, if given.
    pub scenario: Option<String>,
    /// `--connections`.
    pub connections: u64,
    /// `--inflight`.
    pub inflight: u64,
    /// `--size`.
    pub size: u64,
    /// `--warmup`.
    pub warmup: u64,
    /// `--count`.
    pub count: u64,
}

/// The CLI.md summary object of a finished run.
pub fn summary(report: &Report, shape: &LoadShape) -> LoadgenSummary {
    let elapsed_s = report.elapsed_secs();
    let measured = report.answered().saturating_sub(shape.warmup);
    let throughput = if elapsed_s > 0.0 {
        measured as f64 / elapsed_s
    } else {
        0.0
    };
    let mut extra = extra(report);
    extra.insert("achieved_rate".into(), throughput.into());
    extra.insert(
        "overall_msgs_per_s".into(),
        report.overall_rate_per_s().into(),
    );
    // Hops exist only on a path through a gateway with a shared clock.
    let hop = |i: usize| {
        let h = &report.hops[i];
        (!h.is_empty()).then(|| LatencySummary::from_histogram(h))
    };
    LoadgenSummary {
        scenario: shape.scenario.clone(),
        connections: shape.connections,
        inflight: shape.inflight,
        size: shape.size,
        count: shape.count,
        errors: report.errors,
        rejects: report.rejects,
        lost: report.lost,
        drain_timeouts: report.drain_timeouts,
        window_violations: report.window_violations,
        elapsed_s,
        throughput_msgs_per_s: throughput,
        rtt: LatencySummary::from_histogram(&report.rtt),
        hop1: hop(0),
        hop2: hop(1),
        hop3: hop(2),
        hop4: hop(3),
        send_lag: (!report.send_lag.is_empty())
            .then(|| LatencySummary::from_histogram(&report.send_lag)),
        extra,
    }
}

fn extra(report: &Report) -> Map<String, serde_json::Value> {
    let mut extra = Map::new();
    extra.insert("sent".into(), report.sent.into());
    extra.insert("pongs".into(), report.pongs.into());
    extra.insert("corrupt".into(), report.corrupt.into());
    extra.insert("clock_skews".into(), report.clock_skews.into());
    extra.insert("connections_lost".into(), report.connections_lost.into());
    if let Some(rate) = report.intended_rate_per_s() {
        extra.insert("intended_rate".into(), rate.into());
    }
    if let Some(flow) = &report.flow {
        // --workload orders: every kind of answer, rejects by code, and
        // what broke the contract (first answers out of order, fills that
        // disagree with the order they name).
        extra.insert("workload".into(), "orders".into());
        let answers: Map<String, serde_json::Value> = fep_load::flow::Kind::ALL
            .iter()
            .map(|k| (k.name().to_string(), flow.count(*k).into()))
            .collect();
        extra.insert("answers".into(), answers.into());
        let rejects: Map<String, serde_json::Value> = flow
            .rejects_by_code
            .iter()
            .map(|(code, n)| {
                let name = fep_core::ErrorCode::from_u16(*code).name();
                (name.to_string(), (*n).into())
            })
            .collect();
        extra.insert("rejects_by_code".into(), rejects.into());
        extra.insert("order_violations".into(), flow.violations.into());
        extra.insert("filled_qty".into(), flow.filled_qty.into());
        // The rtt of each kind of request: which one a slow tail is.
        let by_request: Map<String, serde_json::Value> = Request::ALL
            .iter()
            .zip(&report.rtt_by_request)
            .filter(|(_, h)| !h.is_empty())
            .map(|(request, h)| {
                let summary = serde_json::to_value(LatencySummary::from_histogram(h))
                    .expect("a latency summary is plain numbers");
                (request.name().to_string(), summary)
            })
            .collect();
        extra.insert("rtt_by_request".into(), by_request.into());
    }
    if !report.intervals.is_empty() {
        let intervals = report
            .intervals
            .iter()
            .map(|iv| {
                serde_json::json!({
                    "at_s": iv.at.as_u64() as f64 / 1e9,
                    "answers": iv.answers,
                    "rate_per_s": iv.rate_per_s,
                    "p50_us": iv.p50_ns as f64 / 1e3,
                    "p99_us": iv.p99_ns as f64 / 1e3,
                    "errors": iv.errors,
                })
            })
            .collect();
        extra.insert("intervals".into(), serde_json::Value::Array(intervals));
        let dropped = report.intervals_taken - report.intervals.len() as u64;
        if dropped > 0 {
            extra.insert("intervals_dropped".into(), dropped.into());
        }
    }
    extra
}

/// The open-loop send lag's distribution, next to the [`HGRM_FILES`].
pub const SEND_LAG_HGRM: &str = "send_lag";

/// Writes `rtt.hgrm` and `hop1.hgrm` … `hop4.hgrm` into `dir`, and
/// `send_lag.hgrm` in open loop.
pub fn write_histograms(report: &Report, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let hists = [
        &report.rtt,
        &report.hops[0],
        &report.hops[1],
        &report.hops[2],
        &report.hops[3],
    ];
    let send_lag = (!report.send_lag.is_empty()).then_some((SEND_LAG_HGRM, &report.send_lag));
    for (name, hist) in HGRM_FILES.into_iter().zip(hists).chain(send_lag) {
        let file = File::create(dir.join(format!("{name}.hgrm")))?;
        write_hgrm(hist, BufWriter::new(file))?;
    }
    Ok(())
}

/// The human-readable lines printed before (or instead of) the JSON.
pub fn describe(summary: &LoadgenSummary) -> String {
    let orders = summary.extra.get("workload").and_then(|w| w.as_str()) == Some("orders");
    let mut out = format!(
        "{} {} over {} connections in {:.3} s ({:.0}/s): errors {} rejects {} lost {} drain_timeouts {} window_violations {}\n",
        summary.count,
        if orders { "order requests" } else { "pings" },
        summary.connections,
        summary.elapsed_s,
        summary.throughput_msgs_per_s,
        summary.errors,
        summary.rejects,
        summary.lost,
        summary.drain_timeouts,
        summary.window_violations
    );
    let hops = summary.hops();
    let hop_names = ["hop1", "hop2", "hop3", "hop4"];
    let rows = std::iter::once(("rtt", &summary.rtt))
        // Open loop: how late loadgen itself sent (part of the rtt above).
        .chain(summary.send_lag.as_ref().map(|lag| ("lag", lag)))
        .chain(
            hop_names
                .into_iter()
                .zip(hops)
                .filter_map(|(n, h)| h.map(|h| (n, h))),
        );
    out.push_str(&latency_table(rows));
    if orders {
        out.push_str(&describe_by_request(&summary.extra));
        out.push_str(&describe_flow(&summary.extra));
    }
    out
}

/// `--workload orders`: the rtt of each kind of request, one table (from
/// the JSON's `rtt_by_request`).
fn describe_by_request(extra: &Map<String, serde_json::Value>) -> String {
    let Some(map) = extra.get("rtt_by_request").and_then(|v| v.as_object()) else {
        return String::new();
    };
    let rows: Vec<(&str, LatencySummary)> = map
        .iter()
        .filter_map(|(name, v)| Some((name.as_str(), serde_json::from_value(v.clone()).ok()?)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "rtt by request kind:\n{}",
        latency_table(rows.iter().map(|(name, s)| (*name, s)))
    )
}

/// `--workload orders`: the answers by kind, the rejects by code and the
/// contract violations seen, in one line each (from the JSON's fields).
fn describe_flow(extra: &Map<String, serde_json::Value>) -> String {
    let pairs = |key: &str| -> String {
        match extra.get(key).and_then(|v| v.as_object()) {
            Some(map) if !map.is_empty() => map
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "none".to_string(),
        }
    };
    let number = |key: &str| extra.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    format!(
        "answers: {}\nrejects by code: {}\norder violations {}, filled qty {}\n",
        pairs("answers"),
        pairs("rejects_by_code"),
        number("order_violations"),
        number("filled_qty"),
    )
}

/// What loadgen prints while a run goes on: a line per finished live
/// interval (`--interval`), and `progress <phase> <done>/<total>` lines
/// (`--progress`, what fepbench's progress bar reads). Called from the
/// client worker's thread by the driver's observer, every 100 ms.
#[derive(Debug)]
pub struct LiveView {
    warmup: u64,
    count: u64,
    progress: bool,
    intervals_printed: std::sync::atomic::AtomicUsize,
    answered_printed: std::sync::atomic::AtomicU64,
}

impl LiveView {
    /// A view of a run of `warmup` + `count` pings.
    pub fn new(warmup: u64, count: u64, progress: bool) -> LiveView {
        LiveView {
            warmup,
            count,
            progress,
            intervals_printed: std::sync::atomic::AtomicUsize::new(0),
            answered_printed: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// The lines the report has earned since the last call.
    pub fn lines(&self, report: &Report) -> String {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        // Counted over every sample taken: the report keeps only the last
        // ones, and prints the new among them.
        let taken = usize::try_from(report.intervals_taken).unwrap_or(usize::MAX);
        let printed = self.intervals_printed.swap(taken, Relaxed);
        let new = taken.saturating_sub(printed).min(report.intervals.len());
        for s in &report.intervals[report.intervals.len() - new..] {
            let _ = writeln!(
                out,
                "interval t={:.3}s rate={:.0}/s p50={:.1}us p99={:.1}us answers={} errors={}",
                s.at.as_u64() as f64 / 1e9,
                s.rate_per_s,
                s.p50_ns as f64 / 1e3,
                s.p99_ns as f64 / 1e3,
                s.answers,
                s.errors
            );
        }
        let answered = report.answered() + report.lost;
        if self.progress && self.answered_printed.swap(answered, Relaxed) != answered {
            let (phase, done, total) = if answered < self.warmup {
                ("warmup", answered, self.warmup)
            } else {
                ("measure", answered - self.warmup, self.count)
            };
            let _ = writeln!(out, "progress {phase} {}/{total}", done.min(total));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fep_bins::bench::summary::LatencySummary;

    fn summary(extra: serde_json::Value) -> LoadgenSummary {
        let rtt = LatencySummary {
            p50_us: 12.0,
            p90_us: 15.0,
            p99_us: 20.0,
            p999_us: 40.0,
            max_us: 90.0,
            mean_us: 13.0,
        };
        LoadgenSummary {
            scenario: None,
            connections: 10,
            inflight: 1,
            size: 64,
            count: 2000,
            errors: 0,
            rejects: 1,
            lost: 0,
            drain_timeouts: 0,
            window_violations: 0,
            elapsed_s: 0.5,
            throughput_msgs_per_s: 4000.0,
            rtt,
            hop1: None,
            hop2: None,
            hop3: None,
            hop4: None,
            send_lag: None,
            extra: extra.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_ping_run_is_described_as_pings_without_order_lines() {
        let text = describe(&summary(serde_json::json!({"sent": 2000})));
        assert!(text.starts_with("2000 pings over 10 connections in 0.500 s (4000/s)"));
        assert!(!text.contains("answers:"), "{text}");
    }

    #[test]
    fn an_order_run_names_its_requests_and_counts_answers_and_rejects() {
        let text = describe(&summary(serde_json::json!({
            "workload": "orders",
            "answers": {"accepted": 700, "replaced": 1200, "reject": 1},
            "rejects_by_code": {"UNKNOWN_ORDER": 1},
            "order_violations": 0,
            "filled_qty": 5400,
        })));
        assert!(
            text.starts_with("2000 order requests over 10 connections"),
            "{text}"
        );
        assert!(
            text.contains("answers: accepted 700, reject 1, replaced 1200\n"),
            "{text}"
        );
        assert!(
            text.contains("rejects by code: UNKNOWN_ORDER 1\n"),
            "{text}"
        );
        assert!(
            text.contains("order violations 0, filled qty 5400\n"),
            "{text}"
        );
    }
}
