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
    /// `NewOrder`.
    pub const NEW_ORDER: u16 = 20100;
    /// `CancelOrder`.
    pub const CANCEL_ORDER: u16 = 20101;
    /// `ReplaceOrder`.
    pub const REPLACE_ORDER: u16 = 20102;
    /// `BookQuery`.
    pub const BOOK_QUERY: u16 = 20103;
    /// `BalanceQuery`.
    pub const BALANCE_QUERY: u16 = 20104;
    /// `OrderAccepted`.
    pub const ORDER_ACCEPTED: u16 = 20150;
    /// `OrderExecuted`.
    pub const ORDER_EXECUTED: u16 = 20151;
    /// `OrderCanceled`.
    pub const ORDER_CANCELED: u16 = 20152;
    /// `OrderReplaced`.
    pub const ORDER_REPLACED: u16 = 20153;
    /// `BookSnapshot`.
    pub const BOOK_SNAPSHOT: u16 = 20154;
    /// `Balance`.
    pub const BALANCE: u16 = 20155;
}

/// `OrderCanceled.reason` of a cancel on request (PROTOCOL.md).
pub const CANCEL_REASON_REQUESTED: u8 = 1;
/// `OrderCanceled.reason` of an IOC's rest.
pub const CANCEL_REASON_IOC: u8 = 2;
/// `OrderExecuted.liquidity` of the resting order.
pub const LIQUIDITY_MAKER: u8 = 1;
/// Bytes of one `BookSnapshot` level: `price:i64, qty:u64, orders:u32`.
pub const LEVEL_LEN: usize = 8 + 8 + 4;

/// What a frame is to the request/answer bookkeeping of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgClass {
    /// A request a client sends and waits on: a ping or an order-entry
    /// request (20100–20104).
    Request,
    /// The *first answer* to a request (PROTOCOL.md, "Answers, and their
    /// order"): a pong, `OrderAccepted`, a requested `OrderCanceled`,
    /// `OrderReplaced`, `BookSnapshot`, `Balance`.
    First,
    /// A later message about an order: a fill, or an IOC's rest.
    Later,
    /// A `Reject` (a first answer too, with its own rules).
    Reject,
    /// Anything else (hand-shake, heartbeat, `Error`).
    Other,
}

/// The class of a frame with `opcode` and, for an `OrderCanceled`, its
/// `reason`.
pub fn class(opcode: u16, cancel_reason: u8) -> MsgClass {
    match opcode {
        op::PERF_PING | op::NEW_ORDER..=op::BALANCE_QUERY => MsgClass::Request,
        op::PERF_PONG
        | op::ORDER_ACCEPTED
        | op::ORDER_REPLACED
        | op::BOOK_SNAPSHOT
        | op::BALANCE => MsgClass::First,
        op::ORDER_CANCELED if cancel_reason == CANCEL_REASON_REQUESTED => MsgClass::First,
        op::ORDER_EXECUTED | op::ORDER_CANCELED => MsgClass::Later,
        op::REJECT => MsgClass::Reject,
        _ => MsgClass::Other,
    }
}

/// The order-entry fields of a message, as PROTOCOL.md lays them out after
/// the 48-byte header. Fields the opcode does not carry are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderFields {
    /// `account`.
    pub account: u32,
    /// `instrument` (orders, book queries and snapshots).
    pub instrument: u32,
    /// `asset` (balance queries and balances).
    pub asset: u32,
    /// `order_id`.
    pub order_id: u64,
    /// `exec_id`.
    pub exec_id: u64,
    /// `orig_cl_ord_id` of a cancel or replace.
    pub orig: u64,
    /// `side`.
    pub side: u8,
    /// `tif`.
    pub tif: u8,
    /// `liquidity`.
    pub liquidity: u8,
    /// `reason` of an `OrderCanceled`.
    pub reason: u8,
    /// `price`.
    pub price: i64,
    /// `qty` (`canceled_qty` of an `OrderCanceled`).
    pub qty: u64,
    /// `leaves`.
    pub leaves: u64,
    /// `total` of a `Balance`.
    pub total: i64,
    /// `locked` of a `Balance`.
    pub locked: i64,
    /// `depth` of a `BookQuery`.
    pub depth: u16,
    /// `nbids` of a `BookSnapshot`.
    pub nbids: u16,
    /// `nasks` of a `BookSnapshot`.
    pub nasks: u16,
    /// FNV-1a of a `BookSnapshot`'s levels, as they are on the wire.
    pub levels: u64,
}

