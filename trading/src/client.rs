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

use crate::hello::accept_ack;
use crate::msg::{
    PerfPing, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ,
    PING_FRAME_LEN_MIN, PROTOCOL_VERSION,
};
use crate::schedule::Schedule;
use crate::Role;

/// Connections a client dials at once; the rest wait their turn.
pub const DIALS_IN_FLIGHT_MAX: usize = 64;

/// Longest latency a histogram records: one hour, in ns.
pub const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// How pings are offered.
#[derive(Clone, Debug)]
pub enum Load {
    /// One ping in flight in total, round-robin over the connections.
    Closed,
    /// `inflight` pings in flight per connection.
    Pipelined {
        /// The window per connection.
        inflight: u32,
    },
    /// Open loop: arrivals on a schedule.
    Open {
        /// The arrival schedule (built, so already validated; boxed, it
        /// is large).
        schedule: Box<Schedule>,
        /// Pings one connection may have in flight; a due ping waits for room.
        window: u32,
    },
}

/// Settings of a load run.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Connections to open to peer 0.
    pub connections: u32,
    /// Answers not recorded before measuring.
    pub warmup: u64,
    /// Answers recorded.
    pub count: u64,
    /// The load model.
    pub load: Load,
    /// Whole `PerfPing` frame size in bytes (≥ 54; the rest is pad).
    pub size: usize,
    /// The token presented in the hand-shake.
    pub token: String,
    /// How long to wait for the last answers once all pings are sent.
    pub drain_timeout: Nanos,
    /// Round trips kept in [`Report::trace`] (the first ones).
    pub trace_max: usize,
    /// Length of the live intervals of [`Report::intervals`]; `None` for none.
    pub interval: Option<Nanos>,
    /// How long dials and hand-shakes may take in all; connections not
    /// hand-shaked by then are given up (counted in `connections_lost`
    /// and `errors`) and the run goes on with the others.
    pub handshake_timeout: Nanos,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connections: 10,
            warmup: 1000,
            count: 10_000,
            load: Load::Closed,
            size: 64,
            token: String::new(),
            drain_timeout: Nanos::from_secs(5),
            trace_max: 0,
            interval: None,
            handshake_timeout: Nanos::from_secs(10),
        }
    }
}

/// How a ping was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A pong.
    Pong,
    /// A `Reject` with this code.
    Reject(ErrorCode),
}

/// One answered ping, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundTrip {
    /// Connection index (`0..connections`).
    pub conn: u32,
    /// The ping's seq.
    pub seq: u64,
    /// The gateway's routing tag (0 when rejected or direct).
    pub route: u64,
    /// Hop timestamps (t2..t4 are 0 in a reject).
    pub t: [Nanos; 5],
    /// The answer.
    pub answer: Answer,
}

