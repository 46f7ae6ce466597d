//! The turmoil driver of a `fep-core` [`Worker`], generic over the role.
//!
//! A simulated host runs `workers` tokio tasks on its `LocalSet`, each
//! owning one [`Worker`]. Everything a worker task reacts to arrives on one
//! inbox, in the order the (deterministic) runtime produced it: accepted
//! streams, dial results, bytes read, end of stream, handoffs, delayed
//! flushes and fault commands; the one other wake-up is the worker's timer.
//! After every input the task drains [`Worker::poll_effect`] completely.
//!
//! What the kernel does for the real backend is modelled here, seeded:
//! - the spread of accepted connections over workers (SO_REUSEPORT): one
//!   acceptor task picks the worker with the host's `accept` stream;
//! - the cross-worker handoff queue: one courier task per (source, target)
//!   pair, FIFO, delivering each task after a delay drawn from the source's
//!   `handoff` stream; the queue is bounded and refuses past its bound;
//! - the socket send buffer: one writer task per connection drains a
//!   buffer of at most [`SEND_BUF_MAX`] bytes into the turmoil stream, whose
//!   end-to-end flow control holds it while the peer does not read. Bytes
//!   enter the buffer only while it has room ([`Worker::handle_written`]
//!   then), so a peer that stops reading makes the worker's own output
//!   backlog grow, as a full kernel buffer does for the real backend;
//! - the receive side: each connection's reader waits for room in the
//!   worker's bounded inbox before it reads on (TCP holds the sender back).
//!
//! Buggify points (off unless [`Knobs::buggify`] says otherwise) nudge the
//! worker the way a real event loop may: a read delivered in pieces, a
//! spurious timeout, a write held back for a few milliseconds.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use fep_core::{
    ConnId, Effect, InputGroup, Nanos, PeerId, Service, Worker, WorkerConfig, WorkerId,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{channel, Receiver, Sender};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::{TcpListener, TcpStream};

use crate::observe::ConnObserver;
use crate::seed;
use crate::trace::{Dir, HostIx, OpenConn, SharedRecorder, WireEvent};

/// Bytes one read may return; a larger segment is read in several.
const READ_BUF_LEN: usize = 64 * 1024;
/// Inputs waiting for one worker task; past it their producers wait (a
/// connection's reader, a courier, the acceptor).
const INBOX_MAX: usize = 1024;
/// The simulated socket send buffer of one connection, in bytes.
pub const SEND_BUF_MAX: usize = 64 * 1024;
/// Commands the harness may queue for a host before its software takes them.
const CONTROL_MAX: usize = 64;

/// The simulated time, as the state machines see it.
pub fn sim_now() -> Nanos {
    let elapsed = turmoil::sim_elapsed().expect("called inside a simulated host");
    Nanos(u64::try_from(elapsed.as_nanos()).expect("a run lasts less than 584 years"))
}

/// Buggify points of the driver: probabilities per opportunity.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Buggify {
    /// A read is handed to the worker in 2–4 pieces.
    pub short_read: f64,
    /// An input is followed by a spurious [`Worker::handle_timeout`].
    pub spurious_wake: f64,
    /// A transmit is held back 1..=`delayed_write_ms_max` ms.
    pub delayed_write: f64,
    /// Longest hold of a delayed write.
    pub delayed_write_ms_max: u64,
}

impl Buggify {
    /// Every point off.
    pub const OFF: Buggify = Buggify {
        short_read: 0.0,
        spurious_wake: 0.0,
        delayed_write: 0.0,
        delayed_write_ms_max: 0,
    };
}

/// A deliberately broken driver. It exists so that the checker's own tests
/// can prove the checker fails a broken gateway; nothing else sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sabotage {
    /// A correct driver.
    #[default]
    None,
    /// Handoff queues swap each pair of consecutive tasks (broken FIFO per
    /// worker pair).
    SwapHandoffs,
    /// Now and then a pong goes out on another client connection of the
    /// same worker (misrouting).
    CrossWrites,
    /// The end of a stream is not reported to the worker: its session
    /// outlives the connection.
    IgnoreEof,
    /// Every handoff is lost on the way.
    DropHandoffs,
}

/// Settings of a host's driver that faults may change during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knobs {
    /// Longest delay of a handoff; each draws uniformly from `0..=max` ms.
    pub handoff_delay_ms_max: u64,
    /// Tasks one (source, target) queue holds; past it handoffs are refused.
    pub handoff_queue_max: u32,
    /// The buggify points.
    pub buggify: Buggify,
    /// A broken driver, for the checker's tests.
    pub sabotage: Sabotage,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            handoff_delay_ms_max: 1,
            handoff_queue_max: 4096,
            buggify: Buggify::OFF,
            sabotage: Sabotage::None,
        }
    }
}

/// Commands the harness sends a running host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Drop every connection to `peer` without a word, as a TCP stack does
    /// when its retransmissions time out during a partition.
    AbortPeer(IpAddr),
}

