//! `fepbench knee`: latency against offered load, and the highest rate
//! that meets a latency requirement.
//!
//! Peak throughput says little about a system a user runs below it; what
//! matters is the load it sustains while its latency stays acceptable (Gil
//! Tene). A knee is measured in open loop: loadgen sends at a fixed rate and
//! measures each ping from its *intended* send time, so a stall shows as
//! latency rather than as a pause in the load (coordinated omission). The
//! rates rise from a fraction of a measured maximum to past it; past
//! saturation the achieved rate falls behind the offered one and the tail
//! grows without bound.
//!
//! This module holds what needs no socket: the schedule, SLOs, the search
//! for the sustainable rate, the table and the plot. `fepbench` runs the
//! legs.

use std::fmt;
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use plotters::prelude::*;
use serde::Serialize;

use super::hgrm::Hgrm;
use super::plot::PlotError;
use super::summary::LatencySummary;

/// The default schedule: fractions of the measured maximum, from light
/// load to past saturation.
pub const FRACTIONS_DEFAULT: [f64; 9] = [0.1, 0.25, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2];

/// Steps in one schedule at most (each step is a run of seconds).
pub const STEPS_MAX: usize = 64;

/// A step sustains its offered rate when it achieves at least this share
/// of it (the default of `--achieved-min`).
pub const ACHIEVED_SHARE_MIN_DEFAULT: f64 = 0.95;

/// The rates a knee visits.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Fractions of the maximum rate (probed, or `--max`).
    Fractions(Vec<f64>),
    /// Rates in pings per second, as given.
    Rates(Vec<f64>),
}

impl Schedule {
    /// True when the schedule needs a maximum rate to turn into rates.
    pub fn needs_max(&self) -> bool {
        matches!(self, Schedule::Fractions(_))
    }

    /// The offered rates in pings/s, ascending, without duplicates, each at
    /// least 1/s. `max` is the rate fractions are of.
    pub fn rates(&self, max: Option<f64>) -> Result<Vec<f64>, String> {
        let mut rates: Vec<f64> = match (self, max) {
            (Schedule::Rates(r), _) => r.clone(),
            (Schedule::Fractions(f), Some(max)) if max.is_finite() && max > 0.0 => {
                f.iter().map(|f| (f * max).round()).collect()
            }
            (Schedule::Fractions(_), _) => {
                return Err("the schedule is in fractions of a maximum, and none is known".into())
            }
        };
        if let Some(bad) = rates.iter().find(|r| !r.is_finite() || **r < 1.0) {
            return Err(format!("offered rate {bad} is not at least 1/s"));
        }
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        if rates.is_empty() {
            return Err("the schedule has no rate".into());
        }
        if rates.len() > STEPS_MAX {
            return Err(format!(
                "{} steps: at most {STEPS_MAX} in one knee",
                rates.len()
            ));
        }
        Ok(rates)
    }
}

/// Parses a comma-separated list of positive numbers (`0.1,0.5,1`; a rate
/// may end in `k`: `20k` is 20,000).
pub fn parse_number_list(text: &str) -> Result<Vec<f64>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (digits, scale) = match p.strip_suffix(['k', 'K']) {
                Some(d) => (d, 1_000.0),
                None => (p, 1.0),
            };
            digits
                .parse::<f64>()
                .ok()
                .map(|v| v * scale)
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("{p:?} is not a positive number"))
        })
        .collect::<Result<Vec<f64>, String>>()
        .and_then(|v| {
            if v.is_empty() {
                Err(format!("{text:?} lists no number"))
            } else {
                Ok(v)
            }
        })
}

/// A latency requirement: the `quantile` of the round trip at most
/// `bound_us`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    /// As written: `p99`, `p99.9`, `p50`, `max`.
    pub percentile: String,
    /// 0.99 for `p99`; 1 for `max`.
    pub quantile: f64,
    /// The bound in microseconds.
    pub bound_us: f64,
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ≤ {}", self.percentile, format_us(self.bound_us))
    }
}

