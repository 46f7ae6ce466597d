//! The load generator's logic: dial, hand-shake, warm up, measure, drain.
//!
//! # Load models
//!
//! - [`Load::Closed`]: one ping in flight in total, round-robin over the
//!   connections; the next ping leaves when the previous is answered.
//! - [`Load::Pipelined`]: `inflight` pings in flight on every connection.
//! - [`Load::Open`]: arrivals on a [`Schedule`], round-robin over the
//!   connections, whatever is in flight. Latency counts from each ping's
//!   *intended* send time (coordinated omission corrected, as wrk2 does): a
//!   ping due while its connection's window is full leaves late, and the
//!   wait shows in `rtt`. The hop stamps stay those of the actual send, so
//!   in open loop `rtt` can exceed the sum of the hops by that wait.
//!
//! The first `warmup` answers are not recorded; the next `count` are. Every
//! ping is accounted for exactly once: answered by a pong or a `Reject`, or
//! `lost` with its connection (closed, failed, or still silent when the
//! drain deadline passes).

use std::collections::VecDeque;

use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{
    ConnId, Context, ErrorCode, Fault, Handler, Nanos, Origin, PeerId, Service, Session, StateSet,
};
use hdrhistogram::Histogram;

use crate::flow::{FlowConfig, OrderFlow, Seen};
use crate::schedule::Schedule;
use fep_trading::hello::accept_ack;
use fep_trading::msg::{
    PerfPing, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ,
    PING_FRAME_LEN_MIN,
};
use fep_trading::order::{self, OrderMsg};
use fep_trading::Role;

mod config;
mod link;
mod report;

pub use config::*;
use link::*;
pub use report::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Running,
    Draining { deadline: Nanos },
    Done,
}

/// The load generator's service (one per worker).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    links: Vec<Link>,
    pad: Vec<u8>,
    phase: Phase,
    /// Next connection of the closed loop's round robin.
    next_link: usize,
    /// Links are dialled in index order: the next one not dialled yet.
    next_idle: usize,
    /// Links idle, dialling or hand-shaking: the run starts at zero.
    links_pending: usize,
    /// Pings in flight over all links (the sum of their windows).
    in_flight: usize,
    answers: u64,
    /// When the run started (open-loop arrivals are offsets from it).
    origin: Nanos,
    /// The earliest arrival not sent yet (it may be in the past).
    next_due: Option<Nanos>,
    /// When connections not hand-shaked yet are given up.
    connect_deadline: Nanos,
    intervals: Option<Intervals>,
    /// The order flow, when the workload is orders.
    flow: Option<OrderFlow>,
    report: Report,
}

/// Per-session data of the client: the connection's index.
#[derive(Debug, Default)]
pub struct LinkIndex(u32);

impl Client {
    /// A client for `config`. Panics on a config a CLI must have refused
    /// (no connection, a frame smaller than a ping, an order flow
    /// [`OrderFlow::new`] refuses).
    pub fn new(config: ClientConfig) -> Client {
        let flow = match &config.workload {
            Workload::Ping => None,
            Workload::Orders(fc) => Some(
                OrderFlow::new(FlowConfig {
                    connections: config.connections,
                    ..*fc
                })
                .expect("the order flow's settings were checked"),
            ),
        };
        assert!(config.connections > 0, "a load needs a connection");
        assert!(
            config.size >= PING_FRAME_LEN_MIN,
            "a ping is at least {PING_FRAME_LEN_MIN} bytes"
        );
        let window = match config.load {
            Load::Closed => 1,
            Load::Pipelined { inflight }
            | Load::Open {
                window: inflight, ..
            } => inflight.max(1) as usize,
        };
        let intervals = config.interval.map(|every| Intervals {
            every,
            next: Nanos::ZERO,
            rtt: Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static bounds are valid"),
            answers: 0,
            errors: 0,
        });
        let config_connections = config.connections;
        let links = (0..config.connections)
            .map(|_| Link {
                conn: None,
                state: LinkState::Idle,
                next_seq: 1,
                window: VecDeque::with_capacity(window),
            })
            .collect();
        let pad = (0..config.size - PING_FRAME_LEN_MIN)
            .map(|i| (i % 251) as u8)
            .collect();
        let report = Report::new(config.trace_max);
        let report = match flow {
            Some(_) => report.by_request(),
            None => report,
        };
        Client {
            report,
            config,
            links,
            pad,
            phase: Phase::Connecting,
            next_link: 0,
            next_idle: 0,
            links_pending: config_connections as usize,
            in_flight: 0,
            answers: 0,
            origin: Nanos::ZERO,
            next_due: None,
            connect_deadline: Nanos::MAX,
            intervals,
            flow,
        }
    }

