//! Sessions: one per connection, owned by one worker.

use std::collections::VecDeque;
use std::fmt;

use crate::frame::Decoder;
use crate::limits::{CONN_GEN_BITS, CONN_INDEX_BITS, SPLICES_MAX, SPLICE_LEN_MIN};
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
///
/// While one input is being handled, a frame may take its long tail (a
/// ping's pad) straight from that input instead of copying it: a *splice*
/// stands in the byte stream for those input bytes. The driver writes the
/// spliced stream with the input in hand ([`OutBuf::chunks`]), and before
/// the input buffer is reused, `OutBuf::settle` copies in whatever was not
/// written. Outside a borrowed read there are no splices and the output is
/// one slice ([`OutBuf::pending`]).
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    head: usize,
    /// Input pieces standing in the stream, in stream order (`at` never
    /// decreases); each is at least [`SPLICE_LEN_MIN`] bytes, and there are
    /// at most [`SPLICES_MAX`].
    splices: VecDeque<Splice>,
    /// Bytes of all splices together.
    spliced: usize,
}

/// Input bytes `input[start..start + len]` standing in an [`OutBuf`]'s
/// stream just before `buf[at]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Splice {
    at: usize,
    start: usize,
    len: usize,
}

impl OutBuf {
    /// Bytes waiting to be written, when none is spliced from an input (a
    /// driver that lends no input never sees one).
    ///
    /// # Panics
    ///
    /// If splices are waiting: the driver must write with
    /// [`OutBuf::chunks`] until it settles the input.
    pub fn pending(&self) -> &[u8] {
        assert!(
            self.splices.is_empty(),
            "output refers to an input not settled yet: write it with its chunks"
        );
        &self.buf[self.head..]
    }

    /// The waiting bytes in stream order, as slices of this buffer and of
    /// `input` (the input being handled, where splices point), at most
    /// `max` of them.
    pub fn chunks<'a>(&'a self, input: &'a [u8], max: usize) -> Chunks<'a> {
        Chunks {
            buf: &self.buf,
            head: self.head,
            splices: self.splices.iter(),
            next: None,
            input,
            left: max,
        }
    }

    /// Number of bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head + self.spliced
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any waiting bytes are still in the input.
    pub fn has_splices(&self) -> bool {
        !self.splices.is_empty()
    }

    /// `n` bytes from the front were written.
    pub fn consume(&mut self, mut n: usize) {
        assert!(
            n <= self.len(),
            "consumed {n} of {} pending bytes",
            self.len()
        );
        while n > 0 {
            match self.splices.front_mut() {
                Some(s) if s.at == self.head => {
                    let k = n.min(s.len);
                    s.start += k;
                    s.len -= k;
                    self.spliced -= k;
                    n -= k;
                    if s.len == 0 {
                        self.splices.pop_front();
                    }
                }
                Some(s) => {
                    let k = n.min(s.at - self.head);
                    self.head += k;
                    n -= k;
                }
                None => {
                    self.head += n;
                    n = 0;
                }
            }
        }
        if self.head == self.buf.len() && self.splices.is_empty() {
            self.buf.clear();
            self.head = 0;
        }
    }

    /// The buffer to append one frame to. Written bytes are reclaimed first
    /// when that saves growing it.
    pub(crate) fn tail(&mut self, additional: usize) -> &mut Vec<u8> {
        if self.head > 0 && self.buf.len() + additional > self.buf.capacity() {
            self.buf.drain(..self.head);
            for s in &mut self.splices {
                s.at -= self.head;
            }
            self.head = 0;
        }
        &mut self.buf
    }

