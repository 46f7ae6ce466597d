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

use crate::error::Fault;
use crate::frame::Frame;
use crate::limits::{
    EFFECTS_PER_SESSION_MAX, FRAME_HEADER_LEN, FRAME_LENGTH_MAX_CEILING, FRAME_LENGTH_MAX_DEFAULT,
    FRAME_LENGTH_MIN, HANDOFF_BACKLOG_MAX_DEFAULT, HEARTBEAT_MISSES_MAX,
    HELLO_DEADLINES_PER_SESSION_MAX, HELLO_TIMEOUT_NS_DEFAULT, INPUT_GROUPS_MAX, OPCODE_LEN,
    OUTPUT_BACKLOG_MAX_DEFAULT, SESSIONS_PER_WORKER_MAX_DEFAULT, WORKERS_MAX,
};
use crate::session::{Chunks, ConnId, OutBuf, Session, SessionId, Slab};
use crate::state::{Phase, Side};
use crate::time::Nanos;
use crate::wire::HEARTBEAT_FRAME;

mod context;
mod outbox;
mod service;

pub use context::Context;
pub use service::{Handler, HandlerFn, Service};

use context::new_session;
use outbox::{GroupGate, Lent, Outbox, Queued};
use service::{dispatch, DispatchTable};

/// A worker's index in its process, `0..workers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u16);

impl WorkerId {
    /// The index as `usize`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of connections whose input pauses and resumes together, with one
/// effect each way whatever their number (a gateway's clients routed to one
/// upstream). `0..INPUT_GROUPS_MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputGroup(pub u16);

impl InputGroup {
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
///
/// New kinds may be added (a journal append, for one): a driver matches
/// the ones it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// `conn` has bytes in [`Worker::transmit_buf`]: write them and report
    /// [`Worker::handle_written`].
    Transmit {
        /// The connection.
        conn: ConnId,
    },
    /// Flush what `conn` has pending, close it, then call
    /// [`Worker::handle_closed`]. For a connection still being dialled:
    /// abandon the dial, then call [`Worker::handle_closed`].
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Dial `peer` for the session `conn` (already in the table, in
    /// [`Phase::Connecting`]); report [`Worker::handle_connected`] or
    /// [`Worker::handle_connect_failed`] with the same `conn`.
    Connect {
        /// The session the dial is for.
        conn: ConnId,
        /// Whom to dial.
        peer: PeerId,
    },
    /// Worker `target` has bytes in [`Worker::handoff_buf`] (whole frames):
    /// deliver all of them, in order per (source, target) pair, through the
    /// target's [`Worker::handle_handoff`], then report
    /// [`Worker::handle_handed_off`]. A driver that cannot take them now
    /// leaves them where they are and tries again later; the service sees
    /// the backlog ([`Context::handoff_backlog`]).
    Handoff {
        /// The receiving worker.
        target: WorkerId,
    },
    /// Stop reading `conn`: leave its bytes in the kernel, so TCP flow
    /// control holds the peer back. Edge-triggered: it holds until a
    /// [`Effect::ResumeInput`]. A hint: input that arrives anyway is
    /// handled, and every bound holds without it.
    PauseInput {
        /// The connection.
        conn: ConnId,
    },
    /// Read `conn` again, starting with what waited in the kernel (no new
    /// readiness event will say it is there).
    ResumeInput {
        /// The connection.
        conn: ConnId,
    },
    /// Stop reading every connection of `group` (see
    /// [`Worker::input_group`]), as [`Effect::PauseInput`] does for one.
    PauseGroup {
        /// The group.
        group: InputGroup,
    },
    /// Read the connections of `group` again, starting with those whose
    /// bytes waited in the kernel.
    ResumeGroup {
        /// The group.
        group: InputGroup,
    },
    /// Journal records wait in [`Worker::journal_buf`] (each a big-endian
    /// `u32` length, then its payload): append them to the log in order,
    /// report [`Worker::handle_journaled`] with the bytes taken, and later
    /// [`Worker::handle_durable`] (or [`Worker::handle_journal_failed`]).
    /// The service numbers records itself, from 1 after what recovery
    /// found, in the order it journals them; the log must agree.
    Journal,
    /// A snapshot of the service's state waits in
    /// [`Worker::take_snapshot`]: once its record is durable, store it and
    /// delete the journal it makes redundant. Off the worker's thread: the
    /// worker does no I/O.
    Snapshot,
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
    /// Bytes the worker holds for one other worker before the driver moves
    /// them; past it [`Context::handoff`] refuses.
    pub handoff_backlog_max: usize,
    /// How long an accepted connection may take to send a valid
    /// `RoleHelloReq` before it is closed with `Error{TIMEOUT}`.
    pub hello_timeout: Nanos,
    /// Liveness of the connections this worker dials (`None`: not watched).
    /// Once hand-shaked, a dialled connection that had nothing queued for
    /// this long gets a `Heartbeat`; one that received nothing at all for
    /// [`HEARTBEAT_MISSES_MAX`] intervals (hand-shake included) is closed
    /// with `Error{TIMEOUT}`.
    pub heartbeat_interval: Option<Nanos>,
}

impl WorkerConfig {
    /// A session's output above this is high: see [`Session::output_high`].
    pub const fn output_high_water(&self) -> usize {
        self.output_backlog_max / 2
    }

