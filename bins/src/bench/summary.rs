//! The result files' JSON: loadgen's `--json` line and fepbench's
//! `summary.json`, exactly as `docs/CLI.md` lays them out.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::tcpstat::TcpCounters;

/// One latency distribution in microseconds, as loadgen prints it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl LatencySummary {
    /// No samples: every figure 0.
    pub const ZERO: LatencySummary = LatencySummary {
        p50_us: 0.0,
        p90_us: 0.0,
        p99_us: 0.0,
        p999_us: 0.0,
        max_us: 0.0,
        mean_us: 0.0,
    };

    /// Summarises a histogram of nanoseconds (all zeros when it is empty).
    pub fn from_histogram(hist: &Histogram<u64>) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1_000.0;
        if hist.is_empty() {
            return LatencySummary::ZERO;
        }
        LatencySummary {
            p50_us: us(hist.value_at_quantile(0.5)),
            p90_us: us(hist.value_at_quantile(0.9)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            max_us: us(hist.max()),
            mean_us: hist.mean() / 1_000.0,
        }
    }

    /// One row of [`latency_table`]: `name` right-aligned in `width`
    /// columns, then p50, p90, p99, p99.9, max and mean in µs.
    fn row(&self, name: &str, width: usize) -> String {
        format!(
            "{name:>width$} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us, self.mean_us
        )
    }

    /// The figure a [`Percentile`] names.
    pub fn at(&self, p: Percentile) -> f64 {
        match p {
            Percentile::P50 => self.p50_us,
            Percentile::P90 => self.p90_us,
            Percentile::P99 => self.p99_us,
            Percentile::P999 => self.p999_us,
            Percentile::Max => self.max_us,
        }
    }
}

/// The percentiles reports compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// Median.
    P50,
    /// 90th.
    P90,
    /// 99th.
    P99,
    /// 99.9th.
    P999,
    /// Maximum.
    Max,
}

impl Percentile {
    /// The label used in tables (`p50`, `p99.9`, …).
    pub fn label(self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P90 => "p90",
            Percentile::P99 => "p99",
            Percentile::P999 => "p99.9",
            Percentile::Max => "max",
        }
    }
}

/// loadgen's `--json` summary: the last line of its stdout.
///
/// Fields loadgen adds beyond the contract (achieved rate, interval series…)
/// are kept in `extra` so they survive into `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadgenSummary {
    /// loadgen's `--scenario` value, if any.
    pub scenario: Option<String>,
    /// Client connections.
    pub connections: u64,
    /// Pings in flight per connection.
    pub inflight: u64,
    /// Whole PerfPing frame size in bytes.
    pub size: u64,
    /// Measured pings (after warm-up).
    pub count: u64,
    /// Connection-level errors.
    pub errors: u64,
    /// Pings answered by a `Reject`.
    pub rejects: u64,
    /// Pings that got no answer at all.
    pub lost: u64,
    /// Connections whose drain did not finish in time.
    pub drain_timeouts: u64,
    /// Times more pings were in flight than allowed.
    pub window_violations: u64,
    /// Measured wall time in seconds.
    pub elapsed_s: f64,
    /// Answered pings per second over `elapsed_s`.
    pub throughput_msgs_per_s: f64,
    /// Round trip, `t5 − t1`.
    pub rtt: LatencySummary,
    /// Client → gateway, `t2 − t1`; `null` without a gateway.
    pub hop1: Option<LatencySummary>,
    /// Gateway → exchange, `t3 − t2`.
    pub hop2: Option<LatencySummary>,
    /// Exchange → gateway, `t4 − t3`.
    pub hop3: Option<LatencySummary>,
    /// Gateway → client, `t5 − t4`.
    pub hop4: Option<LatencySummary>,
    /// Open loop: how late loadgen sent, `t1 −` intended (part of `rtt`);
    /// absent in closed loop. An extension of the contract's object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<LatencySummary>,
    /// Any further fields loadgen printed.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LoadgenSummary {
    /// Parses the JSON object on the last non-empty line of loadgen's stdout.
    pub fn from_stdout(stdout: &str) -> Result<LoadgenSummary, serde_json::Error> {
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str(last)
    }

    /// The hops in order, `hop1` … `hop4`.
    pub fn hops(&self) -> [Option<&LatencySummary>; 4] {
        [
            self.hop1.as_ref(),
            self.hop2.as_ref(),
            self.hop3.as_ref(),
            self.hop4.as_ref(),
        ]
    }
}

