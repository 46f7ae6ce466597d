//! The pinning plan: which CPU each benchmark process may run on.
//!
//! On a small VM the placement matters more than anything else measured,
//! and the right one depends on the load:
//!
//! - **closed loop** (one ping in flight: a latency measurement): waking a
//!   process on the other vCPU costs about 15 µs a round trip on this
//!   project's 2-vCPU machines, while only one process works at a time, so
//!   `auto` co-locates all three on one CPU when fewer than four are
//!   available;
//! - **pipelined or open loop** (a throughput or latency-under-load
//!   measurement): all three processes work at once, and co-locating them
//!   would leave every other CPU idle and measure a third of the machine.
//!   On fewer than four CPUs `auto` leaves placement to the scheduler, which
//!   keeps every CPU busy; pinning three busy processes to two CPUs would
//!   pair two of them on one CPU whatever their load. At low open-loop
//!   rates the processes mostly sleep, and each hop may then wake a halted
//!   CPU (tens of µs on a VM); the reason says so, and `--pin colocate`
//!   measures that part of a knee without it.
//!
//! At four CPUs and more `auto` spreads the processes over distinct CPUs.

use std::fmt;
use std::str::FromStr;

use super::summary::PinningReport;

/// At and above this many allowed CPUs, `auto` spreads the processes.
pub const SPREAD_CPUS_MIN: usize = 4;

/// How to place the processes (`--pin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// Spread at or above [`SPREAD_CPUS_MIN`] CPUs; below, co-locate a
    /// closed-loop leg and leave a pipelined or open-loop one unpinned.
    Auto,
    /// Leave placement to the scheduler.
    None,
    /// Everything on the last allowed CPU.
    Colocate,
    /// loadgen, the gateway workers and the exchange on successive CPUs.
    Spread,
}

impl FromStr for PinMode {
    type Err = String;

    fn from_str(s: &str) -> Result<PinMode, String> {
        match s {
            "auto" => Ok(PinMode::Auto),
            "none" => Ok(PinMode::None),
            "colocate" => Ok(PinMode::Colocate),
            "spread" => Ok(PinMode::Spread),
            other => Err(format!(
                "--pin {other:?} is not one of auto, none, colocate, spread"
            )),
        }
    }
}

impl fmt::Display for PinMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PinMode::Auto => "auto",
            PinMode::None => "none",
            PinMode::Colocate => "colocate",
            PinMode::Spread => "spread",
        })
    }
}

/// The kind of load a leg puts on the processes, which decides what `auto`
/// places where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// One ping in flight in all: only one process works at a time.
    Closed,
    /// Many pings in flight per connection: every process busy.
    Pipelined,
    /// Pings at a set rate: every process busy at high rates, mostly idle
    /// at low ones.
    Open,
}

impl LoadKind {
    /// What loadgen will do with these settings: `--rate`/`--profile`
    /// among `extra_args` make it open loop, else `inflight > 1`
    /// pipelined, else closed.
    pub fn of(inflight: u64, extra_args: &[String]) -> LoadKind {
        if extra_args.iter().any(|a| a == "--rate" || a == "--profile") {
            LoadKind::Open
        } else if inflight > 1 {
            LoadKind::Pipelined
        } else {
            LoadKind::Closed
        }
    }

    fn name(self) -> &'static str {
        match self {
            LoadKind::Closed => "closed-loop",
            LoadKind::Pipelined => "pipelined",
            LoadKind::Open => "open-loop",
        }
    }
}

/// Chooses the placement for `mode` over `cpus` (the allowed CPU ids, in
/// order) with `gateway_workers` gateway threads (0 when there is no
/// gateway in the path), for a leg whose load is `load`.
pub fn plan(mode: PinMode, cpus: &[usize], gateway_workers: u32, load: LoadKind) -> PinningReport {
    let workers = gateway_workers as usize;
    let (mode, reason) = match mode {
        PinMode::Auto if cpus.is_empty() => (PinMode::None, "auto: no CPU ids known".to_string()),
        PinMode::Auto if cpus.len() < SPREAD_CPUS_MIN && load == LoadKind::Closed => (
            PinMode::Colocate,
            format!(
                "auto: closed-loop latency on {} CPU(s) < {SPREAD_CPUS_MIN}: one process works at a time, and a cross-CPU wake-up costs more than sharing one core",
                cpus.len()
            ),
        ),
        PinMode::Auto if cpus.len() < SPREAD_CPUS_MIN && load == LoadKind::Pipelined => (
            PinMode::None,
            format!(
                "auto: {} load on {} CPU(s) < {SPREAD_CPUS_MIN}: every process is busy, so the scheduler places them and no CPU is left idle",
                load.name(),
                cpus.len()
            ),
        ),
        PinMode::Auto if cpus.len() < SPREAD_CPUS_MIN => (
            PinMode::None,
            format!(
                "auto: {} load on {} CPU(s) < {SPREAD_CPUS_MIN}: the scheduler places the processes, so no CPU is left idle at high rates; at low rates a hop may wake an idle CPU, which --pin colocate avoids",
                load.name(),
                cpus.len()
            ),
        ),
        PinMode::Auto => (PinMode::Spread, format!("auto: {} CPUs: one per process/worker", cpus.len())),
        other => (other, "requested".to_string()),
    };
    match (mode, cpus.last()) {
        (PinMode::Colocate, Some(&cpu)) => PinningReport {
            plan: "colocate".into(),
            reason,
            exchange_cpu: Some(cpu),
            gateway_cpus: vec![cpu; workers],
            loadgen_cpu: Some(cpu),
        },
        (PinMode::Spread, Some(_)) => {
            let at = |i: usize| cpus[i % cpus.len()];
            PinningReport {
                plan: "spread".into(),
                reason,
                loadgen_cpu: Some(at(0)),
                gateway_cpus: (0..workers).map(|w| at(1 + w)).collect(),
                exchange_cpu: Some(at(1 + workers)),
            }
        }
        _ => PinningReport {
            plan: "none".into(),
            reason,
            exchange_cpu: None,
            gateway_cpus: Vec::new(),
            loadgen_cpu: None,
        },
    }
}

