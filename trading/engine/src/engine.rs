//! The engine: books, the order pool, the name index, balances and marks,
//! and the rules of the contract's order entry.

use crate::book::Ladder;
use crate::command::{BalanceQuery, BookQuery, Cancel, Command, NewOrder, Replace, Side, Tif};
use crate::config::{Config, ConfigError};
use crate::event::{reason, CancelReason, Event, EventSink, Liquidity, RejectCode};
use crate::index::NameIndex;
use crate::limits::{BOOK_DEPTH_MAX, ORDER_QTY_MAX};
use crate::pool::{Order, Pool};

/// What an account holds of one asset, and what its open orders lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cell {
    pub total: i64,
    pub locked: i64,
}

/// The incoming side of a match: a new order, or a replaced one that moved.
struct Taker {
    account: u32,
    order_id: u64,
    cl_ord_id: u64,
    instrument: u32,
    side: Side,
    price: i64,
    open: u64,
}

/// A price-time matching engine for every instrument of one exchange.
///
/// Feed it one request at a time ([`Engine::handle`] or the method per
/// request); every event the request causes is in the sink when the call
/// returns, in the contract's order. It reads no clock and does no I/O: the
/// same commands in the same order give the same events, which is what lets
/// a journal of commands restore it. Everything is sized from the
/// [`Config`] at start; a full pool or level table is
/// [`RejectCode::BookFull`], never a panic or an allocation.
#[derive(Debug)]
pub struct Engine {
    pub(crate) config: Config,
    /// Per instrument (index `instrument − 1`): bids, asks.
    pub(crate) books: Vec<[Ladder; 2]>,
    pub(crate) pool: Pool,
    pub(crate) names: NameIndex,
    /// `(account − 1) × (instruments + 1) + asset`.
    pub(crate) balances: Vec<Cell>,
    /// Per account (index `account − 1`): the highest accepted-for-checking
    /// `cl_ord_id`.
    pub(crate) marks: Vec<u64>,
    pub(crate) next_order_id: u64,
    pub(crate) next_exec_id: u64,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// The asset an order of `side` locks, and how much for `qty` at `price`.
/// The caller has checked that `price × qty` fits.
fn lock_of(side: Side, instrument: u32, price: i64, qty: u64) -> (u32, i64) {
    match side {
        Side::Buy => (0, price * qty as i64),
        Side::Sell => (instrument, qty as i64),
    }
}

/// The `INVALID_ORDER` checks shared by new orders and replaces.
fn check_price_qty(price: i64, qty: u64) -> Result<(), &'static str> {
    if price <= 0 {
        return Err(reason::PRICE_NOT_POSITIVE);
    }
    if qty == 0 || qty > ORDER_QTY_MAX {
        return Err(reason::QTY_OUT_OF_RANGE);
    }
    if i128::from(price) * i128::from(qty) > i128::from(i64::MAX) {
        return Err(reason::NOTIONAL_OVERFLOW);
    }
    Ok(())
}

fn reject(sink: &mut impl EventSink, code: RejectCode, reason: &'static str) {
    sink.push(Event::Rejected { code, reason });
}

impl Engine {
    /// An engine with every account at its starting balances, empty books
    /// and marks at 0. Refuses settings past a limit, or under which a
    /// balance could overflow.
    pub fn new(config: Config) -> Result<Engine, ConfigError> {
        config.validate()?;
        let assets = config.instruments as usize + 1;
        let mut balances = vec![Cell::default(); config.accounts as usize * assets];
        for (i, cell) in balances.iter_mut().enumerate() {
            cell.total = if i % assets == 0 {
                config.cash
            } else {
                config.units
            };
        }
        let books = (0..config.instruments)
            .map(|_| {
                [
                    Ladder::new(Side::Buy, config.levels_max),
                    Ladder::new(Side::Sell, config.levels_max),
                ]
            })
            .collect();
        Ok(Engine {
            config,
            books,
            pool: Pool::new(config.orders_max),
            names: NameIndex::new(config.orders_max),
            balances,
            marks: vec![0; config.accounts as usize],
            next_order_id: 1,
            next_exec_id: 1,
        })
    }

    /// The settings it was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The `order_id` the next accepted order gets.
    pub fn next_order_id(&self) -> u64 {
        self.next_order_id
    }