/// What one fepbench run set up: the scenario and every knob passed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `s1`, `s2`, `s3`, or a baseline leg's name.
    pub scenario: String,
    /// Gateway workers (0 when the leg has no gateway).
    pub workers: u32,
    /// Gateway routing, `local` or `handoff` (`null` without a gateway).
    pub routing: Option<String>,
    /// Gateway write mode, `speculative`, `deferred` or `batched`.
    pub write_mode: Option<String>,
    /// Gateway upstream connections per worker (`null` without a gateway,
    /// or in a result written before the flag existed: then 1).
    #[serde(default)]
    pub upstream_connections: Option<u16>,
    /// What loadgen connected to: `gateway`, `exchange`, `tokio_proxy`
    /// or `c_relay`.
    pub target: String,
    /// loadgen `--connections`.
    pub connections: u64,
    /// loadgen `--inflight`.
    pub inflight: u64,
    /// loadgen `--size`.
    pub size: u64,
    /// loadgen `--warmup`.
    pub warmup: u64,
    /// loadgen `--count`.
    pub count: u64,
    /// The TCP congestion control every process of the leg used: fepbench's
    /// `--tcp-congestion`, else the system's (`null` in a result written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_congestion: Option<String>,
    /// The command lines the processes were started with, in order.
    pub commands: Vec<String>,
}

impl Settings {
    /// `", TCP congestion control <name>"` when the result records it,
    /// else nothing: for the line that describes the machine.
    pub fn congestion_clause(&self) -> String {
        self.tcp_congestion
            .as_deref()
            .map(|name| format!(", TCP congestion control {name}"))
            .unwrap_or_default()
    }
}

/// Where each process was allowed to run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinningReport {
    /// The plan's name: `none`, `colocate` or `spread`.
    pub plan: String,
    /// Why this plan (the `auto` rule that chose it, or "requested").
    pub reason: String,
    /// CPU of mock_exchange, `null` when unpinned.
    pub exchange_cpu: Option<usize>,
    /// CPUs of the gateway workers (or of the proxy), empty when unpinned.
    pub gateway_cpus: Vec<usize>,
    /// CPU of loadgen, `null` when unpinned.
    pub loadgen_cpu: Option<usize>,
}

/// The machine the run was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Online logical CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `git rev-parse HEAD` where fepbench ran, with `-dirty` for local
    /// changes; `null` outside a git work tree.
    pub git_commit: Option<String>,
}

/// fepbench's `summary.json`: loadgen's JSON at the top level (so a script
/// reads `rtt.p50_us` the same in both files) plus the run's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Start of the run, UTC, RFC 3339.
    pub started_utc: String,
    /// True when the run was cut short (Ctrl-C, or a process died).
    pub partial: bool,
    /// Why the run is partial, when it is.
    pub partial_reason: Option<String>,
    /// Things that went wrong without spoiling the figures (a server that
    /// did not exit 0 on SIGTERM, a missing `.hgrm`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What was run.
    pub settings: Settings,
    /// Where it ran.
    pub pinning: PinningReport,
    /// On what.
    pub machine: Machine,
    /// The kernel's TCP counters over the leg (system-wide; absent where
    /// `/proc/net` cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCounters>,
    /// loadgen's summary; absent when loadgen printed none (a partial run).
    #[serde(flatten)]
    pub loadgen: Option<LoadgenSummary>,
}

impl RunSummary {
    /// `rtt p50 … p99 …` in one line, or why the run is partial.
    pub fn one_line(&self) -> String {
        match (&self.loadgen, &self.partial_reason) {
            (Some(l), reason) => format!(
                "rtt p50 {:.1} p99 {:.1} p99.9 {:.1} µs, {:.0} msgs/s{}",
                l.rtt.p50_us,
                l.rtt.p99_us,
                l.rtt.p999_us,
                l.throughput_msgs_per_s,
                if reason.is_some() { " (partial)" } else { "" }
            ),
            (None, Some(reason)) => {
                format!("no result: {}", reason.lines().next().unwrap_or(""))
            }
            (None, None) => "no result".to_string(),
        }
    }
}

