//! The invariants every run is checked against: safety first, then
//! liveness.
//!
//! Most of them read the wire as the drivers decoded it
//! ([`crate::observe`]), not the roles' own counters, so a role cannot pass
//! by miscounting. The clients' reports are checked too, with the same
//! `fep_trading::scenario::check` the real backend applies, and must agree
//! with the wire.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use fep_core::wire::{OP_ERROR, OP_REJECT};
use fep_core::{ErrorCode, WorkerId};
use fep_trading::client::Report;
use fep_trading::gateway::RouteTag;
use fep_trading::msg::{OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ};
use fep_trading::scenario::{self, Expect};

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

/// The invariants of a run, in order: safety, then liveness.
pub(crate) fn check_run(
    config: &RunConfig,
    faults: &[Fault],
    hosts: &Hosts,
    recorder: &Recorder,
    reports: &[Option<Report>],
    failures: Vec<String>,
) -> Vec<Verdict> {
    let clients: Vec<HostIx> = hosts.clients.iter().map(|c| c.ix()).collect();
    let mut verdicts = Vec::new();
    verdicts.push(handshake_first(recorder));
    let answers = client_answers(recorder, &clients);
    verdicts.extend(answers);
    verdicts.push(reject_codes(recorder, &clients, faults));
    verdicts.push(routing(recorder, hosts.gateway.ix()));
    verdicts.push(no_session_left(recorder, hosts));
    verdicts.push(reports_hold(config, faults, recorder, hosts, reports));
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

/// Nothing but the hand-shake (or an `Error`) goes out on a connection
/// before it is hand-shaked: before the acceptor sent its ack, or the
/// initiator received it.
fn handshake_first(recorder: &Recorder) -> Verdict {
    let mut v = Verdict::new("nothing sent before the hand-shake", Class::Safety);
    let mut shaken: BTreeMap<ConnKey, bool> = BTreeMap::new();
    for e in &recorder.wire {
        let done = shaken.entry(key(e)).or_insert(false);
        match (e.dir, e.opcode) {
            (Dir::Out, OP_ROLE_HELLO_ACK) | (Dir::In, OP_ROLE_HELLO_ACK) => *done = true,
            (Dir::Out, OP_ROLE_HELLO_REQ | OP_ERROR) | (Dir::In, _) => {}
            (Dir::Out, op) if !*done => v.fail(format!(
                "{} {} -> {}: opcode {op} sent at {} before the hand-shake",
                recorder.host_name(e.host),
                e.local,
                e.peer,
                e.at
            )),
            (Dir::Out, _) => {}
        }
    }
    v
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    seq: u64,
    t1: u64,
    pad: u64,
}

/// On every client connection: each answer is for a ping in flight
/// (exactly once), a pong is for the oldest ping still in flight (FIFO; a
/// `Reject` may overtake, as PROTOCOL.md orders pongs only), a pong carries its own ping's `t1` and
/// pad (it came back on the connection that sent it), and its stamps are
/// ordered `t1 ≤ t2 ≤ t3 ≤ t4 ≤ t5`, `t5` being when it was read.
fn client_answers(recorder: &Recorder, clients: &[HostIx]) -> [Verdict; 4] {
    let mut once = Verdict::new("every ping answered exactly once", Class::Safety);
    let mut fifo = Verdict::new("per-connection FIFO", Class::Safety);
    let mut same = Verdict::new("pong on the connection that sent the ping", Class::Safety);
    let mut stamps = Verdict::new("t1 <= t2 <= t3 <= t4 <= t5", Class::Safety);
    let mut windows: BTreeMap<ConnKey, VecDeque<Sent>> = BTreeMap::new();
    for e in recorder.wire.iter().filter(|e| clients.contains(&e.host)) {
        let window = windows.entry(key(e)).or_default();
        let here = || {
            format!(
                "{} {} seq {} at {}",
                recorder.host_name(e.host),
                e.local,
                e.seq,
                e.at
            )
        };
        match (e.dir, e.opcode) {
            (Dir::Out, OP_PERF_PING) => window.push_back(Sent {
                seq: e.seq,
                t1: e.t[0],
                pad: e.pad,
            }),
            (Dir::In, OP_PERF_PONG | OP_REJECT) => {
                let Some(pos) = window.iter().position(|s| s.seq == e.seq) else {
                    once.fail(format!("{}: answer for no ping in flight", here()));
                    continue;
                };
                let sent = window.remove(pos).expect("position is in range");
                if e.opcode == OP_REJECT {
                    // PROTOCOL.md orders pongs; a Reject may overtake.
                    continue;
                }
                if pos != 0 {
                    fifo.fail(format!("{}: pong before {pos} older pings", here()));
                }
                if e.t[0] != sent.t1 || e.pad != sent.pad {
                    same.fail(format!(
                        "{}: pong carries t1 {} (sent {}) or another pad",
                        here(),
                        e.t[0],
                        sent.t1
                    ));
                }
                let [t1, t2, t3, t4] = e.t;
                let t5 = e.at.as_u64();
                if t2 == 0 || t4 == 0 || !(t1 <= t2 && t2 <= t3 && t3 <= t4 && t4 <= t5) {
                    stamps.fail(format!("{}: t = {:?}, t5 = {t5}", here(), e.t));
                }
            }
            _ => {}
        }
    }
    for ((host, local, _), window) in &windows {
        let open = recorder
            .open
            .iter()
            .any(|c| c.host == *host && c.local == *local);
        if open && !window.is_empty() {
            once.fail(format!(
                "{} {local}: {} pings unanswered on a connection still open",
                recorder.host_name(*host),
                window.len()
            ));
        }
    }
    [once, fifo, same, stamps]
}

/// A client is refused only for what the faults explain: no upstream
/// (`UPSTREAM_UNAVAILABLE`) when the exchange crashed or was cut off, a
/// shed ping (`OVERLOADED`) when handoff queues refused; and never sees an
/// `Error`.
fn reject_codes(recorder: &Recorder, clients: &[HostIx], faults: &[Fault]) -> Verdict {
    let mut v = Verdict::new(
        "rejects and errors only where faults explain them",
        Class::Safety,
    );
    let mut allowed = Vec::new();
    for f in faults {
        match f.kind {
            FaultKind::Crash | FaultKind::Cut => allowed.push(ErrorCode::UpstreamUnavailable),
            FaultKind::RefuseHandoff => allowed.push(ErrorCode::Overloaded),
            _ => {}
        }
    }
    for e in recorder
        .wire
        .iter()
        .filter(|e| clients.contains(&e.host) && e.dir == Dir::In)
    {
        let code = ErrorCode::from_u16(e.code);
        match e.opcode {
            OP_REJECT if !allowed.contains(&code) => v.fail(format!(
                "{} {} seq {} at {}: Reject {}",
                recorder.host_name(e.host),
                e.local,
                e.seq,
                e.at,
                code.name()
            )),
            OP_ERROR => v.fail(format!(
                "{} {} at {}: Error {}",
                recorder.host_name(e.host),
                e.local,
                e.at,
                code.name()
            )),
            _ => {}
        }
    }
    v
}

/// On the gateway: a ping goes upstream from the worker its route tag names
/// as target; a pong goes out on the very client connection (and worker)
/// the tag names as origin.
fn routing(recorder: &Recorder, gateway: HostIx) -> Verdict {
    let mut v = Verdict::new("gateway routes by the tag", Class::Safety);
    for e in recorder
        .wire
        .iter()
        .filter(|e| e.host == gateway && e.dir == Dir::Out && e.route != 0)
    {
        let tag = RouteTag::from_bits(e.route);
        let worker = WorkerId(e.worker);
        match e.opcode {
            OP_PERF_PING if tag.target != worker => v.fail(format!(
                "ping seq {} for upstream w{} left from w{} at {}",
                e.seq, tag.target.0, e.worker, e.at
            )),
            OP_PERF_PONG if tag.origin != worker || tag.conn != e.conn => v.fail(format!(
                "pong seq {} for w{} {:?} left on w{} {:?} at {}",
                e.seq, tag.origin.0, tag.conn, e.worker, e.conn, e.at
            )),
            _ => {}
        }
    }
    v
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
    recorder: &Recorder,
    hosts: &Hosts,
    reports: &[Option<Report>],
) -> Verdict {
    let mut v = Verdict::new("client reports pass the scenario check", Class::Safety);
    let rejects_allowed = faults.iter().any(|f| f.kind.causes_rejects());
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
        let (mut pongs, mut rejects) = (0, 0);
        for e in recorder
            .wire
            .iter()
            .filter(|e| e.host == client.ix() && e.dir == Dir::In)
        {
            match e.opcode {
                OP_PERF_PONG => pongs += 1,
                OP_REJECT => rejects += 1,
                _ => {}
            }
        }
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
