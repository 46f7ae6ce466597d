//! The order-entry messages of PROTOCOL.md ("Order entry"): opcodes, payload
//! layouts, encode and decode.
//!
//! Every order-entry message starts with the same 48-byte header as a
//! `PerfPing` (`cl_ord_id`, `route`, `t1` … `t4`), so the gateway stamps and
//! routes requests and answers with the offsets of [`crate::msg::offset`]
//! whatever the opcode. Decoding borrows from the frame; encoding appends to
//! a caller-owned buffer. Neither allocates. Field values are not judged
//! here (a side of 7 decodes): that is the engine's `INVALID_ORDER`; only a
//! payload of the wrong length is `MALFORMED`.

use fep_core::frame::FrameWriter;
use fep_core::{Fault, Nanos};

/// Opcode of `NewOrder`.
pub const OP_NEW_ORDER: u16 = 20100;
/// Opcode of `CancelOrder`.
pub const OP_CANCEL_ORDER: u16 = 20101;
/// Opcode of `ReplaceOrder`.
pub const OP_REPLACE_ORDER: u16 = 20102;
/// Opcode of `BookQuery`.
pub const OP_BOOK_QUERY: u16 = 20103;
/// Opcode of `BalanceQuery`.
pub const OP_BALANCE_QUERY: u16 = 20104;
/// Opcode of `OrderAccepted`.
pub const OP_ORDER_ACCEPTED: u16 = 20150;
/// Opcode of `OrderExecuted`.
pub const OP_ORDER_EXECUTED: u16 = 20151;
/// Opcode of `OrderCanceled`.
pub const OP_ORDER_CANCELED: u16 = 20152;
/// Opcode of `OrderReplaced`.
pub const OP_ORDER_REPLACED: u16 = 20153;
/// Opcode of `BookSnapshot`.
pub const OP_BOOK_SNAPSHOT: u16 = 20154;
/// Opcode of `Balance`.
pub const OP_BALANCE: u16 = 20155;

/// The requests a client sends (20100 … 20104).
pub const REQUEST_OPCODES: [u16; 5] = [
    OP_NEW_ORDER,
    OP_CANCEL_ORDER,
    OP_REPLACE_ORDER,
    OP_BOOK_QUERY,
    OP_BALANCE_QUERY,
];
/// The messages an exchange sends to clients (20150 … 20155).
pub const ANSWER_OPCODES: [u16; 6] = [
    OP_ORDER_ACCEPTED,
    OP_ORDER_EXECUTED,
    OP_ORDER_CANCELED,
    OP_ORDER_REPLACED,
    OP_BOOK_SNAPSHOT,
    OP_BALANCE,
];

/// Bytes of the header every order-entry payload starts with.
pub const HEADER_LEN: usize = 48;
/// Levels a `BookSnapshot` carries per side at most (PROTOCOL.md: `min(depth,
/// 100)`).
pub const BOOK_DEPTH_MAX: u16 = 100;
/// Bytes of one `BookSnapshot` level: `price:i64, qty:u64, orders:u32`.
pub const LEVEL_LEN: usize = 20;

/// Payload lengths, header included.
pub mod len {
    use super::HEADER_LEN;
    /// `NewOrder`.
    pub const NEW_ORDER: usize = HEADER_LEN + 4 + 4 + 1 + 1 + 8 + 8;
    /// `CancelOrder`.
    pub const CANCEL_ORDER: usize = HEADER_LEN + 4 + 8;
    /// `ReplaceOrder`.
    pub const REPLACE_ORDER: usize = HEADER_LEN + 4 + 8 + 8 + 8;
    /// `BookQuery`.
    pub const BOOK_QUERY: usize = HEADER_LEN + 4 + 2;
    /// `BalanceQuery`.
    pub const BALANCE_QUERY: usize = HEADER_LEN + 4 + 4;
    /// `OrderAccepted`.
    pub const ORDER_ACCEPTED: usize = HEADER_LEN + 4 + 8 + 4 + 1 + 1 + 8 + 8;
    /// `OrderExecuted`.
    pub const ORDER_EXECUTED: usize = HEADER_LEN + 4 + 8 + 8 + 8 + 8 + 8 + 1;
    /// `OrderCanceled`.
    pub const ORDER_CANCELED: usize = HEADER_LEN + 4 + 8 + 8 + 1;
    /// `OrderReplaced`.
    pub const ORDER_REPLACED: usize = HEADER_LEN + 4 + 8 + 8 + 8;
    /// `BookSnapshot` without levels.
    pub const BOOK_SNAPSHOT_MIN: usize = HEADER_LEN + 4 + 2 + 2;
    /// `Balance`.
    pub const BALANCE: usize = HEADER_LEN + 4 + 4 + 8 + 8;
}

