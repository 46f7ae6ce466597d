//! `mock_exchange --wal DIR --metrics ADDR`: the WAL thread's batch sizes
//! and fsync latencies reach the exchange's metrics. An order flow runs
//! through the real processes; an HTTP/1.1 GET over a socket scrapes the
//! endpoint and a strict OpenMetrics parser reads the histograms.

mod net_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use net_support::{loadgen, Server};

const GRACE: Duration = Duration::from_secs(10);
/// Orders the flow sends (each journaled: a new order, replace or cancel).
const ORDERS: u64 = 3_000;

/// `GET /metrics`: the status line, the `Content-Type` and the body, read
/// to the end of a `Connection: close` answer whose length is checked
/// against `Content-Length`.
fn get(addr: SocketAddr) -> (String, String, String) {
    let mut sock = TcpStream::connect(addr).expect("connect to the metrics port");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).expect("read the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let (mut content_type, mut length) = (String::new(), None);
    for line in lines {
        let (k, v) = line.split_once(':').expect("a header line");
        match k.to_ascii_lowercase().as_str() {
            "content-type" => content_type = v.trim().to_string(),
            "content-length" => length = v.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    assert_eq!(length, Some(body.len()), "Content-Length");
    (status, content_type, body.to_string())
}

/// One histogram family as scraped: cumulative buckets by upper bound,
/// count and sum.
#[derive(Debug, Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: Option<f64>,
}

/// What a scrape held: every sample by series, and the histograms.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Histogram>,
}

/// Reads an OpenMetrics text, strictly: `# TYPE`
/// before a family's samples, each family once, `# EOF` last, every value
/// a number; a histogram's buckets rise in bound and in count, end with
/// `+Inf`, whose count is the `_count`. Panics, naming the line, otherwise.
fn parse(text: &str) -> Scrape {
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.last(), Some(&""), "the text ends with a newline");
    let lines = &lines[..lines.len() - 1];
    assert_eq!(lines.last(), Some(&"# EOF"), "the last line is # EOF");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut found: BTreeMap<String, Histogram> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for (n, line) in lines[..lines.len() - 1].iter().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "{}: family declared twice",
                at()
            );
            current = Some((name.into(), kind.into()));
            continue;
        }
        assert!(!line.starts_with('#'), "{}: unknown comment", at());
        let (family, kind) = current.clone().unwrap_or_else(|| panic!("{}", at()));
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{}: value", at()));
        let name = series.split('{').next().unwrap_or_default();
        let suffix = name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("{}: sample of another family", at()));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{}: sample twice",
            at()
        );
        if kind != "histogram" {
            continue;
        }
        let h = found.entry(family.clone()).or_default();
        match suffix {
            "_bucket" => {
                let le = series
                    .split_once("le=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(le, _)| le)
                    .unwrap_or_else(|| panic!("{}: a bucket without le", at()));
                let upper = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or_else(|_| panic!("{}: le", at()))
                };
                if let Some(&(prev_upper, prev_count)) = h.buckets.last() {
                    assert!(upper > prev_upper, "{}: bounds rise", at());
                    assert!(value >= prev_count, "{}: cumulative counts", at());
                }
                h.buckets.push((upper, value));
            }
            "_count" => h.count = Some(value),
            "_sum" => h.sum = Some(value),
            _ => panic!("{}: not a histogram sample", at()),
        }
    }
    for (name, h) in &found {
        let last = h
            .buckets
            .last()
            .unwrap_or_else(|| panic!("{name}: no buckets"));
        assert_eq!(last.0, f64::INFINITY, "{name}: the last bucket is +Inf");
        assert_eq!(Some(last.1), h.count, "{name}: +Inf holds every count");
        assert!(h.sum.is_some(), "{name}: a _sum");
    }
    Scrape {
        samples,
        histograms: found,
    }
}

fn metrics_addr(server: &Server) -> SocketAddr {
    server
        .before_ready
        .iter()
        .find_map(|l| l.strip_prefix("metrics "))
        .expect("a `metrics <addr>` line before `ready`")
        .parse()
        .expect("metrics <addr>")
}

/// Scrapes until `want` holds (the WAL thread adds a batch after its sync).
fn scrape_until(addr: SocketAddr, want: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, content_type, body) = get(addr);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let found = parse(&body);
        if want(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "never held:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
