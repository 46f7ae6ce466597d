//! Snapshot files: the engine's state after a given record, as opaque
//! bytes, with the settings it was made under and a CRC32C of everything.
//!
//! Layout (little-endian): `magic:[u8;8], version:u16, reserved:u16,
//! seq:u64, settings_len:u32, state_len:u64, settings, state, crc:u32`.
//! A driver writes it under a temporary name, syncs it, renames it and
//! syncs the directory: only then is it durable, and only then may the
//! segments it covers go ([`crate::plan`]).

use crate::limits::{SETTINGS_LEN_MAX, SNAPSHOT_HEADER_FIXED_LEN, SNAPSHOT_STATE_LEN_MAX};
use crate::segment::{check_settings, HeaderError, FORMAT_VERSION};

/// The first eight bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"FEPSNAP\x01";

/// A decoded snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot<'a> {
    /// The state is the one after the record with this sequence number.
    pub seq: u64,
    /// The engine's state, opaque here.
    pub state: &'a [u8],
}

/// Why a snapshot is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The header is not a snapshot header of this format, or is damaged.
    Header(HeaderError),
    /// A state above [`SNAPSHOT_STATE_LEN_MAX`].
    StateTooLong {
        /// Its stored length.
        len: u64,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// The checksum over the file does not match.
    ChecksumMismatch,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(h) => h.fmt(f),
            Self::StateTooLong { len } => write!(f, "snapshot state of {len} bytes"),
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "snapshot truncated ({needed} bytes needed, {available} there)"
                )
            }
            Self::ChecksumMismatch => write!(f, "snapshot checksum mismatch"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Appends a snapshot of `state` after record `seq` to `out`.
///
/// # Panics
/// If `settings` or `state` is above its bound (a broken invariant of the
/// caller's, which sizes both at start-up).
pub fn encode(seq: u64, settings: &[u8], state: &[u8], out: &mut Vec<u8>) {
    assert!(settings.len() <= SETTINGS_LEN_MAX);
    assert!(state.len() as u64 <= SNAPSHOT_STATE_LEN_MAX);
    let start = out.len();
    out.reserve(SNAPSHOT_HEADER_FIXED_LEN + settings.len() + state.len() + 4);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(settings.len() as u32).to_le_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    out.extend_from_slice(settings);
    out.extend_from_slice(state);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Decodes a snapshot file and checks its settings against the caller's.
pub fn decode<'a>(
    bytes: &'a [u8],
    settings_expected: &[u8],
) -> Result<Snapshot<'a>, SnapshotError> {
    let truncated = |needed: usize| SnapshotError::Truncated {
        needed: needed as u64,
        available: bytes.len() as u64,
    };
    let fixed = bytes
        .get(..SNAPSHOT_HEADER_FIXED_LEN)
        .ok_or_else(|| truncated(SNAPSHOT_HEADER_FIXED_LEN))?;
    if fixed[..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::Header(HeaderError::BadMagic));
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Header(HeaderError::UnsupportedVersion {
            found: version,
        }));
    }
    let seq = u64::from_le_bytes(fixed[12..20].try_into().expect("8 bytes"));
    let settings_len = u32::from_le_bytes(fixed[20..24].try_into().expect("4 bytes"));
    let state_len = u64::from_le_bytes(fixed[24..32].try_into().expect("8 bytes"));
    if settings_len as usize > SETTINGS_LEN_MAX {
        return Err(SnapshotError::Header(HeaderError::SettingsTooLong {
            len: settings_len,
        }));
    }
    if state_len > SNAPSHOT_STATE_LEN_MAX {
        return Err(SnapshotError::StateTooLong { len: state_len });
    }
    let settings_end = SNAPSHOT_HEADER_FIXED_LEN + settings_len as usize;
    let state_end = settings_end + state_len as usize;
    let len = state_end + 4;
    if bytes.len() < len {
        return Err(truncated(len));
    }
    let stored = u32::from_le_bytes(bytes[state_end..len].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..state_end]) != stored {
        return Err(SnapshotError::ChecksumMismatch);
    }
    check_settings(
        &bytes[SNAPSHOT_HEADER_FIXED_LEN..settings_end],
        settings_expected,
    )
    .map_err(SnapshotError::Header)?;
    Ok(Snapshot {
        seq,
        state: &bytes[settings_end..state_end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_any_flipped_byte_is_caught() {
        let mut out = Vec::new();
        encode(99, b"cfg", b"engine state", &mut out);
        let s = decode(&out, b"cfg").unwrap();
        assert_eq!((s.seq, s.state), (99, &b"engine state"[..]));
        for i in 0..out.len() {
            let mut b = out.clone();
            b[i] ^= 0x01;
            assert!(decode(&b, b"cfg").is_err(), "byte {i}");
        }
        assert!(decode(&out[..out.len() - 1], b"cfg").is_err());
    }

    #[test]
    fn a_snapshot_made_under_other_settings_is_refused() {
        let mut out = Vec::new();
        encode(1, b"accounts=1024", b"x", &mut out);
        assert!(matches!(
            decode(&out, b"accounts=2048"),
            Err(SnapshotError::Header(HeaderError::SettingsMismatch { .. }))
        ));
    }
}
