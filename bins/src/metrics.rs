//! `--metrics ADDR`: Prometheus metrics over HTTP (`GET /metrics`,
//! OpenMetrics text), encoded by `prometheus-client`.
//!
//! Nothing here touches a worker's hot path. A worker keeps its plain
//! per-thread counters (the services' stats); the driver's observer, on the
//! worker's own thread every [`PUBLISH_EVERY`], copies them into that
//! worker's row of a [`Board`] with relaxed atomic stores (no lock, no
//! allocation). A scrape, on the metrics thread, sums the rows and encodes
//! them. A scrape therefore sees values at most one period old, and a row
//! may mix two publications of one worker (each value is exact, the set
//! is not a snapshot): fine for monitoring, never used for a measurement.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// How often workers publish their counters when metrics are on.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Bytes of an HTTP request head the metrics endpoint reads at most.
pub const REQUEST_HEAD_LEN_MAX: usize = 8 * 1024;
/// How long the endpoint waits for a request's head or for its answer to
/// be taken before it drops the connection.
pub const SCRAPE_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The `Content-Type` of OpenMetrics text, version 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a series is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A count that only rises (summed over workers; `_total` is added).
    Counter,
    /// A level (summed over workers).
    Gauge,
    /// A level carried as `f64` bits (summed over workers).
    GaugeF64,
    /// A histogram with these upper bounds (a `+Inf` bucket follows): the
    /// row holds one count per bucket (not cumulative), then the count,
    /// then the sum, `bounds.len() + 3` cells.
    Histogram(&'static [f64]),
}

impl Kind {
    /// Cells a series of this kind takes in a worker's row.
    pub const fn cells(self) -> usize {
        match self {
            Kind::Counter | Kind::Gauge | Kind::GaugeF64 => 1,
            Kind::Histogram(bounds) => bounds.len() + 3,
        }
    }
}

/// One series: consecutive series of the same name form one family, told
/// apart by their label.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    /// Metric name (a counter without `_total`).
    pub name: &'static str,
    /// `# HELP` text (the family's first series gives it).
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The series' one label, if the family has several.
    pub label: Option<(&'static str, &'static str)>,
}

/// The published values of every worker, one row of relaxed atomics each.
#[derive(Debug)]
pub struct Board {
    series: &'static [Series],
    offsets: Vec<usize>,
    rows: Vec<Box<[AtomicU64]>>,
}

impl Board {
    /// A board for `workers` workers, every value 0.
    pub fn new(series: &'static [Series], workers: usize) -> Arc<Board> {
        let mut offsets = Vec::with_capacity(series.len());
        let mut cells = 0;
        for s in series {
            offsets.push(cells);
            cells += s.kind.cells();
        }
        let rows = (0..workers)
            .map(|_| (0..cells).map(|_| AtomicU64::new(0)).collect())
            .collect();
        Arc::new(Board {
            series,
            offsets,
            rows,
        })
    }

    /// A writer for worker `worker`'s row (on that worker's thread).
    pub fn row(&self, worker: usize) -> Row<'_> {
        Row {
            cells: &self.rows[worker],
            offsets: &self.offsets,
        }
    }

    /// Adds one observation of `value` to histogram series `i` of row
    /// `worker`. One thread writes a row (its worker, or the WAL thread),
    /// so a load and a store suffice: no lock, no allocation.
    pub fn observe(&self, worker: usize, i: usize, value: f64) {
        let Kind::Histogram(bounds) = self.series[i].kind else {
            panic!("series {} is not a histogram", self.series[i].name);
        };
        let at = self.offsets[i];
        let cells = &self.rows[worker];
        let bucket = bounds.partition_point(|&upper| upper < value);
        let add = |cell: &AtomicU64, n: u64| cell.store(cell.load(Relaxed) + n, Relaxed);
        add(&cells[at + bucket], 1);
        add(&cells[at + bounds.len() + 1], 1);
        let sum = &cells[at + bounds.len() + 2];
        sum.store(
            (f64::from_bits(sum.load(Relaxed)) + value).to_bits(),
            Relaxed,
        );
    }

    fn sum(&self, cell: usize) -> u64 {
        self.rows
            .iter()
            .map(|r| r[cell].load(Relaxed))
            .fold(0, u64::wrapping_add)
    }

    fn sum_f64(&self, cell: usize) -> f64 {
        self.rows
            .iter()
            .map(|r| f64::from_bits(r[cell].load(Relaxed)))
            .sum()
    }
}

