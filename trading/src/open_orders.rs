//! The gateway's view of its clients' open orders, learnt from the answers
//! it delivers: which connection last named each order, under which name,
//! at which price, and how much is still open. Cancel on disconnect walks a
//! connection's orders; the risk checks read their exposure.
//!
//! Everything is sized at start: a slab of [`Tracked`] orders, an
//! `IdTable` from `order_id` to slab slot, and one list head per
//! connection slot, the orders of a connection linked through the slab. No
//! operation allocates or scans.
//!
//! The view is what this worker delivered. An order renamed by a request of
//! a connection on another worker moves to that worker's view when its
//! `OrderReplaced` is delivered there; the stale entry here is cancelled in
//! vain (`UNKNOWN_ORDER`, swallowed) when its old connection closes.

use fep_core::ConnId;

use crate::id_table::IdTable;

const NIL: u32 = u32::MAX;

/// One open order as the gateway knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// The connection of the request that last named it.
    pub conn: ConnId,
    /// The exchange's id.
    pub order_id: u64,
    /// The account.
    pub account: u32,
    /// The instrument (0 when only a replace was seen).
    pub instrument: u32,
    /// Its name: the `cl_ord_id` of that request.
    pub name: u64,
    /// Its limit price.
    pub price: i64,
    /// What is still open.
    pub open: u64,
    prev: u32,
    next: u32,
}

impl Tracked {
    const VACANT: Tracked = Tracked {
        conn: ConnId::from_bits(u64::MAX),
        order_id: 0,
        account: 0,
        instrument: 0,
        name: 0,
        price: 0,
        open: 0,
        prev: NIL,
        next: NIL,
    };

    /// `price × open`, the exposure the order holds.
    pub fn notional(&self) -> u128 {
        self.price.unsigned_abs() as u128 * u128::from(self.open)
    }
}

#[derive(Clone, Copy, Debug)]
struct Head {
    conn: ConnId,
    first: u32,
}

/// The open orders of one gateway worker's clients.
#[derive(Debug)]
pub struct OpenOrders {
    ids: IdTable<u32>,
    slab: Vec<Tracked>,
    /// Free slab slots, linked through `next`.
    free: u32,
    len: usize,
    /// One list per connection slot (`ConnId::index`); a head whose `conn`
    /// is another generation is empty.
    heads: Vec<Head>,
}

impl OpenOrders {
    /// A tracker for `open_max` orders over connections with slot indices
    /// below `conns_max`.
    pub fn new(open_max: usize, conns_max: usize) -> OpenOrders {
        assert!(open_max > 0 && open_max < NIL as usize);
        let slab = (0..open_max)
            .map(|i| Tracked {
                next: if i + 1 < open_max { i as u32 + 1 } else { NIL },
                ..Tracked::VACANT
            })
            .collect();
        let empty = Head {
            conn: ConnId::from_bits(u64::MAX),
            first: NIL,
        };
        OpenOrders {
            ids: IdTable::new(open_max),
            slab,
            free: 0,
            len: 0,
            heads: vec![empty; conns_max],
        }
    }

    /// Orders tracked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether another order fits.
    pub fn is_full(&self) -> bool {
        self.free == NIL
    }

    /// The order `order_id`, if tracked.
    pub fn get(&self, order_id: u64) -> Option<Tracked> {
        self.ids.get(order_id).map(|s| self.slab[s as usize])
    }

