//! The worker: the one state machine a driver runs per thread (or per
//! simulated task). It owns its sessions and a [`Service`] that gives the
//! connections their meaning.
//!
//! # Contract with the driver
//!
//! Feed one input with a `handle_*` method, passing `now`; then drain
//! [`Worker::poll_effect`] until it returns `None`. Every mutation must be
//! followed by a complete drain. For a [`Effect::Transmit`], write
//! [`Worker::transmit_buf`] to the socket and report what went out with
//! [`Worker::handle_written`]; for a [`Effect::Close`], flush what you can,
//! close the socket and call [`Worker::handle_closed`]. Sleep at most until
//! [`Worker::poll_timeout`], then call [`Worker::handle_timeout`]; a spurious
//! or early timeout is harmless.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};

use crate::error::{ErrorCode, Fault};
use crate::frame::{Decoder, Frame};
use crate::limits::{
    FRAME_LENGTH_MAX_CEILING, FRAME_LENGTH_MAX_DEFAULT, FRAME_LENGTH_MIN,
    OUTPUT_BACKLOG_MAX_DEFAULT, REASON_LEN_MAX, SESSIONS_PER_WORKER_MAX_DEFAULT, WORKERS_MAX,
};
use crate::session::{ConnId, OutBuf, Session, SessionId, Slab};
use crate::state::{ConnState, Phase, Side, StateSet};
use crate::time::Nanos;
use crate::wire::{ErrorMsg, RejectMsg};

/// A worker's index in its process, `0..workers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u16);

impl WorkerId {
    /// The index as `usize`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A remote endpoint the driver knows how to dial (the gateway's upstream is
/// peer 0; a load generator's target is peer 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u16);

/// How a connection came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Accepted on one of our listening ports.
    Accepted,
    /// Dialled by us, after an [`Effect::Connect`].
    Dialed {
        /// The peer that was dialled.
        peer: PeerId,
    },
}

/// What the worker asks its driver to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect<T> {
    /// `conn` has bytes in [`Worker::transmit_buf`]: write them.
    Transmit {
        /// The connection.
        conn: ConnId,
    },
    /// Flush what `conn` has pending, close it, then call
    /// [`Worker::handle_closed`].
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Open a connection to `peer`; report [`Worker::handle_connected`] or
    /// [`Worker::handle_connect_failed`].
    Connect {
        /// Whom to dial.
        peer: PeerId,
    },
    /// Deliver `task` to worker `target` through [`Worker::handle_handoff`],
    /// in order per (source, target) pair; if it cannot be queued, give it
    /// back with [`Worker::handle_handoff_refused`] — and, to keep the order,
    /// give back every later handoff to the same target in the same drain.
    Handoff {
        /// The receiving worker.
        target: WorkerId,
        /// What it receives.
        task: T,
    },
    /// The earliest deadline changed: call [`Worker::handle_timeout`] at `at`.
    Wake {
        /// When.
        at: Nanos,
    },
}

/// Bounds of one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Largest legal frame length field (PROTOCOL.md `max_frame`).
    pub max_frame: u32,
    /// Unsent bytes one session may hold before it is failed `OVERLOADED`.
    pub output_backlog_max: usize,
    /// Sessions the worker owns at most.
    pub sessions_max: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_frame: FRAME_LENGTH_MAX_DEFAULT,
            output_backlog_max: OUTPUT_BACKLOG_MAX_DEFAULT,
            sessions_max: SESSIONS_PER_WORKER_MAX_DEFAULT,
        }
    }
}

