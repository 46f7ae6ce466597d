//! Every row of PROTOCOL.md's error table and the hand-shake rule, checked
//! with a raw client against the running fep_gateway (and mock_exchange)
//! while a healthy loadgen is served on the same gateway.

mod net_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use fep_core::wire::OP_REJECT;
use fep_core::ErrorCode;
use fep_trading::msg::{OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK, OP_ROLE_HELLO_REQ};
use net_support::{
    assert_clean, finish_loadgen, hello, ping, raw_frame, spawn_loadgen, Frame, RawClient, Server,
};
use rustix::process::Signal;

const GRACE: Duration = Duration::from_secs(10);

/// Sends `bytes` on a fresh connection (after a hand-shake when asked) and
/// expects `Error{code}` followed by the close.
fn expect_error(addr: SocketAddr, handshake: bool, bytes: &[u8], code: ErrorCode, row: &str) {
    let mut client = RawClient::connect(addr);
    if handshake {
        client.handshake("");
    }
    client.send(bytes);
    let frames = client.drain();
    match frames.as_slice() {
        [Frame::Error { code: got, reason }] => {
            assert_eq!(*got, code, "{row}: {reason}");
            assert!(
                reason.len() <= 256,
                "{row}: reason of {} bytes",
                reason.len()
            );
        }
        other => panic!(
            "{row}: expected one Error{{{}}} then close, got {other:?}",
            code.name()
        ),
    }
}

fn frame_with_length(length: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = length.to_be_bytes().to_vec();
    out.extend_from_slice(rest);
    out
}

