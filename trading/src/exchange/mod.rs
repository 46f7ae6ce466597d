//! The exchange role: accepts gateways and clients, answers each `PerfPing`
//! with a `PerfPong` stamped `t3`, and runs order entry through one
//! matching engine ([`fep_engine`]) for the whole process.
//!
//! # One engine, many workers
//!
//! The engine lives on worker 0 ([`ENGINE_WORKER`]) and runs inline there:
//! a request on one of its own connections is matched in the same turn
//! that read it, with no thread hop (on this project's 2-vCPU machines a
//! wake-up on another CPU costs ~15 µs, more than matching by two orders of
//! magnitude). Another worker hands each request, with its connection, to
//! worker 0 (an `OP_XCH_REQUEST` frame in the handoff lane) and gets the
//! frames for its connections back (`OP_XCH_DELIVER`); lanes are FIFO per
//! worker pair, so a connection's answers keep their order. While a
//! connection has requests at worker 0, its pings follow them there too, so
//! a pong never overtakes an earlier order's answer. A lane past half its
//! bound sheds: a request with `Reject{OVERLOADED}`, a maker's message to
//! that worker's connections by not sending it (counted in
//! [`ExchangeStats::unowned`]).
//!
//! # Who hears what
//!
//! A request's first answer, and the later messages about its own order
//! that it caused (its fills as taker, an IOC's rest), go to its connection
//! with its header echoed and `t3` set. A resting order's fills (maker) go
//! to the connection of the request that last named it, with that
//! request's `cl_ord_id` and `route` and `t1 = t2 = t4 = 0`; if that
//! connection has closed, they are not sent. [`Owner`]s are kept by
//! `order_id` in a table sized for every order the engine can hold.
//!
//! # Durability
//!
//! With a journal ([`ExchangeConfig::journal`]) every request the engine
//! says must be journaled ([`Engine::must_journal`]) is encoded
//! ([`Command::encode`]) and handed to the driver's log
//! ([`Context::journal`]) before it is matched, numbered in order. Every
//! frame the engine's worker emits while any journaled request is not yet
//! durable is held, tagged with the number of the last journaled request,
//! and released in emission order when the log says it is durable
//! ([`Service::on_durable`]). That one ordered queue keeps every
//! connection's answers in arrival order (a ping or query behind a pending
//! order waits too) and holds maker messages to other connections with
//! the request that caused them; it is conservative: an unrelated
//! connection's pong also waits for the batch in flight. Past
//! [`HELD_BYTES_MAX`]/2 the connection that added to it is not read until
//! the queue drains; at [`NOT_DURABLE_RECORDS_MAX`] a new journaled request
//! is refused `OVERLOADED` before it changes anything. If the log fails the
//! exchange never sends what is held and refuses everything after
//! (`SHUTTING_DOWN`, "journal failed"): nothing not durable is ever
//! acknowledged.

use fep_core::frame::{encode_frame, FrameWriter};
use fep_core::wire::{RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{
    ConnId, Context, ErrorCode, Fault, Frame, Handler, Service, Session, StateSet, WorkerId,
};
use std::collections::VecDeque;

use fep_engine::{
    BalanceQuery, BookQuery, Cancel, CancelReason, Command, Engine, Event, Liquidity, NewOrder,
    Replace, Side, Tif, COMMAND_ENCODED_LEN_MAX,
};

use crate::hello::Admission;
use crate::msg::{
    offset, patch_u64, read_u64, PerfPing, OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK,
    OP_ROLE_HELLO_REQ,
};
use crate::order::{
    self, Balance, BookSnapshot, Header, Level, OrderAccepted, OrderCanceled, OrderExecuted,
    OrderMsg, OrderReplaced, BOOK_DEPTH_MAX,
};
use crate::Role;

use crate::id_table::IdTable;

/// The worker whose service owns the matching engine.
pub const ENGINE_WORKER: WorkerId = WorkerId(0);

/// Settings of the exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// The token peers must present, if any.
    pub token: Option<String>,
    /// The matching engine's settings (instruments, accounts, balances,
    /// capacities).
    pub engine: fep_engine::Config,
    /// Journal requests and hold their answers until durable (`--wal`):
    /// the number of the last record the journal already holds (0 for a
    /// new one). `None`: no journal, answers go out at once.
    pub journal: Option<u64>,
    /// With a journal: offer the driver a snapshot of the engine every
    /// this many journaled requests ([`Context::journal_snapshot`]), so
    /// recovery replays at most about this many. 0: never.
    pub snapshot_every: u64,
}

/// Journaled requests between snapshots unless configured: about a second
/// of replay at the measured recovery speed, a few MB of journal.
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 1_000_000;

