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
use std::fmt;
use std::str::FromStr;

use fep_core::frame::{encode_frame, FrameWriter};
use fep_core::limits::{IN_DOUBT_MAX_DEFAULT, WORKERS_MAX};
use fep_core::wire::{RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{
    ConnId, Context, ErrorCode, Fault, Frame, Handler, InputGroup, Nanos, Origin, PeerId, Phase,
    Service, Session, Side, StateSet, WorkerId,
};

use crate::hello::{accept_ack, Admission};
use crate::latency::LatencyHistogram;
use crate::msg::{
    offset, patch_u64, read_u64, PerfPing, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG,
    OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ,
};
use crate::open_orders::OpenOrders;
use crate::order::{self, OrderMsg};
use crate::risk::{
    self, Check, ClientId, OrderTerms, ReasonBuf, Refusal, ReplaceTerms, Reservation, Risk,
    RiskConfig, RiskHandle,
};
use crate::Role;

/// Which upstream a client's pings take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The owner worker's upstream (`idx = worker_id % workers`, scenario s2).
    Local,
    /// Upstream `idx = session_id % workers`, possibly another worker's
    /// (scenario s3).
    Handoff,
}

impl Routing {
    /// Every routing, in the order of [`Routing::NAMES`].
    pub const ALL: [Routing; 2] = [Routing::Local, Routing::Handoff];

    /// The names flags and result files use, in the order of
    /// [`Routing::ALL`].
    pub const NAMES: [&'static str; 2] = {
        let mut names = [""; 2];
        let mut i = 0;
        while i < names.len() {
            names[i] = Routing::ALL[i].name();
            i += 1;
        }
        names
    };

