//! Scraping `--metrics ADDR` in the end-to-end tests: a plain HTTP/1.1 GET
//! over a std socket and a strict OpenMetrics text parser, shared by every
//! test that reads the endpoint.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::Server;

/// One histogram family as scraped: cumulative buckets by upper bound,
/// count and sum.
#[derive(Debug, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub count: Option<f64>,
    pub sum: Option<f64>,
}

/// What a scrape held: every sample by series (its name with labels,
/// `requests_total{kind="ping"}`), and the histograms by family.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: BTreeMap<String, f64>,
    pub histograms: BTreeMap<String, Histogram>,
}

impl std::ops::Index<&str> for Scrape {
    type Output = f64;
    fn index(&self, series: &str) -> &f64 {
        self.samples
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series}"))
    }
}

/// `GET path` (with `Connection: close` answered to the end): the status
/// line, the `Content-Type` and the body, whose length is checked against
/// `Content-Length`.
pub fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut sock = TcpStream::connect(addr).expect("connect to the metrics port");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).expect("read the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let (mut content_type, mut length) = (String::new(), None);
    for line in lines {
        let (k, v) = line.split_once(':').expect("a header line");
        match k.to_ascii_lowercase().as_str() {
            "content-type" => content_type = v.trim().to_string(),
            "content-length" => length = v.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    assert_eq!(length, Some(body.len()), "Content-Length of {path}");
    (status, content_type, body.to_string())
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict parser of the OpenMetrics text this project exports: `# HELP`
/// and `# TYPE` before a family's samples, each family once, sample names
/// that belong to the family's type, labels `k="v"`, numeric values, each
/// series once, `# EOF` as the last line; a histogram's buckets rise in
/// bound and in count and end with `+Inf`, whose count is the `_count`,
/// and it has a `_sum`. Panics, naming the line, on anything else.
pub fn parse(text: &str) -> Scrape {
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.last(), Some(&""), "the text ends with a newline");
    let lines = &lines[..lines.len() - 1];
    assert_eq!(lines.last(), Some(&"# EOF"), "the last line is # EOF");
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut scrape = Scrape::default();
    let mut current: Option<(String, String)> = None;
    for (n, line) in lines[..lines.len() - 1].iter().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_name(name), "{}", at());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert!(is_name(name), "{}", at());
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{}",
                at()
            );
            assert!(
                families.insert(name.into(), kind.into()).is_none(),
                "{}: family declared twice",
                at()
            );
            current = Some((name.into(), kind.into()));
            continue;
        }
        assert!(!line.starts_with('#'), "{}: unknown comment", at());
        let (family, kind) = current.clone().unwrap_or_else(|| panic!("{}", at()));
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{}: value", at())),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            _ => &["_bucket", "_count", "_sum"],
        };
        let suffix = suffixes
            .iter()
            .find(|s| name == format!("{family}{s}"))
            .unwrap_or_else(|| panic!("{}: sample of another family", at()));
        if !labels.is_empty() {
            for pair in labels.split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{}", at()));
                assert!(is_name(k), "{}: label name", at());
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{}: label value",
                    at()
                );
            }
        }
        assert!(
            scrape.samples.insert(series.to_string(), value).is_none(),
            "{}: sample twice",
            at()
        );
        if kind != "histogram" {
            continue;
        }
        // One histogram per family and label set other than `le`.
        let others: Vec<&str> = labels
            .split(',')
            .filter(|p| !p.is_empty() && !p.starts_with("le="))
            .collect();
        let key = if others.is_empty() {
            family.clone()
        } else {
            format!("{family}{{{}}}", others.join(","))
        };
        let h = scrape.histograms.entry(key).or_default();
        match *suffix {
            "_bucket" => {
                let le = labels
                    .split_once("le=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(le, _)| le)
                    .unwrap_or_else(|| panic!("{}: a bucket without le", at()));
                let upper = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or_else(|_| panic!("{}: le", at()))
                };
                if let Some(&(prev_upper, prev_count)) = h.buckets.last() {
                    assert!(upper > prev_upper, "{}: bounds rise", at());
                    assert!(value >= prev_count, "{}: cumulative counts", at());
                }
                h.buckets.push((upper, value));
            }
            "_count" => h.count = Some(value),
            _ => h.sum = Some(value),
        }
    }
    for (name, h) in &scrape.histograms {
        let last = h
            .buckets
            .last()
            .unwrap_or_else(|| panic!("{name}: no buckets"));
        assert_eq!(last.0, f64::INFINITY, "{name}: the last bucket is +Inf");
        assert_eq!(Some(last.1), h.count, "{name}: +Inf holds every count");
        assert!(h.sum.is_some(), "{name}: a _sum");
    }
    scrape
}

/// The address a server printed in its `metrics <addr>` line.
pub fn metrics_addr(server: &Server) -> SocketAddr {
    server
        .before_ready
        .iter()
        .find_map(|l| l.strip_prefix("metrics "))
        .expect("a `metrics <addr>` line before `ready`")
        .parse()
        .expect("metrics <addr>")
}

/// Scrapes `addr` until `want` holds (workers and the WAL thread publish
/// as they go), for at most 10 s.
pub fn scrape_until(addr: SocketAddr, want: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, content_type, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let scrape = parse(&body);
        if want(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "never held:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
