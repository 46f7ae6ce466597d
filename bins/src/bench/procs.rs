//! Child processes of a benchmark run: started pinned, logged, waited for
//! by their `ready <addr>` line, and stopped by signal.
//!
//! Each child gets its own process group, so a Ctrl-C in the terminal
//! reaches only fepbench, which then stops the children in order (loadgen
//! first, so it can still print what it measured).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// How often a wait checks the interrupt flag.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// How often a stop checks whether the child has exited.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// Lines of a child's log quoted when it fails.
const LOG_TAIL_LINES: usize = 20;

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    /// Short name, also the log file's stem (`mock_exchange` → `mock_exchange.log`).
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The CPU it inherits as its affinity, if pinned.
    pub cpu: Option<usize>,
}

impl ProcSpec {
    /// The command line as one string, for the record in `summary.json`
    /// (arguments a shell would split or expand are single-quoted).
    pub fn command_line(&self) -> String {
        let mut line = self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for arg in &self.args {
            line.push(' ');
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=@+%".contains(c));
            if plain {
                line.push_str(arg);
            } else {
                line.push('\'');
                line.push_str(&arg.replace('\'', r"'\''"));
                line.push('\'');
            }
        }
        line
    }
}

/// A started child: its stdout lines arrive on a channel (and go to its log
/// together with its stderr).
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    /// The write end of the child's stdin, never written: the kernel closes
    /// it when fepbench dies, however it dies, and the child then stops
    /// ([`crate::cli::LIFELINE_ENV`]).
    _lifeline: Option<ChildStdin>,
    lines: Receiver<String>,
    log: PathBuf,
    status: Option<ExitStatus>,
}

/// What waiting for the next stdout line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// A line (without its newline).
    Line(String),
    /// Nothing within the wait.
    Idle,
    /// stdout closed: the child is exiting or gone.
    Closed,
}

/// Why a child did not come up.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// It could not be spawned at all.
    Spawn {
        /// Which child.
        name: String,
        /// The executable.
        program: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// It exited before printing `ready <addr>`.
    Died {
        /// Which child.
        name: String,
        /// Its exit status.
        status: Option<ExitStatus>,
        /// The end of its log (stderr and stdout).
        log_tail: String,
    },
    /// No `ready` line within the timeout; it was killed.
    Timeout {
        /// Which child.
        name: String,
        /// How long it was given.
        waited: Duration,
        /// The end of its log.
        log_tail: String,
    },
    /// The `ready` line's address did not parse.
    BadReady {
        /// Which child.
        name: String,
        /// The line.
        line: String,
    },
    /// Ctrl-C arrived while waiting.
    Interrupted,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn {
                name,
                program,
                error,
            } => {
                write!(f, "{name}: cannot start {}: {error}", program.display())
            }
            StartError::Died {
                name,
                status,
                log_tail,
            } => {
                let status = status.map_or("unknown status".to_string(), |s| s.to_string());
                write!(
                    f,
                    "{name} exited before it was ready ({status}); its log ends:\n{log_tail}"
                )
            }
            StartError::Timeout {
                name,
                waited,
                log_tail,
            } => write!(
                f,
                "{name} printed no `ready <addr>` within {waited:?}; its log ends:\n{log_tail}"
            ),
            StartError::BadReady { name, line } => {
                write!(f, "{name}: cannot parse the address in {line:?}")
            }
            StartError::Interrupted => write!(f, "interrupted while starting"),
        }
    }
}

impl std::error::Error for StartError {}

/// The address in a `ready <addr>` line, if the line is one.
pub fn parse_ready(line: &str) -> Option<Result<SocketAddr, ()>> {
    let rest = line.trim().strip_prefix("ready")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.trim().parse().map_err(|_| ()))
}

