//! `mock_exchange`: answers every `PerfPing` with a `PerfPong` stamped `t3`,
//! and matches order entry in one price-time engine for the whole process.
//! Accepts gateways and clients (a client straight to the exchange is the
//! 2-hop baseline). Prints `ready <addr>` once it listens; SIGINT/SIGTERM
//! stop it with exit code 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use fep_bins::cli::{
    fail, parse_or_exit, serve, start_with_metrics_and, watch_lifeline, DriverArgs,
};
use fep_bins::limits::{raise_nofile, NofileGoal};
use fep_net::wal::WalSync;
use fep_trading::exchange::{Exchange, ExchangeConfig, SNAPSHOT_EVERY_DEFAULT};

/// The mock exchange of the FEP benchmark.
#[derive(Debug, Parser)]
#[command(name = "mock_exchange", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free one; see the `ready` line).
    #[arg(long, env = "FEP_LISTEN", default_value = "127.0.0.1:10000")]
    listen: SocketAddr,
    /// Token peers must present in their hand-shake (none: any).
    #[arg(long, env = "FEP_TOKEN")]
    token: Option<String>,
    /// Instruments, numbered 1 … N.
    #[arg(long, env = "FEP_INSTRUMENTS", default_value_t = 16)]
    instruments: u32,
    /// Accounts, numbered 1 … N.
    #[arg(long, env = "FEP_ACCOUNTS", default_value_t = 1024)]
    accounts: u32,
    /// Cash every account starts with (asset 0), in price × quantity units.
    #[arg(long, env = "FEP_CASH", default_value_t = 1_000_000_000_000_000)]
    cash: i64,
    /// Units of each instrument every account starts with.
    #[arg(long, env = "FEP_UNITS", default_value_t = 1_000_000_000)]
    units: i64,
    /// Orders resting in all books at once; past it a day order is
    /// refused with Reject{OVERLOADED}.
    #[arg(long, env = "FEP_ORDERS_MAX", default_value_t = 1 << 20)]
    orders_max: u32,
    /// Price levels one side of one book may hold; past it as above.
    #[arg(long, env = "FEP_LEVELS_MAX", default_value_t = 4096)]
    levels_max: u32,
    /// Journal to DIR and acknowledge only what is on stable storage; on
    /// start, recover from DIR if it holds a journal.
    #[arg(long, env = "FEP_WAL")]
    wal: Option<PathBuf>,
    /// batch: one fdatasync per group commit; none: never (not durable:
    /// for measuring everything but the disk).
    #[arg(long, env = "FEP_WAL_SYNC", value_enum, default_value = "batch")]
    wal_sync: WalSyncArg,
    /// With --wal: snapshot the engine every N journaled requests (and
    /// delete the journal segments it covers), so recovery replays at most
    /// about N. 0: only on start.
    #[arg(long, env = "FEP_WAL_SNAPSHOT_EVERY", default_value_t = SNAPSHOT_EVERY_DEFAULT)]
    wal_snapshot_every: u64,
    #[command(flatten)]
    driver: DriverArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WalSyncArg {
    Batch,
    None,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    watch_lifeline();
    // A descriptor per client: as many as the hard limit allows.
    let nofile = raise_nofile(NofileGoal::server(1));
    let config = cli.driver.config().listen(cli.listen);
    let engine = fep_engine::Config {
        instruments: cli.instruments,
        accounts: cli.accounts,
        cash: cli.cash,
        units: cli.units,
        orders_max: cli.orders_max,
        levels_max: cli.levels_max,
    };
    // One clear line, before anything listens, for settings whose balances
    // could overflow or whose tables could not be built.
    if let Err(e) = engine.validate() {
        return fail(e);
    }
    let mut exchange = ExchangeConfig {
        token: cli.token,
        engine,
        journal: None,
        snapshot_every: cli.wal_snapshot_every,
    };
    let mut config = config;
    // The recovered engine, moved into worker 0's exchange once.
    let recovered = std::sync::Mutex::new(None);
    // With --metrics: the WAL thread's batch sizes and fsync latencies.
    let mut wal_board = None;
    if let Some(dir) = cli.wal {
        let sync = match cli.wal_sync {
            WalSyncArg::Batch => WalSync::Batch,
            WalSyncArg::None => {
                eprintln!("wal: --wal-sync none: nothing is fsynced, answers are not durable");
                WalSync::None
            }
        };
        // The WAL thread takes the CPU after the workers' in --cpus, so the
        // engine's thread never waits on the disk on its own core.
        let cpu = cli.driver.cpus.as_ref().map(|c| {
            let cpus = &c.0;
            cpus[usize::from(cli.driver.workers) % cpus.len()]
        });
        let mut wal = fep_bins::durable::wal_config(dir, &engine, sync).cpu(cpu);
        if cli.driver.metrics.is_some() {
            let board = fep_bins::metrics::exchange::wal_board();
            wal = wal.observe(fep_bins::metrics::exchange::wal_observer(Arc::clone(
                &board,
            )));
            wal_board = Some(board);
        }
        let r = match fep_bins::durable::recover(&wal, engine) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if r.seq_last > 0 {
            // The contract's line, exactly; how it went, on stderr.
            println!("recovered {} requests", r.seq_last);
            eprintln!(
                "mock_exchange: recovery took {:.3} s: replayed {} after snapshot {}{}",
                r.elapsed.as_secs_f64(),
                r.replayed,
                r.snapshot_seq.map_or("none".to_owned(), |s| s.to_string()),
                if r.compacted { ", compacted" } else { "" }
            );
        }
        exchange.journal = Some(r.seq_last);
        config = config.journal(fep_trading::exchange::ENGINE_WORKER, wal, r.append_at);
        *recovered.lock().expect("not poisoned") = Some(r.engine);
    }
    let started = start_with_metrics_and(
        config,
        move |w| {
            let engine = if w == fep_trading::exchange::ENGINE_WORKER {
                recovered.lock().expect("not poisoned").take()
            } else {
                None
            };
            match engine {
                Some(engine) => Exchange::recovered(w, exchange.clone(), engine),
                None => Exchange::new(w, exchange.clone()),
            }
        },
        cli.driver.metrics,
        "fep_exchange",
        fep_bins::metrics::exchange::SERIES,
        fep_bins::metrics::exchange::publish,
        wal_board,
    );
    match started {
        Ok(running) => serve(running, &nofile),
        Err(e) => fail(e),
    }
}
