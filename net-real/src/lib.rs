//! `fep-net`: the real backend. It runs any [`fep_core::Service`] on real
//! sockets with mio, one thread per worker.
//!
//! - Thread per core: each worker has its own `mio::Poll`, its own listener
//!   on the shared port (`SO_REUSEPORT`, the kernel spreads accepts), and
//!   optionally its own CPU. Nothing on the hot path is shared but the
//!   handoff queues.
//! - Handoffs: the engine hands whole frames for another worker to its
//!   driver in batches ([`fep_core::Effect::Handoff`]); one bounded mailbox
//!   per (source, target) pair takes a batch under its own lock, and the
//!   target swaps the whole mailbox out at once: one wake-up per batch, no
//!   allocation per message, order kept per pair. A full mailbox leaves the
//!   bytes with the engine until the target has drained it and woken the
//!   source.
//! - Backpressure is pushed: [`fep_core::Effect::PauseInput`] leaves a
//!   connection's bytes in the kernel until [`fep_core::Effect::ResumeInput`].
//! - Each connection reads at most [`limits::READS_PER_TURN_MAX`] times per
//!   loop turn, so one busy peer cannot starve the others.
//! - Writes are speculative by default: the engine's output buffer is written
//!   as soon as it fills, and only a `WouldBlock` makes the worker wait for
//!   `WRITABLE`. [`WriteMode::Deferred`] is the comparison point.
//! - Time is CLOCK_MONOTONIC ([`monotonic_now`]), read once per poll return.
//! - A worker that panics stops the process's other workers, and
//!   [`Running::join`] reports it ([`NetError::WorkerPanicked`]): the
//!   release profile unwinds, so the panic is loud and the process exits
//!   non-zero, instead of aborting the other threads mid-write.
//! - Shutdown: [`Running::shutdown`] (or SIGINT/SIGTERM with
//!   [`Config::handle_signals`]) makes each worker call
//!   [`fep_core::Worker::handle_shutdown`] once, stop accepting, and run until
//!   its service is done or the drain timeout passes. A worker whose service
//!   says it is done stops on its own (a finished load generator).
//!
//! Not here: any protocol logic (that is the service's) and any allocation
//! per message (buffers and the event list are reused).
//!
//! ```no_run
//! # fn demo<S: fep_core::Service + Send>(make: fn(fep_core::WorkerId) -> S)
//! # where S::Data: Send {
//! use fep_net::{Config, Readiness};
//! let config = Config::new().listen("127.0.0.1:0".parse().unwrap()).workers(2);
//! let running = fep_net::start(config, make).expect("start");
//! assert_eq!(running.wait_ready(None), Readiness::Ready);
//! println!("ready {}", running.local_addr().unwrap());
//! running.shutdown();
//! let workers = running.join().expect("join");
//! # }
//! ```

mod clock;
mod config;
mod control;
mod driver;
mod error;
pub mod limits;
mod orphan;
mod socket;
mod stats;
mod timer;
pub mod wal;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::{fmt, thread};

use fep_core::limits::{FRAME_LENGTH_MAX_CEILING, FRAME_LENGTH_MIN, WORKERS_MAX};
use fep_core::{Service, Worker, WorkerId};
use mio::net::TcpListener;
use mio::{Poll, Waker};

pub use clock::monotonic_now;
pub use config::{Config, UnknownWriteMode, WriteMode};
pub use control::Readiness;
pub use error::NetError;
pub use socket::check_congestion;
pub use stats::IoStats;

use control::{Control, Mailboxes};
use driver::{Driver, WAKER};

/// A look at one worker's service from its own thread, between two polls:
/// progress lines, live statistics. It must be quick; it runs on the hot
/// thread.
pub type Observer<S> = Arc<dyn Fn(WorkerId, &S) + Send + Sync>;

/// Starts the workers and returns at once; see [`Running`].
///
/// `factory` builds each worker's service on the worker's own thread (after
/// pinning, so its memory is local to that CPU). Listeners are bound before
/// any thread starts, so an unbindable address is an error here.
pub fn start<S, F>(config: Config, factory: F) -> Result<Running<S>, NetError>
where
    S: Service + Send,
    S::Data: Send,
    F: Fn(WorkerId) -> S + Send + Sync + 'static,
{
    start_inner(config, factory, None)
}

/// [`start`], with `observer` called on each worker's thread every
/// [`Config::observe_every`] and once more when the worker stops.
pub fn start_observed<S, F>(
    config: Config,
    factory: F,
    observer: Observer<S>,
) -> Result<Running<S>, NetError>
where
    S: Service + Send,
    S::Data: Send,
    F: Fn(WorkerId) -> S + Send + Sync + 'static,
{
    start_inner(config, factory, Some(observer))
}