    /// The arrival schedule, in open loop (live rate and spike state for
    /// a metrics observer).
    pub fn schedule(&self) -> Option<&Schedule> {
        match &self.config.load {
            Load::Open { schedule, .. } => Some(schedule),
            _ => None,
        }
    }

    /// What was measured so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Whether a connection is still being opened (waiting to dial,
    /// dialing, or in its hand-shake).
    pub fn connecting(&self) -> bool {
        self.links.iter().any(|l| {
            matches!(
                l.state,
                LinkState::Idle | LinkState::Dialing | LinkState::Hello
            )
        })
    }

    /// Takes the report out (at the end of a run), with the order flow's
    /// counters.
    pub fn into_report(mut self) -> Report {
        self.report.flow = self.flow.as_ref().map(|f| f.stats().clone());
        self.report
    }

    /// The order flow's counters so far (orders only).
    pub fn flow_stats(&self) -> Option<&crate::flow::FlowStats> {
        self.flow.as_ref().map(OrderFlow::stats)
    }

    /// Whether every connection is hand-shaked or gone and pings flow.
    pub fn is_running(&self) -> bool {
        !matches!(self.phase, Phase::Connecting)
    }

    fn total(&self) -> u64 {
        self.config.warmup + self.config.count
    }

    fn link_of(&self, cx: &Context<'_, Self>, conn: ConnId) -> usize {
        cx.session(conn).expect("live session").data.0 as usize
    }

    fn send_ping(&mut self, cx: &mut Context<'_, Self>, i: usize, intended: Option<Nanos>) {
        if self.flow.is_some() {
            return self.send_order(cx, i, intended);
        }
        let link = &mut self.links[i];
        let conn = link.conn.expect("a ready link has a connection");
        let seq = link.next_seq;
        link.next_seq += 1;
        let t1 = cx.now();
        let ping = PerfPing::from_client(seq, t1, &self.pad);
        self.in_flight += 1;
        link.window.push_back(InFlight {
            seq,
            t1,
            intended: intended.unwrap_or(t1),
            request: None,
        });
        self.report.sent += 1;
        cx.send(conn, ping.wire_len(), |out| {
            ping.encode(OP_PERF_PING, out);
        });
    }

    /// Sends link `i`'s next order-flow request (its `cl_ord_id` plays the
    /// ping's `seq`).
    fn send_order(&mut self, cx: &mut Context<'_, Self>, i: usize, intended: Option<Nanos>) {
        let flow = self.flow.as_mut().expect("an order workload");
        let link = &mut self.links[i];
        let conn = link.conn.expect("a ready link has a connection");
        let t1 = cx.now();
        let mut sent = None;
        // The largest request (a replace) with its frame header.
        cx.send(conn, 6 + order::len::REPLACE_ORDER, |out| {
            sent = Some(flow.next_request(i, t1, out));
        });
        self.in_flight += 1;
        link.window.push_back(InFlight {
            seq: sent.map_or(0, |(cl_ord_id, _)| cl_ord_id),
            t1,
            intended: intended.unwrap_or(t1),
            request: sent.map(|(_, request)| request),
        });
        self.report.sent += 1;
    }

