//! loadgen's metrics: the traffic tool's set (requests, answers by kind,
//! errors, losses, rtt, current and target rate, spike active).

use fep_bins::metrics::{counter, gauge, series, Board, Kind, Series};
use fep_load::client::Client;

/// Upper bounds of the rtt histogram, in seconds (10 µs to 1 s).
pub const RTT_BOUNDS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 1.0,
];
/// The same bounds in nanoseconds (what the report's histogram holds).
const RTT_BOUNDS_NS: [u64; 15] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];
const _: () = assert!(RTT_BOUNDS.len() == RTT_BOUNDS_NS.len());

/// Every series, in publication order.
pub const SERIES: &[Series] = &[
    counter("requests", "Requests sent."),
    series(
        "answers",
        "Answers received, by kind.",
        Kind::Counter,
        Some(("kind", "pong")),
    ),
    series("answers", "", Kind::Counter, Some(("kind", "reject"))),
    counter(
        "errors",
        "Connection errors (an Error frame or a failed dial).",
    ),
    counter("lost", "Requests never answered (their connection ended)."),
    Series {
        name: "rtt_seconds",
        help: "Round-trip time of recorded pongs (from the intended send time in open loop).",
        kind: Kind::Histogram(RTT_BOUNDS),
        label: None,
    },
    series(
        "rate_per_second",
        "Answers per second over the last interval.",
        Kind::GaugeF64,
        None,
    ),
    series(
        "target_rate_per_second",
        "The schedule's intended rate now (open loop; 0 otherwise).",
        Kind::GaugeF64,
        None,
    ),
    gauge(
        "spike_active",
        "1 while a spike of the spiky shape is under way.",
    ),
];

/// Copies worker `worker`'s report into its row (every `PUBLISH_EVERY`,
/// on the worker's thread; reading the histogram costs a few µs).
pub fn publish(board: &Board, worker: usize, client: &Client) {
    let r = client.report();
    let row = board.row(worker);
    for (i, v) in [r.sent, r.pongs, r.rejects, r.errors, r.lost]
        .into_iter()
        .enumerate()
    {
        row.set(i, v);
    }
    // One pass over the recorded values (not one range count per
    // bucket: each walks the histogram's counters from zero), so the
    // observer's turn stays short on the load generator's thread.
    let total = r.rtt.len();
    let mut buckets = [0u64; RTT_BOUNDS_NS.len() + 1];
    for v in r.rtt.iter_recorded() {
        let value = v.value_iterated_to();
        let k = RTT_BOUNDS_NS.partition_point(|&b| b < value);
        buckets[k] += v.count_at_value();
    }
    let sum_s = r.rtt.mean() * total as f64 / 1e9;
    row.set_histogram(5, &buckets, total, sum_s);
    row.set_f64(6, r.intervals.last().map_or(0.0, |s| s.rate_per_s));
    let schedule = client.schedule();
    row.set_f64(7, schedule.map_or(0.0, |s| s.rate_per_s_now()));
    row.set(8, u64::from(schedule.is_some_and(|s| s.spike_active())));
}
