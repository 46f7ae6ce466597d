//! The checker's own wire decoder agrees with the product's on valid
//! traffic, and shares none of its parsing code.

use fep_core::wire::{ErrorMsg, RejectMsg};
use fep_core::{Decoder, ErrorCode, Nanos};
use fep_sim::oracle::{op, read_lane, Route, Seen, StreamReader, WireFault, LANE_ROUTED_FIRST};
use fep_sim::trace::fnv1a64;
use fep_trading::msg::{Message, PerfPing, RoleHelloAck, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random valid stream: every message kind, pads up to 64 KiB.
fn stream(rng: &mut ChaCha8Rng, frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let pad: Vec<u8> = (0..65_536 - 50).map(|i| (i * 7) as u8).collect();
    for _ in 0..frames {
        let kind = rng.random_range(0..6);
        let pad_len = if rng.random_bool(0.1) {
            rng.random_range(0..pad.len())
        } else {
            rng.random_range(0..300)
        };
        let ping = PerfPing {
            seq: rng.random(),
            route: rng.random(),
            t1: Nanos(rng.random()),
            t2: Nanos(rng.random()),
            t3: Nanos(rng.random()),
            t4: Nanos(rng.random()),
            pad: &pad[..pad_len],
        };
        let code = ErrorCode::from_u16(rng.random_range(1..=14));
        let message = match kind {
            0 => Message::PerfPing(ping),
            1 => Message::PerfPong(ping),
            2 => Message::Reject(RejectMsg {
                code,
                seq: rng.random(),
                reason: "shed",
            }),
            3 => Message::Error(ErrorMsg {
                code,
                reason: "bye",
            }),
            4 => Message::RoleHelloReq(RoleHelloReq {
                role: 1,
                version: 1,
                token: "abc",
            }),
            _ => Message::RoleHelloAck(RoleHelloAck {
                role: 2,
                version: 1,
            }),
        };
        message.encode(&mut out);
    }
    out
}

/// What the product's decoder makes of the stream, in the oracle's terms.
fn product_view(bytes: &[u8]) -> Vec<Seen> {
    let mut decoder = Decoder::new(fep_core::limits::FRAME_LENGTH_MAX_CEILING);
    let mut seen = Vec::new();
    let mut frames = decoder.frames(bytes);
    while let Some(frame) = frames.next() {
        let frame = frame.expect("a valid stream");
        let mut s = Seen {
            opcode: frame.opcode,
            well_formed: true,
            ..Seen::default()
        };
        match Message::decode(frame).expect("valid messages") {
            Message::PerfPing(p) | Message::PerfPong(p) => {
                s.seq = p.seq;
                s.route = p.route;
                s.t = [p.t1.0, p.t2.0, p.t3.0, p.t4.0];
                s.pad = fnv1a64(p.pad);
            }
            Message::Reject(r) => {
                s.seq = r.seq;
                s.code = r.code.to_u16();
            }
            Message::Error(e) => s.code = e.code.to_u16(),
            Message::RoleHelloReq(_) | Message::RoleHelloAck(_) => {}
        }
        seen.push(s);
    }
    seen
}

fn oracle_view(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<Seen> {
    let mut reader = StreamReader::default();
    let mut seen = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        // Reads of any size, a byte at a time included.
        let n = rng.random_range(1..=rest.len().min(5_000));
        let (read, tail) = rest.split_at(n);
        reader.push(read, |s| seen.push(s)).expect("a valid stream");
        rest = tail;
    }
    seen
}

#[test]
fn the_oracle_reads_every_valid_stream_as_the_product_does_however_it_is_split() {
    for seed in 0..40 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bytes = stream(&mut rng, 60);
        let product = product_view(&bytes);
        assert_eq!(product.len(), 60);
        assert_eq!(oracle_view(&bytes, &mut rng), product, "seed {seed}");
    }
}

#[test]
fn the_oracle_reads_the_contracts_own_example_ping() {
    // PROTOCOL.md, "Pings, pongs and hop stamps": the pong of seq 1.
    let mut bytes = vec![0, 0, 0, 0x3C, 0x4E, 0x53];
    for v in [1u64, 42, 1000, 4000, 9000, 14_000] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.extend_from_slice(&[0; 10]);
    let mut seen = Vec::new();
    StreamReader::default()
        .push(&bytes, |s| seen.push(s))
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].opcode, OP_PERF_PONG);
    assert_eq!((seen[0].seq, seen[0].route), (1, 42));
    assert_eq!(seen[0].t, [1000, 4000, 9000, 14_000]);
}