    /// `local` or `handoff`.
    pub const fn name(self) -> &'static str {
        match self {
            Routing::Local => "local",
            Routing::Handoff => "handoff",
        }
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A routing name that is not `local` or `handoff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownRouting(pub String);

impl fmt::Display for UnknownRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown routing {:?} (expected local or handoff)",
            self.0
        )
    }
}

impl std::error::Error for UnknownRouting {}

impl FromStr for Routing {
    type Err = UnknownRouting;
    fn from_str(s: &str) -> Result<Routing, UnknownRouting> {
        Routing::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRouting(s.to_owned()))
    }
}

/// Settings of a gateway worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Workers of the process.
    pub workers: u16,
    /// How pings pick their upstream.
    pub routing: Routing,
    /// The token clients must present, if any.
    pub token: Option<String>,
    /// The token this gateway presents upstream.
    pub upstream_token: String,
    /// Requests (pings and order entry) one client may have in flight;
    /// past it `Reject{OVERLOADED}`.
    pub inflight_per_session_max: u32,
    /// Cancel a client's open orders when its connection closes
    /// (PROTOCOL.md "Cancel on disconnect"; on by default).
    pub cancel_on_disconnect: bool,
    /// Open orders this worker tracks for its clients (for cancel on
    /// disconnect and exposure); past it a `NewOrder` is refused
    /// `Reject{OVERLOADED}`.
    pub open_orders_max: usize,
    /// Who may trade what, and the pre-trade limits (`--risk FILE`),
    /// shared by every worker. `None`: one client, every account, no
    /// limits, the hand-shake checked against `token` (as without a file).
    pub risk: Option<RiskHandle>,
    /// Pings one upstream session may have in flight; past it
    /// `Reject{OVERLOADED}`. The default holds 10,000 clients with 30 pings
    /// in flight each.
    pub upstream_inflight_max: usize,
    /// Upstream sessions per worker (1 to [`UPSTREAM_CONNECTIONS_MAX`]);
    /// each client's requests take one of them (see "Upstream sessions").
    pub upstream_connections: u16,
    /// First reconnect delay; doubled per failure up to the max.
    pub reconnect_backoff_min: Nanos,
    /// Longest reconnect delay.
    pub reconnect_backoff_max: Nanos,
    /// Bytes of this worker's client pings out through one other worker's
    /// upstream (ping frames, counted until their answer is back). At half
    /// of it the clients routed there are paused; past it a ping is shed
    /// with `Reject{OVERLOADED}`. It bounds what the handoff lanes hold.
    pub handoff_inflight_bytes_max: usize,
    /// Orders in doubt (and cancels not yet sent) this worker remembers
    /// until its upstream is back; past it an order's reservation is
    /// released at once, as if it never reached the exchange, and a
    /// cancel is dropped (both counted in
    /// [`GatewayStats::in_doubt_overflows`]).
    pub in_doubt_max: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            workers: 1,
            routing: Routing::Local,
            token: None,
            upstream_token: String::new(),
            inflight_per_session_max: 1024,
            upstream_inflight_max: 1 << 19,
            upstream_connections: 1,
            reconnect_backoff_min: Nanos::from_millis(1),
            reconnect_backoff_max: Nanos::from_millis(500),
            handoff_inflight_bytes_max: 2 * 1024 * 1024,
            cancel_on_disconnect: true,
            open_orders_max: 1 << 16,
            risk: None,
            in_doubt_max: IN_DOUBT_MAX_DEFAULT,
        }
    }
}

/// The gateway's routing tag, carried in a ping's `route` field:
/// `origin:8 | target:8 | conn:48`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteTag {
    /// The worker that owns the client session.
    pub origin: WorkerId,
    /// The worker whose upstream carries the ping.
    pub target: WorkerId,
    /// The client connection on `origin`.
    pub conn: ConnId,
}

impl RouteTag {
    /// The tag as the `route` field.
    pub fn to_bits(self) -> u64 {
        const _: () = assert!(WORKERS_MAX <= 256);
        (u64::from(self.origin.0) << 56) | (u64::from(self.target.0) << 48) | self.conn.to_bits()
    }

    /// The tag from a `route` field.
    pub fn from_bits(bits: u64) -> RouteTag {
        RouteTag {
            origin: WorkerId((bits >> 56) as u16),
            target: WorkerId(((bits >> 48) & 0xff) as u16),
            conn: ConnId::from_bits(bits),
        }
    }
}

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

/// Upstream sessions one gateway worker may keep
/// ([`GatewayConfig::upstream_connections`]).
pub const UPSTREAM_CONNECTIONS_MAX: u16 = 64;

/// Counters of one gateway worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Pings accepted from this worker's clients.
    pub pings: u64,
    /// Pings written to this worker's upstream.
    pub forwarded: u64,
    /// Pongs delivered to this worker's clients.
    pub pongs: u64,
    /// Rejects delivered to this worker's clients.
    pub rejects: u64,
    /// Frames handed to other workers (pings, pongs, routed rejects).
    pub handoffs: u64,
    /// Answers whose client had gone.
    pub orphans: u64,
    /// Upstream connections hand-shaked.
    pub upstream_connects: u64,
    /// Upstream connections lost.
    pub upstream_losses: u64,
    /// Order-entry requests accepted from this worker's clients.
    pub orders: u64,
    /// Order-entry messages delivered to this worker's clients (first
    /// answers and later ones).
    pub order_answers: u64,
    /// Cancels sent for the open orders of clients that left.
    pub disconnect_cancels: u64,
    /// Orders put in doubt by an upstream loss (in flight there, so
    /// perhaps resting at the exchange), their exposure kept.
    pub in_doubt: u64,
    /// The gateway's cancels sent from the in-doubt FIFO once an upstream
    /// was back (for orders in doubt, and cancels deferred by an outage).
    pub in_doubt_cancels: u64,
    /// In-doubt entries refused by a full FIFO: an order's reservation
    /// released at once, or a cancel dropped.
    pub in_doubt_overflows: u64,
    /// Later messages (fills, IOC rests) not delivered: their client had
    /// gone, or the lane to its worker was full.
    pub later_dropped: u64,
    /// Requests refused `RISK_LIMIT`, by check (indexed as [`Check::ALL`]).
    pub risk_refusals: [u64; Check::ALL.len()],
    /// Client connections accepted.
    pub clients_opened: u64,
    /// Client connections closed.
    pub clients_closed: u64,
    /// Rejects delivered to this worker's clients, by error code (index
    /// = the code on the wire; codes past the table count in the last).
    pub rejects_by_code: [u64; REJECT_CODES],
    /// From a client request's read (on its client's worker) to its
    /// forwarding upstream with `t2` (on the upstream's worker): a handoff's
    /// crossing; 0 when both happen in one read. Recorded where forwarded.
    pub request_leg: LatencyHistogram,
    /// From a client request's forwarding (`t2`) to its first answer's read
    /// from the exchange (a pong, an order-entry answer or a `Reject`): the
    /// exchange as this gateway sees it. Recorded on the upstream's worker.
    pub upstream_leg: LatencyHistogram,
    /// From a first answer's read from the exchange to its queueing for the
    /// client with `t4` (pongs, and order-entry answers to stamped
    /// requests). Recorded on the client's worker.
    pub answer_leg: LatencyHistogram,
}

/// Slots of [`GatewayStats::rejects_by_code`]: every code PROTOCOL.md
/// defines (1–14) has its own.
pub const REJECT_CODES: usize = 16;

impl GatewayStats {
    /// Counts one `Reject` delivered to a client.
    fn rejected(&mut self, code: ErrorCode) {
        self.rejects += 1;
        let i = usize::from(code.to_u16()).min(REJECT_CODES - 1);
        self.rejects_by_code[i] += 1;
    }
}

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

    /// Whether new pings for worker `target`'s upstream should wait.
    fn congested(&self, target: WorkerId) -> bool {
        let t = target.index();
        if target == self.worker {
            self.upstream_congested
        } else {
            self.remote_congested[t] || self.via_high[t]
        }
    }

    /// Pauses or resumes the clients routed to `target`'s upstream as the
    /// way there is congested or not (the core sends only the edges).
    fn gate(&mut self, cx: &mut Context<'_, Self>, target: WorkerId) {
        let group = InputGroup(target.0);
        if self.congested(target) {
            cx.pause_group(group);
        } else {
            cx.resume_group(group);
        }
    }

    /// The credit with `target` moved: past half it is high, back at a
    /// quarter it is not (the gap keeps the group from flapping per ping).
    fn update_via(&mut self, cx: &mut Context<'_, Self>, target: WorkerId) {
        let t = target.index();
        let via = self.via_bytes[t];
        let max = self.config.handoff_inflight_bytes_max;
        let high = if self.via_high[t] {
            via > max / 4
        } else {
            via >= max / 2
        };
        if high != self.via_high[t] {
            self.via_high[t] = high;
            self.gate(cx, target);
        }
    }

    /// Tells every other worker whether one of this worker's upstream
    /// sessions is congested, on each change.
    fn announce_congestion(&mut self, cx: &mut Context<'_, Self>) {
        let congested = self.upstreams.iter().any(|u| u.congested);
        if self.upstream_congested == congested {
            return;
        }
        self.upstream_congested = congested;
        for t in 0..self.config.workers {
            let target = WorkerId(t);
            if target == self.worker {
                continue;
            }
            let handed = cx.handoff(target, 7, |out| {
                let mut w = FrameWriter::new(out, OP_UPSTREAM_CONGESTED);
                w.put_u8(u8::from(congested));
                w.finish();
            });
            assert!(handed, "the lane bound leaves room for control frames");
        }
        self.gate(cx, self.worker);
    }

    fn upstream_of(&self, session: u64) -> WorkerId {
        match self.config.routing {
            Routing::Local => self.worker,
            Routing::Handoff => WorkerId((session % u64::from(self.config.workers)) as u16),
        }
    }

    /// A ping this worker handed to another came back (answered there, or
    /// refused): its bytes of credit return.
    fn came_back(&mut self, cx: &mut Context<'_, Self>, tag: RouteTag, len: usize) {
        debug_assert_eq!(tag.origin, self.worker);
        let via = &mut self.via_bytes[tag.target.index()];
        assert!(
            *via >= len,
            "an answer from {:?} for nothing handed to it",
            tag.target
        );
        *via -= len;
        self.update_via(cx, tag.target);
    }

    fn on_client_hello(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        p: &[u8],
    ) -> Result<(), Fault> {
        let hello = RoleHelloReq::decode(p)?;
        // Role and version first, then whose token it is.
        self.admission.check(&hello)?;
        let Some(client) = self.risk.client_by_token(hello.token) else {
            return Err(Fault::RoleRefused {
                what: "wrong token",
            });
        };
        self.admission.accept(cx, conn, p, Role::Gateway)?;
        cx.data_mut(conn).expect("just hand-shaked").client = Some(client);
        Ok(())
    }

    fn on_ping(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let seq = PerfPing::decode(OP_PERF_PING, payload)?.seq;
        let pend = Pend::default();
        self.admit(
            cx,
            conn,
            OP_PERF_PING,
            seq,
            payload,
            6 + payload.len(),
            pend,
        );
        Ok(())
    }

    /// An order-entry request from a client: checked whole, then on its way
    /// like a ping.
    fn on_request(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let msg = OrderMsg::decode(opcode, payload)?;
        let cl_ord_id = msg.header().cl_ord_id;
        if opcode == order::OP_NEW_ORDER
            && self.open_orders.as_ref().is_some_and(OpenOrders::is_full)
        {
            self.stats.rejected(ErrorCode::Overloaded);
            let why = "gateway's open-order table is full";
            cx.reject(conn, ErrorCode::Overloaded, cl_ord_id, why);
            return Ok(());
        }
        let pend = match self.check_risk(cx, conn, &msg) {
            Ok(pend) => pend,
            Err(refusal) => {
                self.stats.rejected(ErrorCode::RiskLimit);
                self.stats.risk_refusals[refusal.check().index()] += 1;
                let why = refusal.reason(&mut self.reason);
                cx.reject(conn, ErrorCode::RiskLimit, cl_ord_id, why);
                return Ok(());
            }
        };
        self.stats.orders += 1;
        let credit = credit_of(opcode, payload);
        if !self.admit(cx, conn, opcode, cl_ord_id, payload, credit, pend) {
            self.risk.release(client_of(cx, conn), pend.reserved);
        }
        Ok(())
    }

    /// The pre-trade checks of a request from `conn`'s client: what it
    /// reserves, or why it is refused (it then never reaches the exchange).
    /// Cancels and queries are checked for the account alone.
    fn check_risk(
        &mut self,
        cx: &Context<'_, Self>,
        conn: ConnId,
        msg: &OrderMsg<'_>,
    ) -> Result<Pend, Refusal> {
        let client = client_of(cx, conn);
        let now = cx.now();
        let account = match *msg {
            OrderMsg::NewOrder(m) => m.account,
            OrderMsg::ReplaceOrder(m) => m.account,
            _ => 0,
        };
        let reserved = match *msg {
            OrderMsg::NewOrder(m) => {
                let terms = OrderTerms {
                    account: m.account,
                    instrument: m.instrument,
                    side: risk::Side::from_u8(m.side),
                    price: m.price,
                    qty: m.qty,
                };
                self.risk.check_new(now, client, &terms)?
            }
            OrderMsg::ReplaceOrder(m) => {
                // The order is named by (account, cl_ord_id), which the
                // open-order view does not index: the whole new notional is
                // reserved, and settled against what was held on the answer.
                let terms = ReplaceTerms {
                    account: m.account,
                    price: m.price,
                    qty: m.qty,
                    current: None,
                    instrument: None,
                    side: None,
                };
                self.risk.check_replace(now, client, &terms)?
            }
            OrderMsg::CancelOrder(m) => {
                self.risk.check_cancel(client, m.account)?;
                Reservation::default()
            }
            OrderMsg::BalanceQuery(m) => {
                self.risk.check_balance_query(client, m.account)?;
                Reservation::default()
            }
            _ => Reservation::default(),
        };
        Ok(Pend { reserved, account })
    }

    /// Takes a client request (`opcode`, `seq`, whole `payload`) on its way
    /// to its upstream, holding `credit` bytes with a remote one until its
    /// first answer is back, and `pend` until its connection's worker
    /// settles it; or rejects it at once (`false`).
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        seq: u64,
        payload: &[u8],
        credit: usize,
        pend: Pend,
    ) -> bool {
        if self.draining {
            self.stats.rejected(ErrorCode::ShuttingDown);
            cx.reject(conn, ErrorCode::ShuttingDown, seq, "gateway is draining");
            return false;
        }
        let peer = cx.data_mut(conn).expect("handler runs on a live session");
        let target = peer.target;
        if peer.inflight >= self.config.inflight_per_session_max {
            self.stats.rejected(ErrorCode::Overloaded);
            cx.reject(
                conn,
                ErrorCode::Overloaded,
                seq,
                "too many requests in flight on this session",
            );
            return false;
        }
        let len = 6 + payload.len();
        if target != self.worker
            && self.via_bytes[target.index()] + credit > self.config.handoff_inflight_bytes_max
        {
            // Only a driver that ignores pauses gets here.
            self.stats.rejected(ErrorCode::Overloaded);
            cx.reject(
                conn,
                ErrorCode::Overloaded,
                seq,
                "credit with the upstream's worker spent",
            );
            return false;
        }
        peer.inflight += 1;
        peer.pending.push_back(pend);
        self.inflight_total += 1;
        if opcode == OP_PERF_PING {
            self.stats.pings += 1;
        }
        let route = RouteTag {
            origin: self.worker,
            target,
            conn,
        }
        .to_bits();
        let read_at = cx.now();
        if target == self.worker {
            self.forward(cx, opcode, route, seq, payload, read_at);
        } else {
            self.via_bytes[target.index()] += credit;
            self.stats.handoffs += 1;
            let handed = cx.handoff(target, len, |out| {
                let start = out.len();
                encode_frame(out, opcode, payload);
                patch_u64(&mut out[start..], offset::ROUTE, route);
                // In the lane `t2` carries the read's time (the target
                // stamps its own when it forwards): the request leg.
                patch_u64(&mut out[start..], offset::T2, read_at.as_u64());
            });
            assert!(handed, "the credit keeps the lane within its bound");
            self.update_via(cx, target);
        }
        true
    }

    /// Writes a request (a ping or an order-entry request, read from its
    /// client at `read_at`) to this worker's upstream, stamping `route` and
    /// `t2`, or rejects it.
    fn forward(
        &mut self,
        cx: &mut Context<'_, Self>,
        opcode: u16,
        route: u64,
        seq: u64,
        payload: &[u8],
        read_at: Nanos,
    ) {
        let len = 6 + payload.len();
        // The credit this request holds with its origin (same rule there).
        let credit = if opcode == OP_PERF_PING {
            len
        } else {
            credit_of(opcode, payload)
        };
        let lane = usize::from(self.lane_of(RouteTag::from_bits(route).conn));
        let Link::Up(upstream) = self.upstreams[lane].link else {
            return self.answer_reject(
                cx,
                route,
                seq,
                credit,
                ErrorCode::UpstreamUnavailable,
                false,
            );
        };
        if self.upstreams[lane].fifo.len() >= self.config.upstream_inflight_max {
            return self.answer_reject(cx, route, seq, credit, ErrorCode::Overloaded, false);
        }
        // Past the output bound the engine would cut the upstream, and with
        // it every client's pings in flight: shed this one instead. (Clients
        // are paused well before, at the high-water mark; other workers
        // hear of it a moment later.)
        let backlog = cx.session(upstream).map_or(0, |s| s.backlog());
        if backlog + len > cx.config().output_backlog_max {
            return self.answer_reject(cx, route, seq, credit, ErrorCode::Overloaded, false);
        }
        let now = cx.now();
        let t2 = now.as_u64();
        let sent = cx.forward(
            upstream,
            opcode,
            payload,
            &[(offset::ROUTE, route), (offset::T2, t2)],
        );
        if sent {
            self.stats.forwarded += 1;
            self.stats.request_leg.record((now - read_at).as_u64());
            let len = u32::try_from(credit).expect("a credit fits u32");
            self.upstreams[lane].fifo.push_back(Pending {
                route,
                seq,
                len,
                internal: false,
                doubt: InDoubt::default(),
                opcode,
                sent_at: now,
            });
            if cx.session(upstream).is_some_and(|s| s.output_high()) {
                self.upstreams[lane].congested = true;
                self.announce_congestion(cx);
            }
        } else {
            self.answer_reject(
                cx,
                route,
                seq,
                credit,
                ErrorCode::UpstreamUnavailable,
                false,
            );
        }
    }

    /// Sends `Reject{code}` for a request (holding `len` bytes of credit)
    /// to its client, on whichever worker owns it. `in_doubt`: the request
    /// may have reached the exchange (an order in flight at an upstream
    /// loss), so its worker keeps its reservation and cancels it later.
    fn answer_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        route: u64,
        seq: u64,
        len: usize,
        code: ErrorCode,
        in_doubt: bool,
    ) {
        let tag = RouteTag::from_bits(route);
        if tag.origin == self.worker {
            self.deliver_reject(cx, tag.conn, seq, code, in_doubt);
            return;
        }
        let len = u32::try_from(len).expect("a frame length fits u32");
        self.stats.handoffs += 1;
        let handed = cx.handoff(tag.origin, 29, |out| {
            let mut w = FrameWriter::new(out, OP_ROUTED_REJECT);
            w.put_u64(route)
                .put_u64(seq)
                .put_u16(code.to_u16())
                .put_u32(len)
                .put_u8(u8::from(in_doubt));
            w.finish();
        });
        assert!(
            handed,
            "the origin's credit keeps the lane within its bound"
        );
    }

    /// Settles the oldest request in flight of this worker's client `conn`:
    /// its [`Pend`], or `None` if its client went.
    fn settle(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) -> Option<Pend> {
        let live = cx.state(conn).is_some_and(|s| s.phase == Phase::Handshaked);
        match cx.data_mut(conn) {
            Some(peer) if live && peer.inflight > 0 => {
                peer.inflight -= 1;
                self.inflight_total -= 1;
                let pend = peer.pending.pop_front();
                debug_assert!(pend.is_some(), "one pend per request in flight");
                pend
            }
            _ => {
                self.stats.orphans += 1;
                None
            }
        }
    }

    fn deliver_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        seq: u64,
        code: ErrorCode,
        in_doubt: bool,
    ) {
        if let Some(pend) = self.settle(cx, conn) {
            let client = client_of(cx, conn);
            if in_doubt {
                // It may rest at the exchange: its exposure stays counted
                // until the gateway's cancel of it is answered.
                let doubt = InDoubt {
                    client: Some(client),
                    account: pend.account,
                    name: seq,
                    reserved: pend.reserved,
                    lane: self.lane_of(conn),
                };
                if self.hold(doubt) {
                    self.stats.in_doubt += 1;
                }
            } else {
                // Refused upstream or here: what its check reserved goes
                // back.
                self.risk.release(client, pend.reserved);
            }
            self.stats.rejected(code);
            let reason = match code {
                ErrorCode::UpstreamUnavailable if in_doubt => {
                    "upstream lost with the order in flight; the gateway cancels it on reconnect"
                }
                ErrorCode::UpstreamUnavailable => "no live upstream",
                ErrorCode::Overloaded => "upstream in-flight bound reached",
                ErrorCode::ShuttingDown => "exchange is draining",
                _ => "refused upstream",
            };
            cx.reject(conn, code, seq, reason);
        }
    }

    /// Delivers a pong its upstream's worker read at `read_at`.
    fn deliver_pong(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
        read_at: Nanos,
    ) {
        if self.settle(cx, conn).is_some() {
            self.stats.pongs += 1;
            let now = cx.now();
            self.stats.answer_leg.record((now - read_at).as_u64());
            cx.forward(conn, OP_PERF_PONG, payload, &[(offset::T4, now.as_u64())]);
        }
    }

    fn on_pong(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let pong = PerfPing::decode(OP_PERF_PONG, payload)?;
        // Check everything before taking the entry: a pong that fails a
        // check cuts the upstream, and the entry must still be in the FIFO
        // then, to be rejected with the others.
        let lane = Gateway::lane_at(cx, conn);
        let oldest = self.oldest(lane, OP_PERF_PONG, pong.seq)?;
        if oldest.route != pong.route {
            return Err(Fault::Unsolicited {
                opcode: OP_PERF_PONG,
                what: "pong route was altered",
            });
        }
        if !answers(oldest.opcode, OP_PERF_PONG) {
            return Err(Fault::Unsolicited {
                opcode: OP_PERF_PONG,
                what: "answer is not of its request's kind",
            });
        }
        // The pad comes back unchanged, so the pong is as long as its ping:
        // the origin's credit counts on it.
        if 6 + payload.len() != oldest.len as usize {
            return Err(Fault::Unsolicited {
                opcode: OP_PERF_PONG,
                what: "pong length differs from its ping",
            });
        }
        self.upstreams[lane].pop_oldest();
        debug_assert!(matches!(self.upstreams[lane].link, Link::Up(up) if up == conn));
        let now = cx.now();
        self.stats
            .upstream_leg
            .record((now - oldest.sent_at).as_u64());
        let tag = RouteTag::from_bits(pong.route);
        if tag.origin == self.worker {
            self.deliver_pong(cx, tag.conn, payload, now);
        } else {
            self.stats.handoffs += 1;
            let handed = cx.handoff(tag.origin, 6 + payload.len(), |out| {
                let start = out.len();
                encode_frame(out, OP_PERF_PONG, payload);
                // In the lane `t4` carries the read's time (the origin
                // stamps its own when it delivers): the answer leg.
                patch_u64(&mut out[start..], offset::T4, now.as_u64());
            });
            assert!(
                handed,
                "the origin's credit keeps the lane within its bound"
            );
        }
        Ok(())
    }

    /// The oldest request in flight on upstream `lane`, if `seq` answers
    /// it. It stays in the FIFO: the caller pops it once the whole answer
    /// checks out.
    fn oldest(&self, lane: usize, opcode: u16, seq: u64) -> Result<Pending, Fault> {
        match self.upstreams[lane].fifo.front() {
            None => Err(Fault::Unsolicited {
                opcode,
                what: "answer with no ping in flight",
            }),
            Some(p) if p.seq != seq => Err(Fault::Unsolicited {
                opcode,
                what: "answer is not for the oldest ping in flight",
            }),
            Some(p) => Ok(*p),
        }
    }

    fn on_upstream_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        p: &[u8],
    ) -> Result<(), Fault> {
        let reject = RejectMsg::decode(p)?;
        let lane = Gateway::lane_at(cx, conn);
        let oldest = self.oldest(lane, OP_REJECT, reject.seq)?;
        self.upstreams[lane].pop_oldest();
        if oldest.internal {
            // The gateway's own cancel of an order that had closed
            // meanwhile (or never reached the exchange): no longer open.
            self.release_doubt(oldest.doubt);
            return Ok(());
        }
        self.stats
            .upstream_leg
            .record((cx.now() - oldest.sent_at).as_u64());
        let len = oldest.len as usize;
        self.answer_reject(cx, oldest.route, oldest.seq, len, reject.code, false);
        Ok(())
    }

    /// An order-entry message from the exchange: a request's first answer
    /// closes its in-flight entry and goes back to its client; a later
    /// message (a fill, an IOC's rest) goes to the client its `route` names.
    fn on_answer(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        // Checked whole before anything moves: a bad answer cuts the
        // upstream with its entries still in the FIFO.
        let msg = OrderMsg::decode(opcode, payload)?;
        let h = msg.header();
        let tag = RouteTag::from_bits(h.route);
        if !order::is_first_answer(opcode, payload) {
            if tag.origin.0 >= self.config.workers {
                return Err(Fault::Unsolicited {
                    opcode,
                    what: "a later message's route names no worker",
                });
            }
            self.route_later(cx, tag, opcode, payload);
            return Ok(());
        }
        let lane = Gateway::lane_at(cx, conn);
        let oldest = self.oldest(lane, opcode, h.cl_ord_id)?;
        if oldest.route != h.route {
            return Err(Fault::Unsolicited {
                opcode,
                what: "answer route was altered",
            });
        }
        if !answers(oldest.opcode, opcode) {
            return Err(Fault::Unsolicited {
                opcode,
                what: "answer is not of its request's kind",
            });
        }
        // The request's credit holds the largest answer the contract allows
        // it (a snapshot of at most 100 levels a side): a longer one is the
        // exchange's fault, and would overrun the lane the credit bounds.
        if !oldest.internal && 6 + payload.len() > oldest.len as usize {
            return Err(Fault::Unsolicited {
                opcode,
                what: "answer longer than its request allows",
            });
        }
        self.upstreams[lane].pop_oldest();
        if oldest.internal {
            if let OrderMsg::OrderCanceled(m) = msg {
                self.close_canceled(cx, m.order_id);
            }
            self.release_doubt(oldest.doubt);
            return Ok(());
        }
        let now = cx.now();
        self.stats
            .upstream_leg
            .record((now - oldest.sent_at).as_u64());
        if tag.origin == self.worker {
            self.deliver_order_msg(cx, tag.conn, opcode, payload, Some(now));
        } else {
            self.stats.handoffs += 1;
            let stamped = is_stamped(payload);
            let handed = cx.handoff(tag.origin, 12 + payload.len(), |out| {
                let start = out.len();
                let mut w = FrameWriter::new(out, OP_ROUTED_FIRST);
                w.put_u32(oldest.len).put_u16(opcode).put_slice(payload);
                w.finish();
                if stamped {
                    // As for a pong: `t4` carries the read's time in the lane.
                    let at = start + 12 + offset::T4 - offset::SEQ;
                    patch_u64(&mut out[at..], 0, now.as_u64());
                }
            });
            assert!(
                handed,
                "the origin's credit keeps the lane within its bound"
            );
        }
        Ok(())
    }

    /// A later message for the client `tag` names, on whichever worker.
    fn route_later(
        &mut self,
        cx: &mut Context<'_, Self>,
        tag: RouteTag,
        opcode: u16,
        payload: &[u8],
    ) {
        if tag.origin == self.worker {
            self.deliver_order_msg(cx, tag.conn, opcode, payload, None);
            return;
        }
        // Outside any credit: shed rather than pass the lane's bound.
        let room = cx.handoff_backlog(tag.origin) + 6 + payload.len()
            <= cx.config().handoff_backlog_max / 2;
        let handed = room
            && cx.handoff(tag.origin, 6 + payload.len(), |out| {
                encode_frame(out, opcode, payload);
            });
        if handed {
            self.stats.handoffs += 1;
        } else {
            self.stats.later_dropped += 1;
        }
    }

    /// Delivers an order-entry message to this worker's client `conn`,
    /// stamping `t4` on what answers a request (a maker's message has no
    /// stamps but `t3`), and learns the client's open orders from it.
    /// `first_read_at`: for a request's first answer, when its upstream's
    /// worker read it.
    fn deliver_order_msg(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
        first_read_at: Option<Nanos>,
    ) {
        let pend = if first_read_at.is_some() {
            let Some(pend) = self.settle(cx, conn) else {
                self.cancel_late(cx, conn, opcode, payload);
                return;
            };
            Some(pend)
        } else {
            None
        };
        let live = cx.state(conn).is_some_and(|s| s.phase == Phase::Handshaked);
        if !live {
            self.stats.later_dropped += 1;
            self.cancel_late(cx, conn, opcode, payload);
            return;
        }
        let client = client_of(cx, conn);
        let opened = self.opened_on_drain(opcode, payload);
        self.track(conn, client, opcode, payload, pend);
        if let Some(order_id) = opened {
            self.cancel_opened_on_drain(cx, client, order_id);
        }
        self.stats.order_answers += 1;
        let stamped = is_stamped(payload);
        let now = cx.now();
        if let (Some(read_at), true) = (first_read_at, stamped) {
            self.stats.answer_leg.record((now - read_at).as_u64());
        }
        let t4 = now.as_u64();
        cx.send(conn, 6 + payload.len(), |out| {
            let start = out.len();
            encode_frame(out, opcode, payload);
            if stamped {
                patch_u64(&mut out[start..], offset::T4, t4);
            }
        });
    }

    /// Updates the open-order view and `client`'s exposure with a message
    /// delivered to `conn` (`pend`: the request it first-answers). Exposure
    /// is settled only from the gateway's own record of an order, so an
    /// exchange's message can never remove more than was counted.
    fn track(
        &mut self,
        conn: ConnId,
        client: ClientId,
        opcode: u16,
        payload: &[u8],
        pend: Option<Pend>,
    ) {
        let Some(orders) = self.open_orders.as_mut() else {
            return;
        };
        let Ok(msg) = OrderMsg::decode(opcode, payload) else {
            unreachable!("checked where it arrived");
        };
        let reserved = pend.map_or(Reservation::default(), |p| p.reserved);
        match msg {
            OrderMsg::OrderAccepted(m) => {
                let tracked = orders.open(
                    conn,
                    m.order_id,
                    m.account,
                    m.h.cl_ord_id,
                    m.instrument,
                    m.price,
                    m.qty,
                );
                if tracked.is_err() {
                    // Untracked, it will never be settled: give it back now.
                    self.risk.release(client, reserved);
                }
            }
            OrderMsg::OrderReplaced(m) => {
                let new = risk_notional(m.price, m.qty);
                match orders.open(
                    conn,
                    m.order_id,
                    m.account,
                    m.h.cl_ord_id,
                    0,
                    m.price,
                    m.qty,
                ) {
                    Ok(before) => {
                        let held = before.map_or(0, |b| risk_notional(b.price, b.open));
                        self.risk.on_replaced(client, reserved, held, new);
                        if before.is_none() {
                            // Renamed by a connection of another worker (or
                            // after this worker let it go): tracked here from
                            // now on, it must hold a count of its own, which
                            // its close will take off. The old worker's stale
                            // entry keeps its count until its connection
                            // closes (cautious meanwhile); without this, a
                            // fill closing it here took a count never added,
                            // and the gateway panicked "open orders would go
                            // negative".
                            self.risk.on_open(client, 0);
                        }
                    }
                    Err(()) => self.risk.release(client, reserved),
                }
            }
            OrderMsg::OrderExecuted(m) => {
                if let Some(before) = orders.fill(m.order_id, m.leaves) {
                    // From the gateway's record: a closed order gives back
                    // all it held, an open one what was filled, never more.
                    let closed = m.leaves == 0;
                    let qty = if closed {
                        before.open
                    } else {
                        m.qty.min(before.open)
                    };
                    self.risk
                        .on_reduce(client, risk_notional(before.price, qty), closed);
                    // A fill carries no instrument: the order's own is known.
                    if before.instrument != 0 {
                        self.risk.on_trade(before.instrument, m.price);
                    }
                }
            }
            OrderMsg::OrderCanceled(m) => {
                if let Some(before) = orders.close(m.order_id) {
                    self.risk
                        .on_reduce(client, risk_notional(before.price, before.open), true);
                }
            }
            _ => {}
        }
    }

    /// Cancels the open orders `conn`'s requests named (cancel on
    /// disconnect), or forgets them when that is off.
    /// With cancel on disconnect, the orders' exposure is given back at
    /// once: each is going away, by the cancel or by a fill on its way.
    /// Without it they stay open at the exchange, and so does their
    /// exposure (the gateway can no longer see them close).
    fn cancel_orders_of(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        client: Option<ClientId>,
    ) {
        let Some(mut orders) = self.open_orders.take() else {
            return;
        };
        while let Some(o) = orders.pop_conn(conn) {
            if self.config.cancel_on_disconnect {
                self.cancel_tracked(cx, o, client);
            }
        }
        self.open_orders = Some(orders);
    }

    /// Sends the gateway's cancel of `o`, an order no longer tracked, on
    /// the lane of the connection that named it, and takes what it held
    /// off `client`'s exposure at once.
    fn cancel_tracked(
        &mut self,
        cx: &mut Context<'_, Self>,
        o: crate::open_orders::Tracked,
        client: Option<ClientId>,
    ) {
        // Its exposure comes off below, so the cancel holds none.
        let doubt = InDoubt {
            client: None,
            account: o.account,
            name: o.name,
            reserved: Reservation::default(),
            lane: self.lane_of(o.conn),
        };
        if self.send_cancel(cx, doubt) {
            self.stats.disconnect_cancels += 1;
        }
        if let Some(client) = client {
            self.risk
                .on_reduce(client, risk_notional(o.price, o.open), true);
        }
    }

    /// A drain ends every client's session: with cancel on disconnect, the
    /// gateway cancels every order its clients have open before it closes
    /// (the clients stay connected meanwhile, for the answers still owed
    /// to them). What opens later, from a request in flight at the drain's
    /// start, is canceled as it opens ([`Gateway::cancel_opened_on_drain`]).
    /// The drain is done once every cancel is answered
    /// ([`Service::is_done`]).
    fn cancel_all_on_drain(&mut self, cx: &mut Context<'_, Self>) {
        if !self.config.cancel_on_disconnect {
            return;
        }
        let Some(mut orders) = self.open_orders.take() else {
            return;
        };
        let mut from = 0;
        while let Some(o) = orders.pop_any(&mut from) {
            let client = cx.session(o.conn).and_then(|s| s.data.client);
            self.cancel_tracked(cx, o, client);
        }
        self.open_orders = Some(orders);
    }

    /// While draining, whether the answer `opcode`/`payload` opens or
    /// renames a resting order (a request in flight when the drain began):
    /// its `order_id`.
    fn opened_on_drain(&self, opcode: u16, payload: &[u8]) -> Option<u64> {
        if !self.draining || !self.config.cancel_on_disconnect {
            return None;
        }
        match OrderMsg::decode(opcode, payload) {
            Ok(OrderMsg::OrderAccepted(m)) if m.tif == order::TIF_DAY => Some(m.order_id),
            Ok(OrderMsg::OrderReplaced(m)) => Some(m.order_id),
            _ => None,
        }
    }

    /// Cancels `order_id`, just opened or renamed while draining (and
    /// tracked, with its count, by the delivery), as every other order was
    /// at the drain's start.
    fn cancel_opened_on_drain(
        &mut self,
        cx: &mut Context<'_, Self>,
        client: ClientId,
        order_id: u64,
    ) {
        if let Some(o) = self.open_orders.as_mut().and_then(|v| v.close(order_id)) {
            self.cancel_tracked(cx, o, Some(client));
        }
    }

    /// Cancel on disconnect for an order that opened after its client
    /// left: a `NewOrder` or `ReplaceOrder` in flight when the connection
    /// closed is accepted (or renamed) upstream all the same, and the
    /// cancels sent at the close could not name it. Without this it would
    /// rest at the exchange for good, found by the simulator's o-sweeps
    /// with clients that leave.
    fn cancel_late(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) {
        if !self.config.cancel_on_disconnect {
            return;
        }
        let (account, name) = match OrderMsg::decode(opcode, payload) {
            Ok(OrderMsg::OrderAccepted(m)) if m.tif == order::TIF_DAY => (m.account, m.h.cl_ord_id),
            Ok(OrderMsg::OrderReplaced(m)) => (m.account, m.h.cl_ord_id),
            _ => return,
        };
        // Its client is gone, and with it the exposure: the cancel holds none.
        let doubt = InDoubt {
            client: None,
            account,
            name,
            reserved: Reservation::default(),
            lane: self.lane_of(conn),
        };
        if self.send_cancel(cx, doubt) {
            self.stats.disconnect_cancels += 1;
        }
    }

    /// Sends the gateway's own `CancelOrder` for an order on its upstream
    /// session, or, if that is not live (or full), holds it
    /// in the session's in-doubt FIFO until it is (the exchange has no
    /// session notion of its own: it keeps the order until canceled).
    /// `true` if sent now.
    fn send_cancel(&mut self, cx: &mut Context<'_, Self>, doubt: InDoubt) -> bool {
        if self.try_cancel(cx, doubt) {
            return true;
        }
        self.hold(doubt);
        false
    }

    /// Remembers `doubt` until its upstream session is live; with all
    /// FIFOs full it gives its reservation back (and drops the cancel),
    /// counted. `true` if held.
    fn hold(&mut self, doubt: InDoubt) -> bool {
        if self.in_doubt_len < self.config.in_doubt_max {
            self.upstreams[usize::from(doubt.lane)]
                .in_doubt
                .push_back(doubt);
            self.in_doubt_len += 1;
            return true;
        }
        self.stats.in_doubt_overflows += 1;
        self.release_doubt(doubt);
        false
    }

    /// Gives back what an in-doubt entry held: its order is no longer open.
    fn release_doubt(&mut self, doubt: InDoubt) {
        if let Some(client) = doubt.client {
            self.risk.release(client, doubt.reserved);
        }
    }

    /// The gateway's own cancel closed order `order_id`: if this worker
    /// still tracks it (a replace left in doubt that did reach the
    /// exchange renamed it), what its record holds comes off its client's
    /// exposure.
    fn close_canceled(&mut self, cx: &Context<'_, Self>, order_id: u64) {
        let Some(orders) = self.open_orders.as_mut() else {
            return;
        };
        let Some(before) = orders.close(order_id) else {
            return;
        };
        // Records belong to live connections (a closing one's are popped).
        if let Some(client) = cx.session(before.conn).and_then(|s| s.data.client) {
            self.risk
                .on_reduce(client, risk_notional(before.price, before.open), true);
        }
    }

    /// Sends the gateway's cancels held for want of live upstream session
    /// `lane`, oldest first, while it takes them (room in its in-flight
    /// FIFO and its output bound); the rest wait for its next drain.
    fn flush_in_doubt(&mut self, cx: &mut Context<'_, Self>, lane: usize) {
        while let Some(&doubt) = self.upstreams[lane].in_doubt.front() {
            if !self.try_cancel(cx, doubt) {
                return;
            }
            self.upstreams[lane].in_doubt.pop_front();
            self.in_doubt_len -= 1;
            self.stats.in_doubt_cancels += 1;
        }
    }

    /// Writes the gateway's own `CancelOrder` for `doubt` on its upstream
    /// session, if that is live and has room; its answer releases
    /// `doubt.reserved`.
    fn try_cancel(&mut self, cx: &mut Context<'_, Self>, doubt: InDoubt) -> bool {
        let lane = usize::from(doubt.lane);
        let Link::Up(upstream) = self.upstreams[lane].link else {
            return false;
        };
        let len = 6 + order::len::CANCEL_ORDER;
        let backlog = cx.session(upstream).map_or(0, |s| s.backlog());
        if self.upstreams[lane].fifo.len() >= self.config.upstream_inflight_max
            || backlog + len > cx.config().output_backlog_max
        {
            return false;
        }
        let cl_ord_id = self.next_internal_id;
        self.next_internal_id += 1;
        let route = RouteTag {
            origin: self.worker,
            target: self.worker,
            conn: INTERNAL_CONN,
        }
        .to_bits();
        let msg = OrderMsg::CancelOrder(order::CancelOrder {
            h: order::Header {
                cl_ord_id,
                route,
                t2: cx.now(),
                ..order::Header::default()
            },
            account: doubt.account,
            orig_cl_ord_id: doubt.name,
        });
        let sent = cx.send(upstream, len, |out| {
            msg.encode(out);
        });
        if sent {
            self.upstreams[lane].fifo.push_back(Pending {
                route,
                seq: cl_ord_id,
                len: 0,
                internal: true,
                doubt,
                opcode: order::OP_CANCEL_ORDER,
                sent_at: cx.now(),
            });
        }
        sent
    }

    fn on_ack(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        accept_ack(
            cx,
            conn,
            payload,
            &[Role::Exchange],
            "upstream is not an exchange",
        )?;
        let lane = Gateway::lane_at(cx, conn);
        let up = &mut self.upstreams[lane];
        up.link = Link::Up(conn);
        up.backoff = self.config.reconnect_backoff_min;
        self.stats.upstream_connects += 1;
        // Orders left in doubt by the loss are canceled before anything
        // else goes up this connection.
        self.flush_in_doubt(cx, lane);
        Ok(())
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

    /// Dials upstream session `lane`; a full session table counts as a
    /// failed dial.
    fn dial(&mut self, cx: &mut Context<'_, Self>, lane: usize) {
        match cx.connect(PeerId(0)) {
            Some(conn) => {
                self.upstreams[lane].link = Link::Dialing(conn);
                cx.data_mut(conn).expect("just dialed").lane =
                    u16::try_from(lane).expect("lanes fit u16");
            }
            None => self.schedule_reconnect(lane, cx.now()),
        }
    }

    fn schedule_reconnect(&mut self, lane: usize, now: Nanos) {
        let up = &mut self.upstreams[lane];
        up.link = Link::Down {
            retry_at: now + up.backoff,
        };
        up.backoff = (up.backoff + up.backoff).min(self.config.reconnect_backoff_max);
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
        // The lanes hold at most the pings of one worker's credit one way
        // and the answers of the other's the other way, plus control.
        let lane_need = 2 * self.config.handoff_inflight_bytes_max + CONTROL_BYTES_MAX;
        assert!(
            self.config.workers == 1 || lane_need <= cx.config().handoff_backlog_max,
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
