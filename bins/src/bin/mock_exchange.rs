//! `mock_exchange`: answers every `PerfPing` with a `PerfPong` stamped `t3`,
//! and matches order entry in one price-time engine for the whole process.
//! Accepts gateways and clients (a client straight to the exchange is the
//! 2-hop baseline). Prints `ready <addr>` once it listens; SIGINT/SIGTERM
//! stop it with exit code 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use fep_bins::cli::{fail, parse_or_exit, serve, watch_lifeline, DriverArgs};
use fep_bins::limits::{raise_nofile, NofileGoal};
use fep_trading::exchange::{Exchange, ExchangeConfig};

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
    #[command(flatten)]
    driver: DriverArgs,
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
    let exchange = ExchangeConfig {
        token: cli.token,
        engine,
        journal: None,
    };
    match fep_net::start(config, move |w| Exchange::new(w, exchange.clone())) {
        Ok(running) => serve(running, &nofile),
        Err(e) => fail(e),
    }
}
