//! The order pool: every resting order lives in one slot of a `Vec` sized
//! at start, linked into its price level by slot numbers (an intrusive
//! doubly linked list), so placing, cancelling and filling never allocate.
//! Free slots form a stack through the same `next` field, so the most
//! recently freed (cache-warm) slot is reused first.

use crate::command::Side;
use crate::limits::NIL;

/// One resting order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Order {
    pub price: i64,
    pub open: u64,
    pub order_id: u64,
    pub cl_ord_id: u64,
    pub account: u32,
    pub instrument: u32,
    /// The previous (older) order of the level, or `NIL`.
    pub prev: u32,
    /// The next (younger) order of the level, or `NIL`; in a free slot, the
    /// next free slot.
    pub next: u32,
    pub side: Side,
}

const VACANT: Order = Order {
    price: 0,
    open: 0,
    order_id: 0,
    cl_ord_id: 0,
    account: 0,
    instrument: 0,
    prev: NIL,
    next: NIL,
    side: Side::Buy,
};

#[derive(Debug)]
pub(crate) struct Pool {
    slots: Vec<Order>,
    free_head: u32,
    free_len: u32,
}

impl Pool {
    pub fn new(capacity: u32) -> Pool {
        let mut slots = vec![VACANT; capacity as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            let next = i as u32 + 1;
            slot.next = if next == capacity { NIL } else { next };
        }
        Pool {
            slots,
            free_head: 0,
            free_len: capacity,
        }
    }

    pub fn free_len(&self) -> u32 {
        self.free_len
    }

    pub fn len(&self) -> u32 {
        self.slots.len() as u32 - self.free_len
    }

    /// Takes a free slot for `order`; `None` when the pool is full.
    pub fn insert(&mut self, order: Order) -> Option<u32> {
        if self.free_head == NIL {
            return None;
        }
        let slot = self.free_head;
        self.free_head = self.slots[slot as usize].next;
        self.free_len -= 1;
        self.slots[slot as usize] = order;
        Some(slot)
    }

    /// Gives a slot back. The caller has unlinked it from its level.
    pub fn remove(&mut self, slot: u32) {
        let order = &mut self.slots[slot as usize];
        *order = VACANT;
        order.next = self.free_head;
        self.free_head = slot;
        self.free_len += 1;
    }
}

impl std::ops::Index<u32> for Pool {
    type Output = Order;
    fn index(&self, slot: u32) -> &Order {
        &self.slots[slot as usize]
    }
}

impl std::ops::IndexMut<u32> for Pool {
    fn index_mut(&mut self, slot: u32) -> &mut Order {
        &mut self.slots[slot as usize]
    }
}
