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
//! ([`Command::encode`](fep_engine::Command::encode)) and handed to the driver's log
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

use fep_core::frame::encode_frame;
use fep_core::wire::{RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{
    ConnId, Context, ErrorCode, Fault, Frame, Handler, Service, Session, StateSet, WorkerId,
};

use fep_engine::{Engine, Event, COMMAND_ENCODED_LEN_MAX};

use crate::hello::Admission;
use crate::msg::{
    offset, patch_u64, read_u64, PerfPing, OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK,
    OP_ROLE_HELLO_REQ,
};
use crate::order::{self, Level, OrderMsg, BOOK_DEPTH_MAX};
use crate::Role;

use crate::id_table::IdTable;

mod entry;
mod journal;

use journal::{hold, hold_back, resume_unless_held_back, Journaling};

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
