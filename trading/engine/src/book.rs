//! One book side: a sorted array of price levels, best last, each level a
//! FIFO of pool slots (time priority).
//!
//! Best last means that taking liquidity pops from the end and that a new
//! level near the touch (where most orders go) moves only the few levels
//! between it and the end. A level is found by binary search over a
//! contiguous array.
//!
//! A level that empties stays in the array, empty, until the array needs
//! its room. A replace that moves an order a few ticks (the commonest
//! request in exchange-core's workload) usually empties its old level and
//! needs a new one right beside it; reusing the empty neighbour for the new
//! price keeps the array sorted and moves no memory at all, where removing
//! and inserting would each shift every level on the far side of the
//! touch. Empty levels are invisible outside this module: they count
//! against nothing, queries skip them, and the array is compacted in one
//! pass when it is full or holds more empty levels than live ones (plus a
//! slack).

use crate::command::Side;
use crate::limits::NIL;
use crate::pool::Pool;

/// Empty levels kept beyond one per live level before a compaction: the
/// bound keeps binary searches short (a table of thousands of empties would
/// double their steps and miss the cache), and compacting only after
/// `live + EMPTY_SLACK` new empties keeps its cost per request small.
const EMPTY_SLACK: usize = 64;

/// One price level: its orders oldest first, with their sum kept for
/// snapshots. `orders == 0` marks an empty level kept for reuse.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub price: i64,
    pub qty: u64,
    pub orders: u32,
    pub head: u32,
    pub tail: u32,
}

