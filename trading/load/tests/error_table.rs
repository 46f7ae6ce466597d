//! Every row of PROTOCOL.md's error table and every hand-shake rule, checked
//! against the exact frame a role answers with.

use fep_core::frame::{encode_frame, Decoder};
use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{ErrorCode, Nanos, WorkerConfig};
use fep_load::client::ClientConfig;
use fep_load::harness::{Harness, HarnessConfig, NodeRef};
use fep_trading::exchange::ExchangeConfig;
use fep_trading::gateway::GatewayConfig;
use fep_trading::msg::{
    PerfPing, RoleHelloAck, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG, OP_ROLE_HELLO_ACK,
    OP_ROLE_HELLO_REQ,
};

const GATEWAY: NodeRef = NodeRef::Gateway(0);

fn harness(gateway: GatewayConfig, worker: WorkerConfig) -> Harness {
    let client = ClientConfig {
        connections: 1,
        warmup: 0,
        count: 1,
        ..Default::default()
    };
    Harness::new(HarnessConfig {
        gateway: Some(gateway),
        client,
        exchange: ExchangeConfig::default(),
        worker,
        ..Default::default()
    })
}

fn gateway() -> Harness {
    harness(GatewayConfig::default(), WorkerConfig::default())
}

fn hello(role: u8, version: u16, token: &str) -> Vec<u8> {
    let mut out = Vec::new();
    RoleHelloReq {
        role,
        version,
        token,
    }
    .encode(&mut out);
    out
}

fn ping(seq: u64, pad: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let pad = vec![0xAB; pad];
    PerfPing::from_client(seq, Nanos(1), &pad).encode(OP_PERF_PING, &mut out);
    out
}

/// The frames a raw peer received, as (opcode, payload).
fn received(h: &Harness, raw: u16) -> Vec<(u16, Vec<u8>)> {
    let mut d = Decoder::new(1 << 20);
    let mut frames = d.frames(&h.raw(raw).received);
    let mut out = Vec::new();
    while let Some(f) = frames.next() {
        let f = f.expect("roles send well-formed frames");
        out.push((f.opcode, f.payload.to_vec()));
    }
    out
}

/// Sends `bytes` on a fresh connection and expects exactly `Error{code}`
/// (after any `expect_before` frames), then the close.
fn expect_error(h: &mut Harness, target: NodeRef, bytes: &[&[u8]], code: ErrorCode) {
    let raw = h.open_raw(target);
    for b in bytes {
        h.send_raw(raw, b);
        h.settle();
    }
    let frames = received(h, raw);
    let (opcode, payload) = frames.last().expect("an answer");
    assert_eq!(*opcode, OP_ERROR, "frames: {frames:?}");
    let msg = ErrorMsg::decode(payload).unwrap();
    assert_eq!(msg.code, code, "reason: {}", msg.reason);
    assert!(!msg.reason.is_empty() && msg.reason.len() <= 256);
    assert!(h.raw(raw).closed, "an Error is followed by the close");
    assert_eq!(h.client().service().report().errors, 0);
}

fn handshaked(h: &mut Harness, target: NodeRef) -> u16 {
    let raw = h.open_raw(target);
    h.send_raw(raw, &hello(1, 1, ""));
    h.settle();
    raw
}

#[test]
fn frame_too_large_is_fatal_before_and_after_the_hand_shake() {
    let mut h = gateway();
    let header = 65_537u32.to_be_bytes();
    expect_error(&mut h, GATEWAY, &[&header], ErrorCode::FrameTooLarge);
    expect_error(
        &mut h,
        GATEWAY,
        &[&hello(1, 1, ""), &header],
        ErrorCode::FrameTooLarge,
    );
    expect_error(
        &mut h,
        NodeRef::Exchange,
        &[&header],
        ErrorCode::FrameTooLarge,
    );
}

#[test]
fn max_frame_is_configurable() {
    let mut h = harness(
        GatewayConfig::default(),
        WorkerConfig {
            max_frame: 128,
            ..Default::default()
        },
    );
    expect_error(
        &mut h,
        GATEWAY,
        &[&hello(1, 1, ""), &ping(1, 100)],
        ErrorCode::FrameTooLarge,
    );
    let raw = handshaked(&mut h, GATEWAY);
    h.send_raw(raw, &ping(1, 70)); // 124 bytes of length: allowed
    h.settle();
    assert_eq!(received(&h, raw).last().unwrap().0, OP_PERF_PONG);
}