    /// A high output that falls to this is drained again: the high-water
    /// mark itself. Each crossing is one edge at most per write (a write
    /// drains far more than a frame adds), and a lower mark would leave the
    /// peer idle while the backlog drains further (measured: s2 halved).
    pub const fn output_low_water(&self) -> usize {
        self.output_high_water()
    }

    /// The bound of the effect queue: every session's effects, twice (a
    /// closed session's unpolled effects may meet its slot's successor's in
    /// one drain), one handoff per worker, one edge per input group, one
    /// journal append and one snapshot.
    pub const fn effects_max(&self) -> usize {
        2 * EFFECTS_PER_SESSION_MAX * self.sessions_max + WORKERS_MAX + INPUT_GROUPS_MAX + 2
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_frame: FRAME_LENGTH_MAX_DEFAULT,
            output_backlog_max: OUTPUT_BACKLOG_MAX_DEFAULT,
            sessions_max: SESSIONS_PER_WORKER_MAX_DEFAULT,
            handoff_backlog_max: HANDOFF_BACKLOG_MAX_DEFAULT,
            hello_timeout: Nanos(HELLO_TIMEOUT_NS_DEFAULT),
            heartbeat_interval: None,
        }
    }
}

/// A worker: sessions, the effects they produce, and a service.
#[derive(Debug)]
pub struct Worker<S: Service> {
    id: WorkerId,
    config: WorkerConfig,
    sessions: Slab<Session<S::Data>>,
    outbox: Outbox,
    dispatch: Box<DispatchTable>,
    next_session: u64,
    /// `(deadline, conn)` of accepted connections in accept order (so in
    /// deadline order): the front is the next to expire. Entries of
    /// connections that hand-shaked or closed are skipped when reached.
    hello_deadlines: VecDeque<(Nanos, ConnId)>,
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
        assert!(config.handoff_backlog_max >= config.max_frame as usize);
        Worker {
            id,
            config,
            sessions: Slab::new(config.sessions_max),
            outbox: Outbox {
                effects: VecDeque::with_capacity(1024),
                effects_max: config.effects_max(),
                lanes: Vec::new(),
                lane_queued: Vec::new(),
                groups: Vec::new(),
                watched: Vec::new(),
                dialing: 0,
                journal: OutBuf::default(),
                journal_queued: false,
                snapshot: None,
                lent: None,
                spliced: Vec::new(),
                spliced_end: 0,
                patches: Vec::new(),
            },
            dispatch: Box::new(DispatchTable::new::<S>()),
            next_session: 0,
            hello_deadlines: VecDeque::new(),
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

    /// The service, once the worker is stopped (reports, counters).
    pub fn into_service(self) -> S {
        self.service
    }

    /// Open sessions (dials in progress included).
    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions whose dial the driver has not reported yet (they have no
    /// connection yet).
    pub fn dialing_len(&self) -> usize {
        self.outbox.dialing
    }

    /// The session of `conn`, if open.
    pub fn session(&self, conn: ConnId) -> Option<&Session<S::Data>> {
        self.sessions.get(conn)
    }

    /// The input group of `conn`, if it is open and in one.
    pub fn input_group(&self, conn: ConnId) -> Option<InputGroup> {
        // Through the session's own accessor: one read path for the
        // drivers and the service alike.
        self.sessions.get(conn)?.input_group()
    }

    /// Bytes waiting to be written on `conn` (empty for a closed handle).
    ///
    /// # Panics
    ///
    /// Between [`Worker::handle_read_lent`] and [`Worker::settle_input`],
    /// if `conn`'s output refers to the lent input: write it with
    /// [`Worker::transmit_chunks`].
    pub fn transmit_buf(&self, conn: ConnId) -> &[u8] {
        self.sessions.get(conn).map_or(&[], |s| s.out.pending())
    }

    /// Whether some of `conn`'s waiting bytes are still in the lent input:
    /// then the driver writes with [`Worker::transmit_chunks`], else
    /// [`Worker::transmit_buf`] is all of them.
    pub fn transmit_is_spliced(&self, conn: ConnId) -> bool {
        self.sessions.get(conn).is_some_and(|s| s.out.has_splices())
    }

    /// The bytes waiting to be written on `conn`, in order, as at most `max`
    /// slices of the worker's buffers and of `input`, for a vectored write.
    /// `input` is the input lent by [`Worker::handle_read_lent`] and not
    /// settled yet; with none lent, any slice (e.g. empty) will do.
    ///
    /// # Panics
    ///
    /// If `conn`'s output refers to a lent input and `input` is not it.
    pub fn transmit_chunks<'a>(
        &'a self,
        conn: ConnId,
        input: &'a [u8],
        max: usize,
    ) -> Option<Chunks<'a>> {
        let session = self.sessions.get(conn)?;
        if session.out.has_splices() {
            assert_eq!(
                self.outbox.lent,
                Some(Lent::of(input)),
                "output refers to the lent input, and another was given"
            );
        }
        Some(session.out.chunks(input, max))
    }

