//! `fep_gateway`: the FEP gateway. Clients connect to `--listen`; every
//! worker keeps one upstream connection to the exchange at `--upstream` and
//! forwards pings there (`--routing local`: its own; `handoff`: the one of
//! worker `session_id % workers`). Prints `ready <addr>` once it listens and
//! every upstream is hand-shaked; SIGINT/SIGTERM drain and exit 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use fep_bins::cli::{
    fail, parse_or_exit, parse_positive_duration, serve, start_with_metrics, watch_lifeline,
    DriverArgs,
};
use fep_bins::limits::{raise_nofile, NofileGoal};
use fep_core::Nanos;
use fep_trading::gateway::{Gateway, GatewayConfig, Routing};

/// `--routing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RoutingArg {
    /// The upstream of the worker that owns the client (scenario s2).
    Local,
    /// Upstream `session_id % workers`, maybe another worker's (s3).
    Handoff,
}

/// The FEP gateway.
#[derive(Debug, Parser)]
#[command(name = "fep_gateway", version)]
struct Cli {
    /// Address clients connect to (port 0 picks a free one; see `ready`).
    #[arg(long, env = "FEP_LISTEN", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The exchange.
    #[arg(long, env = "FEP_UPSTREAM", default_value = "127.0.0.1:10000")]
    upstream: SocketAddr,
    /// Which upstream a client's pings take.
    #[arg(long, env = "FEP_ROUTING", value_enum, default_value = "local")]
    routing: RoutingArg,
    /// Token clients must present (none: any).
    #[arg(long, env = "FEP_TOKEN")]
    token: Option<String>,
    /// Token this gateway presents to the exchange.
    #[arg(long, env = "FEP_UPSTREAM_TOKEN", default_value = "")]
    upstream_token: String,
    /// Pings one client may have in flight; past it Reject{OVERLOADED}.
    #[arg(long, env = "FEP_INFLIGHT_PER_SESSION_MAX", default_value_t = 1024)]
    inflight_per_session_max: u32,
    /// Heartbeat interval of the upstreams: a Heartbeat goes up after this
    /// long with nothing sent; three intervals with nothing received
    /// declare the upstream dead (Error{TIMEOUT}, rejects, reconnect).
    #[arg(long, env = "FEP_HEARTBEAT", default_value = "1s", value_parser = parse_positive_duration)]
    heartbeat: Nanos,
    #[command(flatten)]
    driver: DriverArgs,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    watch_lifeline();
    // A descriptor per client: as many as the hard limit allows.
    let nofile = raise_nofile(NofileGoal::server(1));
    let worker = fep_core::WorkerConfig {
        heartbeat_interval: Some(cli.heartbeat),
        ..cli.driver.worker_config()
    };
    let config = cli
        .driver
        .config_with(worker)
        .listen(cli.listen)
        .peers(vec![cli.upstream]);
    let gateway = GatewayConfig {
        workers: cli.driver.workers,
        routing: match cli.routing {
            RoutingArg::Local => Routing::Local,
            RoutingArg::Handoff => Routing::Handoff,
        },
        token: cli.token,
        upstream_token: cli.upstream_token,
        inflight_per_session_max: cli.inflight_per_session_max,
        ..GatewayConfig::default()
    };
    let started = start_with_metrics(
        config,
        move |id| Gateway::new(id, gateway.clone()),
        cli.driver.metrics,
        "fep_gateway",
        fep_bins::metrics::gateway::SERIES,
        fep_bins::metrics::gateway::publish,
    );
    match started {
        Ok(running) => serve(running, &nofile),
        Err(e) => fail(e),
    }
}
