//! One book side: a sorted array of price levels, best last, each level a
//! FIFO of pool slots (time priority).
//!
//! Best last means that taking liquidity pops from the end and that a new
//! level near the touch (where most orders go) moves only the few levels
//! between it and the end. A level is found by binary search over a
//! contiguous array, which stays in cache for the ~1,000 levels a book has.

use crate::command::Side;
use crate::limits::NIL;
use crate::pool::Pool;

/// One price level: its orders oldest first, with their sum kept for
/// snapshots.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub price: i64,
    pub qty: u64,
    pub orders: u32,
    pub head: u32,
    pub tail: u32,
}

#[derive(Debug)]
pub(crate) struct Ladder {
    side: Side,
    levels: Vec<Level>,
    levels_max: usize,
}

impl Ladder {
    pub fn new(side: Side, levels_max: u32) -> Ladder {
        Ladder {
            side,
            levels: Vec::with_capacity(levels_max as usize),
            levels_max: levels_max as usize,
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_full(&self) -> bool {
        self.levels.len() >= self.levels_max
    }

    /// `Ok(position)` of the level at `price`, or `Err(position)` where it
    /// would go.
    pub fn find(&self, price: i64) -> Result<usize, usize> {
        match self.side {
            // Ascending: the highest bid is last.
            Side::Buy => self.levels.binary_search_by(|l| l.price.cmp(&price)),
            // Descending: the lowest ask is last.
            Side::Sell => self.levels.binary_search_by(|l| price.cmp(&l.price)),
        }
    }

    pub fn level_mut(&mut self, position: usize) -> &mut Level {
        &mut self.levels[position]
    }

    /// Levels best first.
    pub fn best_first(&self) -> impl Iterator<Item = &Level> {
        self.levels.iter().rev()
    }

    /// Appends `slot` (already filled in, with its price) to the back of its
    /// level, creating the level if needed. The caller has checked
    /// `is_full` when the level may be new.
    pub fn push_back(&mut self, pool: &mut Pool, slot: u32) {
        let (price, open) = (pool[slot].price, pool[slot].open);
        let position = match self.find(price) {
            Ok(p) => p,
            Err(p) => {
                assert!(self.levels.len() < self.levels_max, "level table overflow");
                let level = Level {
                    price,
                    qty: 0,
                    orders: 0,
                    head: NIL,
                    tail: NIL,
                };
                self.levels.insert(p, level);
                p
            }
        };
        let level = &mut self.levels[position];
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

    /// Takes `slot` out of its level, dropping the level when it empties.
    pub fn unlink(&mut self, pool: &mut Pool, slot: u32) {
        let (price, open, prev, next) = {
            let o = &pool[slot];
            (o.price, o.open, o.prev, o.next)
        };
        let position = self.find(price).expect("a resting order's level exists");
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
            self.levels.remove(position);
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
        }
        slot
    }

    /// The best level's position, for fills at the touch.
    pub fn best_position(&self) -> Option<usize> {
        self.levels.len().checked_sub(1)
    }
}
