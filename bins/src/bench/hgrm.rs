//! HdrHistogram's percentile-distribution text format (`.hgrm`).
//!
//! The `hdrhistogram` crate has no printer for it, so this module writes the
//! same text as Java's `Histogram::outputPercentileDistribution` (the format
//! HdrHistogram's plotter reads) and reads it back for tests and summaries.
//!
//! Layout, with values in the output unit (microseconds for our nanosecond
//! histograms, HdrHistogram's `outputValueUnitScalingRatio` = 1000):
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!       12.031 0.000000000000          1           1.00
//!       ...
//!      410.111 1.000000000000      10000
//! #[Mean    =       32.012, StdDeviation   =        4.171]
//! #[Max     =      410.111, Total count    =        10000]
//! #[Buckets =           22, SubBuckets     =         2048]
//! ```

use std::fmt;
use std::io::{self, BufRead, Write};

use hdrhistogram::Histogram;

/// HdrHistogram's default number of quantile ticks per half distance to 100%.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Nanoseconds per output unit: our histograms hold nanoseconds, the files
/// show microseconds.
pub const NANOS_PER_MICRO: f64 = 1_000.0;

/// Writes `hist` (nanoseconds) as an `.hgrm` distribution in microseconds,
/// with HdrHistogram's default five ticks per half distance.
///
/// This is the function `loadgen --out DIR` uses for `rtt.hgrm` and
/// `hop1.hgrm` … `hop4.hgrm`.
pub fn write_hgrm<W: Write>(hist: &Histogram<u64>, out: W) -> io::Result<()> {
    write_hgrm_with(hist, out, TICKS_PER_HALF_DISTANCE, NANOS_PER_MICRO)
}

/// Writes `hist` as an `.hgrm` distribution, dividing every value by
/// `unit_scaling_ratio` (HdrHistogram's `outputValueUnitScalingRatio`).
///
/// An empty histogram writes the header and a footer with zero counts, as
/// the Java implementation does, so a reader never meets a missing file.
pub fn write_hgrm_with<W: Write>(
    hist: &Histogram<u64>,
    mut out: W,
    ticks_per_half_distance: u32,
    unit_scaling_ratio: f64,
) -> io::Result<()> {
    assert!(
        ticks_per_half_distance > 0,
        "ticks_per_half_distance must be > 0"
    );
    assert!(unit_scaling_ratio > 0.0, "unit_scaling_ratio must be > 0");
    let digits = usize::from(hist.sigfig());
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !hist.is_empty() {
        let mut total_count: u64 = 0;
        for step in hist.iter_quantiles(ticks_per_half_distance) {
            total_count += step.count_since_last_iteration();
            let value = step.value_iterated_to() as f64 / unit_scaling_ratio;
            let quantile = step.quantile_iterated_to();
            if quantile < 1.0 {
                writeln!(
                    out,
                    "{value:>12.digits$} {quantile:>2.12} {total_count:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                )?;
            } else {
                // Java leaves the infinite 1/(1-p) column off the last row.
                writeln!(
                    out,
                    "{value:>12.digits$} {quantile:>2.12} {total_count:>10}"
                )?;
            }
        }
    }
    let (mean, stdev, max) = if hist.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            hist.mean() / unit_scaling_ratio,
            hist.stdev() / unit_scaling_ratio,
            hist.max() as f64 / unit_scaling_ratio,
        )
    };
    writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        hist.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_bucket_count(hist.sigfig())
    )?;
    out.flush()
}

/// The histogram's sub-bucket count, which the crate keeps private: the
/// power of two at or above `2 × 10^sigfig` (the same rule as its constructor).
fn sub_bucket_count(sigfig: u8) -> u32 {
    let largest = 2 * 10_u32.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// One row of an `.hgrm` distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmRow {
    /// The value at this quantile, in the file's unit (microseconds here).
    pub value: f64,
    /// The quantile iterated to, in `[0, 1]`.
    pub quantile: f64,
    /// Samples at or below `value`.
    pub total_count: u64,
}

