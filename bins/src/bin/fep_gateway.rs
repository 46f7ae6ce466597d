//! `fep_gateway`: the FEP gateway. Clients connect to `--listen`; every
//! worker keeps `--upstream-connections` (default 1) connections to the
//! exchange at `--upstream`, each client's requests on one of them, and
//! forwards pings there (`--routing local`: its own; `handoff`: the one of
//! worker `session_id % workers`). Prints `ready <addr>` once it listens and
//! every upstream is hand-shaked; SIGINT/SIGTERM drain and exit 0.
//!
//! `--risk FILE` names the clients (each with its token and accounts) and
//! the pre-trade limits; SIGHUP reads the file again (a bad file keeps the
//! limits in force and says why on stderr). Without it, one client with
//! every account and no limits, checked against `--token` if given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use fep_bins::cli::{
    fail, named, parse_or_exit, parse_positive_duration, serve, start_with_metrics, watch_lifeline,
    DriverArgs,
};
use fep_bins::limits::{raise_nofile, NofileGoal};
use fep_core::limits::IN_DOUBT_MAX_DEFAULT;
use fep_core::Nanos;
use fep_trading::gateway::{
    Gateway, GatewayConfig, Routing, HANDOFF_INFLIGHT_BYTES_MAX_DEFAULT, UPSTREAM_CONNECTIONS_MAX,
    UPSTREAM_INFLIGHT_MAX_DEFAULT,
};
use fep_trading::risk::{RiskConfig, RiskHandle};

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
    /// Which upstream a client's requests take: local (its own worker's,
    /// scenario s2) or handoff (worker session_id % workers, s3).
    #[arg(
        long,
        env = "FEP_ROUTING",
        value_parser = named::<Routing>(&Routing::NAMES),
        default_value = "local"
    )]
    routing: Routing,
    /// Token clients must present (none: any).
    #[arg(long, env = "FEP_TOKEN")]
    token: Option<String>,
    /// Token this gateway presents to the exchange.
    #[arg(long, env = "FEP_UPSTREAM_TOKEN", default_value = "")]
    upstream_token: String,
    /// Requests one client may have in flight; past it Reject{OVERLOADED}.
    #[arg(long, env = "FEP_INFLIGHT_PER_SESSION_MAX", default_value_t = 1024)]
    inflight_per_session_max: u32,
    /// Cancel a client's open orders when its connection closes.
    #[arg(long, env = "FEP_CANCEL_ON_DISCONNECT", default_value = "true",
          action = clap::ArgAction::Set)]
    cancel_on_disconnect: bool,
    /// Clients, their tokens and accounts, and the pre-trade limits (TOML;
    /// see docs/risk.example.toml). Reloaded on SIGHUP.
    #[arg(long, env = "FEP_RISK")]
    risk: Option<PathBuf>,
    /// Open orders one worker tracks for its clients; past it a NewOrder is
    /// refused Reject{OVERLOADED}.
    #[arg(long, env = "FEP_OPEN_ORDERS_MAX", default_value_t = 1 << 16)]
    open_orders_max: usize,
    /// Heartbeat interval of the upstreams: a Heartbeat goes up after this
    /// long with nothing sent; three intervals with nothing received
    /// declare the upstream dead (Error{TIMEOUT}, rejects, reconnect).
    #[arg(long, env = "FEP_HEARTBEAT", default_value = "1s", value_parser = parse_positive_duration)]
    heartbeat: Nanos,
    /// Upstream connections per worker (1–64), each hand-shaked on its
    /// own; a client's requests all take one of them (its connection slot
    /// modulo this), so its answers keep their order. More than one spreads
    /// a pipelined load over several TCP streams.
    #[arg(long, env = "FEP_UPSTREAM_CONNECTIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(UPSTREAM_CONNECTIONS_MAX)))]
    upstream_connections: u16,
    /// Requests one upstream connection may have in flight (1 to
    /// 4,194,304); past it a request is refused Reject{OVERLOADED}.
    #[arg(long, env = "FEP_UPSTREAM_INFLIGHT_MAX", default_value_t = UPSTREAM_INFLIGHT_MAX_DEFAULT as u32,
          value_parser = clap::value_parser!(u32).range(1..=1 << 22))]
    upstream_inflight_max: u32,
    /// Bytes of one worker's client requests in flight through another
    /// worker's upstream (handoff routing; 65,536 to 268,435,456, and at
    /// least --max-frame): at half of it those clients are paused, past
    /// it a request is refused Reject{OVERLOADED}.
    #[arg(long, env = "FEP_HANDOFF_BYTES_MAX", default_value_t = HANDOFF_INFLIGHT_BYTES_MAX_DEFAULT as u32,
          value_parser = clap::value_parser!(u32).range(1 << 16..=1 << 28))]
    handoff_bytes_max: u32,
    /// Orders left in doubt by a lost upstream (and cancels on disconnect
    /// waiting for one) a worker remembers until its upstream is back, to
    /// cancel them (0 to 1,048,576); past it an order's exposure is
    /// released at once and the cancel is dropped.
    #[arg(long, env = "FEP_IN_DOUBT_MAX", default_value_t = IN_DOUBT_MAX_DEFAULT as u32,
          value_parser = clap::value_parser!(u32).range(0..=1 << 20))]
    in_doubt_max: u32,
    #[command(flatten)]
    driver: DriverArgs,
}