impl Proc {
    /// Starts `spec` with its log at `log_dir/<name>.log`.
    pub fn start(spec: &ProcSpec, log_dir: &Path) -> Result<Proc, StartError> {
        let spawn_err = |error| StartError::Spawn {
            name: spec.name.clone(),
            program: spec.program.clone(),
            error,
        };
        let log = log_dir.join(format!("{}.log", spec.name));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(spawn_err)?;
        let stderr = file.try_clone().map_err(spawn_err)?;
        let mut command = Command::new(&spec.program);
        // Our processes take any flag from a FEP_* variable: one left in
        // fepbench's environment (FEP_WORKLOAD, FEP_RATE, FEP_TOKEN …)
        // would change the leg behind its recorded settings. A leg runs
        // with its flags alone.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("FEP_")) {
                command.env_remove(name);
            }
        }
        command
            .args(&spec.args)
            .env(crate::cli::LIFELINE_ENV, "stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        let mut child = spawn_on(spec.cpu, &mut command).map_err(spawn_err)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| spawn_err(io::Error::other("no stdout pipe")))?;
        let lifeline = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{}-stdout", spec.name))
            .spawn(move || forward_lines(stdout, file, tx))
            .map_err(spawn_err)?;
        Ok(Proc {
            name: spec.name.clone(),
            child,
            _lifeline: lifeline,
            lines,
            log,
            status: None,
        })
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits up to `wait` for the next stdout line.
    pub fn next_line(&mut self, wait: Duration) -> LineEvent {
        match self.lines.recv_timeout(wait) {
            Ok(line) => LineEvent::Line(line),
            Err(RecvTimeoutError::Timeout) => LineEvent::Idle,
            Err(RecvTimeoutError::Disconnected) => LineEvent::Closed,
        }
    }

    /// Waits for `ready <addr>` on stdout, up to `timeout`, giving up early
    /// when `interrupted` is raised or the child exits.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        interrupted: &AtomicBool,
    ) -> Result<SocketAddr, StartError> {
        let deadline = Instant::now() + timeout;
        loop {
            if interrupted.load(Ordering::Relaxed) {
                return Err(StartError::Interrupted);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Err(StartError::Timeout {
                    name: self.name.clone(),
                    waited: timeout,
                    log_tail: log_tail(&self.log),
                });
            }
            match self.next_line(left.min(INTERRUPT_POLL)) {
                LineEvent::Line(line) => match parse_ready(&line) {
                    Some(Ok(addr)) => return Ok(addr),
                    Some(Err(())) => {
                        return Err(StartError::BadReady {
                            name: self.name.clone(),
                            line,
                        })
                    }
                    None => {}
                },
                LineEvent::Idle => {}
                LineEvent::Closed => {
                    let status = self.wait_exit(Duration::from_secs(2));
                    return Err(StartError::Died {
                        name: self.name.clone(),
                        status,
                        log_tail: log_tail(&self.log),
                    });
                }
            }
        }
    }

    /// Sends `signal` to the child (ignored when it has already exited).
    pub fn signal(&self, signal: Signal) {
        if self.status.is_none() {
            // It may have exited since: ESRCH is fine.
            let _ = kill_process(Pid::from_child(&self.child), signal);
        }
    }

    /// Waits up to `timeout` for the child to exit; its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.status = Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(EXIT_POLL),
                Ok(None) | Err(_) => break,
            }
        }
        self.status
    }

    /// Stops the child: `signal`, up to `grace` to exit, then SIGKILL.
    /// Returns its exit status and whether it had to be killed.
    pub fn stop(&mut self, signal: Signal, grace: Duration) -> (Option<ExitStatus>, bool) {
        self.signal(signal);
        if let Some(status) = self.wait_exit(grace) {
            return (Some(status), false);
        }
        self.kill();
        (self.status, true)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }
}

impl Drop for Proc {
    /// A benchmark never leaves a child behind, whatever path it took.
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Spawns `command` from a fresh thread pinned to `cpu`: the child inherits
/// the thread's affinity, which needs no unsafe `pre_exec`.
fn spawn_on(cpu: Option<usize>, command: &mut Command) -> io::Result<Child> {
    let Some(cpu) = cpu else {
        return command.spawn();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    return Err(io::Error::other(format!("cannot pin to CPU {cpu}")));
                }
                command.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("spawning thread panicked")))
    })
}

/// Copies the child's stdout lines to its log and to the channel.
fn forward_lines(stdout: impl io::Read, mut log: File, tx: mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        if tx.send(line).is_err() {
            // Nobody listens any more; keep draining so the child never
            // blocks on a full pipe.
            continue;
        }
    }
}

