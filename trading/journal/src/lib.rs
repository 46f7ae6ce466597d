//! `fep-journal`: the exchange's write-ahead journal as bytes in, bytes out.
//!
//! No files, no clock, no threads: the drivers own the files (`fep-net`
//! writes them on a WAL thread, `fep-sim` on turmoil's simulated
//! filesystem) and both call this crate to decide what the bytes mean.
//! Commands and snapshots are opaque bytes here.
//!
//! - [`record`]: one record (length, sequence number, CRC32C, command),
//!   encoded into a caller-owned buffer without allocating;
//! - [`scan`]: the recovery scan over one segment's bytes, which tells a
//!   torn tail (discard it) from corruption in the middle (refuse to start);
//! - [`segment`]: segment headers (magic, version, first sequence number,
//!   the caller's settings), file names, and where a batch's records go
//!   ([`segment::SegmentCursor`], rolling at the size bound);
//! - [`snapshot`]: snapshot files (sequence number covered, state, checksum);
//! - [`plan`]: a directory listing and which files may be deleted once a
//!   durable snapshot covers them;
//! - [`recover`](mod@recover): recovery of a whole directory through a `load` callback;
//! - [`limits`]: every bound.
//!
//! The contract this serves is the "Durability" section of the protocol: a
//! request is answered only once its record is durable; a restart replays
//! the journal; a torn last record is discarded; damage followed by valid
//! records stops the start, naming the file and the offset.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod limits;
pub mod plan;
pub mod record;
pub mod recover;
pub mod scan;
pub mod segment;
pub mod snapshot;

pub use plan::{deletable, Listing};
pub use record::{Damage, EncodeError, Record};
pub use recover::{recover, AppendAt, Recovered, RecoveryError, TornTail};
pub use scan::{Scan, ScanEnd};
pub use segment::{HeaderError, SegmentCursor, SegmentHeader};
pub use snapshot::{Snapshot, SnapshotError};
