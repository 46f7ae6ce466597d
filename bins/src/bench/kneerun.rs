//! Running a knee: for each target the maximum-rate probe (when the
//! schedule needs one), then one open-loop leg per offered rate, into
//! `<dir>/<target>/rate-<R>/`; then `knee.md`, `knee.json` and `knee.svg`.
//! What needs no process (schedule, SLOs, the search, table and plot) is
//! in [`super::knee`].

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::hgrm::read_hgrm;
use super::knee::{self, KneeCurve, KneePoint, KneeReport, Schedule, Slo};
use super::machine::UtcTime;
use super::run::{Bench, Leg, LoadFlags, RunOutcome, Target};
use super::summary::LatencySummary;

/// Everything a knee needs besides the targets.
#[derive(Debug, Clone)]
pub struct KneePlan {
    /// The requirements to search the sustainable rate of.
    pub slos: Vec<Slo>,
    /// The offered rates, or the fractions of a maximum.
    pub schedule: Schedule,
    /// The maximum the fractions are of; `None`: probe each target.
    pub max_per_s: Option<f64>,
    /// Measured load per step, seconds.
    pub step_seconds: f64,
    /// Unrecorded load before each step, seconds, at the step's rate.
    pub warmup_seconds: f64,
    /// Share of the offered rate a step must achieve to count.
    pub achieved_min: f64,
    /// The probe's load (pipelined), without the target's own flags.
    pub probe: LoadFlags,
    /// The steps' load: connections, size and loadgen flags (seed, shape,
    /// interval); the rate, count and warm-up are set per step.
    pub step: LoadFlags,
}

