//! Sessions: one per connection, owned by one worker.

use std::fmt;

use crate::frame::Decoder;
use crate::limits::{CONN_GEN_BITS, CONN_INDEX_BITS};
use crate::state::ConnState;
use crate::time::Nanos;
use crate::worker::{InputGroup, Origin};

/// A worker's handle on one of its connections: a slot and the slot's
/// generation, so a handle to a closed connection never reaches its
/// successor. Packs into 48 bits ([`ConnId::to_bits`]) so it can ride in a
/// protocol routing tag.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    index: u32,
    gen: u32,
}

const INDEX_MASK: u64 = (1 << CONN_INDEX_BITS) - 1;
const GEN_MASK: u32 = (1 << CONN_GEN_BITS) - 1;

impl ConnId {
    /// The slot index (dense, reused after close).
    pub const fn index(self) -> usize {
        self.index as usize
    }

    /// The handle as 48 bits: `index << 24 | gen`.
    pub const fn to_bits(self) -> u64 {
        ((self.index as u64) << CONN_GEN_BITS) | self.gen as u64
    }

    /// The handle back from [`ConnId::to_bits`]; bits above 48 are ignored.
    pub const fn from_bits(bits: u64) -> ConnId {
        ConnId {
            index: ((bits >> CONN_GEN_BITS) & INDEX_MASK) as u32,
            gen: (bits as u32) & GEN_MASK,
        }
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}.{}", self.index, self.gen)
    }
}

/// The logical identity of a session: numbered from 0 per worker, never
/// reused. Routing by `session_id % workers` uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// Unsent output of one connection. The driver writes from its front and
/// reports how much went out; the engine appends frames at its back.
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    head: usize,
}

impl OutBuf {
    /// Bytes waiting to be written.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Number of bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `n` bytes from the front were written.
    pub fn consume(&mut self, n: usize) {
        assert!(
            n <= self.len(),
            "consumed {n} of {} pending bytes",
            self.len()
        );
        self.head += n;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        }
    }

    /// The buffer to append one frame to. Written bytes are reclaimed first
    /// when that saves growing it.
    pub(crate) fn tail(&mut self, additional: usize) -> &mut Vec<u8> {
        if self.head > 0 && self.buf.len() + additional > self.buf.capacity() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        &mut self.buf
    }
}

/// One connection's protocol state: identity, state, decoder and output.
#[derive(Debug)]
pub struct Session<D> {
    /// The logical id.
    pub id: SessionId,
    /// Hand-shake state; handlers are checked against it.
    pub state: ConnState,
    /// Accepted, or dialled to which peer.
    pub origin: Origin,
    pub(crate) decoder: Decoder,
    pub(crate) out: OutBuf,
    /// A `Transmit` effect for this connection is queued and not polled yet.
    pub(crate) transmit_queued: bool,
    /// The service wants this connection's input left in the kernel.
    pub(crate) input_paused: bool,
    /// What the driver was last told about the input (paused or not).
    pub(crate) input_told_paused: bool,
    /// An input edge for this connection is queued and not polled yet.
    pub(crate) input_queued: bool,
    /// The output passed the high-water mark and has not drained back
    /// since: the service hears of it then.
    pub(crate) output_high: bool,
    /// The input group the connection's input pauses with, if any.
    pub(crate) input_group: Option<InputGroup>,
    /// When bytes last arrived (or the connection opened): liveness.
    pub(crate) read_at: Nanos,
    /// When output was last queued (or the connection opened): when to
    /// send a heartbeat.
    pub(crate) sent_at: Nanos,
    /// The service's own per-connection data.
    pub data: D,
}

impl<D> Session<D> {
    /// Bytes waiting to be written.
    pub fn backlog(&self) -> usize {
        self.out.len()
    }

    /// Whether the output passed the high-water mark (half the bound) and
    /// has not drained back to it since; the service hears
    /// [`crate::Service::on_drained`] when it does.
    pub fn output_high(&self) -> bool {
        self.output_high
    }

    /// Whether the service asked for this connection's input to wait.
    pub fn input_paused(&self) -> bool {
        self.input_paused
    }

    /// The input group the connection's input pauses with, if any.
    pub fn input_group(&self) -> Option<InputGroup> {
        self.input_group
    }

    /// When bytes last arrived on the connection (or it opened).
    pub fn read_at(&self) -> Nanos {
        self.read_at
    }

    /// When output was last queued on the connection (or it opened).
    pub fn sent_at(&self) -> Nanos {
        self.sent_at
    }
}

/// A slab of sessions with generation-checked handles.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
    max: usize,
}

#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

impl<T> Slab<T> {
    pub(crate) fn new(max: usize) -> Slab<T> {
        assert!(
            max <= 1 << CONN_INDEX_BITS,
            "{max} sessions do not fit a ConnId"
        );
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            max,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert(&mut self, value: T) -> Option<ConnId> {
        if self.len == self.max {
            return None;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    value: None,
                });
                u32::try_from(self.slots.len() - 1).expect("bounded by max")
            }
        };
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.value.is_none());
        slot.value = Some(value);
        self.len += 1;
        Some(ConnId {
            index,
            gen: slot.gen,
        })
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.gen != id.gen {
            return None;
        }
        slot.value.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.gen != id.gen {
            return None;
        }
        slot.value.as_mut()
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.gen != id.gen {
            return None;
        }
        let value = slot.value.take()?;
        slot.gen = (slot.gen + 1) & GEN_MASK;
        self.free.push(id.index);
        self.len -= 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_handle_does_not_reach_the_slot_successor() {
        let mut slab = Slab::new(4);
        let a = slab.insert("a").unwrap();
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b").unwrap();
        assert_eq!(a.index(), b.index());
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.remove(a), None);
    }

    #[test]
    fn the_slab_refuses_past_its_bound() {
        let mut slab = Slab::new(2);
        assert!(slab.insert(1).is_some());
        assert!(slab.insert(2).is_some());
        assert!(slab.insert(3).is_none());
    }

    #[test]
    fn conn_ids_round_trip_through_48_bits() {
        let id = ConnId {
            index: (1 << 24) - 1,
            gen: 12345,
        };
        assert_eq!(ConnId::from_bits(id.to_bits()), id);
        assert!(id.to_bits() < 1 << 48);
        assert_eq!(ConnId::from_bits(id.to_bits() | 0xABCD << 48), id);
    }

    #[test]
    fn outbuf_keeps_unwritten_bytes_in_place() {
        let mut out = OutBuf::default();
        out.tail(3).extend_from_slice(b"abc");
        out.consume(1);
        assert_eq!(out.pending(), b"bc");
        out.tail(2).extend_from_slice(b"de");
        assert_eq!(out.pending(), b"bcde");
        out.consume(4);
        assert!(out.is_empty());
    }
}