/// A handler: the service, its context, the connection and one payload.
pub type HandlerFn<S> = fn(&mut S, &mut Context<'_, S>, ConnId, &[u8]) -> Result<(), Fault>;

/// One row of a service's dispatch table: an opcode, the states it is
/// allowed in, and its handler. A frame in any other state is answered with
/// `Error{UNEXPECTED}`; an opcode missing from the table with
/// `Error{UNKNOWN_OPCODE}`.
pub struct Handler<S: Service> {
    /// The opcode handled.
    pub opcode: u16,
    /// Where it is allowed.
    pub allowed: StateSet,
    /// The handler: the payload of one frame on `conn`.
    pub handle: HandlerFn<S>,
}

impl<S: Service> fmt::Debug for Handler<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("opcode", &self.opcode)
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// What a role does with the connections of a worker. Every method gets a
/// [`Context`] through which it sends, closes, dials and hands off.
pub trait Service: Sized + 'static {
    /// Per-connection data.
    type Data: Default;
    /// What travels between workers of one process.
    type Task;

    /// The dispatch table.
    const HANDLERS: &'static [Handler<Self>];

    /// The worker starts: open upstreams here.
    fn on_start(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// A connection opened (accepted or dialled); its session exists.
    fn on_open(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, origin: Origin) {
        let _ = (cx, conn, origin);
    }

    /// A connection closed; its session is gone and handed over.
    fn on_close(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, session: Session<Self::Data>);

    /// A dial to `peer` failed.
    fn on_connect_failed(&mut self, cx: &mut Context<'_, Self>, peer: PeerId) {
        let _ = (cx, peer);
    }

    /// Another worker handed this worker a task.
    fn on_handoff(&mut self, cx: &mut Context<'_, Self>, task: Self::Task) {
        let _ = (cx, task);
    }

    /// A task this worker handed to `target` could not be queued.
    fn on_handoff_refused(
        &mut self,
        cx: &mut Context<'_, Self>,
        target: WorkerId,
        task: Self::Task,
    ) {
        let _ = (cx, target, task);
    }

    /// Time passed [`Service::poll_timeout`] (or a spurious wake-up).
    fn on_timeout(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// The process is draining.
    fn on_shutdown(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// The earliest deadline of the service's timers.
    fn poll_timeout(&self) -> Option<Nanos> {
        None
    }

    /// Whether `conn`'s input should be read now. `false` asks the driver
    /// to leave the bytes in the kernel, so TCP flow control holds the
    /// peer back (a gateway whose shared upstream is backlogged stops
    /// reading its clients); the driver asks again after its next poll.
    /// Base it on output backlogs, whose draining wakes the driver. Only a
    /// hint: a driver may read anyway (the in-memory harness does), so the
    /// output bounds must still hold. Default: always read.
    fn accepts_input(&self, cx: &Context<'_, Self>, conn: ConnId) -> bool {
        let _ = (cx, conn);
        true
    }

    /// Whether the worker can serve: its upstreams are hand-shaked. A driver
    /// announces readiness (`ready <addr>`) once every worker says so.
    fn is_ready(&self) -> bool {
        true
    }

    /// Whether the worker has nothing left to do: drained after
    /// [`Service::on_shutdown`], or a load generator's run finished. A driver
    /// stops the worker then.
    fn is_done(&self) -> bool {
        false
    }
}

/// The service's view of its worker during one input.
#[derive(Debug)]
pub struct Context<'a, S: Service> {
    now: Nanos,
    worker: WorkerId,
    config: &'a WorkerConfig,
    sessions: &'a mut Slab<Session<S::Data>>,
    effects: &'a mut VecDeque<Effect<S::Task>>,
}

impl<S: Service> Context<'_, S> {
    /// The time of the input being handled.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// This worker.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The worker's bounds.
    pub fn config(&self) -> &WorkerConfig {
        self.config
    }

    /// The session of `conn`, if it is still open.
    pub fn session(&self, conn: ConnId) -> Option<&Session<S::Data>> {
        self.sessions.get(conn)
    }

    /// The state of `conn`, if it is still open.
    pub fn state(&self, conn: ConnId) -> Option<ConnState> {
        self.sessions.get(conn).map(|s| s.state)
    }

    /// The service data of `conn`, if it is still open.
    pub fn data_mut(&mut self, conn: ConnId) -> Option<&mut S::Data> {
        self.sessions.get_mut(conn).map(|s| &mut s.data)
    }

    /// Open connections of this worker.
    pub fn conn_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.sessions.ids()
    }

    /// Marks `conn`'s hand-shake done.
    pub fn set_handshaked(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(conn) {
            assert_eq!(
                s.state.phase,
                Phase::Connected,
                "{conn:?} hand-shaked twice"
            );
            s.state.phase = Phase::Handshaked;
        }
    }

    /// Appends bytes to `conn`'s output with `write` (a whole frame or
    /// frames). Returns whether `conn` is live and took them. Past the
    /// output bound the session is failed with `Error{OVERLOADED}`.
    pub fn send(
        &mut self,
        conn: ConnId,
        additional: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let Some(session) = self.sessions.get_mut(conn) else {
            return false;
        };
        if session.state.phase == Phase::Closing {
            return false;
        }
        write(session.out.tail(additional));
        queue_transmit(self.effects, session, conn);
        let backlog = session.out.len();
        if backlog > self.config.output_backlog_max {
            let fault = Fault::Overloaded {
                backlog,
                max: self.config.output_backlog_max,
            };
            self.fail(conn, fault);
            return false;
        }
        true
    }

    /// Answers request `seq` on `conn` with `Reject{code}`.
    pub fn reject(&mut self, conn: ConnId, code: ErrorCode, seq: u64, reason: &str) -> bool {
        let msg = RejectMsg { code, seq, reason };
        self.send(conn, 16 + reason.len(), |out| {
            msg.encode(out);
        })
    }

    /// Fails `conn` for the peer's `fault`: `Error{code, reason}`, then close.
    pub fn fail(&mut self, conn: ConnId, fault: Fault) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if session.state.phase == Phase::Closing {
            return;
        }
        let mut reason = ReasonBuf::default();
        let _ = write!(reason, "{fault}");
        let msg = ErrorMsg {
            code: fault.code(),
            reason: reason.as_str(),
        };
        msg.encode(session.out.tail(8 + reason.len));
        queue_transmit(self.effects, session, conn);
        self.close(conn);
    }

    /// Closes `conn` after its pending output (no `Error` frame).
    pub fn close(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if session.state.phase == Phase::Closing {
            return;
        }
        session.state.phase = Phase::Closing;
        self.effects.push_back(Effect::Close { conn });
    }

    /// Asks the driver to dial `peer`.
    pub fn connect(&mut self, peer: PeerId) {
        self.effects.push_back(Effect::Connect { peer });
    }

    /// Hands `task` to worker `target`.
    pub fn handoff(&mut self, target: WorkerId, task: S::Task) {
        assert_ne!(target, self.worker, "a worker hands nothing to itself");
        self.effects.push_back(Effect::Handoff { target, task });
    }
}

