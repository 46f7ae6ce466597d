//! `--metrics ADDR` through the real processes: a plain HTTP GET scrapes
//! each of them, a strict OpenMetrics text parser (`net_support::metrics`)
//! accepts every line, and the figures match the traffic that ran.

mod net_support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use net_support::metrics::{get, metrics_addr, scrape_until, Scrape};
use net_support::{assert_clean, loadgen, loadgen_bin, RawClient, Server};

const GRACE: Duration = Duration::from_secs(10);

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
        s.samples.get("fep_gateway_answers_total{kind=\"pong\"}") == Some(&2000.0)
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
        s.samples.get("fep_exchange_pongs_total") == Some(&2000.0)
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
        s.samples
            .get("fep_gateway_rejects_total{code=\"UPSTREAM_UNAVAILABLE\"}")
            == Some(&1.0)
            && s.samples.get("fep_gateway_upstreams_up") == Some(&0.0)
    });
    // Anything but GET /metrics is refused, and the endpoint stays up.
    assert!(get(gw_metrics, "/other").0.starts_with("HTTP/1.1 404"));
    assert!(get(gw_metrics, "/metrics").0.starts_with("HTTP/1.1 200"));
    assert!(gateway.terminate(GRACE).success());
}

/// A latency leg's bucket `le` (cumulative).
fn leg_bucket(s: &Scrape, leg: &str, le: &str) -> f64 {
    let labels = [format!("leg=\"{leg}\""), format!("le=\"{le}\"")];
    let found: Vec<f64> = s
        .samples
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
fn leg_count(s: &Scrape, leg: &str) -> (f64, f64) {
    let count = s[format!("fep_gateway_latency_seconds_count{{leg=\"{leg}\"}}").as_str()];
    assert!(
        leg_sum(s, leg) < count,
        "leg {leg}: mean of a second or more"
    );
    (count, leg_bucket(s, leg, "+Inf"))
}

/// The sum of a latency leg, in seconds.
fn leg_sum(s: &Scrape, leg: &str) -> f64 {
    s[format!("fep_gateway_latency_seconds_sum{{leg=\"{leg}\"}}").as_str()]
}

/// `count` pings over `connections` through a gateway started with
/// `gateway_args` (and metrics on); its scrape once every pong is counted.
fn pings_through(gateway_args: &[&str], connections: u32, count: u32) -> (Server, Server, Scrape) {
    let exchange = Server::exchange(&[]);
    let args = [&["--metrics", "127.0.0.1:0"][..], gateway_args].concat();
    let gateway = Server::gateway(exchange.addr, &args);
    let (connections, count) = (connections.to_string(), count.to_string());
    let summary = loadgen(
        gateway.addr,
        &[
            "--connections",
            &connections,
            "--count",
            &count,
            "--warmup",
            "0",
        ],
    );
    assert_clean(&summary);
    let pongs = f64::from(count.parse::<u32>().unwrap());
    let g = scrape_until(metrics_addr(&gateway), |s| {
        s.samples.get("fep_gateway_answers_total{kind=\"pong\"}") == Some(&pongs)
    });
    (exchange, gateway, g)
}

#[test]
fn handoff_routing_shows_its_crossings_in_the_request_and_answer_legs() {
    let (exchange, gateway, g) =
        pings_through(&["--workers", "2", "--routing", "handoff"], 4, 1000);
    for leg in ["request", "upstream", "answer"] {
        assert_eq!(leg_count(&g, leg), (1000.0, 1000.0), "leg {leg}");
    }
    // Pings of clients routed to the other worker cross and come back:
    // those legs take two clock reads on two threads, never one.
    assert!(leg_sum(&g, "request") > 0.0, "request leg sums to 0");
    assert!(leg_sum(&g, "answer") > 0.0, "answer leg sums to 0");
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
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
        s.samples
            .get("loadgen_answers_total{kind=\"pong\"}")
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

#[test]
fn a_gateway_with_several_upstream_connections_counts_each_of_them() {
    let (exchange, gateway, g) =
        pings_through(&["--workers", "2", "--upstream-connections", "3"], 6, 600);
    // Ready means every upstream connection of every worker hand-shaked.
    assert_eq!(g["fep_gateway_upstreams_up"], 6.0);
    assert_eq!(g["fep_gateway_upstream_connects_total"], 6.0);
    assert_eq!(g["fep_gateway_upstream_losses_total"], 0.0);
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}
