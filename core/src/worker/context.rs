//! [`Context`]: the service's view of its worker during one input (send,
//! forward, reject, close, connect, pause, hand off, journal).

use std::fmt::{self, Write as _};

use crate::error::{ErrorCode, Fault};
use crate::frame::{encode_frame, Decoder};
use crate::limits::{
    FRAME_HEADER_LEN, INPUT_GROUPS_MAX, JOURNAL_BACKLOG_MAX, JOURNAL_RECORD_HEADER_LEN, OPCODE_LEN,
    REASON_LEN_MAX, SPLICE_LEN_MIN, STAMPS_PER_FORWARD_MAX, WORKERS_MAX,
};
use crate::session::{ConnId, OutBuf, Session, SessionId, Slab};
use crate::state::{ConnState, Phase, Side};
use crate::time::Nanos;
use crate::wire::{ErrorMsg, RejectMsg};

use super::outbox::frame_in;
use super::{
    GroupGate, InputGroup, Origin, Outbox, PeerId, Queued, Service, WorkerConfig, WorkerId,
};

/// The service's view of its worker during one input.
#[derive(Debug)]
pub struct Context<'a, S: Service> {
    pub(super) now: Nanos,
    pub(super) worker: WorkerId,
    pub(super) config: &'a WorkerConfig,
    pub(super) sessions: &'a mut Slab<Session<S::Data>>,
    pub(super) outbox: &'a mut Outbox,
    /// The input being handled, when its driver lent it: forwarded frames
    /// may be written from it ([`Context::forward`]).
    pub(super) input: Option<&'a [u8]>,
}