    /// Puts `input[start..start + len]` next in the stream, unless the
    /// splice table is full (then the caller copies). Returns whether it
    /// did. A piece that continues the last one, with nothing of the
    /// buffer's own between them, extends it.
    pub(crate) fn splice(&mut self, start: usize, len: usize) -> bool {
        debug_assert!(len >= SPLICE_LEN_MIN);
        if let Some(last) = self.splices.back_mut() {
            if last.at == self.buf.len() && last.start + last.len == start {
                last.len += len;
                self.spliced += len;
                return true;
            }
        }
        if self.splices.len() >= SPLICES_MAX {
            return false;
        }
        self.splices.push_back(Splice {
            at: self.buf.len(),
            start,
            len,
        });
        self.spliced += len;
        true
    }

    /// Copies the unwritten spliced bytes in from `input` (the input every
    /// splice points into), in place: after this the output no longer
    /// refers to it. The copy walks back from the end, so each move lands
    /// on bytes already moved or free.
    pub(crate) fn settle(&mut self, input: &[u8]) {
        if self.splices.is_empty() {
            return;
        }
        let old = self.buf.len();
        self.buf.resize(old + self.spliced, 0);
        let mut dst_end = self.buf.len();
        let mut src_end = old;
        while let Some(s) = self.splices.pop_back() {
            let owned = src_end - s.at;
            self.buf.copy_within(s.at..src_end, dst_end - owned);
            dst_end -= owned;
            self.buf[dst_end - s.len..dst_end].copy_from_slice(&input[s.start..s.start + s.len]);
            dst_end -= s.len;
            src_end = s.at;
        }
        debug_assert_eq!(dst_end, src_end);
        self.spliced = 0;
    }
}

