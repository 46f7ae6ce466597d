//! PROTOCOL.md "Liveness" through the real processes: silent sockets cut
//! at the hand-shake deadline by both servers, a silent (stopped) exchange
//! detected by the gateway's heartbeats and recovered from, and an idle but
//! live link never cut.

mod net_support;

use std::time::{Duration, Instant};

use fep_core::wire::OP_HEARTBEAT;
use fep_core::ErrorCode;
use net_support::{hello, ping, raw_frame, Frame, RawClient, Server};
use rustix::process::Signal;

const GRACE: Duration = Duration::from_secs(10);

/// Opens `n` sockets that never say hello and checks that each gets one
/// `Error{TIMEOUT}` then the close, not before `deadline` and well within
/// a second after it.
fn silent_sockets_are_cut(addr: std::net::SocketAddr, n: usize, deadline: Duration) {
    let start = Instant::now();
    let mut silent: Vec<RawClient> = (0..n).map(|_| RawClient::connect(addr)).collect();
    for (i, sock) in silent.iter_mut().enumerate() {
        match sock.drain().as_slice() {
            [Frame::Error { code, .. }] => assert_eq!(*code, ErrorCode::Timeout, "socket {i}"),
            other => panic!("socket {i}: expected Error{{TIMEOUT}} then close, got {other:?}"),
        }
    }
    let took = start.elapsed();
    assert!(took >= deadline, "cut after {took:?}, before {deadline:?}");
    assert!(
        took < deadline + Duration::from_secs(2),
        "{n} silent sockets held {took:?}"
    );
}

#[test]
fn silent_sockets_are_cut_at_the_hello_deadline_by_gateway_and_exchange() {
    let exchange = Server::exchange(&["--hello-timeout", "400ms"]);
    let gateway = Server::gateway(exchange.addr, &["--hello-timeout", "400ms"]);
    let mut greeted = RawClient::connect(gateway.addr);
    greeted.handshake("");
    silent_sockets_are_cut(gateway.addr, 200, Duration::from_millis(400));
    silent_sockets_are_cut(exchange.addr, 50, Duration::from_millis(400));
    // A client that said hello and then nothing (no heartbeat either) is
    // never cut for its silence.
    greeted.send(&ping(1, b"x"));
    assert!(matches!(greeted.next(), Some(Frame::Pong { seq: 1, .. })));
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

/// Waits until every thread of process `pid` is stopped: `kill` only queues
/// SIGSTOP, and a worker running on the other CPU may still answer a ping
/// sent right after it.
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process exists");
        let all_stopped = tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "the exchange did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_stopped_exchange_is_declared_dead_its_pings_rejected_and_the_gateway_recovers() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &["--heartbeat", "100ms"]);
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    client.send(&ping(1, b""));
    assert!(matches!(client.next(), Some(Frame::Pong { seq: 1, .. })));
    // The exchange goes silent: its socket stays open, nothing comes back.
    exchange.signal(Signal::STOP);
    wait_stopped(exchange.child.id());
    let stopped = Instant::now();
    for seq in 2..=4 {
        client.send(&ping(seq, b""));
    }
    for seq in 2..=4 {
        match client.next() {
            Some(Frame::Reject { code, seq: got }) => {
                assert_eq!((code, got), (ErrorCode::UpstreamUnavailable, seq));
            }
            other => panic!("ping {seq}: {other:?}"),
        }
    }
    let detected = stopped.elapsed();
    // Three intervals of 100 ms, with room for a loaded machine.
    assert!(
        detected >= Duration::from_millis(250),
        "declared dead after {detected:?}"
    );
    assert!(
        detected < Duration::from_secs(2),
        "declared dead after {detected:?}"
    );
    exchange.signal(Signal::CONT);
    // The gateway redials (its dials to the stopped exchange were also
    // declared dead); within a few backoffs a ping goes through again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 10;
    loop {
        client.send(&ping(seq, b""));
        match client.next() {
            Some(Frame::Pong { seq: got, .. }) => {
                assert_eq!(got, seq);
                break;
            }
            Some(Frame::Reject { code, .. }) => {
                assert_eq!(code, ErrorCode::UpstreamUnavailable);
                assert!(Instant::now() < deadline, "the gateway never recovered");
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("ping {seq}: {other:?}"),
        }
        seq += 1;
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn an_idle_live_link_is_never_cut_and_heartbeats_are_answered() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &["--heartbeat", "50ms"]);
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    // Forty heartbeat intervals of idleness on both links.
    std::thread::sleep(Duration::from_secs(2));
    client.send(&ping(1, b"idle"));
    assert!(matches!(client.next(), Some(Frame::Pong { seq: 1, .. })));
    // The client may heartbeat the gateway: one answer each.
    for _ in 0..3 {
        client.send(&raw_frame(OP_HEARTBEAT, &[]));
    }
    for _ in 0..3 {
        match client.next() {
            Some(Frame::Other { opcode, payload }) => {
                assert_eq!((opcode, payload.len()), (OP_HEARTBEAT, 0));
            }
            other => panic!("expected a Heartbeat, got {other:?}"),
        }
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn heartbeat_errors_are_answered_as_documented() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &[]);
    for addr in [gateway.addr, exchange.addr] {
        let mut early = RawClient::connect(addr);
        early.send(&raw_frame(OP_HEARTBEAT, &[]));
        match early.drain().as_slice() {
            [Frame::Error { code, .. }] => assert_eq!(*code, ErrorCode::Unexpected),
            other => panic!("a heartbeat before the hello: {other:?}"),
        }
        let mut loaded = RawClient::connect(addr);
        loaded.send(&hello(1, 1, ""));
        loaded.send(&raw_frame(OP_HEARTBEAT, b"payload"));
        match loaded.drain().as_slice() {
            [Frame::Other { .. }, Frame::Error { code, .. }] => {
                assert_eq!(*code, ErrorCode::Malformed);
            }
            other => panic!("a heartbeat with a payload: {other:?}"),
        }
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn a_gateway_started_before_its_exchange_says_so_once_then_becomes_ready() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    // A free port, with nothing on it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstream = format!("127.0.0.1:{port}");
    let mut gateway = Command::new(net_support::gateway_bin())
        .args(["--listen", "127.0.0.1:0", "--upstream", &upstream])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let mut stdout = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let said = stderr
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("cannot connect"))
        .expect("a line about the unreachable upstream");
    assert!(said.contains(&upstream), "{said}");
    // Retries go on without another line until the exchange answers.
    std::thread::sleep(Duration::from_millis(500));
    let exchange = Server::start(
        "mock_exchange",
        net_support::exchange_bin(),
        &["--listen", &upstream],
    );
    let ready = stdout.next().expect("a line").unwrap();
    assert!(ready.starts_with("ready "), "{ready}");
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let again = rest.iter().filter(|l| l.contains("cannot connect")).count();
    assert_eq!(again, 0, "said once: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains(&format!("connected to {upstream}"))),
        "{rest:?}"
    );
    drop(exchange);
}
