//! Segment files: their header, their names, and where the next record of
//! a batch goes.
//!
//! A segment is named by the sequence number of its first record,
//! `{first_seq:020}.wal`, so a sorted listing is the journal in order. Its
//! header carries a magic, the format version, that first sequence number
//! and the caller's settings blob (the exchange's instruments, accounts and
//! balances: what shapes the state the records rebuild), then a CRC32C of
//! all of it. Records follow the header. A segment is created preallocated
//! and zero-filled, so the end of its records is the first zero header.

use crate::limits::{
    SEGMENT_HEADER_CHECKSUM_LEN, SEGMENT_HEADER_FIXED_LEN, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN,
    SETTINGS_LEN_MAX,
};
use crate::record::{peek_len, peek_seq};

/// The first eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FEPJRNL\x01";
/// The segment format this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// File name extension of a segment.
pub const SEGMENT_EXTENSION: &str = "wal";
/// File name extension of a snapshot.
pub const SNAPSHOT_EXTENSION: &str = "snapshot";
/// File name extension of a file being written (a snapshot before its
/// rename); any left at start-up is the debris of a crash.
pub const TEMPORARY_EXTENSION: &str = "tmp";

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader<'a> {
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
    /// The settings blob the segment was written with.
    pub settings: &'a [u8],
    /// Bytes the header takes: records start here.
    pub len: usize,
}

/// Why a segment header is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Only zeros where the header belongs: created, never written.
    Zeroed,
    /// Fewer bytes than the header needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// Not a segment of this journal.
    BadMagic,
    /// Written by another format version.
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// A settings blob above [`SETTINGS_LEN_MAX`].
    SettingsTooLong {
        /// Its stored length.
        len: u32,
    },
    /// The header's checksum does not match.
    ChecksumMismatch,
    /// Written with settings other than the caller's.
    SettingsMismatch {
        /// CRC32C of the settings in the file.
        stored_crc: u32,
        /// CRC32C of the caller's settings.
        expected_crc: u32,
    },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Zeroed => write!(f, "header never written (all zeros)"),
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "header truncated ({needed} bytes needed, {available} there)"
                )
            }
            Self::BadMagic => write!(f, "not a journal file (bad magic)"),
            Self::UnsupportedVersion { found } => write!(
                f,
                "format version {found}, this build reads version {FORMAT_VERSION}"
            ),
            Self::SettingsTooLong { len } => write!(f, "settings blob of {len} bytes"),
            Self::ChecksumMismatch => write!(f, "header checksum mismatch"),
            Self::SettingsMismatch {
                stored_crc,
                expected_crc,
            } => write!(
                f,
                "written with other settings (instruments, accounts, balances: \
                 crc {stored_crc:#010x} in the journal, {expected_crc:#010x} now)"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Bytes the header of a segment with these settings takes.
pub fn header_len(settings: &[u8]) -> usize {
    SEGMENT_HEADER_FIXED_LEN + settings.len() + SEGMENT_HEADER_CHECKSUM_LEN
}

/// Appends a segment header to `out`.
///
/// # Panics
/// If `settings` is above [`SETTINGS_LEN_MAX`] (the caller checks its
/// settings once at start-up) or `first_seq` is 0.
pub fn encode_header(first_seq: u64, settings: &[u8], out: &mut Vec<u8>) {
    assert!(
        settings.len() <= SETTINGS_LEN_MAX,
        "settings above the bound"
    );
    assert!(first_seq >= 1, "sequence numbers start at 1");
    let start = out.len();
    out.extend_from_slice(&SEGMENT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes());
    let settings_len = u32::try_from(settings.len()).expect("bounded");
    out.extend_from_slice(&settings_len.to_le_bytes());
    out.extend_from_slice(settings);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, header_len(settings));
}

