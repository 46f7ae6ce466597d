//! `loadgen`: opens `--connections` to a gateway (or an exchange), hand-
//! shakes, sends `--warmup` pings unrecorded and `--count` recorded, and
//! reports round-trip and hop latencies. `--json` prints CLI.md's summary
//! object as the last stdout line; `--out DIR` writes the `.hgrm` files.
//! SIGINT/SIGTERM stop the run early and still print what was measured.

mod metrics;
mod report;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fep_bins::cli::{fail, parse_cpus, parse_or_exit, watch_lifeline, CpuList};
use fep_bins::limits::{raise_nofile, NofileGoal};
use fep_core::Nanos;
use fep_load::client::{Client, ClientConfig, Load, Workload};
use fep_load::flow::{FlowConfig, OrderFlow};
use fep_load::schedule::{BaseRate, Profile, Schedule, ScheduleConfig, Shape};
use fep_net::Config;
use fep_trading::msg::PING_FRAME_LEN_MIN;
use report::{describe, summary, write_histograms, LiveView, LoadShape};

fn parse_shape(text: &str) -> Result<Shape, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn parse_profile(text: &str) -> Result<Profile, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn parse_nanos(text: &str) -> Result<Nanos, String> {
    text.parse()
        .map_err(|e: fep_core::time::BadDuration| e.to_string())
}

/// The shortest `--interval`: one line of live stats each (a thousand
/// lines a second at most; the JSON keeps the last INTERVALS_KEPT_MAX).
const INTERVAL_MIN: Nanos = Nanos(1_000_000);

fn parse_interval(text: &str) -> Result<Nanos, String> {
    let d = parse_nanos(text)?;
    if d < INTERVAL_MIN {
        return Err(format!(
            "{text:?} is shorter than the shortest interval, 1ms"
        ));
    }
    Ok(d)
}

/// Starts the metrics endpoint on `addr` for `workers` workers and prints
/// `metrics <addr>`.
fn serve_metrics(
    addr: std::net::SocketAddr,
    workers: usize,
) -> Result<Arc<fep_bins::metrics::Board>, String> {
    let board = fep_bins::metrics::Board::new(metrics::SERIES, workers);
    let registry = fep_bins::metrics::registry("loadgen", board.clone());
    let bound = fep_bins::metrics::serve(addr, registry)
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    println!("metrics {bound}");
    Ok(board)
}

/// The load model the flags ask for: open loop with --rate or --profile,
/// pipelined with --inflight above 1, else the closed loop.
fn load(cli: &Cli) -> Result<Load, String> {
    let rate = match (cli.rate, &cli.profile) {
        (Some(_), Some(_)) => return Err("--rate and --profile exclude each other".into()),
        (Some(rate), None) => BaseRate::Fixed(rate),
        (None, Some(profile)) => BaseRate::Profile(profile.clone()),
        (None, None) => {
            return Ok(match cli.inflight {
                1 => Load::Closed,
                inflight => Load::Pipelined { inflight },
            })
        }
    };
    let config = ScheduleConfig {
        rate,
        shape: cli.shape,
        seed: cli.seed,
        ramp_up: cli.ramp_up.unwrap_or(Nanos::ZERO),
    };
    let schedule = Schedule::new(config).map_err(|e| format!("{e}"))?;
    Ok(Load::Open {
        schedule: Box::new(schedule),
        window: cli.window,
    })
}

/// Pipelined runs measure msgs/s from the end of warm-up to the last
/// answer: a steady state only when the warm-up fills the pipeline and the
/// count spans many windows. With the whole run in one or two windows the
/// answers arrive as one burst at the end, and that rate means nothing.
fn short_run_warning(cli: &Cli) -> Option<String> {
    if cli.inflight <= 1 || cli.rate.is_some() || cli.profile.is_some() {
        return None;
    }
    let window = u64::from(cli.connections) * u64::from(cli.inflight);
    (cli.warmup < window || cli.count < 10 * window).then(|| {
        format!(
            "{} connections x {} in flight = {window} pings in flight, against --warmup {} \
             --count {}: throughput_msgs_per_s is not a steady-state rate (see \
             overall_msgs_per_s); use --warmup >= {window} --count >= {}",
            cli.connections,
            cli.inflight,
            cli.warmup,
            cli.count,
            10 * window
        )
    })
}

/// `--workload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum WorkloadArg {
    /// PerfPing round trips.
    Ping,
    /// A seeded order flow.
    Orders,
}

/// The order flow the flags ask for, checked whole (one clear line when
/// it cannot run).
fn workload(cli: &Cli) -> Result<Workload, String> {
    if cli.workload == WorkloadArg::Ping {
        return Ok(Workload::Ping);
    }
    let first_id = cli.first_cl_ord_id.unwrap_or_else(|| {
        // Later runs start later: above the ids of any run before this
        // one, which used fewer than one per nanosecond.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2))
    });
    let flow = FlowConfig {
        instruments: cli.instruments,
        accounts: cli.accounts,
        connections: cli.connections,
        seed: cli.seed,
        first_id,
        ..FlowConfig::default()
    };
    OrderFlow::new(flow).map_err(|e| e.to_string())?;
    Ok(Workload::Orders(flow))
}

