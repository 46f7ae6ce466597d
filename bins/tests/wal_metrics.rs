//! `mock_exchange --wal DIR --metrics ADDR`: the WAL thread's batch sizes
//! and fsync latencies reach the exchange's metrics. An order flow runs
//! through the real processes; an HTTP/1.1 GET over a socket scrapes the
//! endpoint and a strict OpenMetrics parser reads the histograms.

mod net_support;

use std::net::SocketAddr;
use std::time::Duration;

use net_support::metrics::{metrics_addr, scrape_until, Scrape};
use net_support::{loadgen, Server};

const GRACE: Duration = Duration::from_secs(10);
/// Orders the flow sends (each journaled: a new order, replace or cancel).
const ORDERS: u64 = 3_000;

fn order_flow(target: SocketAddr) {
    let s = loadgen(
        target,
        &[
            "--workload",
            "orders",
            "--connections",
            "4",
            "--inflight",
            "8",
            "--warmup",
            "0",
            "--count",
            &ORDERS.to_string(),
        ],
    );
    assert_eq!((s.errors, s.lost), (0, 0));
}

#[test]
fn the_wal_thread_exports_its_batch_sizes_and_fsync_latencies() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wal = dir.path().join("wal");
    let wal = wal.to_str().unwrap();
    let exchange = Server::exchange(&[
        "--orders-max",
        "65536",
        "--wal",
        wal,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = metrics_addr(&exchange);
    // Before any order: the families exist, empty.
    let before = scrape_until(addr, |_| true);
    for name in [BATCHES, FSYNCS] {
        assert_eq!(before.histograms[name].count, Some(0.0), "{name}");
    }
    order_flow(exchange.addr);
    let found = scrape_until(addr, all_batched);
    let batches = &found.histograms[BATCHES];
    let fsyncs = &found.histograms[FSYNCS];
    let count = batches.count.unwrap();
    assert!(count >= 1.0, "{batches:?}");
    assert_eq!(fsyncs.count, batches.count, "one fsync per batch");
    // A fsync takes time, and less than a minute.
    let fsync_sum = fsyncs.sum.unwrap();
    assert!(fsync_sum > 0.0 && fsync_sum < 60.0 * count, "{fsyncs:?}");
    // Group commit: with 4 × 8 orders in flight, batches of more than one.
    assert!(batches.sum.unwrap() / count > 1.0, "{batches:?}");
    assert!(exchange.terminate(GRACE).success());
}

const BATCHES: &str = "fep_exchange_wal_batch_records";
const FSYNCS: &str = "fep_exchange_wal_fsync_seconds";

/// Every request the exchange journaled is in a batch the WAL thread
/// reported (the flow ended, so every journaled request is durable).
fn all_batched(s: &Scrape) -> bool {
    let journaled = s.samples["fep_exchange_journaled_total"];
    journaled >= ORDERS as f64 / 2.0 && s.histograms[BATCHES].sum == Some(journaled)
}

#[test]
fn without_fsync_the_batches_are_exported_and_no_fsync_latency_is() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wal = dir.path().join("wal");
    let exchange = Server::exchange(&[
        "--orders-max",
        "65536",
        "--wal",
        wal.to_str().unwrap(),
        "--wal-sync",
        "none",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = metrics_addr(&exchange);
    order_flow(exchange.addr);
    let found = scrape_until(addr, all_batched);
    assert!(found.histograms[BATCHES].count.unwrap() >= 1.0);
    assert_eq!(found.histograms[FSYNCS].count, Some(0.0));
    assert!(exchange.terminate(GRACE).success());
}