/// Decodes the header at the front of a segment's bytes and checks its
/// settings against `settings_expected`.
pub fn decode_header<'a>(
    bytes: &'a [u8],
    settings_expected: &[u8],
) -> Result<SegmentHeader<'a>, HeaderError> {
    let fixed = bytes.get(..SEGMENT_HEADER_FIXED_LEN);
    let Some(fixed) = fixed else {
        return Err(zeroed_or(
            bytes,
            HeaderError::Truncated {
                needed: SEGMENT_HEADER_FIXED_LEN,
                available: bytes.len(),
            },
        ));
    };
    if fixed[..8] != SEGMENT_MAGIC {
        return Err(zeroed_or(fixed, HeaderError::BadMagic));
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion { found: version });
    }
    let first_seq = u64::from_le_bytes(fixed[12..20].try_into().expect("8 bytes"));
    let settings_len = u32::from_le_bytes(fixed[20..24].try_into().expect("4 bytes"));
    if settings_len as usize > SETTINGS_LEN_MAX {
        return Err(HeaderError::SettingsTooLong { len: settings_len });
    }
    let body_end = SEGMENT_HEADER_FIXED_LEN + settings_len as usize;
    let len = body_end + SEGMENT_HEADER_CHECKSUM_LEN;
    if bytes.len() < len {
        return Err(HeaderError::Truncated {
            needed: len,
            available: bytes.len(),
        });
    }
    let stored = u32::from_le_bytes(bytes[body_end..len].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..body_end]) != stored || first_seq == 0 {
        return Err(HeaderError::ChecksumMismatch);
    }
    let settings = &bytes[SEGMENT_HEADER_FIXED_LEN..body_end];
    check_settings(settings, settings_expected)?;
    Ok(SegmentHeader {
        first_seq,
        settings,
        len,
    })
}

/// Refuses settings other than the caller's.
pub fn check_settings(stored: &[u8], expected: &[u8]) -> Result<(), HeaderError> {
    if stored == expected {
        return Ok(());
    }
    Err(HeaderError::SettingsMismatch {
        stored_crc: crc32c::crc32c(stored),
        expected_crc: crc32c::crc32c(expected),
    })
}

fn zeroed_or(bytes: &[u8], other: HeaderError) -> HeaderError {
    if bytes.iter().all(|&b| b == 0) {
        HeaderError::Zeroed
    } else {
        other
    }
}

/// What a file in a journal directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// A segment whose first record has this sequence number.
    Segment(u64),
    /// A snapshot of the state after the record with this sequence number.
    Snapshot(u64),
    /// A file being written; debris if found at start-up.
    Temporary,
}

/// The name of the segment whose first record is `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{SEGMENT_EXTENSION}")
}

/// The name of the snapshot covering records up to `seq`.
pub fn snapshot_file_name(seq: u64) -> String {
    format!("{seq:020}.{SNAPSHOT_EXTENSION}")
}

/// The name a snapshot is written under before its rename.
pub fn snapshot_temporary_name(seq: u64) -> String {
    format!("{seq:020}.{SNAPSHOT_EXTENSION}.{TEMPORARY_EXTENSION}")
}

/// What a file name means to the journal; `None` for a name it does not own
/// (left alone).
pub fn parse_file_name(name: &str) -> Option<FileKind> {
    if name.ends_with(&format!(".{TEMPORARY_EXTENSION}")) {
        return Some(FileKind::Temporary);
    }
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq: u64 = stem.parse().ok()?;
    match ext {
        SEGMENT_EXTENSION if seq >= 1 => Some(FileKind::Segment(seq)),
        SNAPSHOT_EXTENSION => Some(FileKind::Snapshot(seq)),
        _ => None,
    }
}

/// Where the writer is in its current segment, and where the records of a
/// batch go: whole records only, a new segment when the next one does not
/// fit. Both drivers (the WAL thread and the simulator) use it, so rolling
/// is decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCursor {
    /// First sequence number of the current segment.
    pub first_seq: u64,
    /// Where the next record goes in it.
    pub offset: u64,
    /// The segment size bound.
    pub size: u64,
}

