//! The gateway role, one instance per worker: client sessions, the upstream
//! sessions to the exchange, routing, hop stamps, and the way back.
//!
//! # Upstream sessions
//!
//! Each worker keeps [`GatewayConfig::upstream_connections`] sessions to
//! the exchange (one by default), each with its own hand-shake, in-flight
//! FIFO, reconnect backoff and in-doubt cancels. A client's requests all
//! take the same one, chosen by its connection's slot
//! (`conn.index() % upstream_connections`) on whichever worker forwards
//! them, so one client's requests stay in one TCP stream and keep their
//! order. Several sessions exist for throughput: one TCP stream on
//! loopback carrying thousands of requests in flight saturates near a
//! million 1 KiB round trips a second on a 2-vCPU VM (its window, not the
//! gateway's code, is the limit), several streams do not.
//!
//! # Routing
//!
//! A client's pings all go through one upstream, chosen once per session:
//! `Local` picks this worker's own (`worker_id % workers`), `Handoff` picks
//! `session_id % workers`, which may be another worker's: the ping frame
//! (route set) then crosses workers through the worker's handoff lane, and
//! its pong (or a routed reject) comes back the same way. The ping's
//! `route` field carries a [`RouteTag`] that names the origin worker and
//! session, so the pong finds its way without a lookup table.
//!
//! # Backpressure
//!
//! The clients routed to one upstream form an input group. The group is
//! paused (its input left in the kernel, one effect) while the way to that
//! upstream is congested: this worker's upstream output is above its
//! high-water mark, or, for another worker's upstream, that worker said its
//! upstream is (an edge-triggered control frame), or half the credit of
//! bytes in flight through it is used (until a quarter is). It resumes
//! when all clear. Past the whole credit a ping is shed with
//! `Reject{OVERLOADED}`: the bounds hold even for a driver that ignores
//! pauses.
//!
//! # Order
//!
//! Per client, pings travel one upstream, TCP keeps their order, each
//! upstream answers in order (checked against its in-flight FIFO), and
//! handoffs are FIFO per worker pair: pongs come back in the order pings
//! went out. When the upstream is lost, its in-flight FIFO is rejected in
//! order, before any later ping can be forwarded on a new connection.
//!
//! # Orders in doubt
//!
//! A `NewOrder` or `ReplaceOrder` in flight when its upstream is lost may
//! have reached the exchange and rest there. Its client is told
//! `Reject{UPSTREAM_UNAVAILABLE}` (the contract's rule), but its worker
//! keeps the order's risk reservation and remembers it as **in doubt**
//! (client, account, name, reservation) in a FIFO bounded by
//! [`GatewayConfig::in_doubt_max`]. Cancels the gateway could not send for
//! want of a live upstream (cancel on disconnect) join the same FIFO. The
//! FIFO is the worker's that owns the client (the reservation is its), so
//! under handoff routing a reject from another worker's upstream carries
//! an in-doubt flag. Once the worker's own upstream is hand-shaked (at
//! once, if it was not the one lost), the gateway sends its own
//! `CancelOrder` for each entry, and the cancel's answer, whatever it is,
//! releases the reservation: the order is no longer open either way. A
//! cancel in flight at another loss goes back into the FIFO.
//!
//! # Drain
//!
//! A drain ends every client's session, so cancel on disconnect applies
//! to all of them at once: the worker cancels every order it tracks when
//! the drain begins, and each order a request still in flight opens or
//! renames as its answer passes (each cancel on the lane of the client
//! connection that named the order); it is done only once its upstreams'
//! in-flight FIFOs (its own cancels included) and its in-doubt FIFOs are
//! empty. Clients stay connected until then, for the answers they are
//! owed.

use std::collections::VecDeque;

use fep_core::limits::WORKERS_MAX;
use fep_core::wire::{OP_ERROR, OP_REJECT};
use fep_core::{
    ConnId, Context, ErrorCode, Frame, Handler, InputGroup, Nanos, Origin, Service, Session, Side,
    StateSet, WorkerId,
};

use crate::hello::Admission;
use crate::msg::{
    offset, read_u64, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK,
    OP_ROLE_HELLO_REQ,
};
use crate::open_orders::OpenOrders;
use crate::order::{self};
use crate::risk::{self, ClientId, ReasonBuf, Reservation, Risk, RiskConfig, RiskHandle};
use crate::Role;

