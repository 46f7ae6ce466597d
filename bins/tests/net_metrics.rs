//! `--metrics ADDR` through the real processes: a plain HTTP GET scrapes
//! each of them, a strict OpenMetrics text parser (below) accepts every
//! line, and the figures match the traffic that ran.

mod net_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net_support::{assert_clean, loadgen, loadgen_bin, RawClient, Server};

const GRACE: Duration = Duration::from_secs(10);

/// One sample: its name with labels (`requests_total{kind="ping"}`) and
/// value.
type Samples = BTreeMap<String, f64>;

/// `GET /metrics` over a std socket; returns the status line, the
/// `Content-Type` and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut sock = TcpStream::connect(addr).expect("connect to the metrics port");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(sock, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).expect("read the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let mut content_type = String::new();
    let mut length = None;
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
/// that belong to the family's type, labels `k="v"`, numeric values, and
/// `# EOF` as the last line. Panics, naming the line, on anything else.
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.last(), Some(&""), "the text ends with a newline");
    let lines = &lines[..lines.len() - 1];
    assert_eq!(lines.last(), Some(&"# EOF"), "the last line is # EOF");
    for (n, line) in lines[..lines.len() - 1].iter().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_name(name), "{}", at());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
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
        assert!(
            suffixes.iter().any(|s| name == format!("{family}{s}")),
            "{}: sample of another family",
            at()
        );
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
            samples.insert(series.to_string(), value).is_none(),
            "{}: sample twice",
            at()
        );
    }
    samples
}

fn metrics_addr(server: &Server) -> SocketAddr {
    server
        .before_ready
        .iter()
        .find_map(|l| l.strip_prefix("metrics "))
        .expect("a `metrics <addr>` line before `ready`")
        .parse()
        .expect("metrics <addr>")
}

/// Scrapes until `want` holds (workers publish every 100 ms).
fn scrape_until(addr: SocketAddr, want: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, content_type, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let samples = parse(&body);
        if want(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "never held:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gateway_and_exchange_metrics_count_the_traffic_that_ran() {
    let exchange = Server::exchange(&["--metrics", "127.0.0.1:0"]);
    let gateway = Server::gateway(exchange.addr, &["--metrics", "127.0.0.1:0"]);
    let (gw_metrics, ex_metrics) = (metrics_addr(&gateway), metrics_addr(&exchange));
    let summary = loadgen(
        gateway.addr,
        &["--connections", "4", "--count", "2000", "--warmup", "0"],
    );
    assert_clean(&summary);
    let g = scrape_until(gw_metrics, |s| {
        s.get("fep_gateway_answers_total{kind=\"pong\"}") == Some(&2000.0)
    });
    assert_eq!(g["fep_gateway_requests_total{kind=\"ping\"}"], 2000.0);
    assert_eq!(g["fep_gateway_forwarded_total"], 2000.0);
    assert_eq!(g["fep_gateway_answers_total{kind=\"reject\"}"], 0.0);
    assert_eq!(g["fep_gateway_upstreams_up"], 1.0);
    assert_eq!(g["fep_gateway_upstream_connects_total"], 1.0);
    assert_eq!(g["fep_gateway_inflight"], 0.0);
    assert_eq!(g["fep_gateway_client_connections_opened_total"], 4.0);
    assert_eq!(g["fep_gateway_rejects_total{code=\"TIMEOUT\"}"], 0.0);
    // Every ping went through each leg once; the exchange's leg crosses
    // two sockets and a process, so it cannot sum to 0.
    for leg in ["request", "upstream", "answer"] {
        assert_eq!(leg_count(&g, leg), (2000.0, 2000.0), "leg {leg}");
    }
    assert!(g["fep_gateway_latency_seconds_sum{leg=\"upstream\"}"] > 0.0);
    let x = scrape_until(ex_metrics, |s| {
        s.get("fep_exchange_pongs_total") == Some(&2000.0)
    });
    assert_eq!(x["fep_exchange_open_orders"], 0.0);
    // A client with no upstream gets a Reject counted by its code.
    drop(exchange);
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    std::thread::sleep(Duration::from_millis(200));
    client.send(&net_support::ping(1, b""));
    assert!(matches!(
        client.next(),
        Some(net_support::Frame::Reject { .. })
    ));
    scrape_until(gw_metrics, |s| {
        s.get("fep_gateway_rejects_total{code=\"UPSTREAM_UNAVAILABLE\"}") == Some(&1.0)
            && s.get("fep_gateway_upstreams_up") == Some(&0.0)
    });
    // Anything but GET /metrics is refused, and the endpoint stays up.
    assert!(get(gw_metrics, "/other").0.starts_with("HTTP/1.1 404"));
    assert!(get(gw_metrics, "/metrics").0.starts_with("HTTP/1.1 200"));
    assert!(gateway.terminate(GRACE).success());
}

/// A latency leg's bucket `le` (cumulative).
fn leg_bucket(s: &Samples, leg: &str, le: &str) -> f64 {
    let labels = [format!("leg=\"{leg}\""), format!("le=\"{le}\"")];
    let found: Vec<f64> = s
        .iter()
        .filter(|(k, _)| k.starts_with("fep_gateway_latency_seconds_bucket{"))
        .filter(|(k, _)| labels.iter().all(|l| k.contains(l.as_str())))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "one bucket le={le} of leg {leg}");
    found[0]
}