    /// An order-entry message: a request's first answer ends its round trip
    /// (stamped like a pong); a later one (a fill, an IOC's rest) is only
    /// checked and counted.
    fn on_order_msg(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let msg = OrderMsg::decode(opcode, payload)?;
        let i = self.link_of(cx, conn);
        let Some(flow) = self.flow.as_mut() else {
            // Orders nobody sent: a ping client counts them as violations.
            self.report.window_violations += 1;
            return Ok(());
        };
        let cl_ord_id = match flow.on_message(i, &msg) {
            Ok(Seen::First { cl_ord_id }) => cl_ord_id,
            Ok(Seen::Later) => return Ok(()),
            // Counted in the flow's violations. A first answer that breaks
            // a check still ends its request's round trip: the flow has
            // taken it off its queue, and a window left waiting for it
            // would count every later answer as out of order and never
            // finish.
            Err(_) if is_first_answer(&msg) => msg.header().cl_ord_id,
            Err(_) => return Ok(()),
        };
        let t5 = cx.now();
        let Some(request) = self.settle(i, cl_ord_id) else {
            return Ok(());
        };
        self.report.pongs += 1;
        if let Some(iv) = self.intervals.as_mut() {
            iv.answers += 1;
            iv.rtt
                .saturating_record((t5 - request.intended).as_u64().max(1));
        }
        let h = msg.header();
        if h.t1 != request.t1 {
            self.report.corrupt += 1;
        }
        if self.count_answer(t5) {
            self.record(request, [h.t2, h.t3, h.t4], t5);
        }
        self.pump_after_answer(cx, i);
        Ok(())
    }

    /// Offers pings as the load model allows.
    fn pump(&mut self, cx: &mut Context<'_, Self>) {
        if self.phase != Phase::Running {
            // A draining client finishes on its last answer, not at the
            // drain deadline.
            self.check_progress(cx);
            return;
        }
        match &self.config.load {
            Load::Closed => {
                let in_flight = self.links.iter().any(|l| !l.window.is_empty());
                if !in_flight && self.report.sent < self.total() {
                    if let Some(i) = self.next_link_with_room(1) {
                        self.send_ping(cx, i, None);
                    }
                }
            }
            &Load::Pipelined { inflight } => {
                for i in 0..self.links.len() {
                    while self.links[i].state == LinkState::Ready
                        && self.links[i].window.len() < inflight as usize
                        && self.report.sent < self.total()
                    {
                        self.send_ping(cx, i, None);
                    }
                }
            }
            &Load::Open { window, .. } => self.pump_open(cx, window as usize),
        }
        self.check_progress(cx);
    }

    /// Offers pings after an answer on link `i`. Pipelined, only that link
    /// has gained room: refilling it alone keeps an answer O(1) however
    /// many connections there are (ten thousand, each answer scanning all,
    /// made the load generator the bottleneck).
    fn pump_after_answer(&mut self, cx: &mut Context<'_, Self>, i: usize) {
        match self.config.load {
            Load::Pipelined { inflight } if self.phase == Phase::Running => {
                while self.links[i].state == LinkState::Ready
                    && self.links[i].window.len() < inflight as usize
                    && self.report.sent < self.total()
                {
                    self.send_ping(cx, i, None);
                }
                self.check_progress(cx);
            }
            _ => self.pump(cx),
        }
    }

    /// Sends every arrival that is due, as far as the windows allow.
    fn pump_open(&mut self, cx: &mut Context<'_, Self>, window: usize) {
        while let Some(due) = self.next_due {
            if due > cx.now() || self.report.sent >= self.total() {
                return;
            }
            let Some(i) = self.next_link_with_room(window) else {
                return;
            };
            self.send_ping(cx, i, Some(due));
            let first = self.report.intended.map_or(due, |(first, _)| first);
            self.report.intended = Some((first, due));
            self.next_due = self.next_arrival();
        }
    }

    fn next_arrival(&mut self) -> Option<Nanos> {
        let Load::Open { schedule, .. } = &mut self.config.load else {
            return None;
        };
        schedule.next_arrival().map(|at| self.origin + at)
    }