/// An `.hgrm` distribution read back from text.
#[derive(Debug, Clone, PartialEq)]
pub struct Hgrm {
    /// The rows in file order (rising quantile).
    pub rows: Vec<HgrmRow>,
    /// The footer's mean.
    pub mean: f64,
    /// The footer's standard deviation.
    pub stdev: f64,
    /// The footer's maximum.
    pub max: f64,
    /// The footer's total count.
    pub total_count: u64,
    /// The footer's bucket count.
    pub buckets: u32,
    /// The footer's sub-bucket count.
    pub sub_buckets: u32,
}

impl Hgrm {
    /// The value of the first row at or above quantile `q`, the way one reads
    /// a percentile off the table; `None` for an empty distribution.
    pub fn value_at_quantile(&self, q: f64) -> Option<f64> {
        self.rows
            .iter()
            .find(|row| row.quantile >= q)
            .or(self.rows.last())
            .map(|row| row.value)
    }
}

/// Why an `.hgrm` text could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum HgrmError {
    /// Reading the input failed.
    Io(io::Error),
    /// A line is neither a header, a row nor a footer line.
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// One of the three footer lines is absent.
    MissingFooter {
        /// Which footer field was not found.
        field: &'static str,
    },
}

impl fmt::Display for HgrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HgrmError::Io(e) => write!(f, "reading .hgrm: {e}"),
            HgrmError::BadLine { line, text } => {
                write!(f, ".hgrm line {line}: cannot parse {text:?}")
            }
            HgrmError::MissingFooter { field } => write!(f, ".hgrm footer has no {field}"),
        }
    }
}

impl std::error::Error for HgrmError {}

impl From<io::Error> for HgrmError {
    fn from(e: io::Error) -> Self {
        HgrmError::Io(e)
    }
}

/// Reads an `.hgrm` distribution (as written by [`write_hgrm`] or by
/// HdrHistogram's Java implementation).
pub fn read_hgrm<R: BufRead>(input: R) -> Result<Hgrm, HgrmError> {
    let mut rows = Vec::new();
    let mut mean_stdev = None;
    let mut max_total = None;
    let mut buckets = None;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let text = line.trim();
        let bad = || HgrmError::BadLine {
            line: index + 1,
            text: line.clone(),
        };
        if text.is_empty() || text.starts_with("Value") {
            continue;
        }
        if let Some(footer) = text.strip_prefix("#[").and_then(|t| t.strip_suffix(']')) {
            let (a, b) = footer_pair(footer).ok_or_else(bad)?;
            match footer.split('=').next().map(str::trim) {
                Some("Mean") => mean_stdev = Some((parse(a, bad)?, parse(b, bad)?)),
                Some("Max") => max_total = Some((parse(a, bad)?, parse(b, bad)?)),
                Some("Buckets") => buckets = Some((parse(a, bad)?, parse(b, bad)?)),
                _ => return Err(bad()),
            }
            continue;
        }
        let mut fields = text.split_whitespace();
        let (Some(value), Some(quantile), Some(total_count)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        rows.push(HgrmRow {
            value: parse(value, bad)?,
            quantile: parse(quantile, bad)?,
            total_count: parse(total_count, bad)?,
        });
    }
    let (mean, stdev) = mean_stdev.ok_or(HgrmError::MissingFooter { field: "Mean" })?;
    let (max, total_count) = max_total.ok_or(HgrmError::MissingFooter { field: "Max" })?;
    let (buckets, sub_buckets) = buckets.ok_or(HgrmError::MissingFooter { field: "Buckets" })?;
    Ok(Hgrm {
        rows,
        mean,
        stdev,
        max,
        total_count,
        buckets,
        sub_buckets,
    })
}

/// The two values of a footer line `Name = a, Other = b`.
fn footer_pair(footer: &str) -> Option<(&str, &str)> {
    let (first, second) = footer.split_once(',')?;
    let a = first.split_once('=')?.1.trim();
    let b = second.split_once('=')?.1.trim();
    Some((a, b))
}