mod answers;
mod cancel;
mod config;
mod forward;
mod stats;
mod upstream;

pub use config::{
    GatewayConfig, RouteTag, Routing, UnknownRouting, HANDOFF_INFLIGHT_BYTES_MAX_DEFAULT,
    UPSTREAM_CONNECTIONS_MAX, UPSTREAM_INFLIGHT_MAX_DEFAULT,
};
pub use stats::{GatewayStats, REJECT_CODES};

/// Handed between gateway workers only (the engine's reserved range): a
/// ping the target could not forward, for its origin to reject.
/// `route:u64, seq:u64, code:u16, ping_len:u32, in_doubt:u8` (`in_doubt`:
/// an order in flight at an upstream loss, see "Orders in doubt").
const OP_ROUTED_REJECT: u16 = 1001;
/// Handed between gateway workers only: the sender's upstream became
/// congested (`1`) or clear (`0`). `congested:u8`.
const OP_UPSTREAM_CONGESTED: u16 = 1002;
/// Handed between gateway workers only: an order-entry request's first
/// answer for its origin, with the credit it returns.
/// `credit:u32, opcode:u16, payload`.
const OP_ROUTED_FIRST: u16 = 1003;
/// The connection a route names for the gateway's own requests: a slot
/// index no session can have (the table is far smaller than 2^24).
const INTERNAL_CONN: ConnId = ConnId::from_bits((1 << 48) - 1);
/// Bytes of the control frames a lane may hold besides pings and answers.
const CONTROL_BYTES_MAX: usize = 64 * 1024;

/// Per-session data of the gateway.
#[derive(Debug, Default)]
pub struct Peer {
    inflight: u32,
    /// The worker whose upstream carries this client's pings.
    target: WorkerId,
    /// The configured client the hand-shake's token named.
    client: Option<ClientId>,
    /// This connection's requests in flight, oldest first: what each
    /// reserved, settled by its first answer. Answers to one connection
    /// come back in the order its requests were let through.
    pending: VecDeque<Pend>,
    /// For an upstream session: which of the worker's it is.
    lane: u16,
}

/// A request in flight, as its connection's worker remembers it.
#[derive(Clone, Copy, Debug, Default)]
struct Pend {
    /// What the risk check reserved (nothing for pings, queries, cancels).
    reserved: Reservation,
    /// The account a `NewOrder` or `ReplaceOrder` trades (0 otherwise): to
    /// cancel the order if it is left in doubt.
    account: u32,
}

/// An order the gateway must cancel once its upstream is live: one left in
/// doubt by an upstream loss, or one whose cancel on disconnect could not
/// be sent.
#[derive(Clone, Copy, Debug, Default)]
struct InDoubt {
    /// Whose exposure `reserved` is (`None`: nothing reserved).
    client: Option<ClientId>,
    /// The order's account.
    account: u32,
    /// The order's name: the `cl_ord_id` of the request that named it.
    name: u64,
    /// Released when the cancel is answered.
    reserved: Reservation,
    /// The upstream session its cancel takes: the one its client's
    /// requests took, so the cancel follows the order in one stream.
    lane: u16,
}

/// One of a worker's upstream sessions.
#[derive(Debug)]
struct Upstream {
    link: Link,
    backoff: Nanos,
    /// Requests written to it and not answered, oldest first.
    fifo: VecDeque<Pending>,
    /// Its output is above its high-water mark.
    congested: bool,
    /// Orders to cancel once it is live, oldest first (all lanes' together
    /// at most [`GatewayConfig::in_doubt_max`]).
    in_doubt: VecDeque<InDoubt>,
}

