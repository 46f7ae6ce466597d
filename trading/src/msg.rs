//! Every message of PROTOCOL.md: opcodes, payload layouts, encode and decode.
//!
//! Decoding borrows from the frame (tokens, reasons and pads are views);
//! encoding appends to a caller-owned buffer. Neither allocates.

use fep_core::frame::FrameWriter;
use fep_core::wire::{ErrorMsg, RejectMsg, OP_ERROR, OP_REJECT};
use fep_core::{Fault, Frame, Nanos};

/// Opcode of `RoleHelloReq`.
pub const OP_ROLE_HELLO_REQ: u16 = 20001;
/// Opcode of `RoleHelloAck`.
pub const OP_ROLE_HELLO_ACK: u16 = 20002;
/// Opcode of `PerfPing`.
pub const OP_PERF_PING: u16 = 20050;
/// Opcode of `PerfPong`.
pub const OP_PERF_PONG: u16 = 20051;

/// The only protocol version.
pub const PROTOCOL_VERSION: u16 = 1;
/// Longest hand-shake token, in bytes.
pub const TOKEN_LEN_MAX: usize = 64;

/// Bytes of a ping's fixed fields: seq, route, t1..t4.
pub const PING_FIXED_LEN: usize = 48;
/// Smallest `PerfPing` frame on the wire (no pad): 4 + 2 + 48.
pub const PING_FRAME_LEN_MIN: usize = 4 + 2 + PING_FIXED_LEN;

/// Offsets of a ping's fields within its frame (length prefix included), for
/// stamping a frame in place while it is forwarded.
pub mod offset {
    /// The opcode.
    pub const OPCODE: usize = 4;
    /// `seq`.
    pub const SEQ: usize = 6;
    /// `route`.
    pub const ROUTE: usize = 14;
    /// `t1`.
    pub const T1: usize = 22;
    /// `t2`.
    pub const T2: usize = 30;
    /// `t3`.
    pub const T3: usize = 38;
    /// `t4`.
    pub const T4: usize = 46;
}

/// Writes `v` big-endian at `at` in a frame being forwarded.
pub fn patch_u64(frame: &mut [u8], at: usize, v: u64) {
    frame[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Reads the big-endian `u64` at `at` of a frame.
pub fn read_u64(frame: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(frame[at..at + 8].try_into().expect("8 bytes"))
}

/// Who is on the other end of a hand-shake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A load generator or trading client.
    Client,
    /// A gateway (FEP).
    Gateway,
    /// An exchange.
    Exchange,
}

impl Role {
    /// The role byte on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            Role::Client => 1,
            Role::Gateway => 2,
            Role::Exchange => 3,
        }
    }

    /// The role from its byte, `None` for a byte no role has.
    pub const fn from_u8(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Client),
            2 => Some(Role::Gateway),
            3 => Some(Role::Exchange),
            _ => None,
        }
    }
}

/// `RoleHelloReq{role, version, token}`. The role is kept as the raw byte:
/// an unknown role is the acceptor's `ROLE_REFUSED`, not a decoding error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleHelloReq<'a> {
    /// The initiator's role byte.
    pub role: u8,
    /// Protocol version (1).
    pub version: u16,
    /// Shared secret, possibly empty, at most 64 bytes of UTF-8.
    pub token: &'a str,
}

/// `RoleHelloAck{role, version}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleHelloAck {
    /// The acceptor's role byte.
    pub role: u8,
    /// Protocol version (1).
    pub version: u16,
}

/// `PerfPing` / `PerfPong`: the same layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerfPing<'a> {
    /// Unique per connection.
    pub seq: u64,
    /// The gateway's routing tag (0 from the client).
    pub route: u64,
    /// Client send time.
    pub t1: Nanos,
    /// Gateway forward time (0 without a gateway).
    pub t2: Nanos,
    /// Exchange arrival time.
    pub t3: Nanos,
    /// Gateway return time (0 without a gateway).
    pub t4: Nanos,
    /// Opaque padding, echoed unchanged.
    pub pad: &'a [u8],
}