fn queue_transmit<D, T>(effects: &mut VecDeque<Effect<T>>, session: &mut Session<D>, conn: ConnId) {
    if !session.transmit_queued {
        session.transmit_queued = true;
        effects.push_back(Effect::Transmit { conn });
    }
}

/// A reason string formatted without allocating, clipped to 256 bytes.
#[derive(Debug)]
struct ReasonBuf {
    buf: [u8; REASON_LEN_MAX],
    len: usize,
}

impl Default for ReasonBuf {
    fn default() -> Self {
        ReasonBuf {
            buf: [0; REASON_LEN_MAX],
            len: 0,
        }
    }
}

impl ReasonBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("only whole chars are written")
    }
}

impl fmt::Write for ReasonBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = REASON_LEN_MAX - self.len;
        let s = crate::wire::clip_reason(s);
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// A worker: sessions, the effects they produce, and a service.
#[derive(Debug)]
pub struct Worker<S: Service> {
    id: WorkerId,
    config: WorkerConfig,
    sessions: Slab<Session<S::Data>>,
    effects: VecDeque<Effect<S::Task>>,
    next_session: u64,
    wake_reported: Option<Nanos>,
    service: S,
}

impl<S: Service> Worker<S> {
    /// A worker with no sessions. Call [`Worker::start`] before other input.
    pub fn new(id: WorkerId, config: WorkerConfig, service: S) -> Worker<S> {
        assert!(
            id.index() < WORKERS_MAX,
            "worker {id:?} beyond {WORKERS_MAX}"
        );
        assert!(
            config.max_frame >= FRAME_LENGTH_MIN && config.max_frame <= FRAME_LENGTH_MAX_CEILING
        );
        assert!(config.output_backlog_max >= config.max_frame as usize);
        Worker {
            id,
            config,
            sessions: Slab::new(config.sessions_max),
            effects: VecDeque::with_capacity(1024),
            next_session: 0,
            wake_reported: None,
            service,
        }
    }

