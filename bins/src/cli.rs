//! What the three protocol binaries (mock_exchange, fep_gateway, loadgen)
//! share: one-line flag errors, the flags common to every driver, the
//! `ready <addr>` line, and the lifeline to a parent such as fepbench.

use std::fmt::Display;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser};
use fep_core::limits::{FRAME_LENGTH_MAX_CEILING, OUTPUT_BACKLOG_MAX_DEFAULT};
use fep_core::{Nanos, WorkerConfig};
use fep_net::{Config, WriteMode};

use crate::limits::NofileRaise;

/// Parses the command line; a bad flag is one line on stderr and exit code
/// 2 (`--help` and `--version` print as usual).
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}: {}", program(), one_line(&e));
            std::process::exit(2);
        }
    }
}

/// Clap's error as one line: its first paragraph, whose later lines name
/// what was missing or the values allowed, joined; without the usage and
/// the pointer to `--help`.
fn one_line(e: &clap::Error) -> String {
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "error: a subcommand is required (see --help)".to_owned();
    }
    let rendered = e.render().to_string();
    let line = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        "error: bad arguments (see --help)".to_owned()
    } else {
        line
    }
}

/// The environment variable that ties a process's life to its parent's:
/// with `FEP_LIFELINE=stdin` the process stops (as on SIGTERM: it drains)
/// when its stdin reaches end of file. A parent that keeps the write end of
/// a pipe open and never writes to it makes the kernel close it when the
/// parent dies, however it dies: fepbench's children do not outlive a
/// SIGKILLed fepbench. (`PR_SET_PDEATHSIG` would fire when the spawning
/// *thread* ends, and fepbench spawns from short-lived pinned threads.)
pub const LIFELINE_ENV: &str = "FEP_LIFELINE";

