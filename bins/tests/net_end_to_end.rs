//! The three real processes, end to end on loopback: scenarios, an exchange
//! that dies and comes back, a reader that stalls, a gateway stopped by
//! SIGTERM mid-run, and writes that must fall back to WRITABLE.

mod net_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fep_bins::bench::hgrm::read_hgrm;
use fep_core::ErrorCode;
use net_support::{
    assert_clean, assert_hops_sum_to_rtt, finish_loadgen, loadgen, ping, push_ping, spawn_loadgen,
    Frame, RawClient, Server,
};
use rustix::process::Signal;

const GRACE: Duration = Duration::from_secs(10);

fn scenario(workers: &str, routing: &str) {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &["--workers", workers, "--routing", routing]);
    let summary = loadgen(
        gateway.addr,
        &["--connections", "10", "--warmup", "500", "--count", "5000"],
    );
    assert_clean(&summary);
    assert_eq!(summary.count, 5000);
    assert_eq!(summary.extra["pongs"], 5500);
    assert_hops_sum_to_rtt(&summary);
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn s1_one_worker_answers_every_ping_in_order() {
    scenario("1", "local");
}

#[test]
fn s2_two_workers_answer_every_ping_in_order() {
    scenario("2", "local");
}

#[test]
fn s3_handoff_across_workers_answers_every_ping_in_order() {
    scenario("2", "handoff");
}

#[test]
fn deferred_writes_serve_the_same_pings() {
    let exchange = Server::exchange(&["--write-mode", "deferred"]);
    let gateway = Server::gateway(exchange.addr, &["--write-mode", "deferred"]);
    let summary = loadgen(gateway.addr, &["--connections", "4", "--count", "2000"]);
    assert_clean(&summary);
    assert_hops_sum_to_rtt(&summary);
}

#[test]
fn open_loop_reports_how_late_loadgen_sent_and_closed_loop_does_not() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &[]);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let args = ["--connections", "2", "--warmup", "100", "--count", "1000"];
    let open = loadgen(
        gateway.addr,
        &[&args[..], &["--rate", "5000", "--out", dir]].concat(),
    );
    assert_clean(&open);
    let lag = open.send_lag.expect("send_lag in open loop");
    // Part of the rtt, which counts from the intended send time.
    assert!(lag.p50_us <= open.rtt.p50_us, "{lag:?} vs {:?}", open.rtt);
    assert!(lag.max_us <= open.rtt.max_us, "{lag:?} vs {:?}", open.rtt);
    let file = std::fs::File::open(out.path().join("send_lag.hgrm")).unwrap();
    let hgrm = read_hgrm(std::io::BufReader::new(file)).unwrap();
    assert_eq!(hgrm.total_count, 1000, "one lag per measured ping");

    let closed = loadgen(gateway.addr, &args);
    assert_clean(&closed);
    assert!(closed.send_lag.is_none(), "{:?}", closed.send_lag);
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn an_exchange_killed_mid_run_means_rejects_then_recovery() {
    let exchange = Server::exchange(&[]);
    let addr = exchange.addr;
    let gateway = Server::gateway(addr, &[]);
    // Open loop, so the outage does not speed the run up: 5 s of pings,
    // room for a slow reconnect on a loaded machine and pongs after it.
    let run = spawn_loadgen(
        gateway.addr,
        &[
            "--connections",
            "4",
            "--rate",
            "4000",
            "--warmup",
            "0",
            "--count",
            "20000",
            "--interval",
            "100ms",
        ],
    );
    std::thread::sleep(Duration::from_millis(600));
    let mut exchange = exchange;
    exchange.signal(Signal::KILL);
    exchange.wait(GRACE);
    std::thread::sleep(Duration::from_millis(300));
    let addr = addr.to_string();
    let exchange = Server::start(
        "mock_exchange",
        net_support::exchange_bin(),
        &["--listen", &addr],
    );
    let summary = finish_loadgen(run);
    let extra = |k: &str| summary.extra[k].as_u64().unwrap();
    // Every ping accounted for: answered by a pong or a reject, none lost.
    assert_eq!(extra("sent"), 20_000);
    assert_eq!(extra("pongs") + summary.rejects, 20_000, "{summary:?}");
    assert_eq!(
        (summary.lost, summary.errors, summary.window_violations),
        (0, 0, 0)
    );
    assert!(summary.rejects > 0, "the outage was seen");
    // Rejects while the exchange was away, then pongs again to the end.
    let intervals = summary.extra["intervals"].as_array().unwrap();
    let errors: Vec<u64> = intervals
        .iter()
        .map(|iv| iv["errors"].as_u64().unwrap())
        .collect();
    let first_bad = errors
        .iter()
        .position(|&e| e > 0)
        .expect("an interval with rejects");
    let last_bad = errors.iter().rposition(|&e| e > 0).unwrap();
    assert!(first_bad >= 3, "pongs flowed before the kill: {errors:?}");
    assert!(
        last_bad + 3 < errors.len(),
        "pongs flowed after the restart: {errors:?}"
    );
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn a_client_that_stops_reading_is_cut_off_while_others_are_served() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(
        exchange.addr,
        &["--sndbuf", "4096", "--output-backlog-max", "262144"],
    );
    let mut stalled = RawClient::connect(gateway.addr);
    stalled.handshake("");
    let pad = vec![0x5a; 1024];
    // 2 MiB of pings, paced so the upstream keeps up; no reads meanwhile.
    let mut bytes = Vec::new();
    for burst in 0..64u64 {
        bytes.clear();
        for i in 1..=32 {
            push_ping(&mut bytes, burst * 32 + i, &pad);
        }
        stalled.send(&bytes);
        std::thread::sleep(Duration::from_millis(1));
    }
    let served = loadgen(gateway.addr, &["--connections", "2", "--count", "2000"]);
    assert_clean(&served);
    let frames = stalled.drain();
    let pongs = frames
        .iter()
        .filter(|f| matches!(f, Frame::Pong { .. }))
        .count();
    assert!(pongs > 0 && pongs < 2048, "{pongs} pongs before the cut");
    match frames.last() {
        Some(Frame::Error { code, .. }) => assert_eq!(*code, ErrorCode::Overloaded),
        other => panic!("expected Error{{OVERLOADED}} last, got {other:?}"),
    }
    assert!(gateway.terminate(GRACE).success());
}