/// Bytes of answers the engine's worker holds for durability; past half of
/// it the connection adding to it is paused.
pub const HELD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Requests of one connection handed to the engine's worker and not yet
/// answered, past which the connection is not read; it is read again at
/// half. While the journal stalls, answers wait on the engine's worker: this
/// keeps what a connection of another worker adds to them to about this
/// many answers and one read.
pub const AT_ENGINE_PAUSE: u32 = 4096;
/// Journaled requests not yet durable; at it a new journaled request is
/// refused `OVERLOADED` (it keeps the log's pending buffer, 4 MiB by
/// default, from ever filling: a record is at most ~60 bytes).
pub const NOT_DURABLE_RECORDS_MAX: u64 = 32_768;

const _: () = assert!(NOT_DURABLE_RECORDS_MAX as usize * (COMMAND_ENCODED_LEN_MAX + 24) <= 4 << 20);
const _: () = assert!(HELD_BYTES_MAX >= 2 * (u16::MAX as usize + 6));

/// Cash every account starts with unless configured (`mock_exchange --cash`).
pub const CASH_DEFAULT: i64 = 1_000_000_000_000_000;

impl Default for ExchangeConfig {
    /// No token, and the engine as `mock_exchange` starts it by
    /// default (16 instruments, 1,024 accounts, [`CASH_DEFAULT`]).
    fn default() -> Self {
        ExchangeConfig {
            token: None,
            engine: fep_engine::Config {
                cash: CASH_DEFAULT,
                ..fep_engine::Config::default()
            },
            journal: None,
            snapshot_every: SNAPSHOT_EVERY_DEFAULT,
        }
    }
}

/// Counters of one exchange worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Pongs sent.
    pub pongs: u64,
    /// Requests refused while draining.
    pub rejects: u64,
    /// Sessions closed.
    pub closed: u64,
    /// Order-entry requests matched (on the engine's worker).
    pub requests: u64,
    /// Orders accepted.
    pub accepted: u64,
    /// Fills (one per maker/taker pair).
    pub fills: u64,
    /// Requests refused by the engine.
    pub engine_rejects: u64,
    /// Maker messages not sent: their connection had closed or was unknown.
    pub unowned: u64,
    /// Requests journaled.
    pub journaled: u64,
    /// Requests refused because the journal failed or was full.
    pub journal_rejects: u64,
    /// Times the held answers passed half their bound (a connection paused).
    pub held_pauses: u64,
    /// Times a connection had [`AT_ENGINE_PAUSE`] requests at the engine's
    /// worker (it was paused).
    pub engine_pauses: u64,
}

/// Where the messages about an open order go: the connection of the
/// request that last named it, and that request's `route`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The worker that owns the connection.
    pub worker: WorkerId,
    /// The connection (generation-checked: a closed one is never reused).
    pub conn: ConnId,
    /// The naming request's `route`.
    pub route: u64,
}

/// Handed to the engine's worker only (the engine's reserved range): a
/// request read on another worker. `conn:u64, opcode:u16, payload`.
const OP_XCH_REQUEST: u16 = 1101;
/// Handed back from the engine's worker only: frames for one connection of
/// the receiving worker. `conn:u64, finished:u32, frames`; `finished`
/// counts the requests of `conn` these frames finish answering.
const OP_XCH_DELIVER: u16 = 1102;
/// Bytes of an `OP_XCH_DELIVER` payload before its frames.
const DELIVER_HEAD_LEN: usize = 12;

/// Per-session data of the exchange.
#[derive(Debug, Default)]
pub struct Peer {
    /// Requests of this connection handed to the engine's worker and not
    /// answered yet (on workers other than the engine's).
    at_engine: u32,
    /// Paused until the held answers drain (on the engine's worker).
    paused_for_held: bool,
    /// Paused until its requests at the engine fall to half of
    /// [`AT_ENGINE_PAUSE`] (on other workers).
    paused_for_engine: bool,
}

/// A run of held frames: for whom, behind which journal record.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Released once this record is durable.
    seq: u64,
    to: Owner,
    /// Requests of `to.conn` these frames finish (a handed-off request).
    finished: u32,
    len: usize,
}

/// The journal's side of the engine's worker.
#[derive(Debug)]
struct Journaling {
    /// The number of the last record journaled.
    seq_last: u64,
    /// Every record up to this is durable.
    durable: u64,
    /// The log failed: nothing more becomes durable.
    failed: bool,
    /// The record the last snapshot was offered at.
    snapshot_at: u64,
    snapshot_every: u64,
    /// Bytes of the last snapshot: the next one's buffer is sized from it,
    /// so a snapshot costs one allocation, not one per doubling.
    snapshot_len_last: usize,
    /// Held frames, back to back, in emission order.
    held: Vec<u8>,
    entries: VecDeque<Held>,
    /// Connections paused for the held bytes, to resume when they drain.
    paused: Vec<ConnId>,
}

