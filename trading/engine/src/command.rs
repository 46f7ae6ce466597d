//! What goes in: the five requests of the contract's order entry, without
//! their wire header (the caller keeps `route` and the stamps).

/// The side of an order. A wire byte other than 1 or 2 has no `Side`: the
/// caller answers it `INVALID_ORDER` (no state changes for it, not even the
/// mark, so the engine need not see it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// Wire 1.
    Buy,
    /// Wire 2.
    Sell,
}

impl Side {
    /// The side a wire byte names, if any.
    pub fn from_wire(byte: u8) -> Option<Side> {
        match byte {
            1 => Some(Side::Buy),
            2 => Some(Side::Sell),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn wire(self) -> u8 {
        match self {
            Side::Buy => 1,
            Side::Sell => 2,
        }
    }

    /// The side it trades against.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Time in force. Like [`Side`], a bad wire byte is the caller's
/// `INVALID_ORDER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tif {
    /// Wire 1: what does not fill rests in the book.
    Day,
    /// Wire 2: what does not fill at once is canceled.
    Ioc,
}

impl Tif {
    /// The time in force a wire byte names, if any.
    pub fn from_wire(byte: u8) -> Option<Tif> {
        match byte {
            1 => Some(Tif::Day),
            2 => Some(Tif::Ioc),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn wire(self) -> u8 {
        match self {
            Tif::Day => 1,
            Tif::Ioc => 2,
        }
    }
}

/// Places an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The account (1 ..= accounts).
    pub account: u32,
    /// The request's id, which names the order while it is open; must be
    /// above the account's mark.
    pub cl_ord_id: u64,
    /// The instrument (1 ..= instruments).
    pub instrument: u32,
    /// Buy or sell.
    pub side: Side,
    /// Day or IOC.
    pub tif: Tif,
    /// Limit price in ticks (> 0).
    pub price: i64,
    /// Quantity (1 ..= 10^9).
    pub qty: u64,
}

/// Cancels an open order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancel {
    /// The account that owns the order.
    pub account: u32,
    /// The request's own id: echoed by the caller, never checked.
    pub cl_ord_id: u64,
    /// The name of the order to cancel.
    pub orig_cl_ord_id: u64,
}

/// Changes an open order's price and open quantity, and renames it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replace {
    /// The account that owns the order.
    pub account: u32,
    /// The request's id: the order's new name; must be above the mark.
    pub cl_ord_id: u64,
    /// The order's current name.
    pub orig_cl_ord_id: u64,
    /// The new limit price (> 0).
    pub price: i64,
    /// The new open quantity (1 ..= 10^9).
    pub qty: u64,
}

/// Asks for the aggregated levels of one book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookQuery {
    /// The instrument.
    pub instrument: u32,
    /// Levels per side wanted; at most [`BOOK_DEPTH_MAX`](crate::limits::BOOK_DEPTH_MAX) are given.
    pub depth: u16,
}

/// Asks for one balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceQuery {
    /// The account.
    pub account: u32,
    /// 0 for cash, `i` for instrument `i`'s units.
    pub asset: u32,
}

/// Any request, for callers that queue or journal them as one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// See [`NewOrder`].
    NewOrder(NewOrder),
    /// See [`Cancel`].
    Cancel(Cancel),
    /// See [`Replace`].
    Replace(Replace),
    /// See [`BookQuery`].
    BookQuery(BookQuery),
    /// See [`BalanceQuery`].
    BalanceQuery(BalanceQuery),
}