#[test]
fn every_error_row_is_answered_as_documented_while_a_healthy_client_is_served() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &["--workers", "2", "--token", "secret"]);
    let healthy = spawn_loadgen(
        gateway.addr,
        &[
            "--token",
            "secret",
            "--connections",
            "4",
            "--count",
            "20000",
        ],
    );
    let gw = gateway.addr;
    let bad_hello = |role: u8, version: u16, token: &str| hello(role, version, token);

    // FRAME_TOO_LARGE: length > max_frame (65,536 by default).
    let big = frame_with_length(65_537, &OP_PERF_PING.to_be_bytes());
    expect_error(
        gw,
        false,
        &big,
        ErrorCode::FrameTooLarge,
        "length > max_frame",
    );
    // MALFORMED: length < 2.
    let tiny = frame_with_length(1, &[0]);
    expect_error(gw, false, &tiny, ErrorCode::Malformed, "length < 2");
    // MALFORMED: a payload too short for its opcode.
    let short_hello = raw_frame(OP_ROLE_HELLO_REQ, &[1]);
    expect_error(
        gw,
        false,
        &short_hello,
        ErrorCode::Malformed,
        "short RoleHelloReq",
    );
    // MALFORMED: invalid UTF-8 where UTF-8 is required (the token).
    let bad_token = raw_frame(OP_ROLE_HELLO_REQ, &[1, 0, 1, 0xff, 0xfe]);
    expect_error(
        gw,
        false,
        &bad_token,
        ErrorCode::Malformed,
        "token not UTF-8",
    );
    // MALFORMED: a token longer than 64 bytes.
    let mut payload = vec![1, 0, 1];
    payload.extend_from_slice(&[b't'; 65]);
    let long_token = raw_frame(OP_ROLE_HELLO_REQ, &payload);
    expect_error(
        gw,
        false,
        &long_token,
        ErrorCode::Malformed,
        "token > 64 bytes",
    );

    // The remaining rows need a hand-shaked connection with the token.
    let handshaked = |bytes: &[u8], code: ErrorCode, row: &str| {
        let mut client = RawClient::connect(gw);
        client.handshake("secret");
        client.send(bytes);
        match client.drain().as_slice() {
            [Frame::Error { code: got, reason }] => assert_eq!(*got, code, "{row}: {reason}"),
            other => panic!("{row}: expected Error{{{}}}, got {other:?}", code.name()),
        }
    };
    let short_ping = raw_frame(OP_PERF_PING, &[0; 10]);
    handshaked(&short_ping, ErrorCode::Malformed, "short PerfPing");
    // UNKNOWN_OPCODE: an opcode the gateway does not handle, once
    // hand-shaked; before, it is anything but RoleHelloReq: UNEXPECTED.
    let unknown = raw_frame(999, b"?");
    expect_error(
        gw,
        false,
        &unknown,
        ErrorCode::Unexpected,
        "unknown before hello",
    );
    handshaked(&unknown, ErrorCode::UnknownOpcode, "unknown opcode");
    // UNEXPECTED: anything but RoleHelloReq before the hand-shake, a second
    // RoleHelloReq, a PerfPong from a client.
    expect_error(
        gw,
        false,
        &ping(1, b""),
        ErrorCode::Unexpected,
        "ping before hello",
    );
    let second = bad_hello(1, 1, "secret");
    handshaked(&second, ErrorCode::Unexpected, "second RoleHelloReq");
    let pong = raw_frame(OP_PERF_PONG, &ping(1, b"")[6..]);
    handshaked(&pong, ErrorCode::Unexpected, "PerfPong from a client");
    // ROLE_REFUSED: a role this port does not accept, an unsupported
    // version, a wrong or missing token.
    for (role, version, token, row) in [
        (2, 1, "secret", "gateway role on the client port"),
        (3, 1, "secret", "exchange role on the client port"),
        (9, 1, "secret", "unknown role"),
        (1, 2, "secret", "version 2"),
        (1, 1, "wrong", "wrong token"),
        (1, 1, "", "missing token"),
    ] {
        let bytes = bad_hello(role, version, token);
        expect_error(gw, false, &bytes, ErrorCode::RoleRefused, row);
    }
    // The hand-shake rule: the right hello gets RoleHelloAck{gateway, 1},
    // and then pings are served.
    let mut client = RawClient::connect(gw);
    client.handshake("secret");
    client.send(&ping(7, b"pad"));
    match client.next() {
        Some(Frame::Pong { seq: 7, pad, t }) => {
            assert_eq!(pad, b"pad");
            assert!(t[1] > 0 && t[2] >= t[1] && t[3] >= t[2], "stamps {t:?}");
        }
        other => panic!("expected the pong of 7, got {other:?}"),
    }

    let summary = finish_loadgen(healthy);
    assert_clean(&summary);
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn the_exchange_port_admits_gateways_and_clients_only() {
    let exchange = Server::exchange(&[]);
    for role in [1u8, 2] {
        let mut client = RawClient::connect(exchange.addr);
        client.send(&hello(role, 1, ""));
        match client.next() {
            Some(Frame::Other { opcode, payload }) => {
                assert_eq!(opcode, OP_ROLE_HELLO_ACK);
                assert_eq!(payload, [3, 0, 1], "RoleHelloAck{{exchange, 1}}");
            }
            other => panic!("role {role}: {other:?}"),
        }
    }
    expect_error(
        exchange.addr,
        false,
        &hello(3, 1, ""),
        ErrorCode::RoleRefused,
        "exchange role",
    );
    // A client straight on the exchange gets pongs with t2 = t4 = 0.
    let mut client = RawClient::connect(exchange.addr);
    client.send(&hello(1, 1, ""));
    assert!(matches!(client.next(), Some(Frame::Other { .. })));
    client.send(&ping(1, b"x"));
    match client.next() {
        Some(Frame::Pong { seq: 1, t, .. }) => assert_eq!((t[1], t[3]), (0, 0)),
        other => panic!("{other:?}"),
    }
    assert!(exchange.terminate(GRACE).success());
}

#[test]
fn no_live_upstream_is_a_reject_and_the_connection_stays_up() {
    let mut exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &[]);
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    exchange.signal(Signal::KILL);
    exchange.wait(GRACE);
    // The gateway notices the loss at once (EOF/reset on its upstream).
    std::thread::sleep(Duration::from_millis(100));
    for seq in 1..=3 {
        client.send(&ping(seq, b""));
        match client.next() {
            Some(Frame::Reject { code, seq: got }) => {
                assert_eq!((code, got), (ErrorCode::UpstreamUnavailable, seq));
            }
            other => panic!("ping {seq}: {other:?}"),
        }
    }
    assert!(gateway.terminate(GRACE).success());
}