    /// Whole frames waiting for worker `target`.
    pub fn handoff_buf(&self, target: WorkerId) -> &[u8] {
        self.outbox
            .lanes
            .get(target.index())
            .map_or(&[], OutBuf::pending)
    }

    /// Journal records waiting for the driver's log (see
    /// [`Effect::Journal`]).
    pub fn journal_buf(&self) -> &[u8] {
        self.outbox.journal.pending()
    }

    /// The first `n` bytes of [`Worker::journal_buf`] (whole records) are
    /// in the log's hands.
    pub fn handle_journaled(&mut self, n: usize) {
        self.outbox.journal.consume(n);
    }

    /// The snapshot offered with [`Context::journal_snapshot`], if any:
    /// `(seq, state)`.
    pub fn take_snapshot(&mut self) -> Option<(u64, Vec<u8>)> {
        self.outbox.snapshot.take()
    }

    /// Every journal record up to `seq` is on stable storage.
    pub fn handle_durable(&mut self, now: Nanos, seq: u64) {
        self.act(now, |svc, cx| svc.on_durable(cx, seq));
    }

    /// The log failed (a write or sync error): nothing journaled past the
    /// last [`Worker::handle_durable`] will ever be durable.
    pub fn handle_journal_failed(&mut self, now: Nanos) {
        self.act(now, |svc, cx| svc.on_journal_failed(cx));
    }

