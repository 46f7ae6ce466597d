//! The gateway role, one instance per worker: client sessions, one upstream
//! session to the exchange, routing, hop stamps, and the way back.
//!
//! # Routing
//!
//! A client's pings all go through one upstream, chosen once per session:
//! `Local` picks this worker's own (`worker_id % workers`), `Handoff` picks
//! `session_id % workers`, which may be another worker's: the ping then
//! crosses workers as a [`Handoff::Forward`] and its pong comes back as a
//! [`Handoff::Return`]. The ping's `route` field carries a [`RouteTag`] that
//! names the origin worker and session, so the pong finds its way without a
//! lookup table.
//!
//! # Order
//!
//! Per client, pings travel one upstream, TCP keeps their order, each
//! upstream answers in order (checked against its in-flight FIFO), and
//! handoffs are FIFO per worker pair: pongs come back in the order pings
//! went out. When the upstream is lost, its in-flight FIFO is rejected in
//! order, before any later ping can be forwarded on a new connection.

use std::collections::VecDeque;

use fep_core::frame::encode_frame;
use fep_core::limits::WORKERS_MAX;
use fep_core::wire::{RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{
    ConnId, Context, ErrorCode, Fault, Handler, Nanos, Origin, PeerId, Phase, Service, Session,
    Side, StateSet, WorkerId,
};

use crate::hello::{accept_ack, Admission};
use crate::msg::{
    offset, patch_u64, read_u64, PerfPing, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG,
    OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ, PROTOCOL_VERSION,
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
    /// Pings one client may have in flight; past it `Reject{OVERLOADED}`.
    pub inflight_per_session_max: u32,
    /// Pings one upstream may have in flight; past it `Reject{OVERLOADED}`.
    /// The default holds 10,000 clients with 30 pings in flight each.
    pub upstream_inflight_max: usize,
    /// First reconnect delay; doubled per failure up to the max.
    pub reconnect_backoff_min: Nanos,
    /// Longest reconnect delay.
    pub reconnect_backoff_max: Nanos,
    /// Handoff buffers kept for reuse.
    pub buffer_pool_max: usize,
    /// Delay before refused handoffs are offered again.
    pub handoff_retry: Nanos,
    /// Refused handoffs kept for a retry; past it a refused ping is shed
    /// with `Reject{OVERLOADED}` (answers are always kept).
    pub handoff_parked_max: usize,
    /// Pings of this worker's clients out through one other worker's
    /// upstream before its clients are no longer read: the credit that keeps
    /// one worker from filling another's upstream.
    pub handoff_inflight_max: u32,
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
            reconnect_backoff_min: Nanos::from_millis(1),
            reconnect_backoff_max: Nanos::from_millis(500),
            buffer_pool_max: 4096,
            handoff_retry: Nanos::from_micros(50),
            handoff_parked_max: 1 << 16,
            handoff_inflight_max: 2048,
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

/// What gateway workers hand each other.
#[derive(Debug, PartialEq, Eq)]
pub enum Handoff {
    /// A ping frame (route set) for the target worker's upstream.
    Forward(Vec<u8>),
    /// A pong frame for the origin worker's client.
    Return(Vec<u8>),
    /// The target could not forward ping `seq`: the origin rejects it.
    Reject {
        /// The ping's route tag.
        route: u64,
        /// The ping's seq.
        seq: u64,
        /// Why.
        code: ErrorCode,
    },
}

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
    /// Tasks handed to other workers.
    pub handoffs: u64,
    /// Answers whose client had gone.
    pub orphans: u64,
    /// Upstream connections hand-shaked.
    pub upstream_connects: u64,
    /// Upstream connections lost.
    pub upstream_losses: u64,
}

/// Per-session data of the gateway.
#[derive(Debug, Default)]
pub struct Peer {
    inflight: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Down { retry_at: Nanos },
    Dialing,
    Handshaking(ConnId),
    Up(ConnId),
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    route: u64,
    seq: u64,
}

/// One gateway worker's service.
#[derive(Debug)]
pub struct Gateway {
    worker: WorkerId,
    config: GatewayConfig,
    admission: Admission,
    link: Link,
    backoff: Nanos,
    /// Pings written upstream and not answered, oldest first.
    upstream_fifo: VecDeque<Pending>,
    /// Handoffs the driver could not queue, retried in order.
    refused: VecDeque<(WorkerId, Handoff)>,
    retry_at: Option<Nanos>,
    pool: Vec<Vec<u8>>,
    inflight_total: u64,
    /// Pings handed to each worker and not back yet, by worker index.
    via: Vec<u32>,
    draining: bool,
    stats: GatewayStats,
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
        let admission = Admission {
            roles: vec![Role::Client],
            token: config.token.clone(),
        };
        Gateway {
            worker,
            admission,
            link: Link::Dialing,
            backoff: config.reconnect_backoff_min,
            upstream_fifo: VecDeque::with_capacity(config.upstream_inflight_max.min(1 << 14)),
            refused: VecDeque::new(),
            retry_at: None,
            pool: Vec::with_capacity(config.buffer_pool_max),
            inflight_total: 0,
            via: vec![0; usize::from(config.workers)],
            draining: false,
            stats: GatewayStats::default(),
            config,
        }
    }

    /// The counters.
    pub fn stats(&self) -> GatewayStats {
        self.stats
    }

    /// Whether the upstream is hand-shaked.
    pub fn upstream_up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// Pings of this worker's clients not answered yet.
    pub fn inflight(&self) -> u64 {
        self.inflight_total
    }

    fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < self.config.buffer_pool_max {
            self.pool.push(buf);
        }
    }

    fn upstream_of(&self, session: u64) -> WorkerId {
        match self.config.routing {
            Routing::Local => self.worker,
            Routing::Handoff => WorkerId((session % u64::from(self.config.workers)) as u16),
        }
    }

    /// A ping this worker handed to another came back (answered there, or
    /// refused here): one less in flight through that worker.
    fn came_back(&mut self, tag: RouteTag) {
        debug_assert_eq!(tag.origin, self.worker);
        let via = &mut self.via[tag.target.index()];
        assert!(
            *via > 0,
            "an answer from {:?} for nothing handed to it",
            tag.target
        );
        *via -= 1;
    }

    fn handoff(&mut self, cx: &mut Context<'_, Self>, target: WorkerId, task: Handoff) {
        self.stats.handoffs += 1;
        // Once one task to `target` waits for a retry, later ones queue
        // behind it: order per worker pair is the protocol's order.
        if self.refused.iter().any(|(t, _)| *t == target) {
            self.refused.push_back((target, task));
        } else {
            cx.handoff(target, task);
        }
    }

    fn on_client_hello(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        p: &[u8],
    ) -> Result<(), Fault> {
        self.admission.accept(cx, conn, p, Role::Gateway)
    }

    fn on_ping(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let seq = PerfPing::decode(OP_PERF_PING, payload)?.seq;
        if self.draining {
            self.stats.rejects += 1;
            cx.reject(conn, ErrorCode::ShuttingDown, seq, "gateway is draining");
            return Ok(());
        }
        let session = cx.session(conn).expect("handler runs on a live session");
        let target = self.upstream_of(session.id.0);
        let peer = cx.data_mut(conn).expect("handler runs on a live session");
        if peer.inflight >= self.config.inflight_per_session_max {
            self.stats.rejects += 1;
            cx.reject(
                conn,
                ErrorCode::Overloaded,
                seq,
                "too many pings in flight on this session",
            );
            return Ok(());
        }
        peer.inflight += 1;
        self.inflight_total += 1;
        self.stats.pings += 1;
        let route = RouteTag {
            origin: self.worker,
            target,
            conn,
        }
        .to_bits();
        if target == self.worker {
            self.forward(cx, route, seq, payload);
        } else {
            let mut buf = self.buffer();
            encode_frame(&mut buf, OP_PERF_PING, payload);
            patch_u64(&mut buf, offset::ROUTE, route);
            self.via[target.index()] += 1;
            self.handoff(cx, target, Handoff::Forward(buf));
        }
        Ok(())
    }

    /// Writes a ping to this worker's upstream, stamping `route` and `t2`, or
    /// rejects it.
    fn forward(&mut self, cx: &mut Context<'_, Self>, route: u64, seq: u64, payload: &[u8]) {
        let Link::Up(upstream) = self.link else {
            return self.answer_reject(cx, route, seq, ErrorCode::UpstreamUnavailable);
        };
        if self.upstream_fifo.len() >= self.config.upstream_inflight_max {
            return self.answer_reject(cx, route, seq, ErrorCode::Overloaded);
        }
        // Past the output bound the engine would cut the upstream, and with
        // it every client's pings in flight: shed this one instead. (Input
        // is paused well before, see `accepts_input`; handoffs from other
        // workers are not.)
        let backlog = cx.session(upstream).map_or(0, |s| s.backlog());
        if backlog + 6 + payload.len() > cx.config().output_backlog_max {
            return self.answer_reject(cx, route, seq, ErrorCode::Overloaded);
        }
        let t2 = cx.now().as_u64();
        let sent = cx.send(upstream, 6 + payload.len(), |out| {
            let start = out.len();
            encode_frame(out, OP_PERF_PING, payload);
            let frame = &mut out[start..];
            patch_u64(frame, offset::ROUTE, route);
            patch_u64(frame, offset::T2, t2);
        });
        if sent {
            self.stats.forwarded += 1;
            self.upstream_fifo.push_back(Pending { route, seq });
        } else {
            self.answer_reject(cx, route, seq, ErrorCode::UpstreamUnavailable);
        }
    }

    /// Sends `Reject{code}` for a ping to its client, on whichever worker
    /// owns it.
    fn answer_reject(&mut self, cx: &mut Context<'_, Self>, route: u64, seq: u64, code: ErrorCode) {
        let tag = RouteTag::from_bits(route);
        if tag.origin == self.worker {
            self.deliver_reject(cx, tag.conn, seq, code);
        } else {
            self.handoff(cx, tag.origin, Handoff::Reject { route, seq, code });
        }
    }

    /// Settles one of this worker's client pings; `false` if its client went.
    fn settle(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) -> bool {
        let live = cx.state(conn).is_some_and(|s| s.phase == Phase::Handshaked);
        match cx.data_mut(conn) {
            Some(peer) if live && peer.inflight > 0 => {
                peer.inflight -= 1;
                self.inflight_total -= 1;
                true
            }
            _ => {
                self.stats.orphans += 1;
                false
            }
        }
    }

    fn deliver_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        seq: u64,
        code: ErrorCode,
    ) {
        if self.settle(cx, conn) {
            self.stats.rejects += 1;
            let reason = match code {
                ErrorCode::UpstreamUnavailable => "no live upstream",
                ErrorCode::Overloaded => "upstream in-flight bound reached",
                ErrorCode::ShuttingDown => "exchange is draining",
                _ => "refused upstream",
            };
            cx.reject(conn, code, seq, reason);
        }
    }

    fn deliver_pong(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, payload: &[u8]) {
        if self.settle(cx, conn) {
            self.stats.pongs += 1;
            let t4 = cx.now().as_u64();
            cx.send(conn, 6 + payload.len(), |out| {
                let start = out.len();
                encode_frame(out, OP_PERF_PONG, payload);
                patch_u64(&mut out[start..], offset::T4, t4);
            });
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
        let oldest = self.oldest(OP_PERF_PONG, pong.seq)?;
        if oldest.route != pong.route {
            return Err(Fault::Unsolicited {
                opcode: OP_PERF_PONG,
                what: "pong route was altered",
            });
        }
        self.upstream_fifo.pop_front();
        debug_assert!(matches!(self.link, Link::Up(up) if up == conn));
        let tag = RouteTag::from_bits(pong.route);
        if tag.origin == self.worker {
            self.deliver_pong(cx, tag.conn, payload);
        } else {
            let mut buf = self.buffer();
            encode_frame(&mut buf, OP_PERF_PONG, payload);
            self.handoff(cx, tag.origin, Handoff::Return(buf));
        }
        Ok(())
    }

    /// The oldest ping in flight upstream, if `seq` answers it. It stays in
    /// the FIFO: the caller pops it once the whole answer checks out.
    fn oldest(&self, opcode: u16, seq: u64) -> Result<Pending, Fault> {
        match self.upstream_fifo.front() {
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
        _: ConnId,
        p: &[u8],
    ) -> Result<(), Fault> {
        let reject = RejectMsg::decode(p)?;
        let oldest = self.oldest(OP_REJECT, reject.seq)?;
        self.upstream_fifo.pop_front();
        self.answer_reject(cx, oldest.route, oldest.seq, reject.code);
        Ok(())
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
        self.link = Link::Up(conn);
        self.backoff = self.config.reconnect_backoff_min;
        self.stats.upstream_connects += 1;
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

    fn schedule_reconnect(&mut self, now: Nanos) {
        self.link = Link::Down {
            retry_at: now + self.backoff,
        };
        self.backoff = (self.backoff + self.backoff).min(self.config.reconnect_backoff_max);
    }
}

impl Service for Gateway {
    type Data = Peer;
    type Task = Handoff;

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
    ];

    fn on_start(&mut self, cx: &mut Context<'_, Self>) {
        self.link = Link::Dialing;
        cx.connect(PeerId(0));
    }

    fn on_open(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, origin: Origin) {
        if let Origin::Dialed { .. } = origin {
            let hello = RoleHelloReq {
                role: Role::Gateway.to_u8(),
                version: PROTOCOL_VERSION,
                token: &self.config.upstream_token,
            };
            cx.send(conn, 7 + hello.token.len(), |out| {
                hello.encode(out);
            });
            self.link = Link::Handshaking(conn);
        }
    }

    fn on_close(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, session: Session<Peer>) {
        if session.state.side == Side::Acceptor {
            self.inflight_total -= u64::from(session.data.inflight);
            return;
        }
        if !matches!(self.link, Link::Up(c) | Link::Handshaking(c) if c == conn) {
            return;
        }
        self.stats.upstream_losses += 1;
        while let Some(p) = self.upstream_fifo.pop_front() {
            self.answer_reject(cx, p.route, p.seq, ErrorCode::UpstreamUnavailable);
        }
        self.schedule_reconnect(cx.now());
    }

    fn on_connect_failed(&mut self, cx: &mut Context<'_, Self>, _: PeerId) {
        self.schedule_reconnect(cx.now());
    }

    fn on_handoff(&mut self, cx: &mut Context<'_, Self>, task: Handoff) {
        match task {
            Handoff::Forward(buf) => {
                let route = read_u64(&buf, offset::ROUTE);
                let seq = read_u64(&buf, offset::SEQ);
                self.forward(cx, route, seq, &buf[offset::SEQ..]);
                self.recycle(buf);
            }
            Handoff::Return(buf) => {
                let tag = RouteTag::from_bits(read_u64(&buf, offset::ROUTE));
                self.came_back(tag);
                self.deliver_pong(cx, tag.conn, &buf[offset::SEQ..]);
                self.recycle(buf);
            }
            Handoff::Reject { route, seq, code } => {
                let tag = RouteTag::from_bits(route);
                self.came_back(tag);
                self.deliver_reject(cx, tag.conn, seq, code);
            }
        }
    }

    fn on_handoff_refused(&mut self, cx: &mut Context<'_, Self>, target: WorkerId, task: Handoff) {
        match task {
            // A ping that finds no room even among the parked tasks is shed
            // at its origin.
            Handoff::Forward(buf) if self.refused.len() >= self.config.handoff_parked_max => {
                let tag = RouteTag::from_bits(read_u64(&buf, offset::ROUTE));
                self.came_back(tag);
                let conn = tag.conn;
                self.deliver_reject(cx, conn, read_u64(&buf, offset::SEQ), ErrorCode::Overloaded);
                self.recycle(buf);
            }
            // Otherwise it waits, in order, like an answer (which must never
            // be lost), and the clients are not read meanwhile: a full
            // handoff queue slows them down instead of shedding their pings.
            task => {
                self.refused.push_back((target, task));
                self.retry_at
                    .get_or_insert(cx.now() + self.config.handoff_retry);
            }
        }
    }

    fn on_timeout(&mut self, cx: &mut Context<'_, Self>) {
        let now = cx.now();
        if let Link::Down { retry_at } = self.link {
            if now >= retry_at {
                self.link = Link::Dialing;
                cx.connect(PeerId(0));
            }
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            for (target, task) in std::mem::take(&mut self.refused) {
                cx.handoff(target, task);
            }
        }
    }

    fn on_shutdown(&mut self, _: &mut Context<'_, Self>) {
        self.draining = true;
    }

    fn poll_timeout(&self) -> Option<Nanos> {
        let reconnect = match self.link {
            Link::Down { retry_at } => Some(retry_at),
            _ => None,
        };
        match (reconnect, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_ready(&self) -> bool {
        self.upstream_up()
    }

    /// Backpressure: while this worker's upstream holds more than half its
    /// output bound unsent, clients are not read (their pings wait in the
    /// kernel, and TCP slows them down) instead of piling up here until the
    /// bound cuts the upstream; likewise while handoffs wait for room in
    /// another worker's queue. The upstream itself is always read: its pongs
    /// are what drains it.
    fn accepts_input(&self, cx: &Context<'_, Self>, conn: ConnId) -> bool {
        if cx.state(conn).is_some_and(|s| s.side == Side::Initiator) {
            return true;
        }
        // Handoffs wait for room in another worker's queue, or enough of
        // this worker's pings are out through another worker's upstream
        // (which does not pause for them): new pings wait in the kernel.
        let credit = self.config.handoff_inflight_max;
        if !self.refused.is_empty() || self.via.iter().any(|&n| n >= credit) {
            return false;
        }
        let Link::Up(upstream) = self.link else {
            return true;
        };
        cx.session(upstream)
            .is_none_or(|s| s.backlog() <= cx.config().output_backlog_max / 2)
    }

    fn is_done(&self) -> bool {
        self.draining
            && self.inflight_total == 0
            && self.upstream_fifo.is_empty()
            && self.refused.is_empty()
    }
}