/// Starts the lifeline watch when [`LIFELINE_ENV`] asks for it; call it
/// first thing in `main`. Anything read from stdin is ignored.
pub fn watch_lifeline() {
    if std::env::var_os(LIFELINE_ENV).is_none_or(|v| v != "stdin") {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("lifeline".to_owned())
        .spawn(|| {
            let mut stdin = std::io::stdin().lock();
            let mut sink = [0u8; 256];
            loop {
                match stdin.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            eprintln!("{}: stdin closed (the parent is gone): stopping", program());
            // The process's own SIGTERM handling takes it from here; before
            // the handlers are installed the default action ends it.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::TERM,
            );
        });
    if let Err(e) = spawned {
        eprintln!("{}: warning: no lifeline thread: {e}", program());
    }
}

/// One line on stderr, prefixed with the program's name; exit code 1.
pub fn fail(error: impl Display) -> ExitCode {
    eprintln!("{}: {error}", program());
    ExitCode::FAILURE
}

/// A server that raised its open-file limit at start-up
/// ([`crate::limits::raise_nofile`]) and could not reach its need says so
/// in one stderr line once it listens (a bind error stays the only line),
/// and carries on: clients past the limit wait in the accept queue. `what`
/// names the need, e.g. "10000 clients".
pub fn warn_short_open_files(raise: &NofileRaise, what: &str) {
    if let Some(line) = raise.shortfall(what) {
        eprintln!("{}: warning: {line}", program());
    }
}

fn program() -> String {
    std::env::args()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map_or_else(|| "fep".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Prints `ready <addr>` and flushes, so a script reading a pipe sees it now.
pub fn print_ready(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop a server: the line is a courtesy.
    let _ = writeln!(out, "ready {addr}");
    let _ = out.flush();
}

/// A flag's parser for a type named by a fixed set of words (`local`,
/// `handoff`): `--help` lists the words and the type's own `FromStr`
/// decides, so the binaries keep no copy of the type for clap.
pub fn named<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).try_map(|name| name.parse::<T>())
}

/// A `--cpus` list, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses `--cpus 0,1` or `0-3`.
pub fn parse_cpus(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("{part:?} is not a CPU id or a range like 2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(CpuList(cpus))
}

/// A duration flag above zero (`5s`, `500ms`, `250us`).
pub fn parse_positive_duration(text: &str) -> Result<Nanos, String> {
    let d: Nanos = text.parse().map_err(|e| format!("{e}"))?;
    if d == Nanos::ZERO {
        return Err(format!("{text:?} must be above zero"));
    }
    Ok(d)
}

fn parse_max_frame(text: &str) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(64..=FRAME_LENGTH_MAX_CEILING).contains(&n) {
        return Err(format!("{n} is outside 64..={FRAME_LENGTH_MAX_CEILING}"));
    }
    Ok(n)
}

/// The driver flags every protocol binary takes.
#[derive(Clone, Debug, Args)]
pub struct DriverArgs {
    /// Worker threads.
    #[arg(long, env = "FEP_WORKERS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Pin worker i to the i-th CPU of this list (round robin), e.g. 0,1.
    #[arg(long, env = "FEP_CPUS", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Largest frame length field accepted (PROTOCOL.md max_frame).
    #[arg(long, env = "FEP_MAX_FRAME", default_value = "65536", value_parser = parse_max_frame)]
    pub max_frame: u32,
    /// Unsent bytes one connection may hold before it is cut with
    /// Error{OVERLOADED}.
    #[arg(long, env = "FEP_OUTPUT_BACKLOG_MAX", default_value_t = OUTPUT_BACKLOG_MAX_DEFAULT)]
    pub output_backlog_max: usize,
    /// speculative: write at once; deferred: always wait for WRITABLE.
    #[arg(
        long,
        env = "FEP_WRITE_MODE",
        value_parser = named::<WriteMode>(&WriteMode::NAMES),
        default_value = "speculative"
    )]
    pub write_mode: WriteMode,
    /// Spin on the poll instead of sleeping (a core per worker).
    #[arg(long, env = "FEP_BUSY_POLL")]
    pub busy_poll: bool,
    /// SO_SNDBUF of every socket in bytes (tests: force partial writes).
    #[arg(long, env = "FEP_SNDBUF")]
    pub sndbuf: Option<usize>,
    /// SO_RCVBUF of every socket in bytes.
    #[arg(long, env = "FEP_RCVBUF")]
    pub rcvbuf: Option<usize>,
    /// TCP congestion control of every socket, by its kernel name (cubic,
    /// reno, bbr, …); default: the system's (net.ipv4.tcp_congestion_control).
    #[arg(long, env = "FEP_TCP_CONGESTION")]
    pub tcp_congestion: Option<String>,
    /// Hand-shake deadline: an accepted connection without a valid
    /// RoleHelloReq this long is closed with Error{TIMEOUT}.
    #[arg(long, env = "FEP_HELLO_TIMEOUT", default_value = "5s",
          value_parser = parse_positive_duration)]
    pub hello_timeout: Nanos,
    /// Serve Prometheus metrics (GET /metrics, OpenMetrics text) on this
    /// address; off by default. Prints `metrics <addr>` before `ready`.
    #[arg(long, env = "FEP_METRICS")]
    pub metrics: Option<SocketAddr>,
}

impl DriverArgs {
    /// The driver configuration these flags describe.
    pub fn config(&self) -> Config {
        self.config_with(self.worker_config())
    }

    /// The worker bounds these flags describe (a binary adds its own, such
    /// as the gateway's heartbeat, before [`DriverArgs::config_with`]).
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            max_frame: self.max_frame,
            // The bound must hold at least one whole frame.
            output_backlog_max: self.output_backlog_max.max(self.max_frame as usize),
            hello_timeout: self.hello_timeout,
            ..WorkerConfig::default()
        }
    }

    /// The driver configuration these flags describe, with `worker` as the
    /// worker bounds.
    pub fn config_with(&self, worker: WorkerConfig) -> Config {
        Config::new()
            .workers(usize::from(self.workers))
            .cpus(self.cpus.clone().map(|c| c.0))
            .worker_config(worker)
            .write_mode(self.write_mode)
            .busy_poll(self.busy_poll)
            .send_buffer(self.sndbuf)
            .recv_buffer(self.rcvbuf)
            .tcp_congestion(self.tcp_congestion.clone())
            .handle_signals(true)
    }
}

