//! The invariants every run is checked against: safety first, then
//! liveness.
//!
//! Most of them read the wire as the drivers decoded it
//! ([`crate::observe`]), not the roles' own counters, so a role cannot pass
//! by miscounting. The clients' reports are checked too, with the same
//! `fep_load::scenario::check` the real backend applies, and must agree
//! with the wire.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use fep_core::wire::{OP_ERROR, OP_REJECT};
use fep_core::{ErrorCode, WorkerId};
use fep_load::client::Report;
use fep_load::scenario::{self, Expect};
use fep_trading::gateway::RouteTag;
use fep_trading::msg::{OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ};

use crate::faults::{Fault, FaultKind};
use crate::run::{pings_of, Hosts, RunConfig};
use crate::trace::{Dir, HostIx, Recorder, WireEvent};

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
    fn new(name: &'static str, class: Class) -> Verdict {
        Verdict {
            name,
            class,
            count: 0,
            violations: Vec::new(),
        }
    }

    fn fail(&mut self, what: String) {
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

/// The invariants of a run, in order: safety, then liveness. `wire` has
/// seen every frame of the run.
pub(crate) fn check_run(
    config: &RunConfig,
    faults: &[Fault],
    hosts: &Hosts,
    recorder: &Recorder,
    wire: WireCheck,
    reports: &[Option<Report>],
    failures: Vec<String>,
) -> Vec<Verdict> {
    let answers = wire.answers.clone();
    let mut verdicts = wire.finish(recorder);
    verdicts.push(no_session_left(recorder, hosts));
    verdicts.push(reports_hold(config, faults, &answers, hosts, reports));
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
}

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
/// - A client is refused only for what the faults explain: no upstream
///   (`UPSTREAM_UNAVAILABLE`) when the exchange crashed or was cut off, a
///   shed ping (`OVERLOADED`) when handoff queues refused, no upstream
///   when the gateway–exchange link was held (past three heartbeat
///   intervals the gateway declares the exchange dead); it never reads
///   an `Error`.
/// - On the gateway: a ping goes upstream from the worker its route tag
///   names as target; a pong goes out on the very client connection (and
///   worker) the tag names as origin.
#[derive(Debug)]
pub struct WireCheck {
    clients: Vec<HostIx>,
    gateway: HostIx,
    allowed: Vec<ErrorCode>,
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
    routing: Verdict,
}

impl WireCheck {
    /// Checks for a run with these client hosts, this gateway host, and
    /// these faults.
    pub fn new(clients: Vec<HostIx>, gateway: HostIx, faults: &[Fault]) -> WireCheck {
        let mut allowed = Vec::new();
        for f in faults {
            match f.kind {
                FaultKind::Crash | FaultKind::Cut => allowed.push(ErrorCode::UpstreamUnavailable),
                // The exchange gone silent: the gateway's heartbeat watch
                // declares it dead and rejects what was in flight.
                FaultKind::Hold if f.causes_rejects() => {
                    allowed.push(ErrorCode::UpstreamUnavailable);
                }
                FaultKind::RefuseHandoff => allowed.push(ErrorCode::Overloaded),
                _ => {}
            }
        }
        WireCheck {
            clients,
            gateway,
            allowed,
            shaken: BTreeMap::new(),
            windows: BTreeMap::new(),
            answers: BTreeMap::new(),
            handshake: Verdict::new("nothing sent before the hand-shake", Class::Safety),
            once: Verdict::new("every ping answered exactly once", Class::Safety),
            fifo: Verdict::new("per-connection FIFO", Class::Safety),
            same: Verdict::new("pong on the connection that sent the ping", Class::Safety),
            stamps: Verdict::new("t1 <= t2 <= t3 <= t4 <= t5", Class::Safety),
            rejects: Verdict::new(
                "rejects and errors only where faults explain them",
                Class::Safety,
            ),
            routing: Verdict::new("gateway routes by the tag", Class::Safety),
        }
    }

    /// Pongs and `Reject`s read by all clients.
    pub fn answered(&self) -> u64 {
        self.answers.values().map(|(p, r)| p + r).sum()
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
        let window = self.windows.entry(key(e)).or_default();
        match (e.dir, e.opcode) {
            (Dir::Out, OP_PERF_PING) => window.push_back(Sent {
                seq: e.seq,
                t1: e.t[0],
                pad: e.pad,
            }),
            (Dir::In, OP_PERF_PONG | OP_REJECT) => {
                let counts = self.answers.entry(e.host).or_default();
                if e.opcode == OP_PERF_PONG {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                    let code = ErrorCode::from_u16(e.code);
                    if !self.allowed.contains(&code) {
                        self.rejects
                            .fail(format!("{}: Reject {}", here(), code.name()));
                    }
                }
                let Some(pos) = window.iter().position(|s| s.seq == e.seq) else {
                    self.once
                        .fail(format!("{}: answer for no ping in flight", here()));
                    return;
                };
                let sent = window.remove(pos).expect("position is in range");
                if e.opcode == OP_REJECT {
                    // PROTOCOL.md orders pongs; a Reject may overtake.
                    return;
                }
                if pos != 0 {
                    self.fifo
                        .fail(format!("{}: pong before {pos} older pings", here()));
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
                }
            }
            (Dir::In, OP_ERROR) => {
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

    fn routing_event(&mut self, e: &WireEvent) {
        let tag = RouteTag::from_bits(e.route);
        let worker = WorkerId(e.worker);
        match e.opcode {
            OP_PERF_PING if tag.target != worker => self.routing.fail(format!(
                "ping seq {} for upstream w{} left from w{} at {}",
                e.seq, tag.target.0, e.worker, e.at
            )),
            OP_PERF_PONG if tag.origin != worker || tag.conn != e.conn => {
                self.routing.fail(format!(
                    "pong seq {} for w{} {:?} left on w{} {:?} at {}",
                    e.seq, tag.origin.0, tag.conn, e.worker, e.conn, e.at
                ))
            }
            _ => {}
        }
    }

    /// The verdicts, once the run is over: pings still unanswered on a
    /// connection that is still open break "exactly once".
    fn finish(mut self, recorder: &Recorder) -> Vec<Verdict> {
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
            self.routing,
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
    for c in &recorder.open {
        let mirrored = recorder
            .open
            .iter()
            .any(|o| o.local == c.peer && o.peer == c.local);
        if !mirrored {
            v.fail(format!(
                "{}/w{} {:?} {} -> {}: the other end is closed",
                recorder.host_name(c.host),
                c.worker,
                c.conn,
                c.local,
                c.peer
            ));
        }
    }
    v
}

/// Each client that stayed passes the scenario's report check, and its
/// report agrees with what the wire carried.
fn reports_hold(
    config: &RunConfig,
    faults: &[Fault],
    answers: &BTreeMap<HostIx, (u64, u64)>,
    hosts: &Hosts,
    reports: &[Option<Report>],
) -> Verdict {
    let mut v = Verdict::new("client reports pass the scenario check", Class::Safety);
    let rejects_allowed = faults.iter().any(Fault::causes_rejects);
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
        };
        for violation in scenario::check(report, &expect) {
            v.fail(format!("{}: {violation}", client.name()));
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