/// The payload length after the header of each fixed-size order message
/// (PROTOCOL.md, "Messages"); `None` for other opcodes.
fn order_body_len(opcode: u16) -> Option<usize> {
    Some(match opcode {
        op::NEW_ORDER => 4 + 4 + 1 + 1 + 8 + 8,
        op::CANCEL_ORDER => 4 + 8,
        op::REPLACE_ORDER => 4 + 8 + 8 + 8,
        op::BOOK_QUERY => 4 + 2,
        op::BALANCE_QUERY => 4 + 4,
        op::ORDER_ACCEPTED => 4 + 8 + 4 + 1 + 1 + 8 + 8,
        op::ORDER_EXECUTED => 4 + 8 + 8 + 8 + 8 + 8 + 1,
        op::ORDER_CANCELED => 4 + 8 + 8 + 1,
        op::ORDER_REPLACED => 4 + 8 + 8 + 8,
        op::BALANCE => 4 + 4 + 8 + 8,
        _ => return None,
    })
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    be_u64(b, at) as i64
}

/// Reads the body (after the header) of order message `opcode`, whose
/// length was checked.
fn read_order(opcode: u16, b: &[u8]) -> OrderFields {
    let mut o = OrderFields::default();
    match opcode {
        op::NEW_ORDER => {
            o.account = be_u32(b, 0);
            o.instrument = be_u32(b, 4);
            o.side = b[8];
            o.tif = b[9];
            o.price = be_i64(b, 10);
            o.qty = be_u64(b, 18);
        }
        op::CANCEL_ORDER => {
            o.account = be_u32(b, 0);
            o.orig = be_u64(b, 4);
        }
        op::REPLACE_ORDER => {
            o.account = be_u32(b, 0);
            o.orig = be_u64(b, 4);
            o.price = be_i64(b, 12);
            o.qty = be_u64(b, 20);
        }
        op::BOOK_QUERY => {
            o.instrument = be_u32(b, 0);
            o.depth = be_u16(b, 4);
        }
        op::BALANCE_QUERY => {
            o.account = be_u32(b, 0);
            o.asset = be_u32(b, 4);
        }
        op::ORDER_ACCEPTED => {
            o.account = be_u32(b, 0);
            o.order_id = be_u64(b, 4);
            o.instrument = be_u32(b, 12);
            o.side = b[16];
            o.tif = b[17];
            o.price = be_i64(b, 18);
            o.qty = be_u64(b, 26);
        }
        op::ORDER_EXECUTED => {
            o.account = be_u32(b, 0);
            o.order_id = be_u64(b, 4);
            o.exec_id = be_u64(b, 12);
            o.price = be_i64(b, 20);
            o.qty = be_u64(b, 28);
            o.leaves = be_u64(b, 36);
            o.liquidity = b[44];
        }
        op::ORDER_CANCELED => {
            o.account = be_u32(b, 0);
            o.order_id = be_u64(b, 4);
            o.qty = be_u64(b, 12);
            o.reason = b[20];
        }
        op::ORDER_REPLACED => {
            o.account = be_u32(b, 0);
            o.order_id = be_u64(b, 4);
            o.price = be_i64(b, 12);
            o.qty = be_u64(b, 20);
        }
        op::BALANCE => {
            o.account = be_u32(b, 0);
            o.asset = be_u32(b, 4);
            o.total = be_i64(b, 8);
            o.locked = be_i64(b, 16);
        }
        _ => {}
    }
    o
}

