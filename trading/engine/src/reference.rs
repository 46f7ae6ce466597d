//! A deliberately simple reference engine: the resting orders in one `Vec`
//! in arrival order, matching by scanning it, locks recomputed from the
//! orders each time they are needed. Slow (every request is linear in the
//! open orders, and it allocates) and obviously right: [`Engine`] must
//! give the same events, field for field, which the crate's property tests
//! check. It is public so a simulator can feed both the same commands and
//! compare online.
//!
//! [`Engine`]: crate::Engine

use std::collections::BTreeMap;

use crate::{
    reason, BalanceQuery, BookQuery, Cancel, CancelReason, Command, Config, Event, Liquidity,
    NewOrder, RejectCode, Replace, Side, Tif,
};

#[derive(Clone, Copy, Debug)]
struct Resting {
    account: u32,
    name: u64,
    order_id: u64,
    instrument: u32,
    side: Side,
    price: i64,
    open: u64,
    /// Time priority: lower is older.
    seq: u64,
}

/// The reference engine. It trusts its [`Config`] (no limits checked).
#[derive(Debug)]
pub struct Model {
    config: Config,
    orders: Vec<Resting>,
    /// (account, asset) → total; locks are derived from `orders`.
    totals: BTreeMap<(u32, u32), i64>,
    marks: BTreeMap<u32, u64>,
    next_order_id: u64,
    next_exec_id: u64,
    next_seq: u64,
}

fn reject(code: RejectCode, reason: &'static str) -> Vec<Event> {
    vec![Event::Rejected { code, reason }]
}

impl Model {
    /// Every account at its starting balances, no orders, marks at 0.
    pub fn new(config: Config) -> Model {
        let mut totals = BTreeMap::new();
        for account in 1..=config.accounts {
            totals.insert((account, 0), config.cash);
            for asset in 1..=config.instruments {
                totals.insert((account, asset), config.units);
            }
        }
        Model {
            config,
            orders: Vec::new(),
            totals,
            marks: (1..=config.accounts).map(|a| (a, 0)).collect(),
            next_order_id: 1,
            next_exec_id: 1,
            next_seq: 0,
        }
    }

    /// The open orders as (account, name, price, open), oldest first.
    pub fn open_orders(&self) -> Vec<(u32, u64, i64, u64)> {
        self.orders
            .iter()
            .map(|o| (o.account, o.name, o.price, o.open))
            .collect()
    }

    fn locked(&self, account: u32, asset: u32) -> i64 {
        self.orders
            .iter()
            .filter(|o| o.account == account)
            .map(|o| match o.side {
                Side::Buy if asset == 0 => o.price * o.open as i64,
                Side::Sell if asset == o.instrument => o.open as i64,
                _ => 0,
            })
            .sum()
    }

    fn free(&self, account: u32, asset: u32) -> i64 {
        self.totals[&(account, asset)] - self.locked(account, asset)
    }

