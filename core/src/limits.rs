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

/// Sessions one worker may own at once.
pub const SESSIONS_PER_WORKER_MAX_DEFAULT: usize = 65_536;
/// Bits of a [`crate::ConnId`]'s slot index; the table cannot be larger.
pub const CONN_INDEX_BITS: u32 = 24;
/// Bits of a [`crate::ConnId`]'s generation (it wraps).
pub const CONN_GEN_BITS: u32 = 24;
/// Workers of one process; a worker id fits in a byte of a routing tag.
pub const WORKERS_MAX: usize = 256;

const _: () = assert!(FRAME_LENGTH_MIN as usize == OPCODE_LEN);
const _: () = assert!(FRAME_LENGTH_MAX_DEFAULT <= FRAME_LENGTH_MAX_CEILING);
const _: () = assert!(SESSIONS_PER_WORKER_MAX_DEFAULT <= 1 << CONN_INDEX_BITS);
const _: () = assert!(CONN_INDEX_BITS + CONN_GEN_BITS <= 48);
const _: () = assert!(OUTPUT_BACKLOG_MAX_DEFAULT >= 2 * FRAME_LENGTH_MAX_DEFAULT as usize);
