//! One benchmark leg end to end: start the exchange, the middle (gateway,
//! tokio proxy or nothing) and loadgen, in that order, each pinned per the
//! plan and waited for by its `ready <addr>` line; collect loadgen's JSON and
//! `.hgrm` files; stop everything; write `summary.json` and `plot.svg`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rustix::process::Signal;

use fep_net::WriteMode;
use fep_trading::gateway::Routing;

use super::hgrm::{read_hgrm, Hgrm};
use super::machine::UtcTime;
use super::pin::{self, PinMode};
use super::plot::plot_percentiles;
use super::procs::{LineEvent, Proc, ProcSpec, StartError};
use super::summary::{LoadgenSummary, Machine, PinningReport, RunSummary, Settings};
use super::tcpstat::TcpCounters;

/// The histogram files loadgen writes into `--out DIR`, in plot order.
pub const HGRM_FILES: [&str; 5] = ["rtt", "hop1", "hop2", "hop3", "hop4"];

/// What loadgen talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// fep_gateway in front of mock_exchange (4 hops).
    Gateway {
        /// Worker threads.
        workers: u32,
        /// Routing mode.
        routing: Routing,
        /// How the gateway writes.
        write_mode: WriteMode,
        /// Upstream connections per worker (`--upstream-connections`).
        upstream_connections: u16,
    },
    /// mock_exchange directly (2 hops, the floor).
    Exchange,
    /// tokio_proxy in front of mock_exchange (4 hops, the common baseline).
    TokioProxy,
    /// The minimal C epoll relay (`bins/c/epoll_relay.c`) in front of
    /// mock_exchange: the floor a relay can reach on this path.
    CRelay {
        /// The compiled relay (fepbench builds it at run time).
        program: PathBuf,
    },
}

/// One row of CLI.md's scenario table: what `fepbench run|sweep|knee`
/// start for a scenario name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioRow {
    /// `s1`, `o2`, …
    pub name: &'static str,
    /// Gateway workers.
    pub workers: u32,
    /// Gateway routing.
    pub routing: Routing,
    /// Flags loadgen gets on top of the load's (the workload).
    pub loadgen_args: &'static [&'static str],
}

/// The scenarios of CLI.md, in order. Every command that takes a scenario
/// reads this table, so a new scenario is one row here.
pub const SCENARIOS: [ScenarioRow; 6] = [
    ScenarioRow {
        name: "s1",
        workers: 1,
        routing: Routing::Local,
        loadgen_args: &[],
    },
    ScenarioRow {
        name: "s2",
        workers: 2,
        routing: Routing::Local,
        loadgen_args: &[],
    },
    ScenarioRow {
        name: "s3",
        workers: 2,
        routing: Routing::Handoff,
        loadgen_args: &[],
    },
    ScenarioRow {
        name: "o1",
        workers: 1,
        routing: Routing::Local,
        loadgen_args: &["--workload", "orders"],
    },
    ScenarioRow {
        name: "o2",
        workers: 2,
        routing: Routing::Local,
        loadgen_args: &["--workload", "orders"],
    },
    ScenarioRow {
        name: "o3",
        workers: 2,
        routing: Routing::Handoff,
        loadgen_args: &["--workload", "orders"],
    },
];

impl ScenarioRow {
    /// The row named `name`.
    pub fn find(name: &str) -> Option<&'static ScenarioRow> {
        SCENARIOS.iter().find(|row| row.name == name)
    }

    /// The gateway this scenario runs.
    pub fn target(&self) -> Target {
        Target::Gateway {
            workers: self.workers,
            routing: self.routing,
            write_mode: WriteMode::Speculative,
            upstream_connections: 1,
        }
    }

    /// `loadgen_args` as owned strings, for [`LoadFlags::extra_args`].
    pub fn loadgen_args(&self) -> Vec<String> {
        self.loadgen_args.iter().map(|a| a.to_string()).collect()
    }
}

/// The scenario names, comma-separated, for error messages.
pub fn scenario_names() -> String {
    let names: Vec<&str> = SCENARIOS.iter().map(|r| r.name).collect();
    names.join(", ")
}

impl Target {
    /// The gateway of a scenario of [`SCENARIOS`]: s1 1 worker local, s2 2
    /// workers local, s3 2 workers handoff (o1–o3 alike).
    pub fn scenario(name: &str) -> Option<Target> {
        ScenarioRow::find(name).map(ScenarioRow::target)
    }

