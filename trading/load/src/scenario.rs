//! The benchmark scenarios, and the checks every driver applies to a run's
//! [`Report`]: the same body for the in-memory harness, the simulator and
//! the real backend.

use std::fmt;
use std::str::FromStr;

use crate::client::{Answer, Report};
use fep_trading::gateway::{GatewayConfig, Routing};

/// A benchmark scenario of CLI.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Baseline: 1 worker, local routing.
    S1,
    /// Scale: 2 workers, local routing.
    S2,
    /// Handoff: 2 workers, cross-worker routing.
    S3,
    /// s1's topology with the order flow (`--workload orders`).
    O1,
    /// s2's topology with the order flow.
    O2,
    /// s3's topology with the order flow.
    O3,
}

impl Scenario {
    /// The ping scenarios, in order (the topologies).
    pub const ALL: [Scenario; 3] = [Scenario::S1, Scenario::S2, Scenario::S3];

    /// The order-flow scenarios, in order: the topologies of [`Self::ALL`]
    /// with `--workload orders`.
    pub const ORDERS: [Scenario; 3] = [Scenario::O1, Scenario::O2, Scenario::O3];

    /// Every scenario: pings, then orders (CLI.md's table).
    pub const EVERY: [Scenario; 6] = [
        Scenario::S1,
        Scenario::S2,
        Scenario::S3,
        Scenario::O1,
        Scenario::O2,
        Scenario::O3,
    ];

    /// The ping scenario with the same gateway (o1 → s1; s1 → s1), as
    /// fepbench's table names o1–o3: a topology plus a workload.
    pub const fn topology(self) -> Scenario {
        match self {
            Scenario::S1 | Scenario::O1 => Scenario::S1,
            Scenario::S2 | Scenario::O2 => Scenario::S2,
            Scenario::S3 | Scenario::O3 => Scenario::S3,
        }
    }

    /// Whether the clients send the order flow instead of pings.
    pub const fn orders(self) -> bool {
        matches!(self, Scenario::O1 | Scenario::O2 | Scenario::O3)
    }

    /// Gateway workers.
    pub const fn workers(self) -> u16 {
        match self.topology() {
            Scenario::S1 => 1,
            _ => 2,
        }
    }

    /// Gateway routing.
    pub const fn routing(self) -> Routing {
        match self.topology() {
            Scenario::S3 => Routing::Handoff,
            _ => Routing::Local,
        }
    }

    /// The gateway settings of the scenario: its workers and routing, the
    /// rest default.
    pub fn gateway_config(self) -> GatewayConfig {
        GatewayConfig {
            workers: self.workers(),
            routing: self.routing(),
            ..GatewayConfig::default()
        }
    }