fn parse<T: std::str::FromStr>(text: &str, bad: impl Fn() -> HgrmError) -> Result<T, HgrmError> {
    text.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values_ns: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in values_ns {
            hist.record(v).unwrap();
        }
        hist
    }

    fn render(hist: &Histogram<u64>) -> String {
        let mut out = Vec::new();
        write_hgrm(hist, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn written_percentiles_read_back_match_the_histogram() {
        // A skewed latency-like distribution: a body around 30 µs and a tail.
        let hist =
            histogram_of((0..20_000u64).map(|i| 25_000 + (i * 7919) % 10_000 + (i % 97) * 3_000));
        let read = read_hgrm(render(&hist).as_bytes()).unwrap();
        assert_eq!(read.total_count, hist.len());
        assert_eq!(read.rows.last().unwrap().total_count, hist.len());
        assert!((read.max - hist.max() as f64 / 1e3).abs() < 1e-3);
        assert!((read.mean - hist.mean() / 1e3).abs() < 1e-3);
        assert!((read.stdev - hist.stdev() / 1e3).abs() < 1e-3);
        assert_eq!(read.sub_buckets, 2048);
        assert_eq!(read.buckets, u32::from(hist.buckets()));
        for row in &read.rows {
            let expected = hist.value_at_quantile(row.quantile) as f64 / 1e3;
            // Equal up to the printed precision, or one bucket apart where the
            // iterator's running quantile and value_at_quantile round apart.
            let bucket_us =
                hist.equivalent_range(hist.value_at_quantile(row.quantile)) as f64 / 1e3;
            assert!(
                (row.value - expected).abs() <= bucket_us + 1e-3,
                "q={} file={} hist={}",
                row.quantile,
                row.value,
                expected
            );
        }
        // The ticks land exactly on p50 and p90.
        for q in [0.5, 0.9] {
            let want = hist.value_at_quantile(q) as f64 / 1e3;
            assert!(
                (read.value_at_quantile(q).unwrap() - want).abs() < 1e-3,
                "q={q}"
            );
        }
    }

    #[test]
    fn rows_rise_and_the_last_row_is_the_whole_count() {
        let hist = histogram_of([10_000, 20_000, 30_000, 1_000_000]);
        let read = read_hgrm(render(&hist).as_bytes()).unwrap();
        assert!(read
            .rows
            .windows(2)
            .all(|w| w[0].quantile <= w[1].quantile && w[0].value <= w[1].value));
        let last = read.rows.last().unwrap();
        assert_eq!(last.quantile, 1.0);
        assert_eq!(last.total_count, 4);
        assert!((last.value - 1000.447).abs() < 1.0, "last = {}", last.value);
    }

    #[test]
    fn layout_matches_hdrhistogram_java() {
        let hist = histogram_of([1_000, 2_000]);
        let text = render(&hist);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        assert_eq!(
            lines.next(),
            Some("       1.000 0.000000000000          1           1.00")
        );
        assert!(
            text.contains("       2.000 1.000000000000          2\n"),
            "{text}"
        );
        assert!(
            text.contains("#[Mean    =        1.500, StdDeviation   =        0.500]\n"),
            "{text}"
        );
        assert!(
            text.contains("#[Max     =        2.000, Total count    =            2]\n"),
            "{text}"
        );
        assert!(
            text.contains(", SubBuckets     =         2048]\n"),
            "{text}"
        );
    }

    #[test]
    fn empty_histogram_writes_a_readable_file() {
        let hist = histogram_of([]);
        let read = read_hgrm(render(&hist).as_bytes()).unwrap();
        assert!(read.rows.is_empty());
        assert_eq!(read.total_count, 0);
        assert_eq!(read.value_at_quantile(0.5), None);
    }

    #[test]
    fn garbage_is_a_typed_error_with_its_line() {
        let err = read_hgrm("Value Percentile\n\n 1.0 oops 3\n".as_bytes()).unwrap_err();
        assert!(matches!(err, HgrmError::BadLine { line: 3, .. }), "{err}");
        let err = read_hgrm("       1.000 0.5 1 2.00\n".as_bytes()).unwrap_err();
        assert!(
            matches!(err, HgrmError::MissingFooter { field: "Mean" }),
            "{err}"
        );
    }
}
