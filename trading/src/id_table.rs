//! A map from an exchange's `order_id` to a small value: an open-addressed
//! table with linear probing. The exchange keeps each open order's owner in
//! one; the gateway, each open order's place in its tracker.
//!
//! Order ids are handed out one after another, so the id itself (masked) is
//! a good home slot. Deletion shifts later entries back instead of leaving
//! tombstones.
//!
//! Its memory is reserved at start for twice `open_max` ids, but only a
//! prefix is in use: it starts at [`ACTIVE_MIN`] entries and doubles (a
//! rehash into a second reserved buffer, so no allocation) whenever the ids
//! would fill more than half of it; it never shrinks. Its working set thus
//! follows the orders actually open, not the bound. A table spread over
//! all of its entries (80 MiB for the exchange's default bound) put the
//! open orders' ids, which spread over an ever-moving window of ids, each
//! on its own cold line and page: in a closed loop of order entry through
//! the gateway, half of `Exchange::order`'s samples were its first probe.

/// Entries in use at start (or all of them, for a smaller bound).
pub(crate) const ACTIVE_MIN: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Entry<V> {
    /// 0 when empty (order ids start at 1).
    order_id: u64,
    value: V,
}

/// `order_id` → `V` for the orders open at one time.
#[derive(Debug)]
pub(crate) struct IdTable<V> {
    /// The entries in use: a power of two, at most `capacity`.
    entries: Vec<Entry<V>>,
    /// The other reserved buffer, empty: the next rehash goes there.
    spare: Vec<Entry<V>>,
    /// Entries reserved (twice `open_max`, a power of two).
    capacity: usize,
    mask: usize,
    len: usize,
}

impl<V: Copy + Default> IdTable<V> {
    /// A table for `open_max` ids at once (twice as many entries reserved,
    /// so a probe stays short at the bound).
    pub(crate) fn new(open_max: usize) -> IdTable<V> {
        let capacity = (open_max * 2).next_power_of_two().max(2);
        let mut entries = Vec::with_capacity(capacity);
        entries.resize(capacity.min(ACTIVE_MIN), Self::empty());
        IdTable {
            mask: entries.len() - 1,
            entries,
            spare: Vec::with_capacity(capacity),
            capacity,
            len: 0,
        }
    }

    fn empty() -> Entry<V> {
        Entry {
            order_id: 0,
            value: V::default(),
        }
    }

    fn position(&self, order_id: u64) -> Result<usize, usize> {
        let mut i = order_id as usize & self.mask;
        loop {
            match self.entries[i].order_id {
                0 => return Err(i),
                id if id == order_id => return Ok(i),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// Sets (or replaces) the value of `order_id`.
    pub(crate) fn set(&mut self, order_id: u64, value: V) {
        assert!(order_id != 0, "order ids start at 1");
        if (self.len + 1) * 2 > self.entries.len() && self.entries.len() < self.capacity {
            self.grow();
        }
        match self.position(order_id) {
            Ok(i) => self.entries[i].value = value,
            Err(i) => {
                assert!(self.len < self.mask, "more open ids than the table holds");
                self.entries[i] = Entry { order_id, value };
                self.len += 1;
            }
        }
    }

    /// Doubles the entries in use and rehashes every id into them, in the
    /// spare buffer (reserved at start: no allocation).
    fn grow(&mut self) {
        let active = self.entries.len() * 2;
        debug_assert!(active <= self.capacity && self.spare.is_empty());
        self.spare.resize(active, Self::empty());
        std::mem::swap(&mut self.entries, &mut self.spare);
        self.mask = active - 1;
        for k in 0..self.spare.len() {
            let e = self.spare[k];
            if e.order_id == 0 {
                continue;
            }
            let mut i = e.order_id as usize & self.mask;
            while self.entries[i].order_id != 0 {
                i = (i + 1) & self.mask;
            }
            self.entries[i] = e;
        }
        self.spare.clear();
    }

    /// The value of `order_id`, if it is there.
    pub(crate) fn get(&self, order_id: u64) -> Option<V> {
        self.position(order_id).ok().map(|i| self.entries[i].value)
    }

    /// Forgets `order_id`; returns its value.
    pub(crate) fn remove(&mut self, order_id: u64) -> Option<V> {
        let Ok(mut hole) = self.position(order_id) else {
            return None;
        };
        let value = self.entries[hole].value;
        self.len -= 1;
        // Backward-shift deletion: move up every later entry of the probe
        // run whose home is at or before the hole.
        let mut i = hole;
        loop {
            i = (i + 1) & self.mask;
            let e = self.entries[i];
            if e.order_id == 0 {
                break;
            }
            let home = e.order_id as usize & self.mask;
            let distance_home = i.wrapping_sub(home) & self.mask;
            let distance_hole = i.wrapping_sub(hole) & self.mask;
            if distance_home >= distance_hole {
                self.entries[hole] = e;
                hole = i;
            }
        }
        self.entries[hole].order_id = 0;
        Some(value)
    }

    /// Ids in the table.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Entries in use.
    #[cfg(test)]
    fn active(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_table_agrees_with_a_map_under_churn() {
        // A bound below the first prefix, and one the table grows to.
        for open_max in [64usize, 3_000] {
            let mut table = IdTable::<u64>::new(open_max);
            let mut model = BTreeMap::new();
            let mut next = 1u64;
            let mut x = 12345u64;
            for _ in 0..20_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if (x >> 33) % 3 != 0 && model.len() < open_max {
                    table.set(next, next * 7);
                    model.insert(next, next * 7);
                    next += 1;
                } else if let Some(&id) =
                    model.keys().nth(((x >> 40) as usize) % model.len().max(1))
                {
                    assert_eq!(table.remove(id), model.remove(&id));
                }
                assert_eq!(table.len(), model.len());
            }
            assert!(model.len() > 1_000 || open_max < 1_000, "the table grew");
            for id in 1..next {
                assert_eq!(table.get(id), model.get(&id).copied(), "order {id}");
            }
        }
    }

    #[test]
    fn the_table_doubles_only_when_half_full_and_keeps_every_id() {
        let mut table = IdTable::<u64>::new(1 << 16);
        assert_eq!(table.active(), ACTIVE_MIN);
        // Ids far apart in a long run, like old orders outliving many
        // newer ones, and a churn of new ones beside them.
        for id in 1..=ACTIVE_MIN as u64 / 2 {
            table.set(id * 1_000_003, id);
        }
        assert_eq!(table.active(), ACTIVE_MIN, "half full is not past half");
        table.set(7, 7);
        assert_eq!(table.active(), 2 * ACTIVE_MIN, "one more doubles it");
        for id in 1..=ACTIVE_MIN as u64 / 2 {
            assert_eq!(
                table.get(id * 1_000_003),
                Some(id),
                "order {id} after the rehash"
            );
        }
        assert_eq!(table.remove(7), Some(7));
        assert_eq!(table.len(), ACTIVE_MIN / 2);
        let mut small = IdTable::<u64>::new(4);
        assert_eq!(small.active(), 8, "a bound below the start uses all of it");
        for id in 1..=4 {
            small.set(id, id);
        }
        assert_eq!(small.active(), 8);
    }

    #[test]
    fn an_old_order_survives_many_newer_ones_colliding_with_it() {
        let mut table = IdTable::<u64>::new(4);
        table.set(1, 10);
        for id in 2..200 {
            table.set(id, id);
            assert_eq!(table.remove(id), Some(id));
        }
        assert_eq!(table.get(1), Some(10));
        assert_eq!(table.len(), 1);
        assert_eq!(table.remove(99), None);
    }
}