/// Starts the driver, and with `metrics` an HTTP endpoint on its own
/// thread whose scrape reads what each worker's observer publishes with
/// `publish` (every [`crate::metrics::PUBLISH_EVERY`], on the worker's
/// thread: nothing on the hot path). Prints `metrics <addr>` once the
/// endpoint listens. `prefix` names the process in every metric.
pub fn start_with_metrics<S, F>(
    config: Config,
    factory: F,
    metrics: Option<SocketAddr>,
    prefix: &str,
    series: &'static [crate::metrics::Series],
    publish: fn(&crate::metrics::Board, usize, &S),
) -> Result<fep_net::Running<S>, String>
where
    S: fep_core::Service + Send,
    S::Data: Send,
    F: Fn(fep_core::WorkerId) -> S + Send + Sync + 'static,
{
    start_with_metrics_and(config, factory, metrics, prefix, series, publish, None)
}

/// [`start_with_metrics`], exporting `extra` too (a board another thread
/// fills, such as the WAL thread's) under the same prefix.
pub fn start_with_metrics_and<S, F>(
    config: Config,
    factory: F,
    metrics: Option<SocketAddr>,
    prefix: &str,
    series: &'static [crate::metrics::Series],
    publish: fn(&crate::metrics::Board, usize, &S),
    extra: Option<std::sync::Arc<crate::metrics::Board>>,
) -> Result<fep_net::Running<S>, String>
where
    S: fep_core::Service + Send,
    S::Data: Send,
    F: Fn(fep_core::WorkerId) -> S + Send + Sync + 'static,
{
    let Some(addr) = metrics else {
        return fep_net::start(config, factory).map_err(|e| e.to_string());
    };
    let board = crate::metrics::Board::new(series, config.worker_count());
    let mut registry = crate::metrics::registry(prefix, board.clone());
    if let Some(extra) = extra {
        registry.register_collector(Box::new(extra));
    }
    let bound = crate::metrics::serve(addr, registry)
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    print_line(&format!("metrics {bound}"));
    let observer: fep_net::Observer<S> =
        std::sync::Arc::new(move |id, service: &S| publish(&board, id.index(), service));
    let config = config.observe_every(crate::metrics::PUBLISH_EVERY);
    fep_net::start_observed(config, factory, observer).map_err(|e| e.to_string())
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The rest of a server binary's life once its driver started: warn when
/// the open-file limit is short for the clients planned, print
/// `ready <addr>` once every worker is ready (a gateway: every upstream
/// hand-shaked), wait for the drain after SIGINT/SIGTERM, and leave each
/// worker's I/O counters in the log.
pub fn serve<S>(running: fep_net::Running<S>, nofile: &NofileRaise) -> ExitCode
where
    S: fep_core::Service + Send,
    S::Data: Send,
{
    let planned = crate::limits::SERVER_CONNECTIONS_PLANNED;
    warn_short_open_files(nofile, &format!("{planned} clients"));
    // A signal while waiting stops the wait.
    if running.wait_ready(None) == fep_net::Readiness::Ready {
        print_ready(
            running
                .local_addr()
                .expect("a listening driver has an address"),
        );
    }
    match running.join() {
        Ok(stopped) => {
            for (i, w) in stopped.iter().enumerate() {
                eprintln!("worker {i}: {}", w.io);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_take_ids_and_ranges() {
        assert_eq!(parse_cpus("0,1"), Ok(CpuList(vec![0, 1])));
        assert_eq!(parse_cpus("1-3,0"), Ok(CpuList(vec![1, 2, 3, 0])));
        assert!(parse_cpus("a").is_err());
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn max_frame_is_bounded() {
        assert_eq!(parse_max_frame("65536"), Ok(65536));
        assert!(parse_max_frame("10").is_err());
        assert!(parse_max_frame("x").is_err());
    }
}
