//! `mock_exchange`: answers every `PerfPing` with a `PerfPong` stamped `t3`.
//! Accepts gateways and clients (a client straight to the exchange is the
//! 2-hop baseline). Prints `ready <addr>` once it listens; SIGINT/SIGTERM
//! stop it with exit code 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use fep_bins::cli::{fail, parse_or_exit, print_ready, warn_short_open_files, DriverArgs};
use fep_bins::limits::{raise_nofile, NofileGoal, SERVER_CONNECTIONS_PLANNED};
use fep_net::Readiness;
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
    // A descriptor per client: as many as the hard limit allows.
    let nofile = raise_nofile(NofileGoal::server(1));
    let config = cli.driver.config().listen(cli.listen);
    let exchange = ExchangeConfig { token: cli.token };
    let running = match fep_net::start(config, move |_| Exchange::new(exchange.clone())) {
        Ok(running) => running,
        Err(e) => return fail(e),
    };
    warn_short_open_files(&nofile, &format!("{SERVER_CONNECTIONS_PLANNED} clients"));
    if running.wait_ready(None) == Readiness::Ready {
        print_ready(
            running
                .local_addr()
                .expect("a listening driver has an address"),
        );
    }
    match running.join() {
        Ok(stopped) => {
            // For the logs: what each worker's event loop did.
            for (i, w) in stopped.iter().enumerate() {
                eprintln!("worker {i}: {}", w.io);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