/// Any message of the protocol, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// `Error` (fatal).
    Error(ErrorMsg<'a>),
    /// `Reject` (one request).
    Reject(RejectMsg<'a>),
    /// `RoleHelloReq`.
    RoleHelloReq(RoleHelloReq<'a>),
    /// `RoleHelloAck`.
    RoleHelloAck(RoleHelloAck),
    /// `PerfPing`.
    PerfPing(PerfPing<'a>),
    /// `PerfPong`.
    PerfPong(PerfPing<'a>),
}

fn malformed(opcode: u16, what: &'static str) -> Fault {
    Fault::Malformed { opcode, what }
}

impl<'a> RoleHelloReq<'a> {
    /// `role`'s hand-shake at this protocol's version, presenting `token`.
    pub fn new(role: Role, token: &'a str) -> RoleHelloReq<'a> {
        RoleHelloReq {
            role: role.to_u8(),
            version: PROTOCOL_VERSION,
            token,
        }
    }

    /// Decodes the payload.
    pub fn decode(payload: &'a [u8]) -> Result<RoleHelloReq<'a>, Fault> {
        let Some((head, token)) = payload.split_first_chunk::<3>() else {
            return Err(malformed(
                OP_ROLE_HELLO_REQ,
                "RoleHelloReq shorter than 3 bytes",
            ));
        };
        if token.len() > TOKEN_LEN_MAX {
            return Err(malformed(OP_ROLE_HELLO_REQ, "token longer than 64 bytes"));
        }
        let token = std::str::from_utf8(token)
            .map_err(|_| malformed(OP_ROLE_HELLO_REQ, "token is not UTF-8"))?;
        Ok(RoleHelloReq {
            role: head[0],
            version: u16::from_be_bytes([head[1], head[2]]),
            token,
        })
    }

    /// Appends the frame. A token over 64 bytes is the caller's bug (a CLI
    /// refuses it): it would be a frame every acceptor rejects.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        assert!(
            self.token.len() <= TOKEN_LEN_MAX,
            "token of {} bytes",
            self.token.len()
        );
        let mut w = FrameWriter::new(out, OP_ROLE_HELLO_REQ);
        w.put_u8(self.role)
            .put_u16(self.version)
            .put_slice(self.token.as_bytes());
        w.finish()
    }
}

impl RoleHelloAck {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<RoleHelloAck, Fault> {
        match payload {
            [role, v0, v1] => Ok(RoleHelloAck {
                role: *role,
                version: u16::from_be_bytes([*v0, *v1]),
            }),
            _ => Err(malformed(OP_ROLE_HELLO_ACK, "RoleHelloAck is not 3 bytes")),
        }
    }

    /// Appends the frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let mut w = FrameWriter::new(out, OP_ROLE_HELLO_ACK);
        w.put_u8(self.role).put_u16(self.version);
        w.finish()
    }
}

impl<'a> PerfPing<'a> {
    /// A ping as a client sends it: its `seq`, its send time `t1`, and
    /// `route = t2 = t3 = t4 = 0` (the gateway and the exchange fill them).
    pub fn from_client(seq: u64, t1: Nanos, pad: &'a [u8]) -> PerfPing<'a> {
        PerfPing {
            seq,
            route: 0,
            t1,
            t2: Nanos::ZERO,
            t3: Nanos::ZERO,
            t4: Nanos::ZERO,
            pad,
        }
    }

    /// Decodes the payload of a `PerfPing` or `PerfPong` with `opcode`.
    pub fn decode(opcode: u16, payload: &'a [u8]) -> Result<PerfPing<'a>, Fault> {
        let Some((fixed, pad)) = payload.split_first_chunk::<PING_FIXED_LEN>() else {
            return Err(malformed(opcode, "PerfPing shorter than 48 bytes"));
        };
        let field =
            |i: usize| u64::from_be_bytes(fixed[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(PerfPing {
            seq: field(0),
            route: field(1),
            t1: Nanos(field(2)),
            t2: Nanos(field(3)),
            t3: Nanos(field(4)),
            t4: Nanos(field(5)),
            pad,
        })
    }

    /// Appends the frame with `opcode` (`PerfPing` or `PerfPong`).
    pub fn encode(&self, opcode: u16, out: &mut Vec<u8>) -> usize {
        let mut w = FrameWriter::new(out, opcode);
        w.put_u64(self.seq).put_u64(self.route);
        for t in [self.t1, self.t2, self.t3, self.t4] {
            w.put_u64(t.0);
        }
        w.put_slice(self.pad);
        w.finish()
    }

    /// Size of this message's frame on the wire.
    pub fn wire_len(&self) -> usize {
        PING_FRAME_LEN_MIN + self.pad.len()
    }
}

impl<'a> Message<'a> {
    /// Decodes a frame. `Err(UnknownOpcode)` for an opcode not in PROTOCOL.md.
    pub fn decode(frame: Frame<'a>) -> Result<Message<'a>, Fault> {
        let p = frame.payload;
        Ok(match frame.opcode {
            OP_ERROR => Message::Error(ErrorMsg::decode(p)?),
            OP_REJECT => Message::Reject(RejectMsg::decode(p)?),
            OP_ROLE_HELLO_REQ => Message::RoleHelloReq(RoleHelloReq::decode(p)?),
            OP_ROLE_HELLO_ACK => Message::RoleHelloAck(RoleHelloAck::decode(p)?),
            OP_PERF_PING => Message::PerfPing(PerfPing::decode(OP_PERF_PING, p)?),
            OP_PERF_PONG => Message::PerfPong(PerfPing::decode(OP_PERF_PONG, p)?),
            opcode => return Err(Fault::UnknownOpcode { opcode }),
        })
    }

    /// Appends the message's frame to `out`; returns its size.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        match self {
            Message::Error(m) => m.encode(out),
            Message::Reject(m) => m.encode(out),
            Message::RoleHelloReq(m) => m.encode(out),
            Message::RoleHelloAck(m) => m.encode(out),
            Message::PerfPing(m) => m.encode(OP_PERF_PING, out),
            Message::PerfPong(m) => m.encode(OP_PERF_PONG, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_offsets_match_the_encoding() {
        let ping = PerfPing {
            seq: 1,
            route: 2,
            t1: Nanos(3),
            t2: Nanos(4),
            t3: Nanos(5),
            t4: Nanos(6),
            pad: &[7; 10],
        };
        let mut out = Vec::new();
        assert_eq!(ping.encode(OP_PERF_PING, &mut out), PING_FRAME_LEN_MIN + 10);
        assert_eq!(
            u16::from_be_bytes([out[offset::OPCODE], out[offset::OPCODE + 1]]),
            OP_PERF_PING
        );
        let fields = [
            offset::SEQ,
            offset::ROUTE,
            offset::T1,
            offset::T2,
            offset::T3,
            offset::T4,
        ];
        for (i, at) in fields.into_iter().enumerate() {
            assert_eq!(read_u64(&out, at), i as u64 + 1);
        }
    }

    #[test]
    fn hello_checks_are_typed() {
        assert!(RoleHelloReq::decode(&[1, 0]).is_err());
        let long = [[1u8, 0, 1].as_slice(), &[b'a'; 65]].concat();
        assert!(matches!(
            RoleHelloReq::decode(&long),
            Err(Fault::Malformed { .. })
        ));
        assert!(matches!(
            RoleHelloReq::decode(&[1, 0, 1, 0xC3]),
            Err(Fault::Malformed { .. })
        ));
        assert_eq!(RoleHelloReq::decode(&[9, 0, 2]).unwrap().role, 9);
        assert!(RoleHelloAck::decode(&[3, 0, 1, 0]).is_err());
    }
}
