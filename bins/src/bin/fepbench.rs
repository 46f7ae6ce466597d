//! `fepbench`: runs the FEP scenarios end to end and keeps the results.
//!
//! - `fepbench run s1|s2|s3`: one measured run into `results/<s>/<UTC>/`;
//! - `fepbench sweep [--runs K] [s1 s2 s3]`: scenarios interleaved K times,
//!   then summarised;
//! - `fepbench engine`: the matching engine alone, beside lobster;
//! - `fepbench summarize DIR`: `summary.md` over every run below DIR;
//! - `fepbench baseline`: direct, tokio proxy, the C epoll relay, gateway
//!   and deferred-write gateway in one placement, plus a pipelined
//!   throughput comparison;
//! - `fepbench knee [SCENARIO...] [--slo p99=100us]...`: latency against
//!   offered load, open loop, and the highest rate that meets each SLO;
//! - `fepbench compare A B [--fail-on METRIC:+X%]...`: per metric, B
//!   against A with a significance test; exit 1 on a significant
//!   regression past a threshold.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fep_bins::bench::baseline::{baseline_legs, baseline_markdown, build_c_relay, C_RELAY};
use fep_bins::bench::compare::{self, Gate};
use fep_bins::bench::knee::{self, Schedule, Slo};
use fep_bins::bench::kneerun::{self, KneePlan};
use fep_bins::bench::machine::{describe_machine, UtcTime};
use fep_bins::bench::pin::{allowed_cpus, parse_cpu_list, PinMode};
use fep_bins::bench::report::{find_runs, render_markdown};
use fep_bins::bench::run::{
    fresh_run_dir, scenario_names, Bench, Leg, LoadFlags, RunOutcome, ScenarioRow, Target,
};
use fep_bins::bench::summary::{latency_table, RunSummary};
use fep_trading::gateway::UPSTREAM_CONNECTIONS_MAX;

