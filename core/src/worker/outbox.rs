//! What a worker holds for its driver between inputs: the bounded effect
//! queue, the handoff lanes, input groups, the journal buffer, and the
//! bookkeeping of a lent input's splices and stamps.

use std::collections::VecDeque;

use crate::limits::{FRAME_HEADER_LEN, OPCODE_LEN};
use crate::session::{ConnId, OutBuf};

use super::{InputGroup, WorkerId};

/// An effect as queued: the connection-level ones are completed from the
/// session when polled, so each is queued at most once per session.
#[derive(Clone, Copy, Debug)]
pub(super) enum Queued {
    Transmit(ConnId),
    Close(ConnId),
    Connect(ConnId),
    Input(ConnId),
    Group(InputGroup),
    Handoff(WorkerId),
    Journal,
    Snapshot,
}

/// What the driver was told of an input group, and what the service wants.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GroupGate {
    pub(super) paused: bool,
    pub(super) told_paused: bool,
    pub(super) queued: bool,
}

/// The bytes a worker holds for other workers, one lane per target, and
/// the effect queue they share with the sessions.
#[derive(Debug)]
pub(super) struct Outbox {
    pub(super) effects: VecDeque<Queued>,
    pub(super) effects_max: usize,
    /// `lanes[t]`: whole frames for worker `t`, oldest first.
    pub(super) lanes: Vec<OutBuf>,
    /// `lane_queued[t]`: a `Handoff` effect for `t` is queued, not polled.
    pub(super) lane_queued: Vec<bool>,
    /// Input groups, by index, grown on first use.
    pub(super) groups: Vec<GroupGate>,
    /// Dialled connections under the heartbeat watch (only when
    /// [`WorkerConfig::heartbeat_interval`](super::WorkerConfig::heartbeat_interval) is set): a gateway's upstreams,
    /// a handful, so the deadline is a scan of them.
    pub(super) watched: Vec<ConnId>,
    /// Sessions in [`Phase::Connecting`](crate::state::Phase::Connecting): dials the driver has not
    /// reported yet.
    pub(super) dialing: usize,
    /// Journal records for the driver's log (see [`Effect::Journal`](super::Effect::Journal)).
    pub(super) journal: OutBuf,
    /// A `Journal` effect is queued, not polled.
    pub(super) journal_queued: bool,
    /// The newest snapshot not taken by the driver: (record, state).
    pub(super) snapshot: Option<(u64, Vec<u8>)>,
    /// The input the driver lent ([`Worker::handle_read_lent`](super::Worker::handle_read_lent)) and has not
    /// settled yet.
    pub(super) lent: Option<Lent>,
    /// Sessions whose output refers to the lent input, each once: at most
    /// every session, so bounded by [`WorkerConfig::sessions_max`](super::WorkerConfig::sessions_max).
    pub(super) spliced: Vec<ConnId>,
    /// Where the last frame spliced from the lent input ends: a frame
    /// forwarded again (or one before it) is copied, so the stamps of two
    /// forwards never land on the same bytes.
    pub(super) spliced_end: usize,
    /// Stamps to write into the lent input once its frames are handled:
    /// (offset, big-endian value). At most [`STAMPS_PER_FORWARD_MAX`](crate::limits::STAMPS_PER_FORWARD_MAX) (and
    /// a new opcode) per frame of at least [`SPLICE_LEN_MIN`](crate::limits::SPLICE_LEN_MIN) bytes, so
    /// bounded by the input.
    pub(super) patches: Vec<(usize, [u8; 8])>,
}

/// Where a lent input lies: its address and length, to tell whether a slice
/// a service forwards is a piece of it (and where), and that the driver
/// settles the same input it lent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lent {
    pub(super) addr: usize,
    pub(super) len: usize,
}

impl Lent {
    pub(super) fn of(input: &[u8]) -> Lent {
        Lent {
            addr: input.as_ptr().addr(),
            len: input.len(),
        }
    }

    /// Where `piece` starts in this input, if it lies wholly inside it.
    pub(super) fn offset_of(self, piece: &[u8]) -> Option<usize> {
        let at = piece.as_ptr().addr().checked_sub(self.addr)?;
        (at + piece.len() <= self.len).then_some(at)
    }
}

/// Where the whole frame whose payload is `payload` starts in `input`, if
/// it lies there as read (its length field just before its opcode, just
/// before the payload), and its opcode there.
pub(super) fn frame_in(input: &[u8], payload: &[u8]) -> Option<(usize, u16)> {
    let at = Lent::of(input).offset_of(payload)?;
    let start = at.checked_sub(FRAME_HEADER_LEN + OPCODE_LEN)?;
    let length = u32::try_from(OPCODE_LEN + payload.len()).ok()?;
    let header = &input[start..at];
    let opcode = u16::from_be_bytes([header[FRAME_HEADER_LEN], header[FRAME_HEADER_LEN + 1]]);
    (header[..FRAME_HEADER_LEN] == length.to_be_bytes()).then_some((start, opcode))
}

impl Outbox {
    /// Writes the stamps of the frames forwarded from the lent `input`.
    pub(super) fn stamp(&mut self, input: &mut [u8]) {
        self.spliced_end = 0;
        for (at, v) in self.patches.drain(..) {
            input[at..at + 8].copy_from_slice(&v);
        }
    }

    pub(super) fn push(&mut self, effect: Queued) {
        assert!(
            self.effects.len() < self.effects_max,
            "effect queue past its bound {}: a service queues without limit",
            self.effects_max
        );
        self.effects.push_back(effect);
    }
}