#[test]
fn sigterm_mid_run_answers_every_ping_in_flight_and_exits_0() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &["--workers", "2", "--routing", "handoff"]);
    let background = spawn_loadgen(
        gateway.addr,
        &[
            "--connections",
            "4",
            "--inflight",
            "8",
            "--warmup",
            "0",
            "--count",
            "100000000",
        ],
    );
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    // Pings keep going out while the signal lands; the writer stops at the
    // first failed write (the gateway closed). It counts the pings written
    // before the signal was sent: those reached the gateway in time.
    let signalled = Arc::new(AtomicBool::new(false));
    let sent_before_signal = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut sock = client.sock.try_clone().unwrap();
        let signalled = Arc::clone(&signalled);
        let sent_before_signal = Arc::clone(&sent_before_signal);
        std::thread::spawn(move || {
            use std::io::Write;
            let started = Instant::now();
            let mut seq = 0;
            while started.elapsed() < Duration::from_millis(500) {
                seq += 1;
                if sock.write_all(&ping(seq, &[1, 2, 3])).is_err() {
                    break;
                }
                // Read after the write returned: the ping was out before
                // the signal was sent.
                if !signalled.load(Ordering::SeqCst) {
                    sent_before_signal.store(seq, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    signalled.store(true, Ordering::SeqCst);
    let status = gateway.terminate(GRACE);
    assert!(status.success(), "{status:?}");
    writer.join().unwrap();
    let frames = client.drain();
    // Every ping is answered once, pong or Reject{SHUTTING_DOWN}; pongs keep
    // their order. (A draining gateway rejects a new ping at once, so its
    // Reject may overtake an older ping's pong: the service's choice.)
    let mut seqs = Vec::new();
    let mut last_pong = 0;
    let mut rejects = 0;
    for frame in &frames {
        match frame {
            Frame::Pong { seq, .. } => {
                assert!(*seq > last_pong, "pong {seq} after pong {last_pong}");
                last_pong = *seq;
                seqs.push(*seq);
            }
            Frame::Reject { seq, code } => {
                assert_eq!(*code, ErrorCode::ShuttingDown);
                rejects += 1;
                seqs.push(*seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=frames.len() as u64).collect();
    assert_eq!(seqs, expected, "each of the first pings answered once");
    let before = sent_before_signal.load(Ordering::SeqCst);
    assert!(
        frames.len() as u64 >= before,
        "{} answers for {before} pings sent before SIGTERM",
        frames.len()
    );
    let summary = finish_loadgen(background);
    let extra = |k: &str| summary.extra[k].as_u64().unwrap();
    assert_eq!(
        extra("sent"),
        extra("pongs") + summary.rejects + summary.lost
    );
    // Only pings sent after their connection's last answer can go missing.
    assert!(summary.lost <= 4 * 8, "{summary:?}");
    // Rejects may overtake older pongs; loadgen allows that, not disorder.
    assert_eq!(summary.window_violations, 0, "{summary:?}");
    eprintln!("{rejects} rejects of {} answers", frames.len());
    assert!(exchange.terminate(GRACE).success());
}

/// 100,000 pipelined pings with 1 KiB pads through 4 KiB socket buffers,
/// with a reader that pauses: writes end in `WouldBlock` mid-frame and
/// resume on `WRITABLE`. Every pong arrives once, intact, in order.
#[test]
fn partial_writes_resume_in_place_through_4_kib_buffers() {
    let small = ["--sndbuf", "4096", "--rcvbuf", "4096"];
    let exchange = Server::exchange(&small);
    let gateway = Server::gateway(exchange.addr, &small);
    let total: u64 = 100_000;
    let window: u64 = 256;
    let answered = Arc::new(AtomicU64::new(0));
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    let pad: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut sock = client.sock.try_clone().unwrap();
        let answered = Arc::clone(&answered);
        let pad = pad.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut bytes = Vec::new();
            let mut seq = 0;
            while seq < total {
                while seq - answered.load(Ordering::Acquire) >= window {
                    std::thread::yield_now();
                }
                bytes.clear();
                let room = window - (seq - answered.load(Ordering::Acquire));
                for _ in 0..room.min(total - seq).min(32) {
                    seq += 1;
                    push_ping(&mut bytes, seq, &pad);
                }
                sock.write_all(&bytes).unwrap();
            }
        })
    };
    let started = Instant::now();
    for expected in 1..=total {
        if expected % 25_000 == 0 {
            // The reader stalls: the gateway's writes hit WouldBlock.
            std::thread::sleep(Duration::from_millis(50));
        }
        match client.next() {
            Some(Frame::Pong { seq, pad: got, .. }) => {
                assert_eq!(seq, expected);
                assert!(got == pad, "pad of {seq} altered");
            }
            other => panic!("at {expected}: {other:?}"),
        }
        answered.store(expected, Ordering::Release);
    }
    writer.join().unwrap();
    eprintln!("100,000 pongs in {:?}", started.elapsed());
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn loadgen_writes_one_hgrm_per_distribution() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let summary = loadgen(
        gateway.addr,
        &[
            "--connections",
            "2",
            "--count",
            "500",
            "--out",
            out,
            "--scenario",
            "s1",
        ],
    );
    assert_eq!(summary.scenario.as_deref(), Some("s1"));
    for name in ["rtt", "hop1", "hop2", "hop3", "hop4"] {
        let text = std::fs::read_to_string(dir.path().join(format!("{name}.hgrm"))).unwrap();
        assert!(text.contains("Percentile"), "{name}.hgrm");
    }
}

#[test]
fn loadgen_straight_to_the_exchange_has_no_hops() {
    let exchange = Server::exchange(&["--workers", "2"]);
    let summary = loadgen(exchange.addr, &["--connections", "3", "--count", "1000"]);
    assert_clean(&summary);
    assert!(summary.hops().iter().all(Option::is_none));
    assert!(summary.rtt.p50_us > 0.0);
}

#[test]
fn flags_also_come_from_fep_environment_variables() {
    let exchange = Server::exchange(&[]);
    let mut child = std::process::Command::new(net_support::gateway_bin())
        .env_clear()
        .env("FEP_LISTEN", "127.0.0.1:0")
        .env("FEP_UPSTREAM", exchange.addr.to_string())
        .env("FEP_WORKERS", "2")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
    let summary = loadgen(addr, &["--connections", "4", "--count", "200"]);
    assert_clean(&summary);
    let _ = child.kill();
    let _ = child.wait();
}