#[test]
fn a_shed_request_is_a_reject_overloaded() {
    let exchange = Server::exchange(&[]);
    let gateway = Server::gateway(exchange.addr, &["--inflight-per-session-max", "1"]);
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    // Two pings in one write: the second exceeds the one-in-flight bound.
    let mut both = ping(1, b"");
    both.extend_from_slice(&ping(2, b""));
    client.send(&both);
    let mut answers = vec![client.next().unwrap(), client.next().unwrap()];
    // PROTOCOL.md orders pongs; whether a Reject may overtake an earlier
    // ping's pong is left to the service, so only the set is checked here.
    eprintln!("answers in arrival order: {answers:?}");
    answers.sort_by_key(|f| match f {
        Frame::Pong { seq, .. } | Frame::Reject { seq, .. } => *seq,
        _ => u64::MAX,
    });
    assert!(
        matches!(answers[0], Frame::Pong { seq: 1, .. }),
        "{answers:?}"
    );
    assert_eq!(
        answers[1],
        Frame::Reject {
            code: ErrorCode::Overloaded,
            seq: 2
        }
    );
    assert!(gateway.terminate(GRACE).success());
}

/// A stand-in exchange that hand-shakes and holds pings until told to
/// answer, so a ping can be kept in flight across the gateway's SIGTERM.
struct HeldExchange {
    listener: TcpListener,
}

impl HeldExchange {
    fn accept(&self) -> TcpStream {
        let (mut sock, _) = self.listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let hello = read_frame(&mut sock);
        assert_eq!(hello.0, OP_ROLE_HELLO_REQ);
        sock.write_all(&raw_frame(OP_ROLE_HELLO_ACK, &[3, 0, 1]))
            .unwrap();
        sock
    }
}

fn read_frame(sock: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut head = [0u8; 6];
    sock.read_exact(&mut head).unwrap();
    let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut payload = vec![0; length - 2];
    sock.read_exact(&mut payload).unwrap();
    (u16::from_be_bytes([head[4], head[5]]), payload)
}

#[test]
fn a_draining_gateway_rejects_new_pings_shutting_down_and_answers_old_ones() {
    let held = HeldExchange {
        listener: TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    let upstream = held.listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let exchange = std::thread::spawn(move || {
        let mut sock = held.accept();
        tx.send(()).unwrap();
        // Ping 1 arrives and is held until the gateway drains.
        let (opcode, payload) = read_frame(&mut sock);
        assert_eq!(opcode, OP_PERF_PING);
        tx.send(()).unwrap();
        rx_wait();
        sock.write_all(&raw_frame(OP_PERF_PONG, &payload)).unwrap();
        // The gateway, now done, closes its upstream.
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
    });
    fn rx_wait() {
        std::thread::sleep(Duration::from_millis(300));
    }
    let gateway = Server::gateway(upstream, &[]);
    rx.recv().unwrap();
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    client.send(&ping(1, b""));
    rx.recv().unwrap();
    gateway.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(100));
    client.send(&ping(2, b""));
    let mut answers = client.drain();
    // PROTOCOL.md orders pongs; whether a Reject may overtake an earlier
    // ping's pong is left to the service, so only the set is checked here.
    eprintln!("answers in arrival order: {answers:?}");
    answers.sort_by_key(|f| match f {
        Frame::Pong { seq, .. } | Frame::Reject { seq, .. } => *seq,
        _ => u64::MAX,
    });
    assert!(
        matches!(answers[0], Frame::Pong { seq: 1, .. }),
        "{answers:?}"
    );
    assert_eq!(
        answers[1..],
        [Frame::Reject {
            code: ErrorCode::ShuttingDown,
            seq: 2
        }]
    );
    let mut gateway = gateway;
    assert!(gateway.wait(GRACE).success());
    exchange.join().unwrap();
    let _ = OP_REJECT;
}

