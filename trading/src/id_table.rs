//! A map from an exchange's `order_id` to a small value: an open-addressed
//! table with linear probing, sized at start for every order that can be
//! open, so it never grows and never allocates. The exchange keeps each open
//! order's owner in one; the gateway, each open order's place in its
//! tracker.
//!
//! Order ids are handed out one after another, so the id itself (masked) is
//! a good home slot: live ids are spread over a window of the table and
//! collide only when an old order outlives about a table's worth of newer
//! ones. Deletion shifts later entries back instead of leaving tombstones.

#[derive(Clone, Copy, Debug)]
struct Entry<V> {
    /// 0 when empty (order ids start at 1).
    order_id: u64,
    value: V,
}

/// `order_id` → `V` for the orders open at one time.
#[derive(Debug)]
pub(crate) struct IdTable<V> {
    entries: Vec<Entry<V>>,
    mask: usize,
    len: usize,
}

impl<V: Copy + Default> IdTable<V> {
    /// A table for `open_max` ids at once (twice as many entries, so a probe
    /// stays short).
    pub(crate) fn new(open_max: usize) -> IdTable<V> {
        let capacity = (open_max * 2).next_power_of_two().max(2);
        let empty = Entry {
            order_id: 0,
            value: V::default(),
        };
        IdTable {
            entries: vec![empty; capacity],
            mask: capacity - 1,
            len: 0,
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
        match self.position(order_id) {
            Ok(i) => self.entries[i].value = value,
            Err(i) => {
                assert!(self.len < self.mask, "more open ids than the table holds");
                self.entries[i] = Entry { order_id, value };
                self.len += 1;
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_table_agrees_with_a_map_under_churn() {
        let mut table = IdTable::<u64>::new(64);
        let mut model = BTreeMap::new();
        let mut next = 1u64;
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if (x >> 33) % 3 != 0 && model.len() < 64 {
                table.set(next, next * 7);
                model.insert(next, next * 7);
                next += 1;
            } else if let Some(&id) = model.keys().nth(((x >> 40) as usize) % model.len().max(1)) {
                assert_eq!(table.remove(id), model.remove(&id));
            }
            assert_eq!(table.len(), model.len());
        }
        for id in 1..next {
            assert_eq!(table.get(id), model.get(&id).copied(), "order {id}");
        }
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
