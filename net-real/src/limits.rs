//! Every bound of the real backend in one place.

use std::time::Duration;

/// Bytes of the one read buffer each worker reuses for every socket. An
/// upstream session carries many clients' answers, and the clients' writes
/// are as large as what one read brings: pipelined through the gateway
/// (100 clients × 30 × 1 KiB), 256 KiB gave 13–18% more round trips per
/// second than 64 KiB (1 MiB no more than 256 KiB).
pub const READ_BUF_LEN: usize = 256 * 1024;
/// Slices of one vectored write: a connection's output is its own bytes
/// and, during a read, payloads written straight from the read buffer (one
/// slice each, between their stamped heads). What is past this many goes
/// out in the next write.
pub const IOV_PER_WRITE_MAX: usize = 64;
/// Readiness events taken from the kernel per poll.
pub const EVENTS_PER_POLL_MAX: usize = 1024;
/// Pending connections the kernel queues per listening socket.
pub const LISTEN_BACKLOG: i32 = 1024;
/// Reads of one connection per loop turn before the others get theirs
/// (the rest waits for the next turn, without a new event): 1 MiB. A
/// client rarely has that much waiting; an upstream, which carries every
/// client's answers, often does, and a smaller budget starved it (s2 at
/// 4 reads of 64 KiB: the exchange idled, paused on a full output, while
/// the gateway served thousands of clients a read each).
pub const READS_PER_TURN_MAX: usize = (1024 * 1024) / READ_BUF_LEN;
/// Default bytes past which one (source, target) handoff mailbox takes no
/// more until its target drains it (it may pass by one batch).
pub const HANDOFF_MAILBOX_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// Default time a worker drains after a shutdown before it closes the rest.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default time a closing connection gets to flush its last bytes (an
/// `Error` frame queued behind a backlog) before it is cut: long enough for
/// a peer that stopped reading for a few seconds (the one `OVERLOADED` is
/// about) to come back for them.
pub const CLOSE_LINGER_DEFAULT: Duration = Duration::from_secs(5);
/// Default time a dial may take before it is reported failed.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Input bytes a closing connection's peer may still send and have dropped
/// while its last output waits (16 MiB). Past it its input stays in the
/// kernel: a peer that sends without reading is held back by TCP, rather
/// than sending on until the linger runs out and the close's RST destroys
/// the answers and the `Error` it has not read yet.
pub const CLOSE_DISCARD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Sockets one worker keeps after their sessions ended, their write side
/// shut, until their peers have read the last bytes and closed (4,096).
/// Past it a finished connection is closed at once.
pub const ORPHANS_MAX: usize = 4096;
/// Reads of input discarded before a close, so the kernel sends FIN rather
/// than RST (which could destroy our last frame at the peer).
pub const CLOSE_DISCARD_READS_MAX: usize = 16;

/// Default period of an observer's look at a worker's service.
pub const OBSERVE_EVERY_DEFAULT: Duration = Duration::from_millis(100);

const _: () = assert!(READ_BUF_LEN >= 4096);
const _: () = assert!(EVENTS_PER_POLL_MAX > 0);
const _: () = assert!(HANDOFF_MAILBOX_BYTES_DEFAULT > 0);
const _: () = assert!(READS_PER_TURN_MAX > 0);

/// Default bound of the WAL's pending (appended, not yet written) bytes per
/// buffer. Past it `Wal::try_append` answers `Full` and the producer pauses
/// until the WAL thread has taken the batch. 4 MiB is ~50k 80-byte records:
/// at 500k records/s that is 100 ms of input, several fsyncs' worth.
pub const WAL_PENDING_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;
/// Bytes of zeros written per call when a file system cannot `fallocate`
/// or when a torn tail is wiped.
pub const WAL_ZERO_CHUNK_LEN: usize = 1024 * 1024;
/// Bytes of each append of the fsync-latency probe.
pub const FSYNC_PROBE_BLOCK_LEN: usize = 4096;

const _: () = assert!(WAL_PENDING_BYTES_MAX_DEFAULT >= fep_journal::limits::RECORD_LEN_MAX);

/// How long the snapshot thread waits for a snapshot's record to become
/// durable before it drops the snapshot (the log failed, or stopped).
pub const SNAPSHOT_DURABLE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);