    /// An order opened (`OrderAccepted`) or was renamed (`OrderReplaced`)
    /// by a request of `conn`: it now belongs to `conn` under `name`, with
    /// `open` left at `price`, on `instrument` (0: keep what is known).
    /// Returns the order as it was before, if it was tracked; `Err(())`
    /// when a new order does not fit (it is then not tracked: cancel on
    /// disconnect will miss it).
    #[allow(clippy::result_unit_err, clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        conn: ConnId,
        order_id: u64,
        account: u32,
        name: u64,
        instrument: u32,
        price: i64,
        open: u64,
    ) -> Result<Option<Tracked>, ()> {
        let (slot, before) = match self.ids.get(order_id) {
            Some(slot) => {
                let before = self.slab[slot as usize];
                if before.conn == conn {
                    // Renamed by its own connection (the common replace):
                    // it stays where it is in that connection's list, so
                    // its neighbours' slots are not touched.
                    let t = &mut self.slab[slot as usize];
                    t.account = account;
                    if instrument != 0 {
                        t.instrument = instrument;
                    }
                    t.name = name;
                    t.price = price;
                    t.open = open;
                    return Ok(Some(before));
                }
                self.unlink(slot);
                (slot, Some(before))
            }
            None => {
                if self.free == NIL {
                    return Err(());
                }
                let slot = self.free;
                self.free = self.slab[slot as usize].next;
                self.ids.set(order_id, slot);
                self.len += 1;
                (slot, None)
            }
        };
        let instrument = match (instrument, before) {
            (0, Some(b)) => b.instrument,
            _ => instrument,
        };
        self.slab[slot as usize] = Tracked {
            conn,
            order_id,
            account,
            instrument,
            name,
            price,
            open,
            prev: NIL,
            next: NIL,
        };
        self.link(slot);
        Ok(before)
    }

    /// A fill left `leaves` open on `order_id`; at 0 the order is gone.
    /// Returns the order as it was before.
    pub fn fill(&mut self, order_id: u64, leaves: u64) -> Option<Tracked> {
        let slot = self.ids.get(order_id)?;
        let before = self.slab[slot as usize];
        if leaves == 0 {
            self.release(order_id, slot);
        } else {
            self.slab[slot as usize].open = leaves;
        }
        Some(before)
    }

    /// `order_id` was canceled; returns it as it was.
    pub fn close(&mut self, order_id: u64) -> Option<Tracked> {
        let slot = self.ids.get(order_id)?;
        let before = self.slab[slot as usize];
        self.release(order_id, slot);
        Some(before)
    }

    /// Takes one of `conn`'s orders off the books (cancel on disconnect
    /// asks for them one by one until `None`).
    pub fn pop_conn(&mut self, conn: ConnId) -> Option<Tracked> {
        let head = self.heads.get(conn.index())?;
        if head.conn != conn || head.first == NIL {
            return None;
        }
        let slot = head.first;
        let t = self.slab[slot as usize];
        self.release(t.order_id, slot);
        Some(t)
    }

    /// Takes any order off the books, searching the connection slots from
    /// `*from` on and leaving `*from` where it found one: a caller that
    /// keeps `from` empties every list in one pass over the slots (a
    /// draining gateway cancels every order it tracks).
    pub fn pop_any(&mut self, from: &mut usize) -> Option<Tracked> {
        while let Some(head) = self.heads.get(*from) {
            if head.first != NIL {
                let slot = head.first;
                let t = self.slab[slot as usize];
                self.release(t.order_id, slot);
                return Some(t);
            }
            *from += 1;
        }
        None
    }

    fn release(&mut self, order_id: u64, slot: u32) {
        self.unlink(slot);
        self.ids.remove(order_id);
        self.slab[slot as usize] = Tracked {
            next: self.free,
            ..Tracked::VACANT
        };
        self.free = slot;
        self.len -= 1;
        debug_assert_eq!(self.ids.len(), self.len);
    }

    fn link(&mut self, slot: u32) {
        let conn = self.slab[slot as usize].conn;
        let Some(head) = self.heads.get_mut(conn.index()) else {
            return;
        };
        if head.conn != conn {
            // A new generation of the slot: the old list is stale (its
            // connection closed and its orders were popped).
            *head = Head { conn, first: NIL };
        }
        let first = head.first;
        head.first = slot;
        self.slab[slot as usize].next = first;
        self.slab[slot as usize].prev = NIL;
        if first != NIL {
            self.slab[first as usize].prev = slot;
        }
    }

    fn unlink(&mut self, slot: u32) {
        let t = self.slab[slot as usize];
        if t.prev != NIL {
            self.slab[t.prev as usize].next = t.next;
        } else if let Some(head) = self.heads.get_mut(t.conn.index()) {
            if head.conn == t.conn && head.first == slot {
                head.first = t.next;
            }
        }
        if t.next != NIL {
            self.slab[t.next as usize].prev = t.prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(index: u64, generation: u64) -> ConnId {
        ConnId::from_bits(index << 24 | generation)
    }

    #[test]
    fn a_connections_orders_are_popped_all_and_only_its_own() {
        let mut t = OpenOrders::new(8, 4);
        let (a, b) = (conn(1, 0), conn(2, 0));
        for id in 1..=3 {
            t.open(a, id, 7, id * 10, 1, 100, 5).unwrap();
        }
        t.open(b, 4, 8, 40, 1, 100, 5).unwrap();
        let mut popped: Vec<u64> = std::iter::from_fn(|| t.pop_conn(a))
            .map(|o| o.order_id)
            .collect();
        popped.sort_unstable();
        assert_eq!(popped, [1, 2, 3]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_conn(b).map(|o| o.name), Some(40));
        assert!(t.is_empty());
    }

    #[test]
    fn pop_any_empties_every_connections_list_in_one_pass() {
        let mut t = OpenOrders::new(8, 4);
        t.open(conn(0, 0), 1, 7, 10, 1, 100, 5).unwrap();
        t.open(conn(3, 0), 2, 7, 11, 1, 100, 5).unwrap();
        t.open(conn(3, 0), 3, 8, 12, 1, 100, 5).unwrap();
        let mut from = 0;
        let mut popped: Vec<u64> = std::iter::from_fn(|| t.pop_any(&mut from))
            .map(|o| o.order_id)
            .collect();
        popped.sort_unstable();
        assert_eq!(popped, [1, 2, 3]);
        assert!(t.is_empty());
        assert_eq!(from, 4, "past the last slot");
        assert_eq!(t.pop_any(&mut 0), None);
    }

    #[test]
    fn fills_cancels_and_renames_keep_the_lists_right() {
        let mut t = OpenOrders::new(4, 4);
        let (a, b) = (conn(1, 0), conn(3, 0));
        t.open(a, 1, 7, 10, 1, 100, 5).unwrap();
        t.open(a, 2, 7, 11, 1, 101, 5).unwrap();
        assert_eq!(t.fill(1, 2).map(|o| o.open), Some(5));
        assert_eq!(t.get(1).map(|o| o.open), Some(2));
        // Renamed by a request of another connection: it moves to b.
        let before = t.open(b, 1, 7, 12, 1, 99, 2).unwrap().unwrap();
        assert_eq!((before.conn, before.name), (a, 10));
        assert_eq!(t.fill(2, 0).map(|o| o.name), Some(11), "filled: gone");
        assert_eq!(t.pop_conn(a), None);
        assert_eq!(t.pop_conn(b).map(|o| (o.name, o.price)), Some((12, 99)));
        assert_eq!(t.close(1), None);
    }

    #[test]
    fn a_rename_by_its_own_connection_updates_in_place_and_keeps_the_list() {
        let mut t = OpenOrders::new(4, 4);
        let a = conn(1, 0);
        for id in 1..=3 {
            t.open(a, id, 7, id * 10, 2, 100, 5).unwrap();
        }
        // A replace (instrument 0: keep it) of the middle order.
        let before = t.open(a, 2, 7, 21, 0, 103, 4).unwrap().unwrap();
        assert_eq!((before.name, before.price, before.open), (20, 100, 5));
        let now = t.get(2).unwrap();
        assert_eq!(
            (now.name, now.price, now.open, now.instrument),
            (21, 103, 4, 2)
        );
        assert_eq!(t.len(), 3);
        let popped: Vec<(u64, u64)> = std::iter::from_fn(|| t.pop_conn(a))
            .map(|o| (o.order_id, o.name))
            .collect();
        assert_eq!(
            popped,
            [(3, 30), (2, 21), (1, 10)],
            "newest first, in place"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_tracker_refuses_and_a_new_generation_starts_empty() {
        let mut t = OpenOrders::new(2, 4);
        let old = conn(1, 0);
        t.open(old, 1, 1, 1, 1, 1, 1).unwrap();
        t.open(old, 2, 1, 2, 1, 1, 1).unwrap();
        assert!(t.is_full());
        assert_eq!(t.open(old, 3, 1, 3, 1, 1, 1), Err(()));
        assert_eq!(t.close(2).map(|o| o.order_id), Some(2));
        let new = conn(1, 1);
        assert_eq!(
            t.pop_conn(new),
            None,
            "another generation's orders are not its own"
        );
        t.open(new, 3, 1, 3, 1, 1, 1).unwrap();
        assert_eq!(t.pop_conn(new).map(|o| o.order_id), Some(3));
        assert_eq!(
            t.pop_conn(old).map(|o| o.order_id),
            None,
            "the slot now belongs to the new one"
        );
    }
}
