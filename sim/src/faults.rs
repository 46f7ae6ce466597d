//! Fault plans: which faults a run suffers, when, and for how long.
//!
//! A plan is written as a comma-separated list. Each item is a fault kind,
//! alone (its time, length and target are drawn from the run's seed) or
//! pinned: `KIND@AT+FOR` or `KIND@AT+FOR/TARGET` with times in simulated
//! milliseconds. `all` is every kind; `none` (or an empty plan) is none.
//!
//! ```text
//! crash,hold            two seeded faults
//! cut@40+25,leave@60+0/1  the gateway–exchange link cut at 40 ms for 25 ms;
//!                         client-1 leaves at 60 ms
//! ```
//!
//! | kind | what happens | how |
//! |---|---|---|
//! | `latency` | one link gets 1–5 ms latency with up to 25 ms jitter | turmoil link latency (1 ms resolution) |
//! | `hold` | one link holds every message, then releases them in order; on the gateway–exchange link (the exchange goes silent) past three of the gateway's heartbeat intervals, the gateway declares the exchange dead: rejects in order, then reconnects | `hold`/`release`: clogging, reorders between connections |
//! | `crash` | the exchange crashes and restarts | `crash`/`bounce`; the gateway reconnects and rejects in-flight pings |
//! | `cut` | the gateway–exchange link is cut, then repaired | `partition` plus both TCP stacks giving up the connection, then `repair` |
//! | `leave` | a client host disappears mid-run | `crash`, never restarted |
//! | `slowhandoff` | handoffs wait 2–20 ms | driver knobs of the gateway |
//! | `refusehandoff` | handoff queues hold 2–8 tasks, refusing the rest | driver knobs of the gateway |
//! | `buggify` | short reads, spurious wake-ups, delayed writes | driver knobs of every host |
//! | `stall` | a client stops reading its sockets, then reads again (a slow consumer) | the driver's read gate: the gateway's writes back up through the stream's flow control into its send buffers and output backlog |
//! | `rejoin` | a client host disappears, then comes back and runs its pings again on new connections (the gateway reuses the old sessions' slots, under new generations) | `crash`, then `bounce` |
//! | `drain` | the gateway starts its drain (not in `all`: the sweeps add it to some seeds): it refuses new pings with `SHUTTING_DOWN`, finishes those in flight, then closes | the drivers' shutdown command |
//!
//! Targets: for `latency` and `hold`, 0 is the gateway–exchange link and
//! `k ≥ 1` the link of `client-(k-1)`; for `leave`, `stall` and `rejoin`,
//! the client index; for `refusehandoff`, the queue bound.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::seed;

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Link latency and jitter.
    Latency,
    /// A link holds messages, then releases them.
    Hold,
    /// The exchange crashes and restarts.
    Crash,
    /// The gateway–exchange link is cut and repaired.
    Cut,
    /// A client leaves mid-run.
    Leave,
    /// The gateway's handoff queues are slow.
    SlowHandoff,
    /// The gateway's handoff queues are short: handoffs are refused.
    RefuseHandoff,
    /// The drivers' buggify points fire.
    Buggify,
    /// A client stops reading, then reads again.
    Stall,
    /// A client leaves, then comes back on new connections.
    Rejoin,
    /// The gateway drains: refuses new work, finishes in-flight, closes.
    Drain,
}

impl FaultKind {
    /// Every kind `all` stands for, in plan order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Latency,
        FaultKind::Hold,
        FaultKind::Crash,
        FaultKind::Cut,
        FaultKind::Leave,
        FaultKind::SlowHandoff,
        FaultKind::RefuseHandoff,
        FaultKind::Buggify,
        FaultKind::Stall,
        FaultKind::Rejoin,
    ];

    /// Every kind a plan may name: [`FaultKind::ALL`] and `drain`, which
    /// ends the gateway's service and so the run's interesting part.
    pub const KNOWN: [FaultKind; 11] = [
        FaultKind::Latency,
        FaultKind::Hold,
        FaultKind::Crash,
        FaultKind::Cut,
        FaultKind::Leave,
        FaultKind::SlowHandoff,
        FaultKind::RefuseHandoff,
        FaultKind::Buggify,
        FaultKind::Stall,
        FaultKind::Rejoin,
        FaultKind::Drain,
    ];

    /// The kind's name in a plan.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::Latency => "latency",
            FaultKind::Hold => "hold",
            FaultKind::Crash => "crash",
            FaultKind::Cut => "cut",
            FaultKind::Leave => "leave",
            FaultKind::SlowHandoff => "slowhandoff",
            FaultKind::RefuseHandoff => "refusehandoff",
            FaultKind::Buggify => "buggify",
            FaultKind::Stall => "stall",
            FaultKind::Rejoin => "rejoin",
            FaultKind::Drain => "drain",
        }
    }

    /// Whether pings may legitimately be refused with `Reject` under it.
    pub const fn causes_rejects(self) -> bool {
        matches!(
            self,
            FaultKind::Crash | FaultKind::Cut | FaultKind::RefuseHandoff | FaultKind::Drain
        )
    }
}