    /// The next ready connection, round robin, with fewer than `window`
    /// pings in flight.
    fn next_link_with_room(&mut self, window: usize) -> Option<usize> {
        let n = self.links.len();
        let i = (0..n).map(|k| (self.next_link + k) % n).find(|&i| {
            self.links[i].state == LinkState::Ready && self.links[i].window.len() < window
        })?;
        self.next_link = (i + 1) % n;
        Some(i)
    }

    fn check_progress(&mut self, cx: &mut Context<'_, Self>) {
        let open = matches!(self.config.load, Load::Open { .. });
        let schedule_ended = open && self.next_due.is_none() && self.phase != Phase::Connecting;
        let all_sent = self.report.sent >= self.total() || schedule_ended;
        // Per answer: a counter, and a scan that stops at the first ready
        // link (usually the first) only while pings remain to send.
        let waiting = self.in_flight > 0;
        let stop = all_sent || !self.links.iter().any(|l| l.state == LinkState::Ready);
        match self.phase {
            Phase::Running if stop && !waiting => self.finish(cx),
            Phase::Running if stop => {
                self.phase = Phase::Draining {
                    deadline: cx.now() + self.config.drain_timeout,
                };
            }
            Phase::Draining { .. } if !waiting => self.finish(cx),
            _ => {}
        }
    }

    fn finish(&mut self, cx: &mut Context<'_, Self>) {
        self.sample_intervals(cx.now());
        self.sample_last_interval(cx.now());
        for link in &mut self.links {
            if !link.window.is_empty() {
                self.report.drain_timeouts += 1;
                self.report.lost += link.window.len() as u64;
                self.in_flight -= link.window.len();
                link.window.clear();
            }
            if let Some(conn) = link.conn.take() {
                cx.close(conn);
            }
            link.state = LinkState::Closed;
        }
        self.phase = Phase::Done;
    }

    /// Settles the oldest ping on link `i` if it is `seq`.
    fn settle(&mut self, i: usize, seq: u64) -> Option<InFlight> {
        let window = &mut self.links[i].window;
        match window.front() {
            Some(&ping) if ping.seq == seq => {
                window.pop_front();
                self.in_flight -= 1;
                Some(ping)
            }
            _ => {
                self.report.window_violations += 1;
                None
            }
        }
    }

    /// Settles ping `seq` on link `i` wherever it is in the window: a
    /// `Reject` may overtake older pings (a gateway sheds a ping at once
    /// while older ones are still out), only pongs keep send order.
    fn settle_rejected(&mut self, i: usize, seq: u64) -> Option<InFlight> {
        let window = &mut self.links[i].window;
        let Some(at) = window.iter().position(|p| p.seq == seq) else {
            self.report.window_violations += 1;
            return None;
        };
        self.in_flight -= 1;
        window.remove(at)
    }

    /// Counts an answer; true when it falls in the measured phase.
    fn count_answer(&mut self, now: Nanos) -> bool {
        self.answers += 1;
        if self.answers == self.config.warmup {
            self.report.measure_start = now;
        }
        self.report.measure_end = now;
        self.answers > self.config.warmup
    }

    fn on_pong(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let pong = PerfPing::decode(OP_PERF_PONG, payload)?;
        let i = self.link_of(cx, conn);
        let t5 = cx.now();
        let Some(ping) = self.settle(i, pong.seq) else {
            return Ok(());
        };
        let t1 = ping.t1;
        self.report.pongs += 1;
        if let Some(iv) = self.intervals.as_mut() {
            iv.answers += 1;
            iv.rtt
                .saturating_record((t5 - ping.intended).as_u64().max(1));
        }
        if pong.pad != self.pad.as_slice() || pong.t1 != t1 {
            self.report.corrupt += 1;
        }
        if self.count_answer(t5) {
            self.record(ping, [pong.t2, pong.t3, pong.t4], t5);
        }
        if self.report.trace.len() < self.config.trace_max {
            let t = [t1, pong.t2, pong.t3, pong.t4, t5];
            let rt = RoundTrip {
                conn: i as u32,
                seq: pong.seq,
                route: pong.route,
                t,
                answer: Answer::Pong,
            };
            self.report.trace.push(rt);
        }
        self.pump_after_answer(cx, i);
        Ok(())
    }