/// The latency table every binary prints (loadgen, `fepbench run`,
/// `fepsim run`): a header, then one row per series, in µs.
pub fn latency_table<'a>(rows: impl IntoIterator<Item = (&'a str, &'a LatencySummary)>) -> String {
    let rows: Vec<_> = rows.into_iter().collect();
    // Six characters, or the longest name.
    let width = rows.iter().map(|(name, _)| name.len()).fold(6, usize::max);
    let mut out = format!(
        "{:>width$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   (µs)\n",
        "", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    for (name, summary) in rows {
        out.push_str(&summary.row(name, width));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI_EXAMPLE: &str = r#"{"scenario":"s1","connections":10,"inflight":1,"size":64,"count":10000,
 "errors":0,"rejects":0,"lost":0,"drain_timeouts":0,"window_violations":0,
 "elapsed_s":1.92,"throughput_msgs_per_s":5208.3,
 "rtt": {"p50_us":31.2,"p90_us":35.0,"p99_us":48.1,"p999_us":90.5,"max_us":410.0,"mean_us":32.0},
 "hop1":{"p50_us":1,"p90_us":2,"p99_us":3,"p999_us":4,"max_us":5,"mean_us":1.5},
 "hop2":null,"hop3":null,"hop4":null,"achieved_rate":5000.5}"#;

    fn sample_run(loadgen: Option<LoadgenSummary>) -> RunSummary {
        RunSummary {
            started_utc: "2026-11-05T10:00:00Z".into(),
            partial: loadgen.is_none(),
            partial_reason: loadgen.is_none().then(|| "interrupted".into()),
            warnings: vec!["fep_gateway exited with 1".into()],
            settings: Settings {
                scenario: "s1".into(),
                workers: 1,
                routing: Some("local".into()),
                write_mode: Some("speculative".into()),
                upstream_connections: Some(1),
                target: "gateway".into(),
                connections: 10,
                inflight: 1,
                size: 64,
                warmup: 100,
                count: 500,
                tcp_congestion: None,
                commands: vec!["mock_exchange --workers 1".into()],
            },
            pinning: PinningReport {
                plan: "colocate".into(),
                reason: "2 CPUs".into(),
                exchange_cpu: Some(1),
                gateway_cpus: vec![1],
                loadgen_cpu: Some(1),
            },
            machine: Machine {
                cores: 2,
                kernel: "6.1.0".into(),
                cpu_model: "Some CPU".into(),
                git_commit: None,
            },
            tcp: None,
            loadgen,
        }
    }

    #[test]
    fn the_cli_contract_example_parses_and_keeps_extra_fields() {
        let s: LoadgenSummary = serde_json::from_str(CLI_EXAMPLE).unwrap();
        assert_eq!(s.scenario.as_deref(), Some("s1"));
        assert_eq!(s.count, 10_000);
        assert_eq!(s.rtt.p999_us, 90.5);
        assert_eq!(s.hop1.unwrap().mean_us, 1.5);
        assert!(s.hop2.is_none());
        assert_eq!(s.extra["achieved_rate"], 5000.5);
        let again: LoadgenSummary =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn loadgen_summary_is_read_from_the_last_stdout_line() {
        let stdout = format!(
            "ready\ninterval 1s rate=5000\n{}\n\n",
            CLI_EXAMPLE.replace('\n', "")
        );
        let s = LoadgenSummary::from_stdout(&stdout).unwrap();
        assert_eq!(s.connections, 10);
        assert!(LoadgenSummary::from_stdout("no json here\n").is_err());
    }

    #[test]
    fn a_missing_contract_field_is_an_error() {
        let without_lost = CLI_EXAMPLE.replace("\"lost\":0,", "");
        assert!(serde_json::from_str::<LoadgenSummary>(&without_lost).is_err());
    }

    #[test]
    fn run_summary_round_trips_with_loadgen_at_the_top_level() {
        let loadgen: LoadgenSummary = serde_json::from_str(CLI_EXAMPLE).unwrap();
        let run = sample_run(Some(loadgen));
        let text = serde_json::to_string_pretty(&run).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["rtt"]["p50_us"], 31.2,
            "loadgen keys sit at the top level"
        );
        assert_eq!(value["machine"]["cores"], 2);
        assert_eq!(value["partial"], false);
        let back: RunSummary = serde_json::from_str(&text).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn partial_run_without_loadgen_output_round_trips() {
        let run = sample_run(None);
        let text = serde_json::to_string(&run).unwrap();
        assert!(!text.contains("\"rtt\""));
        let back: RunSummary = serde_json::from_str(&text).unwrap();
        assert_eq!(back, run);
        assert!(back.partial);
    }

    #[test]
    fn histogram_summary_is_in_microseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for ns in 1..=1000u64 {
            h.record(ns * 1_000).unwrap();
        }
        let s = LatencySummary::from_histogram(&h);
        assert!((s.p50_us - 500.0).abs() < 0.5, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        assert_eq!(s.at(Percentile::P999), s.p999_us);
    }
}
