//! One record: `payload_len:u32, checksum:u32, seq:u64, payload`, all
//! little-endian (the journal is this program's own file, read back on the
//! machine that wrote it; the wire protocol's big-endian does not apply).
//!
//! The checksum is CRC32C over the header without the checksum field
//! (`payload_len`, `seq`) and then the payload, so a flipped bit anywhere in
//! the record is caught. Sequence numbers start at 1: an all-zero header
//! (a preallocated, never written region) is never a valid record.

use crate::limits::{RECORD_HEADER_LEN, RECORD_PAYLOAD_LEN_MAX};

/// A valid record found in a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its sequence number (1, 2, 3, … across the whole journal).
    pub seq: u64,
    /// Its offset in the bytes that were scanned.
    pub offset: usize,
    /// The opaque command.
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Bytes the record takes, header included.
    pub fn len_encoded(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }
}

/// Why the bytes at an offset are not the record the scan expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The header or the payload runs past the end of the bytes.
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The length field is above [`RECORD_PAYLOAD_LEN_MAX`].
    LengthOutOfRange {
        /// The stored payload length.
        payload_len: u32,
    },
    /// The sequence field is 0, which no record carries.
    SequenceZero,
    /// The checksum does not match the bytes.
    ChecksumMismatch {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// A record with a good checksum but another sequence number than the
    /// next one: a misdirected or stale write. A torn write cannot make one.
    SequenceOutOfOrder {
        /// The sequence number that should be here.
        expected: u64,
        /// The one that is.
        found: u64,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated record ({needed} bytes needed, {available} left)"
                )
            }
            Self::LengthOutOfRange { payload_len } => write!(
                f,
                "record length {payload_len} above the maximum {RECORD_PAYLOAD_LEN_MAX}"
            ),
            Self::SequenceZero => write!(f, "record with sequence number 0"),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::SequenceOutOfOrder { expected, found } => {
                write!(f, "sequence number {found} where {expected} was expected")
            }
        }
    }
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is longer than [`RECORD_PAYLOAD_LEN_MAX`].
    PayloadTooLong {
        /// Its length.
        len: usize,
    },
    /// Sequence numbers start at 1.
    SequenceZero,
    /// The caller's buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::PayloadTooLong { len } => write!(
                f,
                "journal payload of {len} bytes above the maximum {RECORD_PAYLOAD_LEN_MAX}"
            ),
            Self::SequenceZero => write!(f, "journal sequence numbers start at 1"),
            Self::BufferTooSmall { needed, available } => {
                write!(f, "record needs {needed} bytes, buffer has {available}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}
impl std::error::Error for Damage {}

/// Bytes a record with a payload of `payload_len` bytes takes.
pub const fn len_encoded(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Bytes of what the checksum covers before the payload: `payload_len`
/// and `seq`.
const CHECKSUMMED_HEAD_LEN: usize = 12;

/// A record whose checksummed bytes fit this many is checksummed from a
/// copy on the stack in one call (engine commands are tens of bytes).
const CHECKSUM_INLINE_LEN: usize = 128;

/// The stack copy, aligned so the CRC instructions take 8 bytes at a time
/// from its first byte on.
#[repr(align(8))]
struct Inline([u8; CHECKSUM_INLINE_LEN]);

/// CRC32C of `payload_len`, `seq` (little-endian) and the payload. Replay
/// checks every record, and most are a few tens of bytes: there, one call
/// over an aligned copy costs about half of two calls over unaligned
/// bytes (each call walks a ragged head and tail a byte at a time).
fn checksum(payload_len: u32, seq: u64, payload: &[u8]) -> u32 {
    let len = CHECKSUMMED_HEAD_LEN + payload.len();
    if len <= CHECKSUM_INLINE_LEN {
        let mut inline = Inline([0; CHECKSUM_INLINE_LEN]);
        let bytes = &mut inline.0[..len];
        bytes[..4].copy_from_slice(&payload_len.to_le_bytes());
        bytes[4..CHECKSUMMED_HEAD_LEN].copy_from_slice(&seq.to_le_bytes());
        bytes[CHECKSUMMED_HEAD_LEN..].copy_from_slice(payload);
        return crc32c::crc32c(bytes);
    }
    let mut head = [0u8; CHECKSUMMED_HEAD_LEN];
    head[..4].copy_from_slice(&payload_len.to_le_bytes());
    head[4..].copy_from_slice(&seq.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Encodes a record into the front of `out`; returns the bytes written.
/// Never allocates.
pub fn encode(seq: u64, payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    if payload.len() > RECORD_PAYLOAD_LEN_MAX {
        return Err(EncodeError::PayloadTooLong { len: payload.len() });
    }
    if seq == 0 {
        return Err(EncodeError::SequenceZero);
    }
    let needed = len_encoded(payload.len());
    if out.len() < needed {
        return Err(EncodeError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    let payload_len = u32::try_from(payload.len()).expect("bounded by RECORD_PAYLOAD_LEN_MAX");
    out[0..4].copy_from_slice(&payload_len.to_le_bytes());
    out[4..8].copy_from_slice(&checksum(payload_len, seq, payload).to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[RECORD_HEADER_LEN..needed].copy_from_slice(payload);
    Ok(needed)
}

/// Appends a record to `out`. Allocates only when `out` lacks the capacity
/// (a caller that reserves up front never allocates here).
pub fn encode_append(seq: u64, payload: &[u8], out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let start = out.len();
    let needed = len_encoded(payload.len());
    out.resize(start + needed, 0);
    match encode(seq, payload, &mut out[start..]) {
        Ok(n) => Ok(n),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// The sequence number in the header at the front of `bytes`, unchecked:
/// for a writer walking records it encoded itself.
pub fn peek_seq(bytes: &[u8]) -> Option<u64> {
    let b: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// The encoded length of the record at the front of `bytes`, unchecked.
pub fn peek_len(bytes: &[u8]) -> Option<usize> {
    let b: [u8; 4] = bytes.get(0..4)?.try_into().ok()?;
    Some(len_encoded(u32::from_le_bytes(b) as usize))
}

/// Decodes the record at `offset` of `bytes`, whatever its sequence number.
pub fn decode(bytes: &[u8], offset: usize) -> Result<Record<'_>, Damage> {
    let rest = bytes.get(offset..).unwrap_or(&[]);
    if rest.len() < RECORD_HEADER_LEN {
        return Err(Damage::Truncated {
            needed: RECORD_HEADER_LEN,
            available: rest.len(),
        });
    }
    let payload_len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
    if payload_len as usize > RECORD_PAYLOAD_LEN_MAX {
        return Err(Damage::LengthOutOfRange { payload_len });
    }
    let needed = len_encoded(payload_len as usize);
    if rest.len() < needed {
        return Err(Damage::Truncated {
            needed,
            available: rest.len(),
        });
    }
    if seq == 0 {
        return Err(Damage::SequenceZero);
    }
    let payload = &rest[RECORD_HEADER_LEN..needed];
    let computed = checksum(payload_len, seq, payload);
    if computed != stored {
        return Err(Damage::ChecksumMismatch { stored, computed });
    }
    Ok(Record {
        seq,
        offset,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        let mut buf = [0u8; 64];
        let n = encode(7, b"hello", &mut buf).unwrap();
        assert_eq!(n, RECORD_HEADER_LEN + 5);
        let r = decode(&buf[..n], 0).unwrap();
        assert_eq!((r.seq, r.payload, r.offset), (7, &b"hello"[..], 0));
        assert_eq!(peek_seq(&buf), Some(7));
        assert_eq!(peek_len(&buf), Some(n));
    }

    #[test]
    fn an_all_zero_header_is_never_a_record() {
        let zeros = [0u8; 64];
        assert_eq!(decode(&zeros, 0), Err(Damage::SequenceZero));
    }

    #[test]
    fn encoding_refuses_bad_input_without_touching_the_buffer() {
        let mut buf = [9u8; 8];
        assert_eq!(
            encode(1, b"x", &mut buf),
            Err(EncodeError::BufferTooSmall {
                needed: 17,
                available: 8
            })
        );
        assert_eq!(buf, [9u8; 8]);
        assert_eq!(
            encode(0, b"x", &mut [0u8; 32]),
            Err(EncodeError::SequenceZero)
        );
        let big = vec![0u8; RECORD_PAYLOAD_LEN_MAX + 1];
        let mut v = Vec::new();
        assert!(matches!(
            encode_append(1, &big, &mut v),
            Err(EncodeError::PayloadTooLong { .. })
        ));
        assert!(v.is_empty());
    }

    #[test]
    fn the_checksum_is_the_same_on_both_sides_of_the_inline_bound() {
        // The journal's format must not depend on which path computed it.
        for len in [0, 1, 7, 8, 115, 116, 117, 200, 4096] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut whole = Vec::new();
            whole.extend_from_slice(&(len as u32).to_le_bytes());
            whole.extend_from_slice(&42u64.to_le_bytes());
            whole.extend_from_slice(&payload);
            assert_eq!(
                checksum(len as u32, 42, &payload),
                crc32c::crc32c(&whole),
                "payload of {len} bytes"
            );
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_record_is_caught() {
        let mut buf = [0u8; 40];
        let n = encode(3, b"0123456789abcdef", &mut buf).unwrap();
        for bit in 0..n * 8 {
            let mut b = buf;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&b[..n], 0).is_err(), "bit {bit} went unnoticed");
        }
    }
}
