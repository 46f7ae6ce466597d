//! `fepsim`: the deterministic simulation of the FEP gateway.
//!
//! - `fepsim run s3 --seed 42 --pings 1000 [--faults PLAN]`: one run; prints
//!   the trace digest, the hops in simulated time and the invariants.
//! - `fepsim sweep s3 --seeds 0..1000 [--faults all] [--shard I/N] [--json]`:
//!   many seeds on every core (only shard I of N's: `seed % N == I - 1`);
//!   prints the command reproducing each failure, or with `--json` one
//!   JSON object per seed;
//! - `fepsim merge FILES...`: one report from the `--json` output of the
//!   shards, with every failing seed's replay command.
//! - `fepsim shrink s3 --seed 7 --faults all`: the smallest fault plan and
//!   ping count that still fail the same way.
//!
//! Exit status: 0 when every invariant held, 1 when one broke, 2 on usage
//! errors.

use std::io::Write as _;
use std::ops::Range;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use fep_bins::bench::simsweep::{merge_report, read_seed_lines, seed_line};
use fep_bins::bench::summary::{latency_table, LatencySummary};
use fep_load::scenario::Scenario;
use fep_sim::faults::FaultPlan;
use fep_sim::run::{run, Outcome, RunConfig};
use fep_sim::sweep::{default_threads, shrink, sweep_shard, Shard};

/// `println!` that ignores a closed stdout (`fepsim … | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "fepsim",
    version,
    about = "Deterministic simulation of the FEP gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One seeded run: digest, hops in simulated time, invariants.
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print the whole trace.
        #[arg(long)]
        trace: bool,
    },
    /// Many seeds in parallel; prints the command reproducing each failure.
    Sweep {
        #[command(flatten)]
        run: RunArgs,
        /// Seeds, `A..B` (B excluded).
        #[arg(long, value_parser = parse_seeds, default_value = "0..100")]
        seeds: Range<u64>,
        /// Threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Draw each seed's topology (clients, connections, in flight) from
        /// the seed instead of the flags.
        #[arg(long)]
        vary: bool,
        /// Run only shard I of N: the seeds with `seed % N == I - 1`
        /// (I from 1 to N), so N machines split a sweep with no overlap.
        #[arg(long, default_value = "1/1", env = "FEP_SHARD")]
        shard: Shard,
        /// One JSON object per seed on stdout (seed, digest, failure and
        /// replay command) instead of the text report; `fepsim merge` reads
        /// them.
        #[arg(long)]
        json: bool,
    },
    /// Merges `sweep --json` outputs (one file per shard, `-` for stdin)
    /// into one report with every failing seed's replay command; exit 1
    /// when any seed failed.
    Merge {
        /// The shards' JSON-lines files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// The sweep's seed range, `A..B`: every scenario must have every
        /// seed, and a seed no shard reported fails the merge.
        #[arg(long, value_parser = parse_seeds)]
        seeds: Option<Range<u64>>,
    },
    /// Reduces a failing run's fault plan and ping count.
    Shrink {
        #[command(flatten)]
        run: RunArgs,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The scenario: s1, s2, s3 (pings) or o1, o2, o3 (the same topologies with the order flow).
    scenario: Scenario,
    /// Pings over all clients.
    #[arg(long, default_value_t = 1000)]
    pings: u64,
    /// Fault plan: `all`, `none`, or kinds and pinned faults, e.g.
    /// `crash,hold` or `cut@40+25` (see `fep_sim::faults`).
    #[arg(long, default_value = "none")]
    faults: FaultPlan,
    /// Client hosts.
    #[arg(long, default_value_t = 2)]
    clients: u16,
    /// Connections per client.
    #[arg(long, default_value_t = 2)]
    connections: u32,
    /// Pings in flight per connection.
    #[arg(long, default_value_t = 4)]
    inflight: u32,
    /// Whole ping frame size in bytes (54 to 65,540).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Buggify's short reads on every host for the whole run.
    #[arg(long)]
    short_reads: bool,
    /// The gateway's bound of requests in flight per client session
    /// (default 1024); below --inflight it sheds with Reject{OVERLOADED}.
    #[arg(long)]
    session_inflight_max: Option<u32>,
    /// The gateway's bound of ping bytes one worker has out through
    /// another's upstream (default 2 MiB).
    #[arg(long)]
    handoff_bytes_max: Option<usize>,
    /// The gateway's upstream connections per worker (default 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    upstream_connections: Option<u16>,
}

impl RunArgs {
    fn config(&self, seed: u64) -> RunConfig {
        RunConfig {
            pings: self.pings,
            faults: self.faults.clone(),
            clients: self.clients,
            connections: self.connections,
            inflight: self.inflight,
            size: self.size,
            short_reads: self.short_reads,
            session_inflight_max: self.session_inflight_max,
            handoff_bytes_max: self.handoff_bytes_max,
            upstream_connections: self.upstream_connections,
            ..RunConfig::new(self.scenario, seed)
        }
    }
}

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?}: expected A..B"))?;
    let a: u64 = a.parse().map_err(|_| format!("{a:?} is not a seed"))?;
    let b: u64 = b.parse().map_err(|_| format!("{b:?} is not a seed"))?;
    if a >= b {
        return Err(format!("{s:?} is empty"));
    }
    Ok(a..b)
}