#[test]
fn a_handoff_reads_an_orders_first_answer_inside_the_gateways_lane_frame() {
    // A ping handed over as it is, then an `OrderAccepted` the way the
    // gateway hands it back to its origin: `credit:u32, opcode:u16`, then
    // the answer's payload (header, then 34 bytes of fields).
    let mut ping = vec![0, 0, 0, 50];
    ping.extend_from_slice(&OP_PERF_PING.to_be_bytes());
    for v in [3u64, 5, 10, 20, 0, 0] {
        ping.extend_from_slice(&v.to_be_bytes());
    }
    let mut answer = Vec::new();
    for v in [7u64, 1 << 48, 10, 20, 30, 45] {
        answer.extend_from_slice(&v.to_be_bytes());
    }
    answer.extend_from_slice(&9u32.to_be_bytes()); // account
    answer.extend_from_slice(&[0; 30]);
    let mut task = ping;
    let length = (2 + 4 + 2 + answer.len()) as u32;
    task.extend_from_slice(&length.to_be_bytes());
    task.extend_from_slice(&LANE_ROUTED_FIRST.to_be_bytes());
    task.extend_from_slice(&1234u32.to_be_bytes());
    task.extend_from_slice(&op::ORDER_ACCEPTED.to_be_bytes());
    task.extend_from_slice(&answer);
    let mut seen = Vec::new();
    read_lane(&task, |s| seen.push(s)).unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].opcode, seen[0].seq), (OP_PERF_PING, 3));
    let first = seen[1];
    assert_eq!(first.opcode, op::ORDER_ACCEPTED);
    assert!(first.well_formed);
    assert_eq!(
        (first.seq, first.route, first.t),
        (7, 1 << 48, [10, 20, 30, 45])
    );
    assert_eq!(first.order.account, 9);
}

#[test]
fn a_frame_shorter_than_its_opcode_or_over_the_bound_is_a_typed_fault() {
    let mut reader = StreamReader::default();
    assert_eq!(
        reader.push(&[0, 0, 0, 1, 0], |_| {}),
        Err(WireFault::LengthTooSmall(1))
    );
    let mut reader = StreamReader::default();
    assert_eq!(
        reader.push(&[0x7f, 0, 0, 0], |_| {}),
        Err(WireFault::LengthTooLarge(0x7f00_0000))
    );
}

#[test]
fn a_ping_payload_shorter_than_its_fixed_fields_is_read_as_malformed() {
    let mut seen = Vec::new();
    let mut bytes = vec![0, 0, 0, 12];
    bytes.extend_from_slice(&OP_PERF_PING.to_be_bytes());
    bytes.extend_from_slice(&[0; 10]);
    StreamReader::default()
        .push(&bytes, |s| seen.push(s))
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].well_formed);
    assert_eq!(op::PERF_PING, OP_PERF_PING);
}

#[test]
fn a_route_tag_reads_as_the_gateway_packs_it() {
    let tag = fep_trading::gateway::RouteTag {
        origin: fep_core::WorkerId(3),
        target: fep_core::WorkerId(7),
        conn: fep_core::ConnId::from_bits((5 << 24) | 9),
    };
    let route = Route::read(tag.to_bits());
    assert_eq!((route.origin, route.target), (3, 7));
    assert_eq!(route.conn_text(), format!("{:?}", tag.conn));
}

#[test]
fn the_checkers_wire_reading_calls_no_product_parser() {
    // A decoder bug shared by product and checker would hide itself: the
    // modules that read the wire for the invariants must not use it.
    for (name, source) in [
        ("oracle.rs", include_str!("../src/oracle.rs")),
        ("observe.rs", include_str!("../src/observe.rs")),
        ("check.rs", include_str!("../src/check.rs")),
    ] {
        // The unit tests below a module's `#[cfg(test)]` may build product
        // values to feed it; the code above may not parse with the product.
        let source = source.split("#[cfg(test)]").next().unwrap_or(source);
        for banned in [
            "Decoder",
            "fep_trading::msg",
            "Message::decode",
            "RouteTag",
            "from_bits",
            "fep_core::frame",
        ] {
            assert!(!source.contains(banned), "{name} uses {banned}");
        }
    }
}
