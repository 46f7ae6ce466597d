//! The invariants every run is checked against: safety first, then
//! liveness.
//!
//! Most of them read the wire as the drivers decoded it
//! ([`crate::observe`]), not the roles' own counters, so a role cannot pass
//! by miscounting. The clients' reports are checked too, with the same
//! `fep_load::scenario::check` the real backend applies, and must agree
//! with the wire.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use fep_core::{ErrorCode, Nanos};
use fep_load::client::Report;
use fep_load::scenario::{self, Expect};
use fep_trading::gateway::{GatewayStats, REJECT_CODES};

use crate::faults::{Fault, FaultKind};
use crate::oracle::op::{
    ERROR as OP_ERROR, PERF_PING as OP_PERF_PING, PERF_PONG as OP_PERF_PONG, REJECT as OP_REJECT,
    ROLE_HELLO_ACK as OP_ROLE_HELLO_ACK, ROLE_HELLO_REQ as OP_ROLE_HELLO_REQ,
};
use crate::oracle::{MsgClass, Route};
use crate::run::{pings_of, Hosts, RunConfig};
use crate::trace::{Dir, Handled, HostIx, Recorder, WireEvent};

/// Violations kept per invariant (the count is exact).
pub const VIOLATIONS_KEPT: usize = 5;

/// Safety (nothing bad happens) or liveness (something good does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Nothing bad happens.
    Safety,
    /// The run completes once the faults heal.
    Liveness,
}

/// One invariant's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The invariant's name.
    pub name: &'static str,
    /// Safety or liveness.
    pub class: Class,
    /// How many times it broke.
    pub count: usize,
    /// The first violations.
    pub violations: Vec<String>,
}

impl Verdict {
    pub(crate) fn new(name: &'static str, class: Class) -> Verdict {
        Verdict {
            name,
            class,
            count: 0,
            violations: Vec::new(),
        }
    }

    pub(crate) fn fail(&mut self, what: String) {
        self.count += 1;
        if self.violations.len() < VIOLATIONS_KEPT {
            self.violations.push(what);
        }
    }

    /// Whether it held.
    pub fn passed(&self) -> bool {
        self.count == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            Class::Safety => "safety",
            Class::Liveness => "liveness",
        };
        if self.passed() {
            return write!(f, "ok    {class:<8} {}", self.name);
        }
        write!(f, "FAIL  {class:<8} {} ({}×)", self.name, self.count)?;
        for v in &self.violations {
            write!(f, "\n        {v}")?;
        }
        Ok(())
    }
}

/// The invariant a run fails when a host's software panicked.
pub const HOST_PANICKED: &str = "no host software panics";

/// What the harness itself found and did during a run.
pub(crate) struct Findings {
    /// The harness's own failures (liveness).
    pub failures: Vec<String>,
    /// The first panic of host software.
    pub panic: Option<String>,
    /// Whether the gateway drained mid-run.
    pub drained: bool,
    /// Per client: whether a `hold` or `latency` fault began on its link
    /// while it was opening a connection (so that dial may time out).
    pub dials_caught: Vec<bool>,
}

/// The invariants of a run, in order: safety, then liveness. `wire` has
/// seen every frame of the run.
pub(crate) fn check_run(
    config: &RunConfig,
    faults: &[Fault],
    hosts: &Hosts,
    recorder: &Recorder,
    wire: WireCheck,
    reports: &[Option<Report>],
    findings: Findings,
) -> Vec<Verdict> {
    let Findings {
        failures,
        panic,
        drained,
        dials_caught,
    } = findings;
    let answers = wire.answers.clone();
    // First: once a host panicked, whatever else broke follows from it.
    let mut panicked = Verdict::new(HOST_PANICKED, Class::Safety);
    if let Some(panic) = panic {
        panicked.fail(panic);
    }
    let mut verdicts = vec![panicked];
    let stats: Vec<GatewayStats> = hosts
        .gateway
        .workers()
        .iter()
        .map(|w| w.borrow().service().stats())
        .collect();
    let counters = wire.gateway_counters(&stats);
    verdicts.extend(wire.finish(recorder));
    verdicts.push(counters);
    verdicts.push(no_session_left(recorder, hosts));
    verdicts.push(reports_hold(
        config,
        faults,
        (drained, &dials_caught),
        &answers,
        hosts,
        reports,
    ));
    let mut liveness = Verdict::new("completes after faults heal", Class::Liveness);
    for f in failures {
        liveness.fail(f);
    }
    verdicts.push(liveness);
    verdicts
}

/// A TCP connection as one host sees it.
type ConnKey = (HostIx, SocketAddr, SocketAddr);

fn key(e: &WireEvent) -> ConnKey {
    (e.host, e.local, e.peer)
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    seq: u64,
    t1: u64,
    pad: u64,
    /// Pings of the connection still unanswered when it was sent: the
    /// gateway had at most these in flight for the session when it took
    /// it.
    ahead: usize,
    /// An `UPSTREAM_UNAVAILABLE` reject of a later ping overtook this one:
    /// PROTOCOL.md rejects the requests in flight "in their order", so it
    /// may now only be shed (`OVERLOADED`), never ponged or rejected for
    /// the lost upstream.
    overtaken: bool,
}

const NS_PER_MS: u64 = 1_000_000;

/// What the run's setup says about when a reject can be explained.
#[derive(Clone, Copy, Debug)]
pub struct Explain {
    /// The gateway hands pings off between workers (a refused handoff can
    /// shed only then).
    pub hands_off: bool,
    /// The gateway's bound of requests in flight per client session: a
    /// ping sent with this many ahead of it on its connection may be shed.
    pub session_inflight_max: u32,
    /// The exchange's port (a gateway connection to it is an upstream).
    pub exchange_port: u16,
    /// The gateway's client port.
    pub gateway_port: u16,
    /// After a crash or cut heals, how long the gateway may still have no
    /// upstream: its longest reconnect backoff, a dial, a hand-shake.
    pub upstream_back_ns: u64,
    /// The gateway's upstream connections per worker: a worker is whole
    /// again once that many are hand-shaked.
    pub upstream_connections: u16,
    /// How long after a cause its answer may still be read (links slowed
    /// by a latency fault, handoff delays).
    pub answer_late_ns: u64,
}

/// One reject code, allowed in a window (ns from the clients' start).
#[derive(Clone, Copy, Debug)]
struct Explained {
    code: ErrorCode,
    from_ns: u64,
    until_ns: u64,
}

/// What one gateway worker did, counted off the wire.
#[derive(Clone, Debug, Default)]
struct GatewaySeen {
    clients_opened: u64,
    clients_closed: u64,
    upstream_connects: u64,
    upstream_losses: u64,
    forwarded: u64,
    pongs: u64,
    rejects: [u64; REJECT_CODES],
}

/// A ping or pong as the route tag and `seq` name it once it left the
/// client.
type PingKey = (u64, u64);

/// When a worker handled a frame: (worker, ns).
type HandledAt = (u16, u64);