/// One live interval of a long run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntervalSample {
    /// End of the interval, from the start of the run.
    pub at: Nanos,
    /// Answers (pongs and rejects) in the interval.
    pub answers: u64,
    /// Answers per second over the interval.
    pub rate_per_s: f64,
    /// Median rtt of the interval's pongs, ns (0 when none).
    pub p50_ns: u64,
    /// 99th percentile rtt, ns (0 when none).
    pub p99_ns: u64,
    /// Errors, rejects and losses in the interval.
    pub errors: u64,
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Round-trip times of recorded pongs, ns: from the ping's intended
    /// send time in open loop, so `rtt = send_lag + hop1 + … + hop4`.
    pub rtt: Histogram<u64>,
    /// How late recorded pings left against their schedule (`t1 −
    /// intended`), ns: open loop only (closed loop sends on time by
    /// definition). A large lag means the load generator, not the system
    /// under test, is behind: its host is too slow or too busy for the rate.
    pub send_lag: Histogram<u64>,
    /// `t2 − t1`, `t3 − t2`, `t4 − t3`, `t5 − t4`, ns (empty without a gateway).
    pub hops: [Histogram<u64>; 4],
    /// Pings sent.
    pub sent: u64,
    /// Pongs received.
    pub pongs: u64,
    /// `Reject`s received.
    pub rejects: u64,
    /// `Error` frames received, and connections that could not be opened.
    pub errors: u64,
    /// Pings that got no answer at all.
    pub lost: u64,
    /// Connections still waiting for answers when the drain deadline passed.
    pub drain_timeouts: u64,
    /// Answers out of order or for no ping in flight: a pong that is not for
    /// the oldest ping in flight on its connection, a `Reject` for a seq not
    /// in flight (rejects may overtake pongs; pongs keep send order).
    pub window_violations: u64,
    /// Pongs whose pad did not come back unchanged.
    pub corrupt: u64,
    /// Pongs whose stamps were not ordered `t1 ≤ … ≤ t5` (clocks not shared).
    pub clock_skews: u64,
    /// Pongs that went straight to an exchange (`t2 = t4 = 0`).
    pub direct: u64,
    /// When the first recorded answer's ping could leave (end of warm-up).
    pub measure_start: Nanos,
    /// When the last answer arrived.
    pub measure_end: Nanos,
    /// Connections that ended before the run did: a failed dial, a close
    /// by the peer (before or after the hand-shake), or an `Error`. The run
    /// went on with fewer connections than asked for.
    pub connections_lost: u64,
    /// When the first ping could leave (every connection hand-shaked): the
    /// whole run, warm-up included, is `run_start..measure_end`.
    pub run_start: Nanos,
    /// The first round trips, up to `trace_max`.
    pub trace: Vec<RoundTrip>,
    /// Live intervals, when configured.
    pub intervals: Vec<IntervalSample>,
    /// Intended send time of the first and the last ping (open loop).
    pub intended: Option<(Nanos, Nanos)>,
}

impl Report {
    fn new(trace_max: usize) -> Report {
        let histogram =
            || Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static bounds are valid");
        Report {
            rtt: histogram(),
            send_lag: histogram(),
            hops: [histogram(), histogram(), histogram(), histogram()],
            sent: 0,
            pongs: 0,
            rejects: 0,
            errors: 0,
            lost: 0,
            drain_timeouts: 0,
            window_violations: 0,
            corrupt: 0,
            clock_skews: 0,
            direct: 0,
            measure_start: Nanos::ZERO,
            measure_end: Nanos::ZERO,
            run_start: Nanos::ZERO,
            connections_lost: 0,
            trace: Vec::with_capacity(trace_max),
            intervals: Vec::new(),
            intended: None,
        }
    }

    /// Folds another worker's report into this one.
    pub fn merge(&mut self, other: &Report) {
        self.rtt.add(&other.rtt).expect("same bounds");
        self.send_lag.add(&other.send_lag).expect("same bounds");
        for (a, b) in self.hops.iter_mut().zip(&other.hops) {
            a.add(b).expect("same bounds");
        }
        self.sent += other.sent;
        self.pongs += other.pongs;
        self.rejects += other.rejects;
        self.errors += other.errors;
        self.lost += other.lost;
        self.drain_timeouts += other.drain_timeouts;
        self.window_violations += other.window_violations;
        self.corrupt += other.corrupt;
        self.clock_skews += other.clock_skews;
        self.direct += other.direct;
        self.connections_lost += other.connections_lost;
        if self.measure_start == Nanos::ZERO || other.measure_start < self.measure_start {
            self.measure_start = other.measure_start;
        }
        self.measure_end = self.measure_end.max(other.measure_end);
        if self.run_start == Nanos::ZERO || other.run_start < self.run_start {
            self.run_start = other.run_start;
        }
        self.trace.extend_from_slice(&other.trace);
        self.intervals.extend_from_slice(&other.intervals);
        self.intended = match (self.intended, other.intended) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
    }

    /// The rate the schedule intended (open loop): pings over the span of
    /// their intended send times.
    pub fn intended_rate_per_s(&self) -> Option<f64> {
        let (first, last) = self.intended?;
        let span = (last - first).as_u64() as f64 / 1e9;
        (span > 0.0).then(|| self.sent.saturating_sub(1) as f64 / span)
    }

    /// Answers of every kind.
    pub fn answered(&self) -> u64 {
        self.pongs + self.rejects
    }

    /// Seconds from the end of warm-up to the last answer.
    pub fn elapsed_secs(&self) -> f64 {
        (self.measure_end - self.measure_start).as_u64() as f64 / 1e9
    }