impl SegmentCursor {
    /// A cursor at `offset` of the segment starting at `first_seq`.
    ///
    /// # Panics
    /// If `size` is outside [`SEGMENT_SIZE_MIN`]`..=`[`SEGMENT_SIZE_MAX`].
    pub fn new(first_seq: u64, offset: u64, size: u64) -> Self {
        assert!((SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&size));
        assert!(offset <= size);
        Self {
            first_seq,
            offset,
            size,
        }
    }

    /// How many bytes from the front of `batch` (records this program
    /// encoded) fit in the current segment, whole records only.
    pub fn fit(&self, batch: &[u8]) -> usize {
        let room = self.size - self.offset;
        let mut taken = 0usize;
        while let Some(len) = peek_len(&batch[taken..]) {
            if (taken + len) as u64 > room || taken + len > batch.len() {
                break;
            }
            taken += len;
        }
        taken
    }

    /// Moves past `written` bytes.
    pub fn advance(&mut self, written: usize) {
        self.offset += written as u64;
        assert!(self.offset <= self.size);
    }

    /// Starts the next segment for `batch`, whose first record did not fit:
    /// returns the new segment's first sequence number.
    pub fn roll(&mut self, batch: &[u8], header_len: usize) -> u64 {
        let first_seq = peek_seq(batch).expect("a roll needs a pending record");
        self.first_seq = first_seq;
        self.offset = header_len as u64;
        first_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::RECORD_HEADER_LEN;
    use crate::record::encode_append;

    #[test]
    fn a_header_round_trips_and_refuses_other_settings() {
        let mut out = Vec::new();
        encode_header(42, b"instruments=16", &mut out);
        let h = decode_header(&out, b"instruments=16").unwrap();
        assert_eq!(
            (h.first_seq, h.settings, h.len),
            (42, &b"instruments=16"[..], out.len())
        );
        let err = decode_header(&out, b"instruments=8").unwrap_err();
        assert!(matches!(err, HeaderError::SettingsMismatch { .. }));
        assert!(err.to_string().contains("other settings"));
    }

    #[test]
    fn a_damaged_header_is_told_apart_from_a_zeroed_one() {
        assert_eq!(decode_header(&[0u8; 100], b""), Err(HeaderError::Zeroed));
        assert_eq!(decode_header(&[], b""), Err(HeaderError::Zeroed));
        let mut out = Vec::new();
        encode_header(1, b"s", &mut out);
        for i in 0..out.len() {
            let mut b = out.clone();
            b[i] ^= 0x10;
            assert!(decode_header(&b, b"s").is_err(), "byte {i}");
        }
        assert!(matches!(
            decode_header(&out[..out.len() - 1], b"s"),
            Err(HeaderError::Truncated { .. })
        ));
    }

    #[test]
    fn file_names_sort_in_sequence_order_and_parse_back() {
        assert_eq!(
            parse_file_name(&segment_file_name(7)),
            Some(FileKind::Segment(7))
        );
        assert_eq!(
            parse_file_name(&snapshot_file_name(9)),
            Some(FileKind::Snapshot(9))
        );
        assert_eq!(
            parse_file_name(&snapshot_temporary_name(9)),
            Some(FileKind::Temporary)
        );
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name(&segment_file_name(0)), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn the_cursor_fits_whole_records_and_rolls_at_the_bound() {
        let mut batch = Vec::new();
        for seq in 5..8 {
            encode_append(seq, &[1u8; 84], &mut batch).unwrap();
        }
        let rec = RECORD_HEADER_LEN + 84;
        let size = SEGMENT_SIZE_MIN;
        let mut c = SegmentCursor::new(1, size - 2 * rec as u64 + 1, size);
        let n = c.fit(&batch);
        assert_eq!(n, rec);
        c.advance(n);
        assert_eq!(c.fit(&batch[n..]), 0);
        assert_eq!(c.roll(&batch[n..], 30), 6);
        assert_eq!((c.first_seq, c.offset), (6, 30));
        assert_eq!(c.fit(&batch[n..]), 2 * rec);
    }
}