/// The invariants read off the wire, checked frame by frame as the run
/// goes, so that a run of any length needs memory only for what is in
/// flight.
///
/// - Nothing but the hand-shake (or an `Error`) goes out on a connection
///   before it is hand-shaked: before the acceptor sent its ack, or the
///   initiator received it.
/// - On every client connection: each answer is for a ping in flight
///   (exactly once); a pong is for the oldest ping still in flight (FIFO; a
///   `Reject` may overtake, as PROTOCOL.md orders pongs only); a pong
///   carries its own ping's `t1` and pad (it came back on the connection
///   that sent it); its stamps are ordered `t1 ≤ t2 ≤ t3 ≤ t4 ≤ t5`, `t5`
///   being when it was read.
/// - A client is refused only for what a fault explains, while it does:
///   no upstream (`UPSTREAM_UNAVAILABLE`) from a crash or cut of the
///   exchange, or a hold of the gateway–exchange link (past three
///   heartbeat intervals the gateway declares the exchange dead), until
///   the gateway can have reconnected, a shed ping
///   (`OVERLOADED`) while handoff queues refuse in a scenario that hands
///   off; it never reads an `Error`. Upstream rejects come in the order of
///   the pings they answer.
/// - Stamps are exact: `t2`, `t3` and `t4` equal the simulated time at
///   which the worker the contract names handled the frame (`t2`: the
///   tag's target worker took the ping; `t3`: the exchange took it; `t4`:
///   the tag's origin worker took the pong).
/// - On the gateway: a ping goes upstream from the worker its route tag
///   names as target; a pong goes out on the very client connection (and
///   worker) the tag names as origin.
#[derive(Debug)]
pub struct WireCheck {
    clients: Vec<HostIx>,
    gateway: HostIx,
    exchange: HostIx,
    /// Reject codes and when faults explain them (from the clients' start).
    allowed: Vec<Explained>,
    /// Windows (ns from the clients' start) in which the exchange refused
    /// with `SHUTTING_DOWN` because its journal had failed.
    journal_refusals: Vec<(u64, u64)>,
    /// See [`Explain::session_inflight_max`].
    session_inflight_max: u32,
    /// When the clients started (fault times count from it).
    start_ns: u64,
    /// When a gateway worker handled each client ping it read, and
    /// whether its drain had begun: (worker, connection as printed, seq)
    /// -> (ns, draining).
    gateway_pings: BTreeMap<(u16, String, u64), (u64, bool)>,
    /// Gateway workers that began their drain.
    draining: Vec<u16>,
    /// When each gateway worker lacked an upstream connection: (worker,
    /// from, until; `None` while it lasts), from its side of the wire (an
    /// upstream connection closed; all of them hand-shaked again).
    upstream_down: Vec<(u16, u64, Option<u64>)>,
    /// Each gateway worker's upstream connections hand-shaked and open.
    upstreams_acked: BTreeMap<u16, BTreeSet<u64>>,
    /// Upstream connections per gateway worker.
    upstream_connections: usize,
    /// The exchange's port: a gateway connection to it is an upstream.
    exchange_port: u16,
    /// The gateway's client port.
    gateway_port: u16,
    /// What each gateway worker did, as the wire shows it.
    gateway_seen: BTreeMap<u16, GatewaySeen>,
    /// `UPSTREAM_UNAVAILABLE` refusals the gateway wrote: (worker,
    /// connection, seq, when it took the ping, when it wrote the refusal).
    upstream_rejects: Vec<(u16, String, u64, u64, u64)>,
    /// Answers read by incarnations of client hosts that crashed since.
    answers_lost: u64,
    /// When the gateway wrote each `Reject` not yet read: (the client's
    /// socket address, seq) -> ns. A fault must explain a reject when the
    /// gateway decides it, not when a held or stalled link lets the client
    /// read it.
    rejects_written: BTreeMap<(SocketAddr, u64), u64>,
    /// Requests and first answers handed between gateway workers: (an
    /// answer, route, seq) -> who handled it and when.
    gateway_handoffs: BTreeMap<(bool, u64, u64), HandledAt>,
    /// Pongs a gateway worker handled from its upstream.
    gateway_pongs: BTreeMap<PingKey, HandledAt>,
    /// Pings the exchange handled.
    exchange_pings: BTreeMap<PingKey, u64>,
    shaken: BTreeMap<ConnKey, bool>,
    windows: BTreeMap<ConnKey, VecDeque<Sent>>,
    /// Pongs and `Reject`s each client host read.
    answers: BTreeMap<HostIx, (u64, u64)>,
    handshake: Verdict,
    once: Verdict,
    fifo: Verdict,
    same: Verdict,
    stamps: Verdict,
    rejects: Verdict,
    reject_order: Verdict,
    routing: Verdict,
    drain: Verdict,
    /// The highest request id each client connection sent.
    last_sent: BTreeMap<ConnKey, u64>,
    /// The clients send order entry: the exchange's own refusals are
    /// answers, always explained and in order.
    orders: bool,
    /// How long a journal failure explains refusals, if it may happen.
    journal_window_ns: Option<u64>,
    later: Verdict,
}

/// A `Reject` the exchange gives an order-entry request on its merits
/// (`UNKNOWN_ORDER`, `DUPLICATE_ID`, `INVALID_ORDER`,
/// `INSUFFICIENT_BALANCE`): an answer like any other, never a fault's.
fn is_business(e: &WireEvent) -> bool {
    e.opcode == OP_REJECT && (11..=14).contains(&e.code)
}

fn class_of(e: &WireEvent) -> MsgClass {
    crate::oracle::class(e.opcode, e.order.reason)
}

impl WireCheck {
    /// Checks for a run with these client hosts, this gateway host, and
    /// these faults.
    pub fn new(
        clients: Vec<HostIx>,
        gateway: HostIx,
        exchange: HostIx,
        faults: &[Fault],
        explain: Explain,
    ) -> WireCheck {
        let mut allowed = Vec::new();
        for f in faults {
            let begin = f.at_ms * NS_PER_MS;
            let end = f.end_ms() * NS_PER_MS;
            match f.kind {
                // The gateway rejects until its upstream is back: a
                // reconnect backoff, a dial and a hand-shake after the heal.
                FaultKind::Crash | FaultKind::Cut => allowed.push(Explained {
                    code: ErrorCode::UpstreamUnavailable,
                    from_ns: begin,
                    until_ns: end + explain.upstream_back_ns,
                }),
                // The exchange gone silent: the gateway's heartbeat watch
                // declares it dead and rejects what was in flight.
                FaultKind::Hold if f.causes_rejects() => allowed.push(Explained {
                    code: ErrorCode::UpstreamUnavailable,
                    from_ns: begin,
                    until_ns: end + explain.upstream_back_ns,
                }),
                // Refused from the drain on, for good.
                FaultKind::Drain => allowed.push(Explained {
                    code: ErrorCode::ShuttingDown,
                    from_ns: begin,
                    until_ns: u64::MAX,
                }),
                // Refused handoffs shed only where pings are handed off.
                FaultKind::RefuseHandoff if explain.hands_off => allowed.push(Explained {
                    code: ErrorCode::Overloaded,
                    from_ns: begin,
                    until_ns: end + explain.answer_late_ns,
                }),
                _ => {}
            }
        }
        WireCheck {
            clients,
            gateway,
            exchange,
            allowed,
            session_inflight_max: explain.session_inflight_max,
            start_ns: 0,
            gateway_pings: BTreeMap::new(),
            draining: Vec::new(),
            upstream_down: Vec::new(),
            upstreams_acked: BTreeMap::new(),
            upstream_connections: usize::from(explain.upstream_connections),
            upstream_rejects: Vec::new(),
            exchange_port: explain.exchange_port,
            gateway_port: explain.gateway_port,
            gateway_seen: BTreeMap::new(),
            answers_lost: 0,
            rejects_written: BTreeMap::new(),
            gateway_handoffs: BTreeMap::new(),
            gateway_pongs: BTreeMap::new(),
            exchange_pings: BTreeMap::new(),
            shaken: BTreeMap::new(),
            windows: BTreeMap::new(),
            answers: BTreeMap::new(),
            handshake: Verdict::new("nothing sent before the hand-shake", Class::Safety),
            once: Verdict::new("every ping answered exactly once", Class::Safety),
            fifo: Verdict::new("per-connection FIFO", Class::Safety),
            same: Verdict::new("pong on the connection that sent the ping", Class::Safety),
            stamps: Verdict::new(
                "t1 <= t2 <= t3 <= t4 <= t5, each the time its hop was handled",
                Class::Safety,
            ),
            reject_order: Verdict::new(
                "requests in flight on a lost upstream are rejected in their order",
                Class::Safety,
            ),
            rejects: Verdict::new(
                "rejects and errors only where faults explain them",
                Class::Safety,
            ),
            routing: Verdict::new("gateway routes by the tag", Class::Safety),
            drain: Verdict::new(
                "a draining gateway forwards no new ping and refuses no earlier one",
                Class::Safety,
            ),
            last_sent: BTreeMap::new(),
            orders: false,
            journal_window_ns: None,
            journal_refusals: Vec::new(),
            later: Verdict::new(
                "fills and IOC rests follow their request's first answer",
                Class::Safety,
            ),
        }
    }