impl Level {
    fn empty(price: i64) -> Level {
        Level {
            price,
            qty: 0,
            orders: 0,
            head: NIL,
            tail: NIL,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Ladder {
    side: Side,
    /// Sorted, best last; some may be empty.
    levels: Vec<Level>,
    /// Levels with at least one order.
    live: usize,
    levels_max: usize,
}

impl Ladder {
    pub fn new(side: Side, levels_max: u32) -> Ladder {
        Ladder {
            side,
            levels: Vec::with_capacity(levels_max as usize),
            live: 0,
            levels_max: levels_max as usize,
        }
    }

    /// Levels with orders.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether an order at `price` would need a level the side has no room
    /// for.
    pub fn lacks_room_for(&self, price: i64) -> bool {
        self.live >= self.levels_max && !self.has_level(price)
    }

    fn has_level(&self, price: i64) -> bool {
        matches!(self.find(price), Ok(p) if self.levels[p].orders > 0)
    }

    /// `Ok(position)` of the level at `price` (perhaps empty), or
    /// `Err(position)` where it would go.
    fn find(&self, price: i64) -> Result<usize, usize> {
        match self.side {
            // Ascending: the highest bid is last.
            Side::Buy => self.levels.binary_search_by(|l| l.price.cmp(&price)),
            // Descending: the lowest ask is last.
            Side::Sell => self.levels.binary_search_by(|l| price.cmp(&l.price)),
        }
    }

    /// The position of the level with orders at `price`.
    fn position_of(&self, price: i64) -> usize {
        match self.find(price) {
            Ok(p) if self.levels[p].orders > 0 => p,
            _ => panic!("a resting order's level exists"),
        }
    }

    /// Subtracts `qty` from the level at `price` (an order there shrank).
    pub fn shrink(&mut self, price: i64, qty: u64) {
        let p = self.position_of(price);
        self.levels[p].qty -= qty;
    }

    /// Levels with orders, best first.
    pub fn best_first(&self) -> impl Iterator<Item = &Level> {
        self.levels.iter().rev().filter(|l| l.orders > 0)
    }

    /// The best level, dropping empty ones above it (at the end, so free).
    pub fn best_mut(&mut self) -> Option<&mut Level> {
        while self.levels.last().is_some_and(|l| l.orders == 0) {
            self.levels.pop();
        }
        self.levels.last_mut()
    }

    /// The position of a level with orders at `price`, made if needed.
    /// The caller has checked `lacks_room_for`.
    fn level_for(&mut self, price: i64) -> usize {
        let p = match self.find(price) {
            Ok(p) => return p,
            Err(p) => p,
        };
        // An empty neighbour can take the price without breaking the order.
        if p < self.levels.len() && self.levels[p].orders == 0 {
            self.levels[p].price = price;
            return p;
        }
        if p > 0 && self.levels[p - 1].orders == 0 {
            self.levels[p - 1].price = price;
            return p - 1;
        }
        if self.levels.len() == self.levels_max || self.levels.len() > EMPTY_SLACK + 2 * self.live {
            assert!(self.live < self.levels_max, "level table overflow");
            self.levels.retain(|l| l.orders > 0);
            return self.level_for(price);
        }
        self.levels.insert(p, Level::empty(price));
        p
    }

    /// Appends `slot` (already filled in, with its price) to the back of its
    /// level.
    pub fn push_back(&mut self, pool: &mut Pool, slot: u32) {
        let (price, open) = (pool[slot].price, pool[slot].open);
        let position = self.level_for(price);
        let level = &mut self.levels[position];
        if level.orders == 0 {
            self.live += 1;
        }
        pool[slot].prev = level.tail;
        pool[slot].next = NIL;
        if level.tail == NIL {
            level.head = slot;
        } else {
            pool[level.tail].next = slot;
        }
        level.tail = slot;
        level.qty += open;
        level.orders += 1;
    }

    /// Takes `slot` out of its level; an emptied level stays for reuse.
    pub fn unlink(&mut self, pool: &mut Pool, slot: u32) {
        let (price, open, prev, next) = {
            let o = &pool[slot];
            (o.price, o.open, o.prev, o.next)
        };
        let position = self.position_of(price);
        let level = &mut self.levels[position];
        if prev == NIL {
            level.head = next;
        } else {
            pool[prev].next = next;
        }
        if next == NIL {
            level.tail = prev;
        } else {
            pool[next].prev = prev;
        }
        level.qty -= open;
        level.orders -= 1;
        if level.orders == 0 {
            debug_assert!(level.head == NIL && level.qty == 0);
            self.live -= 1;
        }
        pool[slot].prev = NIL;
        pool[slot].next = NIL;
    }

    /// Takes the best level's oldest order out (it filled completely).
    pub fn pop_best_head(&mut self, pool: &mut Pool) -> u32 {
        let level = self.levels.last_mut().expect("a best level to pop from");
        let slot = level.head;
        let next = pool[slot].next;
        level.head = next;
        if next == NIL {
            level.tail = NIL;
        } else {
            pool[next].prev = NIL;
        }
        level.orders -= 1;
        debug_assert!(pool[slot].open == 0);
        if level.orders == 0 {
            debug_assert!(level.qty == 0);
            self.levels.pop();
            self.live -= 1;
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Order;

    fn order(price: i64) -> Order {
        Order {
            price,
            open: 1,
            order_id: 1,
            cl_ord_id: 1,
            account: 1,
            instrument: 1,
            prev: NIL,
            next: NIL,
            side: Side::Buy,
        }
    }

    #[test]
    fn empty_levels_never_outnumber_live_ones_by_more_than_the_slack() {
        let mut pool = Pool::new(16);
        let mut ladder = Ladder::new(Side::Buy, 1 << 16);
        let mut resting: Vec<u32> = Vec::new();
        // Ten orders walk down the book one far step at a time, each step
        // leaving an empty level behind, as a drifting market does.
        for step in 0..10_000i64 {
            if resting.len() == 10 {
                let slot = resting.remove(0);
                ladder.unlink(&mut pool, slot);
                pool.remove(slot);
            }
            let slot = pool.insert(order(1_000_000 - 7 * step)).unwrap();
            ladder.push_back(&mut pool, slot);
            resting.push(slot);
            assert!(
                ladder.levels.len() <= EMPTY_SLACK + 2 * ladder.len() + 1,
                "step {step}"
            );
        }
        assert_eq!(ladder.len(), 10);
        let prices: Vec<i64> = ladder.best_first().map(|l| l.price).collect();
        let expect: Vec<i64> = (9_990..10_000).map(|s| 1_000_000 - 7 * s).collect();
        assert_eq!(
            prices, expect,
            "live levels best first, whatever was compacted"
        );
    }
}
