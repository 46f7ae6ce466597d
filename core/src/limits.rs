//! Every bound of the engine in one place, checked against each other at
//! compile time. A limit without a name is a limit nobody reviews.

/// Bytes of the length prefix of a frame.
pub const FRAME_HEADER_LEN: usize = 4;
/// Bytes of the opcode that every frame carries after its length.
pub const OPCODE_LEN: usize = 2;
/// Smallest legal value of the length field: the opcode alone.
pub const FRAME_LENGTH_MIN: u32 = OPCODE_LEN as u32;
/// Default largest legal value of the length field (PROTOCOL.md `max_frame`).
pub const FRAME_LENGTH_MAX_DEFAULT: u32 = 65_536;
/// Hard ceiling of a configured `max_frame`: 16 MiB.
pub const FRAME_LENGTH_MAX_CEILING: u32 = 16 * 1024 * 1024;

/// Longest `reason` of an `Error`/`Reject` frame, in bytes.
pub const REASON_LEN_MAX: usize = 256;

/// Default bound of one session's unsent output, in bytes. Past it the peer
/// is not reading: it gets `Error{OVERLOADED}` and is closed.
pub const OUTPUT_BACKLOG_MAX_DEFAULT: usize = 4 * 1024 * 1024;

/// Shortest frame forwarded straight from the input being handled (a
/// splice, [`crate::Context::forward`]) instead of copied: a short frame
/// costs little to copy, and the closed-loop path keeps its one slice.
pub const SPLICE_LEN_MIN: usize = 256;
/// Splices one session's output holds at once; past it frames are
/// copied. Frames forwarded back to back to one connection share one.
pub const SPLICES_MAX: usize = 512;
/// Stamps one forwarded frame may have written over it.
pub const STAMPS_PER_FORWARD_MAX: usize = 4;

/// Default bound of the bytes one worker holds for another (one handoff
/// lane) before the driver has moved them. Past it
/// [`crate::Context::handoff`] refuses, and the service sheds.
pub const HANDOFF_BACKLOG_MAX_DEFAULT: usize = 40 * 1024 * 1024;

/// Effects one session can have queued at once: a `Transmit`, a `Close`, a
/// `Connect` and one input edge (`PauseInput`/`ResumeInput`), each queued
/// at most once until polled.
pub const EFFECTS_PER_SESSION_MAX: usize = 4;

/// Input groups of one worker (connections paused and resumed together).
pub const INPUT_GROUPS_MAX: usize = 256;

/// Handlers of one service's dispatch table; the table is an open-addressed
/// array of twice as many slots, so a lookup probes at most this many.
pub const HANDLERS_MAX: usize = 64;
/// Slots of the dispatch table (a power of two above `2 * HANDLERS_MAX`).
pub const DISPATCH_SLOTS: usize = 256;

/// Default hand-shake deadline (PROTOCOL.md "Liveness"): an accepted
/// connection without a valid `RoleHelloReq` this long after it opened is
/// closed with `Error{TIMEOUT}`.
pub const HELLO_TIMEOUT_NS_DEFAULT: u64 = 5_000_000_000;
/// Heartbeat intervals of silence after which a dialled peer is declared
/// dead (PROTOCOL.md: three).
pub const HEARTBEAT_MISSES_MAX: u64 = 3;
/// Hand-shake deadlines a worker remembers, per session it may own: a
/// connection that closed before its deadline leaves its entry behind until
/// the FIFO is compacted, which happens when it reaches this many times
/// `sessions_max` (so compaction is amortised O(1) per accept).
pub const HELLO_DEADLINES_PER_SESSION_MAX: usize = 2;

/// Sessions one worker may own at once.
pub const SESSIONS_PER_WORKER_MAX_DEFAULT: usize = 65_536;
/// Bits of a [`crate::ConnId`]'s slot index; the table cannot be larger.
pub const CONN_INDEX_BITS: u32 = 24;
/// Bits of a [`crate::ConnId`]'s generation (it wraps).
pub const CONN_GEN_BITS: u32 = 24;
/// Workers of one process; a worker id fits in a byte of a routing tag.
pub const WORKERS_MAX: usize = 256;

/// Default bound of a gateway worker's orders in doubt: requests that may
/// have reached the exchange when their upstream was lost, and cancels it
/// could not send, waiting for a live upstream to be canceled. Past it the
/// gateway falls back to releasing the order's exposure (and counts it).
pub const IN_DOUBT_MAX_DEFAULT: usize = 4_096;

const _: () = assert!(FRAME_LENGTH_MIN as usize == OPCODE_LEN);
const _: () = assert!(HELLO_TIMEOUT_NS_DEFAULT > 0);
const _: () = assert!(HEARTBEAT_MISSES_MAX >= 1);
const _: () = assert!(HELLO_DEADLINES_PER_SESSION_MAX >= 2);
const _: () = assert!(FRAME_LENGTH_MAX_DEFAULT <= FRAME_LENGTH_MAX_CEILING);
const _: () = assert!(SESSIONS_PER_WORKER_MAX_DEFAULT <= 1 << CONN_INDEX_BITS);
const _: () = assert!(CONN_INDEX_BITS + CONN_GEN_BITS <= 48);
const _: () = assert!(OUTPUT_BACKLOG_MAX_DEFAULT >= 2 * FRAME_LENGTH_MAX_DEFAULT as usize);
// A full FIFO of in-doubt cancels (under 128 bytes each) fits well within
// one session's output bound, so the reconnect's flush is never cut.
const _: () = assert!(IN_DOUBT_MAX_DEFAULT * 128 <= OUTPUT_BACKLOG_MAX_DEFAULT / 2);
const _: () = assert!(DISPATCH_SLOTS.is_power_of_two());
const _: () = assert!(DISPATCH_SLOTS >= 2 * HANDLERS_MAX);
const _: () = assert!(HANDLERS_MAX < u8::MAX as usize);
const _: () = assert!(HANDOFF_BACKLOG_MAX_DEFAULT >= 2 * FRAME_LENGTH_MAX_DEFAULT as usize);

/// Bytes of journal records a worker holds before its driver takes them
/// ([`crate::Context::journal`] refuses past it). The service bounds what is
/// appended but not durable far below this; the driver empties the buffer
/// in every drain, so this only catches a service that journals without
/// limit.
pub const JOURNAL_BACKLOG_MAX: usize = 16 * 1024 * 1024;
/// Bytes before each journal record in [`crate::Worker::journal_buf`]: its
/// payload length, big-endian.
pub const JOURNAL_RECORD_HEADER_LEN: usize = 4;