impl Upstream {
    /// Drops the oldest request in flight (its answer came). An emptied
    /// FIFO starts over at the front of its reservation: a ring of 16,384
    /// entries (1.2 MB) walked one entry per request put every forward on
    /// a cold cache line, and revisited each page only once per ring, long
    /// enough for a virtual machine's host to take it back.
    fn pop_oldest(&mut self) {
        self.fifo.pop_front();
        if self.fifo.is_empty() {
            self.fifo.clear();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Down { retry_at: Nanos },
    Dialing(ConnId),
    Handshaking(ConnId),
    Up(ConnId),
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    route: u64,
    seq: u64,
    /// The credit the request holds with its origin: a ping's frame
    /// length (its pong is as long), or [`credit_of`] an order request.
    len: u32,
    /// Sent by the gateway itself (a cancel on disconnect or of an order
    /// in doubt): its answer is swallowed, and releases `doubt.reserved`.
    internal: bool,
    /// What an internal cancel cancels (default for clients' requests).
    doubt: InDoubt,
    /// When it was forwarded (its `t2`).
    sent_at: Nanos,
    /// The request's opcode: its first answer must be of the kind the
    /// contract pairs with it.
    opcode: u16,
}

/// Whether `answer` can be the first answer of a request `request`
/// (PROTOCOL.md's table; a `Reject` fits any request).
fn answers(request: u16, answer: u16) -> bool {
    match request {
        OP_PERF_PING => answer == OP_PERF_PONG,
        order::OP_NEW_ORDER => answer == order::OP_ORDER_ACCEPTED,
        order::OP_CANCEL_ORDER => answer == order::OP_ORDER_CANCELED,
        order::OP_REPLACE_ORDER => answer == order::OP_ORDER_REPLACED,
        order::OP_BOOK_QUERY => answer == order::OP_BOOK_SNAPSHOT,
        order::OP_BALANCE_QUERY => answer == order::OP_BALANCE,
        _ => false,
    }
}

/// One gateway worker's service.
#[derive(Debug)]
pub struct Gateway {
    worker: WorkerId,
    config: GatewayConfig,
    admission: Admission,
    /// The upstream sessions, [`GatewayConfig::upstream_connections`] of
    /// them.
    upstreams: Vec<Upstream>,
    inflight_total: u64,
    /// Bytes of pings handed to each worker and not back yet, by index.
    via_bytes: Vec<usize>,
    /// One of this worker's upstream sessions' output is above its
    /// high-water mark (what the other workers were last told).
    upstream_congested: bool,
    /// `remote_congested[t]`: worker `t` said its upstream is congested.
    remote_congested: Vec<bool>,
    /// `via_high[t]`: half the credit with worker `t` is used, and not
    /// yet back to a quarter.
    via_high: Vec<bool>,
    draining: bool,
    /// The open orders of this worker's clients, as their answers told.
    open_orders: Option<OpenOrders>,
    /// `cl_ord_id`s of the gateway's own cancels (echoed, never checked).
    next_internal_id: u64,
    /// Entries in all upstreams' in-doubt FIFOs; at most
    /// `config.in_doubt_max`.
    in_doubt_len: usize,
    /// This worker's view of the process's risk state.
    risk: Risk,
    /// Where a refusal's reason is written (no allocation).
    reason: ReasonBuf,
    stats: GatewayStats,
}

/// `|price| × qty` for the risk counters, saturated to 64 bits (the
/// exchange refuses anything above 2^63 − 1 anyway).
fn risk_notional(price: i64, qty: u64) -> u64 {
    u64::try_from(risk::notional(price, qty)).unwrap_or(u64::MAX)
}

/// Whether an order-entry message carries hop stamps (its request had a
/// `t1`): only those get `t4`.
fn is_stamped(payload: &[u8]) -> bool {
    read_u64(payload, offset::T1 - offset::SEQ) != 0
}

/// The client `conn`'s hand-shake named (a handler runs only on
/// hand-shaked sessions, and every one has a client).
fn client_of(cx: &Context<'_, Gateway>, conn: ConnId) -> ClientId {
    cx.session(conn)
        .and_then(|s| s.data.client)
        .expect("a hand-shaked client session has a client")
}

/// The credit an order-entry request holds until its first answer is back:
/// room for the largest answer it can get (a book snapshot's levels, or a
/// fixed-size answer or reject).
fn credit_of(opcode: u16, payload: &[u8]) -> usize {
    let fixed = 6 + order::len::ORDER_EXECUTED.max(16 + fep_core::limits::REASON_LEN_MAX);
    if opcode == order::OP_BOOK_QUERY && payload.len() == order::len::BOOK_QUERY {
        let depth =
            usize::from(u16::from_be_bytes([payload[52], payload[53]]).min(order::BOOK_DEPTH_MAX));
        return fixed.max(6 + order::len::BOOK_SNAPSHOT_MIN + 2 * depth * order::LEVEL_LEN);
    }
    fixed
}

impl Gateway {
    /// Worker `worker`'s gateway.
    pub fn new(worker: WorkerId, config: GatewayConfig) -> Gateway {
        assert!(config.workers >= 1 && usize::from(config.workers) <= WORKERS_MAX);
        assert!(
            worker.0 < config.workers,
            "worker {worker:?} of {} workers",
            config.workers
        );
        assert!(
            (1..=UPSTREAM_CONNECTIONS_MAX).contains(&config.upstream_connections),
            "{} upstream connections",
            config.upstream_connections
        );
        // Tokens are the risk configuration's: one per client.
        let admission = Admission {
            roles: vec![Role::Client],
            token: None,
        };
        let workers = usize::from(config.workers);
        let lanes = usize::from(config.upstream_connections);
        Gateway {
            worker,
            admission,
            upstreams: (0..lanes)
                .map(|_| Upstream {
                    link: Link::Down {
                        retry_at: Nanos::ZERO,
                    },
                    backoff: config.reconnect_backoff_min,
                    fifo: VecDeque::with_capacity(
                        config.upstream_inflight_max.min(1 << 14).div_ceil(lanes),
                    ),
                    congested: false,
                    in_doubt: VecDeque::with_capacity(config.in_doubt_max.div_ceil(lanes)),
                })
                .collect(),
            inflight_total: 0,
            via_bytes: vec![0; workers],
            upstream_congested: false,
            remote_congested: vec![false; workers],
            via_high: vec![false; workers],
            draining: false,
            open_orders: None,
            next_internal_id: 1,
            in_doubt_len: 0,
            risk: config
                .risk
                .clone()
                .unwrap_or_else(|| RiskHandle::new(RiskConfig::open(config.token.clone())))
                .risk(),
            reason: ReasonBuf::default(),
            stats: GatewayStats::default(),
            config,
        }
    }

    /// The counters.
    pub fn stats(&self) -> GatewayStats {
        self.stats
    }

    /// Whether every upstream session is hand-shaked.
    pub fn upstream_up(&self) -> bool {
        self.upstreams.iter().all(|u| matches!(u.link, Link::Up(_)))
    }

    /// Upstream sessions hand-shaked.
    pub fn upstreams_up(&self) -> usize {
        self.upstreams
            .iter()
            .filter(|u| matches!(u.link, Link::Up(_)))
            .count()
    }

    /// Orders in doubt and deferred cancels this worker holds until their
    /// upstream session is live (at most [`GatewayConfig::in_doubt_max`]).
    pub fn in_doubt_held(&self) -> usize {
        self.in_doubt_len
    }

    /// The upstream session a client's requests take (any worker's, the
    /// same index): chosen by the client's connection slot.
    fn lane_of(&self, client: ConnId) -> u16 {
        (client.index() % usize::from(self.config.upstream_connections)) as u16
    }

    /// The upstream session `conn` is (set when it was dialed).
    fn lane_at(cx: &Context<'_, Self>, conn: ConnId) -> usize {
        cx.session(conn).map_or(0, |s| usize::from(s.data.lane))
    }

    /// The lane whose link is `conn` in any phase.
    fn lane_linked(&self, conn: ConnId) -> Option<usize> {
        self.upstreams.iter().position(|u| {
            matches!(u.link, Link::Dialing(c) | Link::Up(c) | Link::Handshaking(c) if c == conn)
        })
    }

    /// Pings of this worker's clients not answered yet.
    pub fn inflight(&self) -> u64 {
        self.inflight_total
    }

    fn upstream_of(&self, session: u64) -> WorkerId {
        match self.config.routing {
            Routing::Local => self.worker,
            Routing::Handoff => WorkerId((session % u64::from(self.config.workers)) as u16),
        }
    }
}

/// A client's order-entry request: allowed once hand-shaked, on the
/// client side only (from upstream it is `UNEXPECTED`).
macro_rules! request {
    ($op:expr) => {
        Handler {
            opcode: $op,
            allowed: StateSet::SERVING,
            handle: |g: &mut Gateway, cx, conn, p| g.on_request(cx, conn, $op, p),
        }
    };
}

/// An exchange's order-entry message: upstream only (a client sending one
/// is `UNEXPECTED`).
macro_rules! answer {
    ($op:expr) => {
        Handler {
            opcode: $op,
            allowed: StateSet::UPSTREAM,
            handle: |g: &mut Gateway, cx, conn, p| g.on_answer(cx, conn, $op, p),
        }
    };
}

impl Service for Gateway {
    type Data = Peer;

    const HANDLERS: &'static [Handler<Self>] = &[
        Handler {
            opcode: OP_ERROR,
            allowed: StateSet::LIVE,
            handle: Gateway::on_error,
        },
        Handler {
            opcode: OP_REJECT,
            allowed: StateSet::UPSTREAM,
            handle: Gateway::on_upstream_reject,
        },
        Handler {
            opcode: OP_ROLE_HELLO_REQ,
            allowed: StateSet::ACCEPTED,
            handle: Gateway::on_client_hello,
        },
        Handler {
            opcode: OP_ROLE_HELLO_ACK,
            allowed: StateSet::DIALING,
            handle: Gateway::on_ack,
        },
        Handler {
            opcode: OP_PERF_PING,
            allowed: StateSet::SERVING,
            handle: Gateway::on_ping,
        },
        Handler {
            opcode: OP_PERF_PONG,
            allowed: StateSet::UPSTREAM,
            handle: Gateway::on_pong,
        },
        request!(order::OP_NEW_ORDER),
        request!(order::OP_CANCEL_ORDER),
        request!(order::OP_REPLACE_ORDER),
        request!(order::OP_BOOK_QUERY),
        request!(order::OP_BALANCE_QUERY),
        answer!(order::OP_ORDER_ACCEPTED),
        answer!(order::OP_ORDER_EXECUTED),
        answer!(order::OP_ORDER_CANCELED),
        answer!(order::OP_ORDER_REPLACED),
        answer!(order::OP_BOOK_SNAPSHOT),
        answer!(order::OP_BALANCE),
    ];

    fn on_start(&mut self, cx: &mut Context<'_, Self>) {
        assert!(
            self.config.workers == 1
                || self.config.handoff_lane_need() <= cx.config().handoff_backlog_max,
            "handoff lanes of {} bytes cannot hold a credit of {}",
            cx.config().handoff_backlog_max,
            self.config.handoff_inflight_bytes_max
        );
        self.open_orders = Some(OpenOrders::new(
            self.config.open_orders_max,
            cx.config().sessions_max,
        ));
        for lane in 0..self.upstreams.len() {
            self.dial(cx, lane);
        }
    }

    fn on_open(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, origin: Origin) {
        match origin {
            Origin::Accepted => {
                self.stats.clients_opened += 1;
                let session = cx.session(conn).expect("just opened").id.0;
                let target = self.upstream_of(session);
                cx.data_mut(conn).expect("just opened").target = target;
                cx.set_input_group(conn, InputGroup(target.0));
            }
            Origin::Dialed { .. } => {
                let hello = RoleHelloReq::new(Role::Gateway, &self.config.upstream_token);
                cx.send(conn, 7 + hello.token.len(), |out| {
                    hello.encode(out);
                });
                let lane = Gateway::lane_at(cx, conn);
                self.upstreams[lane].link = Link::Handshaking(conn);
            }
        }
    }

    fn on_close(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, session: Session<Peer>) {
        if session.state.side == Side::Acceptor {
            self.stats.clients_closed += 1;
            self.inflight_total -= u64::from(session.data.inflight);
            // Requests still in flight give back what they reserved; their
            // answers will find no client.
            if let Some(client) = session.data.client {
                for pend in &session.data.pending {
                    self.risk.release(client, pend.reserved);
                }
            }
            self.cancel_orders_of(cx, conn, session.data.client);
            return;
        }
        let Some(lane) = self.lane_linked(conn) else {
            return;
        };
        self.stats.upstream_losses += 1;
        while let Some(p) = self.upstreams[lane].fifo.pop_front() {
            if p.internal {
                // The gateway's cancel may not have arrived: sent again
                // once the upstream is back.
                self.hold(p.doubt);
                continue;
            }
            let len = p.len as usize;
            // An order or replace may have reached the exchange and rest
            // there: it is in doubt, and canceled once the upstream is back.
            let in_doubt = matches!(p.opcode, order::OP_NEW_ORDER | order::OP_REPLACE_ORDER);
            self.answer_reject(
                cx,
                p.route,
                p.seq,
                len,
                ErrorCode::UpstreamUnavailable,
                in_doubt,
            );
        }
        // Pings wait no more: with no upstream they are rejected at once.
        self.upstreams[lane].congested = false;
        self.announce_congestion(cx);
        self.schedule_reconnect(lane, cx.now());
    }

    fn on_connect_failed(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, _: Session<Peer>) {
        if let Some(lane) = self
            .upstreams
            .iter()
            .position(|u| u.link == Link::Dialing(conn))
        {
            self.schedule_reconnect(lane, cx.now());
        }
    }

    fn on_drained(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) {
        let lane = Gateway::lane_at(cx, conn);
        if self
            .upstreams
            .get(lane)
            .is_some_and(|u| u.link == Link::Up(conn))
        {
            self.flush_in_doubt(cx, lane);
            self.upstreams[lane].congested = false;
            self.announce_congestion(cx);
        }
    }

    fn on_handoff(&mut self, cx: &mut Context<'_, Self>, source: WorkerId, frame: Frame<'_>) {
        let p = frame.payload;
        match frame.opcode {
            OP_PERF_PING | order::OP_NEW_ORDER..=order::OP_BALANCE_QUERY => {
                let route = read_u64(p, offset::ROUTE - offset::SEQ);
                let seq = read_u64(p, 0);
                let read_at = Nanos(read_u64(p, offset::T2 - offset::SEQ));
                self.forward(cx, frame.opcode, route, seq, p, read_at);
            }
            OP_ROUTED_FIRST => {
                let credit = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                let opcode = u16::from_be_bytes([p[4], p[5]]);
                let payload = &p[6..];
                let tag = RouteTag::from_bits(read_u64(payload, offset::ROUTE - offset::SEQ));
                self.came_back(cx, tag, credit);
                let read_at = Nanos(read_u64(payload, offset::T4 - offset::SEQ));
                self.deliver_order_msg(cx, tag.conn, opcode, payload, Some(read_at));
            }
            order::OP_ORDER_ACCEPTED..=order::OP_BALANCE => {
                let tag = RouteTag::from_bits(read_u64(p, offset::ROUTE - offset::SEQ));
                self.deliver_order_msg(cx, tag.conn, frame.opcode, p, None);
            }
            OP_PERF_PONG => {
                let tag = RouteTag::from_bits(read_u64(p, offset::ROUTE - offset::SEQ));
                self.came_back(cx, tag, frame.wire_len());
                let read_at = Nanos(read_u64(p, offset::T4 - offset::SEQ));
                self.deliver_pong(cx, tag.conn, p, read_at);
            }
            OP_ROUTED_REJECT => {
                let route = read_u64(p, 0);
                let seq = read_u64(p, 8);
                let code = ErrorCode::from_u16(u16::from_be_bytes([p[16], p[17]]));
                let len = u32::from_be_bytes([p[18], p[19], p[20], p[21]]) as usize;
                let in_doubt = p[22] != 0;
                let tag = RouteTag::from_bits(route);
                self.came_back(cx, tag, len);
                self.deliver_reject(cx, tag.conn, seq, code, in_doubt);
                // Another worker's upstream was lost; this one's, if live,
                // cancels what that left in doubt.
                let lane = usize::from(self.lane_of(tag.conn));
                self.flush_in_doubt(cx, lane);
            }
            OP_UPSTREAM_CONGESTED => {
                self.remote_congested[source.index()] = p[0] != 0;
                self.gate(cx, source);
            }
            opcode => unreachable!("gateway workers hand off no opcode {opcode}"),
        }
    }

    fn on_timeout(&mut self, cx: &mut Context<'_, Self>) {
        for lane in 0..self.upstreams.len() {
            if let Link::Down { retry_at } = self.upstreams[lane].link {
                if cx.now() >= retry_at {
                    self.dial(cx, lane);
                }
            }
        }
    }

    fn on_shutdown(&mut self, cx: &mut Context<'_, Self>) {
        self.draining = true;
        self.cancel_all_on_drain(cx);
    }

    fn poll_timeout(&self) -> Option<Nanos> {
        self.upstreams
            .iter()
            .filter_map(|u| match u.link {
                Link::Down { retry_at } => Some(retry_at),
                _ => None,
            })
            .min()
    }

    fn is_ready(&self) -> bool {
        self.upstream_up()
    }

    fn is_done(&self) -> bool {
        // The gateway's own cancels (cancel on disconnect, the drain's, the
        // orders in doubt) are answered before it closes its upstreams.
        self.draining
            && self.inflight_total == 0
            && self.upstreams.iter().all(|u| u.fifo.is_empty())
            && self.in_doubt_len == 0
    }
}