    /// Threads the middle process runs (what the pinning plan places).
    pub fn middle_workers(&self) -> u32 {
        match self {
            Target::Gateway { workers, .. } => *workers,
            Target::TokioProxy | Target::CRelay { .. } => 1,
            Target::Exchange => 0,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Gateway { .. } => "gateway",
            Target::Exchange => "exchange",
            Target::TokioProxy => "tokio_proxy",
            Target::CRelay { .. } => "c_relay",
        }
    }
}

/// loadgen's load flags, as fepbench passes them (the load itself is
/// `fep_load::client::Load`, built by loadgen from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFlags {
    /// `--connections`.
    pub connections: u64,
    /// `--inflight`.
    pub inflight: u64,
    /// `--size`.
    pub size: u64,
    /// `--warmup`.
    pub warmup: u64,
    /// `--count`.
    pub count: u64,
    /// Further loadgen flags passed as given (`--rate`, `--shape`, …).
    pub extra_args: Vec<String>,
}

/// One leg: a name (scenario or baseline leg), a target and a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// `s1`, `s2`, `s3`, or a baseline leg such as `direct`.
    pub name: String,
    /// What loadgen talks to.
    pub target: Target,
    /// The load.
    pub load: LoadFlags,
}

/// How legs are run on this machine.
#[derive(Debug, Clone)]
pub struct Bench {
    /// Where mock_exchange, fep_gateway, loadgen and tokio_proxy live.
    pub bin_dir: PathBuf,
    /// CPUs the plan may use.
    pub cpus: Vec<usize>,
    /// The pinning mode.
    pub pin: PinMode,
    /// mock_exchange `--workers`.
    pub exchange_workers: u32,
    /// mock_exchange `--wal-sync`, when the exchange journals to the run's
    /// directory (`fepbench run o1 --wal`): `batch` (group commit, durable)
    /// or `none` (no fsync: the engine without the disk, not durable).
    pub exchange_wal: Option<String>,
    /// fep_gateway `--risk FILE`: the gateway runs its pre-trade checks
    /// with this configuration (`fepbench run o1 --risk FILE`).
    pub gateway_risk: Option<PathBuf>,
    /// fep_gateway `--metrics 127.0.0.1:0`: the gateway serves its metrics
    /// (nobody scrapes them), to measure what keeping them costs.
    pub gateway_metrics: bool,
    /// `--tcp-congestion NAME` for every process of a leg (the exchange,
    /// the gateway or proxy or relay, loadgen); `None` keeps the system's.
    pub tcp_congestion: Option<String>,
    /// How long a server may take to print `ready`.
    pub ready_timeout: Duration,
    /// How long loadgen may run in all.
    pub run_timeout: Duration,
    /// How long a child may take to exit after a signal before SIGKILL.
    pub stop_grace: Duration,
    /// Raised by Ctrl-C.
    pub interrupted: Arc<AtomicBool>,
    /// Show a spinner on stderr.
    pub progress: bool,
    /// The machine, described once.
    pub machine: Machine,
}

/// What a leg left behind.
#[derive(Debug)]
pub struct RunOutcome {
    /// The results directory.
    pub dir: PathBuf,
    /// What was written to `summary.json` there.
    pub summary: RunSummary,
}

impl RunOutcome {
    /// True when Ctrl-C cut the leg short.
    pub fn interrupted(&self) -> bool {
        self.summary.partial_reason.as_deref() == Some(INTERRUPTED)
    }
}

const INTERRUPTED: &str = "interrupted (Ctrl-C)";

/// Creates `parent/<UTC timestamp>` (with `-2`, `-3`… if that exists).
pub fn fresh_run_dir(parent: &Path, now: UtcTime) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(parent)?;
    let base = now.dir_name();
    for n in 1u32.. {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 run directories exhausted")
}

/// The processes started so far, stopped in reverse order on every path.
struct Running {
    procs: Vec<Proc>,
}