    /// The next effect, or `None` when all are drained.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        while let Some(queued) = self.outbox.effects.pop_front() {
            if let Some(effect) = self.complete(queued) {
                return Some(effect);
            }
        }
        // Empty: the ring starts over at the front of its reservation, so a
        // queue drained every turn keeps to the same few cache lines
        // instead of walking all of its memory.
        self.outbox.effects.clear();
        None
    }

    /// The effect a queued entry stands for now; `None` when it has become
    /// moot (its session closed, or its input edge was undone).
    fn complete(&mut self, queued: Queued) -> Option<Effect> {
        match queued {
            Queued::Transmit(conn) => {
                let s = self.sessions.get_mut(conn)?;
                s.transmit_queued = false;
                Some(Effect::Transmit { conn })
            }
            Queued::Close(conn) => Some(Effect::Close { conn }),
            Queued::Connect(conn) => match self.sessions.get(conn)?.origin {
                Origin::Dialed { peer } => Some(Effect::Connect { conn, peer }),
                Origin::Accepted => unreachable!("only dials are connected"),
            },
            Queued::Input(conn) => {
                let s = self.sessions.get_mut(conn)?;
                s.input_queued = false;
                if s.input_paused == s.input_told_paused {
                    return None;
                }
                s.input_told_paused = s.input_paused;
                Some(if s.input_paused {
                    Effect::PauseInput { conn }
                } else {
                    Effect::ResumeInput { conn }
                })
            }
            Queued::Group(group) => {
                let gate = &mut self.outbox.groups[group.index()];
                gate.queued = false;
                if gate.paused == gate.told_paused {
                    return None;
                }
                gate.told_paused = gate.paused;
                Some(if gate.paused {
                    Effect::PauseGroup { group }
                } else {
                    Effect::ResumeGroup { group }
                })
            }
            Queued::Handoff(target) => {
                self.outbox.lane_queued[target.index()] = false;
                Some(Effect::Handoff { target })
            }
            Queued::Journal => {
                self.outbox.journal_queued = false;
                Some(Effect::Journal)
            }
            Queued::Snapshot => self.outbox.snapshot.is_some().then_some(Effect::Snapshot),
        }
    }

    /// See [`Service::is_ready`].
    pub fn is_ready(&self) -> bool {
        self.service.is_ready()
    }

    /// See [`Service::is_done`].
    pub fn is_done(&self) -> bool {
        self.service.is_done()
    }

    /// The earliest deadline; call [`Worker::handle_timeout`] then. Ask
    /// once per loop turn, after the turn's inputs. It covers the
    /// service's timers, the oldest pending hand-shake deadline and the
    /// heartbeat watch of dialled connections.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        let hello = self.hello_deadlines.front().map(|&(at, _)| at);
        let watch = self.config.heartbeat_interval.and_then(|interval| {
            self.outbox
                .watched
                .iter()
                .filter_map(|&conn| self.sessions.get(conn))
                // A closing session is the driver's until it is closed:
                // its deadline would only wake the loop for nothing.
                .filter(|s| s.state.phase != Phase::Closing)
                .map(|s| watch_deadline(s, interval))
                .min()
        });
        [self.service.poll_timeout(), hello, watch]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs `f` on the service with a context, as an input of its own. For
    /// drivers and harnesses that steer a service (start a load, inspect).
    pub fn act<R>(&mut self, now: Nanos, f: impl FnOnce(&mut S, &mut Context<'_, S>) -> R) -> R {
        let mut cx = Context {
            now,
            worker: self.id,
            config: &self.config,
            sessions: &mut self.sessions,
            outbox: &mut self.outbox,
            input: None,
        };
        f(&mut self.service, &mut cx)
    }

    /// The worker starts.
    pub fn start(&mut self, now: Nanos) {
        self.act(now, |svc, cx| svc.on_start(cx));
    }

    /// A connection was accepted. `None`: the session table is full; the
    /// driver closes the socket.
    pub fn handle_accepted(&mut self, now: Nanos) -> Option<ConnId> {
        let session = new_session(&self.config, now, Side::Acceptor, Origin::Accepted);
        let conn = self.sessions.insert(session)?;
        self.remember_hello_deadline(now + self.config.hello_timeout, conn);
        self.opened(now, conn);
        Some(conn)
    }

    /// The dial of `conn` (from [`Effect::Connect`]) succeeded. A handle
    /// that is not dialling (closed meanwhile) is ignored: the driver closes
    /// the socket when [`Worker::session`] says `None`.
    pub fn handle_connected(&mut self, now: Nanos, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        if s.state.phase != Phase::Connecting {
            return;
        }
        s.state.phase = Phase::Connected;
        self.outbox.dialing -= 1;
        // Silence is counted from the moment the dial completed.
        s.read_at = now;
        s.sent_at = now;
        if self.config.heartbeat_interval.is_some() {
            self.outbox.watched.push(conn);
        }
        self.opened(now, conn);
    }

    /// The dial of `conn` failed.
    pub fn handle_connect_failed(&mut self, now: Nanos, conn: ConnId) {
        if self
            .sessions
            .get(conn)
            .is_none_or(|s| s.state.phase != Phase::Connecting)
        {
            return;
        }
        let session = self.sessions.remove(conn).expect("checked above");
        self.outbox.dialing -= 1;
        self.act(now, |svc, cx| svc.on_connect_failed(cx, conn, session));
    }

    fn opened(&mut self, now: Nanos, conn: ConnId) {
        let s = self.sessions.get_mut(conn).expect("just opened");
        s.id = SessionId(self.next_session);
        self.next_session += 1;
        let origin = s.origin;
        self.act(now, |svc, cx| svc.on_open(cx, conn, origin));
    }

    /// Bytes arrived on `conn`. Input on a closing or closed connection is
    /// dropped. The output copies what it needs of `bytes`.
    pub fn handle_read(&mut self, now: Nanos, conn: ConnId, bytes: &[u8]) {
        self.read_frames(now, conn, bytes, false);
    }

    /// Bytes arrived on `conn`, lent: frames forwarded from `bytes` are
    /// stamped in place and the output refers to them instead of copying
    /// them ([`Context::forward`]). The driver writes with
    /// [`Worker::transmit_chunks`] and must call [`Worker::settle_input`]
    /// with the same `bytes` before it changes or frees them, or hands the
    /// worker any other input.
    ///
    /// # Panics
    ///
    /// If an input lent before is not settled.
    pub fn handle_read_lent(&mut self, now: Nanos, conn: ConnId, bytes: &mut [u8]) {
        assert!(
            self.outbox.lent.is_none(),
            "an input was lent and not settled"
        );
        if self.read_frames(now, conn, bytes, true) {
            self.outbox.lent = Some(Lent::of(bytes));
            self.outbox.stamp(bytes);
        }
    }

    /// Feeds `conn`'s frames in `bytes` to the service; returns whether it
    /// did (the connection is live).
    fn read_frames(&mut self, now: Nanos, conn: ConnId, bytes: &[u8], lend: bool) -> bool {
        let Some(session) = self.sessions.get_mut(conn) else {
            return false;
        };
        if matches!(session.state.phase, Phase::Closing | Phase::Connecting) {
            return false;
        }
        session.read_at = now;
        let mut decoder = std::mem::take(&mut session.decoder);
        let mut cx = Context {
            now,
            worker: self.id,
            config: &self.config,
            sessions: &mut self.sessions,
            outbox: &mut self.outbox,
            input: lend.then_some(bytes),
        };
        let mut frames = decoder.frames(bytes);
        while let Some(item) = frames.next() {
            let verdict = match item {
                Ok(frame) => dispatch(&self.dispatch, &mut self.service, &mut cx, conn, frame),
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
        true
    }

    /// The driver is done with the input it lent
    /// ([`Worker::handle_read_lent`]): output that still refers to it is
    /// copied in, so `bytes` may change. Nothing happens when nothing was
    /// lent.
    ///
    /// # Panics
    ///
    /// If `bytes` is not the input lent.
    pub fn settle_input(&mut self, bytes: &[u8]) {
        let Some(lent) = self.outbox.lent.take() else {
            return;
        };
        assert_eq!(
            lent,
            Lent::of(bytes),
            "settled another input than the one lent"
        );
        for conn in self.outbox.spliced.drain(..) {
            if let Some(session) = self.sessions.get_mut(conn) {
                session.out.settle(bytes);
            }
        }
    }

    /// `n` bytes of [`Worker::transmit_buf`] were written.
    pub fn handle_written(&mut self, now: Nanos, conn: ConnId, n: usize) {
        let low = self.config.output_low_water();
        let Some(s) = self.sessions.get_mut(conn) else {
            return;
        };
        s.out.consume(n);
        if s.output_high && s.out.len() <= low {
            s.output_high = false;
            self.act(now, |svc, cx| svc.on_drained(cx, conn));
        }
    }

    /// `conn` is closed (by us after [`Effect::Close`], or by the peer).
    pub fn handle_closed(&mut self, now: Nanos, conn: ConnId) {
        let Some(session) = self.sessions.remove(conn) else {
            return;
        };
        if session.state.phase == Phase::Connecting {
            self.outbox.dialing -= 1;
        }
        if let Some(i) = self.outbox.watched.iter().position(|&c| c == conn) {
            self.outbox.watched.swap_remove(i);
        }
        self.act(now, |svc, cx| svc.on_close(cx, conn, session));
    }

    /// Bytes from worker `source`'s [`Worker::handoff_buf`]: whole frames,
    /// in the order they were handed off.
    pub fn handle_handoff(&mut self, now: Nanos, source: WorkerId, bytes: &[u8]) {
        self.handoff_frames(now, source, bytes, false);
    }

    /// Whole frames from worker `source`, lent as a read is
    /// ([`Worker::handle_read_lent`]): frames forwarded from them are
    /// stamped in place and written from `bytes`, which the driver settles
    /// ([`Worker::settle_input`]) before it changes or frees them.
    ///
    /// # Panics
    ///
    /// If an input lent before is not settled.
    pub fn handle_handoff_lent(&mut self, now: Nanos, source: WorkerId, bytes: &mut [u8]) {
        assert!(
            self.outbox.lent.is_none(),
            "an input was lent and not settled"
        );
        self.handoff_frames(now, source, bytes, true);
        self.outbox.lent = Some(Lent::of(bytes));
        self.outbox.stamp(bytes);
    }

    fn handoff_frames(&mut self, now: Nanos, source: WorkerId, bytes: &[u8], lend: bool) {
        let mut cx = Context {
            now,
            worker: self.id,
            config: &self.config,
            sessions: &mut self.sessions,
            outbox: &mut self.outbox,
            input: lend.then_some(bytes),
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            // Our own workers wrote these frames: a bad one is our bug.
            let (head, body) = rest
                .split_first_chunk::<FRAME_HEADER_LEN>()
                .expect("a handoff carries whole frames");
            let length = u32::from_be_bytes(*head) as usize;
            assert!(
                length >= OPCODE_LEN && length <= body.len(),
                "a handoff carries whole frames"
            );
            let frame = Frame {
                opcode: u16::from_be_bytes([body[0], body[1]]),
                payload: &body[OPCODE_LEN..length],
            };
            self.service.on_handoff(&mut cx, source, frame);
            rest = &body[length..];
        }
    }

    /// Everything in [`Worker::handoff_buf`] for `target` was delivered.
    pub fn handle_handed_off(&mut self, target: WorkerId) {
        if let Some(lane) = self.outbox.lanes.get_mut(target.index()) {
            let n = lane.len();
            lane.consume(n);
        }
    }

    /// A deadline passed (or the driver woke early; that is harmless).
    pub fn handle_timeout(&mut self, now: Nanos) {
        self.expire_hellos(now);
        self.watch_dials(now);
        self.act(now, |svc, cx| svc.on_timeout(cx));
    }

    /// Queues `conn`'s hand-shake deadline. Entries of connections gone or
    /// hand-shaked are dropped when the FIFO reaches its bound, which keeps
    /// it bounded whatever the churn of connections.
    fn remember_hello_deadline(&mut self, at: Nanos, conn: ConnId) {
        let bound = HELLO_DEADLINES_PER_SESSION_MAX * self.config.sessions_max;
        if self.hello_deadlines.len() >= bound {
            let sessions = &self.sessions;
            self.hello_deadlines
                .retain(|&(_, c)| awaits_hello(sessions.get(c)));
        }
        // At most sessions_max are live and awaiting a hello, the new one
        // included: compaction always makes room.
        assert!(self.hello_deadlines.len() < bound);
        self.hello_deadlines.push_back((at, conn));
    }

    /// Closes with `Error{TIMEOUT}` every accepted connection whose
    /// hand-shake deadline passed. Only the expired front is looked at.
    fn expire_hellos(&mut self, now: Nanos) {
        let timeout_ns = self.config.hello_timeout.as_u64();
        while let Some(&(at, conn)) = self.hello_deadlines.front() {
            if at > now {
                break;
            }
            self.hello_deadlines.pop_front();
            if awaits_hello(self.sessions.get(conn)) {
                self.act(now, |_, cx| {
                    cx.fail(conn, Fault::HelloTimeout { timeout_ns });
                });
            }
        }
    }

    /// Heartbeats dialled connections that sent nothing for an interval
    /// and closes those silent for [`HEARTBEAT_MISSES_MAX`] of them.
    fn watch_dials(&mut self, now: Nanos) {
        let Some(interval) = self.config.heartbeat_interval else {
            return;
        };
        let mut i = 0;
        while i < self.outbox.watched.len() {
            let conn = self.outbox.watched[i];
            i += 1;
            let Some(s) = self.sessions.get(conn) else {
                continue;
            };
            if s.state.phase == Phase::Closing {
                continue;
            }
            let silent = now.checked_since(s.read_at).unwrap_or(Nanos::ZERO);
            if silent.as_u64() >= interval.as_u64().saturating_mul(HEARTBEAT_MISSES_MAX) {
                let silent_ns = silent.as_u64();
                self.act(now, |_, cx| cx.fail(conn, Fault::Silent { silent_ns }));
            } else if s.state.phase == Phase::Handshaked && s.sent_at + interval <= now {
                self.act(now, |_, cx| {
                    cx.send(conn, HEARTBEAT_FRAME.len(), |out| {
                        out.extend_from_slice(&HEARTBEAT_FRAME);
                    });
                });
            }
        }
    }

    /// The process drains: refuse new work, finish in-flight work.
    pub fn handle_shutdown(&mut self, now: Nanos) {
        self.act(now, |svc, cx| svc.on_shutdown(cx));
    }
}

/// Whether `session` is an accepted connection still waiting for its hello.
fn awaits_hello<D>(session: Option<&Session<D>>) -> bool {
    session.is_some_and(|s| s.state.side == Side::Acceptor && s.state.phase == Phase::Connected)
}

/// When a watched dialled session next needs the worker: its next
/// heartbeat (once hand-shaked), or the moment it counts as dead.
fn watch_deadline<D>(s: &Session<D>, interval: Nanos) -> Nanos {
    let dead = s.read_at + Nanos(interval.as_u64().saturating_mul(HEARTBEAT_MISSES_MAX));
    if s.state.phase == Phase::Handshaked {
        dead.min(s.sent_at + interval)
    } else {
        dead
    }
}
