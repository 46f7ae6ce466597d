//! Who hears about each open order: `order_id` → [`Owner`], an
//! open-addressed table with linear probing, sized at start for every order
//! the engine can hold, so it never grows and never allocates.
//!
//! Order ids are handed out one after another, so the id itself (masked) is
//! a good home slot: live ids are spread over a window of the table and
//! collide only when an old order outlives about a table's worth of newer
//! ones. Deletion shifts later entries back instead of leaving tombstones.

use super::Owner;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// 0 when empty (order ids start at 1).
    order_id: u64,
    owner: Option<Owner>,
}

const EMPTY: Entry = Entry {
    order_id: 0,
    owner: None,
};

/// The owners of open orders.
#[derive(Debug)]
pub(crate) struct Owners {
    entries: Vec<Entry>,
    mask: usize,
    len: usize,
}

impl Owners {
    /// A table for `orders_max` open orders (twice as many entries, so a
    /// probe stays short).
    pub(crate) fn new(orders_max: usize) -> Owners {
        let capacity = (orders_max * 2).next_power_of_two().max(2);
        Owners {
            entries: vec![EMPTY; capacity],
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

    /// Sets (or replaces) the owner of `order_id`. `None` records an order
    /// that has no connection (recovered from a journal).
    pub(crate) fn set(&mut self, order_id: u64, owner: Option<Owner>) {
        assert!(order_id != 0, "order ids start at 1");
        match self.position(order_id) {
            Ok(i) => self.entries[i].owner = owner,
            Err(i) => {
                assert!(
                    self.len < self.mask,
                    "more open orders than the engine holds"
                );
                self.entries[i] = Entry { order_id, owner };
                self.len += 1;
            }
        }
    }

    /// The owner of `order_id`, if it has one.
    pub(crate) fn get(&self, order_id: u64) -> Option<Owner> {
        self.position(order_id)
            .ok()
            .and_then(|i| self.entries[i].owner)
    }

    /// Forgets `order_id` (it closed).
    pub(crate) fn remove(&mut self, order_id: u64) {
        let Ok(mut hole) = self.position(order_id) else {
            return;
        };
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
        self.entries[hole] = EMPTY;
    }

    /// Open orders known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fep_core::{ConnId, WorkerId};
    use std::collections::BTreeMap;

    fn owner(n: u64) -> Option<Owner> {
        Some(Owner {
            worker: WorkerId(0),
            conn: ConnId::from_bits(n),
            route: n,
        })
    }

    #[test]
    fn the_table_agrees_with_a_map_under_churn() {
        let mut table = Owners::new(64);
        let mut model = BTreeMap::new();
        let mut next = 1u64;
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if (x >> 33) % 3 != 0 && model.len() < 64 {
                table.set(next, owner(next));
                model.insert(next, owner(next));
                next += 1;
            } else if let Some(&id) = model.keys().nth(((x >> 40) as usize) % model.len().max(1)) {
                table.remove(id);
                model.remove(&id);
            }
            assert_eq!(table.len(), model.len());
        }
        for id in 1..next {
            assert_eq!(
                table.get(id),
                model.get(&id).copied().flatten(),
                "order {id}"
            );
        }
    }

    #[test]
    fn an_old_order_survives_many_newer_ones_colliding_with_it() {
        let mut table = Owners::new(4);
        table.set(1, owner(1));
        for id in 2..200 {
            table.set(id, owner(id));
            table.remove(id);
        }
        assert_eq!(table.get(1), owner(1));
        assert_eq!(table.len(), 1);
    }
}