impl FromStr for FaultKind {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<FaultKind, PlanError> {
        FaultKind::KNOWN
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| PlanError(format!("unknown fault {s:?}")))
    }
}

/// One fault of a plan; `None` fields are drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultItem {
    /// What.
    pub kind: FaultKind,
    /// Start, simulated ms.
    pub at_ms: Option<u64>,
    /// Length, simulated ms.
    pub for_ms: Option<u64>,
    /// Which link or client.
    pub target: Option<u16>,
}

/// A fault with its time, length and target fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// Start, simulated ms.
    pub at_ms: u64,
    /// Length, simulated ms (0: for good, or instantaneous).
    pub for_ms: u64,
    /// Which link or client.
    pub target: u16,
}

impl Fault {
    /// Whether clients may see `Reject`s because of it: the kinds that
    /// lose the upstream, and a hold of the gateway–exchange link (target
    /// 0), which the gateway's heartbeat watch turns into a dead upstream
    /// when it outlasts three intervals.
    pub const fn causes_rejects(&self) -> bool {
        self.kind.causes_rejects() || matches!(self.kind, FaultKind::Hold) && self.target == 0
    }

    /// Whether it ends by itself (a client that left and a drained
    /// gateway do not come back).
    pub fn heals(&self) -> bool {
        !matches!(self.kind, FaultKind::Leave | FaultKind::Drain)
    }

    /// When it heals (its start for a fault that never heals).
    pub fn end_ms(&self) -> u64 {
        self.at_ms + self.for_ms
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}+{}/{}",
            self.kind.name(),
            self.at_ms,
            self.for_ms,
            self.target
        )
    }
}

/// The longest drawn `hold` of the gateway–exchange link (a pinned one
/// is kept as given). turmoil queues at most 64 SYNs on a listener (its
/// `tcp_capacity`) and panics past that, where a real stack drops them and
/// the dialer tries again; a held link delivers every SYN of the hold in
/// one step when it heals. The gateway's upstream sessions (at most 2
/// workers × 4 connections as the swarm draws them) redial 20 ms dial
/// deadlines apart plus a backoff doubling from 1 ms: a session dialing
/// the whole of a 250 ms hold sends at most 7 SYNs (at 0, 21, 43, 67, 95,
/// 131 and 183 ms), 56 in all. (s2 seed 452820 held it 2,010 ms and its 6
/// sessions sent 64; a 500 ms hold with 8 sessions sent 64 too, at the
/// limit.)
pub const UPSTREAM_HOLD_MS_MAX: u64 = 250;

/// A plan as written: items, some of them to be drawn from the seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The items, in order.
    pub items: Vec<FaultItem>,
}

/// A plan that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

impl FromStr for FaultPlan {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<FaultPlan, PlanError> {
        let mut items = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "none" => {}
                "all" => items.extend(FaultKind::ALL.into_iter().map(|kind| FaultItem {
                    kind,
                    at_ms: None,
                    for_ms: None,
                    target: None,
                })),
                _ => items.push(parse_item(word)?),
            }
        }
        Ok(FaultPlan { items })
    }
}

