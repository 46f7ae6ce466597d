//! Properties of framing, messages and roles over generated input.

use fep_core::frame::{encode_frame, Decoder};
use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR};
use fep_core::{ErrorCode, Frame, Nanos, Worker, WorkerConfig, WorkerId};
use fep_load::client::{Client, ClientConfig};
use fep_load::harness::{Harness, HarnessConfig, NodeRef};
use fep_trading::msg::{Message, PerfPing, RoleHelloAck, RoleHelloReq};
use proptest::prelude::*;

fn frames() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    prop::collection::vec(
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..300)),
        0..20,
    )
}

/// Cuts `bytes` at the given (sorted, deduplicated) points.
fn cut<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[at..c]);
        at = c;
    }
    chunks
}

fn decode_all(decoder: &mut Decoder, chunks: &[&[u8]]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut frames = decoder.frames(chunk);
        while let Some(f) = frames.next() {
            let f = f.expect("valid frames");
            out.push((f.opcode, f.payload.to_vec()));
        }
    }
    out
}

fn error_codes() -> impl Strategy<Value = ErrorCode> {
    any::<u16>().prop_map(ErrorCode::from_u16)
}

fn messages() -> impl Strategy<Value = (u16, Vec<u8>, Vec<u64>, String)> {
    (
        0u16..6,
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(any::<u64>(), 6),
        "[a-zA-Zé0-9 ]{0,32}",
    )
}

fn build<'a>(kind: u16, pad: &'a [u8], n: &[u64], text: &'a str, code: ErrorCode) -> Message<'a> {
    let ping = PerfPing {
        seq: n[0],
        route: n[1],
        t1: Nanos(n[2]),
        t2: Nanos(n[3]),
        t3: Nanos(n[4]),
        t4: Nanos(n[5]),
        pad,
    };
    match kind {
        0 => Message::Error(ErrorMsg { code, reason: text }),
        1 => Message::Reject(RejectMsg {
            code,
            seq: n[0],
            reason: text,
        }),
        2 => Message::RoleHelloReq(RoleHelloReq {
            role: n[0] as u8,
            version: n[1] as u16,
            token: text,
        }),
        3 => Message::RoleHelloAck(RoleHelloAck {
            role: n[0] as u8,
            version: n[1] as u16,
        }),
        4 => Message::PerfPing(ping),
        _ => Message::PerfPong(ping),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_frames_cut_into_any_chunks_decode_to_the_same_frames(
        frames in frames(),
        points in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut wire = Vec::new();
        for (opcode, payload) in &frames {
            encode_frame(&mut wire, *opcode, payload);
        }
        let mut decoder = Decoder::new(1024);
        let got = decode_all(&mut decoder, &cut(&wire, &points));
        prop_assert_eq!(got, frames);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn decode_of_encode_is_the_identity_for_every_message(
        (kind, pad, n, text) in messages(),
        code in error_codes(),
    ) {
        let msg = build(kind, &pad, &n, &text, code);
        let mut wire = Vec::new();
        let len = msg.encode(&mut wire);
        prop_assert_eq!(len, wire.len());
        let mut decoder = Decoder::new(1 << 16);
        let mut frames = decoder.frames(&wire);
        let frame: Frame<'_> = frames.next().unwrap().unwrap();
        prop_assert_eq!(frame.wire_len(), wire.len());
        prop_assert_eq!(Message::decode(frame).unwrap(), msg);
        prop_assert!(frames.next().is_none());
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        points in prop::collection::vec(any::<usize>(), 0..20),
        max in 2u32..5000,
    ) {
        let mut decoder = Decoder::new(max);
        for chunk in cut(&bytes, &points) {
            let mut frames = decoder.frames(chunk);
            while let Some(f) = frames.next() {
                if let Ok(f) = f {
                    prop_assert!(f.payload.len() + 2 <= max as usize);
                    let _ = Message::decode(f);
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_a_role_or_harm_another_session(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        handshake_first in any::<bool>(),
        target in 0u8..2,
    ) {
        let client = ClientConfig { connections: 2, warmup: 0, count: 200, ..Default::default() };
        let mut h = Harness::new(HarnessConfig { client, ..Default::default() });
        let target = if target == 0 { NodeRef::Gateway(0) } else { NodeRef::Exchange };
        let raw = h.open_raw(target);
        if handshake_first {
            let mut hello = Vec::new();
            RoleHelloReq { role: 1, version: 1, token: "" }.encode(&mut hello);
            h.send_raw(raw, &hello);
        }
        h.send_raw(raw, &bytes);
        h.run();
        let report = h.client().service().report();
        prop_assert_eq!(report.pongs, 200, "the healthy client was served");
        prop_assert_eq!(report.errors, 0);
    }

    #[test]
    fn random_bytes_close_the_client_connection_with_one_error_or_leave_it_quiet(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        use fep_core::{Effect, Phase};
        let mut client = Worker::new(WorkerId(0), WorkerConfig::default(), Client::new(ClientConfig::default()));
        client.start(Nanos(1));
        let conn = std::iter::from_fn(|| client.poll_effect())
            .find_map(|e| match e {
                Effect::Connect { conn, .. } => Some(conn),
                _ => None,
            })
            .expect("the client dials");
        client.handle_connected(Nanos(2), conn);
        while client.poll_effect().is_some() {}
        let hello = client.transmit_buf(conn).len();
        client.handle_written(Nanos(2), conn, hello);
        client.handle_read(Nanos(3), conn, &bytes);
        let effects: Vec<Effect> = std::iter::from_fn(|| client.poll_effect()).collect();
        let closed = effects.contains(&Effect::Close { conn });
        let closing = client.session(conn).is_some_and(|s| s.state.phase == Phase::Closing);
        prop_assert_eq!(closed, closing, "a close is asked for exactly when the session closes");
        let mut decoder = Decoder::new(1 << 20);
        let mut sent = Vec::new();
        let mut frames = decoder.frames(client.transmit_buf(conn));
        while let Some(frame) = frames.next() {
            sent.push(frame.expect("the client writes whole frames").opcode);
        }
        if closed {
            // Its own failure says why in one `Error`; the peer's `Error`
            // is followed by a plain close.
            prop_assert!(sent.is_empty() || sent == vec![OP_ERROR], "{:?}", sent);
        } else {
            // Not hand-shaked with all its peers, it sends nothing else.
            prop_assert!(sent.is_empty(), "{:?}", sent);
        }
    }
}