impl Running {
    fn stop_all(&mut self, grace: Duration, warnings: &mut Vec<String>) {
        while let Some(mut proc) = self.procs.pop() {
            if let Some(status) = proc.wait_exit(Duration::ZERO) {
                // loadgen's own exit is judged with its output; a server
                // gone before we stopped it crashed or quit mid-run.
                if proc.name() != "loadgen" {
                    warnings.push(format!("{} exited during the run ({status})", proc.name()));
                }
                continue;
            }
            let (status, killed) = proc.stop(Signal::TERM, grace);
            if killed {
                warnings.push(format!(
                    "{} did not exit within {grace:?} of SIGTERM: killed",
                    proc.name()
                ));
            } else if let Some(status) = status.filter(|s| !s.success()) {
                warnings.push(format!(
                    "{} exited with {status} after SIGTERM",
                    proc.name()
                ));
            }
        }
    }
}

impl Bench {
    /// Runs `leg` into `dir` (which must exist) and writes its results.
    /// Always returns what it has: a failed start or an interrupt gives a
    /// partial summary with the reason.
    pub fn run_leg(&self, leg: &Leg, dir: &Path, label: &str) -> RunOutcome {
        let load = pin::LoadKind::of(leg.load.inflight, &leg.load.extra_args);
        let pinning = pin::plan(self.pin, &self.cpus, leg.target.middle_workers(), load);
        let mut settings = Settings {
            scenario: leg.name.clone(),
            workers: match &leg.target {
                Target::Gateway { workers, .. } => *workers,
                _ => 0,
            },
            routing: match &leg.target {
                Target::Gateway { routing, .. } => Some(routing.name().into()),
                _ => None,
            },
            write_mode: match &leg.target {
                Target::Gateway { write_mode, .. } => Some(write_mode.name().into()),
                _ => None,
            },
            upstream_connections: match &leg.target {
                Target::Gateway {
                    upstream_connections,
                    ..
                } => Some(*upstream_connections),
                _ => None,
            },
            target: leg.target.name().into(),
            connections: leg.load.connections,
            inflight: leg.load.inflight,
            size: leg.load.size,
            warmup: leg.load.warmup,
            count: leg.load.count,
            tcp_congestion: Some(
                self.tcp_congestion
                    .clone()
                    .unwrap_or_else(system_congestion_control),
            ),
            commands: Vec::new(),
        };
        let mut warnings = Vec::new();
        let started_utc = UtcTime::now().rfc3339();
        let mut running = Running { procs: Vec::new() };
        let tcp_before = TcpCounters::read();
        let result = self.drive(leg, dir, label, &pinning, &mut settings, &mut running);
        let tcp = tcp_before
            .zip(TcpCounters::read())
            .map(|(before, after)| before.since(after));
        running.stop_all(self.stop_grace, &mut warnings);
        let (loadgen, partial_reason) = match result {
            Ok(loadgen) => (Some(loadgen), None),
            Err(Failure { loadgen, reason }) => (loadgen.map(|l| *l), Some(reason)),
        };
        self.write_plot(dir, &leg.name, loadgen.is_some(), &mut warnings);
        let summary = RunSummary {
            started_utc,
            partial: partial_reason.is_some(),
            partial_reason,
            warnings,
            settings,
            pinning,
            machine: self.machine.clone(),
            tcp,
            loadgen,
        };
        let path = dir.join("summary.json");
        let written = serde_json::to_string_pretty(&summary)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(&path, text + "\n"));
        if let Err(e) = written {
            eprintln!("fepbench: cannot write {}: {e}", path.display());
        }
        RunOutcome {
            dir: dir.to_path_buf(),
            summary,
        }
    }

    fn drive(
        &self,
        leg: &Leg,
        dir: &Path,
        label: &str,
        pinning: &PinningReport,
        settings: &mut Settings,
        running: &mut Running,
    ) -> Result<LoadgenSummary, Failure> {
        let mut exchange_args = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            self.exchange_workers.to_string(),
        ];
        let congestion: Vec<String> = match &self.tcp_congestion {
            Some(name) => vec!["--tcp-congestion".into(), name.clone()],
            None => Vec::new(),
        };
        exchange_args.extend(congestion.iter().cloned());
        if let Some(sync) = &self.exchange_wal {
            // A fresh journal per leg, in the leg's own directory.
            exchange_args.extend([
                "--wal".into(),
                dir.join("wal").display().to_string(),
                "--wal-sync".into(),
                sync.clone(),
            ]);
        }
        let exchange = ProcSpec {
            name: "mock_exchange".into(),
            program: self.bin_dir.join("mock_exchange"),
            args: with_cpus(
                exchange_args,
                pinning.exchange_cpu.map(|c| vec![c]).unwrap_or_default(),
            ),
            cpu: pinning.exchange_cpu,
        };
        let mut target_addr = self.start(&exchange, dir, settings, running)?;
        let middle = match &leg.target {
            Target::Exchange => None,
            Target::Gateway {
                workers,
                routing,
                write_mode,
                upstream_connections,
            } => Some(ProcSpec {
                name: "fep_gateway".into(),
                program: self.bin_dir.join("fep_gateway"),
                args: with_cpus(
                    [
                        vec![
                            "--listen".into(),
                            "127.0.0.1:0".into(),
                            "--upstream".into(),
                            target_addr.to_string(),
                            "--workers".into(),
                            workers.to_string(),
                            "--routing".into(),
                            routing.name().into(),
                            "--write-mode".into(),
                            write_mode.name().into(),
                            "--upstream-connections".into(),
                            upstream_connections.to_string(),
                        ],
                        self.gateway_risk
                            .iter()
                            .flat_map(|f| ["--risk".into(), f.display().to_string()])
                            .collect(),
                        match self.gateway_metrics {
                            true => vec!["--metrics".into(), "127.0.0.1:0".into()],
                            false => Vec::new(),
                        },
                        congestion.clone(),
                    ]
                    .concat(),
                    pinning.gateway_cpus.clone(),
                ),
                cpu: single_cpu(&pinning.gateway_cpus),
            }),
            Target::TokioProxy => Some(ProcSpec {
                name: "tokio_proxy".into(),
                program: self.bin_dir.join("tokio_proxy"),
                args: [
                    vec![
                        "--listen".into(),
                        "127.0.0.1:0".into(),
                        "--upstream".into(),
                        target_addr.to_string(),
                    ],
                    congestion.clone(),
                ]
                .concat(),
                cpu: single_cpu(&pinning.gateway_cpus),
            }),
            // Same placement as the proxy: it inherits the gateway's CPU.
            Target::CRelay { program } => Some(ProcSpec {
                name: "epoll_relay".into(),
                program: program.clone(),
                // The relay's optional third argument is the congestion
                // control of its sockets.
                args: [
                    vec!["127.0.0.1:0".into(), target_addr.to_string()],
                    self.tcp_congestion.iter().cloned().collect(),
                ]
                .concat(),
                cpu: single_cpu(&pinning.gateway_cpus),
            }),
        };
        if let Some(middle) = middle {
            target_addr = self.start(&middle, dir, settings, running)?;
        }
        let mut args = vec![
            "--connect".into(),
            target_addr.to_string(),
            "--connections".into(),
            leg.load.connections.to_string(),
            "--inflight".into(),
            leg.load.inflight.to_string(),
            "--size".into(),
            leg.load.size.to_string(),
            "--warmup".into(),
            leg.load.warmup.to_string(),
            "--count".into(),
            leg.load.count.to_string(),
            "--scenario".into(),
            leg.name.clone(),
            "--json".into(),
            "--progress".into(),
            "--out".into(),
            dir.display().to_string(),
        ];
        args.extend(leg.load.extra_args.iter().cloned());
        args.extend(congestion);
        let loadgen = ProcSpec {
            name: "loadgen".into(),
            program: self.bin_dir.join("loadgen"),
            args,
            cpu: pinning.loadgen_cpu,
        };
        settings.commands.push(loadgen.command_line());
        let proc = Proc::start(&loadgen, dir).map_err(Failure::start)?;
        running.procs.push(proc);
        let proc = running.procs.last_mut().expect("just pushed");
        self.watch_loadgen(proc, leg, label)
    }

    fn start(
        &self,
        spec: &ProcSpec,
        dir: &Path,
        settings: &mut Settings,
        running: &mut Running,
    ) -> Result<std::net::SocketAddr, Failure> {
        settings.commands.push(spec.command_line());
        let mut proc = Proc::start(spec, dir).map_err(Failure::start)?;
        let ready = proc.wait_ready(self.ready_timeout, &self.interrupted);
        // A child that died or timed out is already reported (and reaped or
        // killed); one interrupted while starting still has to be stopped.
        if matches!(ready, Ok(_) | Err(StartError::Interrupted)) {
            running.procs.push(proc);
        }
        ready.map_err(Failure::start)
    }

    /// Follows loadgen's stdout until it exits, the run times out, or
    /// Ctrl-C; then reads its JSON summary from the last line.
    fn watch_loadgen(
        &self,
        proc: &mut Proc,
        leg: &Leg,
        label: &str,
    ) -> Result<LoadgenSummary, Failure> {
        let bar = self.spinner(label, leg);
        let started = Instant::now();
        let mut last_line = String::new();
        let mut reason = None;
        loop {
            if self.interrupted.load(Ordering::Relaxed) {
                // SIGINT asks loadgen to stop and print what it measured.
                proc.signal(Signal::INT);
                reason = Some(INTERRUPTED.to_string());
                break;
            }
            if started.elapsed() > self.run_timeout {
                proc.signal(Signal::INT);
                reason = Some(format!("loadgen ran longer than {:?}", self.run_timeout));
                break;
            }
            match proc.next_line(Duration::from_millis(100)) {
                LineEvent::Line(line) => {
                    if let Some(progress) = parse_progress(&line) {
                        show_progress(&bar, &progress);
                    } else if !line.trim_start().starts_with('{') {
                        bar.set_message(line.trim().to_string());
                    }
                    if !line.trim().is_empty() {
                        last_line = line;
                    }
                }
                LineEvent::Idle => {}
                LineEvent::Closed => break,
            }
        }
        // After SIGINT, give loadgen the grace period to print its JSON.
        let deadline = Instant::now() + self.stop_grace;
        while reason.is_some() && Instant::now() < deadline {
            match proc.next_line(Duration::from_millis(50)) {
                LineEvent::Line(line) if !line.trim().is_empty() => last_line = line,
                LineEvent::Closed => break,
                _ => {}
            }
        }
        let status = proc.wait_exit(self.stop_grace);
        bar.finish_and_clear();
        let parsed = LoadgenSummary::from_stdout(&last_line);
        match (reason, status, parsed) {
            (None, Some(s), Ok(summary)) if s.success() => Ok(summary),
            (Some(reason), _, parsed) => Err(Failure {
                loadgen: parsed.ok().map(Box::new),
                reason,
            }),
            (None, status, parsed) => {
                let status = status.map_or("did not exit".to_string(), |s| s.to_string());
                let why = match &parsed {
                    Ok(_) => String::new(),
                    Err(e) => format!(", and its last stdout line is not the JSON summary ({e})"),
                };
                Err(Failure {
                    loadgen: parsed.ok().map(Box::new),
                    reason: format!(
                        "loadgen {status}{why}; its log ends:\n{}",
                        super::procs::log_tail(proc.log_path())
                    ),
                })
            }
        }
    }

    fn spinner(&self, label: &str, leg: &Leg) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(label.to_string());
        bar.set_message(format!(
            "warm-up {} then measure {} pings ({} connections, inflight {})",
            leg.load.warmup, leg.load.count, leg.load.connections, leg.load.inflight
        ));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Plots the `.hgrm` files loadgen left; a missing `rtt.hgrm` is worth
    /// a warning only when loadgen got as far as a summary.
    fn write_plot(&self, dir: &Path, title: &str, measured: bool, warnings: &mut Vec<String>) {
        let mut series: Vec<(&str, Hgrm)> = Vec::new();
        for name in HGRM_FILES {
            let path = dir.join(format!("{name}.hgrm"));
            match File::open(&path) {
                Ok(file) => match read_hgrm(BufReader::new(file)) {
                    Ok(hgrm) => series.push((name, hgrm)),
                    Err(e) => warnings.push(format!("{}: {e}", path.display())),
                },
                Err(_) if name == "rtt" && measured => {
                    warnings.push(format!("loadgen wrote no {name}.hgrm"))
                }
                // Hop files are absent without a gateway.
                Err(_) => {}
            }
        }
        if series.is_empty() {
            return;
        }
        let refs: Vec<(&str, &Hgrm)> = series.iter().map(|(n, h)| (*n, h)).collect();
        if let Err(e) = plot_percentiles(&dir.join("plot.svg"), title, &refs) {
            warnings.push(e.to_string());
        }
    }
}

