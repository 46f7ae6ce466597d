//! What a service is to its worker: the [`Service`] trait, its opcode
//! handlers, and the dispatch table that finds a frame's handler in O(1).

use std::fmt;

use crate::error::Fault;
use crate::frame::Frame;
use crate::limits::{DISPATCH_SLOTS, HANDLERS_MAX};
use crate::session::{ConnId, Session};
use crate::state::{ConnState, Phase, Side, StateSet};
use crate::time::Nanos;
use crate::wire::{HEARTBEAT_FRAME, OP_HEARTBEAT};

use super::{Context, Origin, WorkerId};

/// A handler: the service, its context, the connection and one payload.
pub type HandlerFn<S> = fn(&mut S, &mut Context<'_, S>, ConnId, &[u8]) -> Result<(), Fault>;

/// One row of a service's dispatch table: an opcode, the states it is
/// allowed in, and its handler. A frame in any other state is answered with
/// `Error{UNEXPECTED}`; an opcode missing from the table with
/// `Error{UNKNOWN_OPCODE}`.
pub struct Handler<S: Service> {
    /// The opcode handled.
    pub opcode: u16,
    /// Where it is allowed.
    pub allowed: StateSet,
    /// The handler: the payload of one frame on `conn`.
    pub handle: HandlerFn<S>,
}

impl<S: Service> fmt::Debug for Handler<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("opcode", &self.opcode)
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// What a role does with the connections of a worker. Every method gets a
/// [`Context`] through which it sends, closes, dials, hands off and pauses
/// input.
pub trait Service: Sized + 'static {
    /// Per-connection data.
    type Data: Default;

    /// The dispatch table (at most [`HANDLERS_MAX`] rows, one per opcode).
    const HANDLERS: &'static [Handler<Self>];

    /// The worker starts: open upstreams here.
    fn on_start(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// A connection opened (accepted, or a dial completed); its session
    /// exists.
    fn on_open(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, origin: Origin) {
        let _ = (cx, conn, origin);
    }

    /// A connection closed; its session is gone and handed over.
    fn on_close(&mut self, cx: &mut Context<'_, Self>, conn: ConnId, session: Session<Self::Data>);

    /// The dial of `conn` failed; its session is gone and handed over (its
    /// [`Session::origin`] names the peer).
    fn on_connect_failed(
        &mut self,
        cx: &mut Context<'_, Self>,
        conn: ConnId,
        session: Session<Self::Data>,
    ) {
        let _ = (cx, conn, session);
    }

    /// `conn`'s output, which had passed the high-water mark, is back at
    /// [`WorkerConfig::output_low_water`](super::WorkerConfig::output_low_water): input paused for its sake may
    /// resume.
    fn on_drained(&mut self, cx: &mut Context<'_, Self>, conn: ConnId) {
        let _ = (cx, conn);
    }

    /// Worker `source` handed this worker a frame.
    fn on_handoff(&mut self, cx: &mut Context<'_, Self>, source: WorkerId, frame: Frame<'_>) {
        let _ = (cx, source, frame);
    }

    /// Every journal record up to `seq` is on stable storage (see
    /// [`Context::journal`]).
    fn on_durable(&mut self, cx: &mut Context<'_, Self>, seq: u64) {
        let _ = (cx, seq);
    }

    /// The journal failed for good (see [`Worker::handle_journal_failed`](super::Worker::handle_journal_failed)).
    fn on_journal_failed(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// Time passed [`Service::poll_timeout`] (or a spurious wake-up).
    fn on_timeout(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// The process is draining.
    fn on_shutdown(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// The earliest deadline of the service's timers: the one timer
    /// channel. A driver asks once per loop turn, after its inputs.
    fn poll_timeout(&self) -> Option<Nanos> {
        None
    }

    /// Whether the worker can serve: its upstreams are hand-shaked. A driver
    /// announces readiness (`ready <addr>`) once every worker says so.
    fn is_ready(&self) -> bool {
        true
    }

    /// Whether the worker has nothing left to do: drained after
    /// [`Service::on_shutdown`], or a load generator's run finished. A driver
    /// stops the worker then.
    fn is_done(&self) -> bool {
        false
    }
}

/// Opcode to handler index, open-addressed: O(1) per frame whatever the
/// table's length.
#[derive(Debug)]
pub(super) struct DispatchTable {
    /// `(opcode, handler index)`; `EMPTY` marks a free slot.
    pub(super) slots: [(u16, u8); DISPATCH_SLOTS],
}

impl DispatchTable {
    const EMPTY: u8 = u8::MAX;

    pub(super) fn new<S: Service>() -> DispatchTable {
        assert!(
            S::HANDLERS.len() <= HANDLERS_MAX,
            "{} handlers, at most {HANDLERS_MAX}",
            S::HANDLERS.len()
        );
        let mut table = DispatchTable {
            slots: [(0, Self::EMPTY); DISPATCH_SLOTS],
        };
        for (i, h) in S::HANDLERS.iter().enumerate() {
            assert!(
                table.find(h.opcode).is_none(),
                "opcode {} has two handlers",
                h.opcode
            );
            let mut slot = Self::home(h.opcode);
            while table.slots[slot].1 != Self::EMPTY {
                slot = (slot + 1) % DISPATCH_SLOTS;
            }
            table.slots[slot] = (h.opcode, u8::try_from(i).expect("bounded by HANDLERS_MAX"));
        }
        table
    }

    pub(super) fn home(opcode: u16) -> usize {
        // Fibonacci hashing spreads the protocol's dense opcode ranges.
        (usize::from(opcode).wrapping_mul(40503) >> 8) % DISPATCH_SLOTS
    }

    pub(super) fn find(&self, opcode: u16) -> Option<usize> {
        let mut slot = Self::home(opcode);
        // At most HANDLERS_MAX slots are taken: a free one ends the probe.
        loop {
            let (op, index) = self.slots[slot];
            if index == Self::EMPTY {
                return None;
            }
            if op == opcode {
                return Some(usize::from(index));
            }
            slot = (slot + 1) % DISPATCH_SLOTS;
        }
    }
}

/// A `Heartbeat`, answered by the worker for every service: allowed only
/// once hand-shaked, with an empty payload; the accepting side answers
/// each with one, the dialling side only notes that the peer is alive
/// (its read time, already taken).
pub(super) fn heartbeat<S: Service>(
    cx: &mut Context<'_, S>,
    conn: ConnId,
    state: ConnState,
    payload: &[u8],
) -> Result<(), Fault> {
    if state.phase != Phase::Handshaked {
        return Err(Fault::Unexpected {
            opcode: OP_HEARTBEAT,
            state,
        });
    }
    if !payload.is_empty() {
        return Err(Fault::Malformed {
            opcode: OP_HEARTBEAT,
            what: "a heartbeat carries no payload",
        });
    }
    if state.side == Side::Acceptor {
        cx.send(conn, HEARTBEAT_FRAME.len(), |out| {
            out.extend_from_slice(&HEARTBEAT_FRAME);
        });
    }
    Ok(())
}

pub(super) fn dispatch<S: Service>(
    table: &DispatchTable,
    service: &mut S,
    cx: &mut Context<'_, S>,
    conn: ConnId,
    frame: Frame<'_>,
) -> Result<(), Fault> {
    let opcode = frame.opcode;
    if opcode == OP_HEARTBEAT {
        let state = cx.state(conn).expect("dispatch runs on a live session");
        return heartbeat(cx, conn, state, frame.payload);
    }
    let state = cx.state(conn).expect("dispatch runs on a live session");
    let Some(index) = table.find(opcode) else {
        // Before the hand-shake nothing but the hello is allowed, whether
        // or not the opcode means something here.
        if state.phase == Phase::Connected {
            return Err(Fault::Unexpected { opcode, state });
        }
        return Err(Fault::UnknownOpcode { opcode });
    };
    let handler = &S::HANDLERS[index];
    if !handler.allowed.contains(state) {
        return Err(Fault::Unexpected { opcode, state });
    }
    (handler.handle)(service, cx, conn, frame.payload)
}