/// What a host runs.
pub struct HostSpec<S: Service> {
    /// The turmoil host name.
    pub name: String,
    /// The port its acceptor listens on, if any.
    pub listen_port: Option<u16>,
    /// Worker tasks.
    pub workers: u16,
    /// Dial targets: [`PeerId`] `i` is `peers[i]` (host name, port).
    pub peers: Vec<(String, u16)>,
    /// Bounds of every worker.
    pub worker_config: WorkerConfig,
    /// A dial that has not completed by then fails.
    pub connect_timeout: Duration,
    /// The service of worker `id` (called again on every restart).
    pub service: Rc<dyn Fn(WorkerId) -> S>,
}

impl<S: Service> fmt::Debug for HostSpec<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSpec")
            .field("name", &self.name)
            .field("listen_port", &self.listen_port)
            .field("workers", &self.workers)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

/// A host of the simulation: its spec, and what the harness may look at or
/// steer between steps.
pub struct Host<S: Service> {
    inner: Rc<HostInner<S>>,
}

impl<S: Service> Clone for Host<S> {
    fn clone(&self) -> Self {
        Host {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Service> fmt::Debug for Host<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("spec", &self.inner.spec)
            .field("incarnation", &self.inner.incarnation.get())
            .finish_non_exhaustive()
    }
}

struct HostInner<S: Service> {
    spec: HostSpec<S>,
    seed: u64,
    ix: HostIx,
    recorder: SharedRecorder,
    knobs: Cell<Knobs>,
    incarnation: Cell<u32>,
    workers: RefCell<Vec<Rc<RefCell<Worker<S>>>>>,
    done: Cell<u16>,
    control: RefCell<Option<Sender<Control>>>,
    reads: Rc<ReadGate>,
}

/// Whether a host's connections are read: closed, its readers stop before
/// their next read (a slow consumer; the stream's flow control then holds
/// the peer's writes back).
#[derive(Default)]
struct ReadGate {
    stalled: Cell<bool>,
    opened: Notify,
}

impl ReadGate {
    async fn pass(&self) {
        while self.stalled.get() {
            // Created before any await: it sees the `notify_waiters` of an
            // opening that comes while it waits.
            self.opened.notified().await;
        }
    }

    fn is_stalled(&self) -> bool {
        self.stalled.get()
    }

    fn set_stalled(&self, stalled: bool) {
        self.stalled.set(stalled);
        if !stalled {
            self.opened.notify_waiters();
        }
    }
}

impl<S: Service> Host<S> {
    /// A host for run `seed`, recording into `recorder`.
    pub fn new(spec: HostSpec<S>, seed: u64, knobs: Knobs, recorder: SharedRecorder) -> Host<S> {
        assert!(spec.workers >= 1, "a host runs at least one worker");
        let ix = recorder.borrow_mut().add_host(&spec.name);
        Host {
            inner: Rc::new(HostInner {
                spec,
                seed,
                ix,
                recorder,
                knobs: Cell::new(knobs),
                incarnation: Cell::new(0),
                workers: RefCell::new(Vec::new()),
                done: Cell::new(0),
                control: RefCell::new(None),
                reads: Rc::new(ReadGate::default()),
            }),
        }
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The host's index in the recorder.
    pub fn ix(&self) -> HostIx {
        self.inner.ix
    }

    /// Registers the host's software with `sim` (restartable by `bounce`).
    pub fn install(&self, sim: &mut turmoil::Sim<'_>) {
        let inner = self.inner.clone();
        sim.host(self.inner.spec.name.as_str(), move || {
            software(inner.clone())
        });
    }

    /// The workers of the current incarnation.
    pub fn workers(&self) -> Vec<Rc<RefCell<Worker<S>>>> {
        self.inner.workers.borrow().clone()
    }

    /// Sessions with a connection, of each worker of the current
    /// incarnation (dials still in flight have none yet).
    pub fn sessions(&self) -> Vec<usize> {
        self.inner
            .workers
            .borrow()
            .iter()
            // A dial in flight has a session but no connection yet.
            .map(|w| {
                let w = w.borrow();
                w.sessions_len() - w.dialing_len()
            })
            .collect()
    }

    /// Whether every worker of the current incarnation is done.
    pub fn is_done(&self) -> bool {
        let workers = self.inner.workers.borrow().len();
        workers > 0 && usize::from(self.inner.done.get()) == workers
    }

    /// Times the software started (1 after the first start).
    pub fn incarnation(&self) -> u32 {
        self.inner.incarnation.get()
    }

    /// The driver's settings now.
    pub fn knobs(&self) -> Knobs {
        self.inner.knobs.get()
    }

    /// Changes the driver's settings from now on.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.inner.knobs.set(knobs);
    }

    /// Stops reading every connection of the host (`true`), or reads
    /// them again.
    pub fn stall_reads(&self, stalled: bool) {
        self.inner.reads.set_stalled(stalled);
    }

    /// Sends `control` to the running software (dropped if none runs).
    ///
    /// # Panics
    ///
    /// If [`CONTROL_MAX`] commands wait untaken: a fault plan issues a
    /// handful per run, so that is a harness bug.
    pub fn control(&self, control: Control) {
        if let Some(tx) = self.inner.control.borrow().as_ref() {
            match tx.try_send(control) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    panic!("{CONTROL_MAX} control commands wait for {}", self.name())
                }
            }
        }
    }
}