#[test]
fn malformed_covers_short_lengths_short_payloads_and_bad_utf8() {
    let mut h = gateway();
    expect_error(&mut h, GATEWAY, &[&[0, 0, 0, 1, 0]], ErrorCode::Malformed);
    expect_error(&mut h, GATEWAY, &[&[0, 0, 0, 0]], ErrorCode::Malformed);
    let mut short_hello = Vec::new();
    encode_frame(&mut short_hello, OP_ROLE_HELLO_REQ, &[1, 0]);
    expect_error(&mut h, GATEWAY, &[&short_hello], ErrorCode::Malformed);
    let mut bad_token = Vec::new();
    encode_frame(&mut bad_token, OP_ROLE_HELLO_REQ, &[1, 0, 1, 0xff, 0xfe]);
    expect_error(&mut h, GATEWAY, &[&bad_token], ErrorCode::Malformed);
    let mut long_token = Vec::new();
    let payload = [[1u8, 0, 1].as_slice(), &[b'x'; 65]].concat();
    encode_frame(&mut long_token, OP_ROLE_HELLO_REQ, &payload);
    expect_error(&mut h, GATEWAY, &[&long_token], ErrorCode::Malformed);
    let mut short_ping = Vec::new();
    encode_frame(&mut short_ping, OP_PERF_PING, &[0; 47]);
    expect_error(
        &mut h,
        GATEWAY,
        &[&hello(1, 1, ""), &short_ping],
        ErrorCode::Malformed,
    );
    expect_error(
        &mut h,
        NodeRef::Exchange,
        &[&hello(1, 1, ""), &short_ping],
        ErrorCode::Malformed,
    );
}

#[test]
fn unknown_opcodes_include_the_reserved_ranges() {
    let mut h = gateway();
    for opcode in [
        0u16,
        4,
        999,
        1000,
        19_999,
        20_003,
        20_105,
        20_149,
        20_156,
        20_199,
        u16::MAX,
    ] {
        let mut frame = Vec::new();
        encode_frame(&mut frame, opcode, b"");
        expect_error(
            &mut h,
            GATEWAY,
            &[&hello(1, 1, ""), &frame],
            ErrorCode::UnknownOpcode,
        );
        expect_error(
            &mut h,
            NodeRef::Exchange,
            &[&hello(2, 1, ""), &frame],
            ErrorCode::UnknownOpcode,
        );
        // Before the hand-shake anything but the hello is UNEXPECTED,
        // an unknown opcode too.
        expect_error(&mut h, GATEWAY, &[&frame], ErrorCode::Unexpected);
        expect_error(&mut h, NodeRef::Exchange, &[&frame], ErrorCode::Unexpected);
    }
}

#[test]
fn unexpected_covers_early_messages_a_second_hello_and_a_client_pong() {
    let mut h = gateway();
    expect_error(&mut h, GATEWAY, &[&ping(1, 0)], ErrorCode::Unexpected);
    expect_error(
        &mut h,
        GATEWAY,
        &[&hello(1, 1, ""), &hello(1, 1, "")],
        ErrorCode::Unexpected,
    );
    let mut pong = ping(1, 0);
    pong[4..6].copy_from_slice(&OP_PERF_PONG.to_be_bytes());
    expect_error(
        &mut h,
        GATEWAY,
        &[&hello(1, 1, ""), &pong],
        ErrorCode::Unexpected,
    );
    let mut ack = Vec::new();
    RoleHelloAck {
        role: 1,
        version: 1,
    }
    .encode(&mut ack);
    expect_error(&mut h, GATEWAY, &[&ack], ErrorCode::Unexpected);
    expect_error(
        &mut h,
        NodeRef::Exchange,
        &[&hello(2, 1, ""), &pong],
        ErrorCode::Unexpected,
    );
    let mut reject = Vec::new();
    RejectMsg {
        code: ErrorCode::Overloaded,
        seq: 1,
        reason: "",
    }
    .encode(&mut reject);
    expect_error(
        &mut h,
        GATEWAY,
        &[&hello(1, 1, ""), &reject],
        ErrorCode::Unexpected,
    );
}