/// A latency leg's `_count` and its `+Inf` bucket; its mean is checked to
/// be below a second (a time taken from a wrong field would be days).
fn leg_count(s: &Samples, leg: &str) -> (f64, f64) {
    let count = s[&format!("fep_gateway_latency_seconds_count{{leg=\"{leg}\"}}")];
    assert!(
        leg_sum(s, leg) < count,
        "leg {leg}: mean of a second or more"
    );
    (count, leg_bucket(s, leg, "+Inf"))
}

/// The sum of a latency leg, in seconds.
fn leg_sum(s: &Samples, leg: &str) -> f64 {
    s[&format!("fep_gateway_latency_seconds_sum{{leg=\"{leg}\"}}")]
}

#[test]
fn handoff_routing_shows_its_crossings_in_the_request_and_answer_legs() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(
        exchange.addr,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--routing",
            "handoff",
        ],
    );
    let summary = loadgen(
        gateway.addr,
        &["--connections", "4", "--count", "1000", "--warmup", "0"],
    );
    assert_clean(&summary);
    let g = scrape_until(metrics_addr(&gateway), |s| {
        s.get("fep_gateway_answers_total{kind=\"pong\"}") == Some(&1000.0)
    });
    for leg in ["request", "upstream", "answer"] {
        assert_eq!(leg_count(&g, leg), (1000.0, 1000.0), "leg {leg}");
    }
    // Pings of clients routed to the other worker cross and come back:
    // those legs take two clock reads on two threads, never one.
    assert!(leg_sum(&g, "request") > 0.0, "request leg sums to 0");
    assert!(leg_sum(&g, "answer") > 0.0, "answer leg sums to 0");
    assert!(gateway.terminate(GRACE).success());
}

#[test]
fn loadgen_exports_its_rate_and_latency_while_it_runs() {
    let exchange = Server::exchange(&[]);
    let mut child = Command::new(loadgen_bin())
        .args(["--connect", &exchange.addr.to_string()])
        .args([
            "--metrics",
            "127.0.0.1:0",
            "--rate",
            "2000",
            "--count",
            "6000",
        ])
        .args(["--warmup", "0", "--interval", "100ms"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start loadgen");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("loadgen prints its metrics line");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("metrics ")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .parse()
        .unwrap();
    let s = scrape_until(addr, |s| {
        s.get("loadgen_answers_total{kind=\"pong\"}")
            .is_some_and(|&n| n >= 1000.0)
    });
    assert!(s["loadgen_requests_total"] >= s["loadgen_answers_total{kind=\"pong\"}"]);
    let target = s["loadgen_target_rate_per_second"];
    assert!((1500.0..=2500.0).contains(&target), "target {target}");
    let rate = s["loadgen_rate_per_second"];
    assert!(rate > 0.0, "rate {rate}");
    assert_eq!(s["loadgen_spike_active"], 0.0);
    let count = s["loadgen_rtt_seconds_count"];
    assert!(count >= 1000.0, "{count}");
    assert_eq!(s["loadgen_rtt_seconds_bucket{le=\"+Inf\"}"], count);
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    assert!(child.wait().expect("loadgen ends").success());
}