/// A `progress <phase> <done>/<total>` line from loadgen.
#[derive(Debug, PartialEq, Eq)]
pub struct Progress<'a> {
    /// `warmup` or `measure` (or whatever loadgen names its phase).
    pub phase: &'a str,
    /// Pings answered in the phase so far.
    pub done: u64,
    /// Pings the phase needs.
    pub total: u64,
}

/// Parses loadgen's optional progress line, `progress measure 2000/10000`;
/// any other line is `None` (and is shown as it is).
pub fn parse_progress(line: &str) -> Option<Progress<'_>> {
    let mut words = line.split_whitespace();
    if words.next()? != "progress" {
        return None;
    }
    let phase = words.next()?;
    let (done, total) = words.next()?.split_once('/')?;
    if words.next().is_some() {
        return None;
    }
    Some(Progress {
        phase,
        done: done.parse().ok()?,
        total: total.parse().ok()?,
    })
}

/// Turns the spinner into a bar for the phase loadgen reports.
fn show_progress(bar: &ProgressBar, progress: &Progress<'_>) {
    if bar.length() != Some(progress.total) {
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{elapsed}] {msg:8} {wide_bar} {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_length(progress.total);
    }
    bar.set_message(progress.phase.to_string());
    bar.set_position(progress.done);
}