fn main() -> ExitCode {
    let cli: Cli = fep_bins::cli::parse_or_exit();
    if let Err(e) = check_args(&cli.command) {
        eprintln!("fepsim: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Run {
            run: args,
            seed,
            trace,
        } => {
            let config = RunConfig {
                keep_trace: trace,
                ..args.config(seed)
            };
            let started = std::time::Instant::now();
            let outcome = run(&config);
            let wall = started.elapsed();
            if let Some(text) = &outcome.trace {
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
            print_outcome(&outcome, wall);
            exit(outcome.passed())
        }
        Command::Merge { files, seeds } => cmd_merge(&files, seeds),
        Command::Sweep {
            run: args,
            seeds,
            threads,
            vary,
            shard,
            json,
        } => {
            let threads = threads.unwrap_or_else(default_threads);
            let config = |seed| {
                if vary {
                    RunConfig::seeded(args.scenario, seed, args.pings, args.faults.clone())
                } else {
                    args.config(seed)
                }
            };
            let result = sweep_shard(config, seeds.clone(), shard, threads);
            let failures: Vec<_> = result.failures().collect();
            if json {
                for r in &result.results {
                    out!(
                        "{}",
                        seed_line(args.scenario.name(), r, &config(r.seed).command())
                    );
                }
                return exit(failures.is_empty());
            }
            let secs = result.wall.as_secs_f64();
            out!(
                "{} {} seeds {}..{} (shard {shard}) on {threads} threads: {} failed, {:.2} s wall, {} round trips ({:.0}/s)",
                args.scenario,
                result.results.len(),
                seeds.start,
                seeds.end,
                failures.len(),
                secs,
                result.round_trips(),
                result.round_trips() as f64 / secs.max(1e-9),
            );
            for f in &failures {
                out!(
                    "FAIL seed {}: {}",
                    f.seed,
                    f.failure.as_deref().unwrap_or("")
                );
                out!("  reproduce: {}", config(f.seed).command());
            }
            exit(failures.is_empty())
        }
        Command::Shrink { run: args, seed } => {
            let config = args.config(seed);
            match shrink(&config) {
                None => {
                    out!("seed {seed} passes: nothing to shrink");
                    ExitCode::SUCCESS
                }
                Some(small) => {
                    let outcome = run(&small);
                    out!("smallest failing run: {}", small.command());
                    for v in outcome.verdicts.iter().filter(|v| !v.passed()) {
                        out!("{v}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn cmd_merge(files: &[std::path::PathBuf], expected: Option<Range<u64>>) -> ExitCode {
    let mut shards = Vec::new();
    for file in files {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(file)
        };
        let parsed = text
            .map_err(|e| e.to_string())
            .and_then(|t| read_seed_lines(&t));
        match parsed {
            Ok(lines) => shards.push(lines),
            Err(e) => {
                eprintln!("fepsim: {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    }
    let report = merge_report(shards, expected);
    match report {
        Ok(report) => {
            out!("{}", report.text.trim_end());
            exit(report.failed == 0 && report.missing == 0)
        }
        Err(e) => {
            eprintln!("fepsim: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_args(command: &Command) -> Result<(), String> {
    let args = match command {
        Command::Run { run, .. } | Command::Sweep { run, .. } | Command::Shrink { run, .. } => run,
        Command::Merge { .. } => return Ok(()),
    };
    if args.pings == 0 || args.clients == 0 || args.connections == 0 || args.inflight == 0 {
        return Err("--pings, --clients, --connections and --inflight must be at least 1".into());
    }
    let sizes = fep_sim::run::FRAME_SIZE_MIN..=fep_sim::run::FRAME_SIZE_MAX;
    if !sizes.contains(&args.size) {
        return Err(format!(
            "--size {} is outside {}..={}",
            args.size,
            sizes.start(),
            sizes.end()
        ));
    }
    Ok(())
}

fn exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_outcome(outcome: &Outcome, wall: std::time::Duration) {
    let c = &outcome.config;
    out!("run      {}", c.command());
    out!(
        "digest   {:016x} ({} trace lines)",
        outcome.digest,
        outcome.trace_lines
    );
    let faults: Vec<String> = outcome.faults.iter().map(ToString::to_string).collect();
    out!(
        "faults   {}",
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(",")
        }
    );
    let answered = outcome.answered;
    out!(
        "time     {:.3} s simulated, {:.3} s wall, {:.0} round trips per wall-second",
        outcome.sim_elapsed.as_u64() as f64 / 1e9,
        wall.as_secs_f64(),
        answered as f64 / wall.as_secs_f64().max(1e-9)
    );
    if let Some(r) = &outcome.report {
        out!(
            "pings    sent {} pongs {} rejects {} lost {}",
            r.sent,
            r.pongs,
            r.rejects,
            r.lost
        );
        if let Some(flow) = &r.flow {
            let kinds: Vec<String> = fep_load::flow::Kind::ALL
                .iter()
                .map(|k| format!("{} {}", k.name(), flow.count(*k)))
                .collect();
            out!("orders   {}", kinds.join(", "));
            if let Some(j) = &outcome.journal {
                out!(
                    "journal  {} commands checked against the model; {} starts recovered {} \
                     records ({} durable, never acknowledged); {} journal failures, {} \
                     recoveries failed",
                    j.commands,
                    j.recoveries,
                    j.records_recovered,
                    j.unacknowledged_recovered,
                    j.journal_failures,
                    j.recovery_failures
                );
            }
        }
        out!("latency in simulated time:");
        let names = ["rtt", "hop1", "hop2", "hop3", "hop4"];
        let summaries: Vec<LatencySummary> = std::iter::once(&r.rtt)
            .chain(&r.hops)
            .map(LatencySummary::from_histogram)
            .collect();
        out!(
            "{}",
            latency_table(names.into_iter().zip(&summaries)).trim_end()
        );
    }
    for v in &outcome.verdicts {
        out!("{v}");
    }
    out!("{}", if outcome.passed() { "PASS" } else { "FAIL" });
}
