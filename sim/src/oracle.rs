//! The checker's own reading of the wire, written from PROTOCOL.md alone.
//!
//! It shares no parsing code with the product (not the core's frame
//! reader, not the trading message codec, not the gateway's tag type): a bug in
//! the product's decoder must not blind the checker that is meant to catch
//! it. It is deliberately plain (a byte buffer and big-endian reads) and
//! not fast; it runs only in the simulator.

use std::fmt;

/// The largest `length` a frame may have on any process (PROTOCOL.md:
/// `max_frame`, 65,536 by default, a flag; the checker accepts up to the
/// flag's ceiling so that a run with a raised `--max-frame` is followed).
pub const FRAME_LENGTH_MAX: u32 = 16 * 1024 * 1024;
/// Bytes in front of every frame's opcode: `length:u32`.
const LENGTH_LEN: usize = 4;
/// `opcode:u16`.
const OPCODE_LEN: usize = 2;
/// The fixed part of a `PerfPing`/`PerfPong` payload: six `u64`s.
pub const PING_FIXED_LEN: usize = 6 * 8;

/// Opcodes the checker reads (PROTOCOL.md, Messages).
pub mod op {
    /// `Error`.
    pub const ERROR: u16 = 1;
    /// `Reject`.
    pub const REJECT: u16 = 2;
    /// `RoleHelloReq`.
    pub const ROLE_HELLO_REQ: u16 = 20001;
    /// `RoleHelloAck`.
    pub const ROLE_HELLO_ACK: u16 = 20002;
    /// `PerfPing`.
    pub const PERF_PING: u16 = 20050;
    /// `PerfPong`.
    pub const PERF_PONG: u16 = 20051;
}

/// Why a stream stopped being a stream of frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFault {
    /// `length < 2`: not even an opcode.
    LengthTooSmall(u32),
    /// `length` above [`FRAME_LENGTH_MAX`].
    LengthTooLarge(u32),
}

impl fmt::Display for WireFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireFault::LengthTooSmall(n) => write!(f, "frame length {n} < 2"),
            WireFault::LengthTooLarge(n) => {
                write!(f, "frame length {n} > {FRAME_LENGTH_MAX}")
            }
        }
    }
}

/// What the checker needs of one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The opcode.
    pub opcode: u16,
    /// `seq` of a ping, pong or `Reject`.
    pub seq: u64,
    /// `route` of a ping or pong.
    pub route: u64,
    /// `t1..t4` of a ping or pong.
    pub t: [u64; 4],
    /// FNV-1a of a ping's or pong's pad.
    pub pad: u64,
    /// The code of an `Error` or `Reject`.
    pub code: u16,
    /// Whether the payload had the size its opcode requires (a message
    /// the checker does not read counts as well-formed).
    pub well_formed: bool,
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

/// Reads one frame's `opcode` and `payload` into what the checker needs.
pub fn read_message(opcode: u16, payload: &[u8]) -> Seen {
    let mut seen = Seen {
        opcode,
        well_formed: true,
        ..Seen::default()
    };
    match opcode {
        op::PERF_PING | op::PERF_PONG if payload.len() >= PING_FIXED_LEN => {
            seen.seq = be_u64(payload, 0);
            seen.route = be_u64(payload, 8);
            for (i, t) in seen.t.iter_mut().enumerate() {
                *t = be_u64(payload, 16 + 8 * i);
            }
            seen.pad = crate::trace::fnv1a64(&payload[PING_FIXED_LEN..]);
        }
        // `code:u16, seq:u64, reason`.
        op::REJECT if payload.len() >= 10 => {
            seen.code = be_u16(payload, 0);
            seen.seq = be_u64(payload, 2);
        }
        // `code:u16, reason`.
        op::ERROR if payload.len() >= 2 => seen.code = be_u16(payload, 0),
        op::PERF_PING | op::PERF_PONG | op::REJECT | op::ERROR => seen.well_formed = false,
        _ => {}
    }
    seen
}

/// One direction of one connection: bytes buffered until a whole frame is
/// there (PROTOCOL.md: "a reader buffers until it has `4 + length`
/// bytes"). Holds at most one frame plus one read.
#[derive(Debug, Default)]
pub struct StreamReader {
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    start: usize,
}

impl StreamReader {
    /// Appends `bytes`, then calls `emit` with every whole frame now
    /// there. A stream that breaks the framing rules stops at the fault.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(Seen)) -> Result<(), WireFault> {
        self.buf.extend_from_slice(bytes);
        loop {
            let rest = &self.buf[self.start..];
            if rest.len() < LENGTH_LEN {
                break;
            }
            let length = be_u32(rest, 0);
            if length < OPCODE_LEN as u32 {
                return Err(WireFault::LengthTooSmall(length));
            }
            if length > FRAME_LENGTH_MAX {
                return Err(WireFault::LengthTooLarge(length));
            }
            let whole = LENGTH_LEN + length as usize;
            if rest.len() < whole {
                break;
            }
            let opcode = be_u16(rest, LENGTH_LEN);
            emit(read_message(opcode, &rest[LENGTH_LEN + OPCODE_LEN..whole]));
            self.start += whole;
        }
        // Keep only the partial frame: the buffer stays one frame long.
        self.buf.drain(..self.start);
        self.start = 0;
        Ok(())
    }
}

/// A gateway route tag read as the gateway lays it out
/// (docs/ARCHITECTURE.md, Routing): origin worker in bits 63–56, target
/// worker in bits 55–48, the client connection in bits 47–0 as slot index
/// (47–24) and generation (23–0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The worker owning the client session.
    pub origin: u16,
    /// The worker whose upstream carries the ping.
    pub target: u16,
    /// The client connection's slot on `origin`.
    pub slot: u64,
    /// The slot's generation.
    pub generation: u64,
}

impl Route {
    /// Reads `route`.
    pub fn read(route: u64) -> Route {
        Route {
            origin: (route >> 56) as u16,
            target: ((route >> 48) & 0xff) as u16,
            slot: (route >> 24) & 0xff_ffff,
            generation: route & 0xff_ffff,
        }
    }

    /// The connection as the driver's `ConnId` prints it (`c{slot}.{gen}`),
    /// compared as text so that no product packing code is trusted.
    pub fn conn_text(self) -> String {
        format!("c{}.{}", self.slot, self.generation)
    }
}