    /// `s1` … `s3`, `o1` … `o3`.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::S1 => "s1",
            Scenario::S2 => "s2",
            Scenario::S3 => "s3",
            Scenario::O1 => "o1",
            Scenario::O2 => "o2",
            Scenario::O3 => "o3",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that is not one of [`Scenario::EVERY`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown scenario {:?} (expected s1, s2, s3, o1, o2 or o3)",
            self.0
        )
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for Scenario {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Scenario, UnknownScenario> {
        Scenario::EVERY
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

/// What a healthy run must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// Pings the run sends (warm-up plus count).
    pub pings: u64,
    /// Whether `Reject`s are acceptable (runs with faults).
    pub rejects_allowed: bool,
    /// Whether lost pings are acceptable (runs where connections are cut).
    pub losses_allowed: bool,
    /// Whether the path has a gateway (hops are stamped).
    pub through_gateway: bool,
    /// Whether connections may fail to open (a simulated link held while
    /// its client dialed): those are not counted as errors, nor the pings
    /// they never sent.
    pub dials_may_fail: bool,
}

/// One broken expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a run's report: accounting first (safety), then completion.
pub fn check(report: &Report, expect: &Expect) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut fail = |s: String| v.push(Violation(s));
    if report.sent != report.answered() + report.lost {
        fail(format!(
            "accounting: sent {} != pongs {} + rejects {} + lost {}",
            report.sent, report.pongs, report.rejects, report.lost
        ));
    }
    if report.window_violations != 0 {
        fail(format!(
            "order: {} answers were not for the oldest ping in flight",
            report.window_violations
        ));
    }
    if report.corrupt != 0 {
        fail(format!(
            "integrity: {} pongs came back altered",
            report.corrupt
        ));
    }
    if report.clock_skews != 0 {
        fail(format!(
            "stamps: {} pongs with t1..t5 out of order",
            report.clock_skews
        ));
    }
    let errors = if expect.dials_may_fail {
        report.errors - report.dials_failed
    } else {
        report.errors
    };
    if errors != 0 {
        fail(format!("errors: {errors} Error frames or failed dials"));
    }
    if !expect.rejects_allowed && report.rejects != 0 {
        fail(format!("rejects: {} pings rejected", report.rejects));
    }
    if !expect.losses_allowed && (report.lost != 0 || report.drain_timeouts != 0) {
        fail(format!(
            "lost: {} pings, {} drain timeouts",
            report.lost, report.drain_timeouts
        ));
    }
    // A connection that never opened sends nothing: the pings it had
    // to send are not a liveness failure when its failed dial is excused.
    let dials_excused = expect.dials_may_fail && report.dials_failed > 0;
    if report.sent != expect.pings && !expect.losses_allowed && !dials_excused {
        fail(format!(
            "liveness: sent {} of {} pings",
            report.sent, expect.pings
        ));
    }
    if expect.through_gateway && report.direct != 0 {
        fail(format!(
            "path: {} pongs were not stamped by a gateway",
            report.direct
        ));
    }
    for rt in report.trace.iter().filter(|rt| rt.answer == Answer::Pong) {
        let [t1, t2, t3, t4, t5] = rt.t;
        if expect.through_gateway && !(t1 <= t2 && t2 <= t3 && t3 <= t4 && t4 <= t5) {
            fail(format!(
                "stamps: conn {} seq {} has t = {:?}",
                rt.conn, rt.seq, rt.t
            ));
        }
    }
    hops_sum_to_rtt(report, expect, &mut fail);
    v
}

/// The four hop histograms' means add up to the rtt mean (each histogram
/// has 3 significant digits, so allow 1%).
fn hops_sum_to_rtt(report: &Report, expect: &Expect, fail: &mut impl FnMut(String)) {
    if !expect.through_gateway || report.rtt.is_empty() {
        return;
    }
    let hops: f64 = report.hops.iter().map(|h| h.mean()).sum();
    let rtt = report.rtt.mean();
    if (hops - rtt).abs() > rtt * 0.01 + 2.0 {
        fail(format!(
            "hops: mean hops sum {hops:.0} ns but mean rtt {rtt:.0} ns"
        ));
    }
}

/// Scenario bodies written once and run by every driver: the in-memory
/// harness, the simulator and the real backend each provide an [`Arm`](conformance::Arm)
/// that turns a [`Spec`](conformance::Spec) into a run and its client [`Report`].
pub mod conformance {
    use super::{check, Expect, Scenario};
    use crate::client::{Answer, Report};
    use fep_trading::gateway::RouteTag;

    /// What to run: a scenario and a pipelined load.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Spec {
        /// Gateway workers and routing.
        pub scenario: Scenario,
        /// Client connections.
        pub connections: u32,
        /// Pings in flight per connection.
        pub inflight: u32,
        /// Pings in all (no warm-up).
        pub pings: u64,
        /// Round trips the report's trace must keep (the first ones).
        pub trace: usize,
    }

    /// A driver's way of running a [`Spec`].
    pub trait Arm {
        /// The driver's name, for failure messages.
        fn name(&self) -> &str;
        /// Runs `spec` through client → gateway → exchange; the client's
        /// report, with at least `spec.trace` round trips kept.
        fn run(&mut self, spec: &Spec) -> Report;
    }

    /// A scenario body: runs specs on an arm and asserts what it saw.
    pub type Body = fn(&mut dyn Arm);

    /// Every body, by name.
    pub const BODIES: &[(&str, Body)] = &[
        (
            "every_scenario_answers_every_ping_in_order",
            every_scenario_answers_every_ping_in_order,
        ),
        (
            "local_routing_never_crosses_workers",
            local_routing_never_crosses_workers,
        ),
        (
            "handoff_routing_crosses_workers_by_session",
            handoff_routing_crosses_workers_by_session,
        ),
        (
            "one_ping_in_flight_keeps_strict_alternation",
            one_ping_in_flight_keeps_strict_alternation,
        ),
    ];

