//! How a driver is set up: addresses, workers, placement, write policy.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use fep_core::{WorkerConfig, WorkerId};
use fep_journal::AppendAt;

use crate::wal::WalConfig;

use crate::limits::{
    CLOSE_LINGER_DEFAULT, CONNECT_TIMEOUT_DEFAULT, DRAIN_TIMEOUT_DEFAULT,
    HANDOFF_MAILBOX_BYTES_DEFAULT, OBSERVE_EVERY_DEFAULT,
};

/// When bytes the engine produced are written to the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Write at once; wait for `WRITABLE` only after `WouldBlock`.
    #[default]
    Speculative,
    /// Always wait for `WRITABLE` first: one more poll round per write. The
    /// comparison point for what speculative writing buys.
    Deferred,
    /// Write without waiting for `WRITABLE`, but once per batch of
    /// readiness events, after all of them are handled: what a pipelined
    /// load produces for one socket in a batch leaves in one `write`.
    Batched,
}

impl WriteMode {
    /// Every write mode, in the order of [`WriteMode::NAMES`].
    pub const ALL: [WriteMode; 3] = [
        WriteMode::Speculative,
        WriteMode::Deferred,
        WriteMode::Batched,
    ];

    /// The names flags and result files use, in the order of
    /// [`WriteMode::ALL`].
    pub const NAMES: [&'static str; 3] = {
        let mut names = [""; 3];
        let mut i = 0;
        while i < names.len() {
            names[i] = WriteMode::ALL[i].name();
            i += 1;
        }
        names
    };

    /// `speculative`, `deferred` or `batched`.
    pub const fn name(self) -> &'static str {
        match self {
            WriteMode::Speculative => "speculative",
            WriteMode::Deferred => "deferred",
            WriteMode::Batched => "batched",
        }
    }
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A write-mode name that is not one of [`WriteMode::NAMES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownWriteMode(pub String);

impl fmt::Display for UnknownWriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown write mode {:?} (expected speculative, deferred or batched)",
            self.0
        )
    }
}

impl std::error::Error for UnknownWriteMode {}

impl FromStr for WriteMode {
    type Err = UnknownWriteMode;
    fn from_str(s: &str) -> Result<WriteMode, UnknownWriteMode> {
        WriteMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownWriteMode(s.to_owned()))
    }
}

/// The settings of one driver (one process). Built with chained setters:
///
/// ```
/// use fep_net::{Config, WriteMode};
/// let config = Config::new()
///     .listen("127.0.0.1:0".parse().unwrap())
///     .workers(2)
///     .write_mode(WriteMode::Deferred);
/// assert_eq!(config.worker_count(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) peers: Vec<SocketAddr>,
    pub(crate) workers: usize,
    pub(crate) cpus: Option<Vec<usize>>,
    pub(crate) write_mode: WriteMode,
    pub(crate) busy_poll: bool,
    pub(crate) worker: WorkerConfig,
    pub(crate) handoff_mailbox_bytes: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) close_linger: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) handle_signals: bool,
    pub(crate) report_unreachable: bool,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) recv_buffer: Option<usize>,
    pub(crate) tcp_congestion: Option<String>,
    pub(crate) observe_every: Duration,
    pub(crate) journal: Option<JournalSetup>,
}

/// A write-ahead log for one worker's [`fep_core::Effect::Journal`]
/// records: where recovery ended and how to write.
#[derive(Clone, Debug)]
pub(crate) struct JournalSetup {
    pub(crate) worker: WorkerId,
    pub(crate) wal: WalConfig,
    pub(crate) append_at: AppendAt,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// One unpinned worker, no listener, no peers, speculative writes.
    pub fn new() -> Config {
        Config {
            listen: None,
            peers: Vec::new(),
            workers: 1,
            cpus: None,
            write_mode: WriteMode::Speculative,
            busy_poll: false,
            worker: WorkerConfig::default(),
            handoff_mailbox_bytes: HANDOFF_MAILBOX_BYTES_DEFAULT,
            drain_timeout: DRAIN_TIMEOUT_DEFAULT,
            close_linger: CLOSE_LINGER_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            handle_signals: false,
            report_unreachable: false,
            send_buffer: None,
            recv_buffer: None,
            tcp_congestion: None,
            observe_every: OBSERVE_EVERY_DEFAULT,
            journal: None,
        }
    }