/// Microseconds as the shortest exact unit: `100us`, `1.5ms`, `2s`.
fn format_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{}s", us / 1_000_000.0)
    } else if us >= 1_000.0 {
        format!("{}ms", us / 1_000.0)
    } else {
        format!("{us}µs")
    }
}

impl FromStr for Slo {
    type Err = String;

    /// `p99=100us`, `p99.9=2ms`, `p50=30µs`, `max=10ms`, `p99.99=1s`; a
    /// bound without a unit is in microseconds.
    fn from_str(text: &str) -> Result<Slo, String> {
        let bad = |why: &str| format!("--slo {text:?}: {why} (expected e.g. p99=100us)");
        let (p, bound) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
        let p = p.trim();
        let quantile = if p == "max" {
            1.0
        } else {
            let pct: f64 = p
                .strip_prefix('p')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad("the percentile is not p<number> or max"))?;
            if !(pct > 0.0 && pct < 100.0) {
                return Err(bad("the percentile must be above p0 and below p100"));
            }
            pct / 100.0
        };
        let bound = bound.trim();
        let split = bound
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(bound.len());
        let (number, unit) = bound.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| bad("the bound is not a number"))?;
        let scale = match unit {
            "ns" => 0.001,
            "" | "us" | "µs" => 1.0,
            "ms" => 1_000.0,
            "s" => 1_000_000.0,
            _ => return Err(bad("the unit is not ns, us, ms or s")),
        };
        let bound_us = number * scale;
        if !(bound_us > 0.0 && bound_us.is_finite()) {
            return Err(bad("the bound must be above 0"));
        }
        Ok(Slo {
            percentile: p.to_string(),
            quantile,
            bound_us,
        })
    }
}

/// One step of a knee: what was offered and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct KneePoint {
    /// Offered rate, pings/s.
    pub offered_per_s: f64,
    /// Answered pings per second over the measured part.
    pub achieved_per_s: f64,
    /// Round trip from the intended send time, µs.
    pub rtt: LatencySummary,
    /// How late loadgen sent (`t1 −` intended), µs: when this is large the
    /// load generator, not the system, fell behind.
    pub send_lag: Option<LatencySummary>,
    /// Pings without any answer, plus rejects and connection errors.
    pub failed_pings: u64,
    /// True when the step did not finish (a process died, a timeout).
    pub partial: bool,
    /// The step's run directory.
    pub dir: String,
    /// The full rtt distribution, for percentiles the summary lacks.
    #[serde(skip)]
    pub rtt_hgrm: Option<Hgrm>,
}

impl KneePoint {
    /// The round trip at `quantile`, µs: exact for p50/p90/p99/p99.9/max
    /// (loadgen's summary), else read from `rtt.hgrm` (the first row at or
    /// above the quantile: never optimistic).
    pub fn rtt_at(&self, quantile: f64) -> Option<f64> {
        let exact = [
            (0.5, self.rtt.p50_us),
            (0.9, self.rtt.p90_us),
            (0.99, self.rtt.p99_us),
            (0.999, self.rtt.p999_us),
            (1.0, self.rtt.max_us),
        ];
        if let Some((_, v)) = exact.iter().find(|(q, _)| (q - quantile).abs() < 1e-12) {
            return Some(*v);
        }
        self.rtt_hgrm.as_ref()?.value_at_quantile(quantile)
    }

    /// True when loadgen's own lateness makes up at least half the rtt
    /// p99: the step then says as much about the load generator's host
    /// (a busy or slow-to-wake CPU) as about the target.
    pub fn generator_bound(&self) -> bool {
        self.send_lag
            .is_some_and(|l| l.p99_us * 2.0 >= self.rtt.p99_us && self.rtt.p99_us > 0.0)
    }

    /// Achieved over offered.
    pub fn achieved_share(&self) -> f64 {
        self.achieved_per_s / self.offered_per_s
    }