    /// The `exec_id` the next fill gets.
    pub fn next_exec_id(&self) -> u64 {
        self.next_exec_id
    }

    /// How many orders rest in all books.
    pub fn open_orders(&self) -> u32 {
        self.pool.len()
    }

    /// How many price levels the book of `instrument` has (bids, asks), if
    /// the instrument exists. A query shows at most 100 a side; this counts
    /// them all, for monitoring and benchmarks.
    pub fn level_counts(&self, instrument: u32) -> Option<(usize, usize)> {
        let [bids, asks] = self.books.get((instrument as usize).checked_sub(1)?)?;
        Some((bids.len(), asks.len()))
    }

    /// An account's mark (its highest `cl_ord_id` so far), if it exists.
    pub fn mark(&self, account: u32) -> Option<u64> {
        self.account_index(account).map(|a| self.marks[a])
    }

    /// `(total, locked)` of an account's asset (0 cash, `i` units), if both
    /// exist.
    pub fn balance(&self, account: u32, asset: u32) -> Option<(i64, i64)> {
        let cell = self.balances[self.cell_index(account, asset)?];
        Some((cell.total, cell.locked))
    }

    /// Whether the contract's journal must hold this request: every
    /// cancel, and every new order or replace that passes the
    /// `INVALID_ORDER` and `DUPLICATE_ID` checks (it raises the mark whatever
    /// happens next). Ask before [`Engine::handle`]: the answer depends on
    /// the mark the request is about to raise.
    pub fn must_journal(&self, command: &Command) -> bool {
        match command {
            Command::NewOrder(o) => {
                self.check_new(o).is_ok() && self.marks[o.account as usize - 1] < o.cl_ord_id
            }
            Command::Replace(r) => {
                self.check_replace(r).is_ok() && self.marks[r.account as usize - 1] < r.cl_ord_id
            }
            Command::Cancel(_) => true,
            Command::BookQuery(_) | Command::BalanceQuery(_) => false,
        }
    }

    /// Applies any request.
    pub fn handle(&mut self, command: &Command, sink: &mut impl EventSink) {
        match command {
            Command::NewOrder(o) => self.new_order(o, sink),
            Command::Cancel(c) => self.cancel(c, sink),
            Command::Replace(r) => self.replace(r, sink),
            Command::BookQuery(q) => self.book_query(q, sink),
            Command::BalanceQuery(q) => self.balance_query(q, sink),
        }
    }

    fn account_index(&self, account: u32) -> Option<usize> {
        (1..=self.config.accounts)
            .contains(&account)
            .then(|| account as usize - 1)
    }

    fn cell_index(&self, account: u32, asset: u32) -> Option<usize> {
        let a = self.account_index(account)?;
        (asset <= self.config.instruments)
            .then(|| a * (self.config.instruments as usize + 1) + asset as usize)
    }

    fn free_of(&self, account: u32, asset: u32) -> i64 {
        let cell = self.balances[self.cell_index(account, asset).expect("checked account")];
        cell.total - cell.locked
    }

    fn lock_delta(&mut self, account: u32, asset: u32, delta: i64) {
        let i = self.cell_index(account, asset).expect("checked account");
        let cell = &mut self.balances[i];
        cell.locked = cell.locked.checked_add(delta).expect("lock overflow");
        assert!(
            0 <= cell.locked && cell.locked <= cell.total,
            "lock outside 0..=total"
        );
    }