    fn invalid_price_qty(price: i64, qty: u64) -> Option<&'static str> {
        if price <= 0 {
            Some(reason::PRICE_NOT_POSITIVE)
        } else if qty == 0 || qty > 1_000_000_000 {
            Some(reason::QTY_OUT_OF_RANGE)
        } else if (price as i128) * (qty as i128) > i64::MAX as i128 {
            Some(reason::NOTIONAL_OVERFLOW)
        } else {
            None
        }
    }

    fn known_account(&self, account: u32) -> bool {
        account >= 1 && account <= self.config.accounts
    }

    fn raise_mark(&mut self, account: u32, id: u64) -> bool {
        let mark = self.marks.get_mut(&account).unwrap();
        if id <= *mark {
            return false;
        }
        *mark = id;
        true
    }

    fn needs(side: Side, instrument: u32, price: i64, qty: u64) -> (u32, i64) {
        match side {
            Side::Buy => (0, price * qty as i64),
            Side::Sell => (instrument, qty as i64),
        }
    }

    fn short(asset: u32) -> &'static str {
        if asset == 0 {
            reason::INSUFFICIENT_CASH
        } else {
            reason::INSUFFICIENT_UNITS
        }
    }

    fn has_level(&self, instrument: u32, side: Side, price: i64) -> bool {
        self.orders
            .iter()
            .any(|o| o.instrument == instrument && o.side == side && o.price == price)
    }

    fn level_count(&self, instrument: u32, side: Side) -> usize {
        let mut prices: Vec<i64> = self
            .orders
            .iter()
            .filter(|o| o.instrument == instrument && o.side == side)
            .map(|o| o.price)
            .collect();
        prices.sort();
        prices.dedup();
        prices.len()
    }

    fn levels_full(&self, instrument: u32, side: Side, price: i64) -> bool {
        !self.has_level(instrument, side, price)
            && self.level_count(instrument, side) >= self.config.levels_max as usize
    }

    /// Applies a request; its events, in order.
    pub fn handle(&mut self, command: &Command) -> Vec<Event> {
        match command {
            Command::NewOrder(o) => self.new_order(o),
            Command::Cancel(c) => self.cancel(c),
            Command::Replace(r) => self.replace(r),
            Command::BookQuery(q) => self.book(q),
            Command::BalanceQuery(q) => self.balance(q),
        }
    }

    fn new_order(&mut self, o: &NewOrder) -> Vec<Event> {
        if !self.known_account(o.account) {
            return reject(RejectCode::InvalidOrder, reason::UNKNOWN_ACCOUNT);
        }
        if o.instrument < 1 || o.instrument > self.config.instruments {
            return reject(RejectCode::InvalidOrder, reason::UNKNOWN_INSTRUMENT);
        }
        if let Some(why) = Self::invalid_price_qty(o.price, o.qty) {
            return reject(RejectCode::InvalidOrder, why);
        }
        if !self.raise_mark(o.account, o.cl_ord_id) {
            return reject(RejectCode::DuplicateId, reason::DUPLICATE_ID);
        }
        let (asset, need) = Self::needs(o.side, o.instrument, o.price, o.qty);
        if self.free(o.account, asset) < need {
            return reject(RejectCode::InsufficientBalance, Self::short(asset));
        }
        if o.tif == Tif::Day {
            if self.orders.len() >= self.config.orders_max as usize {
                return reject(RejectCode::BookFull, reason::ORDER_POOL_FULL);
            }
            if self.levels_full(o.instrument, o.side, o.price) {
                return reject(RejectCode::BookFull, reason::LEVELS_FULL);
            }
        }
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let mut events = vec![Event::Accepted {
            account: o.account,
            order_id,
            cl_ord_id: o.cl_ord_id,
            instrument: o.instrument,
            side: o.side,
            tif: o.tif,
            price: o.price,
            qty: o.qty,
        }];
        let mut taker = Resting {
            account: o.account,
            name: o.cl_ord_id,
            order_id,
            instrument: o.instrument,
            side: o.side,
            price: o.price,
            open: o.qty,
            seq: 0,
        };
        self.trade(&mut taker, &mut events);
        if taker.open > 0 {
            match o.tif {
                Tif::Day => self.push_back(taker),
                Tif::Ioc => events.push(Event::Canceled {
                    account: o.account,
                    order_id,
                    cl_ord_id: o.cl_ord_id,
                    canceled_qty: taker.open,
                    reason: CancelReason::IocRest,
                }),
            }
        }
        events
    }

    fn push_back(&mut self, mut order: Resting) {
        order.seq = self.next_seq;
        self.next_seq += 1;
        self.orders.push(order);
    }

    /// Fills `taker` against the best crossing order, one at a time.
    fn trade(&mut self, taker: &mut Resting, events: &mut Vec<Event>) {
        while taker.open > 0 {
            let best = self
                .orders
                .iter()
                .enumerate()
                .filter(|(_, m)| m.instrument == taker.instrument && m.side != taker.side)
                .filter(|(_, m)| match taker.side {
                    Side::Buy => m.price <= taker.price,
                    Side::Sell => m.price >= taker.price,
                })
                .min_by_key(|(_, m)| {
                    let price_rank = match taker.side {
                        Side::Buy => m.price,
                        Side::Sell => -m.price,
                    };
                    (price_rank, m.seq)
                })
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let qty = taker.open.min(self.orders[i].open);
            let price = self.orders[i].price;
            self.orders[i].open -= qty;
            taker.open -= qty;
            let maker = self.orders[i];
            let (buyer, seller) = match taker.side {
                Side::Buy => (taker.account, maker.account),
                Side::Sell => (maker.account, taker.account),
            };
            let cash = price * qty as i64;
            *self.totals.get_mut(&(buyer, 0)).unwrap() -= cash;
            *self.totals.get_mut(&(seller, 0)).unwrap() += cash;
            *self.totals.get_mut(&(buyer, taker.instrument)).unwrap() += qty as i64;
            *self.totals.get_mut(&(seller, taker.instrument)).unwrap() -= qty as i64;
            let exec_id = self.next_exec_id;
            self.next_exec_id += 1;
            for (o, liquidity) in [(maker, Liquidity::Maker), (*taker, Liquidity::Taker)] {
                events.push(Event::Executed {
                    account: o.account,
                    order_id: o.order_id,
                    cl_ord_id: o.name,
                    exec_id,
                    price,
                    qty,
                    leaves: o.open,
                    liquidity,
                });
            }
            if maker.open == 0 {
                self.orders.remove(i);
            }
        }
    }

    fn position(&self, account: u32, name: u64) -> Option<usize> {
        self.orders
            .iter()
            .position(|o| o.account == account && o.name == name)
    }

    fn cancel(&mut self, c: &Cancel) -> Vec<Event> {
        let Some(i) = self.position(c.account, c.orig_cl_ord_id) else {
            return reject(RejectCode::UnknownOrder, reason::UNKNOWN_ORDER);
        };
        let o = self.orders.remove(i);
        vec![Event::Canceled {
            account: o.account,
            order_id: o.order_id,
            cl_ord_id: o.name,
            canceled_qty: o.open,
            reason: CancelReason::Requested,
        }]
    }

    fn replace(&mut self, r: &Replace) -> Vec<Event> {
        if !self.known_account(r.account) {
            return reject(RejectCode::InvalidOrder, reason::UNKNOWN_ACCOUNT);
        }
        if let Some(why) = Self::invalid_price_qty(r.price, r.qty) {
            return reject(RejectCode::InvalidOrder, why);
        }
        if !self.raise_mark(r.account, r.cl_ord_id) {
            return reject(RejectCode::DuplicateId, reason::DUPLICATE_ID);
        }
        let Some(i) = self.position(r.account, r.orig_cl_ord_id) else {
            return reject(RejectCode::UnknownOrder, reason::UNKNOWN_ORDER);
        };
        let o = self.orders[i];
        let (asset, old) = Self::needs(o.side, o.instrument, o.price, o.open);
        let (_, new) = Self::needs(o.side, o.instrument, r.price, r.qty);
        if self.free(r.account, asset) + old < new {
            return reject(RejectCode::InsufficientBalance, Self::short(asset));
        }
        if r.price != o.price && self.levels_full(o.instrument, o.side, r.price) {
            return reject(RejectCode::BookFull, reason::LEVELS_FULL);
        }
        let mut events = vec![Event::Replaced {
            account: r.account,
            order_id: o.order_id,
            cl_ord_id: r.cl_ord_id,
            price: r.price,
            qty: r.qty,
        }];
        if r.price == o.price && r.qty <= o.open {
            self.orders[i].open = r.qty;
            self.orders[i].name = r.cl_ord_id;
            return events;
        }
        let mut taker = self.orders.remove(i);
        taker.name = r.cl_ord_id;
        taker.price = r.price;
        taker.open = r.qty;
        self.trade(&mut taker, &mut events);
        if taker.open > 0 {
            self.push_back(taker);
        }
        events
    }

    fn book(&self, q: &BookQuery) -> Vec<Event> {
        if q.instrument < 1 || q.instrument > self.config.instruments {
            return reject(RejectCode::InvalidOrder, reason::UNKNOWN_INSTRUMENT);
        }
        let depth = q.depth.min(100) as usize;
        let mut sides = Vec::new();
        for side in [Side::Buy, Side::Sell] {
            let mut levels: BTreeMap<i64, (u64, u32)> = BTreeMap::new();
            for o in self
                .orders
                .iter()
                .filter(|o| o.instrument == q.instrument && o.side == side)
            {
                let level = levels.entry(o.price).or_default();
                level.0 += o.open;
                level.1 += 1;
            }
            let mut levels: Vec<Event> = levels
                .into_iter()
                .map(|(price, (qty, orders))| Event::Level { price, qty, orders })
                .collect();
            if side == Side::Buy {
                levels.reverse();
            }
            levels.truncate(depth);
            sides.push(levels);
        }
        let mut events = vec![Event::Book {
            instrument: q.instrument,
            bids: sides[0].len() as u16,
            asks: sides[1].len() as u16,
        }];
        events.extend(sides.concat());
        events
    }

    fn balance(&self, q: &BalanceQuery) -> Vec<Event> {
        if !self.known_account(q.account) {
            return reject(RejectCode::InvalidOrder, reason::UNKNOWN_ACCOUNT);
        }
        if q.asset > self.config.instruments {
            return reject(RejectCode::InvalidOrder, reason::UNKNOWN_ASSET);
        }
        vec![Event::Balance {
            account: q.account,
            asset: q.asset,
            total: self.totals[&(q.account, q.asset)],
            locked: self.locked(q.account, q.asset),
        }]
    }
}