    /// Whether this step meets `slo` and sustained its offered rate (at
    /// least `achieved_min` of it, every ping answered, the run complete).
    pub fn meets(&self, slo: &Slo, achieved_min: f64) -> bool {
        !self.partial
            && self.failed_pings == 0
            && self.achieved_share() >= achieved_min
            && self.rtt_at(slo.quantile).is_some_and(|v| v <= slo.bound_us)
    }
}

/// The sustainable rate under `slo`: the highest offered rate below the
/// first step (in rate order) that misses it. A passing step above a
/// failing one is noise, not capacity, and is not counted. `None` when
/// even the lowest rate misses.
pub fn sustainable_rate(points: &[KneePoint], slo: &Slo, achieved_min: f64) -> Option<f64> {
    let mut sorted: Vec<&KneePoint> = points.iter().collect();
    sorted.sort_by(|a, b| a.offered_per_s.total_cmp(&b.offered_per_s));
    sorted
        .iter()
        .take_while(|p| p.meets(slo, achieved_min))
        .last()
        .map(|p| p.offered_per_s)
}

/// One target's knee.
#[derive(Debug, Clone, Serialize)]
pub struct KneeCurve {
    /// The leg's name: `s1`, `c-relay`, …
    pub name: String,
    /// The rate fractions were of, and where it came from.
    pub max_per_s: Option<f64>,
    /// `probe` (a pipelined run measured it) or `--max`.
    pub max_source: Option<String>,
    /// The steps, in the order run (ascending rate).
    pub points: Vec<KneePoint>,
    /// Per SLO, the sustainable rate (`None`: none of the rates met it).
    pub sustainable_per_s: Vec<Option<f64>>,
    /// Why the schedule stopped early, if it did.
    pub stopped: Option<String>,
}

/// The whole `knee.json`.
#[derive(Debug, Clone, Serialize)]
pub struct KneeReport {
    /// Start, UTC.
    pub started_utc: String,
    /// The machine, one line.
    pub machine: String,
    /// The commit measured, when known.
    pub git_commit: Option<String>,
    /// The SLOs, in the order given.
    pub slos: Vec<Slo>,
    /// Share of the offered rate a step must achieve to count.
    pub achieved_min: f64,
    /// Seconds of load per step.
    pub step_s: f64,
    /// Connections, frame size: what every step used.
    pub load: String,
    /// Where the processes ran, and why.
    pub placement: Option<String>,
    /// One curve per target.
    pub curves: Vec<KneeCurve>,
}

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}", v)
    } else {
        format!("{v:.1}")
    }
}