/// The FEP load generator.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    /// The gateway (or exchange) to load.
    #[arg(long, env = "FEP_CONNECT", default_value = "127.0.0.1:9000")]
    connect: SocketAddr,
    /// Connections to open.
    #[arg(long, env = "FEP_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Answers not recorded before measuring.
    #[arg(long, env = "FEP_WARMUP", default_value_t = 1000)]
    warmup: u64,
    /// Answers recorded.
    #[arg(long, env = "FEP_COUNT", default_value_t = 10_000)]
    count: u64,
    /// Pings in flight per connection. 1 (the default) is the closed loop:
    /// one ping in flight in total, round robin over the connections.
    #[arg(long, env = "FEP_INFLIGHT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    inflight: u32,
    /// Open loop: this many pings per second, latency measured from the
    /// intended send time (coordinated-omission corrected).
    #[arg(long, env = "FEP_RATE")]
    rate: Option<f64>,
    /// Open loop: arrival shape.
    #[arg(long, env = "FEP_SHAPE", default_value = "constant", value_parser = parse_shape)]
    shape: Shape,
    /// Open loop: a rate profile instead of --rate, e.g.
    /// "0s:1000, 10s:5000, ramp 20s:1000, end 30s".
    #[arg(long, env = "FEP_PROFILE", value_parser = parse_profile)]
    profile: Option<Profile>,
    /// Open loop: a linear rise from 0 to the rate first, e.g. 2s.
    #[arg(long, env = "FEP_RAMP_UP", value_parser = parse_nanos)]
    ramp_up: Option<Nanos>,
    /// Open loop: seed of the arrival gaps and spikes.
    #[arg(long, env = "FEP_SEED", default_value_t = 0)]
    seed: u64,
    /// Open loop: pings one connection may have in flight; a due ping waits
    /// for room.
    #[arg(long, env = "FEP_WINDOW", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// Print live stats (rate, p50, p99, errors) every interval of this
    /// length while running, e.g. 1s (at least 1ms), and keep the series
    /// in the summary.
    #[arg(long, env = "FEP_INTERVAL", value_parser = parse_interval)]
    interval: Option<Nanos>,
    /// Whole PerfPing frame size in bytes (at least 54; the rest is pad).
    #[arg(long, env = "FEP_SIZE", default_value_t = 64)]
    size: usize,
    /// Scenario name repeated in the JSON summary.
    #[arg(long, env = "FEP_SCENARIO")]
    scenario: Option<String>,
    /// Token presented in the hand-shake.
    #[arg(long, env = "FEP_TOKEN", default_value = "")]
    token: String,
    /// Pin the load generator's thread to this CPU.
    #[arg(long, env = "FEP_CPUS", value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// How long to wait for the last answers once all pings are sent, in ms.
    #[arg(long, env = "FEP_DRAIN_MS", default_value_t = 5000)]
    drain_ms: u64,
    /// Print the summary as one JSON object on the last stdout line.
    #[arg(long, env = "FEP_JSON")]
    json: bool,
    /// What to send: pings, or a seeded order flow (new day and IOC orders,
    /// cancels, replaces; its answers checked as they come).
    #[arg(long, env = "FEP_WORKLOAD", value_enum, default_value = "ping")]
    workload: WorkloadArg,
    /// Orders: instruments traded (1 … N), as the exchange's --instruments.
    #[arg(long, env = "FEP_INSTRUMENTS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..))]
    instruments: u32,
    /// Orders: the exchange's accounts (1 … N), spread over the
    /// connections (at least one per connection).
    #[arg(long, env = "FEP_ACCOUNTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    accounts: u32,
    /// Orders: each connection's first cl_ord_id (then one more per
    /// request). Default: the wall clock in nanoseconds, so a run against
    /// an exchange that served an earlier one stays above every account's
    /// mark (an id at or below it is refused DUPLICATE_ID).
    #[arg(long, env = "FEP_FIRST_CL_ORD_ID",
          value_parser = clap::value_parser!(u64).range(1..))]
    first_cl_ord_id: Option<u64>,
    /// Write rtt.hgrm and hop1.hgrm … hop4.hgrm into this directory.
    #[arg(long, env = "FEP_OUT")]
    out: Option<PathBuf>,
    /// How long dials and hand-shakes may take; connections not hand-shaked
    /// by then are given up and the run goes on with the others.
    #[arg(long, env = "FEP_HANDSHAKE_TIMEOUT", value_parser = parse_nanos, default_value = "10s")]
    handshake_timeout: Nanos,
    /// Print `progress warmup|measure <done>/<total>` lines while running.
    #[arg(long, env = "FEP_PROGRESS")]
    progress: bool,
    /// Serve Prometheus metrics (GET /metrics, OpenMetrics text) on this
    /// address while the run goes; off by default. Prints `metrics <addr>`.
    #[arg(long, env = "FEP_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    /// TCP congestion control of every connection, by its kernel name
    /// (cubic, reno, bbr, …); default: the system's.
    #[arg(long, env = "FEP_TCP_CONGESTION")]
    tcp_congestion: Option<String>,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    watch_lifeline();
    if cli.size < PING_FRAME_LEN_MIN {
        return fail(format!(
            "--size {} is below the smallest ping, {PING_FRAME_LEN_MIN} bytes",
            cli.size
        ));
    }
    let load = match load(&cli) {
        Ok(load) => load,
        Err(e) => return fail(e),
    };
    let workload = match workload(&cli) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    // One descriptor per connection: refuse now rather than fail half-way
    // through the dials when the hard limit cannot cover them.
    let nofile = raise_nofile(NofileGoal::client(u64::from(cli.connections)));
    if let Some(line) = nofile.shortfall(&format!("{} connections", cli.connections)) {
        return fail(line);
    }
    if let Some(line) = short_run_warning(&cli) {
        eprintln!("loadgen: warning: {line}");
    }
    let client = ClientConfig {
        connections: cli.connections,
        warmup: cli.warmup,
        count: cli.count,
        load,
        size: cli.size,
        token: cli.token.clone(),
        drain_timeout: Nanos::from_millis(cli.drain_ms),
        trace_max: 0,
        interval: cli.interval,
        handshake_timeout: cli.handshake_timeout,
        workload,
    };
    // The pongs must fit the client's frame bound, pad included, and its
    // output bound the window it writes at once (a deep window of large
    // frames would otherwise be cut by the client's own bound).
    let mut worker = fep_core::WorkerConfig::default();
    let frame_len = u32::try_from(cli.size).unwrap_or(u32::MAX);
    worker.max_frame = worker.max_frame.max(frame_len);
    let window = (cli.inflight as usize + 1).saturating_mul(cli.size);
    worker.output_backlog_max = worker.output_backlog_max.max(2 * cli.size).max(window);
    let config = Config::new()
        .peers(vec![cli.connect])
        .cpus(cli.cpus.clone().map(|c| c.0))
        .worker_config(worker)
        .tcp_congestion(cli.tcp_congestion.clone())
        .handle_signals(true);
    let view = LiveView::new(cli.warmup, cli.count, cli.progress);
    let workers = config.worker_count();
    let board = match cli.metrics.map(|a| serve_metrics(a, workers)).transpose() {
        Ok(board) => board,
        Err(e) => return fail(e),
    };
    let config = match board {
        Some(_) => config.observe_every(fep_bins::metrics::PUBLISH_EVERY),
        None => config,
    };
    let observer: fep_net::Observer<Client> = Arc::new(move |id, client: &Client| {
        if let Some(board) = &board {
            metrics::publish(board, id.index(), client);
        }
        let lines = view.lines(client.report());
        if !lines.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(lines.as_bytes())
                .and_then(|()| stdout.flush());
        }
    });
    let started = fep_net::start_observed(config, move |_| Client::new(client.clone()), observer);
    let workers = match started.and_then(|running| running.join()) {
        Ok(workers) => workers,
        Err(e) => return fail(e),
    };
    let with_flow = |c: &Client| {
        let mut r = c.report().clone();
        r.flow = c.flow_stats().cloned();
        r
    };
    let mut report = with_flow(workers[0].service());
    for w in &workers[1..] {
        report.merge(&with_flow(w.service()));
    }
    let shape = LoadShape {
        scenario: cli.scenario.clone(),
        connections: u64::from(cli.connections),
        inflight: u64::from(cli.inflight),
        size: cli.size as u64,
        warmup: cli.warmup,
        count: cli.count,
    };
    if report.connections_lost > 0 {
        eprintln!(
            "loadgen: warning: {} of {} connections ended before the run did (dial failed, \
             closed by the peer or after an Error)",
            report.connections_lost, cli.connections
        );
    }
    let summary = summary(&report, &shape);
    if let Some(dir) = &cli.out {
        if let Err(e) = write_histograms(&report, dir) {
            return fail(format!("cannot write histograms to {}: {e}", dir.display()));
        }
    }
    let mut text = describe(&summary);
    if cli.json {
        match serde_json::to_string(&summary) {
            Ok(line) => text.push_str(&line),
            Err(e) => return fail(format!("cannot encode the summary: {e}")),
        }
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        return fail(format!("cannot write the summary: {e}"));
    }
    if report.sent == 0 && cli.warmup + cli.count > 0 {
        return fail(format!(
            "no ping could be sent to {} ({} connection errors)",
            cli.connect, report.errors
        ));
    }
    ExitCode::SUCCESS
}
