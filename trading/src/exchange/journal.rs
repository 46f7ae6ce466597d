//! Answers held until durable (see "Durability" in the parent module):
//! the ordered queue of frames waiting for the log, their release, and the
//! connections held back while it is long.

use fep_core::{ConnId, Context};
use std::collections::VecDeque;

use super::{Exchange, Owner, HELD_BYTES_MAX};

/// A run of held frames: for whom, behind which journal record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Held {
    /// Released once this record is durable.
    pub(super) seq: u64,
    pub(super) to: Owner,
    /// Requests of `to.conn` these frames finish (a handed-off request).
    pub(super) finished: u32,
    pub(super) len: usize,
}

/// The journal's side of the engine's worker.
#[derive(Debug)]
pub(super) struct Journaling {
    /// The number of the last record journaled.
    pub(super) seq_last: u64,
    /// Every record up to this is durable.
    pub(super) durable: u64,
    /// The log failed: nothing more becomes durable.
    pub(super) failed: bool,
    /// The record the last snapshot was offered at.
    pub(super) snapshot_at: u64,
    pub(super) snapshot_every: u64,
    /// Bytes of the last snapshot: the next one's buffer is sized from it,
    /// so a snapshot costs one allocation, not one per doubling.
    pub(super) snapshot_len_last: usize,
    /// Held frames, back to back, in emission order.
    pub(super) held: Vec<u8>,
    pub(super) entries: VecDeque<Held>,
    /// Connections paused for the held bytes, to resume when they drain.
    pub(super) paused: Vec<ConnId>,
}

impl Journaling {
    pub(super) fn new(seq_last: u64, snapshot_every: u64) -> Journaling {
        Journaling {
            seq_last,
            durable: seq_last,
            failed: false,
            snapshot_at: seq_last,
            snapshot_every,
            snapshot_len_last: 0,
            held: Vec::with_capacity(1 << 20),
            entries: VecDeque::with_capacity(4096),
            paused: Vec::new(),
        }
    }

    /// Whether frames emitted now must wait. After a failure nothing is
    /// held: every later request is refused unapplied, and that refusal
    /// claims nothing durable.
    pub(super) fn holds(&self) -> bool {
        !self.failed && self.seq_last > self.durable
    }
}

/// Appends frames written by `write` to the held queue, behind the last
/// journaled record; merges with the previous run for the same recipient.
pub(super) fn hold(j: &mut Journaling, to: Owner, finished: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let before = j.held.len();
    write(&mut j.held);
    let len = j.held.len() - before;
    if let Some(last) = j.entries.back_mut() {
        if last.seq == j.seq_last && last.to == to && finished == 0 {
            last.len += len;
            return;
        }
    }
    j.entries.push_back(Held {
        seq: j.seq_last,
        to,
        finished,
        len,
    });
}

/// Backpressure: a peer whose answers pile up unsent (past the high-water
/// mark) is not read until they drain ([`Service::on_drained`](fep_core::Service::on_drained)), so a
/// gateway that reads slowly for a moment is slowed down by TCP rather than
/// cut.
pub(super) fn hold_back(cx: &mut Context<'_, Exchange>, conn: ConnId) {
    if cx.session(conn).is_some_and(|s| s.output_high()) {
        cx.pause_input(conn);
    }
}

/// Reads `conn` again, unless another reason to hold it back still holds:
/// its own output above the high-water mark, the held answers, or its
/// requests at the engine's worker. (Each reason re-pauses it on its next
/// request anyway; this keeps one from lifting another's pause at all.)
pub(super) fn resume_unless_held_back(cx: &mut Context<'_, Exchange>, conn: ConnId) {
    if cx.session(conn).is_some_and(|s| s.output_high()) {
        return;
    }
    if cx
        .data_mut(conn)
        .is_some_and(|p| p.paused_for_held || p.paused_for_engine)
    {
        return;
    }
    cx.resume_input(conn);
}

impl Exchange {
    /// Sends what is held up to the durable record, in order.
    pub(super) fn release(&mut self, cx: &mut Context<'_, Self>) {
        let Some(mut j) = self.journal.take() else {
            return;
        };
        let mut at = 0;
        while let Some(&e) = j.entries.front() {
            if j.failed || e.seq > j.durable {
                break;
            }
            j.entries.pop_front();
            let bytes = &j.held[at..at + e.len];
            at += e.len;
            if e.to.worker == self.worker {
                if !bytes.is_empty() {
                    cx.send(e.to.conn, bytes.len(), |out| out.extend_from_slice(bytes));
                }
            } else if !self.deliver(cx, e.to, e.finished, bytes.len(), |out| {
                out.extend_from_slice(bytes)
            }) {
                self.stats.unowned += 1;
            }
        }
        j.held.drain(..at);
        if j.held.len() <= HELD_BYTES_MAX / 4 {
            for conn in j.paused.drain(..) {
                if let Some(peer) = cx.data_mut(conn) {
                    peer.paused_for_held = false;
                }
                resume_unless_held_back(cx, conn);
            }
        }
        self.journal = Some(j);
    }

    /// Backpressure from the held answers: past half their bound, `conn`
    /// is not read until they drain.
    pub(super) fn hold_back_for_journal(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) {
        let Some(j) = self.journal.as_deref_mut() else {
            return;
        };
        if j.held.len() <= HELD_BYTES_MAX / 2 {
            return;
        }
        if let Some(peer) = cx.data_mut(conn) {
            if !peer.paused_for_held {
                peer.paused_for_held = true;
                j.paused.push(conn);
            }
        }
        // Again if something else resumed it meanwhile.
        if cx.pause_input(conn) {
            self.stats.held_pauses += 1;
        }
    }
}