/// `knee.md`: per target a table of the steps, then the sustainable rates
/// and, between targets, their ratios.
pub fn render_markdown(r: &KneeReport) -> String {
    let mut md = String::from("# fepbench knee\n\n");
    let _ = writeln!(
        md,
        "Open loop, latency from each ping's intended send time (coordinated-omission corrected). \
         {} per step; {}. Machine: {}{}.\n",
        format_duration(r.step_s),
        r.load,
        r.machine,
        r.git_commit
            .as_ref()
            .map_or(String::new(), |c| format!("; commit {c}"))
    );
    if let Some(p) = &r.placement {
        let _ = writeln!(md, "Placement: {p}.\n");
    }
    for c in &r.curves {
        let _ = writeln!(md, "## {}\n", c.name);
        if let (Some(max), Some(source)) = (c.max_per_s, &c.max_source) {
            let _ = writeln!(md, "Maximum rate ({source}): {max:.0} pings/s.\n");
        }
        let _ = write!(
            md,
            "| offered/s | achieved/s | achieved | rtt p50 | p99 | p99.9 | max | send lag p99 | failed |"
        );
        for s in &r.slos {
            let _ = write!(md, " {s} |");
        }
        let _ = writeln!(md);
        let _ = write!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for _ in &r.slos {
            let _ = write!(md, ":---:|");
        }
        let _ = writeln!(md);
        for p in &c.points {
            let _ = write!(
                md,
                "| {:.0} | {:.0} | {:.0}% | {} | {} | {} | {} | {} | {}{} |",
                p.offered_per_s,
                p.achieved_per_s,
                p.achieved_share() * 100.0,
                us(p.rtt.p50_us),
                us(p.rtt.p99_us),
                us(p.rtt.p999_us),
                us(p.rtt.max_us),
                p.send_lag.map_or("–".to_string(), |l| format!(
                    "{}{}",
                    us(l.p99_us),
                    if p.generator_bound() { " †" } else { "" }
                )),
                p.failed_pings,
                if p.partial { " (partial)" } else { "" }
            );
            for s in &r.slos {
                let _ = write!(
                    md,
                    " {} |",
                    if p.meets(s, r.achieved_min) {
                        "yes"
                    } else {
                        "no"
                    }
                );
            }
            let _ = writeln!(md);
        }
        if c.points.iter().any(KneePoint::generator_bound) {
            let _ = writeln!(
                md,
                "\n† loadgen's own lateness (send lag) is at least half the rtt p99 at this step: \
                 the tail measures the load generator's host as much as {}.",
                c.name
            );
        }
        if let Some(why) = &c.stopped {
            let _ = writeln!(md, "\nStopped early: {why}.");
        }
        let _ = writeln!(md);
    }
    if !r.slos.is_empty() {
        let _ = writeln!(md, "## Sustainable rate\n");
        let _ = writeln!(
            md,
            "The highest offered rate below the first step that misses the SLO or achieves less than {:.0}% of its offered rate (pings/s).\n",
            r.achieved_min * 100.0
        );
        let _ = write!(md, "| target |");
        for s in &r.slos {
            let _ = write!(md, " {s} |");
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "|---|{}", "---:|".repeat(r.slos.len()));
        for c in &r.curves {
            let _ = write!(md, "| {} |", c.name);
            for rate in &c.sustainable_per_s {
                let _ = write!(
                    md,
                    " {} |",
                    rate.map_or("none met it".to_string(), |v| format!("{v:.0}"))
                );
            }
            let _ = writeln!(md);
        }
        if let Some(first) = r.curves.first() {
            for other in &r.curves[1..] {
                for (i, s) in r.slos.iter().enumerate() {
                    if let (Some(a), Some(b)) =
                        (first.sustainable_per_s[i], other.sustainable_per_s[i])
                    {
                        let _ =
                            writeln!(md, "\n{}/{} at {s}: {:.2}.", first.name, other.name, a / b);
                    }
                }
            }
        }
    }
    md
}

fn format_duration(s: f64) -> String {
    if s >= 1.0 {
        format!("{s} s")
    } else {
        format!("{} ms", s * 1_000.0)
    }
}

/// Colours of the curves, one per target.
const TARGET_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// The percentiles drawn, each with its own marker (and a thicker line
/// further into the tail), so one colour per target still reads.
const DRAWN: [(&str, f64); 4] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)];

/// The colour of SLO bounds.
const SLO_COLOR: RGBColor = RGBColor(0, 0, 0);

/// Draws the marker of percentile `kind` (an index into [`DRAWN`]) at `at`.
fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    kind: usize,
    at: (i32, i32),
    color: RGBColor,
) -> Result<(), PlotError> {
    let err = |e: &dyn fmt::Display| PlotError::new(e.to_string());
    let style = color.filled();
    match kind {
        0 => area.draw(&Circle::new(at, 3, style)),
        1 => area.draw(&TriangleMarker::new(at, 5, style)),
        2 => area.draw(&Rectangle::new(
            [(at.0 - 4, at.1 - 4), (at.0 + 4, at.1 + 4)],
            style,
        )),
        _ => area.draw(&Cross::new(at, 4, color.stroke_width(2))),
    }
    .map_err(|e| err(&e))
}

fn line_width(kind: usize) -> u32 {
    match kind {
        0 | 3 => 1,
        _ => 2,
    }
}