impl Journaling {
    fn new(seq_last: u64, snapshot_every: u64) -> Journaling {
        Journaling {
            seq_last,
            durable: seq_last,
            failed: false,
            snapshot_at: seq_last,
            snapshot_every,
            snapshot_len_last: 0,
            held: Vec::with_capacity(1 << 20),
            entries: VecDeque::with_capacity(4096),
            paused: Vec::new(),
        }
    }

    /// Whether frames emitted now must wait. After a failure nothing is
    /// held: every later request is refused unapplied, and that refusal
    /// claims nothing durable.
    fn holds(&self) -> bool {
        !self.failed && self.seq_last > self.durable
    }
}

/// The engine and what the exchange keeps beside it.
#[derive(Debug)]
struct Matching {
    engine: Engine,
    /// Reused per request: the engine's events.
    events: Vec<Event>,
    /// Reused per book query: the levels of a snapshot.
    levels: Vec<Level>,
    /// The owner of each open order.
    owners: IdTable<Option<Owner>>,
}

/// One exchange worker's service.
#[derive(Debug)]
pub struct Exchange {
    worker: WorkerId,
    admission: Admission,
    draining: bool,
    matching: Option<Box<Matching>>,
    /// The answers of the request being matched for another worker's
    /// connection, handed back in one piece (reused).
    reply: Vec<u8>,
    /// Whose answers `reply` holds, while a handed-off request is matched.
    reply_to: Option<Owner>,
    /// On the engine's worker with a journal.
    journal: Option<Box<Journaling>>,
    stats: ExchangeStats,
}

impl Exchange {
    /// Worker `worker`'s exchange, accepting roles `gateway` and `client`.
    /// Worker 0 builds the engine. Panics on engine settings a CLI must have
    /// refused ([`fep_engine::Config::validate`]).
    pub fn new(worker: WorkerId, config: ExchangeConfig) -> Exchange {
        Exchange::with_engine(worker, config, None)
    }

    /// As [`Exchange::new`], with worker 0 running `engine` (the state
    /// recovery rebuilt from the journal) instead of a new one. Its orders
    /// have no connection: their maker messages are not sent.
    pub fn recovered(worker: WorkerId, config: ExchangeConfig, engine: Engine) -> Exchange {
        Exchange::with_engine(worker, config, Some(engine))
    }

    fn with_engine(worker: WorkerId, config: ExchangeConfig, engine: Option<Engine>) -> Exchange {
        let admission = Admission {
            roles: vec![Role::Gateway, Role::Client],
            token: config.token,
        };
        let journal = config
            .journal
            .filter(|_| worker == ENGINE_WORKER)
            .map(|seq| Box::new(Journaling::new(seq, config.snapshot_every)));
        let matching = (worker == ENGINE_WORKER).then(|| {
            let engine = engine.unwrap_or_else(|| {
                Engine::new(config.engine).expect("engine settings were validated")
            });
            Box::new(Matching {
                owners: IdTable::new(config.engine.orders_max as usize),
                engine,
                events: Vec::with_capacity(1024),
                levels: Vec::with_capacity(2 * usize::from(BOOK_DEPTH_MAX)),
            })
        });
        Exchange {
            worker,
            admission,
            draining: false,
            matching,
            reply: Vec::new(),
            reply_to: None,
            journal,
            stats: ExchangeStats::default(),
        }
    }

    /// The number of the last journaled request and of the last durable
    /// one, with a journal on the engine's worker.
    pub fn journal_seqs(&self) -> Option<(u64, u64)> {
        self.journal.as_deref().map(|j| (j.seq_last, j.durable))
    }

    /// Whether the journal failed (the exchange acknowledges nothing since).
    pub fn journal_failed(&self) -> bool {
        self.journal.as_deref().is_some_and(|j| j.failed)
    }

    /// Bytes of answers held for durability.
    pub fn held_len(&self) -> usize {
        self.journal.as_deref().map_or(0, |j| j.held.len())
    }

    /// The counters.
    pub fn stats(&self) -> ExchangeStats {
        self.stats
    }

    /// The matching engine, on the engine's worker.
    pub fn engine(&self) -> Option<&Engine> {
        self.matching.as_deref().map(|m| &m.engine)
    }

    fn on_hello(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        self.admission.accept(cx, conn, payload, Role::Exchange)
    }

    fn on_ping(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let ping = PerfPing::decode(OP_PERF_PING, payload)?;
        let at_engine = cx.data_mut(conn).map_or(0, |p| p.at_engine);
        if at_engine > 0 {
            // Behind this connection's requests at the engine's worker.
            return self.hand_to_engine(cx, conn, OP_PERF_PING, payload);
        }
        let to = Owner {
            worker: self.worker,
            conn,
            route: ping.route,
        };
        self.pong(cx, to, ping.seq, payload);
        hold_back(cx, conn);
        // A pong waits behind the journal too.
        self.hold_back_for_journal(cx, conn);
        Ok(())
    }

