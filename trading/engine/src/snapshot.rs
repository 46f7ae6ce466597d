//! The engine's whole state as bytes, and back.
//!
//! Layout (big-endian): [`SNAPSHOT_MAGIC`], the encoded [`Config`], the next
//! `order_id` and `exec_id`, every account's mark, every balance cell
//! (`total`, `locked`), then per instrument and side (bids, asks) the count
//! of resting orders and the orders best price first and, within a level,
//! oldest first (`order_id`, `account`, `cl_ord_id`, `price`, `open`).
//! Restoring appends them in that order, which rebuilds time priority.
//! Checksums are the journal's business; a restore still refuses bytes that
//! do not describe a consistent state, with the offset where it noticed.

use std::fmt;

use crate::command::Side;
use crate::config::{Config, ConfigError, CONFIG_ENCODED_LEN};
use crate::engine::{Cell, Engine};
use crate::limits::{NIL, ORDER_QTY_MAX};
use crate::pool::Order;

/// The first bytes of a snapshot; the digit is the format's version.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"FEPENGS1";

/// Why bytes cannot be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// The given settings are not valid.
    Config(ConfigError),
    /// The bytes do not start with [`SNAPSHOT_MAGIC`].
    NotASnapshot,
    /// The snapshot was taken under other settings.
    ConfigMismatch {
        /// The settings the snapshot records.
        recorded: Config,
    },
    /// The bytes end before the state does.
    Truncated {
        /// Where a field was due.
        offset: usize,
    },
    /// The bytes go on after the state ends.
    TrailingBytes {
        /// Where the state ended.
        offset: usize,
    },
    /// A field breaks an invariant of the state.
    Inconsistent {
        /// Where the field starts (for the locks, the end of the orders).
        offset: usize,
        /// Which invariant.
        what: &'static str,
    },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Config(e) => write!(f, "{e}"),
            RestoreError::NotASnapshot => write!(f, "not an engine snapshot (bad magic)"),
            RestoreError::ConfigMismatch { recorded } => {
                write!(
                    f,
                    "the snapshot was taken with other engine settings: {recorded:?}"
                )
            }
            RestoreError::Truncated { offset } => {
                write!(f, "snapshot truncated at offset {offset}")
            }
            RestoreError::TrailingBytes { offset } => {
                write!(f, "snapshot has bytes past its end at offset {offset}")
            }
            RestoreError::Inconsistent { offset, what } => {
                write!(f, "snapshot inconsistent at offset {offset}: {what}")
            }
        }
    }
}

impl std::error::Error for RestoreError {}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RestoreError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(RestoreError::Truncated { offset: self.at })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, RestoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, RestoreError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    fn i64(&mut self) -> Result<i64, RestoreError> {
        Ok(self.u64()? as i64)
    }
    fn bad(&self, at: usize, what: &'static str) -> RestoreError {
        RestoreError::Inconsistent { offset: at, what }
    }
}

impl Engine {
    /// Appends the whole state to `out` (see the module's layout). Equal
    /// states give equal bytes.
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        self.config.encode(out);
        out.extend_from_slice(&self.next_order_id.to_be_bytes());
        out.extend_from_slice(&self.next_exec_id.to_be_bytes());
        for mark in &self.marks {
            out.extend_from_slice(&mark.to_be_bytes());
        }
        for cell in &self.balances {
            out.extend_from_slice(&cell.total.to_be_bytes());
            out.extend_from_slice(&cell.locked.to_be_bytes());
        }
        for ladder in self.books.iter().flatten() {
            let count: u32 = ladder.best_first().map(|l| l.orders).sum();
            out.extend_from_slice(&count.to_be_bytes());
            for level in ladder.best_first() {
                let mut slot = level.head;
                while slot != NIL {
                    let o = &self.pool[slot];
                    out.extend_from_slice(&o.order_id.to_be_bytes());
                    out.extend_from_slice(&o.account.to_be_bytes());
                    out.extend_from_slice(&o.cl_ord_id.to_be_bytes());
                    out.extend_from_slice(&o.price.to_be_bytes());
                    out.extend_from_slice(&o.open.to_be_bytes());
                    slot = o.next;
                }
            }
        }
    }

    /// The engine a snapshot describes. `config` must be the one it was
    /// taken with (a journal records it; a mismatch is refused, never
    /// mixed). Every invariant is checked: locks equal what the orders
    /// hold, names are unique, prices ordered, ids below the next ids.
    pub fn restore(config: Config, bytes: &[u8]) -> Result<Engine, RestoreError> {
        let mut engine = Engine::new(config).map_err(RestoreError::Config)?;
        let mut r = Reader { bytes, at: 0 };
        if r.take(8).ok() != Some(&SNAPSHOT_MAGIC[..]) {
            return Err(RestoreError::NotASnapshot);
        }
        let recorded = Config::decode(r.take(CONFIG_ENCODED_LEN)?).map_err(|_| {
            RestoreError::Inconsistent {
                offset: 8,
                what: "recorded settings",
            }
        })?;
        if recorded != config {
            return Err(RestoreError::ConfigMismatch { recorded });
        }
        engine.next_order_id = r.u64()?;
        engine.next_exec_id = r.u64()?;
        if engine.next_order_id == 0 || engine.next_exec_id == 0 {
            return Err(r.bad(r.at - 16, "next ids start at 1"));
        }
        for mark in engine.marks.iter_mut() {
            *mark = r.u64()?;
        }
        let cells_at = r.at;
        for cell in engine.balances.iter_mut() {
            let at = r.at;
            *cell = Cell {
                total: r.i64()?,
                locked: r.i64()?,
            };
            if !(0 <= cell.locked && cell.locked <= cell.total) {
                return Err(r.bad(at, "a lock outside 0..=total"));
            }
        }
        // Locks are rebuilt from the orders, then compared with the record.
        let recorded_cells = engine.balances.clone();
        for cell in engine.balances.iter_mut() {
            cell.locked = 0;
        }
        for instrument in 1..=config.instruments {
            for side in [Side::Buy, Side::Sell] {
                restore_side(&mut engine, &mut r, instrument, side)?;
            }
        }
        if r.at != bytes.len() {
            return Err(RestoreError::TrailingBytes { offset: r.at });
        }
        if engine.balances != recorded_cells {
            return Err(r.bad(cells_at, "locks differ from what the open orders hold"));
        }
        check_totals(&engine).map_err(|what| r.bad(cells_at, what))?;
        check_order_ids_unique(&engine).map_err(|what| r.bad(cells_at, what))?;
        Ok(engine)
    }
}