    /// The clients send the order flow: the exchange's refusals on the
    /// merits (codes 11–14) are first answers, in order, always allowed.
    pub fn expect_orders(&mut self) {
        self.orders = true;
    }

    /// Allows `code` from `from_ns` to `until_ns` (absolute simulated ns):
    /// a fault the harness found during the run explains it, such as an
    /// exchange whose journal failed (`SHUTTING_DOWN`) and its restart
    /// (`UPSTREAM_UNAVAILABLE`).
    pub fn allow(&mut self, code: ErrorCode, from_ns: u64, until_ns: u64) {
        self.allowed.push(Explained {
            code,
            from_ns: from_ns.saturating_sub(self.start_ns),
            until_ns: until_ns.saturating_sub(self.start_ns),
        });
    }

    /// From now on a journal failure the exchange's driver reports
    /// ([`WireCheck::journal_failed`]) explains `SHUTTING_DOWN` and
    /// `UPSTREAM_UNAVAILABLE` for `window_ns`: the exchange refuses until
    /// the harness restarts it, then the gateway reconnects.
    pub fn explain_journal_failures(&mut self, window_ns: u64) {
        self.journal_window_ns = Some(window_ns);
    }

    /// The exchange's journal failed at `at` (absolute simulated ns).
    pub fn journal_failed(&mut self, at: u64) {
        if let Some(window) = self.journal_window_ns {
            self.journal_refusals.push((
                at.saturating_sub(self.start_ns),
                (at + window).saturating_sub(self.start_ns),
            ));
            self.allow(ErrorCode::ShuttingDown, at, at + window);
            self.allow(ErrorCode::UpstreamUnavailable, at, at + window);
        }
    }

    /// The clients start now: fault times count from here.
    pub fn clients_started(&mut self, at: u64) {
        self.start_ns = at;
    }

    fn explained(&self, code: u16, at: u64) -> bool {
        let at = at.saturating_sub(self.start_ns);
        self.allowed
            .iter()
            .any(|x| x.code.to_u16() == code && x.from_ns <= at && at <= x.until_ns)
    }

    /// Pongs and `Reject`s read by all clients.
    pub fn answered(&self) -> u64 {
        self.answers_lost + self.answers.values().map(|(p, r)| p + r).sum::<u64>()
    }

    /// `host` crashed: what its connections had in flight is gone with
    /// them, and a new incarnation (a `rejoin`) starts from nothing, even
    /// on a local port an old connection had.
    pub fn host_crashed(&mut self, host: HostIx) {
        self.windows.retain(|(h, _, _), _| *h != host);
        self.shaken.retain(|(h, _, _), _| *h != host);
        if let Some((pongs, rejects)) = self.answers.remove(&host) {
            self.answers_lost += pongs + rejects;
        }
    }

    /// A connection closed at `at` (ns), on the host and worker that
    /// owned it. A gateway upstream closing starts a spell without one.
    pub fn closed(&mut self, conn: &crate::trace::OpenConn, at: Nanos) {
        if conn.host != self.gateway {
            return;
        }
        let seen = self.gateway_seen.entry(conn.worker).or_default();
        if conn.peer.port() == self.exchange_port {
            seen.upstream_losses += 1;
            if let Some(acked) = self.upstreams_acked.get_mut(&conn.worker) {
                acked.remove(&conn.conn.to_bits());
            }
            let open = self
                .upstream_down
                .iter()
                .any(|spell| spell.0 == conn.worker && spell.2.is_none());
            if !open {
                self.upstream_down.push((conn.worker, at.as_u64(), None));
            }
        } else if conn.local.port() == self.gateway_port {
            seen.clients_closed += 1;
        }
    }

    /// A connection opened on the host and worker that own it.
    pub fn opened(&mut self, conn: &crate::trace::OpenConn) {
        if conn.host == self.gateway && conn.local.port() == self.gateway_port {
            self.gateway_seen
                .entry(conn.worker)
                .or_default()
                .clients_opened += 1;
        }
    }

    /// The gateway workers' own counters against what the wire showed
    /// them doing: connections opened and closed, upstreams hand-shaked
    /// and lost, exactly; pings forwarded, pongs and rejects (by code)
    /// delivered, at least as many as the wire carried (a frame counted
    /// may still wait in a closed connection's buffer).
    pub(crate) fn gateway_counters(&self, stats: &[GatewayStats]) -> Verdict {
        let mut v = Verdict::new("gateway counters agree with the wire", Class::Safety);
        for (w, stats) in stats.iter().enumerate() {
            let worker = u16::try_from(w).expect("few workers");
            let seen = self.gateway_seen.get(&worker).cloned().unwrap_or_default();
            let exact = [
                ("clients_opened", stats.clients_opened, seen.clients_opened),
                ("clients_closed", stats.clients_closed, seen.clients_closed),
                (
                    "upstream_connects",
                    stats.upstream_connects,
                    seen.upstream_connects,
                ),
                (
                    "upstream_losses",
                    stats.upstream_losses,
                    seen.upstream_losses,
                ),
            ];
            for (name, counted, wire) in exact {
                if counted != wire {
                    v.fail(format!("gateway/w{w}: {name} {counted}, the wire {wire}"));
                }
            }
            let mut at_least = vec![
                ("forwarded", stats.forwarded, seen.forwarded),
                ("pongs", stats.pongs, seen.pongs),
                ("rejects", stats.rejects, seen.rejects.iter().sum()),
            ];
            for (code, (&counted, &wire)) in
                stats.rejects_by_code.iter().zip(&seen.rejects).enumerate()
            {
                if counted < wire {
                    v.fail(format!(
                        "gateway/w{w}: rejects_by_code[{code}] {counted}, the wire {wire}"
                    ));
                }
            }
            at_least.retain(|(_, counted, wire)| counted < wire);
            for (name, counted, wire) in at_least {
                v.fail(format!(
                    "gateway/w{w}: {name} {counted}, fewer than the wire's {wire}"
                ));
            }
        }
        v
    }

    /// Whether some gateway worker had no upstream at some time within
    /// `from..=until`.
    fn upstream_was_down(&self, from: u64, until: u64) -> bool {
        self.upstream_down
            .iter()
            .any(|&(_, down, up)| down <= until && up.is_none_or(|up| up >= from))
    }

    /// Worker `worker` of `host` begins its drain: from now on it takes
    /// no new ping.
    pub fn shutdown(&mut self, host: HostIx, worker: u16) {
        if host == self.gateway && !self.draining.contains(&worker) {
            self.draining.push(worker);
        }
    }