    fn pong(&mut self, cx: &mut Context<'_, Self>, to: Owner, seq: u64, payload: &[u8]) {
        if self.draining {
            self.stats.rejects += 1;
            let msg = RejectMsg {
                code: ErrorCode::ShuttingDown,
                seq,
                reason: "exchange is draining",
            };
            self.emit(cx, to, 16 + msg.reason.len(), |out| {
                msg.encode(out);
            });
            return;
        }
        let t3 = cx.now().as_u64();
        self.stats.pongs += 1;
        self.emit_forward(cx, to, OP_PERF_PONG, payload, &[(offset::T3, t3)]);
    }

    fn on_order(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        // A payload of the wrong length is the connection's MALFORMED,
        // wherever the engine lives.
        let msg = OrderMsg::decode(opcode, payload)?;
        if self.matching.is_none() {
            return self.hand_to_engine(cx, conn, opcode, payload);
        }
        let header = msg.header();
        let from = Owner {
            worker: self.worker,
            conn,
            route: header.route,
        };
        self.order(cx, from, &msg);
        hold_back(cx, conn);
        self.hold_back_for_journal(cx, conn);
        Ok(())
    }

    fn hand_to_engine(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let lane_max = cx.config().handoff_backlog_max;
        let room = cx.handoff_backlog(ENGINE_WORKER) + 16 + payload.len() <= lane_max / 2;
        let handed = room
            && cx.handoff(ENGINE_WORKER, 16 + payload.len(), |out| {
                let mut w = FrameWriter::new(out, OP_XCH_REQUEST);
                w.put_u64(conn.to_bits()).put_u16(opcode).put_slice(payload);
                w.finish();
            });
        if !handed {
            // Shed: the request never reached the engine.
            self.stats.rejects += 1;
            let seq = read_u64(payload, 0);
            cx.reject(
                conn,
                ErrorCode::Overloaded,
                seq,
                "exchange engine queue is full",
            );
            return Ok(());
        }
        let mut pause = false;
        if let Some(peer) = cx.data_mut(conn) {
            peer.at_engine += 1;
            if peer.at_engine >= AT_ENGINE_PAUSE {
                peer.paused_for_engine = true;
                pause = true;
            }
        }
        // Again if something else resumed it meanwhile.
        if pause && cx.pause_input(conn) {
            self.stats.engine_pauses += 1;
        }
        Ok(())
    }

    /// Appends frames for `to`, on this worker or handed to its own.
    fn emit(
        &mut self,
        cx: &mut Context<'_, Self>,
        to: Owner,
        additional: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        if self.in_reply(to) {
            write(&mut self.reply);
            return true;
        }
        if let Some(j) = self.journal.as_deref_mut().filter(|j| j.holds()) {
            hold(j, to, 0, write);
            return true;
        }
        if to.worker == self.worker {
            return cx.send(to.conn, additional, write);
        }
        self.deliver(cx, to, 0, additional, write)
    }

    /// Sends the frame read on this worker with `payload` to `to` as an
    /// `opcode` frame with `stamps` over it, routed as [`Exchange::emit`]
    /// routes: when it goes straight out on this worker it is forwarded
    /// ([`Context::forward`]: a 1 KiB pong leaves from the read buffer its
    /// ping came in), otherwise encoded where `emit` puts it.
    fn emit_forward(
        &mut self,
        cx: &mut Context<'_, Self>,
        to: Owner,
        opcode: u16,
        payload: &[u8],
        stamps: &[(usize, u64)],
    ) -> bool {
        let held = self.journal.as_deref().is_some_and(Journaling::holds);
        // `emit`'s last-but-one case: straight out on this worker.
        if !self.in_reply(to) && !held && to.worker == self.worker {
            return cx.forward(to.conn, opcode, payload, stamps);
        }
        self.emit(cx, to, 6 + payload.len(), |out| {
            let start = out.len();
            encode_frame(out, opcode, payload);
            for &(at, v) in stamps {
                patch_u64(&mut out[start..], at, v);
            }
        })
    }

    /// Whether a frame for `to` joins the engine's reply being built for it
    /// (see [`Exchange::emit`]).
    fn in_reply(&self, to: Owner) -> bool {
        self.reply_to
            .is_some_and(|r| r.worker == to.worker && r.conn == to.conn)
    }