/// Reads a `BookSnapshot` body; `None` if its length disagrees with its
/// level counts.
fn read_book(b: &[u8]) -> Option<OrderFields> {
    if b.len() < 8 {
        return None;
    }
    let nbids = be_u16(b, 4);
    let nasks = be_u16(b, 6);
    let levels = &b[8..];
    if levels.len() != (usize::from(nbids) + usize::from(nasks)) * LEVEL_LEN {
        return None;
    }
    Some(OrderFields {
        instrument: be_u32(b, 0),
        nbids,
        nasks,
        levels: crate::trace::fnv1a64(levels),
        ..OrderFields::default()
    })
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
    /// The fields of an order-entry message (its header is in `seq`
    /// (`cl_ord_id`), `route` and `t`).
    pub order: OrderFields,
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
        op::NEW_ORDER..=op::BALANCE_QUERY | op::ORDER_ACCEPTED..=op::BALANCE
            if payload.len() >= PING_FIXED_LEN =>
        {
            seen.seq = be_u64(payload, 0);
            seen.route = be_u64(payload, 8);
            for (i, t) in seen.t.iter_mut().enumerate() {
                *t = be_u64(payload, 16 + 8 * i);
            }
            let body = &payload[PING_FIXED_LEN..];
            let order = match order_body_len(opcode) {
                Some(len) if body.len() == len => Some(read_order(opcode, body)),
                Some(_) => None,
                None => read_book(body),
            };
            match order {
                Some(order) => seen.order = order,
                None => seen.well_formed = false,
            }
        }
        op::NEW_ORDER..=op::BALANCE_QUERY | op::ORDER_ACCEPTED..=op::BALANCE => {
            seen.well_formed = false;
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
        while let Some(f) = next_frame(&self.buf[self.start..])? {
            emit(read_message(f.opcode, f.payload));
            self.start += f.len;
        }
        // Keep only the partial frame: the buffer stays one frame long.
        self.buf.drain(..self.start);
        self.start = 0;
        Ok(())
    }
}

/// One whole frame at the front of a buffer.
struct WholeFrame<'a> {
    opcode: u16,
    payload: &'a [u8],
    /// Its length on the wire, length prefix included.
    len: usize,
}

/// The first whole frame of `bytes`, `None` while it is incomplete, or
/// the framing fault.
fn next_frame(bytes: &[u8]) -> Result<Option<WholeFrame<'_>>, WireFault> {
    if bytes.len() < LENGTH_LEN {
        return Ok(None);
    }
    let length = be_u32(bytes, 0);
    if length < OPCODE_LEN as u32 {
        return Err(WireFault::LengthTooSmall(length));
    }
    if length > FRAME_LENGTH_MAX {
        return Err(WireFault::LengthTooLarge(length));
    }
    let whole = LENGTH_LEN + length as usize;
    if bytes.len() < whole {
        return Ok(None);
    }
    Ok(Some(WholeFrame {
        opcode: be_u16(bytes, LENGTH_LEN),
        payload: &bytes[LENGTH_LEN + OPCODE_LEN..whole],
        len: whole,
    }))
}

/// The opcode of the gateway's lane frame that carries an order-entry
/// request's first answer back to the worker that owns its client:
/// `credit:u32, opcode:u16`, then the answer's payload. Handed between
/// the gateway's workers, never on the wire; the checker reads it to know
/// when the origin worker took the answer (its `t4`). Were the gateway to
/// change it, the answers it carries would go unseen and every one would
/// fail the exact stamps: loudly, not silently.
pub const LANE_ROUTED_FIRST: u16 = 1003;

/// `credit:u32` in front of a [`LANE_ROUTED_FIRST`] frame's answer.
const LANE_CREDIT_LEN: usize = 4;

/// Reads the whole frames of one handoff between workers as
/// [`StreamReader`] reads a stream, except that a [`LANE_ROUTED_FIRST`]
/// frame is read as the answer it carries. A handoff holds whole frames;
/// one that breaks the framing stops at the fault.
pub fn read_lane(task: &[u8], mut emit: impl FnMut(Seen)) -> Result<(), WireFault> {
    let mut rest = task;
    while let Some(WholeFrame {
        opcode,
        payload,
        len: whole,
    }) = next_frame(rest)?
    {
        let inner = LANE_CREDIT_LEN + OPCODE_LEN;
        if opcode == LANE_ROUTED_FIRST && payload.len() >= inner {
            emit(read_message(
                be_u16(payload, LANE_CREDIT_LEN),
                &payload[inner..],
            ));
        } else {
            emit(read_message(opcode, payload));
        }
        rest = &rest[whole..];
    }
    Ok(())
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
