//! The benchmark scenarios, and the checks every driver applies to a run's
//! [`Report`]: the same body for the in-memory harness, the simulator and
//! the real backend.

use std::fmt;
use std::str::FromStr;

use crate::client::{Answer, Report};
use crate::gateway::Routing;

/// A benchmark scenario of CLI.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Baseline: 1 worker, local routing.
    S1,
    /// Scale: 2 workers, local routing.
    S2,
    /// Handoff: 2 workers, cross-worker routing.
    S3,
}

impl Scenario {
    /// Every scenario, in order.
    pub const ALL: [Scenario; 3] = [Scenario::S1, Scenario::S2, Scenario::S3];

    /// Gateway workers.
    pub const fn workers(self) -> u16 {
        match self {
            Scenario::S1 => 1,
            Scenario::S2 | Scenario::S3 => 2,
        }
    }

    /// Gateway routing.
    pub const fn routing(self) -> Routing {
        match self {
            Scenario::S1 | Scenario::S2 => Routing::Local,
            Scenario::S3 => Routing::Handoff,
        }
    }

    /// `s1`, `s2` or `s3`.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::S1 => "s1",
            Scenario::S2 => "s2",
            Scenario::S3 => "s3",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that is not `s1`, `s2` or `s3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scenario {:?} (expected s1, s2 or s3)", self.0)
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for Scenario {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Scenario, UnknownScenario> {
        match s {
            "s1" => Ok(Scenario::S1),
            "s2" => Ok(Scenario::S2),
            "s3" => Ok(Scenario::S3),
            other => Err(UnknownScenario(other.to_owned())),
        }
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
    if report.errors != 0 {
        fail(format!(
            "errors: {} Error frames or failed dials",
            report.errors
        ));
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
    if report.sent != expect.pings && !expect.losses_allowed {
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