    /// Sends what is held up to the durable record, in order.
    fn release(&mut self, cx: &mut Context<'_, Self>) {
        let Some(mut j) = self.journal.take() else {
            return;
        };
        let mut at = 0;
        while let Some(&e) = j.entries.front() {
            if j.failed || e.seq > j.durable {
                break;
            }
            j.entries.pop_front();
            let bytes = &j.held[at..at + e.len];
            at += e.len;
            if e.to.worker == self.worker {
                if !bytes.is_empty() {
                    cx.send(e.to.conn, bytes.len(), |out| out.extend_from_slice(bytes));
                }
            } else if !self.deliver(cx, e.to, e.finished, bytes.len(), |out| {
                out.extend_from_slice(bytes)
            }) {
                self.stats.unowned += 1;
            }
        }
        j.held.drain(..at);
        if j.held.len() <= HELD_BYTES_MAX / 4 {
            for conn in j.paused.drain(..) {
                if let Some(peer) = cx.data_mut(conn) {
                    peer.paused_for_held = false;
                }
                resume_unless_held_back(cx, conn);
            }
        }
        self.journal = Some(j);
    }

    /// Backpressure from the held answers: past half their bound, `conn`
    /// is not read until they drain.
    fn hold_back_for_journal(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) {
        let Some(j) = self.journal.as_deref_mut() else {
            return;
        };
        if j.held.len() <= HELD_BYTES_MAX / 2 {
            return;
        }
        if let Some(peer) = cx.data_mut(conn) {
            if !peer.paused_for_held {
                peer.paused_for_held = true;
                j.paused.push(conn);
            }
        }
        // Again if something else resumed it meanwhile.
        if cx.pause_input(conn) {
            self.stats.held_pauses += 1;
        }
    }