/// Whether `opcode` is an order-entry request (20100 … 20104).
pub const fn is_request(opcode: u16) -> bool {
    opcode >= OP_NEW_ORDER && opcode <= OP_BALANCE_QUERY
}

/// Whether `opcode` is an exchange-to-client order-entry message (20150 …
/// 20155).
pub const fn is_answer(opcode: u16) -> bool {
    opcode >= OP_ORDER_ACCEPTED && opcode <= OP_BALANCE
}

/// Whether an exchange-to-client message (20150 … 20155) is the *first
/// answer* of the request whose header it echoes (PROTOCOL.md "Answers,
/// and their order"): `OrderAccepted`, `OrderReplaced`, `BookSnapshot`,
/// `Balance`, and an `OrderCanceled` on request are; fills and an IOC's
/// rest are later messages. Reads only the opcode and, for a cancel, its
/// last byte, so a gateway classifies without decoding; a payload of the
/// wrong length is left to the full decode.
pub fn is_first_answer(opcode: u16, payload: &[u8]) -> bool {
    match opcode {
        OP_ORDER_ACCEPTED | OP_ORDER_REPLACED | OP_BOOK_SNAPSHOT | OP_BALANCE => true,
        OP_ORDER_CANCELED => payload.last() == Some(&CANCEL_REASON_REQUESTED),
        _ => false,
    }
}

/// `side` on the wire: buy.
pub const SIDE_BUY: u8 = 1;
/// `side` on the wire: sell.
pub const SIDE_SELL: u8 = 2;
/// `tif` on the wire: day (the rest stays in the book).
pub const TIF_DAY: u8 = 1;
/// `tif` on the wire: immediate or cancel.
pub const TIF_IOC: u8 = 2;
/// `liquidity`: the resting order.
pub const LIQUIDITY_MAKER: u8 = 1;
/// `liquidity`: the incoming order.
pub const LIQUIDITY_TAKER: u8 = 2;
/// `OrderCanceled.reason`: canceled on request.
pub const CANCEL_REASON_REQUESTED: u8 = 1;
/// `OrderCanceled.reason`: the rest of an IOC.
pub const CANCEL_REASON_IOC: u8 = 2;

/// The 48 bytes every order-entry message starts with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The client's id of the request (a `Reject` carries it as `seq`).
    pub cl_ord_id: u64,
    /// The gateway's routing tag (0 from the client).
    pub route: u64,
    /// Client send time.
    pub t1: Nanos,
    /// Gateway forward time.
    pub t2: Nanos,
    /// Exchange arrival (or event) time.
    pub t3: Nanos,
    /// Gateway return time.
    pub t4: Nanos,
}

/// `NewOrder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The header.
    pub h: Header,
    /// The account, 1 … A.
    pub account: u32,
    /// The instrument, 1 … I.
    pub instrument: u32,
    /// 1 buy, 2 sell (other values are `INVALID_ORDER`).
    pub side: u8,
    /// 1 day, 2 IOC (other values are `INVALID_ORDER`).
    pub tif: u8,
    /// Limit price in ticks.
    pub price: i64,
    /// Quantity.
    pub qty: u64,
}