#[test]
fn role_refused_covers_role_version_and_token() {
    let token = GatewayConfig {
        token: Some("s3cret".into()),
        ..Default::default()
    };
    let mut h = harness(token, WorkerConfig::default());
    for (role, version, token) in [
        (2, 1, "s3cret"),
        (3, 1, "s3cret"),
        (0, 1, "s3cret"),
        (9, 1, "s3cret"),
        (1, 2, "s3cret"),
        (1, 0, "s3cret"),
        (1, 1, ""),
        (1, 1, "wrong"),
    ] {
        expect_error(
            &mut h,
            GATEWAY,
            &[&hello(role, version, token)],
            ErrorCode::RoleRefused,
        );
    }
    expect_error(
        &mut h,
        NodeRef::Exchange,
        &[&hello(3, 1, "")],
        ErrorCode::RoleRefused,
    );
    let raw = h.open_raw(GATEWAY);
    h.send_raw(raw, &hello(1, 1, "s3cret"));
    h.settle();
    assert_eq!(received(&h, raw)[0].0, OP_ROLE_HELLO_ACK);
}

#[test]
fn the_ack_names_the_acceptor_and_version_one() {
    let mut h = gateway();
    for (target, role, want) in [
        (GATEWAY, 1, 2),
        (NodeRef::Exchange, 1, 3),
        (NodeRef::Exchange, 2, 3),
    ] {
        let raw = h.open_raw(target);
        h.send_raw(raw, &hello(role, 1, "ignored-when-no-token-is-set"));
        h.settle();
        let frames = received(&h, raw);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, OP_ROLE_HELLO_ACK);
        assert_eq!(
            RoleHelloAck::decode(&frames[0].1).unwrap(),
            RoleHelloAck {
                role: want,
                version: 1
            }
        );
        assert!(!h.raw(raw).closed);
    }
}

#[test]
fn upstream_unavailable_is_a_reject_and_the_connection_stays_up() {
    let mut h = gateway();
    let raw = handshaked(&mut h, GATEWAY);
    h.set_exchange_down(true);
    h.settle();
    assert!(!h.gateway(0).service().upstream_up());
    h.send_raw(raw, &ping(41, 3));
    h.settle();
    h.send_raw(raw, &ping(42, 3));
    h.settle();
    let frames = received(&h, raw);
    let rejects: Vec<RejectMsg<'_>> = frames[1..]
        .iter()
        .map(|(op, p)| (assert_eq!(*op, OP_REJECT), RejectMsg::decode(p).unwrap()).1)
        .collect();
    assert_eq!(
        rejects.iter().map(|r| (r.code, r.seq)).collect::<Vec<_>>(),
        [
            (ErrorCode::UpstreamUnavailable, 41),
            (ErrorCode::UpstreamUnavailable, 42)
        ]
    );
    assert!(!h.raw(raw).closed);
    // The exchange comes back: the gateway reconnects by itself.
    h.set_exchange_down(false);
    h.run_until(|h| h.gateway(0).service().upstream_up());
    h.send_raw(raw, &ping(43, 3));
    h.settle();
    assert_eq!(received(&h, raw).last().unwrap().0, OP_PERF_PONG);
}

#[test]
fn overloaded_sheds_pings_past_the_session_bound_with_a_reject() {
    let mut h = harness(
        GatewayConfig {
            inflight_per_session_max: 2,
            ..Default::default()
        },
        WorkerConfig::default(),
    );
    let raw = handshaked(&mut h, GATEWAY);
    let burst: Vec<u8> = (1..=5).flat_map(|seq| ping(seq, 0)).collect();
    h.send_raw(raw, &burst);
    h.settle();
    let answers: Vec<(u16, u64)> = received(&h, raw)[1..]
        .iter()
        .map(|(op, p)| match *op {
            OP_REJECT => {
                let r = RejectMsg::decode(p).unwrap();
                assert_eq!(r.code, ErrorCode::Overloaded);
                (OP_REJECT, r.seq)
            }
            op => (op, PerfPing::decode(op, p).unwrap().seq),
        })
        .collect();
    assert_eq!(
        answers,
        [
            (OP_REJECT, 3),
            (OP_REJECT, 4),
            (OP_REJECT, 5),
            (OP_PERF_PONG, 1),
            (OP_PERF_PONG, 2)
        ]
    );
}