/// The waiting bytes of an [`OutBuf`] in stream order ([`OutBuf::chunks`]).
#[derive(Debug)]
pub struct Chunks<'a> {
    buf: &'a [u8],
    head: usize,
    splices: std::collections::vec_deque::Iter<'a, Splice>,
    /// A splice whose owned prefix was just yielded.
    next: Option<&'a Splice>,
    input: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        if let Some(s) = self.next.take() {
            self.left -= 1;
            return Some(&self.input[s.start..s.start + s.len]);
        }
        match self.splices.next() {
            Some(s) => {
                let owned = &self.buf[self.head..s.at];
                self.head = s.at;
                if owned.is_empty() {
                    self.left -= 1;
                    return Some(&self.input[s.start..s.start + s.len]);
                }
                self.next = Some(s);
                self.left -= 1;
                Some(owned)
            }
            None if self.head < self.buf.len() => {
                let owned = &self.buf[self.head..];
                self.head = self.buf.len();
                self.left -= 1;
                Some(owned)
            }
            None => None,
        }
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
    use proptest::prelude::*;

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

    /// Everything `out` would write, in order, with `input` lent.
    fn stream(out: &OutBuf, input: &[u8]) -> Vec<u8> {
        out.chunks(input, usize::MAX).flatten().copied().collect()
    }

    #[test]
    fn spliced_input_goes_out_between_owned_bytes_and_settles_in_place() {
        let input: Vec<u8> = (0..=255).cycle().take(2000).collect();
        let mut out = OutBuf::default();
        out.tail(3).extend_from_slice(b"abc");
        assert!(out.splice(10, SPLICE_LEN_MIN));
        out.tail(2).extend_from_slice(b"de");
        assert!(out.splice(1000, 300));
        assert!(out.splice(1400, 400));
        let mut want = b"abc".to_vec();
        want.extend_from_slice(&input[10..10 + SPLICE_LEN_MIN]);
        want.extend_from_slice(b"de");
        want.extend_from_slice(&input[1000..1300]);
        want.extend_from_slice(&input[1400..1800]);
        assert_eq!(out.len(), want.len());
        assert_eq!(stream(&out, &input), want);
        let chunks: Vec<usize> = out.chunks(&input, usize::MAX).map(<[u8]>::len).collect();
        assert_eq!(chunks, [3, SPLICE_LEN_MIN, 2, 300, 400]);
        assert_eq!(out.chunks(&input, 2).count(), 2);
        // Written part-way into the first splice, then settled: the rest
        // is one slice of owned bytes.
        out.consume(3 + 100);
        assert_eq!(stream(&out, &input), want[103..]);
        out.settle(&input);
        assert!(!out.has_splices());
        assert_eq!(out.pending(), &want[103..]);
        out.consume(out.len());
        assert!(out.is_empty());
    }

    #[test]
    fn a_splice_that_continues_the_last_one_extends_it() {
        let input: Vec<u8> = (0..=255).cycle().take(2000).collect();
        let mut out = OutBuf::default();
        assert!(out.splice(0, 300));
        assert!(out.splice(300, 300));
        assert_eq!(out.chunks(&input, usize::MAX).count(), 1);
        // Own bytes between, or a gap in the input: a piece of its own.
        out.tail(1).push(b'x');
        assert!(out.splice(600, 300));
        assert!(out.splice(1000, 300));
        let lens: Vec<usize> = out.chunks(&input, usize::MAX).map(<[u8]>::len).collect();
        assert_eq!(lens, [600, 1, 300, 300]);
        out.consume(650);
        out.settle(&input);
        let mut want = input[649..900].to_vec();
        want.extend_from_slice(&input[1000..1300]);
        assert_eq!(out.pending(), want);
    }

    #[test]
    #[should_panic(expected = "output refers to an input")]
    fn pending_refuses_while_input_is_spliced() {
        let mut out = OutBuf::default();
        assert!(out.splice(0, SPLICE_LEN_MIN));
        let _ = out.pending();
    }

    #[test]
    fn the_splice_table_is_bounded() {
        let mut out = OutBuf::default();
        for _ in 0..SPLICES_MAX {
            assert!(out.splice(0, SPLICE_LEN_MIN));
        }
        assert!(!out.splice(0, SPLICE_LEN_MIN));
        assert_eq!(out.len(), SPLICES_MAX * SPLICE_LEN_MIN);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Own(u8),
        Splice(u16, u16),
        Consume(u16),
        Settle,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..=200).prop_map(Op::Own),
            (0u16..2048, 0u16..1024).prop_map(|(start, extra)| Op::Splice(start, extra)),
            any::<u16>().prop_map(Op::Consume),
            Just(Op::Settle),
        ]
    }

    proptest! {
        /// Against a plain byte queue: whatever is appended, spliced,
        /// written part-way and settled, the bytes that go out are the same.
        #[test]
        fn outbuf_with_splices_is_a_byte_queue(ops in proptest::collection::vec(op(), 1..80)) {
            let input: Vec<u8> = (0..4096u32).map(|i| (i * 7 + i / 256) as u8).collect();
            let mut out = OutBuf::default();
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut written = Vec::new();
            let mut want_written = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Own(n) => {
                        let bytes: Vec<u8> = (0..n).map(|k| (i as u8).wrapping_add(k)).collect();
                        out.tail(bytes.len()).extend_from_slice(&bytes);
                        model.extend(&bytes);
                    }
                    Op::Splice(start, extra) => {
                        let (start, len) = (usize::from(start), SPLICE_LEN_MIN + usize::from(extra));
                        if out.splice(start, len) {
                            model.extend(&input[start..start + len]);
                        }
                    }
                    Op::Consume(n) => {
                        let n = usize::from(n).min(out.len());
                        let front: Vec<u8> = stream(&out, &input)[..n].to_vec();
                        written.extend_from_slice(&front);
                        want_written.extend(model.drain(..n));
                        out.consume(n);
                    }
                    Op::Settle => out.settle(&input),
                }
                prop_assert_eq!(out.len(), model.len());
                prop_assert_eq!(stream(&out, &input), model.iter().copied().collect::<Vec<u8>>());
            }
            prop_assert_eq!(written, want_written);
            out.settle(&input);
            let rest: Vec<u8> = model.into_iter().collect();
            prop_assert_eq!(out.pending(), rest.as_slice());
        }
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