    /// Answers per second over the whole run, warm-up, pipeline fill and
    /// drain included: a floor of the throughput that holds even when the
    /// run is too short for a steady state (a few windows in flight).
    pub fn overall_rate_per_s(&self) -> f64 {
        let secs = (self.measure_end - self.run_start).as_u64() as f64 / 1e9;
        if secs > 0.0 {
            self.answered() as f64 / secs
        } else {
            0.0
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    /// Not dialled yet: dials are paced.
    Idle,
    Dialing,
    Hello,
    Ready,
    Closed,
}

#[derive(Debug)]
struct Link {
    conn: Option<ConnId>,
    state: LinkState,
    next_seq: u64,
    /// Pings in flight, oldest first.
    window: VecDeque<InFlight>,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    seq: u64,
    t1: Nanos,
    /// When the ping was due: t1 in closed loop, the schedule's time in open.
    intended: Nanos,
}

/// Live-interval bookkeeping.
#[derive(Debug)]
struct Intervals {
    every: Nanos,
    next: Nanos,
    rtt: Histogram<u64>,
    answers: u64,
    errors: u64,
}

impl Intervals {
    /// The sample of the interval ending at `at` and lasting `length`;
    /// starts the next one.
    fn take(&mut self, at: Nanos, length: Nanos) -> IntervalSample {
        let quantile = |q| {
            if self.rtt.is_empty() {
                0
            } else {
                self.rtt.value_at_quantile(q)
            }
        };
        let sample = IntervalSample {
            at,
            answers: self.answers,
            rate_per_s: self.answers as f64 / (length.as_u64().max(1) as f64 / 1e9),
            p50_ns: quantile(0.5),
            p99_ns: quantile(0.99),
            errors: self.errors,
        };
        self.rtt.reset();
        self.answers = 0;
        self.errors = 0;
        sample
    }
}

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
    report: Report,
}

/// Per-session data of the client: the connection's index.
#[derive(Debug, Default)]
pub struct LinkIndex(u32);

impl Client {
    /// A client for `config`. Panics on a config a CLI must have refused
    /// (no connection, a frame smaller than a ping).
    pub fn new(config: ClientConfig) -> Client {
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
        Client {
            report: Report::new(config.trace_max),
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

    /// Takes the report out (at the end of a run).
    pub fn into_report(self) -> Report {
        self.report
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
        let link = &mut self.links[i];
        let conn = link.conn.expect("a ready link has a connection");
        let seq = link.next_seq;
        link.next_seq += 1;
        let t1 = cx.now();
        let ping = PerfPing {
            seq,
            route: 0,
            t1,
            t2: Nanos::ZERO,
            t3: Nanos::ZERO,
            t4: Nanos::ZERO,
            pad: &self.pad,
        };
        self.in_flight += 1;
        link.window.push_back(InFlight {
            seq,
            t1,
            intended: intended.unwrap_or(t1),
        });
        self.report.sent += 1;
        cx.send(conn, ping.wire_len(), |out| {
            ping.encode(OP_PERF_PING, out);
        });
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
            self.record(ping, &pong, t5);
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

    fn record(&mut self, ping: InFlight, pong: &PerfPing<'_>, t5: Nanos) {
        let t1 = ping.t1;
        let rtt = (t5 - ping.intended).as_u64();
        self.report.rtt.saturating_record(rtt.max(1));
        if matches!(self.config.load, Load::Open { .. }) {
            // Sent on time is 0 ns late; the histogram's floor is 1.
            let lag = t1.checked_since(ping.intended).unwrap_or(Nanos::ZERO);
            self.report.send_lag.saturating_record(lag.as_u64().max(1));
        }
        if pong.t2 == Nanos::ZERO && pong.t4 == Nanos::ZERO {
            self.report.direct += 1;
            return;
        }
        let stamps = [t1, pong.t2, pong.t3, pong.t4, t5];
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
            self.report.intervals.push(sample);
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
        self.report.intervals.push(sample);
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
        let hello = RoleHelloReq {
            role: Role::Client.to_u8(),
            version: PROTOCOL_VERSION,
            token: &self.config.token,
        };
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