fn main() -> ExitCode {
    let cli: Cli = parse_or_exit();
    watch_lifeline();
    // A descriptor per client: as many as the hard limit allows.
    let nofile = raise_nofile(NofileGoal::server(1));
    let mut worker = fep_core::WorkerConfig {
        heartbeat_interval: Some(cli.heartbeat),
        ..cli.driver.worker_config()
    };
    let risk_config = match &cli.risk {
        Some(path) => match read_risk(path) {
            Ok(config) => config,
            Err(lines) => {
                // One line, every mistake in it.
                eprintln!("fep_gateway: {}: {}", path.display(), lines.join("; "));
                return ExitCode::FAILURE;
            }
        },
        None => RiskConfig::open(cli.token.clone()),
    };
    let token_ignored = cli.risk.is_some() && cli.token.is_some();
    let risk = RiskHandle::new(risk_config);
    // Said once the gateway has started: a start that fails prints one line.
    let described = risk.describe();
    if let Some(path) = cli.risk.clone() {
        reload_on_sighup(path, risk.clone());
    }
    let gateway = GatewayConfig {
        workers: cli.driver.workers,
        routing: cli.routing,
        token: cli.token,
        upstream_token: cli.upstream_token,
        inflight_per_session_max: cli.inflight_per_session_max,
        cancel_on_disconnect: cli.cancel_on_disconnect,
        open_orders_max: cli.open_orders_max.max(1),
        upstream_connections: cli.upstream_connections,
        upstream_inflight_max: cli.upstream_inflight_max as usize,
        // At least one whole request fits.
        handoff_inflight_bytes_max: (cli.handoff_bytes_max as usize)
            .max(cli.driver.max_frame as usize),
        in_doubt_max: cli.in_doubt_max as usize,
        risk: Some(risk),
        ..GatewayConfig::default()
    };
    worker.handoff_backlog_max = worker.handoff_backlog_max.max(gateway.handoff_lane_need());
    let config = cli
        .driver
        .config_with(worker)
        .listen(cli.listen)
        .peers(vec![cli.upstream])
        // Started before its exchange, it says what it is waiting for.
        .report_unreachable(true);
    let started = start_with_metrics(
        config,
        move |id| Gateway::new(id, gateway.clone()),
        cli.driver.metrics,
        "fep_gateway",
        fep_bins::metrics::gateway::SERIES,
        fep_bins::metrics::gateway::publish,
    );
    match started {
        Ok(running) => {
            if token_ignored {
                eprintln!(
                    "fep_gateway: --token is ignored: the --risk file names each client's token"
                );
            }
            eprintln!("fep_gateway: {described}");
            serve(running, &nofile)
        }
        Err(e) => fail(e),
    }
}

/// The risk file parsed, or one line per mistake.
fn read_risk(path: &Path) -> Result<RiskConfig, Vec<String>> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| vec![format!("cannot read: {e}")];
    // Never more than the parser takes (and one byte to see it is more),
    // whatever the file is.
    let limit = fep_trading::risk::CONFIG_TEXT_LEN_MAX as u64 + 1;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_string(&mut text))
        .map_err(cannot)?;
    RiskConfig::parse(&text).map_err(|errors| errors.lines().to_vec())
}

/// On each SIGHUP, reads the risk file again: a good one replaces the
/// limits for every worker's next check (exposure carries over); a bad one
/// keeps the limits in force, and each mistake is one stderr line.
fn reload_on_sighup(path: PathBuf, risk: RiskHandle) {
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fep_gateway: SIGHUP reload unavailable: {e}");
            return;
        }
    };
    std::thread::Builder::new()
        .name("risk-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                let name = path.display();
                match read_risk(&path).map_err(|lines| lines.join("; ")) {
                    Ok(config) => match risk.reload(config) {
                        Ok(()) => eprintln!("fep_gateway: {name} reloaded: {}", risk.describe()),
                        Err(e) => eprintln!(
                            "fep_gateway: {name} kept the old limits: {}",
                            e.lines().join("; ")
                        ),
                    },
                    Err(why) => eprintln!("fep_gateway: {name} kept the old limits: {why}"),
                }
            }
        })
        .expect("a thread for the risk reload starts");
}