/// Whole frames one worker handed another, as they left its lane.
type Batch = Vec<u8>;

enum Input<T> {
    Accepted(TcpStream),
    Dialed {
        conn: ConnId,
        peer: PeerId,
        result: io::Result<TcpStream>,
    },
    Read {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Eof {
        conn: ConnId,
    },
    Handoff {
        source: WorkerId,
        task: T,
    },
    Flush {
        conn: ConnId,
    },
    /// The writer moved bytes from the send buffer into the stream: room.
    Sent {
        conn: ConnId,
    },
    Control(Control),
}

type Inbox<T> = Sender<Input<T>>;

/// A handoff in a courier's queue: when it is due, who sent it, what it is.
struct Parcel<T> {
    due: Nanos,
    source: WorkerId,
    task: T,
}

/// The handoff fabric of one host incarnation.
struct Fabric<T> {
    workers: u16,
    /// Each holds at most the `handoff_queue_max` the host started with;
    /// the knob may lower the bound later, never raise it.
    couriers: Vec<Option<Sender<Parcel<T>>>>,
    /// Tasks queued per (source, target) pair, not yet delivered.
    queued: Vec<Cell<u32>>,
}

impl<T> Fabric<T> {
    fn pair(&self, source: WorkerId, target: WorkerId) -> usize {
        source.index() * usize::from(self.workers) + target.index()
    }
}

async fn software<S: Service>(host: Rc<HostInner<S>>) -> turmoil::Result {
    let incarnation = host.incarnation.get() + 1;
    host.incarnation.set(incarnation);
    host.done.set(0);
    let spec = &host.spec;
    let now = sim_now();
    host.recorder.borrow_mut().line(
        now,
        format_args!("{}", spec.name),
        format_args!("start incarnation={incarnation} workers={}", spec.workers),
    );

    let mut inboxes = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..spec.workers {
        let (tx, rx) = channel::<Input<Batch>>(INBOX_MAX);
        inboxes.push(tx);
        receivers.push(rx);
    }
    let queue_max = host.knobs.get().handoff_queue_max;
    let fabric = Rc::new(start_couriers(spec.workers, &inboxes, queue_max));
    let (control_tx, control_rx) = channel(CONTROL_MAX);
    host.control.replace(Some(control_tx));
    tokio::task::spawn_local(forward_control(control_rx, inboxes.clone()));

    let mut workers = Vec::new();
    for (i, inbox) in receivers.into_iter().enumerate() {
        let id = WorkerId(u16::try_from(i).expect("workers fit u16"));
        let worker = Rc::new(RefCell::new(Worker::new(
            id,
            spec.worker_config,
            (spec.service)(id),
        )));
        workers.push(worker.clone());
        let task = WorkerTask {
            host: host.clone(),
            id,
            worker,
            inbox: inboxes[i].clone(),
            fabric: fabric.clone(),
            conns: Vec::new(),
            wake: None,
            fired_at: None,
            buggify_rng: seed::rng(
                host.seed,
                &spec.name,
                "buggify",
                u64::from(incarnation) << 16 | i as u64,
            ),
            handoff_rng: seed::rng(
                host.seed,
                &spec.name,
                "handoff",
                u64::from(incarnation) << 16 | i as u64,
            ),
            held: (0..spec.workers).map(|_| None).collect(),
            lanes_waiting: vec![false; usize::from(spec.workers)],
            groups: Vec::new(),
        };
        tokio::task::spawn_local(task.run(inbox));
    }
    host.workers.replace(workers);

    let Some(port) = spec.listen_port else {
        std::future::pending::<()>().await;
        return Ok(());
    };
    let listener = TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await?;
    let mut accept_rng = seed::rng(host.seed, &spec.name, "accept", u64::from(incarnation));
    loop {
        let (stream, peer) = listener.accept().await?;
        let target = accept_rng.random_range(0..spec.workers);
        host.recorder.borrow_mut().line(
            sim_now(),
            format_args!("{}", spec.name),
            format_args!("accept {peer} -> w{target}"),
        );
        let _ = inboxes[usize::from(target)]
            .send(Input::Accepted(stream))
            .await;
    }
}

fn start_couriers(workers: u16, inboxes: &[Inbox<Batch>], queue_max: u32) -> Fabric<Batch> {
    let n = usize::from(workers);
    let mut couriers = Vec::with_capacity(n * n);
    for source in 0..n {
        for (target, inbox) in inboxes.iter().enumerate() {
            if source == target {
                couriers.push(None);
                continue;
            }
            let (tx, rx) = channel(usize::try_from(queue_max.max(1)).expect("u32 fits usize"));
            tokio::task::spawn_local(courier(rx, inbox.clone()));
            couriers.push(Some(tx));
        }
    }
    Fabric {
        workers,
        couriers,
        queued: (0..n * n).map(|_| Cell::new(0)).collect(),
    }
}

/// One (source, target) queue: FIFO, each parcel held until it is due (and
/// until the parcels ahead of it have gone).
async fn courier<T>(mut parcels: Receiver<Parcel<T>>, target: Inbox<T>) {
    while let Some(parcel) = parcels.recv().await {
        let wait = parcel.due.checked_since(sim_now()).unwrap_or(Nanos::ZERO);
        if wait > Nanos::ZERO {
            tokio::time::sleep(Duration::from_nanos(wait.as_u64())).await;
        }
        let input = Input::Handoff {
            source: parcel.source,
            task: parcel.task,
        };
        if target.send(input).await.is_err() {
            return;
        }
    }
}

async fn forward_control<T>(mut control: Receiver<Control>, inboxes: Vec<Inbox<T>>) {
    while let Some(c) = control.recv().await {
        for inbox in &inboxes {
            let _ = inbox.send(Input::Control(c)).await;
        }
    }
}

/// A connection's simulated socket send buffer, shared by its worker task
/// (which fills it) and its writer task (which drains it into the stream).
#[derive(Default)]
struct SendBuf {
    /// Writes not yet in the stream, oldest first, each one segment.
    chunks: std::collections::VecDeque<Vec<u8>>,
    /// Bytes in `chunks` plus the chunk being written.
    len: usize,
    /// Close after the last chunk.
    shutdown: bool,
    ready: Rc<Notify>,
}

impl SendBuf {
    fn room(&self) -> usize {
        SEND_BUF_MAX.saturating_sub(self.len)
    }