    /// Records one round trip: `t` holds the answer's `t2, t3, t4`.
    fn record(&mut self, ping: InFlight, t: [Nanos; 3], t5: Nanos) {
        let [t2, t3, t4] = t;
        let t1 = ping.t1;
        let rtt = (t5 - ping.intended).as_u64();
        self.report.rtt.saturating_record(rtt.max(1));
        if let Some(h) = ping
            .request
            .and_then(|r| self.report.rtt_by_request.get_mut(r.index()))
        {
            h.saturating_record(rtt.max(1));
        }
        if matches!(self.config.load, Load::Open { .. }) {
            // Sent on time is 0 ns late; the histogram's floor is 1.
            let lag = t1.checked_since(ping.intended).unwrap_or(Nanos::ZERO);
            self.report.send_lag.saturating_record(lag.as_u64().max(1));
        }
        if t2 == Nanos::ZERO && t4 == Nanos::ZERO {
            self.report.direct += 1;
            return;
        }
        let stamps = [t1, t2, t3, t4, t5];
        if stamps.windows(2).any(|w| w[0] > w[1]) {
            self.report.clock_skews += 1;
            return;
        }
        for (h, w) in self.report.hops.iter_mut().zip(stamps.windows(2)) {
            // A hop of 0 ns is real on a coarse clock; the histogram floor is 1.
            h.saturating_record((w[1] - w[0]).as_u64().max(1));
        }
    }

    fn on_reject(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let reject = RejectMsg::decode(payload)?;
        let i = self.link_of(cx, conn);
        if let Some(flow) = self.flow.as_mut() {
            // A violation is counted there; the window check below too.
            let _ = flow.on_reject(i, reject.seq, reject.code);
        }
        let Some(InFlight { t1, .. }) = self.settle_rejected(i, reject.seq) else {
            return Ok(());
        };
        self.report.rejects += 1;
        if let Some(iv) = self.intervals.as_mut() {
            iv.answers += 1;
            iv.errors += 1;
        }
        self.count_answer(cx.now());
        if self.report.trace.len() < self.config.trace_max {
            let z = Nanos::ZERO;
            let t = [t1, z, z, z, cx.now()];
            let answer = Answer::Reject(reject.code);
            self.report.trace.push(RoundTrip {
                conn: i as u32,
                seq: reject.seq,
                route: 0,
                t,
                answer,
            });
        }
        self.pump_after_answer(cx, i);
        Ok(())
    }

    fn on_error(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        ErrorMsg::decode(payload)?;
        self.report.errors += 1;
        if let Some(iv) = self.intervals.as_mut() {
            iv.errors += 1;
        }
        cx.close(conn);
        Ok(())
    }

    fn on_ack(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let expected = [Role::Gateway, Role::Exchange];
        accept_ack(
            cx,
            conn,
            payload,
            &expected,
            "peer is neither a gateway nor an exchange",
        )?;
        let i = self.link_of(cx, conn);
        self.links[i].state = LinkState::Ready;
        self.links_pending -= 1;
        self.maybe_start(cx);
        Ok(())
    }

    /// Dials the next idle connection, if any. At most
    /// [`DIALS_IN_FLIGHT_MAX`] dials are in flight: each finished dial starts
    /// the next, so ten thousand connections do not hit a driver's bound on
    /// dials in progress (or the listener's accept backlog) all at once.
    fn dial_next(&mut self, cx: &mut Context<'_, Self>) {
        while self
            .links
            .get(self.next_idle)
            .is_some_and(|l| l.state != LinkState::Idle)
        {
            self.next_idle += 1;
        }
        let i = self.next_idle;
        if i == self.links.len() {
            return;
        }
        self.next_idle += 1;
        let Some(conn) = cx.connect(PeerId(0)) else {
            // No room in the session table: the dial failed.
            self.report.errors += 1;
            self.report.dials_failed += 1;
            return self.lose_link(cx, i);
        };
        *cx.data_mut(conn).expect("just opened") = LinkIndex(i as u32);
        let link = &mut self.links[i];
        link.state = LinkState::Dialing;
        link.conn = Some(conn);
    }