/// One worker's row: stores by series index.
#[derive(Debug)]
pub struct Row<'a> {
    cells: &'a [AtomicU64],
    offsets: &'a [usize],
}

impl Row<'_> {
    /// Sets series `i` (a counter or gauge).
    pub fn set(&self, i: usize, value: u64) {
        self.cells[self.offsets[i]].store(value, Relaxed);
    }

    /// Sets series `i` (a [`Kind::GaugeF64`]).
    pub fn set_f64(&self, i: usize, value: f64) {
        self.cells[self.offsets[i]].store(value.to_bits(), Relaxed);
    }

    /// Sets histogram series `i`: per-bucket counts (the last one `+Inf`),
    /// the count and the sum.
    pub fn set_histogram(&self, i: usize, buckets: &[u64], count: u64, sum: f64) {
        let at = self.offsets[i];
        for (k, b) in buckets.iter().enumerate() {
            self.cells[at + k].store(*b, Relaxed);
        }
        self.cells[at + buckets.len()].store(count, Relaxed);
        self.cells[at + buckets.len() + 1].store(sum.to_bits(), Relaxed);
    }
}

impl Collector for Board {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut i = 0;
        while i < self.series.len() {
            let first = self.series[i];
            let end = (i..self.series.len())
                .find(|&j| self.series[j].name != first.name)
                .unwrap_or(self.series.len());
            let metric_type = match first.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge | Kind::GaugeF64 => MetricType::Gauge,
                Kind::Histogram(_) => MetricType::Histogram,
            };
            let mut family =
                encoder.encode_descriptor(first.name, first.help, None, metric_type)?;
            for j in i..end {
                let s = self.series[j];
                let at = self.offsets[j];
                match s.label {
                    Some(label) => {
                        let labels = [label];
                        self.encode_one(s.kind, at, family.encode_family(&labels)?)?;
                    }
                    None => {
                        let none: [(&str, &str); 0] = [];
                        self.encode_one(s.kind, at, family.encode_family(&none)?)?;
                    }
                }
            }
            i = end;
        }
        Ok(())
    }
}

impl Board {
    fn encode_one(
        &self,
        kind: Kind,
        at: usize,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        match kind {
            Kind::Counter => ConstCounter::new(self.sum(at)).encode(encoder),
            Kind::Gauge => ConstGauge::new(self.sum(at) as i64).encode(encoder),
            Kind::GaugeF64 => ConstGauge::new(self.sum_f64(at)).encode(encoder),
            Kind::Histogram(bounds) => {
                let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(bounds.len() + 1);
                for (k, &upper) in bounds.iter().chain([f64::INFINITY].iter()).enumerate() {
                    buckets.push((upper, self.sum(at + k)));
                }
                let count = self.sum(at + bounds.len() + 1);
                let sum = self.sum_f64(at + bounds.len() + 2);
                encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )
            }
        }
    }
}

/// A registry holding `board` under the prefix `prefix` (`fep_gateway`).
pub fn registry(prefix: &str, board: Arc<Board>) -> Registry {
    let mut registry = Registry::with_prefix(prefix);
    registry.register_collector(Box::new(board));
    registry
}

/// The OpenMetrics text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// Binds `addr` and serves `GET /metrics` from `registry` on a thread of
/// its own, one connection at a time (a scrape is small and rare). Returns
/// the bound address (port 0 picks one).
pub fn serve(addr: SocketAddr, registry: Registry) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                // A peer that misbehaves costs itself a connection, never
                // the process or the workers.
                let _ = answer(stream, &registry);
            }
        })?;
    Ok(local)
}

fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(SCRAPE_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > REQUEST_HEAD_LEN_MAX {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", OPENMETRICS_CONTENT_TYPE, render(registry)),
        (Some(b"GET"), Some(_)) => ("404 Not Found", "text/plain", "GET /metrics\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    let mut out = String::with_capacity(body.len() + 128);
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.push_str(&body);
    stream.write_all(out.as_bytes())
}

/// A series of `kind`, with one fixed label when `label` is set.
pub const fn series(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    label: Option<(&'static str, &'static str)>,
) -> Series {
    Series {
        name,
        help,
        kind,
        label,
    }
}

/// A counter without labels.
pub const fn counter(name: &'static str, help: &'static str) -> Series {
    series(name, help, Kind::Counter, None)
}

/// A gauge without labels.
pub const fn gauge(name: &'static str, help: &'static str) -> Series {
    series(name, help, Kind::Gauge, None)
}

/// The gateway's series, published from each worker's `GatewayStats`.
pub mod gateway {
    use super::{counter, gauge, series, Board, Kind, Series};
    use fep_core::ErrorCode;
    use fep_trading::gateway::{Gateway, REJECT_CODES};
    use fep_trading::latency::{LatencyHistogram, LATENCY_BOUNDS_NS};
    use fep_trading::risk::Check;

    const REJECT_HELP: &str = "Rejects delivered to clients, by error code.";
    const fn reject(code: u16) -> Series {
        series(
            "rejects",
            REJECT_HELP,
            Kind::Counter,
            Some(("code", ErrorCode::from_u16(code).name())),
        )
    }

    /// Index of the first reject-by-code series (code 1).
    const REJECTS_AT: usize = 8;

    /// [`LATENCY_BOUNDS_NS`] in seconds, the bounds of the gateway's
    /// latency histograms.
    pub const LATENCY_BOUNDS: [f64; LATENCY_BOUNDS_NS.len()] = {
        let mut out = [0.0; LATENCY_BOUNDS_NS.len()];
        let mut i = 0;
        while i < out.len() {
            out[i] = LATENCY_BOUNDS_NS[i] as f64 / 1e9;
            i += 1;
        }
        out
    };
    const LATENCY_HELP: &str = "Gateway-internal latency by leg: request (read from the client to \
        forwarded upstream), upstream (forwarded to its answer read from the exchange), answer \
        (answer read to queued for the client). Times are the driver's per-read clock.";
    const fn leg(name: &'static str) -> Series {
        series(
            "latency_seconds",
            LATENCY_HELP,
            Kind::Histogram(&LATENCY_BOUNDS),
            Some(("leg", name)),
        )
    }
    /// Index of the first latency series (the request leg).
    const LATENCY_AT: usize = REJECTS_AT + REJECT_CODES_NAMED + 12;
    /// Index of the first risk-refusal series (in [`Check::ALL`]'s order).
    const REFUSALS_AT: usize = LATENCY_AT + 3;
    const REFUSAL_HELP: &str = "Requests refused RISK_LIMIT by the pre-trade checks, by check.";
    const fn refusal(check: Check) -> Series {
        series(
            "risk_refusals",
            REFUSAL_HELP,
            Kind::Counter,
            Some(("check", check.name())),
        )
    }
    /// Codes with a series of their own (PROTOCOL.md's 1–14).
    const REJECT_CODES_NAMED: usize = 14;
    const _: () = assert!(REJECT_CODES_NAMED < REJECT_CODES);

    /// Every series, in publication order.
    pub const SERIES: &[Series] = &[
        counter("client_connections_opened", "Client connections accepted."),
        gauge("client_connections", "Client connections open."),
        series(
            "requests",
            "Requests accepted from clients, by kind.",
            Kind::Counter,
            Some(("kind", "ping")),
        ),
        series("requests", "", Kind::Counter, Some(("kind", "order"))),
        counter("forwarded", "Requests written to an upstream."),
        series(
            "answers",
            "Answers delivered to clients, by kind.",
            Kind::Counter,
            Some(("kind", "pong")),
        ),
        series("answers", "", Kind::Counter, Some(("kind", "order"))),
        series("answers", "", Kind::Counter, Some(("kind", "reject"))),
        reject(1),
        reject(2),
        reject(3),
        reject(4),
        reject(5),
        reject(6),
        reject(7),
        reject(8),
        reject(9),
        reject(10),
        reject(11),
        reject(12),
        reject(13),
        reject(14),
        counter("handoffs", "Frames handed to another worker."),
        counter("orphans", "Answers whose client had gone."),
        counter("upstream_connects", "Upstream connections hand-shaked."),
        counter(
            "upstream_losses",
            "Upstream connections lost (closed, failed or declared dead).",
        ),
        gauge(
            "upstreams_up",
            "Upstream connections hand-shaked and live (--upstream-connections per worker).",
        ),
        gauge("inflight", "Requests in flight through the gateway."),
        counter(
            "disconnect_cancels",
            "Cancels sent for the open orders of clients that left.",
        ),
        counter(
            "later_dropped",
            "Later order messages not delivered (client gone or lane full).",
        ),
        counter(
            "in_doubt",
            "Orders put in doubt by an upstream loss (in flight there), exposure kept.",
        ),
        gauge(
            "in_doubt_held",
            "Orders in doubt and deferred cancels waiting for a live upstream.",
        ),
        counter(
            "in_doubt_cancels",
            "The gateway's cancels of orders in doubt (and deferred cancels) sent.",
        ),
        counter(
            "in_doubt_overflows",
            "In-doubt entries refused by a full FIFO (released or dropped).",
        ),
        leg("request"),
        leg("upstream"),
        leg("answer"),
        refusal(Check::ALL[0]),
        refusal(Check::ALL[1]),
        refusal(Check::ALL[2]),
        refusal(Check::ALL[3]),
        refusal(Check::ALL[4]),
        refusal(Check::ALL[5]),
        refusal(Check::ALL[6]),
        refusal(Check::ALL[7]),
        refusal(Check::ALL[8]),
    ];
    const _: () = assert!(SERIES.len() == REFUSALS_AT + Check::ALL.len());

    /// Copies worker `worker`'s counters into its row.
    pub fn publish(board: &Board, worker: usize, g: &Gateway) {
        let s = g.stats();
        let row = board.row(worker);
        let values = [
            s.clients_opened,
            s.clients_opened - s.clients_closed,
            s.pings,
            s.orders,
            s.forwarded,
            s.pongs,
            s.order_answers,
            s.rejects,
        ];
        for (i, v) in values.into_iter().enumerate() {
            row.set(i, v);
        }
        for code in 1..=REJECT_CODES_NAMED {
            row.set(REJECTS_AT + code - 1, s.rejects_by_code[code]);
        }
        let rest = [
            s.handoffs,
            s.orphans,
            s.upstream_connects,
            s.upstream_losses,
            g.upstreams_up() as u64,
            g.inflight(),
            s.disconnect_cancels,
            s.later_dropped,
            s.in_doubt,
            g.in_doubt_held() as u64,
            s.in_doubt_cancels,
            s.in_doubt_overflows,
        ];
        for (i, v) in rest.into_iter().enumerate() {
            row.set(REJECTS_AT + REJECT_CODES_NAMED + i, v);
        }
        let legs: [&LatencyHistogram; 3] = [&s.request_leg, &s.upstream_leg, &s.answer_leg];
        for (i, h) in legs.into_iter().enumerate() {
            row.set_histogram(LATENCY_AT + i, &h.buckets, h.count, h.sum_ns as f64 / 1e9);
        }
        for (i, n) in s.risk_refusals.into_iter().enumerate() {
            row.set(REFUSALS_AT + i, n);
        }
    }
}

/// The exchange's series, published from each worker's `ExchangeStats`
/// (the engine's worker adds the book depth).
pub mod exchange {
    use super::{counter, gauge, Board, Kind, Series};
    use fep_trading::exchange::Exchange;

    /// Every series, in publication order.
    pub const SERIES: &[Series] = &[
        counter("pongs", "Pongs sent."),
        counter("requests", "Order-entry requests matched."),
        counter("orders_accepted", "Orders accepted."),
        counter("fills", "Fills (one per maker/taker pair)."),
        counter("engine_rejects", "Requests refused by the engine."),
        counter("drain_rejects", "Requests refused while draining."),
        counter("sessions_closed", "Sessions closed."),
        gauge("open_orders", "Orders resting in the books (book depth)."),
        counter("journaled", "Requests journaled (with --wal)."),
    ];

    /// Copies worker `worker`'s counters into its row.
    pub fn publish(board: &Board, worker: usize, x: &Exchange) {
        let s = x.stats();
        let open = x.engine().map_or(0, |e| u64::from(e.open_orders()));
        let values = [
            s.pongs,
            s.requests,
            s.accepted,
            s.fills,
            s.engine_rejects,
            s.rejects,
            s.closed,
            open,
            s.journaled,
        ];
        let row = board.row(worker);
        for (i, v) in values.into_iter().enumerate() {
            row.set(i, v);
        }
    }

    /// Upper bounds of the WAL batch-size histogram, in records.
    pub const WAL_BATCH_BOUNDS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];
    /// Upper bounds of the fsync-latency histogram, in seconds.
    pub const FSYNC_BOUNDS: &[f64] = &[
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    ];

    /// The WAL's series. With `--wal` and `--metrics`, the exchange
    /// registers a board of one row ([`wal_board`]) and the WAL thread
    /// adds each batch to it ([`wal_observer`]): series 0 the batch size,
    /// series 1 the fsync latency (none with `--wal-sync none`). Without a
    /// WAL the series are not exported.
    pub const WAL_SERIES: &[Series] = &[
        Series {
            name: "wal_batch_records",
            help: "Records per WAL batch (one write and one fsync).",
            kind: Kind::Histogram(WAL_BATCH_BOUNDS),
            label: None,
        },
        Series {
            name: "wal_fsync_seconds",
            help: "Latency of the WAL's fsync.",
            kind: Kind::Histogram(FSYNC_BOUNDS),
            label: None,
        },
    ];

    /// The board of the WAL thread (one row).
    pub fn wal_board() -> std::sync::Arc<Board> {
        Board::new(WAL_SERIES, 1)
    }

    /// The WAL thread's observer that fills `board` (a [`wal_board`]).
    pub fn wal_observer(board: std::sync::Arc<Board>) -> fep_net::wal::WalObserver {
        fep_net::wal::WalObserver::new(move |batch| {
            board.observe(0, 0, batch.records as f64);
            if let Some(ns) = batch.sync_ns {
                board.observe(0, 1, ns as f64 / 1e9);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIES: &[Series] = &[
        Series {
            name: "requests",
            help: "Requests by kind.",
            kind: Kind::Counter,
            label: Some(("kind", "ping")),
        },
        Series {
            name: "requests",
            help: "",
            kind: Kind::Counter,
            label: Some(("kind", "order")),
        },
        Series {
            name: "up",
            help: "Links up.",
            kind: Kind::Gauge,
            label: None,
        },
        Series {
            name: "latency_seconds",
            help: "Latency.",
            kind: Kind::Histogram(&[0.001, 0.01]),
            label: None,
        },
    ];

    #[test]
    fn a_scrape_sums_the_workers_rows_into_families() {
        let board = Board::new(SERIES, 2);
        board.row(0).set(0, 5);
        board.row(1).set(0, 7);
        board.row(1).set(1, 1);
        board.row(0).set(2, 1);
        board.row(1).set(2, 1);
        board.row(0).set_histogram(3, &[1, 2, 3], 6, 0.5);
        board.row(1).set_histogram(3, &[0, 1, 0], 1, 0.25);
        let text = render(&registry("t", board));
        for line in [
            "# TYPE t_requests counter",
            "t_requests_total{kind=\"ping\"} 12",
            "t_requests_total{kind=\"order\"} 1",
            "t_up 2",
            "t_latency_seconds_count 7",
            "t_latency_seconds_sum 0.75",
            "t_latency_seconds_bucket{le=\"0.001\"} 1",
            "t_latency_seconds_bucket{le=\"0.01\"} 4",
            "t_latency_seconds_bucket{le=\"+Inf\"} 7",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(text.matches("# TYPE t_requests").count(), 1, "{text}");
    }

    #[test]
    fn observations_land_in_the_bucket_of_their_upper_bound() {
        let board = Board::new(SERIES, 1);
        for v in [0.0005, 0.001, 0.002, 5.0] {
            board.observe(0, 3, v);
        }
        let text = render(&registry("t", board));
        for line in [
            "t_latency_seconds_count 4",
            "t_latency_seconds_bucket{le=\"0.001\"} 2",
            "t_latency_seconds_bucket{le=\"0.01\"} 3",
            "t_latency_seconds_bucket{le=\"+Inf\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_wal_observer_fills_batch_sizes_and_fsync_latencies() {
        let board = exchange::wal_board();
        let observer = exchange::wal_observer(Arc::clone(&board));
        let told = |records, sync_ns| fep_net::wal::WalBatch {
            records,
            bytes: records * 80,
            sync_ns,
        };
        // The observer is the WAL thread's: call it as that thread would.
        let call = |b: fep_net::wal::WalBatch| {
            let o = observer.clone();
            std::thread::spawn(move || o.call(&b)).join().unwrap();
        };
        call(told(1, Some(300_000)));
        call(told(100, Some(2_000_000)));
        call(told(5000, None));
        let text = render(&registry("x", board));
        for line in [
            "x_wal_batch_records_count 3",
            "x_wal_batch_records_sum 5101.0",
            "x_wal_batch_records_bucket{le=\"1.0\"} 1",
            "x_wal_batch_records_bucket{le=\"256.0\"} 2",
            "x_wal_batch_records_bucket{le=\"4096.0\"} 2",
            "x_wal_batch_records_bucket{le=\"+Inf\"} 3",
            "x_wal_fsync_seconds_count 2",
            "x_wal_fsync_seconds_bucket{le=\"0.00025\"} 0",
            "x_wal_fsync_seconds_bucket{le=\"0.0005\"} 1",
            "x_wal_fsync_seconds_bucket{le=\"0.0025\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