    fn check_new(&self, o: &NewOrder) -> Result<(), &'static str> {
        self.account_index(o.account)
            .ok_or(reason::UNKNOWN_ACCOUNT)?;
        if !(1..=self.config.instruments).contains(&o.instrument) {
            return Err(reason::UNKNOWN_INSTRUMENT);
        }
        check_price_qty(o.price, o.qty)
    }

    fn check_replace(&self, r: &Replace) -> Result<(), &'static str> {
        self.account_index(r.account)
            .ok_or(reason::UNKNOWN_ACCOUNT)?;
        check_price_qty(r.price, r.qty)
    }

    /// The `DUPLICATE_ID` check; raises the mark when it passes.
    fn raise_mark(&mut self, account: u32, cl_ord_id: u64) -> bool {
        let mark = &mut self.marks[account as usize - 1];
        if cl_ord_id <= *mark {
            return false;
        }
        *mark = cl_ord_id;
        true
    }

    fn insufficient(asset: u32) -> &'static str {
        if asset == 0 {
            reason::INSUFFICIENT_CASH
        } else {
            reason::INSUFFICIENT_UNITS
        }
    }

    /// Places an order: `Accepted`, its fills, then for an IOC its rest's
    /// `Canceled`; or one `Rejected`.
    pub fn new_order(&mut self, o: &NewOrder, sink: &mut impl EventSink) {
        if let Err(why) = self.check_new(o) {
            return reject(sink, RejectCode::InvalidOrder, why);
        }
        if !self.raise_mark(o.account, o.cl_ord_id) {
            return reject(sink, RejectCode::DuplicateId, reason::DUPLICATE_ID);
        }
        let (asset, lock) = lock_of(o.side, o.instrument, o.price, o.qty);
        if self.free_of(o.account, asset) < lock {
            return reject(
                sink,
                RejectCode::InsufficientBalance,
                Self::insufficient(asset),
            );
        }
        if o.tif == Tif::Day {
            // Checked before matching, so a refused order changes nothing;
            // this refuses some orders that would have filled completely,
            // which only happens at a full book.
            if self.pool.free_len() == 0 {
                return reject(sink, RejectCode::BookFull, reason::ORDER_POOL_FULL);
            }
            let ladder = &self.books[o.instrument as usize - 1][side_index(o.side)];
            if ladder.lacks_room_for(o.price) {
                return reject(sink, RejectCode::BookFull, reason::LEVELS_FULL);
            }
        }
        self.lock_delta(o.account, asset, lock);
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        sink.push(Event::Accepted {
            account: o.account,
            order_id,
            cl_ord_id: o.cl_ord_id,
            instrument: o.instrument,
            side: o.side,
            tif: o.tif,
            price: o.price,
            qty: o.qty,
        });
        let mut taker = Taker {
            account: o.account,
            order_id,
            cl_ord_id: o.cl_ord_id,
            instrument: o.instrument,
            side: o.side,
            price: o.price,
            open: o.qty,
        };
        self.match_taker(&mut taker, sink);
        if taker.open == 0 {
            return;
        }
        match o.tif {
            Tif::Day => {
                let order = Order {
                    price: o.price,
                    open: taker.open,
                    order_id,
                    cl_ord_id: o.cl_ord_id,
                    account: o.account,
                    instrument: o.instrument,
                    prev: crate::limits::NIL,
                    next: crate::limits::NIL,
                    side: o.side,
                };
                self.rest(order);
            }
            Tif::Ioc => {
                let (asset, rest_lock) = lock_of(o.side, o.instrument, o.price, taker.open);
                self.lock_delta(o.account, asset, -rest_lock);
                sink.push(Event::Canceled {
                    account: o.account,
                    order_id,
                    cl_ord_id: o.cl_ord_id,
                    canceled_qty: taker.open,
                    reason: CancelReason::IocRest,
                });
            }
        }
    }

    /// Puts an order (its lock already taken) in the pool, its book and the
    /// name index. The caller checked the pool and the level table.
    pub(crate) fn rest(&mut self, order: Order) -> u32 {
        let slot = self
            .pool
            .insert(order)
            .expect("the pool had room (checked)");
        self.books[order.instrument as usize - 1][side_index(order.side)]
            .push_back(&mut self.pool, slot);
        assert!(
            self.names.insert(order.account, order.cl_ord_id, slot),
            "names are unique"
        );
        slot
    }

    /// Fills `taker` against the opposite side while it crosses, best price
    /// first, oldest first within a price, each fill at the maker's price.
    fn match_taker(&mut self, taker: &mut Taker, sink: &mut impl EventSink) {
        let Engine {
            books,
            pool,
            names,
            balances,
            config,
            next_exec_id,
            ..
        } = self;
        let stride = config.instruments as usize + 1;
        let makers = &mut books[taker.instrument as usize - 1][side_index(taker.side.opposite())];
        while taker.open > 0 {
            let Some(level) = makers.best_mut() else {
                break;
            };
            let crosses = match taker.side {
                Side::Buy => level.price <= taker.price,
                Side::Sell => level.price >= taker.price,
            };
            if !crosses {
                break;
            }
            let slot = level.head;
            let maker = &mut pool[slot];
            let qty = taker.open.min(maker.open);
            maker.open -= qty;
            level.qty -= qty;
            taker.open -= qty;
            let exec_id = *next_exec_id;
            *next_exec_id += 1;
            let price = level.price;
            let (buyer, buyer_limit, seller) = match taker.side {
                Side::Buy => (taker.account, taker.price, maker.account),
                Side::Sell => (maker.account, maker.price, taker.account),
            };
            settle(
                balances,
                stride,
                buyer,
                buyer_limit,
                seller,
                taker.instrument,
                price,
                qty,
            );
            let maker = *maker;
            sink.push(Event::Executed {
                account: maker.account,
                order_id: maker.order_id,
                cl_ord_id: maker.cl_ord_id,
                exec_id,
                price,
                qty,
                leaves: maker.open,
                liquidity: Liquidity::Maker,
            });
            sink.push(Event::Executed {
                account: taker.account,
                order_id: taker.order_id,
                cl_ord_id: taker.cl_ord_id,
                exec_id,
                price,
                qty,
                leaves: taker.open,
                liquidity: Liquidity::Taker,
            });
            if maker.open == 0 {
                let done = makers.pop_best_head(pool);
                debug_assert_eq!(done, slot);
                names
                    .remove(maker.account, maker.cl_ord_id)
                    .expect("a resting order is named");
                pool.remove(slot);
            }
        }
    }

    /// Cancels an open order: `Canceled` (requested), or `Rejected`
    /// (`UnknownOrder`).
    pub fn cancel(&mut self, c: &Cancel, sink: &mut impl EventSink) {
        let Some(slot) = self.names.remove(c.account, c.orig_cl_ord_id) else {
            return reject(sink, RejectCode::UnknownOrder, reason::UNKNOWN_ORDER);
        };
        let order = self.pool[slot];
        self.books[order.instrument as usize - 1][side_index(order.side)]
            .unlink(&mut self.pool, slot);
        self.pool.remove(slot);
        let (asset, lock) = lock_of(order.side, order.instrument, order.price, order.open);
        self.lock_delta(order.account, asset, -lock);
        sink.push(Event::Canceled {
            account: order.account,
            order_id: order.order_id,
            cl_ord_id: order.cl_ord_id,
            canceled_qty: order.open,
            reason: CancelReason::Requested,
        });
    }

    /// Replaces an open order's price and open quantity and renames it:
    /// `Replaced`, then any fills it causes; or one `Rejected` (the order
    /// unchanged).
    pub fn replace(&mut self, r: &Replace, sink: &mut impl EventSink) {
        if let Err(why) = self.check_replace(r) {
            return reject(sink, RejectCode::InvalidOrder, why);
        }
        if !self.raise_mark(r.account, r.cl_ord_id) {
            return reject(sink, RejectCode::DuplicateId, reason::DUPLICATE_ID);
        }
        let Some(slot) = self.names.find(r.account, r.orig_cl_ord_id) else {
            return reject(sink, RejectCode::UnknownOrder, reason::UNKNOWN_ORDER);
        };
        let order = self.pool[slot];
        let (asset, lock_old) = lock_of(order.side, order.instrument, order.price, order.open);
        let (_, lock_new) = lock_of(order.side, order.instrument, r.price, r.qty);
        // The order's own lock counts as free for its replace.
        if self.free_of(r.account, asset) + lock_old < lock_new {
            return reject(
                sink,
                RejectCode::InsufficientBalance,
                Self::insufficient(asset),
            );
        }
        let ladder = &self.books[order.instrument as usize - 1][side_index(order.side)];
        if r.price != order.price && ladder.lacks_room_for(r.price) {
            return reject(sink, RejectCode::BookFull, reason::LEVELS_FULL);
        }
        self.names.remove(r.account, r.orig_cl_ord_id);
        assert!(
            self.names.insert(r.account, r.cl_ord_id, slot),
            "a fresh mark is a fresh name"
        );
        self.lock_delta(r.account, asset, lock_new - lock_old);
        sink.push(Event::Replaced {
            account: r.account,
            order_id: order.order_id,
            cl_ord_id: r.cl_ord_id,
            price: r.price,
            qty: r.qty,
        });
        let ladder = &mut self.books[order.instrument as usize - 1][side_index(order.side)];
        if r.price == order.price && r.qty <= order.open {
            // Keeps its place in the queue.
            ladder.shrink(order.price, order.open - r.qty);
            let o = &mut self.pool[slot];
            o.open = r.qty;
            o.cl_ord_id = r.cl_ord_id;
            return;
        }
        ladder.unlink(&mut self.pool, slot);
        let mut taker = Taker {
            account: r.account,
            order_id: order.order_id,
            cl_ord_id: r.cl_ord_id,
            instrument: order.instrument,
            side: order.side,
            price: r.price,
            open: r.qty,
        };
        self.match_taker(&mut taker, sink);
        if taker.open == 0 {
            self.names.remove(r.account, r.cl_ord_id);
            self.pool.remove(slot);
            return;
        }
        let o = &mut self.pool[slot];
        o.price = r.price;
        o.open = taker.open;
        o.cl_ord_id = r.cl_ord_id;
        self.books[order.instrument as usize - 1][side_index(order.side)]
            .push_back(&mut self.pool, slot);
    }

    /// `Book` and its levels, or `Rejected` (`InvalidOrder`) for an unknown
    /// instrument.
    pub fn book_query(&self, q: &BookQuery, sink: &mut impl EventSink) {
        if !(1..=self.config.instruments).contains(&q.instrument) {
            return reject(sink, RejectCode::InvalidOrder, reason::UNKNOWN_INSTRUMENT);
        }
        let depth = usize::from(q.depth.min(BOOK_DEPTH_MAX));
        let [bids, asks] = &self.books[q.instrument as usize - 1];
        sink.push(Event::Book {
            instrument: q.instrument,
            bids: bids.len().min(depth) as u16,
            asks: asks.len().min(depth) as u16,
        });
        for level in bids
            .best_first()
            .take(depth)
            .chain(asks.best_first().take(depth))
        {
            sink.push(Event::Level {
                price: level.price,
                qty: level.qty,
                orders: level.orders,
            });
        }
    }

    /// `Balance`, or `Rejected` (`InvalidOrder`) for an unknown account or
    /// asset.
    pub fn balance_query(&self, q: &BalanceQuery, sink: &mut impl EventSink) {
        if self.account_index(q.account).is_none() {
            return reject(sink, RejectCode::InvalidOrder, reason::UNKNOWN_ACCOUNT);
        }
        let Some((total, locked)) = self.balance(q.account, q.asset) else {
            return reject(sink, RejectCode::InvalidOrder, reason::UNKNOWN_ASSET);
        };
        sink.push(Event::Balance {
            account: q.account,
            asset: q.asset,
            total,
            locked,
        });
    }
}

/// Moves `price × qty` cash from buyer to seller and `qty` units from seller
/// to buyer, releasing the locks the filled quantity held (the buyer's at
/// its own limit, so a fill below it frees the difference).
#[allow(clippy::too_many_arguments)]
fn settle(
    balances: &mut [Cell],
    stride: usize,
    buyer: u32,
    buyer_limit: i64,
    seller: u32,
    instrument: u32,
    price: i64,
    qty: u64,
) {
    let q = qty as i64;
    let cash = price * q;
    let buyer_cash = (buyer as usize - 1) * stride;
    let seller_cash = (seller as usize - 1) * stride;
    let units = instrument as usize;
    let apply = |cell: &mut Cell, total: i64, locked: i64| {
        cell.total = cell.total.checked_add(total).expect("balance overflow");
        cell.locked = cell.locked.checked_add(locked).expect("lock overflow");
    };
    apply(&mut balances[buyer_cash], -cash, -(buyer_limit * q));
    apply(&mut balances[buyer_cash + units], q, 0);
    apply(&mut balances[seller_cash + units], -q, -q);
    apply(&mut balances[seller_cash], cash, 0);
    debug_assert!(balances[buyer_cash].locked >= 0 && balances[seller_cash + units].locked >= 0);
}
