//! Every bound of the engine in one place, checked against each other.

/// The largest quantity an order may carry (the contract's 10^9).
pub const ORDER_QTY_MAX: u64 = 1_000_000_000;

/// The most levels a book query returns per side (the contract's 100).
pub const BOOK_DEPTH_MAX: u16 = 100;

/// The most instruments a configuration may name.
pub const INSTRUMENTS_MAX: u32 = 65_535;

/// The most accounts a configuration may name.
pub const ACCOUNTS_MAX: u32 = 1 << 24;

/// The most balance cells (accounts × (instruments + 1)) the engine keeps:
/// 16 bytes each, so 2^26 cells is 1 GiB, far past any test bed.
pub const BALANCE_CELLS_MAX: u64 = 1 << 26;

/// The most open orders the pool may hold. Slots are `u32` with
/// `u32::MAX` as the empty marker, and the name index holds twice as many
/// entries rounded up to a power of two, so it must stay below 2^31.
pub const ORDERS_MAX: u32 = 1 << 26;

/// The most price levels one side of one book may hold.
pub const LEVELS_MAX: u32 = 1 << 20;

/// The marker for "no slot" in the pool's intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

const _: () = assert!(
    ORDER_QTY_MAX <= i64::MAX as u64,
    "a quantity converts to i64 units"
);
const _: () = assert!(
    (ORDERS_MAX as u64) * 2 < NIL as u64,
    "index slots and pool slots stay below NIL"
);
const _: () = assert!(LEVELS_MAX < NIL, "level positions fit u32 below NIL");
const _: () = assert!(BOOK_DEPTH_MAX as u32 <= LEVELS_MAX);
const _: () = assert!((INSTRUMENTS_MAX as u64 + 1) <= BALANCE_CELLS_MAX);