fn start_inner<S, F>(
    config: Config,
    factory: F,
    observer: Option<Observer<S>>,
) -> Result<Running<S>, NetError>
where
    S: Service + Send,
    S::Data: Send,
    F: Fn(WorkerId) -> S + Send + Sync + 'static,
{
    validate(&config)?;
    let workers = config.workers;
    let (mut listeners, local_addr) = match config.listen {
        Some(addr) => {
            let (listeners, bound) = socket::bind_listeners(addr, workers, &config)?;
            (listeners.into_iter().map(Some).collect(), Some(bound))
        }
        None => ((0..workers).map(|_| None).collect::<Vec<_>>(), None),
    };
    let mut polls = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let poll = Poll::new().map_err(|source| NetError::Io {
            context: "creating an epoll instance",
            source,
        })?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(|source| NetError::Io {
            context: "creating a waker",
            source,
        })?;
        polls.push(poll);
        wakers.push(waker);
    }
    let control = Arc::new(Control::new(wakers));
    // Before any worker runs: a signal in between must not kill the process.
    let signals = if config.handle_signals {
        Some(install_signals(&control)?)
    } else {
        None
    };
    let mailboxes = Arc::new(Mailboxes::new(workers, config.handoff_mailbox_bytes));
    let mut wal = match &config.journal {
        Some(setup) => {
            let waker = Arc::clone(&control);
            let worker = setup.worker.index();
            // The WAL thread wakes the journal's worker after each group
            // commit (and once more if it stops on an error).
            let on_durable = Box::new(move |_seq: u64| waker.wake(worker));
            let started = wal::Wal::start(setup.wal.clone(), setup.append_at, on_durable);
            Some((
                setup.worker,
                (started.map_err(NetError::Wal)?, setup.wal.clone()),
            ))
        }
        None => None,
    };
    let config = Arc::new(config);
    let factory = Arc::new(factory);
    let (started_tx, started_rx) = mpsc::channel();
    let mut running = Running {
        control: Arc::clone(&control),
        threads: Vec::with_capacity(workers),
        local_addr,
        signals,
    };
    for (index, poll) in polls.into_iter().enumerate() {
        let setup = Setup {
            id: WorkerId(u16::try_from(index).expect("validated against WORKERS_MAX")),
            poll,
            listener: listeners[index].take(),
            config: Arc::clone(&config),
            control: Arc::clone(&control),
            mailboxes: Arc::clone(&mailboxes),
            started: started_tx.clone(),
            wal: wal.take_if(|(w, _)| w.index() == index).map(|(_, wal)| wal),
        };
        let factory = Arc::clone(&factory);
        let observer = observer.clone();
        let spawned = thread::Builder::new()
            .name(format!("fep-worker-{index}"))
            .spawn(move || worker_thread(setup, &*factory, observer));
        match spawned {
            Ok(handle) => running.threads.push(handle),
            Err(source) => {
                control.abort();
                let _ = running.join_threads();
                return Err(NetError::Io {
                    context: "spawning a worker thread",
                    source,
                });
            }
        }
    }
    drop(started_tx);
    let mut failure = None;
    for _ in 0..workers {
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            // Every sender is gone: a thread died before reporting.
            Err(_) => break,
        }
    }
    if let Some(e) = failure {
        control.abort();
        let _ = running.join_threads();
        return Err(e);
    }
    Ok(running)
}

/// A worker that stopped, with what its event loop did.
pub struct Stopped<S: Service> {
    /// The worker, its sessions closed; its service holds the reports.
    pub worker: Worker<S>,
    /// The event loop's counters.
    pub io: IoStats,
}

impl<S: Service> fmt::Debug for Stopped<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopped")
            .field("worker", &self.worker.id())
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Stopped<S> {
    /// The worker's service.
    pub fn service(&self) -> &S {
        self.worker.service()
    }
}

/// Starts the workers and waits until all have stopped: the services are
/// done, or a shutdown (a signal, with [`Config::handle_signals`]) drained.
pub fn run<S, F>(config: Config, factory: F) -> Result<Vec<Stopped<S>>, NetError>
where
    S: Service + Send,
    S::Data: Send,
    F: Fn(WorkerId) -> S + Send + Sync + 'static,
{
    start(config, factory)?.join()
}

fn validate(config: &Config) -> Result<(), NetError> {
    let invalid = |what: String| Err(NetError::Config { what });
    if config.workers == 0 || config.workers > WORKERS_MAX {
        return invalid(format!(
            "{} workers (1 to {WORKERS_MAX} are possible)",
            config.workers
        ));
    }
    if config.handoff_mailbox_bytes == 0 {
        return invalid("a handoff mailbox of 0 bytes".to_owned());
    }
    let max_frame = config.worker.max_frame;
    if !(FRAME_LENGTH_MIN..=FRAME_LENGTH_MAX_CEILING).contains(&max_frame) {
        return invalid(format!(
            "max frame {max_frame} (from {FRAME_LENGTH_MIN} to {FRAME_LENGTH_MAX_CEILING})"
        ));
    }
    if config.worker.output_backlog_max < max_frame as usize {
        return invalid(format!(
            "output backlog bound {} is below max frame {max_frame}",
            config.worker.output_backlog_max
        ));
    }
    if let Some(name) = &config.tcp_congestion {
        if let Err(e) = socket::check_congestion(name) {
            return invalid(format!(
                "TCP congestion control {name:?} is not available here ({e}; \
                 see net.ipv4.tcp_available_congestion_control and \
                 tcp_allowed_congestion_control)"
            ));
        }
    }
    if let Some(j) = &config.journal {
        if j.worker.index() >= config.workers {
            return invalid(format!(
                "a journal for worker {} of {}",
                j.worker.0, config.workers
            ));
        }
    }
    if let Some(cpus) = &config.cpus {
        if cpus.is_empty() {
            return invalid("an empty CPU list".to_owned());
        }
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        if let Some(&core) = cpus.iter().find(|c| !available.contains(c)) {
            return Err(NetError::Pin { core, available });
        }
    }
    Ok(())
}