/// Trades move assets between accounts and never create them, so each
/// asset's totals sum to what the accounts started with.
fn check_totals(engine: &Engine) -> Result<(), &'static str> {
    let assets = engine.config.instruments as usize + 1;
    for asset in 0..assets {
        let start = if asset == 0 {
            engine.config.cash
        } else {
            engine.config.units
        };
        let expect = i128::from(start) * i128::from(engine.config.accounts);
        let sum: i128 = engine
            .balances
            .iter()
            .skip(asset)
            .step_by(assets)
            .map(|c| i128::from(c.total))
            .sum();
        if sum != expect {
            return Err("an asset's totals do not sum to the starting amounts");
        }
    }
    Ok(())
}

fn check_order_ids_unique(engine: &Engine) -> Result<(), &'static str> {
    let mut ids: Vec<u64> = Vec::with_capacity(engine.pool.len() as usize);
    for ladder in engine.books.iter().flatten() {
        for level in ladder.best_first() {
            let mut slot = level.head;
            while slot != NIL {
                ids.push(engine.pool[slot].order_id);
                slot = engine.pool[slot].next;
            }
        }
    }
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err("two open orders with one order_id");
    }
    Ok(())
}

fn restore_side(
    engine: &mut Engine,
    r: &mut Reader<'_>,
    instrument: u32,
    side: Side,
) -> Result<(), RestoreError> {
    let count = r.u32()?;
    let mut previous_price: Option<i64> = None;
    for _ in 0..count {
        let at = r.at;
        let order = Order {
            order_id: r.u64()?,
            account: r.u32()?,
            cl_ord_id: r.u64()?,
            price: r.i64()?,
            open: r.u64()?,
            instrument,
            side,
            prev: NIL,
            next: NIL,
        };
        let config = engine.config;
        if !(1..=config.accounts).contains(&order.account) {
            return Err(r.bad(at, "unknown account"));
        }
        if order.order_id == 0 || order.order_id >= engine.next_order_id {
            return Err(r.bad(at, "order_id not below the next"));
        }
        if order.cl_ord_id == 0 || order.cl_ord_id > engine.marks[order.account as usize - 1] {
            return Err(r.bad(at, "name above its account's mark"));
        }
        if order.price <= 0 || order.open == 0 || order.open > ORDER_QTY_MAX {
            return Err(r.bad(at, "price or open quantity out of range"));
        }
        if i128::from(order.price) * i128::from(order.open) > i128::from(i64::MAX) {
            return Err(r.bad(at, "price x open above 2^63 - 1"));
        }
        let worse = match (previous_price, side) {
            (None, _) => false,
            (Some(p), Side::Buy) => order.price > p,
            (Some(p), Side::Sell) => order.price < p,
        };
        if worse {
            return Err(r.bad(at, "levels out of price order"));
        }
        previous_price = Some(order.price);
        let ladder = &engine.books[instrument as usize - 1][usize::from(side == Side::Sell)];
        if engine.pool.free_len() == 0 || ladder.lacks_room_for(order.price) {
            return Err(r.bad(at, "more orders or levels than the settings hold"));
        }
        if engine.names.find(order.account, order.cl_ord_id).is_some() {
            return Err(r.bad(at, "two open orders with one name"));
        }
        let stride = config.instruments as usize + 1;
        let base = (order.account as usize - 1) * stride;
        let (cell, lock) = match side {
            Side::Buy => (base, order.price * order.open as i64),
            Side::Sell => (base + instrument as usize, order.open as i64),
        };
        let cell = &mut engine.balances[cell];
        cell.locked = cell
            .locked
            .checked_add(lock)
            .ok_or(r.bad(at, "locks overflow"))?;
        engine.rest(order);
    }
    Ok(())
}