    /// One frame, as host `names[e.host]` wrote or read it.
    pub fn event(&mut self, e: &WireEvent, names: &[String]) {
        let name = names[usize::from(e.host)].as_str();
        self.handshake_event(e, name);
        if self.clients.contains(&e.host) {
            self.client_event(e, name);
        }
        if e.host == self.gateway && e.dir == Dir::Out && e.route != 0 {
            self.routing_event(e);
        }
        if e.host == self.gateway && e.dir == Dir::Out {
            self.drain_event(e);
            let seen = self.gateway_seen.entry(e.worker).or_default();
            match e.opcode {
                OP_PERF_PING => seen.forwarded += 1,
                OP_PERF_PONG => seen.pongs += 1,
                OP_REJECT => {
                    seen.rejects[usize::from(e.code).min(REJECT_CODES - 1)] += 1;
                    // A later reject of the same seq on the same address
                    // (a rejoined client's new connection) replaces it.
                    self.rejects_written.insert((e.peer, e.seq), e.at.as_u64());
                }
                _ => {}
            }
        }
    }

    /// A frame a worker handled (dispatched), for the exact stamps.
    pub fn handled(&mut self, how: Handled, e: &WireEvent) {
        let at = e.at.as_u64();
        let key = (e.route, e.seq);
        match (e.host, how, class_of(e)) {
            (h, Handled::Read, MsgClass::Request) if h == self.gateway => {
                let draining = self.draining.contains(&e.worker);
                self.gateway_pings
                    .insert((e.worker, format!("{:?}", e.conn), e.seq), (at, draining));
            }
            (h, Handled::Read, _) if h == self.gateway && e.opcode == OP_ROLE_HELLO_ACK => {
                self.gateway_seen
                    .entry(e.worker)
                    .or_default()
                    .upstream_connects += 1;
                // With several upstream connections per worker, the spell
                // lasts until every one of them is hand-shaked again.
                let acked = self.upstreams_acked.entry(e.worker).or_default();
                acked.insert(e.conn.to_bits());
                if acked.len() >= self.upstream_connections {
                    for spell in &mut self.upstream_down {
                        if spell.0 == e.worker && spell.2.is_none() {
                            spell.2 = Some(at);
                        }
                    }
                }
            }
            (h, Handled::Read, MsgClass::First) if h == self.gateway => {
                self.gateway_pongs.insert(key, (e.worker, at));
            }
            (h, Handled::Handoff, class @ (MsgClass::Request | MsgClass::First))
                if h == self.gateway =>
            {
                self.gateway_handoffs
                    .insert((class == MsgClass::First, e.route, e.seq), (e.worker, at));
            }
            (h, Handled::Read, MsgClass::Request) if h == self.exchange => {
                self.exchange_pings.insert(key, at);
            }
            _ => {}
        }
    }

    /// The stamps of a pong read by a client, against the times the
    /// simulator saw each process handle its ping and pong, on the worker
    /// the contract names: `t2` when the tag's target worker took the ping
    /// (from its client connection, or from the origin's handoff) and
    /// forwarded it; `t3` when the exchange took the ping; `t4` when the
    /// tag's origin worker took the pong (from its upstream, or from the
    /// target's handoff) and wrote it to the client. Simulated time moves
    /// in whole milliseconds, so a stamp taken on another step, another
    /// worker or copied from another field is off by at least one.
    fn exact_stamps(&mut self, e: &WireEvent) -> Option<String> {
        let [_, t2, t3, t4] = e.t;
        let tag = Route::read(e.route);
        let key = (e.route, e.seq);
        let read = self
            .gateway_pings
            .remove(&(tag.origin, tag.conn_text(), e.seq));
        let ping_handoff = self.gateway_handoffs.remove(&(false, e.route, e.seq));
        let pong_read = self.gateway_pongs.remove(&key);
        let pong_handoff = self.gateway_handoffs.remove(&(true, e.route, e.seq));
        let (ping_at, pong_at) = if tag.origin == tag.target {
            (read.map(|(at, _)| (tag.origin, at)), pong_read)
        } else {
            (ping_handoff, pong_handoff)
        };
        let mut wrong = Vec::new();
        let mut want =
            |stamp: &str, got: u64, at: Option<HandledAt>, worker: u16, what: &str| match at {
                None => wrong.push(format!("no gateway worker handled its {what}")),
                Some((w, _)) if w != worker => wrong.push(format!(
                    "its {what} was handled on w{w}, the tag names w{worker}"
                )),
                Some((_, at)) if at != got => wrong.push(format!(
                    "{stamp} {got} but w{worker} handled the {what} at {at}"
                )),
                Some(_) => {}
            };
        want("t2", t2, ping_at, tag.target, "ping");
        // An order's first answer crosses workers inside the gateway's own
        // lane frame, which the driver reads as the answer it carries
        // (`oracle::read_lane`): its `t4` is exact like a pong's.
        want("t4", t4, pong_at, tag.origin, "pong");
        match self.exchange_pings.remove(&key) {
            None => wrong.push("the exchange never handled this ping".to_owned()),
            Some(at) if at != t3 => {
                wrong.push(format!("t3 {t3} but the exchange handled the ping at {at}"))
            }
            Some(_) => {}
        }
        (!wrong.is_empty()).then(|| wrong.join("; "))
    }

    fn handshake_event(&mut self, e: &WireEvent, name: &str) {
        let done = self.shaken.entry(key(e)).or_insert(false);
        match (e.dir, e.opcode) {
            (Dir::Out, OP_ROLE_HELLO_ACK) | (Dir::In, OP_ROLE_HELLO_ACK) => *done = true,
            (Dir::Out, OP_ROLE_HELLO_REQ | OP_ERROR) | (Dir::In, _) => {}
            (Dir::Out, op) if !*done => self.handshake.fail(format!(
                "{name} {} -> {}: opcode {op} sent at {} before the hand-shake",
                e.local, e.peer, e.at
            )),
            (Dir::Out, _) => {}
        }
    }

