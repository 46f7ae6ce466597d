//! loadgen's live output while a run goes on: one line per `--interval`,
//! `progress` lines with `--progress`, and the `--json` summary still last.

mod net_support;

use fep_bins::bench::summary::LoadgenSummary;
use net_support::{finish_output, spawn_loadgen, Server};

#[test]
fn an_open_loop_run_prints_live_intervals_and_progress_before_the_summary() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &[]);
    let args = [
        "--rate",
        "5000",
        "--warmup",
        "500",
        "--count",
        "3000",
        "--interval",
        "100ms",
        "--progress",
    ];
    let stdout = finish_output(spawn_loadgen(gateway.addr, &args));
    let lines: Vec<&str> = stdout.lines().collect();
    let intervals: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("interval "))
        .collect();
    // 3,500 pings at 5,000/s last 0.7 s: about 7 intervals of 100 ms.
    assert!((6..=9).contains(&intervals.len()), "{intervals:#?}");
    assert!(intervals
        .iter()
        .all(|l| l.contains("rate=") && l.contains("p99=") && l.contains("errors=0")));
    let progress: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("progress "))
        .collect();
    assert!(
        progress.iter().any(|l| l.starts_with("progress warmup ")),
        "{progress:?}"
    );
    assert_eq!(progress.last(), Some(&"progress measure 3000/3000"));
    let summary = LoadgenSummary::from_stdout(&stdout).expect("the JSON summary is the last line");
    assert_eq!((summary.count, summary.errors, summary.lost), (3000, 0, 0));
    let series = summary.extra["intervals"]
        .as_array()
        .expect("the time series is kept in the summary");
    assert_eq!(series.len(), intervals.len());
}