/// `CancelOrder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    /// The header.
    pub h: Header,
    /// The account.
    pub account: u32,
    /// The name of the open order.
    pub orig_cl_ord_id: u64,
}

/// `ReplaceOrder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplaceOrder {
    /// The header.
    pub h: Header,
    /// The account.
    pub account: u32,
    /// The name of the open order.
    pub orig_cl_ord_id: u64,
    /// The new price.
    pub price: i64,
    /// The new open quantity.
    pub qty: u64,
}

/// `BookQuery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookQuery {
    /// The header.
    pub h: Header,
    /// The instrument.
    pub instrument: u32,
    /// Levels per side asked for (at most 100 are sent).
    pub depth: u16,
}

/// `BalanceQuery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceQuery {
    /// The header.
    pub h: Header,
    /// The account.
    pub account: u32,
    /// 0 cash, `i` instrument `i`'s units.
    pub asset: u32,
}

/// `OrderAccepted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderAccepted {
    /// The request's header.
    pub h: Header,
    /// The account.
    pub account: u32,
    /// The exchange's id of the order.
    pub order_id: u64,
    /// The instrument.
    pub instrument: u32,
    /// The side.
    pub side: u8,
    /// The time in force.
    pub tif: u8,
    /// The limit price.
    pub price: i64,
    /// The order's full quantity.
    pub qty: u64,
}

/// `OrderExecuted`: one side of one fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderExecuted {
    /// The header of the request that caused it, or of the order's naming
    /// request (a maker's fill, with `t1 = t2 = t4 = 0`).
    pub h: Header,
    /// The account.
    pub account: u32,
    /// The order.
    pub order_id: u64,
    /// The fill's id, the same on both sides.
    pub exec_id: u64,
    /// The fill price (the resting order's).
    pub price: i64,
    /// The filled quantity.
    pub qty: u64,
    /// What is still open.
    pub leaves: u64,
    /// 1 maker, 2 taker.
    pub liquidity: u8,
}

/// `OrderCanceled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderCanceled {
    /// The header.
    pub h: Header,
    /// The account.
    pub account: u32,
    /// The order.
    pub order_id: u64,
    /// What was still open.
    pub canceled_qty: u64,
    /// 1 on request, 2 the rest of an IOC.
    pub reason: u8,
}

/// `OrderReplaced`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderReplaced {
    /// The header.
    pub h: Header,
    /// The account.
    pub account: u32,
    /// The order.
    pub order_id: u64,
    /// The new price.
    pub price: i64,
    /// The new open quantity.
    pub qty: u64,
}

/// One price level of a `BookSnapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// The price.
    pub price: i64,
    /// The quantity open at it.
    pub qty: u64,
    /// The orders resting at it.
    pub orders: u32,
}

/// `BookSnapshot`: the levels stay in the frame, read with
/// [`BookSnapshot::level`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookSnapshot<'a> {
    /// The header.
    pub h: Header,
    /// The instrument.
    pub instrument: u32,
    /// Bid levels, best (highest) first.
    pub nbids: u16,
    /// Ask levels, best (lowest) first.
    pub nasks: u16,
    levels: &'a [u8],
}

/// `Balance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    /// The header.
    pub h: Header,
    /// The account.
    pub account: u32,
    /// The asset.
    pub asset: u32,
    /// What the account holds.
    pub total: i64,
    /// What open orders lock of it.
    pub locked: i64,
}

/// Any order-entry message, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderMsg<'a> {
    /// `NewOrder`.
    NewOrder(NewOrder),
    /// `CancelOrder`.
    CancelOrder(CancelOrder),
    /// `ReplaceOrder`.
    ReplaceOrder(ReplaceOrder),
    /// `BookQuery`.
    BookQuery(BookQuery),
    /// `BalanceQuery`.
    BalanceQuery(BalanceQuery),
    /// `OrderAccepted`.
    OrderAccepted(OrderAccepted),
    /// `OrderExecuted`.
    OrderExecuted(OrderExecuted),
    /// `OrderCanceled`.
    OrderCanceled(OrderCanceled),
    /// `OrderReplaced`.
    OrderReplaced(OrderReplaced),
    /// `BookSnapshot`.
    BookSnapshot(BookSnapshot<'a>),
    /// `Balance`.
    Balance(Balance),
}