    /// Hands frames for `to` (on another worker) back to its worker, with
    /// the count of its requests they finish. `false` when the lane is past
    /// half its bound: the frames are not sent.
    fn deliver(
        &mut self,
        cx: &mut Context<'_, Self>,
        to: Owner,
        finished: u32,
        additional: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let lane_max = cx.config().handoff_backlog_max;
        let size = 6 + DELIVER_HEAD_LEN + additional;
        if finished == 0 && cx.handoff_backlog(to.worker) + size > lane_max / 2 {
            self.stats.unowned += 1;
            return false;
        }
        cx.handoff(to.worker, size, |out| {
            let start = out.len();
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&OP_XCH_DELIVER.to_be_bytes());
            out.extend_from_slice(&to.conn.to_bits().to_be_bytes());
            out.extend_from_slice(&finished.to_be_bytes());
            write(out);
            let length = u32::try_from(out.len() - start - 4).expect("a lane frame fits u32");
            out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        })
    }

    /// Runs one decoded order-entry request from `from` through the engine
    /// and sends what it decided.
    fn order(&mut self, cx: &mut Context<'_, Self>, from: Owner, msg: &OrderMsg<'_>) {
        let mut h = msg.header();
        h.t3 = cx.now();
        if self.draining {
            self.stats.rejects += 1;
            return self.reject(
                cx,
                from,
                ErrorCode::ShuttingDown,
                h.cl_ord_id,
                "exchange is draining",
            );
        }
        let command = match command_of(msg) {
            Ok(c) => c,
            Err(why) => {
                self.stats.engine_rejects += 1;
                return self.reject(cx, from, ErrorCode::InvalidOrder, h.cl_ord_id, why);
            }
        };
        if let Some(j) = self.journal.as_deref_mut() {
            let m = self
                .matching
                .as_deref()
                .expect("orders are matched on the engine's worker");
            if j.failed {
                self.stats.journal_rejects += 1;
                return self.reject(
                    cx,
                    from,
                    ErrorCode::ShuttingDown,
                    h.cl_ord_id,
                    "exchange journal failed",
                );
            }
            if m.engine.must_journal(&command) {
                let full = j.seq_last - j.durable >= NOT_DURABLE_RECORDS_MAX
                    || j.held.len() >= HELD_BYTES_MAX;
                if full || !cx.journal(COMMAND_ENCODED_LEN_MAX, |out| command.encode(out)) {
                    self.stats.journal_rejects += 1;
                    return self.reject(
                        cx,
                        from,
                        ErrorCode::Overloaded,
                        h.cl_ord_id,
                        "exchange journal is full",
                    );
                }
                j.seq_last += 1;
                self.stats.journaled += 1;
            }
        }
        self.stats.requests += 1;
        let mut m = self
            .matching
            .take()
            .expect("orders are matched on the engine's worker");
        m.events.clear();
        m.engine.handle(&command, &mut m.events);
        self.answer(cx, from, &h, &mut m);
        if let Some(j) = self.journal.as_deref_mut() {
            if j.snapshot_every > 0 && j.seq_last - j.snapshot_at >= j.snapshot_every {
                // Rare (every `snapshot_every` records): the one allocation
                // and copy of the state (sized from the last one, with room
                // for growth); the file work is the driver's.
                j.snapshot_at = j.seq_last;
                let mut state = Vec::with_capacity(j.snapshot_len_last + j.snapshot_len_last / 4);
                m.engine.snapshot(&mut state);
                j.snapshot_len_last = state.len();
                cx.journal_snapshot(j.seq_last, state);
            }
        }
        self.matching = Some(m);
    }

    fn reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        to: Owner,
        code: ErrorCode,
        seq: u64,
        why: &str,
    ) {
        let msg = RejectMsg {
            code,
            seq,
            reason: why,
        };
        self.emit(cx, to, 16 + why.len(), |out| {
            msg.encode(out);
        });
    }

    /// Turns the engine's events for one request into frames, in order.
    fn answer(&mut self, cx: &mut Context<'_, Self>, from: Owner, h: &Header, m: &mut Matching) {
        let mut i = 0;
        while i < m.events.len() {
            let event = m.events[i];
            i += 1;
            match event {
                Event::Accepted {
                    account,
                    order_id,
                    instrument,
                    side,
                    tif,
                    price,
                    qty,
                    ..
                } => {
                    self.stats.accepted += 1;
                    m.owners.set(order_id, Some(from));
                    let msg = OrderMsg::OrderAccepted(OrderAccepted {
                        h: *h,
                        account,
                        order_id,
                        instrument,
                        side: side.wire(),
                        tif: tif.wire(),
                        price,
                        qty,
                    });
                    self.send_msg(cx, from, &msg);
                }
                Event::Executed {
                    account,
                    order_id,
                    cl_ord_id,
                    exec_id,
                    price,
                    qty,
                    leaves,
                    liquidity,
                } => {
                    let owner = m.owners.get(order_id).flatten();
                    if leaves == 0 {
                        m.owners.remove(order_id);
                    }
                    let (to, header) = match liquidity {
                        Liquidity::Taker => (Some(from), *h),
                        Liquidity::Maker => {
                            self.stats.fills += 1;
                            (owner, maker_header(cl_ord_id, owner, h.t3))
                        }
                    };
                    let Some(to) = to else {
                        self.stats.unowned += 1;
                        continue;
                    };
                    let msg = OrderMsg::OrderExecuted(OrderExecuted {
                        h: header,
                        account,
                        order_id,
                        exec_id,
                        price,
                        qty,
                        leaves,
                        liquidity: liquidity.wire(),
                    });
                    if !self.send_msg(cx, to, &msg) {
                        self.stats.unowned += 1;
                    }
                }
                Event::Canceled {
                    account,
                    order_id,
                    canceled_qty,
                    reason,
                    ..
                } => {
                    m.owners.remove(order_id);
                    let reason = match reason {
                        CancelReason::Requested => order::CANCEL_REASON_REQUESTED,
                        CancelReason::IocRest => order::CANCEL_REASON_IOC,
                    };
                    let msg = OrderMsg::OrderCanceled(OrderCanceled {
                        h: *h,
                        account,
                        order_id,
                        canceled_qty,
                        reason,
                    });
                    self.send_msg(cx, from, &msg);
                }
                Event::Replaced {
                    account,
                    order_id,
                    price,
                    qty,
                    ..
                } => {
                    m.owners.set(order_id, Some(from));
                    let msg = OrderMsg::OrderReplaced(OrderReplaced {
                        h: *h,
                        account,
                        order_id,
                        price,
                        qty,
                    });
                    self.send_msg(cx, from, &msg);
                }
                Event::Rejected { code, reason } => {
                    self.stats.engine_rejects += 1;
                    let code = ErrorCode::from_u16(code.wire());
                    self.reject(cx, from, code, h.cl_ord_id, reason);
                }
                Event::Book {
                    instrument,
                    bids,
                    asks,
                } => {
                    m.levels.clear();
                    let n = usize::from(bids) + usize::from(asks);
                    for e in &m.events[i..i + n] {
                        let Event::Level { price, qty, orders } = *e else {
                            unreachable!("a book is followed by its levels");
                        };
                        m.levels.push(Level { price, qty, orders });
                    }
                    i += n;
                    let (b, a) = m.levels.split_at(usize::from(bids));
                    let size = order::len::BOOK_SNAPSHOT_MIN + 6 + n * order::LEVEL_LEN;
                    self.emit(cx, from, size, |out| {
                        BookSnapshot::encode_with(out, h, instrument, b, a);
                    });
                }
                Event::Level { .. } => unreachable!("levels are read with their book"),
                Event::Balance {
                    account,
                    asset,
                    total,
                    locked,
                } => {
                    let msg = OrderMsg::Balance(Balance {
                        h: *h,
                        account,
                        asset,
                        total,
                        locked,
                    });
                    self.send_msg(cx, from, &msg);
                }
            }
        }
    }

    fn send_msg(&mut self, cx: &mut Context<'_, Self>, to: Owner, msg: &OrderMsg<'_>) -> bool {
        // Room for the largest fixed-size answer (an execution).
        self.emit(cx, to, 6 + order::len::ORDER_EXECUTED, |out| {
            msg.encode(out);
        })
    }

    fn on_error(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        _: &[u8],
    ) -> Result<(), Fault> {
        cx.close(conn);
        Ok(())
    }
}