    fn push(&mut self, bytes: Vec<u8>) {
        self.len += bytes.len();
        self.chunks.push_back(bytes);
        self.ready.notify_one();
    }

    fn shut(&mut self) {
        self.shutdown = true;
        self.ready.notify_one();
    }
}

/// One open connection of a worker task.
struct ConnIo {
    id: ConnId,
    local: SocketAddr,
    peer: SocketAddr,
    send_buf: Rc<RefCell<SendBuf>>,
    reader_task: JoinHandle<()>,
    writer_task: JoinHandle<()>,
    observer: ConnObserver,
    /// A delayed write is scheduled: transmits wait for its flush.
    flush_pending: bool,
    /// Closed while the service refuses this connection's input (the
    /// connection is in [`WorkerTask::paused`]): its reader stops before
    /// the next read.
    gate: Rc<ReadGate>,
    /// Input read before the reader stopped, held for the service.
    held: Vec<u8>,
    /// The service paused this connection's input.
    paused: bool,
    /// Its input group is paused and it had input: it waits in the group.
    group_held: bool,
}

struct WorkerTask<S: Service> {
    host: Rc<HostInner<S>>,
    id: WorkerId,
    worker: Rc<RefCell<Worker<S>>>,
    inbox: Inbox<Batch>,
    fabric: Rc<Fabric<Batch>>,
    conns: Vec<Option<ConnIo>>,
    wake: Option<Nanos>,
    /// The last time a timeout was handled, so a deadline that does not
    /// move past it waits for the next millisecond instead of spinning.
    fired_at: Option<Nanos>,
    buggify_rng: ChaCha8Rng,
    handoff_rng: ChaCha8Rng,
    /// [`Sabotage::SwapHandoffs`]: the parcel per target waiting for the
    /// next one to overtake it.
    held: Vec<Option<Parcel<Batch>>>,
    /// `lanes_waiting[t]`: bytes for worker `t` wait in the engine for room
    /// in the courier's queue; offered again after every input.
    lanes_waiting: Vec<bool>,
    /// Input groups by index: paused, and the connections that had input
    /// meanwhile, in order.
    groups: Vec<(bool, Vec<ConnId>)>,
}

impl<S: Service> WorkerTask<S> {
    async fn run(mut self, mut inbox: Receiver<Input<Batch>>) {
        let now = sim_now();
        self.worker.borrow_mut().start(now);
        self.drain(now);
        loop {
            if self.worker.borrow().is_done() {
                self.finish();
                return;
            }
            self.wake = self.next_wake();
            let input = match self.timer_wait() {
                Some(wait) => {
                    tokio::select! {
                        biased;
                        input = inbox.recv() => input,
                        () = tokio::time::sleep(wait) => None,
                    }
                }
                None => inbox.recv().await,
            };
            let now = sim_now();
            match input {
                Some(input) => self.handle(now, input),
                None => {
                    self.fired_at = Some(now);
                    self.worker.borrow_mut().handle_timeout(now);
                    self.drain(now);
                }
            }
            self.maybe_spurious_wake(now);
            self.retry_lanes(now);
        }
    }

    /// The one timer channel, asked once per turn; bytes waiting for a
    /// courier are offered again a millisecond later at the latest.
    fn next_wake(&self) -> Option<Nanos> {
        let wake = self.worker.borrow().poll_timeout();
        if !self.lanes_waiting.contains(&true) {
            return wake;
        }
        let retry = sim_now() + Nanos::from_millis(1);
        Some(wake.map_or(retry, |w| w.min(retry)))
    }

    /// Offers the courier queues the bytes that found them full.
    fn retry_lanes(&mut self, now: Nanos) {
        for t in 0..self.lanes_waiting.len() {
            if std::mem::take(&mut self.lanes_waiting[t]) {
                let target = WorkerId(u16::try_from(t).expect("workers fit u16"));
                self.handoff(now, target);
                self.drain(now);
            }
        }
    }

