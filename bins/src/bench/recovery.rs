//! `fepbench recovery`: how fast `mock_exchange --wal` recovers, measured
//! on the code it runs at start ([`crate::durable::replay`]) over a journal
//! of exchange-core's order flow ([`super::engine::generate`]).
//!
//! The journal is written once (without fsync: recovery reads the same
//! bytes either way), then replayed `--runs` times. Each run is split in
//! three figures so a regression can be placed: the whole replay (read,
//! check, decode, match), the journal alone (read and check every record,
//! nothing decoded) and the engine alone (the same commands from memory).
//! The files are read back from the page cache, as after a process crash;
//! after a machine restart the disk's read speed comes first.

use std::time::{Duration, Instant};

use clap::Args;
use fep_engine::{Engine, Event, EventSink};
use fep_journal::AppendAt;
use fep_net::wal::{self, Wal, WalSync};
use serde::Serialize;

use super::engine::{generate, thread_cpu_time, EngineArgs};
use super::wal::Scratch;

/// The flags of `fepbench recovery`.
#[derive(Debug, Clone, Args)]
pub struct RecoveryArgs {
    /// Directory on the disk to measure (a scratch directory is made in it).
    #[arg(long, default_value = ".", env = "FEP_WAL_DIR")]
    pub dir: std::path::PathBuf,
    /// Journaled requests after the ones that build the book.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: usize,
    /// Replays of the same journal.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Seed of the order flow.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Resting orders the flow keeps in the book.
    #[arg(long, default_value_t = 1_000)]
    pub orders: usize,
    /// Print the figures as one JSON object (last line) too.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    requests: u64,
    replay_s: f64,
    requests_per_s: f64,
    /// The replaying thread's CPU time (reads and page faults included).
    replay_cpu_s: f64,
    requests_per_cpu_s: f64,
    journal_only_s: f64,
    engine_only_s: f64,
}

#[derive(Debug, Serialize)]
struct Figures {
    dir: String,
    requests: u64,
    journal_bytes: u64,
    runs: Vec<Run>,
}

/// Writes the journal, replays it `--runs` times and prints the figures.
pub fn run(args: &RecoveryArgs) -> Result<(), String> {
    let flow = EngineArgs {
        seed: args.seed,
        commands: args.requests,
        rates: Vec::new(),
        orders: args.orders,
        deviation: 5_000,
        accounts: 1_000,
        no_compare: true,
        no_feed: true,
        pause_ms: 0,
    };
    let w = generate(&flow)?;
    let scratch = Scratch::new(&args.dir, "recovery")?;
    let config = crate::durable::wal_config(scratch.0.clone(), &w.config, WalSync::None);
    let commands: Vec<_> = w.fill.iter().chain(&w.bench).copied().collect();

    // The live engine decides what is journaled, as the exchange does.
    let mut live = Engine::new(w.config).map_err(|e| e.to_string())?;
    let log = Wal::start(
        config.clone(),
        AppendAt::NewSegment { seq_next: 1 },
        Box::new(|_| {}),
    )
    .map_err(|e| e.to_string())?;
    let (mut events, mut bytes) = (Vec::<Event>::with_capacity(4_096), Vec::new());
    let mut journaled = Vec::with_capacity(commands.len());
    for c in &commands {
        if live.must_journal(c) {
            bytes.clear();
            c.encode(&mut bytes);
            log.append(&bytes).map_err(|e| e.to_string())?;
            journaled.push(*c);
        }
        events.clear();
        live.handle(c, &mut events);
    }
    let stats = log.shutdown().map_err(|e| e.to_string())?;
    let mut expected = Vec::new();
    live.snapshot(&mut expected);
    println!(
        "fepbench recovery: {} journaled requests ({} MiB in {} segments) on {} \
         (read from the page cache; a shared VM: figures are noisy)",
        journaled.len(),
        stats.bytes >> 20,
        stats.segments_created,
        args.dir.display()
    );

    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let cpu = thread_cpu_time();
        let r = crate::durable::replay(&config, w.config)?;
        let replay_cpu = thread_cpu_time().saturating_sub(cpu);
        let mut state = Vec::new();
        r.engine.snapshot(&mut state);
        if r.replayed != journaled.len() as u64 || state != expected {
            return Err(format!(
                "replay {i} rebuilt another engine ({} of {} requests)",
                r.replayed,
                journaled.len()
            ));
        }
        drop(r.engine);
        let journal_only = time_journal_only(&config)?;
        let engine_only = time_engine_only(&w.config, &journaled)?;
        let run = Run {
            requests: r.replayed,
            replay_s: r.elapsed.as_secs_f64(),
            requests_per_s: r.replayed as f64 / r.elapsed.as_secs_f64(),
            replay_cpu_s: replay_cpu.as_secs_f64(),
            requests_per_cpu_s: r.replayed as f64 / replay_cpu.as_secs_f64(),
            journal_only_s: journal_only.as_secs_f64(),
            engine_only_s: engine_only.as_secs_f64(),
        };
        println!(
            "run {i}: replayed {} requests in {:.3} s: {:.0} requests/s; {:.3} s of CPU: \
             {:.0} requests per CPU-second (journal alone {:.3} s, engine alone {:.3} s)",
            run.requests,
            run.replay_s,
            run.requests_per_s,
            run.replay_cpu_s,
            run.requests_per_cpu_s,
            run.journal_only_s,
            run.engine_only_s
        );
        runs.push(run);
    }
    if args.json {
        let figures = Figures {
            dir: args.dir.display().to_string(),
            requests: journaled.len() as u64,
            journal_bytes: stats.bytes,
            runs,
        };
        println!(
            "{}",
            serde_json::to_string(&figures).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

/// The replay's sink: the state matters, not the events.
struct Discard;

impl EventSink for Discard {
    fn push(&mut self, _: Event) {}
}

/// Reads and checks every record, decoding nothing.
fn time_journal_only(config: &wal::WalConfig) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut n = 0u64;
    wal::recover(config, |_, _| {}, |_| n += 1).map_err(|e| e.to_string())?;
    let elapsed = t0.elapsed();
    std::hint::black_box(n);
    Ok(elapsed)
}

/// The same requests through a fresh engine from memory.
fn time_engine_only(
    config: &fep_engine::Config,
    commands: &[fep_engine::Command],
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut engine = Engine::new(*config).map_err(|e| e.to_string())?;
    for c in commands {
        engine.handle(c, &mut Discard);
    }
    let elapsed = t0.elapsed();
    std::hint::black_box(engine.open_orders());
    Ok(elapsed)
}