/// Appends frames written by `write` to the held queue, behind the last
/// journaled record; merges with the previous run for the same recipient.
fn hold(j: &mut Journaling, to: Owner, finished: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let before = j.held.len();
    write(&mut j.held);
    let len = j.held.len() - before;
    if let Some(last) = j.entries.back_mut() {
        if last.seq == j.seq_last && last.to == to && finished == 0 {
            last.len += len;
            return;
        }
    }
    j.entries.push_back(Held {
        seq: j.seq_last,
        to,
        finished,
        len,
    });
}

/// Backpressure: a peer whose answers pile up unsent (past the high-water
/// mark) is not read until they drain ([`Service::on_drained`]), so a
/// gateway that reads slowly for a moment is slowed down by TCP rather than
/// cut.
fn hold_back(cx: &mut Context<'_, Exchange>, conn: ConnId) {
    if cx.session(conn).is_some_and(|s| s.output_high()) {
        cx.pause_input(conn);
    }
}

/// Reads `conn` again, unless another reason to hold it back still holds:
/// its own output above the high-water mark, the held answers, or its
/// requests at the engine's worker. (Each reason re-pauses it on its next
/// request anyway; this keeps one from lifting another's pause at all.)
fn resume_unless_held_back(cx: &mut Context<'_, Exchange>, conn: ConnId) {
    if cx.session(conn).is_some_and(|s| s.output_high()) {
        return;
    }
    if cx
        .data_mut(conn)
        .is_some_and(|p| p.paused_for_held || p.paused_for_engine)
    {
        return;
    }
    cx.resume_input(conn);
}

/// The header of a maker's message: the naming request's `cl_ord_id` and
/// `route`, the event's time as `t3`, no other stamps.
fn maker_header(cl_ord_id: u64, owner: Option<Owner>, t3: fep_core::Nanos) -> Header {
    Header {
        cl_ord_id,
        route: owner.map_or(0, |o| o.route),
        t3,
        ..Header::default()
    }
}