    fn timer_wait(&self) -> Option<Duration> {
        let at = self.wake?;
        let now = sim_now();
        let wait = at.checked_since(now).unwrap_or(Nanos::ZERO);
        if wait == Nanos::ZERO && self.fired_at == Some(now) {
            return Some(Duration::from_millis(1));
        }
        Some(Duration::from_nanos(wait.as_u64()))
    }

    fn line(&self, now: Nanos, what: fmt::Arguments<'_>) {
        self.host.recorder.borrow_mut().line(
            now,
            format_args!("{}/w{}", self.host.spec.name, self.id.0),
            what,
        );
    }

    fn handle(&mut self, now: Nanos, input: Input<Batch>) {
        match input {
            Input::Accepted(stream) => {
                let conn = self.worker.borrow_mut().handle_accepted(now);
                self.open(now, conn, stream, "accepted");
                self.drain(now);
            }
            Input::Dialed { conn, peer, result } => match result {
                // Abandoned while it was dialled: the stream just drops.
                Ok(_) if self.worker.borrow().session(conn).is_none() => {}
                Ok(stream) => {
                    // The socket first: the service's first words (a hello)
                    // go out on it.
                    self.open(now, Some(conn), stream, "connected");
                    self.worker.borrow_mut().handle_connected(now, conn);
                    self.drain(now);
                }
                Err(e) => {
                    self.line(now, format_args!("connect-failed p{} {}", peer.0, e.kind()));
                    self.worker.borrow_mut().handle_connect_failed(now, conn);
                    self.drain(now);
                }
            },
            Input::Read { conn, bytes } => self.read(now, conn, &bytes),
            Input::Eof { conn } => {
                if let Some(io) = self.io_mut(conn) {
                    // After a hang-up the input is read to the end, held or
                    // not, as the real backend does.
                    let held = std::mem::take(&mut io.held);
                    if !held.is_empty() {
                        self.deliver(now, conn, &held);
                    }
                }
                if self.io(conn).is_some() {
                    self.line(now, format_args!("eof {conn:?}"));
                    self.drop_io(conn, false);
                    if self.host.knobs.get().sabotage == Sabotage::IgnoreEof {
                        return;
                    }
                    self.worker.borrow_mut().handle_closed(now, conn);
                    self.drain(now);
                }
            }
            Input::Handoff { source, task } => {
                let pair = self.fabric.pair(source, self.id);
                let queued = &self.fabric.queued[pair];
                queued.set(queued.get() - 1);
                self.line(
                    now,
                    format_args!("handoff-in w{} {}B", source.0, task.len()),
                );
                self.worker.borrow_mut().handle_handoff(now, source, &task);
                self.drain(now);
            }
            Input::Flush { conn } => {
                if let Some(io) = self.io_mut(conn) {
                    io.flush_pending = false;
                    self.write(now, conn);
                }
            }
            // A delayed write still holds the connection: `write` waits.
            Input::Sent { conn } => self.write(now, conn),
            Input::Control(Control::AbortPeer(ip)) => {
                let doomed: Vec<ConnId> = self
                    .conns
                    .iter()
                    .flatten()
                    .filter(|io| io.peer.ip() == ip)
                    .map(|io| io.id)
                    .collect();
                for conn in doomed {
                    self.line(now, format_args!("abort {conn:?}"));
                    self.drop_io(conn, true);
                    self.worker.borrow_mut().handle_closed(now, conn);
                    self.drain(now);
                }
            }
        }
    }