/// A cursor over a payload whose length was checked first.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    #[inline(always)]
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let v = self.bytes[self.at..self.at + N]
            .try_into()
            .expect("length checked before reading");
        self.at += N;
        v
    }
    #[inline(always)]
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    #[inline(always)]
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    #[inline(always)]
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    #[inline(always)]
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    #[inline(always)]
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
    #[inline(always)]
    fn header(&mut self) -> Header {
        Header {
            cl_ord_id: self.u64(),
            route: self.u64(),
            t1: Nanos(self.u64()),
            t2: Nanos(self.u64()),
            t3: Nanos(self.u64()),
            t4: Nanos(self.u64()),
        }
    }
    #[inline(always)]
    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

#[inline(always)]
fn exact(opcode: u16, payload: &[u8], expected: usize) -> Result<Fields<'_>, Fault> {
    if payload.len() != expected {
        return Err(Fault::Malformed {
            opcode,
            what: "order-entry payload of the wrong length for its opcode",
        });
    }
    Ok(Fields {
        bytes: payload,
        at: 0,
    })
}

fn put_header(w: &mut FrameWriter<'_>, h: &Header) {
    w.put_u64(h.cl_ord_id)
        .put_u64(h.route)
        .put_u64(h.t1.0)
        .put_u64(h.t2.0)
        .put_u64(h.t3.0)
        .put_u64(h.t4.0);
}

/// Reads the header of any order-entry payload (at least 48 bytes).
pub fn header(opcode: u16, payload: &[u8]) -> Result<Header, Fault> {
    if payload.len() < HEADER_LEN {
        return Err(Fault::Malformed {
            opcode,
            what: "order-entry payload shorter than its 48-byte header",
        });
    }
    Ok(Fields {
        bytes: payload,
        at: 0,
    }
    .header())
}

impl<'a> BookSnapshot<'a> {
    /// Level `i` of `nbids + nasks` (bids first), `None` past the end.
    pub fn level(&self, i: usize) -> Option<Level> {
        let bytes = self.levels.get(i * LEVEL_LEN..(i + 1) * LEVEL_LEN)?;
        let mut f = Fields { bytes, at: 0 };
        Some(Level {
            price: f.i64(),
            qty: f.u64(),
            orders: f.u32(),
        })
    }

    /// The bids, best first.
    pub fn bids(&self) -> impl Iterator<Item = Level> + '_ {
        (0..usize::from(self.nbids)).filter_map(|i| self.level(i))
    }

    /// The asks, best first.
    pub fn asks(&self) -> impl Iterator<Item = Level> + '_ {
        let nbids = usize::from(self.nbids);
        (nbids..nbids + usize::from(self.nasks)).filter_map(|i| self.level(i))
    }

    /// Appends a `BookSnapshot` frame with the given levels.
    pub fn encode_with(
        out: &mut Vec<u8>,
        h: &Header,
        instrument: u32,
        bids: &[Level],
        asks: &[Level],
    ) -> usize {
        let nbids = u16::try_from(bids.len()).expect("at most 100 levels a side");
        let nasks = u16::try_from(asks.len()).expect("at most 100 levels a side");
        let mut w = FrameWriter::new(out, OP_BOOK_SNAPSHOT);
        put_header(&mut w, h);
        w.put_u32(instrument).put_u16(nbids).put_u16(nasks);
        for l in bids.iter().chain(asks) {
            w.put_i64(l.price).put_u64(l.qty).put_u32(l.orders);
        }
        w.finish()
    }
}