/// The last lines of a log, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
    let tail = lines[from..].join("\n");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(name: &str, script: &str) -> ProcSpec {
        ProcSpec {
            name: name.into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cpu: None,
        }
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let mut spec = sh("x", "echo 'hi'");
        spec.program = "/usr/bin/loadgen".into();
        spec.args
            .extend(["--profile".into(), "0s:100,ramp 2s:5".into()]);
        assert_eq!(
            spec.command_line(),
            r"loadgen -c 'echo '\''hi'\''' --profile '0s:100,ramp 2s:5'"
        );
    }

    #[test]
    fn ready_lines_parse() {
        assert_eq!(
            parse_ready("ready 127.0.0.1:9000"),
            Some(Ok("127.0.0.1:9000".parse().unwrap()))
        );
        assert_eq!(parse_ready("ready nowhere"), Some(Err(())));
        assert_eq!(parse_ready("readying"), None);
        assert_eq!(parse_ready("listening"), None);
    }

    #[test]
    fn ready_address_is_taken_from_stdout_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let never = AtomicBool::new(false);
        let mut p = Proc::start(
            &sh(
                "srv",
                "echo starting; echo oops >&2; echo 'ready 127.0.0.1:4242'; exec sleep 30",
            ),
            dir.path(),
        )
        .unwrap();
        let addr = p.wait_ready(Duration::from_secs(10), &never).unwrap();
        assert_eq!(addr.port(), 4242);
        let (status, killed) = p.stop(Signal::TERM, Duration::from_secs(5));
        assert!(!killed);
        assert!(!status.unwrap().success(), "sleep dies of SIGTERM");
        let log = std::fs::read_to_string(dir.path().join("srv.log")).unwrap();
        assert!(
            log.contains("starting") && log.contains("oops") && log.contains("ready"),
            "{log}"
        );
    }

    #[test]
    fn a_child_dying_before_ready_is_reported_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let never = AtomicBool::new(false);
        let mut p = Proc::start(
            &sh("gw", "echo 'cannot bind 127.0.0.1:1' >&2; exit 3"),
            dir.path(),
        )
        .unwrap();
        let err = p.wait_ready(Duration::from_secs(10), &never).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StartError::Died { .. }), "{text}");
        assert!(
            text.contains("cannot bind") && text.contains("exit status: 3"),
            "{text}"
        );
    }

    #[test]
    fn a_silent_child_times_out_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let never = AtomicBool::new(false);
        let mut p = Proc::start(&sh("mute", "exec sleep 30"), dir.path()).unwrap();
        let started = Instant::now();
        let err = p
            .wait_ready(Duration::from_millis(300), &never)
            .unwrap_err();
        assert!(matches!(err, StartError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(p.wait_exit(Duration::ZERO).is_some(), "killed");
    }

    #[test]
    fn an_interrupt_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let raised = AtomicBool::new(true);
        let mut p = Proc::start(&sh("mute", "exec sleep 30"), dir.path()).unwrap();
        assert!(matches!(
            p.wait_ready(Duration::from_secs(30), &raised),
            Err(StartError::Interrupted)
        ));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ProcSpec {
            name: "x".into(),
            program: dir.path().join("nope"),
            args: vec![],
            cpu: None,
        };
        assert!(matches!(
            Proc::start(&spec, dir.path()),
            Err(StartError::Spawn { .. })
        ));
    }

    #[test]
    fn a_pinned_child_inherits_its_cpu() {
        let cpus = crate::bench::pin::allowed_cpus();
        let cpu = *cpus.last().expect("this machine reports its CPUs");
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sh("pinned", "grep Cpus_allowed_list /proc/self/status");
        spec.cpu = Some(cpu);
        let mut p = Proc::start(&spec, dir.path()).unwrap();
        let LineEvent::Line(line) = p.next_line(Duration::from_secs(10)) else {
            panic!("no output from the pinned child");
        };
        assert_eq!(
            line.split_whitespace().last(),
            Some(cpu.to_string().as_str()),
            "{line}"
        );
    }
}