/// `--upstream-inflight-max` bounds the requests one upstream connection
/// has in flight: past it a request is shed `Reject{OVERLOADED}` at once,
/// and the bound frees as answers come back.
#[test]
fn an_upstream_at_its_in_flight_bound_sheds_with_reject_overloaded() {
    let held = HeldExchange {
        listener: TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    let upstream = held.listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let exchange = std::thread::spawn(move || {
        let mut sock = held.accept();
        tx.send(0).unwrap();
        // Two pings come up and are held; no third follows them.
        let first = read_frame(&mut sock);
        let second = read_frame(&mut sock);
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        let third = sock.read(&mut byte);
        assert!(third.is_err(), "a third request came up: {third:?}");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        tx.send(2).unwrap();
        go_rx.recv().unwrap();
        for (opcode, payload) in [first, second] {
            assert_eq!(opcode, OP_PERF_PING);
            sock.write_all(&raw_frame(OP_PERF_PONG, &payload)).unwrap();
        }
        // Room again: the next ping is forwarded and answered.
        let (opcode, payload) = read_frame(&mut sock);
        assert_eq!(opcode, OP_PERF_PING);
        sock.write_all(&raw_frame(OP_PERF_PONG, &payload)).unwrap();
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
    });
    let gateway = Server::gateway(upstream, &["--upstream-inflight-max", "2"]);
    assert_eq!(rx.recv().unwrap(), 0);
    let mut client = RawClient::connect(gateway.addr);
    client.handshake("");
    let mut three = ping(1, b"");
    three.extend_from_slice(&ping(2, b""));
    three.extend_from_slice(&ping(3, b""));
    client.send(&three);
    assert_eq!(
        client.next(),
        Some(Frame::Reject {
            code: ErrorCode::Overloaded,
            seq: 3
        })
    );
    assert_eq!(rx.recv().unwrap(), 2);
    go_tx.send(()).unwrap();
    assert!(matches!(client.next(), Some(Frame::Pong { seq: 1, .. })));
    assert!(matches!(client.next(), Some(Frame::Pong { seq: 2, .. })));
    client.send(&ping(4, b""));
    assert!(matches!(client.next(), Some(Frame::Pong { seq: 4, .. })));
    assert!(gateway.terminate(GRACE).success());
    exchange.join().unwrap();
}

/// A client with a tiny receive buffer that sends pings without reading
/// until TCP holds it back, then reads to the end.
fn flood_then_read(server: SocketAddr) -> Vec<u8> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.into()).unwrap();
    let mut sock = TcpStream::from(sock);
    sock.set_nodelay(true).unwrap();
    sock.write_all(&hello(1, 1, "")).unwrap();
    let (opcode, _) = read_frame(&mut sock);
    assert_eq!(opcode, OP_ROLE_HELLO_ACK);
    sock.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut seq = 0;
    let started = std::time::Instant::now();
    // Until a write is held back for half a second (or fails): the server
    // may still be dropping input of a connection it has failed.
    'flood: while started.elapsed() < Duration::from_secs(20) {
        let mut batch = Vec::new();
        for _ in 0..100 {
            seq += 1;
            batch.extend_from_slice(&ping(seq, &[0; 100]));
        }
        if sock.write_all(&batch).is_err() {
            break 'flood;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    // A reset here (rather than the end) is the failure under test.
    sock.read_to_end(&mut bytes)
        .expect("the stream ends with FIN, not RST");
    bytes
}

#[test]
fn a_client_that_stops_reading_gets_its_answers_and_then_error_overloaded() {
    // The bound is below what one read of input answers, so a client that
    // never reads passes it. The answers already written stay deliverable
    // after the close: the client reads every one, whole, and then the
    // Error, from the exchange and through the gateway alike.
    let bound = ["--output-backlog-max", "200000"];
    let exchange = Server::exchange(&bound);
    let gateway = Server::gateway(exchange.addr, &bound);
    for server in [exchange.addr, gateway.addr] {
        let bytes = flood_then_read(server);
        let mut frames = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let head = bytes.get(at..at + 6).expect("a whole frame header");
            let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let opcode = u16::from_be_bytes([head[4], head[5]]);
            let payload = bytes.get(at + 6..at + 4 + len).expect("a whole frame");
            frames.push((opcode, payload.to_vec()));
            at += 4 + len;
        }
        let (last, answers) = frames.split_last().expect("frames before the end");
        assert_eq!(last.0, fep_core::wire::OP_ERROR, "via {server}");
        assert_eq!(u16::from_be_bytes([last.1[0], last.1[1]]), 7, "OVERLOADED");
        // Pongs come in the pings' order, and so do the gateway's sheds
        // (a shed may overtake an older ping's pong).
        for kind in [OP_PERF_PONG, OP_REJECT] {
            let seqs: Vec<u64> = answers
                .iter()
                .filter(|(opcode, _)| *opcode == kind)
                .map(|(_, p)| {
                    let at = if kind == OP_REJECT { 2 } else { 0 };
                    u64::from_be_bytes(p[at..at + 8].try_into().unwrap())
                })
                .collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "via {server}");
        }
        assert!(
            answers
                .iter()
                .all(|(opcode, _)| [OP_PERF_PONG, OP_REJECT].contains(opcode)),
            "via {server}"
        );
        assert!(
            answers.len() > 100,
            "via {server}: {} answers",
            answers.len()
        );
    }
    assert!(gateway.terminate(GRACE).success());
    assert!(exchange.terminate(GRACE).success());
}