impl<'a> OrderMsg<'a> {
    /// Decodes the payload of an order-entry frame. `Err(Malformed)` for a
    /// payload of the wrong length, `Err(UnknownOpcode)` for an opcode
    /// outside order entry.
    pub fn decode(opcode: u16, payload: &'a [u8]) -> Result<OrderMsg<'a>, Fault> {
        Ok(match opcode {
            OP_NEW_ORDER => {
                let mut f = exact(opcode, payload, len::NEW_ORDER)?;
                OrderMsg::NewOrder(NewOrder {
                    h: f.header(),
                    account: f.u32(),
                    instrument: f.u32(),
                    side: f.u8(),
                    tif: f.u8(),
                    price: f.i64(),
                    qty: f.u64(),
                })
            }
            OP_CANCEL_ORDER => {
                let mut f = exact(opcode, payload, len::CANCEL_ORDER)?;
                OrderMsg::CancelOrder(CancelOrder {
                    h: f.header(),
                    account: f.u32(),
                    orig_cl_ord_id: f.u64(),
                })
            }
            OP_REPLACE_ORDER => {
                let mut f = exact(opcode, payload, len::REPLACE_ORDER)?;
                OrderMsg::ReplaceOrder(ReplaceOrder {
                    h: f.header(),
                    account: f.u32(),
                    orig_cl_ord_id: f.u64(),
                    price: f.i64(),
                    qty: f.u64(),
                })
            }
            OP_BOOK_QUERY => {
                let mut f = exact(opcode, payload, len::BOOK_QUERY)?;
                OrderMsg::BookQuery(BookQuery {
                    h: f.header(),
                    instrument: f.u32(),
                    depth: f.u16(),
                })
            }
            OP_BALANCE_QUERY => {
                let mut f = exact(opcode, payload, len::BALANCE_QUERY)?;
                OrderMsg::BalanceQuery(BalanceQuery {
                    h: f.header(),
                    account: f.u32(),
                    asset: f.u32(),
                })
            }
            OP_ORDER_ACCEPTED => {
                let mut f = exact(opcode, payload, len::ORDER_ACCEPTED)?;
                OrderMsg::OrderAccepted(OrderAccepted {
                    h: f.header(),
                    account: f.u32(),
                    order_id: f.u64(),
                    instrument: f.u32(),
                    side: f.u8(),
                    tif: f.u8(),
                    price: f.i64(),
                    qty: f.u64(),
                })
            }
            OP_ORDER_EXECUTED => {
                let mut f = exact(opcode, payload, len::ORDER_EXECUTED)?;
                OrderMsg::OrderExecuted(OrderExecuted {
                    h: f.header(),
                    account: f.u32(),
                    order_id: f.u64(),
                    exec_id: f.u64(),
                    price: f.i64(),
                    qty: f.u64(),
                    leaves: f.u64(),
                    liquidity: f.u8(),
                })
            }
            OP_ORDER_CANCELED => {
                let mut f = exact(opcode, payload, len::ORDER_CANCELED)?;
                OrderMsg::OrderCanceled(OrderCanceled {
                    h: f.header(),
                    account: f.u32(),
                    order_id: f.u64(),
                    canceled_qty: f.u64(),
                    reason: f.u8(),
                })
            }
            OP_ORDER_REPLACED => {
                let mut f = exact(opcode, payload, len::ORDER_REPLACED)?;
                OrderMsg::OrderReplaced(OrderReplaced {
                    h: f.header(),
                    account: f.u32(),
                    order_id: f.u64(),
                    price: f.i64(),
                    qty: f.u64(),
                })
            }
            OP_BOOK_SNAPSHOT => {
                if payload.len() < len::BOOK_SNAPSHOT_MIN {
                    return Err(Fault::Malformed {
                        opcode,
                        what: "BookSnapshot shorter than its fixed fields",
                    });
                }
                let mut f = Fields {
                    bytes: payload,
                    at: 0,
                };
                let h = f.header();
                let instrument = f.u32();
                let nbids = f.u16();
                let nasks = f.u16();
                let levels = f.rest();
                if levels.len() != (usize::from(nbids) + usize::from(nasks)) * LEVEL_LEN {
                    return Err(Fault::Malformed {
                        opcode,
                        what: "BookSnapshot level count does not match its length",
                    });
                }
                OrderMsg::BookSnapshot(BookSnapshot {
                    h,
                    instrument,
                    nbids,
                    nasks,
                    levels,
                })
            }
            OP_BALANCE => {
                let mut f = exact(opcode, payload, len::BALANCE)?;
                OrderMsg::Balance(Balance {
                    h: f.header(),
                    account: f.u32(),
                    asset: f.u32(),
                    total: f.i64(),
                    locked: f.i64(),
                })
            }
            opcode => return Err(Fault::UnknownOpcode { opcode }),
        })
    }

    /// The opcode of this message.
    pub fn opcode(&self) -> u16 {
        match self {
            OrderMsg::NewOrder(_) => OP_NEW_ORDER,
            OrderMsg::CancelOrder(_) => OP_CANCEL_ORDER,
            OrderMsg::ReplaceOrder(_) => OP_REPLACE_ORDER,
            OrderMsg::BookQuery(_) => OP_BOOK_QUERY,
            OrderMsg::BalanceQuery(_) => OP_BALANCE_QUERY,
            OrderMsg::OrderAccepted(_) => OP_ORDER_ACCEPTED,
            OrderMsg::OrderExecuted(_) => OP_ORDER_EXECUTED,
            OrderMsg::OrderCanceled(_) => OP_ORDER_CANCELED,
            OrderMsg::OrderReplaced(_) => OP_ORDER_REPLACED,
            OrderMsg::BookSnapshot(_) => OP_BOOK_SNAPSHOT,
            OrderMsg::Balance(_) => OP_BALANCE,
        }
    }

    /// The header of this message.
    pub fn header(&self) -> Header {
        match self {
            OrderMsg::NewOrder(m) => m.h,
            OrderMsg::CancelOrder(m) => m.h,
            OrderMsg::ReplaceOrder(m) => m.h,
            OrderMsg::BookQuery(m) => m.h,
            OrderMsg::BalanceQuery(m) => m.h,
            OrderMsg::OrderAccepted(m) => m.h,
            OrderMsg::OrderExecuted(m) => m.h,
            OrderMsg::OrderCanceled(m) => m.h,
            OrderMsg::OrderReplaced(m) => m.h,
            OrderMsg::BookSnapshot(m) => m.h,
            OrderMsg::Balance(m) => m.h,
        }
    }

    /// Appends the message's frame to `out`; returns its size.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        if let OrderMsg::BookSnapshot(m) = self {
            let mut w = FrameWriter::new(out, OP_BOOK_SNAPSHOT);
            put_header(&mut w, &m.h);
            w.put_u32(m.instrument)
                .put_u16(m.nbids)
                .put_u16(m.nasks)
                .put_slice(m.levels);
            return w.finish();
        }
        let mut w = FrameWriter::new(out, self.opcode());
        put_header(&mut w, &self.header());
        match self {
            OrderMsg::NewOrder(m) => {
                w.put_u32(m.account)
                    .put_u32(m.instrument)
                    .put_u8(m.side)
                    .put_u8(m.tif)
                    .put_i64(m.price)
                    .put_u64(m.qty);
            }
            OrderMsg::CancelOrder(m) => {
                w.put_u32(m.account).put_u64(m.orig_cl_ord_id);
            }
            OrderMsg::ReplaceOrder(m) => {
                w.put_u32(m.account)
                    .put_u64(m.orig_cl_ord_id)
                    .put_i64(m.price)
                    .put_u64(m.qty);
            }
            OrderMsg::BookQuery(m) => {
                w.put_u32(m.instrument).put_u16(m.depth);
            }
            OrderMsg::BalanceQuery(m) => {
                w.put_u32(m.account).put_u32(m.asset);
            }
            OrderMsg::OrderAccepted(m) => {
                w.put_u32(m.account)
                    .put_u64(m.order_id)
                    .put_u32(m.instrument)
                    .put_u8(m.side)
                    .put_u8(m.tif)
                    .put_i64(m.price)
                    .put_u64(m.qty);
            }
            OrderMsg::OrderExecuted(m) => {
                w.put_u32(m.account)
                    .put_u64(m.order_id)
                    .put_u64(m.exec_id)
                    .put_i64(m.price)
                    .put_u64(m.qty)
                    .put_u64(m.leaves)
                    .put_u8(m.liquidity);
            }
            OrderMsg::OrderCanceled(m) => {
                w.put_u32(m.account)
                    .put_u64(m.order_id)
                    .put_u64(m.canceled_qty)
                    .put_u8(m.reason);
            }
            OrderMsg::OrderReplaced(m) => {
                w.put_u32(m.account)
                    .put_u64(m.order_id)
                    .put_i64(m.price)
                    .put_u64(m.qty);
            }
            OrderMsg::Balance(m) => {
                w.put_u32(m.account)
                    .put_u32(m.asset)
                    .put_i64(m.total)
                    .put_i64(m.locked);
            }
            OrderMsg::BookSnapshot(_) => unreachable!("encoded above"),
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{offset, read_u64};
    use fep_core::frame::Decoder;

    fn h(n: u64) -> Header {
        Header {
            cl_ord_id: n,
            route: n + 1,
            t1: Nanos(n + 2),
            t2: Nanos(n + 3),
            t3: Nanos(n + 4),
            t4: Nanos(n + 5),
        }
    }

    fn samples() -> Vec<OrderMsg<'static>> {
        vec![
            OrderMsg::NewOrder(NewOrder {
                h: h(1),
                account: 7,
                instrument: 3,
                side: SIDE_SELL,
                tif: TIF_IOC,
                price: -5,
                qty: 1_000_000_000,
            }),
            OrderMsg::CancelOrder(CancelOrder {
                h: h(2),
                account: 8,
                orig_cl_ord_id: u64::MAX,
            }),
            OrderMsg::ReplaceOrder(ReplaceOrder {
                h: h(3),
                account: 9,
                orig_cl_ord_id: 4,
                price: i64::MAX,
                qty: 1,
            }),
            OrderMsg::BookQuery(BookQuery {
                h: h(4),
                instrument: 16,
                depth: 100,
            }),
            OrderMsg::BalanceQuery(BalanceQuery {
                h: h(5),
                account: 1024,
                asset: 0,
            }),
            OrderMsg::OrderAccepted(OrderAccepted {
                h: h(6),
                account: 1,
                order_id: 2,
                instrument: 3,
                side: SIDE_BUY,
                tif: TIF_DAY,
                price: 100,
                qty: 10,
            }),
            OrderMsg::OrderExecuted(OrderExecuted {
                h: h(7),
                account: 1,
                order_id: 2,
                exec_id: 3,
                price: 100,
                qty: 4,
                leaves: 6,
                liquidity: LIQUIDITY_MAKER,
            }),
            OrderMsg::OrderCanceled(OrderCanceled {
                h: h(8),
                account: 1,
                order_id: 2,
                canceled_qty: 6,
                reason: CANCEL_REASON_IOC,
            }),
            OrderMsg::OrderReplaced(OrderReplaced {
                h: h(9),
                account: 1,
                order_id: 2,
                price: 99,
                qty: 5,
            }),
            OrderMsg::Balance(Balance {
                h: h(10),
                account: 1,
                asset: 3,
                total: i64::MIN,
                locked: 0,
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_frame() {
        for msg in samples() {
            let mut out = Vec::new();
            let n = msg.encode(&mut out);
            assert_eq!(n, out.len());
            let mut decoder = Decoder::new(65_536);
            let mut frames = decoder.frames(&out);
            let frame = frames.next().expect("one frame").expect("well formed");
            assert_eq!(frame.opcode, msg.opcode());
            assert_eq!(OrderMsg::decode(frame.opcode, frame.payload), Ok(msg));
        }
    }

    #[test]
    fn the_header_sits_where_a_ping_has_its_fields() {
        for msg in samples() {
            let mut out = Vec::new();
            msg.encode(&mut out);
            let hd = msg.header();
            assert_eq!(read_u64(&out, offset::SEQ), hd.cl_ord_id);
            assert_eq!(read_u64(&out, offset::ROUTE), hd.route);
            assert_eq!(read_u64(&out, offset::T1), hd.t1.0);
            assert_eq!(read_u64(&out, offset::T4), hd.t4.0);
        }
    }

    #[test]
    fn a_payload_one_byte_off_is_malformed() {
        for msg in samples() {
            let mut out = Vec::new();
            msg.encode(&mut out);
            let payload = &out[6..];
            let short = OrderMsg::decode(msg.opcode(), &payload[..payload.len() - 1]);
            assert!(matches!(short, Err(Fault::Malformed { .. })), "{msg:?}");
            let long = [payload, &[0]].concat();
            assert!(
                matches!(
                    OrderMsg::decode(msg.opcode(), &long),
                    Err(Fault::Malformed { .. })
                ),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn a_book_snapshot_carries_its_levels_bids_first() {
        let bids = [
            Level {
                price: 101,
                qty: 5,
                orders: 2,
            },
            Level {
                price: 100,
                qty: 1,
                orders: 1,
            },
        ];
        let asks = [Level {
            price: 103,
            qty: 9,
            orders: 3,
        }];
        let mut out = Vec::new();
        BookSnapshot::encode_with(&mut out, &h(1), 4, &bids, &asks);
        let Ok(OrderMsg::BookSnapshot(snap)) = OrderMsg::decode(OP_BOOK_SNAPSHOT, &out[6..]) else {
            panic!("a snapshot decodes");
        };
        assert_eq!(snap.bids().collect::<Vec<_>>(), bids);
        assert_eq!(snap.asks().collect::<Vec<_>>(), asks);
        let mut again = Vec::new();
        OrderMsg::BookSnapshot(snap).encode(&mut again);
        assert_eq!(again, out);
        // A count that disagrees with the length is malformed.
        let mut bad = out[6..].to_vec();
        bad[HEADER_LEN + 5] = 3;
        assert!(OrderMsg::decode(OP_BOOK_SNAPSHOT, &bad).is_err());
    }

    #[test]
    fn first_answers_are_told_from_later_messages() {
        for msg in samples() {
            let mut out = Vec::new();
            msg.encode(&mut out);
            let first = match msg {
                OrderMsg::OrderAccepted(_)
                | OrderMsg::OrderReplaced(_)
                | OrderMsg::BookSnapshot(_)
                | OrderMsg::Balance(_) => true,
                OrderMsg::OrderCanceled(c) => c.reason == CANCEL_REASON_REQUESTED,
                _ => false,
            };
            assert_eq!(is_first_answer(msg.opcode(), &out[6..]), first, "{msg:?}");
        }
        let mut out = Vec::new();
        OrderMsg::OrderCanceled(OrderCanceled {
            h: h(1),
            account: 1,
            order_id: 1,
            canceled_qty: 1,
            reason: CANCEL_REASON_REQUESTED,
        })
        .encode(&mut out);
        assert!(is_first_answer(OP_ORDER_CANCELED, &out[6..]));
    }

    #[test]
    fn request_and_answer_ranges_are_what_the_contract_says() {
        assert!(REQUEST_OPCODES.iter().all(|&op| is_request(op)));
        assert!(ANSWER_OPCODES.iter().all(|&op| is_answer(op)));
        assert!(!is_request(20105) && !is_answer(20149) && !is_answer(20156));
    }
}