fn parse_item(word: &str) -> Result<FaultItem, PlanError> {
    let Some((kind, when)) = word.split_once('@') else {
        return Ok(FaultItem {
            kind: word.parse()?,
            at_ms: None,
            for_ms: None,
            target: None,
        });
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| PlanError(format!("{word:?}: {s:?} is not a whole number of ms")))
    };
    let (when, target) = match when.split_once('/') {
        Some((when, target)) => (when, Some(number(target)?)),
        None => (when, None),
    };
    let Some((at, length)) = when.split_once('+') else {
        return Err(PlanError(format!(
            "{word:?}: expected KIND@AT+FOR[/TARGET]"
        )));
    };
    let target = target
        .map(|t| u16::try_from(t).map_err(|_| PlanError(format!("{word:?}: target too large"))))
        .transpose()?;
    Ok(FaultItem {
        kind: kind.parse()?,
        at_ms: Some(number(at)?),
        for_ms: Some(number(length)?),
        target,
    })
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.items.is_empty() {
            return f.write_str("none");
        }
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(item.kind.name())?;
            if let (Some(at), Some(length)) = (item.at_ms, item.for_ms) {
                write!(f, "@{at}+{length}")?;
                if let Some(t) = item.target {
                    write!(f, "/{t}")?;
                }
            }
        }
        Ok(())
    }
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Every kind, drawn from the seed.
    pub fn all() -> FaultPlan {
        "all".parse().expect("static plan")
    }

    /// The plan with every fault pinned, as [`FaultPlan::resolve`] fixed them.
    pub fn pinned(faults: &[Fault]) -> FaultPlan {
        FaultPlan {
            items: faults
                .iter()
                .map(|f| FaultItem {
                    kind: f.kind,
                    at_ms: Some(f.at_ms),
                    for_ms: Some(f.for_ms),
                    target: Some(f.target),
                })
                .collect(),
        }
    }

    /// Fixes every fault's time, length and target: pinned values stay,
    /// the rest are drawn from `seed` within `horizon_ms` (about the length
    /// of a healthy run), so faults strike while pings flow. `clients`
    /// bounds the targets.
    pub fn resolve(&self, seed: u64, horizon_ms: u64, clients: u16) -> Vec<Fault> {
        let horizon_ms = horizon_ms.max(20);
        self.items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let mut rng = seed::rng(seed, "harness", item.kind.name(), i as u64);
                let at_ms = item
                    .at_ms
                    .unwrap_or_else(|| rng.random_range(5..=horizon_ms * 3 / 4));
                let (for_ms, target) = match item.kind {
                    FaultKind::Latency | FaultKind::Hold => (
                        rng.random_range(2..=horizon_ms / 4),
                        rng.random_range(0..=clients),
                    ),
                    FaultKind::Crash | FaultKind::Cut => (rng.random_range(1..=horizon_ms / 3), 0),
                    FaultKind::Leave => (0, rng.random_range(0..clients.max(1))),
                    FaultKind::SlowHandoff => (rng.random_range(5..=horizon_ms / 2), 0),
                    FaultKind::RefuseHandoff => (
                        rng.random_range(5..=horizon_ms / 2),
                        rng.random_range(2..=8),
                    ),
                    FaultKind::Buggify => (rng.random_range(horizon_ms / 2..=horizon_ms * 4), 0),
                    FaultKind::Stall => (
                        rng.random_range(2..=horizon_ms / 3),
                        rng.random_range(0..clients.max(1)),
                    ),
                    FaultKind::Rejoin => (
                        rng.random_range(1..=horizon_ms / 4),
                        rng.random_range(0..clients.max(1)),
                    ),
                    FaultKind::Drain => (0, 0),
                };
                let target = item.target.unwrap_or(target);
                let for_ms = item.for_ms.unwrap_or(match item.kind {
                    FaultKind::Hold if target == 0 => for_ms.min(UPSTREAM_HOLD_MS_MAX),
                    _ => for_ms,
                });
                Fault {
                    kind: item.kind,
                    at_ms,
                    for_ms,
                    target,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_as_written() {
        let plan: FaultPlan = "crash, cut@40+25, leave@60+0/1".parse().unwrap();
        assert_eq!(plan.items.len(), 3);
        assert_eq!(plan.to_string(), "crash,cut@40+25,leave@60+0/1");
        assert_eq!(FaultPlan::all().items.len(), FaultKind::ALL.len());
        assert_eq!("none".parse::<FaultPlan>().unwrap(), FaultPlan::none());
    }

    #[test]
    fn bad_plans_are_refused_with_the_culprit_named() {
        let e = "crash,flood".parse::<FaultPlan>().unwrap_err();
        assert!(e.0.contains("flood"), "{e}");
        let e = "cut@x+3".parse::<FaultPlan>().unwrap_err();
        assert!(e.0.contains("\"x\""), "{e}");
        assert!("cut@40".parse::<FaultPlan>().is_err());
    }

    #[test]
    fn resolving_is_a_function_of_the_seed_and_keeps_pinned_values() {
        let plan = FaultPlan::all();
        assert_eq!(plan.resolve(5, 200, 2), plan.resolve(5, 200, 2));
        assert_ne!(plan.resolve(5, 200, 2), plan.resolve(6, 200, 2));
        let pinned: FaultPlan = "hold@30+7/2".parse().unwrap();
        let f = pinned.resolve(9, 200, 2)[0];
        assert_eq!((f.at_ms, f.for_ms, f.target), (30, 7, 2));
        let again = FaultPlan::pinned(&plan.resolve(5, 200, 2));
        assert_eq!(again.resolve(77, 10, 2), plan.resolve(5, 200, 2));
    }

    #[test]
    fn a_drawn_hold_of_the_upstream_link_is_bounded_and_a_pinned_one_kept() {
        let plan: FaultPlan = "hold".parse().unwrap();
        let holds: Vec<Fault> = (0..2_000)
            .map(|seed| plan.resolve(seed, 8_000, 2)[0])
            .collect();
        let upstream = |f: &&Fault| f.target == 0;
        assert!(holds.iter().filter(upstream).count() > 100);
        assert!(holds
            .iter()
            .filter(upstream)
            .all(|f| f.for_ms <= UPSTREAM_HOLD_MS_MAX));
        assert!(holds
            .iter()
            .any(|f| f.target != 0 && f.for_ms > UPSTREAM_HOLD_MS_MAX));
        let pinned: FaultPlan = "hold@30+900/0".parse().unwrap();
        assert_eq!(pinned.resolve(1, 8_000, 2)[0].for_ms, 900);
    }
}
