//! What the in-memory gateway and exchange tests share: the client side of
//! the wire (hello, pings, the answers a client reads) and a frame splitter.
//! Each test binary uses part of it.
#![allow(dead_code)]

use fep_core::frame::{encode_frame, Decoder};
use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{ErrorCode, Nanos};
use fep_trading::msg::{offset, patch_u64, PerfPing, RoleHelloReq, OP_PERF_PING, OP_PERF_PONG};

/// What a client read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Pong(u64),
    Reject(u64, ErrorCode),
    Error(ErrorCode),
}

impl Answer {
    /// The request it answers (an `Error` answers none).
    pub fn seq(self) -> Option<u64> {
        match self {
            Answer::Pong(seq) | Answer::Reject(seq, _) => Some(seq),
            Answer::Error(_) => None,
        }
    }
}

/// The whole frames in `bytes`, as (opcode, payload).
pub fn frames(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut decoder = Decoder::new(1 << 20);
    let mut out = Vec::new();
    let mut it = decoder.frames(bytes);
    while let Some(frame) = it.next() {
        let frame = frame.expect("the service writes well-formed frames");
        out.push((frame.opcode, frame.payload.to_vec()));
    }
    out
}

/// The answers a client read in `bytes` (anything else is the test's bug).
pub fn answers_in(bytes: &[u8]) -> Vec<Answer> {
    frames(bytes)
        .into_iter()
        .map(|(opcode, payload)| match opcode {
            OP_PERF_PONG => Answer::Pong(PerfPing::decode(opcode, &payload).unwrap().seq),
            OP_REJECT => {
                let r = RejectMsg::decode(&payload).unwrap();
                Answer::Reject(r.seq, r.code)
            }
            OP_ERROR => Answer::Error(ErrorMsg::decode(&payload).unwrap().code),
            other => panic!("a client got opcode {other}"),
        })
        .collect()
}

/// A `RoleHelloReq` of role `role` (1 client, 2 gateway) with no token.
pub fn hello(role: u8) -> Vec<u8> {
    let mut out = Vec::new();
    RoleHelloReq {
        role,
        version: 1,
        token: "",
    }
    .encode(&mut out);
    out
}

/// A client's ping `seq` sent at `t1`, with a short pad.
pub fn ping(seq: u64, t1: Nanos) -> Vec<u8> {
    let mut frame = Vec::new();
    PerfPing::from_client(seq, t1, b"pad").encode(OP_PERF_PING, &mut frame);
    frame
}

/// The exchange's faithful answer to a ping frame (whole, header included).
pub fn pong_of(ping: &[u8]) -> Vec<u8> {
    let mut pong = ping.to_vec();
    pong[offset::OPCODE..offset::OPCODE + 2].copy_from_slice(&OP_PERF_PONG.to_be_bytes());
    patch_u64(&mut pong, offset::T3, 7);
    pong
}

/// The exchange's faithful answer to a ping's payload, as a whole frame.
pub fn pong_of_payload(payload: &[u8]) -> Vec<u8> {
    let mut pong = Vec::new();
    encode_frame(&mut pong, OP_PERF_PONG, payload);
    patch_u64(&mut pong, offset::T3, 7);
    pong
}