/// Runs the FEP gateway scenarios end to end and stores the results.
#[derive(Debug, Parser)]
#[command(name = "fepbench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The journal's figures on this disk: fsync latency, group-commit
    /// throughput (batch, none, one fsync per record), recovery speed.
    Wal(fep_bins::bench::wal::WalBenchOpts),
    /// Recovery speed: a journal of exchange-core's order flow replayed
    /// through the engine as `mock_exchange --wal` does at start.
    Recovery(fep_bins::bench::recovery::RecoveryArgs),
    /// One measured run of a scenario: s1 (1 worker, local), s2 (2 workers,
    /// local) or s3 (2 workers, handoff).
    Run {
        /// s1, s2 or s3.
        scenario: String,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// Repeats scenarios interleaved (s1 s2 s3 s1 s2 s3 …) so drift hits
    /// all alike, then writes summary.md.
    Sweep {
        /// Rounds.
        #[arg(long, default_value_t = 5, env = "FEP_RUNS")]
        runs: u32,
        /// Scenarios, in round order.
        #[arg(default_values_t = ["s1".to_string(), "s2".to_string(), "s3".to_string()])]
        scenarios: Vec<String>,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// The matching engine alone (no network, one thread) on
    /// exchange-core's workload shape, open loop and at the maximum, beside
    /// the lobster crate on the same stream.
    Engine(fep_bins::bench::engine::EngineArgs),
    /// Prints and writes DIR/summary.md over every summary.json below DIR.
    Summarize {
        /// A results directory (a sweep's, or all of results/).
        dir: PathBuf,
    },
    /// The floor and the alternatives in one placement: loadgen direct to
    /// the exchange, through tokio_proxy, through a minimal C epoll relay
    /// (compiled at run time with $CC or cc; skipped with a warning when
    /// that fails), through fep_gateway (speculative, deferred and batched
    /// writes), then pipelined throughput gateway (speculative, batched,
    /// and with several upstream connections) vs tokio and vs the C relay.
    Baseline {
        /// Rounds of all legs, interleaved; figures are medians.
        #[arg(long, default_value_t = 1, env = "FEP_RUNS")]
        runs: u32,
        /// Connections of the pipelined legs.
        #[arg(long, default_value_t = 100)]
        pipelined_connections: u64,
        /// Pings in flight per connection in the pipelined legs.
        #[arg(long, default_value_t = 30)]
        pipelined_inflight: u64,
        /// Frame size of the pipelined legs.
        #[arg(long, default_value_t = 1024)]
        pipelined_size: u64,
        /// Measured pings of the pipelined legs.
        #[arg(long, default_value_t = 300_000)]
        pipelined_count: u64,
        /// Upstream connections per worker of the `upstreams-pipelined`
        /// leg (the C relay opens one per client; the other gateway legs
        /// keep the gateway's default of one).
        #[arg(long, default_value_t = 8,
              value_parser = clap::value_parser!(u16).range(1..=i64::from(UPSTREAM_CONNECTIONS_MAX)))]
        pipelined_upstream_connections: u16,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// Latency against offered load: open-loop runs at rising rates (from
    /// a fraction of a measured maximum to past it), each corrected for
    /// coordinated omission; a table, one plot of every target, and with
    /// `--slo` the highest rate that meets it. Writes knee.md, knee.json
    /// and knee.svg into `<results>/knee/<UTC timestamp>/`. The steps set
    /// their own count, warm-up and rate (`--warmup`, `--count`,
    /// `--inflight` and `--rate` do not apply).
    Knee {
        /// Scenarios (s1, s2, s3, o1, o2, o3) and baselines (direct,
        /// tokio, c-relay), all on one plot.
        #[arg(default_values_t = ["s1".to_string()])]
        targets: Vec<String>,
        #[command(flatten)]
        knee: KneeOpts,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// B against A per scenario and metric (rtt p50/p99/p99.9/max, hop
    /// p50s, throughput) with a two-sided Mann–Whitney U test over the
    /// per-run values; a difference inside the noise is reported as such.
    /// Writes compare.md and compare.json. Exit 0, or 1 when a `--fail-on`
    /// rule is broken by a significant change, or 2 on bad input.
    Compare {
        /// The reference: a run's or a sweep's results directory.
        a: PathBuf,
        /// The candidate.
        b: PathBuf,
        /// Fail (exit 1) on a significant change of METRIC past X%, e.g.
        /// `p99:+10%` (slower) or `throughput:-5%`; repeatable. Metrics:
        /// p50, p99, p99.9, max, hop1…hop4, throughput.
        #[arg(long = "fail-on", value_parser = Gate::parse)]
        fail_on: Vec<Gate>,
        /// Significance level.
        #[arg(long, default_value_t = compare::ALPHA_DEFAULT)]
        alpha: f64,
        /// Where compare.md and compare.json go (default
        /// `<results>/compare/<UTC timestamp>/`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The results root for the default `--out`.
        #[arg(long, default_value = "results", env = "FEP_RESULTS")]
        results: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
struct KneeOpts {
    /// A latency requirement, `PERCENTILE=BOUND`: p99=100us, p99.9=1ms,
    /// max=5ms, p99.99=2ms; repeatable.
    #[arg(long = "slo")]
    slos: Vec<Slo>,
    /// The rate (pings/s) the fractions are of; without it a short
    /// pipelined run measures each target's maximum first.
    #[arg(long = "max")]
    max_per_s: Option<f64>,
    /// Offered rates as fractions of the maximum.
    #[arg(long, value_parser = parse_numbers, default_value = "0.1,0.25,0.5,0.7,0.8,0.9,1,1.1,1.2")]
    fractions: Numbers,
    /// Offered rates in pings/s instead (`20k` is 20,000); no probe.
    #[arg(long, value_parser = parse_numbers, conflicts_with_all = ["fractions", "max_per_s"])]
    rates: Option<Numbers>,
    /// Seconds of measured load per step.
    #[arg(long, default_value_t = 2.0)]
    step_seconds: f64,
    /// Seconds of unrecorded warm-up load per step, at the step's rate.
    #[arg(long, default_value_t = 0.5)]
    warmup_seconds: f64,
    /// Share of the offered rate a step must achieve to count as
    /// sustained.
    #[arg(long, default_value_t = knee::ACHIEVED_SHARE_MIN_DEFAULT)]
    achieved_min: f64,
    /// Probe: connections.
    #[arg(long, default_value_t = 10)]
    probe_connections: u64,
    /// Probe: pings in flight per connection.
    #[arg(long, default_value_t = 16)]
    probe_inflight: u64,
    /// Probe: measured pings.
    #[arg(long, default_value_t = 200_000)]
    probe_count: u64,
}

/// A comma-separated list of numbers as one flag value.
#[derive(Debug, Clone)]
struct Numbers(Vec<f64>);

fn parse_numbers(text: &str) -> Result<Numbers, String> {
    knee::parse_number_list(text).map(Numbers)
}

impl KneeOpts {
    fn plan(&self, opts: &CommonOpts) -> KneePlan {
        let schedule = match &self.rates {
            Some(rates) => Schedule::Rates(rates.0.clone()),
            None => Schedule::Fractions(self.fractions.0.clone()),
        };
        let mut step_args = vec![
            "--seed".to_string(),
            opts.seed.clone().unwrap_or_else(|| "0".into()),
        ];
        for (flag, value) in [("--shape", &opts.shape), ("--interval", &opts.interval)] {
            if let Some(v) = value {
                step_args.extend([flag.to_string(), v.clone()]);
            }
        }
        KneePlan {
            slos: self.slos.clone(),
            schedule,
            max_per_s: self.max_per_s,
            step_seconds: self.step_seconds,
            warmup_seconds: self.warmup_seconds,
            achieved_min: self.achieved_min,
            probe: LoadFlags {
                connections: self.probe_connections,
                inflight: self.probe_inflight,
                size: opts.size,
                warmup: self.probe_count / 10,
                count: self.probe_count,
                extra_args: Vec::new(),
            },
            step: LoadFlags {
                connections: opts.connections,
                inflight: 1,
                size: opts.size,
                warmup: 0,
                count: 0,
                extra_args: step_args,
            },
        }
    }

    fn check(&self) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let warmup_ok = self.warmup_seconds.is_finite() && self.warmup_seconds >= 0.0;
        if !(positive(self.step_seconds) && warmup_ok) {
            return Err("--step-seconds must be above 0 and --warmup-seconds at least 0".into());
        }
        if !(self.achieved_min > 0.0 && self.achieved_min <= 1.0) {
            return Err("--achieved-min must be in (0, 1]".into());
        }
        if self.max_per_s.is_some_and(|m| !positive(m)) {
            return Err("--max must be a rate above 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
struct CommonOpts {
    /// Pings before measuring.
    #[arg(long, default_value_t = 1_000, env = "FEP_WARMUP")]
    warmup: u64,
    /// Measured pings.
    #[arg(long, default_value_t = 10_000, env = "FEP_COUNT")]
    count: u64,
    /// Client connections.
    #[arg(long, default_value_t = 10, env = "FEP_CONNECTIONS")]
    connections: u64,
    /// Pings in flight per connection (1 with one connection in use at a
    /// time is loadgen's closed loop).
    #[arg(long, default_value_t = 1, env = "FEP_INFLIGHT")]
    inflight: u64,
    /// PerfPing frame size in bytes.
    #[arg(long, default_value_t = 64, env = "FEP_SIZE")]
    size: u64,
    /// CPUs the pinning plan may use, e.g. `0,1` or `2-5` (default: all).
    #[arg(long, env = "FEP_CPUS")]
    cpus: Option<String>,
    /// Placement: auto (below 4 CPUs: co-locate a closed-loop leg, leave
    /// pipelined and open-loop legs to the scheduler so no CPU idles; from
    /// 4 CPUs: spread), none, colocate, spread.
    #[arg(long, default_value = "auto", env = "FEP_PIN")]
    pin: PinMode,
    /// Where results go.
    #[arg(long, default_value = "results", env = "FEP_RESULTS")]
    results: PathBuf,
    /// mock_exchange worker threads.
    #[arg(long, default_value_t = 1, env = "FEP_EXCHANGE_WORKERS")]
    exchange_workers: u32,
    /// The exchange journals every order to `wal/` in the run's directory
    /// and answers only what is on stable storage (mock_exchange --wal).
    #[arg(long, env = "FEP_WAL")]
    wal: bool,
    /// With --wal: batch (group commit, one fdatasync per batch) or none
    /// (no fsync: the engine without the disk; answers are not durable).
    #[arg(long, default_value = "batch", value_parser = ["batch", "none"], env = "FEP_WAL_SYNC")]
    wal_sync: String,
    /// The gateway runs its pre-trade checks with this configuration
    /// (fep_gateway --risk FILE). docs/risk.bench.toml enables every check
    /// with limits the o1 flow never reaches; its client's token is
    /// `fepbench` (give it with --token).
    #[arg(long, env = "FEP_RISK")]
    risk: Option<PathBuf>,
    /// loadgen `--token`: what every connection presents in its hand-shake.
    #[arg(long)]
    token: Option<String>,
    /// The gateway serves Prometheus metrics on a free port (fep_gateway
    /// --metrics 127.0.0.1:0): its workers publish every 100 ms, as they
    /// would when scraped. For measuring metrics on against off.
    #[arg(long, env = "FEP_GATEWAY_METRICS")]
    gateway_metrics: bool,
    /// The gateway's upstream connections per worker (fep_gateway
    /// --upstream-connections): several spread a pipelined load over
    /// several TCP streams.
    #[arg(long, default_value_t = 1, env = "FEP_UPSTREAM_CONNECTIONS",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(UPSTREAM_CONNECTIONS_MAX)))]
    upstream_connections: u16,
    /// TCP congestion control of every process's sockets (`--tcp-congestion`
    /// of mock_exchange, fep_gateway, loadgen and tokio_proxy; the C relay's
    /// third argument), by its kernel name: cubic, reno, bbr, …; default:
    /// the system's (net.ipv4.tcp_congestion_control), recorded in
    /// settings.tcp_congestion.
    #[arg(long, env = "FEP_TCP_CONGESTION")]
    tcp_congestion: Option<String>,
    /// Where the binaries are (default: next to fepbench).
    #[arg(long, env = "FEP_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Seconds a server may take to print `ready <addr>`.
    #[arg(long, default_value_t = 10)]
    ready_timeout: u64,
    /// Seconds loadgen may run in all before it is stopped.
    #[arg(long, default_value_t = 1_800)]
    timeout: u64,
    /// No spinner on stderr.
    #[arg(long)]
    no_progress: bool,
    /// loadgen `--rate` (open loop).
    #[arg(long)]
    rate: Option<String>,
    /// loadgen `--shape`.
    #[arg(long)]
    shape: Option<String>,
    /// loadgen `--seed`.
    #[arg(long)]
    seed: Option<String>,
    /// loadgen `--ramp-up`.
    #[arg(long)]
    ramp_up: Option<String>,
    /// loadgen `--profile`.
    #[arg(long)]
    profile: Option<String>,
    /// loadgen `--interval`.
    #[arg(long)]
    interval: Option<String>,
}

impl CommonOpts {
    fn load(&self) -> LoadFlags {
        let mut extra_args = Vec::new();
        let passthrough = [
            ("--rate", &self.rate),
            ("--shape", &self.shape),
            ("--seed", &self.seed),
            ("--ramp-up", &self.ramp_up),
            ("--profile", &self.profile),
            ("--interval", &self.interval),
            ("--token", &self.token),
        ];
        for (flag, value) in passthrough {
            if let Some(value) = value {
                extra_args.push(flag.to_string());
                extra_args.push(value.clone());
            }
        }
        LoadFlags {
            connections: self.connections,
            inflight: self.inflight,
            size: self.size,
            warmup: self.warmup,
            count: self.count,
            extra_args,
        }
    }

    fn bench(&self, interrupted: Arc<AtomicBool>) -> Result<Bench, String> {
        if let Some(name) = &self.tcp_congestion {
            // Refused here in one line rather than by the first child.
            if let Err(e) = fep_net::check_congestion(name) {
                return Err(format!(
                    "--tcp-congestion {name}: not available here ({e}; see \
                     net.ipv4.tcp_available_congestion_control)"
                ));
            }
        }
        let cpus = match &self.cpus {
            Some(list) => parse_cpu_list(list)?,
            None => allowed_cpus(),
        };
        let bin_dir = match &self.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find my own executable: {e}"))?
                .parent()
                .map(Path::to_path_buf)
                .ok_or("my executable has no directory")?,
        };
        Ok(Bench {
            bin_dir,
            cpus,
            pin: self.pin,
            exchange_workers: self.exchange_workers,
            exchange_wal: self.wal.then(|| self.wal_sync.clone()),
            gateway_risk: self.risk.clone(),
            gateway_metrics: self.gateway_metrics,
            tcp_congestion: self.tcp_congestion.clone(),
            ready_timeout: Duration::from_secs(self.ready_timeout),
            run_timeout: Duration::from_secs(self.timeout),
            stop_grace: Duration::from_secs(5),
            interrupted,
            progress: !self.no_progress,
            machine: describe_machine(Path::new(".")),
        })
    }
}

fn main() -> ExitCode {
    let cli: Cli = fep_bins::cli::parse_or_exit();
    let interrupted = Arc::new(AtomicBool::new(false));
    // Only the commands that start processes watch the flag; the others
    // (the engine, the journal, summaries) keep the default: Ctrl-C ends
    // them at once.
    let starts_processes = matches!(
        cli.command,
        Command::Run { .. }
            | Command::Sweep { .. }
            | Command::Knee { .. }
            | Command::Baseline { .. }
    );
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]
    .into_iter()
    .filter(|_| starts_processes)
    {
        // Ctrl-C only raises the flag: fepbench then stops its children
        // itself (they are in their own process groups and never see it),
        // each within its grace period, so none is left running.
        let registered = signal_hook::flag::register(signal, interrupted.clone());
        if let Err(e) = registered {
            eprintln!("fepbench: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Run { scenario, opts } => cmd_run(&scenario, &opts, interrupted),
        Command::Sweep {
            runs,
            scenarios,
            opts,
        } => cmd_sweep(runs, &scenarios, &opts, interrupted),
        Command::Summarize { dir } => cmd_summarize(&dir),
        Command::Engine(args) => fep_bins::bench::engine::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Wal(opts) => fep_bins::bench::wal::run(&opts).map(|()| ExitCode::SUCCESS),
        Command::Recovery(args) => {
            fep_bins::bench::recovery::run(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Knee {
            targets,
            knee,
            opts,
        } => cmd_knee(&targets, &knee, &opts, interrupted),
        Command::Compare {
            a,
            b,
            fail_on,
            alpha,
            out,
            results,
        } => Ok(cmd_compare(&a, &b, &fail_on, alpha, out, &results)),
        Command::Baseline {
            runs,
            pipelined_connections,
            pipelined_inflight,
            pipelined_size,
            pipelined_count,
            pipelined_upstream_connections,
            opts,
        } => {
            let pipelined = LoadFlags {
                connections: pipelined_connections,
                inflight: pipelined_inflight,
                size: pipelined_size,
                warmup: pipelined_count / 10,
                count: pipelined_count,
                extra_args: Vec::new(),
            };
            cmd_baseline(
                runs,
                pipelined,
                pipelined_upstream_connections,
                &opts,
                interrupted,
            )
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("fepbench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn scenario_row(name: &str) -> Result<&'static ScenarioRow, String> {
    ScenarioRow::find(name)
        .ok_or_else(|| format!("unknown scenario {name:?}: use one of {}", scenario_names()))
}

/// The gateway `row` runs, with `opts`' gateway settings.
fn scenario_target(opts: &CommonOpts, row: &ScenarioRow) -> Target {
    match row.target() {
        Target::Gateway {
            workers,
            routing,
            write_mode,
            ..
        } => Target::Gateway {
            workers,
            routing,
            write_mode,
            upstream_connections: opts.upstream_connections,
        },
        other => other,
    }
}

/// `opts`' load plus the scenario's own loadgen flags (its workload).
fn scenario_load(opts: &CommonOpts, row: &ScenarioRow) -> LoadFlags {
    let mut load = opts.load();
    load.extra_args.extend(row.loadgen_args());
    load
}

/// The exit code of a finished leg: 0 complete, 130 interrupted, 1 failed.
fn exit_code(outcome: &RunOutcome) -> ExitCode {
    match (&outcome.summary.partial_reason, outcome.interrupted()) {
        (None, _) => ExitCode::SUCCESS,
        (Some(_), true) => ExitCode::from(130),
        (Some(_), false) => ExitCode::FAILURE,
    }
}

fn cmd_run(
    scenario: &str,
    opts: &CommonOpts,
    interrupted: Arc<AtomicBool>,
) -> Result<ExitCode, String> {
    let row = scenario_row(scenario)?;
    let bench = opts.bench(interrupted)?;
    let dir = fresh_run_dir(&opts.results.join(scenario), UtcTime::now()).map_err(|e| {
        format!(
            "cannot create a run directory under {}: {e}",
            opts.results.display()
        )
    })?;
    let leg = Leg {
        name: scenario.to_string(),
        target: scenario_target(opts, row),
        load: scenario_load(opts, row),
    };
    let outcome = bench.run_leg(&leg, &dir, scenario);
    print_run(&outcome);
    if bench.exchange_wal.is_some() {
        print_fsync_probe(&dir);
    }
    Ok(exit_code(&outcome))
}

/// With `--wal`: this disk's fsync latency, measured in the same run (right
/// after the leg, on the journal's file system), so a durable hop3 can be
/// read against it. Written to `fsync.txt` beside the run's results.
fn print_fsync_probe(dir: &Path) {
    const APPENDS: u32 = 200;
    match fep_net::wal::probe_fsync(dir, APPENDS, fep_net::wal::ProbeFile::Preallocated) {
        Ok(h) => {
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
            let line = format!(
                "fsync probe ({APPENDS} x 4 KiB append + fdatasync, preallocated): \
                 p50 {:.1} us  p99 {:.1} us  max {:.1} us",
                us(0.5),
                us(0.99),
                h.max() as f64 / 1e3
            );
            println!("{line}");
            if let Err(e) = std::fs::write(dir.join("fsync.txt"), format!("{line}\n")) {
                eprintln!("fepbench: cannot write fsync.txt: {e}");
            }
        }
        Err(e) => eprintln!("fepbench: fsync probe failed: {e}"),
    }
}

/// Runs `leg` as round `round` of `runs` into a fresh directory under
/// `parent`, and prints its line, its warnings and, for a partial run that
/// was not interrupted, why.
fn run_printed(
    bench: &Bench,
    leg: &Leg,
    parent: &Path,
    round: u32,
    runs: u32,
) -> Result<RunOutcome, String> {
    let dir = fresh_run_dir(&parent.join(&leg.name), UtcTime::now())
        .map_err(|e| format!("cannot create a run directory: {e}"))?;
    let label = format!("{} round {round}/{runs}", leg.name);
    let outcome = bench.run_leg(leg, &dir, &label);
    println!("{label}: {}", outcome.summary.one_line());
    if round == 1 {
        // Placement depends on the leg's load: say it once per leg.
        let p = &outcome.summary.pinning;
        println!("  placement {}: {}", p.plan, p.reason);
    }
    for w in &outcome.summary.warnings {
        println!("  warning: {w}");
    }
    if outcome.summary.partial && !outcome.interrupted() {
        println!(
            "  {}",
            outcome.summary.partial_reason.as_deref().unwrap_or("")
        );
    }
    Ok(outcome)
}

fn cmd_sweep(
    runs: u32,
    scenarios: &[String],
    opts: &CommonOpts,
    interrupted: Arc<AtomicBool>,
) -> Result<ExitCode, String> {
    let rows = scenarios
        .iter()
        .map(|s| scenario_row(s))
        .collect::<Result<Vec<_>, _>>()?;
    let bench = opts.bench(interrupted.clone())?;
    let sweep_dir = fresh_run_dir(&opts.results.join("sweeps"), UtcTime::now())
        .map_err(|e| format!("cannot create the sweep directory: {e}"))?;
    println!(
        "sweep: {runs} round(s) of {} into {}",
        scenarios.join(" "),
        sweep_dir.display()
    );
    let mut failed = 0;
    'rounds: for round in 1..=runs {
        for (name, row) in scenarios.iter().zip(&rows) {
            let leg = Leg {
                name: name.clone(),
                target: scenario_target(opts, row),
                load: scenario_load(opts, row),
            };
            let outcome = run_printed(&bench, &leg, &sweep_dir, round, runs)?;
            if outcome.interrupted() {
                break 'rounds;
            }
            if outcome.summary.partial {
                failed += 1;
            }
        }
    }
    cmd_summarize(&sweep_dir)?;
    Ok(match (interrupted.load(Ordering::Relaxed), failed) {
        (true, _) => ExitCode::from(130),
        (false, 0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn cmd_summarize(dir: &Path) -> Result<ExitCode, String> {
    let (runs, errors) = find_runs(dir);
    for e in &errors {
        eprintln!("fepbench: skipped {e}");
    }
    if runs.is_empty() {
        return Err(format!("no summary.json below {}", dir.display()));
    }
    let md = render_markdown(&runs);
    let path = dir.join("summary.md");
    std::fs::write(&path, &md).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("{md}");
    println!("written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// What a knee target name starts: a scenario of the table, or a
/// baseline (`direct`, `tokio`, the C relay, compiled once into `dir`).
fn knee_target(
    name: &str,
    opts: &CommonOpts,
    dir: &Path,
    c_relay: &mut Option<PathBuf>,
) -> Result<(Target, Vec<String>), String> {
    if let Some(row) = ScenarioRow::find(name) {
        return Ok((scenario_target(opts, row), row.loadgen_args()));
    }
    let target = match name {
        "direct" => Target::Exchange,
        "tokio" => Target::TokioProxy,
        C_RELAY => {
            if c_relay.is_none() {
                *c_relay = Some(build_c_relay(dir)?);
            }
            Target::CRelay {
                program: c_relay.clone().expect("just built"),
            }
        }
        other => {
            return Err(format!(
                "unknown knee target {other:?}: use a scenario ({}) or direct, tokio, {C_RELAY}",
                scenario_names()
            ))
        }
    };
    Ok((target, Vec::new()))
}

fn cmd_knee(
    names: &[String],
    k: &KneeOpts,
    opts: &CommonOpts,
    interrupted: Arc<AtomicBool>,
) -> Result<ExitCode, String> {
    k.check()?;
    if opts.rate.is_some() || opts.profile.is_some() {
        return Err("knee sets the offered rate itself: drop --rate/--profile".into());
    }
    let plan = k.plan(opts);
    if !plan.schedule.needs_max() {
        // Checked before any process starts.
        plan.schedule.rates(None)?;
    }
    let bench = opts.bench(interrupted.clone())?;
    let dir = fresh_run_dir(&opts.results.join("knee"), UtcTime::now())
        .map_err(|e| format!("cannot create the knee directory: {e}"))?;
    let mut c_relay = None;
    let targets = names
        .iter()
        .map(|n| knee_target(n, opts, &dir, &mut c_relay))
        .collect::<Result<Vec<_>, _>>()?;
    println!("knee: {} into {}", names.join(" "), dir.display());
    let report = kneerun::run(&bench, &plan, names, &targets, &dir)?;
    let md = kneerun::write(&dir, &report)?;
    println!("\n{md}\nwritten to {}", dir.display());
    let partial = report.curves.iter().any(|c| c.stopped.is_some());
    Ok(match (interrupted.load(Ordering::Relaxed), partial) {
        (true, _) => ExitCode::from(130),
        (false, false) => ExitCode::SUCCESS,
        (false, true) => ExitCode::FAILURE,
    })
}

fn cmd_compare(
    a: &Path,
    b: &Path,
    gates: &[Gate],
    alpha: f64,
    out: Option<PathBuf>,
    results: &Path,
) -> ExitCode {
    let usage = |message: String| {
        eprintln!("fepbench: {message}");
        ExitCode::from(2)
    };
    if !(alpha > 0.0 && alpha < 1.0) {
        return usage(format!("--alpha {alpha}: must be between 0 and 1"));
    }
    let comparison = match compare::compare_dirs(a, b, alpha, gates) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    let dir = match out {
        Some(dir) => std::fs::create_dir_all(&dir).map(|()| dir),
        None => fresh_run_dir(&results.join("compare"), UtcTime::now()),
    };
    let dir = match dir {
        Ok(dir) => dir,
        Err(e) => return usage(format!("cannot create the output directory: {e}")),
    };
    let md = compare::render_markdown(&comparison);
    println!("{md}");
    let json = serde_json::to_string_pretty(&comparison).map(|j| j + "\n");
    for (name, text) in [("compare.md", Ok(md)), ("compare.json", json)] {
        let path = dir.join(name);
        let written = text
            .map_err(std::io::Error::other)
            .and_then(|t| std::fs::write(&path, t));
        if let Err(e) = written {
            return usage(format!("cannot write {}: {e}", path.display()));
        }
    }
    println!("written to {}", dir.display());
    if comparison.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn cmd_baseline(
    runs: u32,
    pipelined: LoadFlags,
    pipelined_upstreams: u16,
    opts: &CommonOpts,
    interrupted: Arc<AtomicBool>,
) -> Result<ExitCode, String> {
    let bench = opts.bench(interrupted.clone())?;
    let base_dir = fresh_run_dir(&opts.results.join("baseline"), UtcTime::now())
        .map_err(|e| format!("cannot create the baseline directory: {e}"))?;
    println!("baseline: {runs} round(s) into {}", base_dir.display());
    let mut notes = Vec::new();
    let c_relay = match build_c_relay(&base_dir) {
        Ok(binary) => {
            println!("compiled the C epoll relay: {}", binary.display());
            Some(binary)
        }
        Err(warning) => {
            println!("warning: {warning}");
            notes.push(warning);
            None
        }
    };
    let legs = baseline_legs(
        &opts.load(),
        &pipelined,
        pipelined_upstreams,
        c_relay.as_deref(),
    );
    let mut done: Vec<RunSummary> = Vec::new();
    let mut failed = 0;
    'rounds: for round in 1..=runs {
        for leg in &legs {
            let outcome = run_printed(&bench, leg, &base_dir, round, runs)?;
            if outcome.interrupted() {
                break 'rounds;
            }
            if outcome.summary.partial {
                failed += 1;
            } else {
                done.push(outcome.summary);
            }
        }
    }
    let md = baseline_markdown(&legs, &done, &notes);
    let path = base_dir.join("baseline.md");
    std::fs::write(&path, &md).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("\n{md}\nwritten to {}", path.display());
    Ok(match (interrupted.load(Ordering::Relaxed), failed) {
        (true, _) => ExitCode::from(130),
        (false, 0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// The short table at the end of `fepbench run`.
fn print_run(outcome: &RunOutcome) {
    let s = &outcome.summary;
    let pin = &s.pinning;
    let cpu = |c: Option<usize>| c.map_or("any".to_string(), |c| c.to_string());
    let gateway_cpus: Vec<String> = pin.gateway_cpus.iter().map(usize::to_string).collect();
    println!(
        "{} → {}\npinning {}: exchange on CPU {}, gateway/proxy on {}, loadgen on {} ({})",
        s.settings.scenario,
        outcome.dir.display(),
        pin.plan,
        cpu(pin.exchange_cpu),
        if gateway_cpus.is_empty() {
            "any".to_string()
        } else {
            gateway_cpus.join(",")
        },
        cpu(pin.loadgen_cpu),
        pin.reason
    );
    if let Some(l) = &s.loadgen {
        let hop_names = ["hop1", "hop2", "hop3", "hop4"];
        let rows = std::iter::once(("rtt", &l.rtt)).chain(
            hop_names
                .into_iter()
                .zip(l.hops())
                .filter_map(|(n, h)| h.map(|h| (n, h))),
        );
        print!("{}", latency_table(rows));
        println!(
            "count {}  errors {}  rejects {}  lost {}  drain_timeouts {}  window_violations {}  {:.0} msgs/s in {:.2} s",
            l.count, l.errors, l.rejects, l.lost, l.drain_timeouts, l.window_violations, l.throughput_msgs_per_s, l.elapsed_s
        );
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
    if let Some(reason) = &s.partial_reason {
        println!("PARTIAL: {reason}");
    }
}
