//! What comes out: the engine's decisions, in the order the contract sends
//! them, into a sink the caller owns.

use crate::command::{Side, Tif};

/// Why a request was refused. Each maps to one wire error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCode {
    /// Unknown account, instrument or asset; price ≤ 0; qty 0 or > 10^9;
    /// `price × qty` above `i64::MAX` (wire 13).
    InvalidOrder,
    /// `cl_ord_id` not above the account's mark (wire 12).
    DuplicateId,
    /// No open order of the account has that name (wire 11).
    UnknownOrder,
    /// The account cannot lock what the order needs (wire 14).
    InsufficientBalance,
    /// The order would have to rest and the order pool or the side's level
    /// table is full ([`Config::orders_max`](crate::Config::orders_max),
    /// [`Config::levels_max`](crate::Config::levels_max)). The contract has
    /// no code of its own for it: the exchange sends `OVERLOADED` (wire 7).
    BookFull,
}

impl RejectCode {
    /// The protocol's error code.
    pub fn wire(self) -> u16 {
        match self {
            RejectCode::InvalidOrder => 13,
            RejectCode::DuplicateId => 12,
            RejectCode::UnknownOrder => 11,
            RejectCode::InsufficientBalance => 14,
            RejectCode::BookFull => 7,
        }
    }
}

/// Which side of a fill an execution reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liquidity {
    /// The resting order (wire 1).
    Maker,
    /// The incoming order (wire 2).
    Taker,
}

impl Liquidity {
    /// The wire byte.
    pub fn wire(self) -> u8 {
        match self {
            Liquidity::Maker => 1,
            Liquidity::Taker => 2,
        }
    }
}

/// Why an order left the book without filling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// A `Cancel` named it (wire 1).
    Requested,
    /// The rest of an IOC order (wire 2).
    IocRest,
}

impl CancelReason {
    /// The wire byte.
    pub fn wire(self) -> u8 {
        match self {
            CancelReason::Requested => 1,
            CancelReason::IocRest => 2,
        }
    }
}

/// One decision. Every order event carries the order's current name
/// (`cl_ord_id`: its `NewOrder`'s, or its last changing `Replace`'s), so a
/// caller can route a maker's messages to the request that named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A `NewOrder` passed every check; `qty` is its full quantity.
    Accepted {
        /// The account.
        account: u32,
        /// The exchange-wide id it was given.
        order_id: u64,
        /// Its name.
        cl_ord_id: u64,
        /// The instrument.
        instrument: u32,
        /// Buy or sell.
        side: Side,
        /// Day or IOC.
        tif: Tif,
        /// Limit price.
        price: i64,
        /// Full quantity.
        qty: u64,
    },
    /// One side of a fill; the maker's comes first, then the taker's, with
    /// the same `exec_id`.
    Executed {
        /// The order's account.
        account: u32,
        /// The order.
        order_id: u64,
        /// The order's name.
        cl_ord_id: u64,
        /// Exchange-wide, one per fill.
        exec_id: u64,
        /// The fill price: always the maker's.
        price: i64,
        /// The filled quantity.
        qty: u64,
        /// What stays open of the order after this fill.
        leaves: u64,
        /// Maker or taker.
        liquidity: Liquidity,
    },
    /// An order left the book unfilled.
    Canceled {
        /// The order's account.
        account: u32,
        /// The order.
        order_id: u64,
        /// The order's name.
        cl_ord_id: u64,
        /// What was still open.
        canceled_qty: u64,
        /// On request, or an IOC's rest.
        reason: CancelReason,
    },
    /// A `Replace` changed an order (before any fill it causes).
    Replaced {
        /// The order's account.
        account: u32,
        /// The order (its id does not change).
        order_id: u64,
        /// The order's new name.
        cl_ord_id: u64,
        /// The new price.
        price: i64,
        /// The new open quantity.
        qty: u64,
    },
    /// The request was refused and nothing changed but, for a `NewOrder`
    /// or `Replace` past the id check, the account's mark.
    Rejected {
        /// Which check refused it.
        code: RejectCode,
        /// One line for the wire's reason field (≤ 256 bytes).
        reason: &'static str,
    },
    /// The head of a book snapshot: `bids` then `asks` [`Event::Level`]s follow.
    Book {
        /// The instrument.
        instrument: u32,
        /// How many bid levels follow, best (highest) first.
        bids: u16,
        /// How many ask levels follow them, best (lowest) first.
        asks: u16,
    },
    /// One aggregated level of a book snapshot.
    Level {
        /// The level's price.
        price: i64,
        /// The open quantity of all its orders.
        qty: u64,
        /// How many orders rest there.
        orders: u32,
    },
    /// One balance.
    Balance {
        /// The account.
        account: u32,
        /// 0 cash, `i` instrument `i`'s units.
        asset: u32,
        /// What the account holds.
        total: i64,
        /// What its open orders lock of it.
        locked: i64,
    },
}

/// Where events go. The engine pushes every event of a request before it
/// returns; a caller drains the sink after each request.
pub trait EventSink {
    /// Takes one event.
    fn push(&mut self, event: Event);
}

/// A `Vec` is a sink: clear it per request and keep its capacity, and the
/// steady state allocates nothing.
impl EventSink for Vec<Event> {
    fn push(&mut self, event: Event) {
        Vec::push(self, event);
    }
}

/// The reasons of [`Event::Rejected`], one per check, public so callers and
/// tests can match on them.
pub mod reason {
    /// The account is not in `1 ..= accounts`.
    pub const UNKNOWN_ACCOUNT: &str = "unknown account";
    /// The instrument is not in `1 ..= instruments`.
    pub const UNKNOWN_INSTRUMENT: &str = "unknown instrument";
    /// The asset is not in `0 ..= instruments`.
    pub const UNKNOWN_ASSET: &str = "unknown asset";
    /// The price is zero or negative.
    pub const PRICE_NOT_POSITIVE: &str = "price must be above 0";
    /// The quantity is 0 or above 10^9.
    pub const QTY_OUT_OF_RANGE: &str = "qty must be 1 to 10^9";
    /// `price × qty` does not fit an `i64`.
    pub const NOTIONAL_OVERFLOW: &str = "price x qty is above 2^63 - 1";
    /// `cl_ord_id` is not above the account's mark.
    pub const DUPLICATE_ID: &str = "cl_ord_id is not above the account's highest";
    /// No open order of the account has that name.
    pub const UNKNOWN_ORDER: &str = "no open order of this account has that cl_ord_id";
    /// Not enough free cash.
    pub const INSUFFICIENT_CASH: &str = "not enough free cash";
    /// Not enough free units.
    pub const INSUFFICIENT_UNITS: &str = "not enough free units";
    /// The order pool is full.
    pub const ORDER_POOL_FULL: &str = "the exchange's order pool is full";
    /// The side's level table is full.
    pub const LEVELS_FULL: &str = "the book side has no room for another price level";
}