    fn open(&mut self, now: Nanos, conn: Option<ConnId>, stream: TcpStream, how: &str) {
        let (local, peer) = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(l), Ok(p)) => (l, p),
            _ => return,
        };
        let Some(conn) = conn else {
            self.line(
                now,
                format_args!("{how}-refused {peer} (session table full)"),
            );
            return;
        };
        self.line(now, format_args!("{how} {conn:?} {local} {peer}"));
        let (read_half, write_half) = stream.into_split();
        let gate = Rc::new(ReadGate::default());
        let send_buf = Rc::new(RefCell::new(SendBuf::default()));
        let io = ConnIo {
            id: conn,
            local,
            peer,
            send_buf: send_buf.clone(),
            reader_task: tokio::task::spawn_local(read_loop(
                read_half,
                conn,
                self.inbox.clone(),
                [self.host.reads.clone(), gate.clone()],
            )),
            writer_task: tokio::task::spawn_local(write_loop(
                write_half,
                send_buf,
                conn,
                self.inbox.clone(),
            )),
            observer: ConnObserver::default(),
            flush_pending: false,
            gate,
            held: Vec::new(),
            paused: false,
            group_held: false,
        };
        let slot = conn.index();
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        assert!(
            self.conns[slot].is_none(),
            "{conn:?} opened over a live slot"
        );
        self.conns[slot] = Some(io);
        self.host.recorder.borrow_mut().opened(OpenConn {
            host: self.host.ix,
            incarnation: self.host.incarnation.get(),
            worker: self.id.0,
            conn,
            local,
            peer,
        });
    }

    fn io(&self, conn: ConnId) -> Option<&ConnIo> {
        self.conns
            .get(conn.index())?
            .as_ref()
            .filter(|io| io.id == conn)
    }

    fn io_mut(&mut self, conn: ConnId) -> Option<&mut ConnIo> {
        self.conns
            .get_mut(conn.index())?
            .as_mut()
            .filter(|io| io.id == conn)
    }

    /// Forgets `conn`'s I/O. `abort`: drop it without flushing (a dead
    /// stream); otherwise the writer finishes what it holds, then FIN.
    fn drop_io(&mut self, conn: ConnId, abort: bool) {
        if self.io(conn).is_none() {
            return;
        }
        let io = self.conns[conn.index()].take().expect("checked above");
        io.reader_task.abort();
        if abort {
            io.writer_task.abort();
        } else {
            io.send_buf.borrow_mut().shut();
        }
        self.host
            .recorder
            .borrow_mut()
            .closed(self.host.ix, self.id.0, conn);
    }

    fn read(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        let template = self.template(now, conn);
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        let mut seen = Vec::new();
        io.observer
            .observe(Dir::In, bytes, template, |e| seen.push(e));
        self.host.recorder.borrow_mut().wire_events(&seen);
        self.line(
            now,
            format_args!(
                "recv {conn:?} {}B h={:08x}",
                bytes.len(),
                crate::trace::fnv1a64(bytes) as u32
            ),
        );
        self.feed(now, conn, bytes);
    }

    /// Hands `bytes` read from `conn` to the worker, or holds them while the
    /// service has the connection's input paused (a read already under way
    /// when the pause came; the real backend leaves such bytes in the
    /// kernel).
    fn feed(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        let group = self.worker.borrow().input_group(conn).map(|g| g.index());
        let group_paused = group.is_some_and(|g| self.groups.get(g).is_some_and(|g| g.0));
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        if group_paused && !io.group_held {
            io.group_held = true;
            io.gate.set_stalled(true);
            let g = group.expect("checked above");
            self.groups[g].1.push(conn);
            self.line(now, format_args!("group-hold {conn:?} g{g}"));
        }
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        if io.gate.is_stalled() {
            io.held.extend_from_slice(bytes);
            return;
        }
        self.deliver(now, conn, bytes);
    }

    /// [`Effect::PauseGroup`]: the group's connections stop as they are
    /// found with input.
    fn pause_group(&mut self, now: Nanos, group: InputGroup) {
        let g = group.index();
        if self.groups.len() <= g {
            self.groups.resize_with(g + 1, Default::default);
        }
        self.groups[g].0 = true;
        self.line(now, format_args!("pause-group g{g}"));
    }

    /// [`Effect::ResumeGroup`]: what its connections held goes to the
    /// worker, in the order they were stopped.
    fn resume_group(&mut self, now: Nanos, group: InputGroup) {
        let g = group.index();
        let Some(entry) = self.groups.get_mut(g) else {
            return;
        };
        entry.0 = false;
        let waiting = std::mem::take(&mut entry.1);
        self.line(now, format_args!("resume-group g{g} {}", waiting.len()));
        for conn in waiting {
            let Some(io) = self.io_mut(conn) else {
                continue;
            };
            io.group_held = false;
            if !io.paused {
                self.release(now, conn);
            }
        }
    }

    /// Hands `bytes` to the worker, in pieces when buggified.
    fn deliver(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        let pieces = self.read_pieces(bytes.len());
        let mut start = 0;
        for (i, end) in pieces.iter().copied().enumerate() {
            if i > 0 {
                self.line(now, format_args!("buggify short-read {conn:?} at {start}"));
            }
            self.worker
                .borrow_mut()
                .handle_read(now, conn, &bytes[start..end]);
            self.drain(now);
            start = end;
        }
    }

    /// Where to cut a read of `len` bytes: the ends of the pieces.
    fn read_pieces(&mut self, len: usize) -> Vec<usize> {
        let p = self.host.knobs.get().buggify.short_read;
        if len < 2 || p <= 0.0 || !self.buggify_rng.random_bool(p) {
            return vec![len];
        }
        let pieces = self.buggify_rng.random_range(2..=4usize).min(len);
        let mut cuts: Vec<usize> = (1..pieces)
            .map(|_| self.buggify_rng.random_range(1..len))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts.push(len);
        cuts
    }

    /// [`Effect::PauseInput`]: the reader stops before its next read.
    fn pause(&mut self, now: Nanos, conn: ConnId) {
        if let Some(io) = self.io_mut(conn) {
            io.paused = true;
            io.gate.set_stalled(true);
            self.line(now, format_args!("pause {conn:?}"));
        }
    }

    /// [`Effect::ResumeInput`]: the reader goes on, and what it read before
    /// the pause took hold goes to the worker first.
    fn resume(&mut self, now: Nanos, conn: ConnId) {
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        io.paused = false;
        if !io.group_held {
            self.release(now, conn);
        }
    }

    /// Opens `conn`'s reader again and hands the worker what it held.
    fn release(&mut self, now: Nanos, conn: ConnId) {
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        io.gate.set_stalled(false);
        let held = std::mem::take(&mut io.held);
        self.line(now, format_args!("resume {conn:?} {}B", held.len()));
        if !held.is_empty() {
            self.deliver(now, conn, &held);
        }
    }

    fn maybe_spurious_wake(&mut self, now: Nanos) {
        let p = self.host.knobs.get().buggify.spurious_wake;
        if p > 0.0 && self.buggify_rng.random_bool(p) {
            self.line(now, format_args!("buggify spurious-wake"));
            self.worker.borrow_mut().handle_timeout(now);
            self.drain(now);
        }
    }

    fn template(&self, now: Nanos, conn: ConnId) -> WireEvent {
        let (local, peer) = self.io(conn).map_or(
            (
                SocketAddr::from(([0, 0, 0, 0], 0)),
                SocketAddr::from(([0, 0, 0, 0], 0)),
            ),
            |io| (io.local, io.peer),
        );
        WireEvent {
            at: now,
            host: self.host.ix,
            worker: self.id.0,
            conn,
            local,
            peer,
            dir: Dir::Out,
            opcode: 0,
            seq: 0,
            route: 0,
            t: [0; 4],
            pad: 0,
            code: 0,
        }
    }

    /// Writes what `conn` has pending into its send buffer, as much as fits,
    /// unless a delayed write holds it; the rest waits for
    /// [`Input::Sent`].
    fn write(&mut self, now: Nanos, conn: ConnId) {
        let Some(room) = self.io(conn).map(|io| io.send_buf.borrow().room()) else {
            return;
        };
        self.write_up_to(now, conn, room);
    }

    fn write_up_to(&mut self, now: Nanos, conn: ConnId, room: usize) {
        let bytes = {
            let worker = self.worker.borrow();
            let pending = worker.transmit_buf(conn);
            pending[..pending.len().min(room)].to_vec()
        };
        let Some(io) = self.io_mut(conn) else {
            return;
        };
        if bytes.is_empty() || io.flush_pending {
            return;
        }
        let n = bytes.len();
        let target = self.sabotage_target(conn, &bytes).unwrap_or(conn);
        let template = self.template(now, target);
        let Some(io) = self.io_mut(target) else {
            return;
        };
        let mut seen = Vec::new();
        io.observer
            .observe(Dir::Out, &bytes, template, |e| seen.push(e));
        let hash = crate::trace::fnv1a64(&bytes) as u32;
        io.send_buf.borrow_mut().push(bytes);
        self.host.recorder.borrow_mut().wire_events(&seen);
        self.line(now, format_args!("send {target:?} {n}B h={hash:08x}"));
        self.worker.borrow_mut().handle_written(now, conn, n);
    }

    /// [`Sabotage::CrossWrites`]: another accepted connection to write a
    /// pong to, now and then.
    fn sabotage_target(&mut self, conn: ConnId, bytes: &[u8]) -> Option<ConnId> {
        const OPCODE_PONG: [u8; 2] = fep_trading::msg::OP_PERF_PONG.to_be_bytes();
        if self.host.knobs.get().sabotage != Sabotage::CrossWrites
            || bytes.get(4..6) != Some(&OPCODE_PONG[..])
            || !self.buggify_rng.random_bool(0.05)
        {
            return None;
        }
        let port = self.host.spec.listen_port?;
        self.conns
            .iter()
            .flatten()
            .find(|io| io.id != conn && io.local.port() == port)
            .map(|io| io.id)
    }

    fn transmit(&mut self, now: Nanos, conn: ConnId) {
        let buggify = self.host.knobs.get().buggify;
        let delay = buggify.delayed_write > 0.0
            && buggify.delayed_write_ms_max > 0
            && self.io(conn).is_some_and(|io| !io.flush_pending)
            && self.buggify_rng.random_bool(buggify.delayed_write);
        if !delay {
            self.write(now, conn);
            return;
        }
        let ms = self
            .buggify_rng
            .random_range(1..=buggify.delayed_write_ms_max);
        self.line(now, format_args!("buggify delayed-write {conn:?} {ms}ms"));
        if let Some(io) = self.io_mut(conn) {
            io.flush_pending = true;
        }
        let inbox = self.inbox.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _ = inbox.send(Input::Flush { conn }).await;
        });
    }

    fn close(&mut self, now: Nanos, conn: ConnId) {
        if let Some(io) = self.io_mut(conn) {
            io.flush_pending = false;
        }
        // The last bytes go out whatever the room, as the real backend
        // lingers to flush them: the worker's own bound already holds them.
        self.write_up_to(now, conn, usize::MAX);
        self.line(now, format_args!("close {conn:?}"));
        self.drop_io(conn, false);
        self.worker.borrow_mut().handle_closed(now, conn);
    }

    fn connect(&mut self, now: Nanos, conn: ConnId, peer: PeerId) {
        let Some((name, port)) = self.host.spec.peers.get(usize::from(peer.0)).cloned() else {
            self.line(now, format_args!("connect p{} unknown peer", peer.0));
            self.worker.borrow_mut().handle_connect_failed(now, conn);
            return;
        };
        self.line(now, format_args!("connect p{} {name}:{port}", peer.0));
        let timeout = self.host.spec.connect_timeout;
        let inbox = self.inbox.clone();
        tokio::task::spawn_local(async move {
            let result = match tokio::time::timeout(timeout, TcpStream::connect((name, port))).await
            {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            };
            let _ = inbox.send(Input::Dialed { conn, peer, result }).await;
        });
    }

    /// Moves the bytes the worker holds for `target` into the courier's
    /// queue as one parcel; when the queue is full they stay with the
    /// worker and are offered again after the next input.
    fn handoff(&mut self, now: Nanos, target: WorkerId) {
        let knobs = self.host.knobs.get();
        let pair = self.fabric.pair(self.id, target);
        let queued = &self.fabric.queued[pair];
        let courier = self.fabric.couriers.get(pair).and_then(Option::as_ref);
        let task = self.worker.borrow().handoff_buf(target).to_vec();
        if task.is_empty() {
            return;
        }
        let Some(courier) = courier.filter(|_| queued.get() < knobs.handoff_queue_max) else {
            self.line(now, format_args!("handoff-wait w{}", target.0));
            self.lanes_waiting[target.index()] = true;
            return;
        };
        self.worker.borrow_mut().handle_handed_off(target);
        let ms = self
            .handoff_rng
            .random_range(0..=knobs.handoff_delay_ms_max);
        let due = now + Nanos::from_millis(ms);
        let mut parcel = Parcel {
            due,
            source: self.id,
            task,
        };
        if knobs.sabotage == Sabotage::DropHandoffs {
            return;
        }
        if knobs.sabotage == Sabotage::SwapHandoffs {
            match self.held[target.index()].take() {
                None => {
                    self.held[target.index()] = Some(parcel);
                    queued.set(queued.get() + 1);
                    return;
                }
                Some(held) => {
                    let _ = courier.try_send(parcel);
                    parcel = held;
                }
            }
        }
        let n = parcel.task.len();
        match courier.try_send(parcel) {
            Ok(()) => {
                queued.set(queued.get() + 1);
                self.line(now, format_args!("handoff-out w{} {n}B +{ms}ms", target.0));
            }
            // The queue holds the count checked above; a closed one belongs
            // to a stopping host.
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.line(now, format_args!("handoff-lost w{}", target.0));
            }
        }
    }

    /// Carries out every effect the worker has, until it has none.
    fn drain(&mut self, now: Nanos) {
        loop {
            let effect = self.worker.borrow_mut().poll_effect();
            let Some(effect) = effect else {
                break;
            };
            match effect {
                Effect::Transmit { conn } => self.transmit(now, conn),
                Effect::Close { conn } => self.close(now, conn),
                Effect::Connect { conn, peer } => self.connect(now, conn, peer),
                Effect::Handoff { target } => self.handoff(now, target),
                Effect::PauseInput { conn } => self.pause(now, conn),
                Effect::ResumeInput { conn } => self.resume(now, conn),
                Effect::PauseGroup { group } => self.pause_group(now, group),
                Effect::ResumeGroup { group } => self.resume_group(now, group),
                other => unreachable!("fep-sim knows no {other:?}"),
            }
        }
    }

    /// The worker is done: close what it left open and stop.
    fn finish(&mut self) {
        let now = sim_now();
        self.line(now, format_args!("done"));
        let open: Vec<ConnId> = self.conns.iter().flatten().map(|io| io.id).collect();
        for conn in open {
            self.close(now, conn);
        }
        self.drain(now);
        self.host.done.set(self.host.done.get() + 1);
    }
}