/// Runs every target's curve in turn (stopping early on Ctrl-C) and
/// gathers the report. `targets` are the started target and its
/// scenario's own loadgen flags, one per name.
pub fn run(
    bench: &Bench,
    plan: &KneePlan,
    names: &[String],
    targets: &[(Target, Vec<String>)],
    dir: &Path,
) -> Result<KneeReport, String> {
    let started_utc = UtcTime::now().rfc3339();
    let mut curves = Vec::new();
    let mut placement = None;
    for (name, (target, args)) in names.iter().zip(targets) {
        let curve = run_curve(bench, plan, name, target, args, dir, &mut placement)?;
        let verdicts: Vec<String> = curve
            .sustainable_per_s
            .iter()
            .zip(&plan.slos)
            .map(|(r, slo)| match r {
                Some(r) => format!("{slo}: sustained to {r:.0}/s"),
                None => format!("{slo}: no rate met it"),
            })
            .collect();
        println!("{name}: {}", verdicts.join("; "));
        curves.push(curve);
        if bench.interrupted.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(KneeReport {
        started_utc,
        machine: format!(
            "{} × {}, TCP congestion control {}",
            bench.machine.cores,
            bench.machine.cpu_model,
            bench
                .tcp_congestion
                .clone()
                .unwrap_or_else(super::run::system_congestion_control)
        ),
        git_commit: bench.machine.git_commit.clone(),
        slos: plan.slos.clone(),
        achieved_min: plan.achieved_min,
        step_s: plan.step_seconds,
        load: format!(
            "{} connections, {}-byte pings, open loop",
            plan.step.connections, plan.step.size
        ),
        placement,
        curves,
    })
}

/// Writes `knee.md`, `knee.json` and `knee.svg` into `dir`; returns the
/// markdown. A plot that cannot be drawn is a warning, not a failure.
pub fn write(dir: &Path, report: &KneeReport) -> Result<String, String> {
    let md = knee::render_markdown(report);
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
    for (file, text) in [("knee.md", &md), ("knee.json", &json)] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Err(e) = knee::plot_knee(&dir.join("knee.svg"), report) {
        eprintln!("fepbench: {e}");
    }
    Ok(md)
}

/// One target's knee: the probe when the schedule needs a maximum, then a
/// step per rate; a step that does not finish ends the curve.
fn run_curve(
    bench: &Bench,
    plan: &KneePlan,
    name: &str,
    target: &Target,
    args: &[String],
    dir: &Path,
    placement: &mut Option<String>,
) -> Result<KneeCurve, String> {
    let mut curve = KneeCurve {
        name: name.to_string(),
        max_per_s: plan.max_per_s,
        max_source: plan.max_per_s.map(|_| "--max".to_string()),
        points: Vec::new(),
        sustainable_per_s: vec![None; plan.slos.len()],
        stopped: None,
    };
    if plan.schedule.needs_max() && curve.max_per_s.is_none() {
        match probe(bench, plan, name, target, args, dir)? {
            Some(max) => {
                curve.max_per_s = Some(max);
                curve.max_source = Some(format!(
                    "probe: pipelined, {} × {} in flight",
                    plan.probe.connections, plan.probe.inflight
                ));
            }
            None => {
                curve.stopped = Some("the maximum-rate probe did not finish".into());
                return Ok(curve);
            }
        }
    }
    let rates = plan.schedule.rates(curve.max_per_s)?;
    // A step past saturation runs longer than its schedule; give it room,
    // but not the half hour a single run may take.
    let step_bench = Bench {
        run_timeout: Duration::from_secs_f64(
            (plan.step_seconds + plan.warmup_seconds) * 10.0 + 30.0,
        ),
        ..bench.clone()
    };
    for (i, &rate) in rates.iter().enumerate() {
        let leg = step_leg(plan, name, target, args, rate);
        let step_dir = dir.join(name).join(format!("rate-{rate:.0}"));
        std::fs::create_dir_all(&step_dir)
            .map_err(|e| format!("cannot create {}: {e}", step_dir.display()))?;
        let label = format!("{name} step {}/{} at {rate:.0}/s", i + 1, rates.len());
        let outcome = step_bench.run_leg(&leg, &step_dir, &label);
        println!("{label}: {}", outcome.summary.one_line());
        let p = &outcome.summary.pinning;
        placement.get_or_insert_with(|| format!("{} ({})", p.plan, p.reason));
        curve.points.push(point_of(&outcome, rate));
        if outcome.summary.partial {
            let why = outcome.summary.partial_reason.as_deref().unwrap_or("");
            curve.stopped = Some(format!(
                "the step at {rate:.0}/s did not finish: {}",
                why.lines().next().unwrap_or("")
            ));
            break;
        }
    }
    curve.sustainable_per_s = plan
        .slos
        .iter()
        .map(|slo| knee::sustainable_rate(&curve.points, slo, plan.achieved_min))
        .collect();
    Ok(curve)
}

/// The pipelined maximum of `target`, or `None` when the probe did not
/// finish.
fn probe(
    bench: &Bench,
    plan: &KneePlan,
    name: &str,
    target: &Target,
    args: &[String],
    dir: &Path,
) -> Result<Option<f64>, String> {
    let mut load = plan.probe.clone();
    load.extra_args.extend(args.iter().cloned());
    let leg = Leg {
        name: format!("{name}-probe"),
        target: target.clone(),
        load,
    };
    let probe_dir = dir.join(name).join("probe");
    std::fs::create_dir_all(&probe_dir)
        .map_err(|e| format!("cannot create {}: {e}", probe_dir.display()))?;
    let label = format!("{name} probe");
    let outcome = bench.run_leg(&leg, &probe_dir, &label);
    println!("{label}: {}", outcome.summary.one_line());
    Ok(match (&outcome.summary.loadgen, outcome.summary.partial) {
        (Some(l), false) if l.throughput_msgs_per_s > 0.0 => Some(l.throughput_msgs_per_s),
        _ => None,
    })
}

/// The open-loop leg of one step: `rate` pings/s for the step's seconds
/// after its warm-up.
fn step_leg(plan: &KneePlan, name: &str, target: &Target, args: &[String], rate: f64) -> Leg {
    let mut extra_args = vec!["--rate".to_string(), format!("{rate}")];
    extra_args.extend(plan.step.extra_args.iter().cloned());
    extra_args.extend(args.iter().cloned());
    Leg {
        name: format!("{name}@{rate:.0}"),
        target: target.clone(),
        load: LoadFlags {
            connections: plan.step.connections,
            inflight: 1,
            size: plan.step.size,
            warmup: (rate * plan.warmup_seconds).ceil() as u64,
            count: (rate * plan.step_seconds).ceil().max(1.0) as u64,
            extra_args,
        },
    }
}

/// A step's figures, from its run.
pub fn point_of(outcome: &RunOutcome, offered: f64) -> KneePoint {
    let s = &outcome.summary;
    let rtt_hgrm = std::fs::read(outcome.dir.join("rtt.hgrm"))
        .ok()
        .and_then(|bytes| read_hgrm(bytes.as_slice()).ok());
    let (achieved, rtt, send_lag, failed) = match &s.loadgen {
        Some(l) => (
            l.throughput_msgs_per_s,
            l.rtt,
            l.send_lag,
            l.lost + l.rejects + l.errors,
        ),
        None => (0.0, LatencySummary::ZERO, None, 0),
    };
    KneePoint {
        offered_per_s: offered,
        achieved_per_s: achieved,
        rtt,
        send_lag,
        failed_pings: failed,
        partial: s.partial,
        dir: outcome.dir.display().to_string(),
        rtt_hgrm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> KneePlan {
        let load = |connections, inflight| LoadFlags {
            connections,
            inflight,
            size: 64,
            warmup: 0,
            count: 0,
            extra_args: vec!["--seed".into(), "7".into()],
        };
        KneePlan {
            slos: vec!["p99=100us".parse().unwrap()],
            schedule: Schedule::Rates(vec![1000.0]),
            max_per_s: None,
            step_seconds: 2.0,
            warmup_seconds: 0.5,
            achieved_min: 0.95,
            probe: load(10, 16),
            step: load(10, 1),
        }
    }

    #[test]
    fn a_step_is_an_open_loop_leg_of_the_steps_length_at_its_rate() {
        let args = vec!["--workload".to_string(), "orders".to_string()];
        let leg = step_leg(&plan(), "o1", &Target::Exchange, &args, 2500.0);
        assert_eq!(leg.name, "o1@2500");
        assert_eq!(
            (leg.load.inflight, leg.load.count, leg.load.warmup),
            (1, 5000, 1250)
        );
        assert_eq!(
            leg.load.extra_args,
            ["--rate", "2500", "--seed", "7", "--workload", "orders"]
        );
    }
}