/// What a worker thread is handed.
struct Setup {
    id: WorkerId,
    poll: Poll,
    listener: Option<TcpListener>,
    config: Arc<Config>,
    control: Arc<Control>,
    mailboxes: Arc<Mailboxes>,
    started: mpsc::Sender<Result<(), NetError>>,
    wal: Option<(wal::Wal, wal::WalConfig)>,
}

fn worker_thread<S, F>(
    setup: Setup,
    factory: &F,
    observer: Option<Observer<S>>,
) -> Option<Stopped<S>>
where
    S: Service,
    F: Fn(WorkerId) -> S,
{
    let Setup {
        id,
        poll,
        listener,
        config,
        control,
        mailboxes,
        started,
        wal,
    } = setup;
    let guard = PanicGuard {
        control: &control,
        worker: id.index(),
    };
    if let Some(cpus) = &config.cpus {
        let core = cpus[id.index() % cpus.len()];
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            control.report_exited(id.index());
            let _ = started.send(Err(NetError::Pin {
                core,
                available: Vec::new(),
            }));
            return None;
        }
    }
    let worker = Worker::new(id, config.worker, factory(id));
    let driver = match Driver::new(
        worker,
        poll,
        listener,
        Arc::clone(&config),
        Arc::clone(&control),
        mailboxes,
        observer,
    ) {
        Ok(driver) => driver.with_journal(wal),
        Err(source) => {
            control.report_exited(id.index());
            let _ = started.send(Err(NetError::Io {
                context: "registering a listener",
                source,
            }));
            return None;
        }
    };
    let _ = started.send(Ok(()));
    drop(started);
    let (worker, io) = driver.run();
    drop(guard);
    Some(Stopped { worker, io })
}

/// Stops the whole process's workers when one panics, so `join` returns.
struct PanicGuard<'a> {
    control: &'a Control,
    worker: usize,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.control.report_exited(self.worker);
            self.control.abort();
        }
    }
}

type SignalThread = (signal_hook::iterator::Handle, JoinHandle<()>);

fn install_signals(control: &Arc<Control>) -> Result<SignalThread, NetError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let io_error = |source| NetError::Io {
        context: "installing SIGINT/SIGTERM handlers",
        source,
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(io_error)?;
    let handle = signals.handle();
    let control = Arc::clone(control);
    let thread = thread::Builder::new()
        .name("fep-signals".to_owned())
        .spawn(move || {
            // The first signal drains, a second one stops at once.
            for _ in signals.forever() {
                control.shutdown();
            }
        })
        .map_err(io_error)?;
    Ok((handle, thread))
}

/// The running workers of one process.
///
/// Dropping it without [`Running::join`] stops the workers at once.
pub struct Running<S: Service> {
    control: Arc<Control>,
    threads: Vec<JoinHandle<Option<Stopped<S>>>>,
    local_addr: Option<SocketAddr>,
    signals: Option<SignalThread>,
}

impl<S: Service> fmt::Debug for Running<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("workers", &self.threads.len())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Running<S> {
    /// The address the listeners are bound to (port 0 resolved).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Waits until every worker's service is ready, `timeout` passes, or a
    /// worker stops first. `None` waits as long as it takes.
    pub fn wait_ready(&self, timeout: Option<Duration>) -> Readiness {
        self.control.wait_ready(timeout)
    }

    /// Asks every worker to drain and stop; a second call stops them without
    /// draining. Returns at once: [`Running::join`] waits.
    pub fn shutdown(&self) {
        self.control.shutdown();
    }

    /// Waits for every worker to stop and gives the workers back, in worker
    /// order, so the caller can read their services (reports) and counters.
    pub fn join(mut self) -> Result<Vec<Stopped<S>>, NetError> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> Result<Vec<Stopped<S>>, NetError> {
        let mut workers = Vec::with_capacity(self.threads.len());
        let mut panicked = None;
        for (index, thread) in std::mem::take(&mut self.threads).into_iter().enumerate() {
            match thread.join() {
                Ok(Some(worker)) => workers.push(worker),
                Ok(None) => {}
                Err(_) => {
                    panicked.get_or_insert(NetError::WorkerPanicked { worker: index });
                }
            }
        }
        if let Some((handle, thread)) = self.signals.take() {
            handle.close();
            let _ = thread.join();
        }
        match panicked {
            Some(e) => Err(e),
            None => Ok(workers),
        }
    }
}

impl<S: Service> Drop for Running<S> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.control.abort();
            let _ = self.join_threads();
        }
    }
}
