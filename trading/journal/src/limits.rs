//! Every bound of the journal in one place, checked against each other at
//! compile time.

/// Bytes of a record's header: `payload_len:u32, checksum:u32, seq:u64`.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest payload (one opaque command) of a record. Commands are engine
/// requests of tens of bytes; a megabyte is far above any of them and keeps
/// a garbage length from sending the scan past a whole segment.
pub const RECORD_PAYLOAD_LEN_MAX: usize = 1024 * 1024;
/// Largest record, header included.
pub const RECORD_LEN_MAX: usize = RECORD_HEADER_LEN + RECORD_PAYLOAD_LEN_MAX;

/// Largest settings blob (the exchange's instruments, accounts, balances)
/// a segment or snapshot header carries.
pub const SETTINGS_LEN_MAX: usize = 64 * 1024;
/// Bytes of a segment header before its settings blob:
/// `magic:[u8;8], version:u16, reserved:u16, first_seq:u64, settings_len:u32`.
pub const SEGMENT_HEADER_FIXED_LEN: usize = 24;
/// Bytes of a segment header's trailing checksum.
pub const SEGMENT_HEADER_CHECKSUM_LEN: usize = 4;
/// Largest segment header.
pub const SEGMENT_HEADER_LEN_MAX: usize =
    SEGMENT_HEADER_FIXED_LEN + SETTINGS_LEN_MAX + SEGMENT_HEADER_CHECKSUM_LEN;

/// Smallest segment: the largest header plus the largest record, so every
/// record fits in a fresh segment and rolling always makes progress.
pub const SEGMENT_SIZE_MIN: u64 = (SEGMENT_HEADER_LEN_MAX + RECORD_LEN_MAX) as u64;
/// Default size of a segment (preallocated, zero-filled).
pub const SEGMENT_SIZE_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest segment: recovery reads a segment whole into one buffer.
pub const SEGMENT_SIZE_MAX: u64 = 1024 * 1024 * 1024;

/// Bytes of a snapshot file before its settings blob:
/// `magic:[u8;8], version:u16, reserved:u16, seq:u64, settings_len:u32,
/// state_len:u64`.
pub const SNAPSHOT_HEADER_FIXED_LEN: usize = 32;
/// Largest engine state a snapshot carries.
pub const SNAPSHOT_STATE_LEN_MAX: u64 = 1024 * 1024 * 1024;

/// Reads of one file recovery makes before it believes damage it sees. A
/// read may return bytes the disk does not hold (a flipped bit on the
/// bus, a misdirected read; turmoil simulates it): damage read the same
/// way twice in a row is believed, otherwise the file is read again.
pub const RECOVERY_READS_MAX: usize = 4;

const _: () = assert!(RECORD_HEADER_LEN == 4 + 4 + 8);
const _: () = assert!(RECOVERY_READS_MAX >= 2);
const _: () = assert!(SEGMENT_HEADER_FIXED_LEN == 8 + 2 + 2 + 8 + 4);
const _: () = assert!(SNAPSHOT_HEADER_FIXED_LEN == 8 + 2 + 2 + 8 + 4 + 8);
const _: () = assert!(RECORD_PAYLOAD_LEN_MAX <= u32::MAX as usize);
const _: () = assert!(SETTINGS_LEN_MAX <= u32::MAX as usize);
const _: () = assert!(SEGMENT_SIZE_MIN <= SEGMENT_SIZE_DEFAULT);
const _: () = assert!(SEGMENT_SIZE_DEFAULT <= SEGMENT_SIZE_MAX);