/// Draws `knee.svg`: on top, p50/p99/p99.9/max of every target against the
/// offered rate (both axes logarithmic) with the SLO bounds; below, the
/// share of the offered rate each step achieved; the legend on the right.
pub fn plot_knee(path: &Path, r: &KneeReport) -> Result<(), PlotError> {
    let err = |e: &dyn fmt::Display| PlotError::new(e.to_string());
    let points = || r.curves.iter().flat_map(|c| c.points.iter());
    let offered = || points().map(|p| p.offered_per_s).filter(|v| *v > 0.0);
    let x_min = offered().fold(f64::INFINITY, f64::min);
    let x_max = offered().fold(0.0_f64, f64::max);
    let (x_min, x_max) = if x_min.is_finite() && x_max > 0.0 {
        (x_min / 1.25, x_max * 1.25)
    } else {
        (1.0, 10.0)
    };
    let lat = || {
        points()
            .flat_map(|p| DRAWN.iter().filter_map(|d| p.rtt_at(d.1)))
            .chain(r.slos.iter().map(|s| s.bound_us))
            .filter(|v| *v > 0.0)
    };
    let y_min = lat().fold(f64::INFINITY, f64::min) * 0.8;
    let y_max = lat().fold(0.0_f64, f64::max) * 1.25;
    let (y_min, y_max) = if y_min.is_finite() && y_min < y_max {
        (y_min, y_max)
    } else {
        (1.0, 10.0)
    };
    let share_max = points()
        .map(|p| p.achieved_share() * 100.0)
        .filter(|v| v.is_finite())
        .fold(110.0_f64, f64::max);

    let root = SVGBackend::new(path, (1100, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plots, legend) = root.split_horizontally(860);
    let (top, bottom) = plots.split_vertically(540);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "latency against offered load (open loop)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered rate (pings/s, log)")
        .y_desc("rtt (µs, log)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, c) in r.curves.iter().enumerate() {
        let color = TARGET_COLORS[i % TARGET_COLORS.len()];
        for (kind, (_, q)) in DRAWN.iter().enumerate() {
            let pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter_map(|p| p.rtt_at(*q).map(|v| (p.offered_per_s, v.max(y_min))))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    pts.clone(),
                    color.stroke_width(line_width(kind)),
                ))
                .map_err(|e| err(&e))?;
            let style = color.filled();
            let drawn = match kind {
                0 => chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, style))),
                1 => chart.draw_series(pts.iter().map(|p| TriangleMarker::new(*p, 5, style))),
                2 => chart.draw_series(
                    pts.iter()
                        .map(|p| EmptyElement::at(*p) + Rectangle::new([(-4, -4), (4, 4)], style)),
                ),
                _ => {
                    chart.draw_series(pts.iter().map(|p| Cross::new(*p, 4, color.stroke_width(2))))
                }
            };
            drawn.map_err(|e| err(&e))?;
        }
    }
    for s in &r.slos {
        chart
            .draw_series(DashedLineSeries::new(
                [(x_min, s.bound_us), (x_max, s.bound_us)],
                8,
                5,
                SLO_COLOR.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
    }

    let mut chart = ChartBuilder::on(&bottom)
        .caption("achieved / offered rate", ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..share_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered rate (pings/s, log)")
        .y_desc("achieved (%)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            [(x_min, 100.0), (x_max, 100.0)],
            BLACK.mix(0.3),
        ))
        .map_err(|e| err(&e))?;
    for (i, c) in r.curves.iter().enumerate() {
        let color = TARGET_COLORS[i % TARGET_COLORS.len()];
        let pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|p| (p.offered_per_s, p.achieved_share() * 100.0))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    draw_legend(&legend, r)
}

/// The legend column: per target its colour and the four markers, then
/// the SLO lines.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    r: &KneeReport,
) -> Result<(), PlotError> {
    let err = |e: &dyn fmt::Display| PlotError::new(e.to_string());
    let font = ("sans-serif", 15).into_font();
    let mut y = 60;
    let text = |t: String, x: i32, y: i32| {
        area.draw(&Text::new(t, (x, y - 8), font.clone()))
            .map_err(|e| err(&e))
    };
    for (i, c) in r.curves.iter().enumerate() {
        let color = TARGET_COLORS[i % TARGET_COLORS.len()];
        text(c.name.clone(), 10, y)?;
        y += 22;
        for (kind, (label, _)) in DRAWN.iter().enumerate() {
            area.draw(&PathElement::new(
                [(14, y), (44, y)],
                color.stroke_width(line_width(kind)),
            ))
            .map_err(|e| err(&e))?;
            marker(area, kind, (29, y), color)?;
            text(format!("rtt {label}"), 54, y)?;
            y += 20;
        }
        y += 12;
    }
    for s in &r.slos {
        for x in [14, 27, 40] {
            area.draw(&PathElement::new(
                [(x, y), (x + 6, y)],
                SLO_COLOR.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        }
        text(format!("SLO {s}"), 54, y)?;
        y += 22;
    }
    area.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hgrm::{read_hgrm, write_hgrm};
    use hdrhistogram::Histogram;

    fn lat(p50: f64, p99: f64) -> LatencySummary {
        LatencySummary {
            p50_us: p50,
            p90_us: (p50 + p99) / 2.0,
            p99_us: p99,
            p999_us: p99 * 2.0,
            max_us: p99 * 5.0,
            mean_us: p50,
        }
    }

    /// A synthetic step: latency flat until `knee`, then growing fast, and
    /// the achieved rate capped at `capacity`.
    fn point(offered: f64, knee: f64, capacity: f64) -> KneePoint {
        let load = offered / knee;
        let p99 = if load <= 1.0 {
            40.0 + 20.0 * load
        } else {
            60.0 * load.powi(6)
        };
        KneePoint {
            offered_per_s: offered,
            achieved_per_s: offered.min(capacity),
            rtt: lat(20.0 * load.max(1.0), p99),
            send_lag: Some(lat(1.0, 2.0)),
            failed_pings: 0,
            partial: false,
            dir: String::new(),
            rtt_hgrm: None,
        }
    }

    fn slo(text: &str) -> Slo {
        text.parse().unwrap()
    }

    #[test]
    fn default_fractions_become_ascending_rates_of_the_maximum() {
        let s = Schedule::Fractions(FRACTIONS_DEFAULT.to_vec());
        let rates = s.rates(Some(100_000.0)).unwrap();
        assert_eq!(
            rates,
            vec![
                10_000.0, 25_000.0, 50_000.0, 70_000.0, 80_000.0, 90_000.0, 100_000.0, 110_000.0,
                120_000.0
            ]
        );
        assert!(s.needs_max());
        assert!(s.rates(None).is_err());
        assert!(s.rates(Some(0.0)).is_err());
    }

    #[test]
    fn explicit_rates_are_sorted_deduplicated_and_need_no_maximum() {
        let s = Schedule::Rates(vec![3000.0, 1000.0, 3000.0, 2000.0]);
        assert!(!s.needs_max());
        assert_eq!(s.rates(None).unwrap(), vec![1000.0, 2000.0, 3000.0]);
        assert!(Schedule::Rates(vec![0.5]).rates(None).is_err());
        assert!(Schedule::Rates(vec![1.0; 0]).rates(None).is_err());
        let too_many: Vec<f64> = (1..=65).map(f64::from).collect();
        assert!(Schedule::Rates(too_many).rates(None).is_err());
    }

    #[test]
    fn number_lists_take_k_suffixes_and_refuse_junk() {
        assert_eq!(
            parse_number_list("0.1, 0.5,1").unwrap(),
            vec![0.1, 0.5, 1.0]
        );
        assert_eq!(
            parse_number_list("20k,1.5K").unwrap(),
            vec![20_000.0, 1_500.0]
        );
        assert!(parse_number_list("1,-2").is_err());
        assert!(parse_number_list("x").is_err());
        assert!(parse_number_list(",").is_err());
    }

    #[test]
    fn slos_take_any_percentile_and_unit() {
        let s = slo("p99=100us");
        assert_eq!((s.quantile, s.bound_us), (0.99, 100.0));
        assert_eq!(s.to_string(), "p99 ≤ 100µs");
        assert_eq!(slo("p99.9=2ms").bound_us, 2_000.0);
        assert!((slo("p99.99=1s").quantile - 0.9999).abs() < 1e-12);
        assert_eq!(slo("max=500").quantile, 1.0);
        assert_eq!(slo("p50=30µs").bound_us, 30.0);
        assert_eq!(slo("p50=500ns").bound_us, 0.5);
        for bad in [
            "p99", "q99=1ms", "p100=1ms", "p0=1ms", "p99=", "p99=1h", "p99=0us",
        ] {
            assert!(bad.parse::<Slo>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_sustainable_rate_is_the_last_step_before_the_slo_breaks() {
        // Knee at 50k/s: p99 is 60 µs there and 60 × 1.2^6 ≈ 179 µs at 60k.
        let points: Vec<KneePoint> = [10e3, 30e3, 50e3, 60e3, 70e3]
            .into_iter()
            .map(|r| point(r, 50e3, 1e9))
            .collect();
        assert_eq!(
            sustainable_rate(&points, &slo("p99=100us"), 0.95),
            Some(50e3)
        );
        assert_eq!(sustainable_rate(&points, &slo("p99=1s"), 0.95), Some(70e3));
        assert_eq!(sustainable_rate(&points, &slo("p50=10us"), 0.95), None);
        // p99.9 = 2 × p99: 104 µs at 30k/s, 120 µs at the knee.
        assert_eq!(
            sustainable_rate(&points, &slo("p99.9=110us"), 0.95),
            Some(30e3)
        );
    }

    #[test]
    fn a_rate_not_achieved_is_not_sustained_whatever_its_latency() {
        let points: Vec<KneePoint> = [10e3, 30e3, 50e3]
            .into_iter()
            .map(|r| point(r, 1e9, 40e3))
            .collect();
        assert_eq!(
            sustainable_rate(&points, &slo("p99=100us"), 0.95),
            Some(30e3)
        );
        assert_eq!(
            sustainable_rate(&points, &slo("p99=100us"), 0.5),
            Some(50e3)
        );
    }

    #[test]
    fn a_lucky_step_above_a_failing_one_does_not_count_nor_do_lost_pings() {
        let mut points: Vec<KneePoint> = [10e3, 20e3, 30e3, 40e3]
            .into_iter()
            .map(|r| point(r, 1e9, 1e9))
            .collect();
        points[1].rtt.p99_us = 500.0;
        assert_eq!(
            sustainable_rate(&points, &slo("p99=100us"), 0.95),
            Some(10e3)
        );
        points[1].rtt.p99_us = 50.0;
        points[2].failed_pings = 1;
        assert_eq!(
            sustainable_rate(&points, &slo("p99=100us"), 0.95),
            Some(20e3)
        );
        points[2].failed_pings = 0;
        points[3].partial = true;
        assert_eq!(
            sustainable_rate(&points, &slo("p99=100us"), 0.95),
            Some(30e3)
        );
        // Steps given out of order are searched in rate order.
        points.reverse();
        assert_eq!(
            sustainable_rate(&points, &slo("p99=100us"), 0.95),
            Some(30e3)
        );
    }

    #[test]
    fn uncommon_percentiles_are_read_from_the_histogram() {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 0..100_000u64 {
            // 1 µs … 100 ms, one value per step: the p99.99 is about 99.99 ms.
            hist.record((i + 1) * 1_000).unwrap();
        }
        let mut text = Vec::new();
        write_hgrm(&hist, &mut text).unwrap();
        let mut p = point(1000.0, 1e9, 1e9);
        p.rtt = LatencySummary::from_histogram(&hist);
        p.rtt_hgrm = Some(read_hgrm(text.as_slice()).unwrap());
        let p9999 = p.rtt_at(0.9999).unwrap();
        assert!((99_990.0..=100_100.0).contains(&p9999), "{p9999}");
        assert_eq!(p.rtt_at(0.99), Some(p.rtt.p99_us));
        assert!(p.meets(&slo("p99.99=101ms"), 0.95));
        assert!(!p.meets(&slo("p99.99=99ms"), 0.95));
        p.rtt_hgrm = None;
        assert_eq!(p.rtt_at(0.9999), None, "no histogram, no answer");
        assert!(!p.meets(&slo("p99.99=1s"), 0.95));
    }

    fn report() -> KneeReport {
        let curve = |name: &str, knee: f64| KneeCurve {
            name: name.into(),
            max_per_s: Some(knee),
            max_source: Some("probe".into()),
            points: [0.5, 1.0, 1.2]
                .iter()
                .map(|f| point(f * knee, knee, knee))
                .collect(),
            sustainable_per_s: vec![Some(knee)],
            stopped: None,
        };
        KneeReport {
            started_utc: "2026-11-29T10:00:00Z".into(),
            machine: "2 × test CPU".into(),
            git_commit: Some("abc".into()),
            slos: vec![slo("p99=100us")],
            achieved_min: 0.95,
            step_s: 2.0,
            load: "10 connections, 64-byte pings".into(),
            placement: Some("none (auto: …)".into()),
            curves: vec![curve("s1", 40e3), curve("c-relay", 80e3)],
        }
    }

    #[test]
    fn the_markdown_has_a_row_per_step_and_the_ratio_of_sustainable_rates() {
        let md = render_markdown(&report());
        // Each table's rows have its header's cells.
        for table in md.split("\n\n").filter(|b| b.starts_with('|')) {
            let lines: Vec<&str> = table.lines().collect();
            let cells = |l: &str| l.matches('|').count();
            assert!(lines.iter().all(|l| cells(l) == cells(lines[0])), "{table}");
        }
        assert!(md.contains("## s1") && md.contains("## c-relay"), "{md}");
        assert!(
            md.contains("| 20000 | 20000 | 100% | 20.0 | 50.0 |"),
            "{md}"
        );
        assert!(md.contains("| s1 | 40000 |"), "{md}");
        assert!(md.contains("s1/c-relay at p99 ≤ 100µs: 0.50."), "{md}");
        assert!(md.contains("| p99 ≤ 100µs |"), "{md}");
    }

    #[test]
    fn steps_where_the_generator_lags_are_marked_as_such() {
        let mut r = report();
        assert!(!render_markdown(&r).contains('†'));
        let p = &mut r.curves[0].points[1];
        p.send_lag = Some(lat(10.0, p.rtt.p99_us * 0.6));
        assert!(p.generator_bound());
        let md = render_markdown(&r);
        assert_eq!(md.matches(" †").count(), 1, "{md}");
        assert!(md.contains("† loadgen's own lateness"), "{md}");
    }

    #[test]
    fn the_plot_is_one_svg_with_every_target_and_the_slo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knee.svg");
        plot_knee(&path, &report()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        // The legend: each target, the four percentiles under each, the SLO.
        let lines: Vec<&str> = svg.lines().map(str::trim).collect();
        for (label, times) in [
            ("s1", 1),
            ("c-relay", 1),
            ("rtt p99.9", 2),
            ("SLO p99 ≤ 100µs", 1),
        ] {
            assert_eq!(
                lines.iter().filter(|l| **l == label).count(),
                times,
                "{label}"
            );
        }
        // One triangle marker (p99) per step of each target, plus the legend's.
        assert!(svg.matches("<polygon").count() >= 2 * 3 + 2, "p99 markers");
    }
}
