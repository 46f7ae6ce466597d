//! The percentile plot: latency against `1/(1-percentile)` on a log axis,
//! the way HdrHistogram's plotter draws `.hgrm` files, as an SVG.

use std::path::Path;

use plotters::prelude::*;

use super::hgrm::Hgrm;

/// Where the x axis ends: the 99.999th percentile.
const INVERSE_TAIL_MAX: f64 = 100_000.0;

/// Colours for the series in order (rtt, then hop1 … hop4).
const PALETTE: [RGBColor; 5] = [
    RGBColor(68, 1, 84),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Why the plot could not be drawn.
#[derive(Debug)]
pub struct PlotError(String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

impl PlotError {
    /// An error saying `why`.
    pub(crate) fn new(why: String) -> PlotError {
        PlotError(why)
    }
}

/// The points of one `.hgrm` series: `(1/(1-p), value)`. The last row
/// (p = 1, an infinite x) is drawn at the end of the axis, or one decade
/// past the previous row, whichever is nearer.
fn points(hgrm: &Hgrm) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(hgrm.rows.len());
    for row in &hgrm.rows {
        let x = if row.quantile < 1.0 {
            1.0 / (1.0 - row.quantile)
        } else {
            let last_x = out.last().map_or(1.0, |p| p.0);
            (last_x * 10.0).min(INVERSE_TAIL_MAX)
        };
        out.push((x.min(INVERSE_TAIL_MAX), row.value));
    }
    out
}

/// The label of an x position: `1/(1-p)` shown as the percentile.
fn percentile_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = (x.log10().round().max(2.0) as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

/// Draws `series` (name, distribution in µs) into an SVG file at `path`.
/// Empty distributions are left out; with none at all the chart is empty.
pub fn plot_percentiles(
    path: &Path,
    title: &str,
    series: &[(&str, &Hgrm)],
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError(e.to_string());
    let drawn: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .filter(|(_, h)| !h.rows.is_empty())
        .map(|(name, h)| (*name, points(h)))
        .collect();
    let y_max = drawn
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max)
        * 1.05;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(48)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0..INVERSE_TAIL_MAX).log_scale(), 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_label_formatter(&percentile_label)
        .draw()
        .map_err(|e| err(&e))?;
    for (index, (name, pts)) in drawn.into_iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hgrm::{read_hgrm, write_hgrm};
    use hdrhistogram::Histogram;

    fn hgrm_of(values_ns: impl IntoIterator<Item = u64>) -> Hgrm {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in values_ns {
            hist.record(v).unwrap();
        }
        let mut text = Vec::new();
        write_hgrm(&hist, &mut text).unwrap();
        read_hgrm(text.as_slice()).unwrap()
    }

    #[test]
    fn plot_is_an_svg_with_one_line_per_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let rtt = hgrm_of((0..5_000u64).map(|i| 20_000 + i * 13 % 9_000));
        let hop = hgrm_of((0..5_000u64).map(|i| 5_000 + i * 7 % 2_000));
        let empty = hgrm_of([]);
        plot_percentiles(
            &path,
            "s1",
            &[("rtt", &rtt), ("hop1", &hop), ("hop2", &empty)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        // Each drawn series is one line plus its legend mark, in its colour.
        assert_eq!(
            svg.matches(r##"<polyline fill="none" opacity="1" stroke="#440154""##)
                .count(),
            2
        );
        assert_eq!(
            svg.matches(r##"<polyline fill="none" opacity="1" stroke="#1F77B4""##)
                .count(),
            2
        );
        assert_eq!(
            svg.matches(r##"stroke="#FF7F0E""##).count(),
            0,
            "the empty hop2 is left out"
        );
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(texts.contains(&"rtt") && texts.contains(&"hop1") && !texts.contains(&"hop2"));
        assert!(texts.contains(&"99.9%"), "tail labels are percentiles");
    }

    #[test]
    fn percentile_labels_read_as_percentiles() {
        assert_eq!(percentile_label(&1.0), "0%");
        assert_eq!(percentile_label(&10.0), "90%");
        assert_eq!(percentile_label(&100.0), "99%");
        assert_eq!(percentile_label(&1000.0), "99.9%");
        assert_eq!(percentile_label(&100_000.0), "99.999%");
    }
}