/// Parses a CPU list like `0,2-3` into ids, in the order given.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--cpus: {part:?} is not a CPU id or range like 2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err("--cpus names no CPU".into());
    }
    Ok(cpus)
}

/// The CPU ids this process may run on (all online ones, normally).
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colocates_closed_loop_latency_on_two_cpus_and_says_why() {
        let p = plan(PinMode::Auto, &[0, 1], 2, LoadKind::Closed);
        assert_eq!(p.plan, "colocate");
        assert_eq!((p.exchange_cpu, p.loadgen_cpu), (Some(1), Some(1)));
        assert_eq!(p.gateway_cpus, vec![1, 1]);
        assert!(
            p.reason.starts_with("auto: closed-loop latency on 2 CPU"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn auto_leaves_no_cpu_idle_under_pipelined_or_open_loop_load_on_two_cpus() {
        for load in [LoadKind::Pipelined, LoadKind::Open] {
            let p = plan(PinMode::Auto, &[0, 1], 1, load);
            assert_eq!(p.plan, "none", "{load:?}");
            assert_eq!((p.exchange_cpu, p.loadgen_cpu), (None, None));
            assert!(p.gateway_cpus.is_empty());
            assert!(p.reason.contains("no CPU is left idle"), "{}", p.reason);
            assert!(p.reason.contains(load.name()), "{}", p.reason);
            assert_eq!(
                p.reason.contains("--pin colocate"),
                load == LoadKind::Open,
                "only an open loop idles between sends: {}",
                p.reason
            );
        }
        // An explicit choice still wins.
        let p = plan(PinMode::Colocate, &[0, 1], 1, LoadKind::Pipelined);
        assert_eq!(
            (p.plan.as_str(), p.reason.as_str()),
            ("colocate", "requested")
        );
    }

    #[test]
    fn the_load_kind_follows_loadgens_flags() {
        let rate = ["--rate".to_string(), "5000".to_string()];
        assert_eq!(LoadKind::of(1, &rate), LoadKind::Open);
        assert_eq!(LoadKind::of(8, &rate), LoadKind::Open);
        assert_eq!(LoadKind::of(8, &[]), LoadKind::Pipelined);
        assert_eq!(
            LoadKind::of(1, &["--seed".into(), "3".into()]),
            LoadKind::Closed
        );
    }

    #[test]
    fn auto_spreads_on_many_cpus() {
        let p = plan(PinMode::Auto, &[0, 1, 2, 3, 4, 5], 2, LoadKind::Closed);
        assert_eq!(p.plan, "spread");
        assert_eq!(p.loadgen_cpu, Some(0));
        assert_eq!(p.gateway_cpus, vec![1, 2]);
        assert_eq!(p.exchange_cpu, Some(3));
    }

    #[test]
    fn spread_wraps_when_cpus_run_out_and_none_pins_nothing() {
        let p = plan(PinMode::Spread, &[0, 1], 2, LoadKind::Pipelined);
        assert_eq!((p.loadgen_cpu, p.exchange_cpu), (Some(0), Some(1)));
        assert_eq!(p.gateway_cpus, vec![1, 0]);
        assert_eq!(p.reason, "requested");
        let p = plan(PinMode::None, &[0, 1], 1, LoadKind::Closed);
        assert_eq!(
            (p.plan.as_str(), p.loadgen_cpu, p.gateway_cpus.len()),
            ("none", None, 0)
        );
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0,2-4"), Ok(vec![0, 2, 3, 4]));
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }
}
