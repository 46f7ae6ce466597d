//! `mock_exchange`: answers every `PerfPing` with a `PerfPong` stamped `t3`.
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
    #[command(flatten)]
    driver: DriverArgs,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    watch_lifeline();
    // A descriptor per client: as many as the hard limit allows.
    let nofile = raise_nofile(NofileGoal::server(1));
    let config = cli.driver.config().listen(cli.listen);
    let exchange = ExchangeConfig { token: cli.token };
    match fep_net::start(config, move |_| Exchange::new(exchange.clone())) {
        Ok(running) => serve(running, &nofile),
        Err(e) => fail(e),
    }
}