    fn maybe_start(&mut self, cx: &mut Context<'_, Self>) {
        if self.phase == Phase::Connecting && self.links_pending == 0 {
            self.phase = Phase::Running;
            let now = cx.now();
            self.report.measure_start = now;
            self.report.run_start = now;
            self.origin = now;
            if let Some(iv) = self.intervals.as_mut() {
                iv.next = now + iv.every;
            }
            self.next_due = self.next_arrival();
            self.pump(cx);
        }
    }

    /// Closes every live interval that ended by `now`.
    fn sample_intervals(&mut self, now: Nanos) {
        if !matches!(self.phase, Phase::Running | Phase::Draining { .. }) {
            return;
        }
        let Some(iv) = self.intervals.as_mut() else {
            return;
        };
        while now >= iv.next {
            let sample = iv.take(iv.next - self.origin, iv.every);
            self.report.record_interval(sample);
            iv.next = iv.next + iv.every;
        }
    }

    /// Closes the interval under way at the end of the run, over its
    /// actual length.
    fn sample_last_interval(&mut self, now: Nanos) {
        let Some(iv) = self.intervals.as_mut() else {
            return;
        };
        let start = iv.next - iv.every;
        if iv.answers + iv.errors == 0 || now <= start {
            return;
        }
        let sample = iv.take(now - self.origin, now - start);
        self.report.record_interval(sample);
    }

    /// The hand-shake deadline passed: every connection still dialling or
    /// waiting for its ack (or not dialled yet) is given up and closed.
    fn give_up_connecting(&mut self, cx: &mut Context<'_, Self>) {
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            if matches!(
                link.state,
                LinkState::Idle | LinkState::Dialing | LinkState::Hello
            ) {
                if let Some(conn) = link.conn {
                    cx.close(conn);
                }
                self.report.errors += 1;
                self.report.dials_failed += 1;
                self.lose_link(cx, i);
            }
        }
    }

    fn lose_link(&mut self, cx: &mut Context<'_, Self>, i: usize) {
        let link = &mut self.links[i];
        if link.state != LinkState::Closed {
            self.report.connections_lost += 1;
        }
        if matches!(
            link.state,
            LinkState::Idle | LinkState::Dialing | LinkState::Hello
        ) {
            self.links_pending -= 1;
        }
        link.state = LinkState::Closed;
        link.conn = None;
        self.report.lost += link.window.len() as u64;
        if let Some(iv) = self.intervals.as_mut() {
            iv.errors += link.window.len() as u64;
        }
        self.in_flight -= link.window.len();
        link.window.clear();
        self.maybe_start(cx);
        self.pump(cx);
    }
}

/// An order-entry message from the gateway or exchange.
macro_rules! answer {
    ($op:expr) => {
        Handler {
            opcode: $op,
            allowed: StateSet::UPSTREAM,
            handle: |c: &mut Client, cx, conn, p| c.on_order_msg(cx, conn, $op, p),
        }
    };
}

impl Service for Client {
    type Data = LinkIndex;