/// The engine command of a request; `Err` with the reason for a side or
/// time in force the engine's types cannot hold (`INVALID_ORDER`).
fn command_of(msg: &OrderMsg<'_>) -> Result<Command, &'static str> {
    Ok(match *msg {
        OrderMsg::NewOrder(m) => Command::NewOrder(NewOrder {
            account: m.account,
            cl_ord_id: m.h.cl_ord_id,
            instrument: m.instrument,
            side: Side::from_wire(m.side).ok_or("side must be 1 (buy) or 2 (sell)")?,
            tif: Tif::from_wire(m.tif).ok_or("tif must be 1 (day) or 2 (IOC)")?,
            price: m.price,
            qty: m.qty,
        }),
        OrderMsg::CancelOrder(m) => Command::Cancel(Cancel {
            account: m.account,
            cl_ord_id: m.h.cl_ord_id,
            orig_cl_ord_id: m.orig_cl_ord_id,
        }),
        OrderMsg::ReplaceOrder(m) => Command::Replace(Replace {
            account: m.account,
            cl_ord_id: m.h.cl_ord_id,
            orig_cl_ord_id: m.orig_cl_ord_id,
            price: m.price,
            qty: m.qty,
        }),
        OrderMsg::BookQuery(m) => Command::BookQuery(BookQuery {
            instrument: m.instrument,
            depth: m.depth,
        }),
        OrderMsg::BalanceQuery(m) => Command::BalanceQuery(BalanceQuery {
            account: m.account,
            asset: m.asset,
        }),
        _ => unreachable!("only requests are dispatched here"),
    })
}

macro_rules! order_handler {
    ($op:expr) => {
        Handler {
            opcode: $op,
            allowed: StateSet::SERVING,
            handle: |svc: &mut Exchange, cx, conn, p| svc.on_order(cx, conn, $op, p),
        }
    };
}

macro_rules! client_only {
    ($op:expr) => {
        Handler {
            opcode: $op,
            allowed: StateSet::NONE,
            handle: |_, _, _, _| Ok(()),
        }
    };
}

impl Service for Exchange {
    type Data = Peer;

    const HANDLERS: &'static [Handler<Self>] = &[
        Handler {
            opcode: OP_ERROR,
            allowed: StateSet::LIVE,
            handle: Exchange::on_error,
        },
        client_only!(OP_REJECT),
        Handler {
            opcode: OP_ROLE_HELLO_REQ,
            allowed: StateSet::ACCEPTED,
            handle: Exchange::on_hello,
        },
        client_only!(OP_ROLE_HELLO_ACK),
        Handler {
            opcode: OP_PERF_PING,
            allowed: StateSet::SERVING,
            handle: Exchange::on_ping,
        },
        client_only!(OP_PERF_PONG),
        order_handler!(order::OP_NEW_ORDER),
        order_handler!(order::OP_CANCEL_ORDER),
        order_handler!(order::OP_REPLACE_ORDER),
        order_handler!(order::OP_BOOK_QUERY),
        order_handler!(order::OP_BALANCE_QUERY),
        client_only!(order::OP_ORDER_ACCEPTED),
        client_only!(order::OP_ORDER_EXECUTED),
        client_only!(order::OP_ORDER_CANCELED),
        client_only!(order::OP_ORDER_REPLACED),
        client_only!(order::OP_BOOK_SNAPSHOT),
        client_only!(order::OP_BALANCE),
    ];

    fn on_close(&mut self, _: &mut Context<'_, Self>, _: ConnId, _: Session<Peer>) {
        self.stats.closed += 1;
    }

    fn on_handoff(&mut self, cx: &mut Context<'_, Self>, source: WorkerId, frame: Frame<'_>) {
        let p = frame.payload;
        match frame.opcode {
            OP_XCH_REQUEST => {
                let conn = ConnId::from_bits(read_u64(p, 0));
                let opcode = u16::from_be_bytes([p[8], p[9]]);
                let payload = &p[10..];
                self.reply.clear();
                let reply_to = Owner {
                    worker: source,
                    conn,
                    route: 0,
                };
                self.reply_to = Some(reply_to);
                if opcode == OP_PERF_PING {
                    let ping = PerfPing::decode(opcode, payload).expect("checked at its worker");
                    let to = Owner {
                        route: ping.route,
                        ..reply_to
                    };
                    self.pong(cx, to, ping.seq, payload);
                } else {
                    let msg = OrderMsg::decode(opcode, payload).expect("checked at its worker");
                    let from = Owner {
                        route: msg.header().route,
                        ..reply_to
                    };
                    self.order(cx, from, &msg);
                }
                self.reply_to = None;
                let reply = std::mem::take(&mut self.reply);
                if let Some(j) = self.journal.as_deref_mut().filter(|j| j.holds()) {
                    hold(j, reply_to, 1, |out| out.extend_from_slice(&reply));
                } else {
                    let handed = self.deliver(cx, reply_to, 1, reply.len(), |out| {
                        out.extend_from_slice(&reply);
                    });
                    // The request was let in only while its lane had room
                    // for its answers: they fit.
                    if !handed {
                        self.stats.unowned += 1;
                    }
                }
                self.reply = reply;
            }
            OP_XCH_DELIVER => {
                let conn = ConnId::from_bits(read_u64(p, 0));
                let finished = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
                let mut resume = false;
                if let Some(peer) = cx.data_mut(conn) {
                    peer.at_engine = peer.at_engine.saturating_sub(finished);
                    if peer.paused_for_engine && peer.at_engine <= AT_ENGINE_PAUSE / 2 {
                        peer.paused_for_engine = false;
                        resume = true;
                    }
                }
                if resume {
                    resume_unless_held_back(cx, conn);
                }
                let frames = &p[DELIVER_HEAD_LEN..];
                if !frames.is_empty() {
                    cx.send(conn, frames.len(), |out| out.extend_from_slice(frames));
                }
            }
            opcode => unreachable!("exchange workers hand off no opcode {opcode}"),
        }
    }

    fn on_shutdown(&mut self, _: &mut Context<'_, Self>) {
        self.draining = true;
    }

    fn on_durable(&mut self, cx: &mut Context<'_, Self>, seq: u64) {
        if let Some(j) = self.journal.as_deref_mut() {
            // Durable numbers only grow; a stale notification changes nothing.
            j.durable = j.durable.max(seq.min(j.seq_last));
        }
        self.release(cx);
    }

    fn on_journal_failed(&mut self, cx: &mut Context<'_, Self>) {
        // The driver says so loudly (it knows why); a sans-IO service
        // prints nothing, it stops acknowledging.
        if let Some(j) = self.journal.as_deref_mut() {
            j.failed = true;
            j.entries.clear();
            j.held.clear();
            for conn in j.paused.drain(..) {
                cx.resume_input(conn);
            }
        }
    }

    fn on_drained(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) {
        resume_unless_held_back(cx, conn);
    }

    fn is_done(&self) -> bool {
        // Requests are answered as they arrive, or as soon as they are
        // durable: done once nothing is held.
        self.draining
            && self
                .journal
                .as_deref()
                .is_none_or(|j| j.failed || j.entries.is_empty())
    }
}
