//! The name index: (account, cl_ord_id) → pool slot, an open-addressed
//! table with linear probing and a fixed multiplicative hash (no random
//! state, so the simulator stays deterministic). It has at least twice as
//! many entries as the pool has slots, so it is never more than half full
//! and a probe is short; deletion shifts entries back instead of leaving
//! tombstones, so the table never degrades.

use crate::limits::NIL;

#[derive(Clone, Copy, Debug)]
struct Entry {
    cl_ord_id: u64,
    account: u32,
    /// The pool slot, or `NIL` when the entry is empty.
    slot: u32,
}

const EMPTY: Entry = Entry {
    cl_ord_id: 0,
    account: 0,
    slot: NIL,
};

#[derive(Debug)]
pub(crate) struct NameIndex {
    entries: Vec<Entry>,
    mask: usize,
    shift: u32,
}

impl NameIndex {
    /// A table for `orders_max` names at most.
    pub fn new(orders_max: u32) -> NameIndex {
        let capacity = (orders_max as usize * 2).next_power_of_two().max(2);
        NameIndex {
            entries: vec![EMPTY; capacity],
            mask: capacity - 1,
            shift: 64 - capacity.trailing_zeros(),
        }
    }

    fn home(&self, account: u32, cl_ord_id: u64) -> usize {
        // Fibonacci hashing of both halves of the key: consecutive ids of
        // one account land far apart, and the top bits are the best mixed.
        let key = cl_ord_id ^ u64::from(account).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize & self.mask
    }

    fn position(&self, account: u32, cl_ord_id: u64) -> Option<usize> {
        let mut i = self.home(account, cl_ord_id);
        loop {
            let e = &self.entries[i];
            if e.slot == NIL {
                return None;
            }
            if e.account == account && e.cl_ord_id == cl_ord_id {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The slot of the open order so named.
    pub fn find(&self, account: u32, cl_ord_id: u64) -> Option<u32> {
        self.position(account, cl_ord_id)
            .map(|i| self.entries[i].slot)
    }

    /// Names a slot. Returns `false` (and changes nothing) when the name is
    /// already taken.
    pub fn insert(&mut self, account: u32, cl_ord_id: u64, slot: u32) -> bool {
        debug_assert!(slot != NIL);
        let mut i = self.home(account, cl_ord_id);
        loop {
            let e = &mut self.entries[i];
            if e.slot == NIL {
                *e = Entry {
                    cl_ord_id,
                    account,
                    slot,
                };
                return true;
            }
            if e.account == account && e.cl_ord_id == cl_ord_id {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Forgets a name; returns its slot.
    pub fn remove(&mut self, account: u32, cl_ord_id: u64) -> Option<u32> {
        let mut hole = self.position(account, cl_ord_id)?;
        let slot = self.entries[hole].slot;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if e.slot == NIL {
                break;
            }
            // An entry may fill the hole when the hole lies on its probe
            // path, i.e. between its home and where it sits now.
            let home = self.home(e.account, e.cl_ord_id);
            let from_home = j.wrapping_sub(home) & self.mask;
            let from_hole = j.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = EMPTY;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_the_removal_of_colliding_neighbours() {
        let mut index = NameIndex::new(8);
        // Enough names for every home to collide in a 16-entry table.
        for id in 1..=8u64 {
            assert!(index.insert((id % 3) as u32 + 1, id, id as u32));
        }
        assert!(!index.insert(2, 1, 99), "a taken name is refused");
        for id in [3u64, 1, 7] {
            assert_eq!(index.remove((id % 3) as u32 + 1, id), Some(id as u32));
        }
        for id in 1..=8u64 {
            let expect = if [3, 1, 7].contains(&id) {
                None
            } else {
                Some(id as u32)
            };
            assert_eq!(index.find((id % 3) as u32 + 1, id), expect, "id {id}");
        }
    }
}