#[test]
fn overloaded_is_fatal_for_a_peer_that_stops_reading_and_spares_the_others() {
    let worker = WorkerConfig {
        max_frame: 1024,
        output_backlog_max: 4096,
        ..Default::default()
    };
    let mut h = harness(GatewayConfig::default(), worker);
    let slow = handshaked(&mut h, GATEWAY);
    let healthy = handshaked(&mut h, GATEWAY);
    h.stall_raw(slow, true);
    for seq in 1..=20 {
        h.send_raw(slow, &ping(seq, 500));
        h.send_raw(healthy, &ping(seq, 500));
        h.settle();
    }
    let frames = received(&h, slow);
    let (op, payload) = frames.last().unwrap();
    assert_eq!(*op, OP_ERROR);
    assert_eq!(
        ErrorMsg::decode(payload).unwrap().code,
        ErrorCode::Overloaded
    );
    assert!(h.raw(slow).closed);
    let healthy_pongs = received(&h, healthy)
        .iter()
        .filter(|(op, _)| *op == OP_PERF_PONG)
        .count();
    assert_eq!(healthy_pongs, 20);
    assert!(!h.raw(healthy).closed);
}

#[test]
fn shutting_down_rejects_new_pings() {
    let mut h = gateway();
    let raw = handshaked(&mut h, GATEWAY);
    h.shutdown(GATEWAY);
    h.send_raw(raw, &ping(7, 0));
    h.settle();
    let (op, payload) = received(&h, raw).pop().unwrap();
    assert_eq!(op, OP_REJECT);
    let r = RejectMsg::decode(&payload).unwrap();
    assert_eq!((r.code, r.seq), (ErrorCode::ShuttingDown, 7));
    assert!(h.gateway(0).is_done(), "nothing in flight: drained");
}

#[test]
fn the_exchange_stamps_t3_and_echoes_every_other_field_and_the_pad() {
    let mut h = gateway();
    let raw = handshaked(&mut h, NodeRef::Exchange);
    let pad: Vec<u8> = (0..=255).collect();
    let mut frame = Vec::new();
    let sent = PerfPing {
        seq: 9,
        route: 77,
        t1: Nanos(1),
        t2: Nanos(2),
        t3: Nanos::ZERO,
        t4: Nanos(4),
        pad: &pad,
    };
    sent.encode(OP_PERF_PING, &mut frame);
    h.send_raw(raw, &frame);
    h.settle();
    let (op, payload) = received(&h, raw).pop().unwrap();
    assert_eq!(op, OP_PERF_PONG);
    let pong = PerfPing::decode(op, &payload).unwrap();
    assert!(pong.t3 > Nanos::ZERO);
    assert_eq!(
        PerfPing {
            t3: Nanos::ZERO,
            ..pong
        },
        sent
    );
}

#[test]
fn an_initiator_refuses_an_ack_from_the_wrong_role_or_version() {
    use fep_core::{Effect, Worker, WorkerId};
    use fep_trading::gateway::Gateway;
    for (role, version) in [(1u8, 1u16), (2, 1), (3, 2)] {
        let mut w = Worker::new(
            WorkerId(0),
            WorkerConfig::default(),
            Gateway::new(WorkerId(0), GatewayConfig::default()),
        );
        w.start(Nanos(1));
        let up = std::iter::from_fn(|| w.poll_effect())
            .find_map(|e| match e {
                Effect::Connect { conn, .. } => Some(conn),
                _ => None,
            })
            .unwrap();
        w.handle_connected(Nanos(2), up);
        while w.poll_effect().is_some() {}
        let sent_hello = w.transmit_buf(up).len();
        let mut ack = Vec::new();
        RoleHelloAck { role, version }.encode(&mut ack);
        w.handle_read(Nanos(3), up, &ack);
        let effects: Vec<_> = std::iter::from_fn(|| w.poll_effect()).collect();
        assert!(
            effects.contains(&Effect::Close { conn: up }),
            "({role}, {version}): {effects:?}"
        );
        let mut d = Decoder::new(1024);
        let out = &w.transmit_buf(up)[sent_hello..];
        let mut frames = d.frames(out);
        let f = frames.next().unwrap().unwrap();
        assert_eq!(f.opcode, OP_ERROR);
        assert_eq!(
            ErrorMsg::decode(f.payload).unwrap().code,
            ErrorCode::RoleRefused
        );
        assert!(!w.is_ready());
    }
}