/// A leg that did not finish: why, and loadgen's summary if it printed one.
struct Failure {
    loadgen: Option<Box<LoadgenSummary>>,
    reason: String,
}

impl Failure {
    fn start(e: StartError) -> Failure {
        let reason = match e {
            StartError::Interrupted => INTERRUPTED.to_string(),
            other => other.to_string(),
        };
        Failure {
            loadgen: None,
            reason,
        }
    }
}

/// `args` plus `--cpus a,b` when there are CPUs to pin workers to.
fn with_cpus(mut args: Vec<String>, cpus: Vec<usize>) -> Vec<String> {
    if !cpus.is_empty() {
        let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
        args.push("--cpus".into());
        args.push(list.join(","));
    }
    args
}

/// The one CPU all of `cpus` name, if they name one: the process can then
/// inherit it as its whole affinity.
fn single_cpu(cpus: &[usize]) -> Option<usize> {
    let first = *cpus.first()?;
    cpus.iter().all(|&c| c == first).then_some(first)
}

/// The system's TCP congestion control
/// (`/proc/sys/net/ipv4/tcp_congestion_control`): what a process that does
/// not choose one gets. `unknown` where the file cannot be read.
pub fn system_congestion_control() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_match_the_cli_table() {
        assert_eq!(
            Target::scenario("s1"),
            Some(Target::Gateway {
                workers: 1,
                routing: Routing::Local,
                write_mode: WriteMode::Speculative,
                upstream_connections: 1,
            })
        );
        assert!(matches!(
            Target::scenario("s2"),
            Some(Target::Gateway {
                workers: 2,
                routing: Routing::Local,
                ..
            })
        ));
        assert!(matches!(
            Target::scenario("s3"),
            Some(Target::Gateway {
                workers: 2,
                routing: Routing::Handoff,
                ..
            })
        ));
        assert_eq!(Target::scenario("s4"), None);
        assert_eq!(Target::scenario("o3"), Target::scenario("s3"));
        assert_eq!(
            ScenarioRow::find("o1").unwrap().loadgen_args(),
            ["--workload", "orders"]
        );
        assert!(ScenarioRow::find("s1").unwrap().loadgen_args.is_empty());
    }

    #[test]
    fn progress_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_progress("progress measure 2000/10000"),
            Some(Progress {
                phase: "measure",
                done: 2000,
                total: 10_000
            })
        );
        assert_eq!(parse_progress("progress warmup 1/2 extra"), None);
        assert_eq!(parse_progress("progress warmup half"), None);
        assert_eq!(parse_progress("interval 1s rate=5000 p50=31us"), None);
    }

    #[test]
    fn run_dirs_are_unique_per_second() {
        let root = tempfile::tempdir().unwrap();
        let now = UtcTime::from_unix(1_700_000_000);
        let a = fresh_run_dir(&root.path().join("s1"), now).unwrap();
        let b = fresh_run_dir(&root.path().join("s1"), now).unwrap();
        assert_eq!(a.file_name().unwrap(), "20231114T221320Z");
        assert_eq!(b.file_name().unwrap(), "20231114T221320Z-2");
    }

    #[test]
    fn cpus_are_passed_on_and_inherited_only_when_single() {
        assert_eq!(
            with_cpus(vec!["a".into()], vec![1, 0]),
            vec!["a", "--cpus", "1,0"]
        );
        assert_eq!(with_cpus(vec![], vec![]), Vec::<String>::new());
        assert_eq!(single_cpu(&[1, 1]), Some(1));
        assert_eq!(single_cpu(&[1, 0]), None);
        assert_eq!(single_cpu(&[]), None);
    }
}