    /// This worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// The worker's bounds.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service, mutably (for configuration and reports, not protocol
    /// input: that goes through `handle_*`).
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// The service, once the worker is stopped (reports, counters).
    pub fn into_service(self) -> S {
        self.service
    }

    /// Open sessions.
    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    /// The session of `conn`, if open.
    pub fn session(&self, conn: ConnId) -> Option<&Session<S::Data>> {
        self.sessions.get(conn)
    }

    /// Open connections.
    pub fn conn_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.sessions.ids()
    }

    /// Bytes waiting to be written on `conn` (empty for a closed handle).
    pub fn transmit_buf(&self, conn: ConnId) -> &[u8] {
        self.sessions.get(conn).map_or(&[], |s| s.out.pending())
    }

    /// The next effect, or `None` when all are drained.
    pub fn poll_effect(&mut self) -> Option<Effect<S::Task>> {
        let effect = self.effects.pop_front()?;
        if let Effect::Transmit { conn } = effect {
            if let Some(s) = self.sessions.get_mut(conn) {
                s.transmit_queued = false;
            }
        }
        Some(effect)
    }

    /// See [`Service::accepts_input`].
    pub fn accepts_input(&mut self, now: Nanos, conn: ConnId) -> bool {
        let cx = Context {
            now,
            worker: self.id,
            config: &self.config,
            sessions: &mut self.sessions,
            effects: &mut self.effects,
        };
        self.service.accepts_input(&cx, conn)
    }

    /// See [`Service::is_ready`].
    pub fn is_ready(&self) -> bool {
        self.service.is_ready()
    }

    /// See [`Service::is_done`].
    pub fn is_done(&self) -> bool {
        self.service.is_done()
    }

    /// The earliest deadline; call [`Worker::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        self.service.poll_timeout()
    }

    /// Runs `f` on the service with a context, as an input of its own. For
    /// drivers and harnesses that steer a service (start a load, inspect).
    pub fn act<R>(&mut self, now: Nanos, f: impl FnOnce(&mut S, &mut Context<'_, S>) -> R) -> R {
        let mut cx = Context {
            now,
            worker: self.id,
            config: &self.config,
            sessions: &mut self.sessions,
            effects: &mut self.effects,
        };
        let r = f(&mut self.service, &mut cx);
        self.report_wake();
        r
    }

    /// The worker starts.
    pub fn start(&mut self, now: Nanos) {
        self.act(now, |svc, cx| svc.on_start(cx));
    }

    /// A connection was accepted. `None`: the session table is full; the
    /// driver closes the socket.
    pub fn handle_accepted(&mut self, now: Nanos) -> Option<ConnId> {
        self.open(now, Side::Acceptor, Origin::Accepted)
    }

    /// A dial to `peer` succeeded. `None`: the session table is full.
    pub fn handle_connected(&mut self, now: Nanos, peer: PeerId) -> Option<ConnId> {
        self.open(now, Side::Initiator, Origin::Dialed { peer })
    }

    /// A dial to `peer` failed.
    pub fn handle_connect_failed(&mut self, now: Nanos, peer: PeerId) {
        self.act(now, |svc, cx| svc.on_connect_failed(cx, peer));
    }

    fn open(&mut self, now: Nanos, side: Side, origin: Origin) -> Option<ConnId> {
        let session = Session {
            id: SessionId(self.next_session),
            state: ConnState {
                side,
                phase: Phase::Connected,
            },
            decoder: Decoder::new(self.config.max_frame),
            out: OutBuf::default(),
            transmit_queued: false,
            data: S::Data::default(),
        };
        let conn = self.sessions.insert(session)?;
        self.next_session += 1;
        self.act(now, |svc, cx| svc.on_open(cx, conn, origin));
        Some(conn)
    }

    /// Bytes arrived on `conn`. Input on a closing or closed connection is
    /// dropped.
    pub fn handle_read(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if session.state.phase == Phase::Closing {
            return;
        }
        let mut decoder = std::mem::take(&mut session.decoder);
        let mut cx = Context {
            now,
            worker: self.id,
            config: &self.config,
            sessions: &mut self.sessions,
            effects: &mut self.effects,
        };
        let mut frames = decoder.frames(bytes);
        while let Some(item) = frames.next() {
            let verdict = match item {
                Ok(frame) => dispatch(&mut self.service, &mut cx, conn, frame),
                Err(e) => Err(Fault::from(e)),
            };
            if let Err(fault) = verdict {
                cx.fail(conn, fault);
            }
            if cx.state(conn).is_none_or(|s| s.phase == Phase::Closing) {
                break;
            }
        }
        if let Some(session) = self.sessions.get_mut(conn) {
            session.decoder = decoder;
        }
        self.report_wake();
    }

    /// `n` bytes of [`Worker::transmit_buf`] were written.
    pub fn handle_written(&mut self, conn: ConnId, n: usize) {
        if let Some(s) = self.sessions.get_mut(conn) {
            s.out.consume(n);
        }
    }

    /// `conn` is closed (by us after [`Effect::Close`], or by the peer).
    pub fn handle_closed(&mut self, now: Nanos, conn: ConnId) {
        let Some(session) = self.sessions.remove(conn) else {
            return;
        };
        self.act(now, |svc, cx| svc.on_close(cx, conn, session));
    }

    /// A task from another worker.
    pub fn handle_handoff(&mut self, now: Nanos, task: S::Task) {
        self.act(now, |svc, cx| svc.on_handoff(cx, task));
    }

    /// A task for `target` could not be queued; it comes back.
    pub fn handle_handoff_refused(&mut self, now: Nanos, target: WorkerId, task: S::Task) {
        self.act(now, |svc, cx| svc.on_handoff_refused(cx, target, task));
    }

    /// A deadline passed (or the driver woke early; that is harmless).
    pub fn handle_timeout(&mut self, now: Nanos) {
        self.act(now, |svc, cx| svc.on_timeout(cx));
    }

    /// The process drains: refuse new work, finish in-flight work.
    pub fn handle_shutdown(&mut self, now: Nanos) {
        self.act(now, |svc, cx| svc.on_shutdown(cx));
    }

    fn report_wake(&mut self) {
        let next = self.service.poll_timeout();
        if next != self.wake_reported {
            self.wake_reported = next;
            if let Some(at) = next {
                self.effects.push_back(Effect::Wake { at });
            }
        }
    }
}

fn dispatch<S: Service>(
    service: &mut S,
    cx: &mut Context<'_, S>,
    conn: ConnId,
    frame: Frame<'_>,
) -> Result<(), Fault> {
    let opcode = frame.opcode;
    let Some(handler) = S::HANDLERS.iter().find(|h| h.opcode == opcode) else {
        return Err(Fault::UnknownOpcode { opcode });
    };
    let state = cx.state(conn).expect("dispatch runs on a live session");
    if !handler.allowed.contains(state) {
        return Err(Fault::Unexpected { opcode, state });
    }
    (handler.handle)(service, cx, conn, frame.payload)
}