    /// Runs every body on `arm`.
    pub fn run_all(arm: &mut dyn Arm) {
        for (_, body) in BODIES {
            body(arm);
        }
    }

    fn healthy(arm: &mut dyn Arm, spec: Spec) -> Report {
        let report = arm.run(&spec);
        let expect = Expect {
            pings: spec.pings,
            rejects_allowed: false,
            losses_allowed: false,
            through_gateway: true,
            dials_may_fail: false,
        };
        let violations = check(&report, &expect);
        assert!(
            violations.is_empty(),
            "{} arm, {spec:?}: {violations:?}",
            arm.name()
        );
        assert_eq!(
            report.pongs,
            spec.pings,
            "{} arm, {spec:?}: every ping answered by a pong",
            arm.name()
        );
        report
    }

    fn tags(report: &Report) -> impl Iterator<Item = (u32, RouteTag)> + '_ {
        report
            .trace
            .iter()
            .filter(|rt| rt.answer == Answer::Pong)
            .map(|rt| (rt.conn, RouteTag::from_bits(rt.route)))
    }

    /// s1, s2, s3 with 4 connections × 8 in flight: accounting, order, stamp
    /// order, hops summing to the rtt.
    pub fn every_scenario_answers_every_ping_in_order(arm: &mut dyn Arm) {
        for scenario in Scenario::ALL {
            let report = healthy(
                arm,
                Spec {
                    scenario,
                    connections: 4,
                    inflight: 8,
                    pings: 2_000,
                    trace: 2_000,
                },
            );
            for conn in 0..4 {
                let mut seqs = report
                    .trace
                    .iter()
                    .filter(|rt| rt.conn == conn)
                    .map(|rt| rt.seq);
                let first = seqs.next().expect("every connection carried pings");
                assert!(
                    seqs.try_fold(first, |prev, seq| (seq == prev + 1).then_some(seq))
                        .is_some(),
                    "{} arm, {scenario}: connection {conn} answered out of order",
                    arm.name()
                );
            }
        }
    }

    /// s2: every ping takes the upstream of the worker that owns its client.
    pub fn local_routing_never_crosses_workers(arm: &mut dyn Arm) {
        let report = healthy(
            arm,
            Spec {
                scenario: Scenario::S2,
                connections: 8,
                inflight: 2,
                pings: 800,
                trace: 800,
            },
        );
        assert!(
            tags(&report).all(|(_, t)| t.origin == t.target),
            "{} arm: s2 crossed workers",
            arm.name()
        );
    }

    /// s3: a connection's pings always take the same path, and over enough
    /// connections some cross workers and some do not.
    pub fn handoff_routing_crosses_workers_by_session(arm: &mut dyn Arm) {
        let report = healthy(
            arm,
            Spec {
                scenario: Scenario::S3,
                connections: 8,
                inflight: 2,
                pings: 800,
                trace: 800,
            },
        );
        let mut paths: Vec<(u32, u16, u16)> = tags(&report)
            .map(|(c, t)| (c, t.origin.0, t.target.0))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        let conns: Vec<u32> = paths.iter().map(|p| p.0).collect();
        assert!(
            conns.windows(2).all(|w| w[0] != w[1]),
            "{} arm: a connection changed path: {paths:?}",
            arm.name()
        );
        assert!(
            paths.iter().any(|p| p.1 != p.2),
            "{} arm: no session crossed workers: {paths:?}",
            arm.name()
        );
        assert!(
            paths.iter().any(|p| p.1 == p.2),
            "{} arm: every session crossed: {paths:?}",
            arm.name()
        );
    }

    /// One connection, one ping in flight, through the handoff path: each
    /// ping leaves after the previous answer arrived.
    pub fn one_ping_in_flight_keeps_strict_alternation(arm: &mut dyn Arm) {
        let report = healthy(
            arm,
            Spec {
                scenario: Scenario::S3,
                connections: 1,
                inflight: 1,
                pings: 300,
                trace: 300,
            },
        );
        assert!(
            report.trace.windows(2).all(|w| w[1].t[0] >= w[0].t[4]),
            "{} arm: a ping left before the previous answer",
            arm.name()
        );
    }
}