impl<S: Service> Context<'_, S> {
    /// The time of the input being handled.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// This worker.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The worker's bounds.
    pub fn config(&self) -> &WorkerConfig {
        self.config
    }

    /// The session of `conn`, if it is still open.
    pub fn session(&self, conn: ConnId) -> Option<&Session<S::Data>> {
        self.sessions.get(conn)
    }

    /// The state of `conn`, if it is still open.
    pub fn state(&self, conn: ConnId) -> Option<ConnState> {
        self.sessions.get(conn).map(|s| s.state)
    }

    /// The service data of `conn`, if it is still open.
    pub fn data_mut(&mut self, conn: ConnId) -> Option<&mut S::Data> {
        self.sessions.get_mut(conn).map(|s| &mut s.data)
    }

    /// Marks `conn`'s hand-shake done.
    pub fn set_handshaked(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(conn) {
            assert_eq!(
                s.state.phase,
                Phase::Connected,
                "{conn:?} hand-shaked twice"
            );
            s.state.phase = Phase::Handshaked;
        }
    }

    /// Appends bytes to `conn`'s output with `write` (a whole frame or
    /// frames). Returns whether `conn` is live and took them. Past the
    /// output bound the session is failed with `Error{OVERLOADED}`.
    pub fn send(
        &mut self,
        conn: ConnId,
        additional: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let Some(session) = self.sessions.get_mut(conn) else {
            return false;
        };
        if matches!(session.state.phase, Phase::Closing | Phase::Connecting) {
            return false;
        }
        write(session.out.tail(additional));
        let queued = queued(self.now, self.config, self.outbox, conn, session);
        self.overloaded(conn, queued)
    }

    /// Forwards a frame read on this worker to `conn`: the `opcode` frame
    /// with `payload`, with `stamps` (frame offset, value) written over it
    /// as big-endian `u64`s. When the frame lies whole in the input being
    /// handled, lent by the driver, and is at least [`SPLICE_LEN_MIN`]
    /// bytes, it is not copied: the stamps are written into the input and
    /// the output refers to the frame there, so a forwarding service's
    /// frames go from the read buffer to the socket as in a relay (frames
    /// forwarded back to back to one connection are one piece). `opcode`
    /// may differ from the one read (an echo answers a ping with a pong):
    /// it is written over the frame like a stamp. A frame forwarded again
    /// from the same input (to a second connection, with its own stamps)
    /// is copied. The bytes on the wire are the same either way. Returns as
    /// [`Context::send`] does.
    ///
    /// # Panics
    ///
    /// With more than [`STAMPS_PER_FORWARD_MAX`] stamps, or a stamp past
    /// the frame's end.
    pub fn forward(
        &mut self,
        conn: ConnId,
        opcode: u16,
        payload: &[u8],
        stamps: &[(usize, u64)],
    ) -> bool {
        let frame_len = FRAME_HEADER_LEN + OPCODE_LEN + payload.len();
        assert!(stamps.len() <= STAMPS_PER_FORWARD_MAX);
        assert!(stamps.iter().all(|&(at, _)| at + 8 <= frame_len));
        let Some(session) = self.sessions.get_mut(conn) else {
            return false;
        };
        if matches!(session.state.phase, Phase::Closing | Phase::Connecting) {
            return false;
        }
        let found = self
            .input
            .filter(|_| frame_len >= SPLICE_LEN_MIN)
            .and_then(|input| frame_in(input, payload))
            .filter(|&(start, _)| start >= self.outbox.spliced_end);
        let had_splices = session.out.has_splices();
        match found {
            Some((start, read_as)) if session.out.splice(start, frame_len) => {
                if !had_splices {
                    self.outbox.spliced.push(conn);
                }
                self.outbox.spliced_end = start + frame_len;
                if read_as != opcode {
                    // The frame's first 8 bytes as they go out: its length,
                    // the new opcode, the payload's first 2 bytes (a frame
                    // this long has them).
                    let mut head = [0u8; 8];
                    head[..FRAME_HEADER_LEN].copy_from_slice(
                        &u32::try_from(frame_len - FRAME_HEADER_LEN)
                            .expect("a frame read fits its length field")
                            .to_be_bytes(),
                    );
                    head[FRAME_HEADER_LEN..FRAME_HEADER_LEN + OPCODE_LEN]
                        .copy_from_slice(&opcode.to_be_bytes());
                    head[FRAME_HEADER_LEN + OPCODE_LEN..].copy_from_slice(&payload[..2]);
                    self.outbox.patches.push((start, head));
                }
                for &(at, v) in stamps {
                    self.outbox.patches.push((start + at, v.to_be_bytes()));
                }
            }
            _ => {
                let out = session.out.tail(frame_len);
                let start = out.len();
                encode_frame(out, opcode, payload);
                for &(at, v) in stamps {
                    out[start + at..start + at + 8].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
        let queued = queued(self.now, self.config, self.outbox, conn, session);
        self.overloaded(conn, queued)
    }

    /// Fails `conn` if queueing on it passed its output bound; returns
    /// whether it took the bytes.
    pub(super) fn overloaded(&mut self, conn: ConnId, queued: Result<(), Fault>) -> bool {
        match queued {
            Ok(()) => true,
            Err(fault) => {
                self.fail(conn, fault);
                false
            }
        }
    }

    /// Answers request `seq` on `conn` with `Reject{code}`.
    pub fn reject(&mut self, conn: ConnId, code: ErrorCode, seq: u64, reason: &str) -> bool {
        let msg = RejectMsg { code, seq, reason };
        self.send(conn, 16 + reason.len(), |out| {
            msg.encode(out);
        })
    }

    /// Fails `conn` for the peer's `fault`: `Error{code, reason}`, then close.
    pub fn fail(&mut self, conn: ConnId, fault: Fault) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if matches!(session.state.phase, Phase::Closing | Phase::Connecting) {
            return self.close(conn);
        }
        let mut reason = ReasonBuf::default();
        let _ = write!(reason, "{fault}");
        let msg = ErrorMsg {
            code: fault.code(),
            reason: reason.as_str(),
        };
        msg.encode(session.out.tail(8 + reason.len));
        session.sent_at = self.now;
        queue_transmit(self.outbox, session, conn);
        self.close(conn);
    }

    /// Closes `conn` after its pending output (no `Error` frame); a dial in
    /// progress is abandoned.
    pub fn close(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if session.state.phase == Phase::Closing {
            return;
        }
        if session.state.phase == Phase::Connecting {
            // An abandoned dial is no longer one.
            self.outbox.dialing -= 1;
        }
        session.state.phase = Phase::Closing;
        self.outbox.push(Queued::Close(conn));
    }

    /// Opens a session for a dial to `peer` and asks the driver to dial.
    /// The id is known at once; [`Service::on_open`] or
    /// [`Service::on_connect_failed`] follows with it. `None`: the session
    /// table is full.
    pub fn connect(&mut self, peer: PeerId) -> Option<ConnId> {
        let session = new_session(
            self.config,
            self.now,
            Side::Initiator,
            Origin::Dialed { peer },
        );
        let conn = self.sessions.insert(session)?;
        self.outbox.dialing += 1;
        self.outbox.push(Queued::Connect(conn));
        Some(conn)
    }

    /// Asks the driver to leave `conn`'s input in the kernel until
    /// [`Context::resume_input`]. Returns whether that changed anything.
    pub fn pause_input(&mut self, conn: ConnId) -> bool {
        self.set_input_paused(conn, true)
    }

    /// Lets the driver read `conn` again. Returns whether it was paused.
    pub fn resume_input(&mut self, conn: ConnId) -> bool {
        self.set_input_paused(conn, false)
    }

    pub(super) fn set_input_paused(&mut self, conn: ConnId, paused: bool) -> bool {
        let Some(session) = self.sessions.get_mut(conn) else {
            return false;
        };
        if session.input_paused == paused {
            return false;
        }
        session.input_paused = paused;
        if !session.input_queued {
            session.input_queued = true;
            self.outbox.push(Queued::Input(conn));
        }
        true
    }

    /// Puts `conn`'s input in `group`: it pauses and resumes with the
    /// group's other connections ([`Context::pause_group`]).
    pub fn set_input_group(&mut self, conn: ConnId, group: InputGroup) {
        assert!(
            group.index() < INPUT_GROUPS_MAX,
            "{group:?} beyond {INPUT_GROUPS_MAX}"
        );
        if let Some(s) = self.sessions.get_mut(conn) {
            s.input_group = Some(group);
        }
    }

    /// Asks the driver to leave the input of every connection of `group`
    /// in the kernel until [`Context::resume_group`]. One effect, whatever
    /// the group's size; repeated calls change nothing.
    pub fn pause_group(&mut self, group: InputGroup) {
        self.set_group_paused(group, true);
    }

    /// Lets the driver read `group`'s connections again.
    pub fn resume_group(&mut self, group: InputGroup) {
        self.set_group_paused(group, false);
    }

    pub(super) fn set_group_paused(&mut self, group: InputGroup, paused: bool) {
        let g = group.index();
        assert!(g < INPUT_GROUPS_MAX, "{group:?} beyond {INPUT_GROUPS_MAX}");
        if self.outbox.groups.len() <= g {
            self.outbox.groups.resize(g + 1, GroupGate::default());
        }
        let gate = &mut self.outbox.groups[g];
        if gate.paused == paused {
            return;
        }
        gate.paused = paused;
        if !gate.queued {
            gate.queued = true;
            self.outbox.push(Queued::Group(group));
        }
    }

    /// Appends whole frames for worker `target` with `write`. Returns
    /// `false`, writing nothing, when the lane to `target` would pass
    /// [`WorkerConfig::handoff_backlog_max`]: the service sheds.
    pub fn handoff(
        &mut self,
        target: WorkerId,
        additional: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        assert_ne!(target, self.worker, "a worker hands nothing to itself");
        let t = target.index();
        assert!(t < WORKERS_MAX, "worker {target:?} beyond {WORKERS_MAX}");
        if self.outbox.lanes.len() <= t {
            self.outbox.lanes.resize_with(t + 1, OutBuf::default);
            self.outbox.lane_queued.resize(t + 1, false);
        }
        let lane = &mut self.outbox.lanes[t];
        if lane.len() + additional > self.config.handoff_backlog_max {
            return false;
        }
        write(lane.tail(additional));
        if !self.outbox.lane_queued[t] {
            self.outbox.lane_queued[t] = true;
            self.outbox.push(Queued::Handoff(target));
        }
        true
    }

    /// Appends one journal record written by `write` (its payload, at most
    /// `additional` bytes expected) for the driver's log. Returns `false`,
    /// writing nothing, past [`JOURNAL_BACKLOG_MAX`]. Numbering is the
    /// service's: records become durable in the order they are journaled.
    pub fn journal(&mut self, additional: usize, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let journal = &mut self.outbox.journal;
        if journal.len() + JOURNAL_RECORD_HEADER_LEN + additional > JOURNAL_BACKLOG_MAX {
            return false;
        }
        let out = journal.tail(JOURNAL_RECORD_HEADER_LEN + additional);
        let start = out.len();
        out.extend_from_slice(&[0; JOURNAL_RECORD_HEADER_LEN]);
        write(out);
        let len = u32::try_from(out.len() - start - JOURNAL_RECORD_HEADER_LEN)
            .expect("a journal record fits u32");
        out[start..start + JOURNAL_RECORD_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        if !self.outbox.journal_queued {
            self.outbox.journal_queued = true;
            self.outbox.push(Queued::Journal);
        }
        true
    }

    /// Offers the driver `state`, the service's state right after journal
    /// record `seq` (see [`Effect::Snapshot`](super::Effect::Snapshot)). One waits at most: a newer
    /// one replaces one the driver has not taken.
    pub fn journal_snapshot(&mut self, seq: u64, state: Vec<u8>) {
        if self.outbox.snapshot.replace((seq, state)).is_none() {
            self.outbox.push(Queued::Snapshot);
        }
    }

    /// Bytes held for worker `target` that the driver has not moved yet.
    pub fn handoff_backlog(&self, target: WorkerId) -> usize {
        self.outbox.lanes.get(target.index()).map_or(0, OutBuf::len)
    }
}

/// Bookkeeping after bytes were appended to live `conn`'s output
/// (`session`): the transmit, the heartbeat clock, the output's bounds
/// (past the bound: the fault to fail it with).
pub(super) fn queued<D>(
    now: Nanos,
    config: &WorkerConfig,
    outbox: &mut Outbox,
    conn: ConnId,
    session: &mut Session<D>,
) -> Result<(), Fault> {
    session.sent_at = now;
    queue_transmit(outbox, session, conn);
    let backlog = session.out.len();
    if backlog > config.output_high_water() {
        session.output_high = true;
    }
    if backlog > config.output_backlog_max {
        return Err(Fault::Overloaded {
            backlog,
            max: config.output_backlog_max,
        });
    }
    Ok(())
}

pub(super) fn queue_transmit<D>(outbox: &mut Outbox, session: &mut Session<D>, conn: ConnId) {
    if !session.transmit_queued {
        session.transmit_queued = true;
        outbox.push(Queued::Transmit(conn));
    }
}

pub(super) fn new_session<D: Default>(
    config: &WorkerConfig,
    now: Nanos,
    side: Side,
    origin: Origin,
) -> Session<D> {
    let phase = match origin {
        Origin::Accepted => Phase::Connected,
        Origin::Dialed { .. } => Phase::Connecting,
    };
    Session {
        // Numbered when it opens: a dial that fails uses no id.
        id: SessionId(u64::MAX),
        state: ConnState { side, phase },
        origin,
        decoder: Decoder::new(config.max_frame),
        out: OutBuf::default(),
        transmit_queued: false,
        input_paused: false,
        input_told_paused: false,
        input_queued: false,
        output_high: false,
        input_group: None,
        read_at: now,
        sent_at: now,
        data: D::default(),
    }
}

/// A reason string formatted without allocating, clipped to 256 bytes.
#[derive(Debug)]
pub(super) struct ReasonBuf {
    pub(super) buf: [u8; REASON_LEN_MAX],
    pub(super) len: usize,
}

impl Default for ReasonBuf {
    fn default() -> Self {
        ReasonBuf {
            buf: [0; REASON_LEN_MAX],
            len: 0,
        }
    }
}

impl ReasonBuf {
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("only whole chars are written")
    }
}

impl fmt::Write for ReasonBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = REASON_LEN_MAX - self.len;
        let s = crate::wire::clip_reason(s);
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