/// Reads `conn` into the worker's inbox; while the inbox is full, the
/// host's reads are stalled (`gates[0]`) or the service refuses the
/// connection's input (`gates[1]`) it reads no further, and the stream's
/// flow control holds the sender back.
async fn read_loop<T>(
    mut half: OwnedReadHalf,
    conn: ConnId,
    inbox: Inbox<T>,
    gates: [Rc<ReadGate>; 2],
) {
    let mut buf = vec![0u8; READ_BUF_LEN];
    loop {
        for gate in &gates {
            gate.pass().await;
        }
        match half.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = inbox.send(Input::Eof { conn }).await;
                return;
            }
            Ok(n) => {
                let bytes = buf[..n].to_vec();
                if inbox.send(Input::Read { conn, bytes }).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Drains `conn`'s send buffer into the stream, a write per chunk, and
/// tells the worker after each that there is room again; closes the stream
/// after the last chunk once shut.
async fn write_loop<T>(
    mut half: OwnedWriteHalf,
    buf: Rc<RefCell<SendBuf>>,
    conn: ConnId,
    inbox: Inbox<T>,
) {
    loop {
        let next = {
            let mut b = buf.borrow_mut();
            match b.chunks.pop_front() {
                Some(chunk) => Ok(chunk),
                None if b.shutdown => Err(true),
                None => Err(false),
            }
        };
        match next {
            Ok(chunk) => {
                if half.write_all(&chunk).await.is_err() {
                    return;
                }
                buf.borrow_mut().len -= chunk.len();
                if inbox.send(Input::Sent { conn }).await.is_err() {
                    return;
                }
            }
            Err(true) => {
                let _ = half.shutdown().await;
                return;
            }
            Err(false) => {
                let ready = buf.borrow().ready.clone();
                ready.notified().await;
            }
        }
    }
}