    /// How often an observer (see [`crate::start_observed`]) looks at each
    /// worker's service.
    pub fn observe_every(mut self, every: Duration) -> Config {
        self.observe_every = every;
        self
    }

    /// Accept connections on `addr`: every worker binds its own listener
    /// there with `SO_REUSEPORT`. Port 0 picks one free port for all.
    pub fn listen(mut self, addr: SocketAddr) -> Config {
        self.listen = Some(addr);
        self
    }

    /// The peers the service dials: `PeerId(i)` is `peers[i]`.
    pub fn peers(mut self, peers: Vec<SocketAddr>) -> Config {
        self.peers = peers;
        self
    }

    /// Gives worker `worker` a write-ahead log ([`crate::wal::Wal`]) on its
    /// own thread, appending where recovery ended (`append_at`): the
    /// worker's [`fep_core::Effect::Journal`] records go there and
    /// [`fep_core::Worker::handle_durable`] follows each group commit. At
    /// the end of the run what is pending is written and synced.
    pub fn journal(mut self, worker: WorkerId, wal: WalConfig, append_at: AppendAt) -> Config {
        self.journal = Some(JournalSetup {
            worker,
            wal,
            append_at,
        });
        self
    }

    /// Worker threads (at least 1).
    pub fn workers(mut self, workers: usize) -> Config {
        self.workers = workers;
        self
    }

    /// Pin worker `i` to `cpus[i % cpus.len()]`; `None` leaves them unpinned.
    pub fn cpus(mut self, cpus: Option<Vec<usize>>) -> Config {
        self.cpus = cpus;
        self
    }

    /// When produced bytes are written.
    pub fn write_mode(mut self, mode: WriteMode) -> Config {
        self.write_mode = mode;
        self
    }

    /// Spin on a zero-timeout poll instead of sleeping: lower wake-up latency
    /// for a whole core per worker.
    pub fn busy_poll(mut self, on: bool) -> Config {
        self.busy_poll = on;
        self
    }

    /// The engine's bounds for every worker.
    pub fn worker_config(mut self, worker: WorkerConfig) -> Config {
        self.worker = worker;
        self
    }

    /// Bytes past which each (source, target) handoff mailbox takes no
    /// more until its target drains it.
    pub fn handoff_mailbox_bytes(mut self, bytes: usize) -> Config {
        self.handoff_mailbox_bytes = bytes;
        self
    }

    /// How long a worker drains after a shutdown (or after its service says
    /// it is done) before it closes what is left.
    pub fn drain_timeout(mut self, timeout: Duration) -> Config {
        self.drain_timeout = timeout;
        self
    }

    /// How long a closing connection may take to flush its last bytes.
    pub fn close_linger(mut self, linger: Duration) -> Config {
        self.close_linger = linger;
        self
    }

    /// How long a dial may take before it is reported failed.
    pub fn connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = timeout;
        self
    }

    /// Print one stderr line when a dial to a peer fails, and then no more
    /// for that peer until a dial to it succeeds (said too): a gateway
    /// started before its exchange says what it is waiting for rather
    /// than retrying in silence. Off by default.
    pub fn report_unreachable(mut self, on: bool) -> Config {
        self.report_unreachable = on;
        self
    }

    /// Turn SIGINT/SIGTERM into a shutdown (a second signal skips the
    /// drain). Off by default so tests and embedders keep their handlers.
    pub fn handle_signals(mut self, on: bool) -> Config {
        self.handle_signals = on;
        self
    }

    /// `SO_SNDBUF` of every socket, in bytes (the kernel doubles it).
    pub fn send_buffer(mut self, bytes: Option<usize>) -> Config {
        self.send_buffer = bytes;
        self
    }

    /// `SO_RCVBUF` of every socket, in bytes (the kernel doubles it).
    pub fn recv_buffer(mut self, bytes: Option<usize>) -> Config {
        self.recv_buffer = bytes;
        self
    }

    /// `TCP_CONGESTION` of every socket: the congestion control algorithm
    /// by its kernel name (`cubic`, `reno`, `bbr`, …; see
    /// `net.ipv4.tcp_available_congestion_control`). `None` (the default)
    /// keeps the system's (`net.ipv4.tcp_congestion_control`). [`crate::start`]
    /// refuses a name this kernel does not offer this process, in one line.
    pub fn tcp_congestion(mut self, name: Option<String>) -> Config {
        self.tcp_congestion = name;
        self
    }

    /// The number of workers configured.
    pub fn worker_count(&self) -> usize {
        self.workers
    }
}