    const HANDLERS: &'static [Handler<Self>] = &[
        Handler {
            opcode: OP_ERROR,
            allowed: StateSet::LIVE,
            handle: Client::on_error,
        },
        Handler {
            opcode: OP_REJECT,
            allowed: StateSet::UPSTREAM,
            handle: Client::on_reject,
        },
        Handler {
            opcode: OP_ROLE_HELLO_REQ,
            allowed: StateSet::NONE,
            handle: |_, _, _, _| Ok(()),
        },
        Handler {
            opcode: OP_ROLE_HELLO_ACK,
            allowed: StateSet::DIALING,
            handle: Client::on_ack,
        },
        Handler {
            opcode: OP_PERF_PING,
            allowed: StateSet::NONE,
            handle: |_, _, _, _| Ok(()),
        },
        Handler {
            opcode: OP_PERF_PONG,
            allowed: StateSet::UPSTREAM,
            handle: Client::on_pong,
        },
        answer!(order::OP_ORDER_ACCEPTED),
        answer!(order::OP_ORDER_EXECUTED),
        answer!(order::OP_ORDER_CANCELED),
        answer!(order::OP_ORDER_REPLACED),
        answer!(order::OP_BOOK_SNAPSHOT),
        answer!(order::OP_BALANCE),
    ];

    fn on_start(&mut self, cx: &mut Context<'_, Self>) {
        self.connect_deadline = cx.now() + self.config.handshake_timeout;
        for _ in 0..DIALS_IN_FLIGHT_MAX {
            self.dial_next(cx);
        }
    }

    fn on_open(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, origin: Origin) {
        if origin == Origin::Accepted {
            cx.close(conn);
            return;
        }
        let i = self.link_of(cx, conn);
        let link = &mut self.links[i];
        if link.conn != Some(conn) || link.state != LinkState::Dialing {
            // Given up at the hand-shake deadline while it was dialled.
            cx.close(conn);
            return;
        }
        link.state = LinkState::Hello;
        self.dial_next(cx);
        let hello = RoleHelloReq::new(Role::Client, &self.config.token);
        cx.send(conn, 7 + hello.token.len(), |out| {
            hello.encode(out);
        });
    }

    fn on_close(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, session: Session<LinkIndex>) {
        let i = session.data.0 as usize;
        if self.links.get(i).is_some_and(|l| l.conn == Some(conn)) {
            self.lose_link(cx, i);
        }
    }

    fn on_connect_failed(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        session: Session<LinkIndex>,
    ) {
        // A dial given up at the hand-shake deadline was counted then.
        let i = session.data.0 as usize;
        if self
            .links
            .get(i)
            .is_some_and(|l| l.conn == Some(conn) && l.state == LinkState::Dialing)
        {
            self.report.errors += 1;
            self.report.dials_failed += 1;
            self.lose_link(cx, i);
        }
        self.dial_next(cx);
    }

    fn on_timeout(&mut self, cx: &mut Context<'_, Self>) {
        self.sample_intervals(cx.now());
        match self.phase {
            Phase::Connecting if cx.now() >= self.connect_deadline => self.give_up_connecting(cx),
            Phase::Draining { deadline } if cx.now() >= deadline => self.finish(cx),
            Phase::Running => self.pump(cx),
            _ => {}
        }
    }

    fn on_shutdown(&mut self, cx: &mut Context<'_, Self>) {
        if self.phase != Phase::Done {
            self.finish(cx);
        }
    }

    fn poll_timeout(&self) -> Option<Nanos> {
        let phase = match self.phase {
            Phase::Connecting => Some(self.connect_deadline),
            Phase::Draining { deadline } => Some(deadline),
            Phase::Running if self.report.sent < self.total() => self.next_due,
            _ => None,
        };
        let interval = match self.phase {
            Phase::Running | Phase::Draining { .. } => self.intervals.as_ref().map(|iv| iv.next),
            _ => None,
        };
        match (phase, interval) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_ready(&self) -> bool {
        self.is_running()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// Whether `msg` is a request's first answer (PROTOCOL.md, "Answers, and
/// their order"), as opposed to a later message about an order.
fn is_first_answer(msg: &OrderMsg<'_>) -> bool {
    match msg {
        OrderMsg::OrderCanceled(m) => m.reason == order::CANCEL_REASON_REQUESTED,
        OrderMsg::OrderAccepted(_)
        | OrderMsg::OrderReplaced(_)
        | OrderMsg::BookSnapshot(_)
        | OrderMsg::Balance(_) => true,
        _ => false,
    }
}