    fn client_event(&mut self, e: &WireEvent, name: &str) {
        let here = || format!("{name} {} seq {} at {}", e.local, e.seq, e.at);
        let written = (e.opcode == OP_REJECT && e.dir == Dir::In)
            .then(|| self.rejects_written.remove(&(e.local, e.seq)))
            .flatten();
        let explained =
            e.opcode != OP_REJECT || self.explained(e.code, written.unwrap_or(e.at.as_u64()));
        let explained = explained || (self.orders && is_business(e));
        let class = class_of(e);
        if class == MsgClass::Later {
            return self.later_event(e, &here());
        }
        let session_inflight_max = usize::try_from(self.session_inflight_max).unwrap_or(usize::MAX);
        let window = self.windows.entry(key(e)).or_default();
        match (e.dir, class) {
            (Dir::Out, MsgClass::Request) => {
                window.push_back(Sent {
                    seq: e.seq,
                    t1: e.t[0],
                    pad: e.pad,
                    ahead: window.len(),
                    overtaken: false,
                });
                let last = self.last_sent.entry(key(e)).or_default();
                *last = (*last).max(e.seq);
            }
            (Dir::In, MsgClass::First | MsgClass::Reject) => {
                let counts = self.answers.entry(e.host).or_default();
                if e.opcode != OP_REJECT {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
                let Some(pos) = window.iter().position(|s| s.seq == e.seq) else {
                    self.once
                        .fail(format!("{}: answer for no ping in flight", here()));
                    return;
                };
                let sent = window.remove(pos).expect("position is in range");
                // Shed at the session's bound: only with the bound reached.
                let shed =
                    e.code == ErrorCode::Overloaded.to_u16() && sent.ahead >= session_inflight_max;
                if e.opcode == OP_REJECT && !explained && !shed {
                    let code = ErrorCode::from_u16(e.code);
                    self.rejects.fail(format!(
                        "{}: Reject {} written at {}ns while no fault explains it ({} ahead of it)",
                        here(),
                        code.name(),
                        written.unwrap_or(e.at.as_u64()),
                        sent.ahead
                    ));
                }
                let lost_upstream =
                    e.opcode == OP_REJECT && e.code == ErrorCode::UpstreamUnavailable.to_u16();
                if sent.overtaken && (e.opcode != OP_REJECT || lost_upstream) {
                    self.reject_order.fail(format!(
                        "{}: answered after a later ping was rejected for its lost upstream",
                        here()
                    ));
                }
                if lost_upstream {
                    for older in window.iter_mut().take(pos) {
                        older.overtaken = true;
                    }
                }
                if e.opcode == OP_REJECT && !(self.orders && is_business(e)) {
                    // PROTOCOL.md orders pongs; a shed ping's Reject may
                    // overtake.
                    return;
                }
                if pos != 0 {
                    self.fifo
                        .fail(format!("{}: answer before {pos} older requests", here()));
                }
                if e.opcode == OP_REJECT {
                    // The exchange's own refusal: in order, but no stamps.
                    return;
                }
                if e.t[0] != sent.t1 || e.pad != sent.pad {
                    self.same.fail(format!(
                        "{}: pong carries t1 {} (sent {}) or another pad",
                        here(),
                        e.t[0],
                        sent.t1
                    ));
                }
                let [t1, t2, t3, t4] = e.t;
                let t5 = e.at.as_u64();
                if t2 == 0 || t4 == 0 || !(t1 <= t2 && t2 <= t3 && t3 <= t4 && t4 <= t5) {
                    self.stamps
                        .fail(format!("{}: t = {:?}, t5 = {t5}", here(), e.t));
                } else if let Some(wrong) = self.exact_stamps(e) {
                    self.stamps.fail(format!("{}: {wrong}", here()));
                }
            }
            (Dir::In, MsgClass::Other) if e.opcode == OP_ERROR => {
                let code = ErrorCode::from_u16(e.code);
                self.rejects.fail(format!(
                    "{name} {} at {}: Error {}",
                    e.local,
                    e.at,
                    code.name()
                ));
            }
            _ => {}
        }
    }

    /// A draining worker refuses every ping it takes (`SHUTTING_DOWN`)
    /// and only those: a ping it took before its drain goes upstream.
    fn drain_event(&mut self, e: &WireEvent) {
        if e.opcode == OP_REJECT && e.code == ErrorCode::UpstreamUnavailable.to_u16() {
            self.upstream_reject_event(e);
            return;
        }
        let (worker, conn) = match e.opcode {
            OP_PERF_PING => {
                let tag = Route::read(e.route);
                (tag.origin, tag.conn_text())
            }
            OP_REJECT if e.code == ErrorCode::ShuttingDown.to_u16() => {
                (e.worker, format!("{:?}", e.conn))
            }
            _ => return,
        };
        let Some(&(at, draining)) = self.gateway_pings.get(&(worker, conn.clone(), e.seq)) else {
            return;
        };
        if e.opcode == OP_PERF_PING && draining {
            self.drain.fail(format!(
                "ping w{worker} {conn} seq {} taken at {at} after the drain began went upstream at {}",
                e.seq, e.at
            ));
        }
        // The exchange refuses with the same code while its journal is
        // failed: that refusal is the exchange's, not the drain's.
        let at_rel = e.at.as_u64().saturating_sub(self.start_ns);
        let journal = self
            .journal_refusals
            .iter()
            .any(|&(from, until)| from <= at_rel && at_rel <= until);
        if e.opcode == OP_REJECT && !draining && !journal {
            self.drain.fail(format!(
                "ping w{worker} {conn} seq {} taken at {at} before the drain was refused SHUTTING_DOWN at {}",
                e.seq, e.at
            ));
        }
    }

    /// A fill or an IOC's rest read by a client: it names a request this
    /// connection sent, and one it caused itself (`t1` echoed) comes after
    /// that request's first answer (PROTOCOL.md: "After a `NewOrder`'s
    /// `OrderAccepted` come its fills").
    fn later_event(&mut self, e: &WireEvent, here: &str) {
        if e.dir != Dir::In {
            return;
        }
        let last = self.last_sent.get(&key(e)).copied().unwrap_or(0);
        let waiting = self
            .windows
            .get(&key(e))
            .is_some_and(|w| w.iter().any(|s| s.seq == e.seq));
        if e.seq == 0 || e.seq > last {
            self.later
                .fail(format!("{here}: a later message for a request never sent"));
        } else if e.t[0] != 0 && waiting {
            self.later.fail(format!(
                "{here}: a later message before its request's first answer"
            ));
        }
    }

    /// The gateway refuses a ping for want of an upstream only if one of
    /// its workers had none at some time between taking the ping and
    /// writing the refusal (a worker's upstream dying with the ping in
    /// flight, or the ping arriving while it was down).
    fn upstream_reject_event(&mut self, e: &WireEvent) {
        let conn = format!("{:?}", e.conn);
        let Some(&(taken, _)) = self.gateway_pings.get(&(e.worker, conn.clone(), e.seq)) else {
            return;
        };
        // Judged when the run is over: the upstream's close may be
        // recorded after the refusals written in the same step.
        self.upstream_rejects
            .push((e.worker, conn, e.seq, taken, e.at.as_u64()));
    }

    fn routing_event(&mut self, e: &WireEvent) {
        let tag = Route::read(e.route);
        match class_of(e) {
            MsgClass::Request if tag.target != e.worker => self.routing.fail(format!(
                "ping seq {} for upstream w{} left from w{} at {}",
                e.seq, tag.target, e.worker, e.at
            )),
            MsgClass::First | MsgClass::Later => {
                let conn = format!("{:?}", e.conn);
                if tag.origin != e.worker || tag.conn_text() != conn {
                    self.routing.fail(format!(
                        "pong seq {} for w{} {} left on w{} {conn} at {}",
                        e.seq,
                        tag.origin,
                        tag.conn_text(),
                        e.worker,
                        e.at
                    ))
                }
            }
            _ => {}
        }
    }

    /// The verdicts, once the run is over: pings still unanswered on a
    /// connection that is still open break "exactly once".
    fn finish(mut self, recorder: &Recorder) -> Vec<Verdict> {
        for (worker, conn, seq, taken, written) in std::mem::take(&mut self.upstream_rejects) {
            if !self.upstream_was_down(taken, written) {
                self.rejects.fail(format!(
                    "gateway w{worker} {conn} seq {seq}: Reject UPSTREAM_UNAVAILABLE at {written} while every upstream was up since the ping was taken at {taken}"
                ));
            }
        }
        for ((host, local, _), window) in &self.windows {
            let open = recorder
                .open
                .iter()
                .any(|c| c.host == *host && c.local == *local);
            if open && !window.is_empty() {
                self.once.fail(format!(
                    "{} {local}: {} pings unanswered on a connection still open",
                    recorder.host_name(*host),
                    window.len()
                ));
            }
        }
        vec![
            self.handshake,
            self.once,
            self.fifo,
            self.same,
            self.stamps,
            self.rejects,
            self.reject_order,
            self.routing,
            self.drain,
            self.later,
        ]
    }
}

/// After the run quiesces, every host's workers hold exactly the sessions
/// of their open connections, and every open connection's other end is
/// open too: a close reached both sides.
fn no_session_left(recorder: &Recorder, hosts: &Hosts) -> Verdict {
    let mut v = Verdict::new("no session left after close", Class::Safety);
    let mut count = |ix: HostIx, name: &str, sessions: Vec<usize>| {
        for (w, n) in sessions.into_iter().enumerate() {
            let open = recorder
                .open
                .iter()
                .filter(|c| c.host == ix && usize::from(c.worker) == w)
                .count();
            if n != open {
                v.fail(format!(
                    "{name}/w{w}: {n} sessions, {open} open connections"
                ));
            }
        }
    };
    count(hosts.exchange.ix(), "exchange", hosts.exchange.sessions());
    count(hosts.gateway.ix(), "gateway", hosts.gateway.sessions());
    for c in &hosts.clients {
        if recorder.open.iter().any(|o| o.host == c.ix()) || c.is_done() {
            count(c.ix(), c.name(), c.sessions());
        }
    }
    for c in recorder.one_sided() {
        v.fail(format!(
            "{}/w{} {:?} {} -> {}: the other end is closed",
            recorder.host_name(c.host),
            c.worker,
            c.conn,
            c.local,
            c.peer
        ));
    }
    v
}

/// Each client that stayed passes the scenario's report check, and its
/// report agrees with what the wire carried.
fn reports_hold(
    config: &RunConfig,
    faults: &[Fault],
    (drained, dials_caught): (bool, &[bool]),
    answers: &BTreeMap<HostIx, (u64, u64)>,
    hosts: &Hosts,
    reports: &[Option<Report>],
) -> Verdict {
    let mut v = Verdict::new("client reports pass the scenario check", Class::Safety);
    // The exchange refuses orders on their merits in any run; the wire
    // check allows those and only those without a fault.
    let rejects_allowed = config.scenario.orders()
        || faults.iter().any(Fault::causes_rejects)
        || config.gateway_config().inflight_per_session_max < config.inflight;
    for (k, (client, report)) in hosts.clients.iter().zip(reports).enumerate() {
        let Some(report) = report else {
            continue;
        };
        let k16 = u16::try_from(k).expect("few clients");
        let expect = Expect {
            pings: pings_of(config, k16),
            rejects_allowed,
            losses_allowed: false,
            through_gateway: true,
            dials_may_fail: dials_caught.get(k).copied().unwrap_or(false),
        };
        // A drained gateway closes on clients that have pings left to
        // send: their reports show losses and failed dials; the wire
        // checks still judge every answer they had.
        let violations = if drained {
            Vec::new()
        } else {
            scenario::check(report, &expect)
        };
        for violation in violations {
            v.fail(format!("{}: {violation}", client.name()));
        }
        if let Some(flow) = report.flow.as_ref().filter(|f| f.violations != 0) {
            v.fail(format!(
                "{}: the order flow saw {} messages that break the contract",
                client.name(),
                flow.violations
            ));
        }
        let (pongs, rejects) = answers.get(&client.ix()).copied().unwrap_or_default();
        if (pongs, rejects) != (report.pongs, report.rejects) {
            v.fail(format!(
                "{}: report counts {} pongs {} rejects, the wire {pongs} and {rejects}",
                client.name(),
                report.pongs,
                report.rejects
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::op::{PERF_PING as OP_PERF_PING, PERF_PONG as OP_PERF_PONG};
    use fep_core::{ConnId, Nanos};
    use std::net::{IpAddr, Ipv4Addr};

    const CLIENT: HostIx = 0;
    const GATEWAY: HostIx = 1;
    const EXCHANGE: HostIx = 2;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn event(host: HostIx, dir: Dir, opcode: u16, at: u64) -> WireEvent {
        WireEvent {
            at: Nanos(at),
            host,
            worker: 0,
            conn: ConnId::from_bits(0),
            local: addr(1000 + host),
            peer: addr(2000 + host),
            dir,
            opcode,
            seq: 0,
            route: 0,
            t: [0; 4],
            pad: 0,
            code: 0,
            order: crate::oracle::OrderFields::default(),
        }
    }

    fn check() -> WireCheck {
        check_with_upstreams(1)
    }

    /// A checker whose gateway keeps `upstreams` upstream connections per
    /// worker.
    fn check_with_upstreams(upstreams: u16) -> WireCheck {
        let explain = Explain {
            hands_off: false,
            session_inflight_max: 1024,
            exchange_port: 10_000,
            gateway_port: 9_000,
            upstream_back_ns: 0,
            upstream_connections: upstreams,
            answer_late_ns: 0,
        };
        let mut c = WireCheck::new(vec![CLIENT], GATEWAY, EXCHANGE, &[], explain);
        // The hand-shake, so that nothing is sent before it.
        for host in [CLIENT, GATEWAY, EXCHANGE] {
            c.shaken.insert(key(&event(host, Dir::Out, 0, 0)), true);
        }
        c
    }

    fn names() -> Vec<String> {
        vec!["client-0".into(), "gateway".into(), "exchange".into()]
    }

    /// One ping's whole trip, local routing on w0, the exchange reading it
    /// at 30 and stamping `t3`.
    fn trip(c: &mut WireCheck, seq: u64, t3: u64) {
        trip_stamped(c, seq, [10, 20, t3, 40]);
    }

    /// The same trip, the pong arriving with stamps `t`.
    fn trip_stamped(c: &mut WireCheck, seq: u64, t: [u64; 4]) {
        let names = names();
        let route = 0; // origin w0, target w0, connection c0.0
        let mut ping = event(CLIENT, Dir::Out, OP_PERF_PING, 10);
        ping.seq = seq;
        ping.t = [10, 0, 0, 0];
        c.event(&ping, &names);
        let mut read = event(GATEWAY, Dir::In, OP_PERF_PING, 20);
        read.seq = seq;
        c.event(&read, &names);
        c.handled(Handled::Read, &read);
        let mut fwd = event(GATEWAY, Dir::Out, OP_PERF_PING, 20);
        (fwd.seq, fwd.route, fwd.t) = (seq, route, [10, 20, 0, 0]);
        c.event(&fwd, &names);
        let mut at_exchange = event(EXCHANGE, Dir::In, OP_PERF_PING, 30);
        (at_exchange.seq, at_exchange.route) = (seq, route);
        c.event(&at_exchange, &names);
        c.handled(Handled::Read, &at_exchange);
        let mut from_exchange = event(EXCHANGE, Dir::Out, OP_PERF_PONG, 30);
        (from_exchange.seq, from_exchange.route) = (seq, route);
        c.event(&from_exchange, &names);
        let mut pong_read = event(GATEWAY, Dir::In, OP_PERF_PONG, 40);
        (pong_read.seq, pong_read.route) = (seq, route);
        c.event(&pong_read, &names);
        c.handled(Handled::Read, &pong_read);
        let mut pong_out = event(GATEWAY, Dir::Out, OP_PERF_PONG, 40);
        (pong_out.seq, pong_out.route) = (seq, route);
        c.event(&pong_out, &names);
        let mut pong = event(CLIENT, Dir::In, OP_PERF_PONG, 50);
        (pong.seq, pong.route, pong.t) = (seq, route, t);
        c.event(&pong, &names);
    }

    #[test]
    fn a_pong_stamped_with_the_times_its_hops_were_handled_passes() {
        let mut c = check();
        trip(&mut c, 1, 30);
        assert!(c.stamps.passed(), "{}", c.stamps);
    }

    #[test]
    fn a_t3_ordered_but_not_the_exchanges_arrival_time_fails() {
        let mut c = check();
        // 35 still lies between t2 = 20 and t4 = 40: only exactness catches it.
        trip(&mut c, 1, 35);
        assert_eq!(c.stamps.count, 1, "{}", c.stamps);
    }

    #[test]
    fn a_t2_taken_after_the_gateway_handled_the_ping_fails() {
        let mut c = check();
        // 25: still ordered, but the gateway handled the ping at 20.
        trip_stamped(&mut c, 1, [10, 25, 30, 40]);
        assert_eq!(c.stamps.count, 1, "{}", c.stamps);
    }

    #[test]
    fn a_pong_handled_on_another_worker_than_the_tags_origin_fails() {
        let mut c = check();
        let mut pong_read = event(GATEWAY, Dir::In, OP_PERF_PONG, 40);
        // Handed to w1 instead of read by w0, the tag's origin and target.
        pong_read.worker = 1;
        c.handled(Handled::Read, &pong_read);
        let e = event(CLIENT, Dir::In, OP_PERF_PONG, 50);
        c.handled(Handled::Read, &event(EXCHANGE, Dir::In, OP_PERF_PING, 30));
        c.handled(Handled::Read, &event(GATEWAY, Dir::In, OP_PERF_PING, 20));
        let wrong = c
            .exact_stamps(&WireEvent {
                t: [10, 20, 30, 40],
                ..e
            })
            .expect("the pong's worker is checked");
        assert!(wrong.contains("handled on w1"), "{wrong}");
    }

    /// An order handed from w0 (its client's worker) to w1 (its
    /// upstream's) and its `OrderAccepted` handed back, w0 taking the
    /// answer at 45; the client reads it stamped `t`.
    fn handed_order_stamps(t: [u64; 4]) -> Option<String> {
        use crate::oracle::op::{NEW_ORDER, ORDER_ACCEPTED};
        let mut c = check();
        let route = 1 << 48; // origin w0, target w1, connection c0.0
        let at = |host, worker, opcode, at| WireEvent {
            worker,
            seq: 7,
            route,
            ..event(host, Dir::In, opcode, at)
        };
        c.handled(Handled::Handoff, &at(GATEWAY, 1, NEW_ORDER, 20));
        c.handled(Handled::Read, &at(EXCHANGE, 0, NEW_ORDER, 30));
        c.handled(Handled::Read, &at(GATEWAY, 1, ORDER_ACCEPTED, 40));
        c.handled(Handled::Handoff, &at(GATEWAY, 0, ORDER_ACCEPTED, 45));
        c.exact_stamps(&WireEvent {
            t,
            ..at(CLIENT, 0, ORDER_ACCEPTED, 50)
        })
    }

    #[test]
    fn an_orders_first_answer_handed_back_is_stamped_t4_when_its_origin_took_it() {
        assert_eq!(handed_order_stamps([10, 20, 30, 45]), None);
        // 40: when the upstream's worker read it, still ordered.
        let wrong = handed_order_stamps([10, 20, 30, 40]).expect("t4 is exact");
        assert!(wrong.contains("t4 40 but w0 handled"), "{wrong}");
    }

    fn reject(seq: u64, code: ErrorCode, at: u64) -> WireEvent {
        let mut r = event(CLIENT, Dir::In, OP_REJECT, at);
        (r.seq, r.code) = (seq, code.to_u16());
        r
    }

    fn two_pings(c: &mut WireCheck) {
        for seq in [1, 2] {
            let mut ping = event(CLIENT, Dir::Out, OP_PERF_PING, seq);
            ping.seq = seq;
            c.event(&ping, &names());
        }
    }

    #[test]
    fn rejects_for_a_lost_upstream_in_send_order_pass() {
        let mut c = check();
        two_pings(&mut c);
        c.event(&reject(1, ErrorCode::UpstreamUnavailable, 5), &names());
        c.event(&reject(2, ErrorCode::UpstreamUnavailable, 6), &names());
        assert!(c.reject_order.passed(), "{}", c.reject_order);
    }

    #[test]
    fn rejects_for_a_lost_upstream_out_of_send_order_fail() {
        let mut c = check();
        two_pings(&mut c);
        c.event(&reject(2, ErrorCode::UpstreamUnavailable, 5), &names());
        c.event(&reject(1, ErrorCode::UpstreamUnavailable, 6), &names());
        assert_eq!(c.reject_order.count, 1);
    }

    #[test]
    fn a_shed_ping_may_be_rejected_after_a_later_ones_upstream_reject() {
        let mut c = check();
        two_pings(&mut c);
        c.event(&reject(2, ErrorCode::UpstreamUnavailable, 5), &names());
        c.event(&reject(1, ErrorCode::Overloaded, 6), &names());
        assert!(c.reject_order.passed(), "{}", c.reject_order);
    }

    fn bounded(session_inflight_max: u32) -> WireCheck {
        let explain = Explain {
            hands_off: false,
            session_inflight_max,
            exchange_port: 10_000,
            gateway_port: 9_000,
            upstream_back_ns: 0,
            upstream_connections: 1,
            answer_late_ns: 0,
        };
        WireCheck::new(vec![CLIENT], GATEWAY, EXCHANGE, &[], explain)
    }

    #[test]
    fn a_shed_ping_is_explained_only_with_the_sessions_bound_reached() {
        let mut at_bound = bounded(1);
        two_pings(&mut at_bound);
        // Ping 2 was sent with ping 1 ahead of it: the bound of 1 reached.
        at_bound.event(&reject(2, ErrorCode::Overloaded, 5), &names());
        assert!(at_bound.rejects.passed(), "{}", at_bound.rejects);
        let mut below = bounded(2);
        two_pings(&mut below);
        below.event(&reject(2, ErrorCode::Overloaded, 5), &names());
        assert_eq!(below.rejects.count, 1, "{}", below.rejects);
    }

    #[test]
    fn a_draining_gateway_that_forwards_a_ping_it_took_after_its_drain_fails() {
        let mut c = check();
        let read = event(GATEWAY, Dir::In, OP_PERF_PING, 20);
        c.handled(Handled::Read, &read);
        // Taken before the drain: it may go upstream.
        c.event(&event(GATEWAY, Dir::Out, OP_PERF_PING, 21), &names());
        c.shutdown(GATEWAY, 0);
        let mut late = event(GATEWAY, Dir::In, OP_PERF_PING, 22);
        late.seq = 1;
        c.handled(Handled::Read, &late);
        let mut forwarded = event(GATEWAY, Dir::Out, OP_PERF_PING, 22);
        forwarded.seq = 1;
        c.event(&forwarded, &names());
        assert_eq!(c.drain.count, 1, "{}", c.drain);
    }

    #[test]
    fn a_draining_gateway_that_refuses_a_ping_it_took_before_its_drain_fails() {
        let mut c = check();
        c.handled(Handled::Read, &event(GATEWAY, Dir::In, OP_PERF_PING, 20));
        c.shutdown(GATEWAY, 0);
        let mut refused = event(GATEWAY, Dir::Out, OP_REJECT, 21);
        refused.code = ErrorCode::ShuttingDown.to_u16();
        c.event(&refused, &names());
        assert_eq!(c.drain.count, 1, "{}", c.drain);
    }

    fn upstream_refusal(c: &mut WireCheck, at: u64) {
        c.handled(Handled::Read, &event(GATEWAY, Dir::In, OP_PERF_PING, 20));
        let mut refused = event(GATEWAY, Dir::Out, OP_REJECT, at);
        refused.code = ErrorCode::UpstreamUnavailable.to_u16();
        c.event(&refused, &names());
    }

    fn rejects_verdict(c: WireCheck) -> Verdict {
        let verdicts = c.finish(&Recorder::new(false));
        verdicts
            .into_iter()
            .find(|v| v.name.starts_with("rejects and errors"))
            .expect("the rejects verdict")
    }

    /// Worker 0's upstream connection `conn` (of several) closes at `at`.
    fn upstream_closes(c: &mut WireCheck, conn: u64, at: u64) {
        let upstream = crate::trace::OpenConn {
            host: GATEWAY,
            incarnation: 1,
            worker: 0,
            conn: ConnId::from_bits(conn),
            local: addr(3000 + conn as u16),
            peer: addr(10_000),
        };
        c.closed(&upstream, Nanos(at));
    }

    /// Worker 0 reads the exchange's hand-shake ack on `conn` at `at`.
    fn upstream_acks(c: &mut WireCheck, conn: u64, at: u64) {
        let mut ack = event(GATEWAY, Dir::In, OP_ROLE_HELLO_ACK, at);
        ack.conn = ConnId::from_bits(conn);
        c.handled(Handled::Read, &ack);
    }

    /// Worker 0 keeps two upstream connections (7 and 8), hand-shaked at
    /// 1 and 2, both lost at 5.
    fn two_upstreams_lost_at_5() -> WireCheck {
        let mut c = check_with_upstreams(2);
        upstream_acks(&mut c, 7, 1);
        upstream_acks(&mut c, 8, 2);
        upstream_closes(&mut c, 7, 5);
        upstream_closes(&mut c, 8, 5);
        c
    }

    #[test]
    fn with_several_upstreams_a_refusal_while_one_is_still_down_passes() {
        let mut c = two_upstreams_lost_at_5();
        // One is back, the other is not: the gateway may still refuse.
        upstream_acks(&mut c, 9, 10);
        upstream_refusal(&mut c, 25);
        let v = rejects_verdict(c);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn with_several_upstreams_a_refusal_once_all_are_back_fails() {
        let mut c = two_upstreams_lost_at_5();
        upstream_acks(&mut c, 9, 10);
        upstream_acks(&mut c, 10, 12);
        upstream_refusal(&mut c, 25);
        assert_eq!(rejects_verdict(c).count, 1);
    }

    #[test]
    fn an_upstream_refusal_while_every_upstream_was_up_fails() {
        let mut c = check();
        upstream_refusal(&mut c, 25);
        assert_eq!(rejects_verdict(c).count, 1);
    }

    #[test]
    fn an_upstream_refusal_after_the_gateways_upstream_closed_passes() {
        let mut c = check();
        upstream_refusal(&mut c, 25);
        // The close is recorded after the refusal written in its step.
        let upstream = crate::trace::OpenConn {
            host: GATEWAY,
            incarnation: 1,
            worker: 1,
            conn: ConnId::from_bits(7),
            local: addr(3000),
            peer: addr(10_000),
        };
        c.closed(&upstream, Nanos(25));
        let v = rejects_verdict(c);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn a_gateway_that_miscounts_its_lost_upstreams_fails_the_counters() {
        let mut c = check();
        let upstream = crate::trace::OpenConn {
            host: GATEWAY,
            incarnation: 1,
            worker: 0,
            conn: ConnId::from_bits(7),
            local: addr(3000),
            peer: addr(10_000),
        };
        c.closed(&upstream, Nanos(25));
        let mut stats = GatewayStats::default();
        assert_eq!(c.gateway_counters(&[stats]).count, 1);
        stats.upstream_losses = 1;
        let v = c.gateway_counters(&[stats]);
        assert!(v.passed(), "{v}");
    }

    fn faulted(kind: FaultKind, hands_off: bool) -> WireCheck {
        let fault = Fault {
            kind,
            at_ms: 10,
            for_ms: 10,
            target: 0,
        };
        let explain = Explain {
            hands_off,
            session_inflight_max: 1024,
            exchange_port: 10_000,
            gateway_port: 9_000,
            upstream_back_ns: 5 * NS_PER_MS,
            upstream_connections: 1,
            answer_late_ns: NS_PER_MS,
        };
        let mut c = WireCheck::new(vec![CLIENT], GATEWAY, EXCHANGE, &[fault], explain);
        c.clients_started(100 * NS_PER_MS);
        two_pings(&mut c);
        c
    }

    #[test]
    fn an_upstream_reject_is_explained_only_from_the_loss_until_the_upstream_can_be_back() {
        let ms = |t: u64| (100 + t) * NS_PER_MS;
        let mut during = faulted(FaultKind::Crash, false);
        during.event(&reject(1, ErrorCode::UpstreamUnavailable, ms(12)), &names());
        during.event(&reject(2, ErrorCode::UpstreamUnavailable, ms(24)), &names());
        assert!(during.rejects.passed(), "{}", during.rejects);
        let mut before = faulted(FaultKind::Crash, false);
        before.event(&reject(1, ErrorCode::UpstreamUnavailable, ms(9)), &names());
        assert_eq!(before.rejects.count, 1);
        let mut long_after = faulted(FaultKind::Crash, false);
        long_after.event(&reject(1, ErrorCode::UpstreamUnavailable, ms(26)), &names());
        assert_eq!(long_after.rejects.count, 1);
    }

    /// Under a crash at 10 ms for 10 ms (the upstream back by 25), the
    /// gateway writes the reject of seq 1 at `written` ms and the client
    /// reads it at `read` ms (from the clients' start).
    fn reject_written_then_read(written: u64, read: u64) -> WireCheck {
        let ms = |t: u64| (100 + t) * NS_PER_MS;
        let mut c = faulted(FaultKind::Crash, false);
        let code = ErrorCode::UpstreamUnavailable;
        let mut out = event(GATEWAY, Dir::Out, OP_REJECT, ms(written));
        (out.peer, out.seq, out.code) = (addr(1000 + CLIENT), 1, code.to_u16());
        c.event(&out, &names());
        c.event(&reject(1, code, ms(read)), &names());
        c
    }

    #[test]
    fn a_reject_is_judged_when_the_gateway_wrote_it_not_when_a_held_link_delivered_it() {
        // Written during the crash, read two seconds later (a held link).
        let held = reject_written_then_read(12, 2_000);
        assert!(held.rejects.passed(), "{}", held.rejects);
        // Written once the upstream could be back: unexplained, read at once.
        let late = reject_written_then_read(26, 26);
        assert_eq!(late.rejects.count, 1, "{}", late.rejects);
    }

    #[test]
    fn a_shed_ping_is_explained_by_refused_handoffs_only_where_pings_are_handed_off() {
        let at = 112 * NS_PER_MS;
        let mut handoff = faulted(FaultKind::RefuseHandoff, true);
        handoff.event(&reject(1, ErrorCode::Overloaded, at), &names());
        assert!(handoff.rejects.passed(), "{}", handoff.rejects);
        let mut local = faulted(FaultKind::RefuseHandoff, false);
        local.event(&reject(1, ErrorCode::Overloaded, at), &names());
        assert_eq!(local.rejects.count, 1);
    }

    fn order_check() -> WireCheck {
        let mut c = check();
        c.expect_orders();
        for seq in [1, 2] {
            let mut new = event(CLIENT, Dir::Out, crate::oracle::op::NEW_ORDER, seq);
            (new.seq, new.t) = (seq, [seq, 0, 0, 0]);
            c.event(&new, &names());
        }
        c
    }

    #[test]
    fn a_fill_before_its_orders_first_answer_fails() {
        let mut c = order_check();
        let mut fill = event(CLIENT, Dir::In, crate::oracle::op::ORDER_EXECUTED, 5);
        (fill.seq, fill.t) = (1, [1, 2, 3, 4]);
        c.event(&fill, &names());
        assert_eq!(c.later.count, 1, "{}", c.later);
    }

    #[test]
    fn a_fill_for_a_request_never_sent_fails_and_a_makers_fill_passes() {
        let mut c = order_check();
        let mut maker = event(CLIENT, Dir::In, crate::oracle::op::ORDER_EXECUTED, 5);
        maker.seq = 2;
        c.event(&maker, &names());
        assert!(c.later.passed(), "{}", c.later);
        maker.seq = 3;
        c.event(&maker, &names());
        assert_eq!(c.later.count, 1, "{}", c.later);
    }

    #[test]
    fn an_exchange_refusal_on_the_merits_is_an_answer_in_order() {
        let mut c = order_check();
        c.event(&reject(2, ErrorCode::InsufficientBalance, 5), &names());
        assert!(c.rejects.passed(), "{}", c.rejects);
        assert_eq!(c.fifo.count, 1, "{}", c.fifo);
    }
}
