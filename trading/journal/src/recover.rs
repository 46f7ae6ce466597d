//! Recovery of a whole journal directory, sans-IO: the driver lists the
//! directory and loads files on request; this decides what they mean.
//!
//! Order: the newest snapshot (its state handed to the caller), then every
//! segment from the one holding the first record after the snapshot,
//! records handed over in sequence. It ends with where to append next, or
//! with a typed error naming the file and the offset when acknowledged
//! history is damaged. A torn tail is only allowed at the end of the last
//! segment; a last segment whose header never reached the disk (a crash
//! while it was being created) is recreated. Damage is believed only when
//! two reads in a row show it ([`RECOVERY_READS_MAX`]): a corrupt read of
//! the last record must not cost an acknowledged record.

use crate::limits::RECOVERY_READS_MAX;
use crate::plan::Listing;
use crate::record::{Damage, Record};
use crate::scan::{find_valid, last_nonzero, Scan, ScanEnd};
use crate::segment::{decode_header, segment_file_name, snapshot_file_name, HeaderError};
use crate::snapshot::{self, SnapshotError};

/// Where the writer appends after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAt {
    /// Create `segment_file_name(seq_next)` (truncating any file of that
    /// name) with a fresh header, and append there.
    NewSegment {
        /// The next record's sequence number.
        seq_next: u64,
    },
    /// Append to the last segment.
    Existing {
        /// Its first sequence number (its name).
        segment_first_seq: u64,
        /// Where the next record goes.
        offset: u64,
        /// Bytes `offset..dirty_end` hold a torn record: zero them (and
        /// sync) before appending, so no stale byte outlives the tail.
        dirty_end: u64,
        /// The next record's sequence number.
        seq_next: u64,
    },
}

impl AppendAt {
    /// The next record's sequence number.
    pub fn seq_next(&self) -> u64 {
        match *self {
            Self::NewSegment { seq_next } | Self::Existing { seq_next, .. } => seq_next,
        }
    }
}

/// A torn tail that recovery discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment's file name.
    pub file: String,
    /// Where the torn record started.
    pub offset: u64,
    /// What was wrong with it.
    pub damage: Damage,
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The snapshot the state started from, if any.
    pub snapshot_seq: Option<u64>,
    /// Records handed to the caller (those after the snapshot).
    pub records_replayed: u64,
    /// The last durable record's sequence number (0: none).
    pub seq_last: u64,
    /// Where to append.
    pub append: AppendAt,
    /// The torn tail discarded, if there was one.
    pub torn: Option<TornTail>,
    /// A last segment whose header never reached the disk, to recreate.
    pub segment_discarded: Option<String>,
    /// Files read again because a read showed damage (a read error the
    /// disk did not have, or damage confirmed by the next read).
    pub rereads: u32,
}

/// Why a journal cannot be recovered. Each names the file; the caller
/// prints it as one line and refuses to start.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecoveryError<E> {
    /// The driver could not read a file.
    Load {
        /// The file.
        file: String,
        /// The driver's error.
        source: E,
    },
    /// A segment header is damaged or written with other settings.
    Header {
        /// The file.
        file: String,
        /// What is wrong.
        error: HeaderError,
    },
    /// The newest snapshot is damaged or written with other settings.
    Snapshot {
        /// The file.
        file: String,
        /// What is wrong.
        error: SnapshotError,
    },
    /// A damaged record with a valid one after it: acknowledged history.
    Corrupt {
        /// The file.
        file: String,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
        /// Where the next valid record starts.
        valid_at: u64,
    },
    /// A damaged record at the end of a segment that is not the last: it
    /// was synced before the next segment was created.
    TornBeforeEnd {
        /// The file.
        file: String,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
    },
    /// A segment does not start where the previous one ended (a missing or
    /// misnamed file).
    Gap {
        /// The file.
        file: String,
        /// The sequence number it should start at.
        expected: u64,
        /// The one it starts at.
        found: u64,
    },
    /// The snapshot covers records the journal does not hold.
    SnapshotAhead {
        /// The snapshot's file.
        file: String,
        /// The last record in the journal.
        seq_last: u64,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for RecoveryError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Load { file, source } => write!(f, "journal file {file}: {source}"),
            Self::Header { file, error } => write!(f, "journal file {file}: {error}"),
            Self::Snapshot { file, error } => write!(f, "snapshot {file}: {error}"),
            Self::Corrupt {
                file,
                offset,
                damage,
                valid_at,
            } => write!(
                f,
                "journal file {file} is corrupt at offset {offset} ({damage}) with a valid \
                 record after it at offset {valid_at}: acknowledged history is damaged, \
                 refusing to truncate it"
            ),
            Self::TornBeforeEnd {
                file,
                offset,
                damage,
            } => write!(
                f,
                "journal file {file} is damaged at offset {offset} ({damage}) and a later \
                 segment exists: acknowledged history is damaged, refusing to truncate it"
            ),
            Self::Gap {
                file,
                expected,
                found,
            } => write!(
                f,
                "journal file {file} starts at record {found} where {expected} was expected \
                 (a segment is missing)"
            ),
            Self::SnapshotAhead { file, seq_last } => write!(
                f,
                "snapshot {file} covers records past the journal's last ({seq_last})"
            ),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for RecoveryError<E> {}

/// Recovers a journal. `load(name, buf)` replaces `buf`'s contents with
/// the file's; `on_snapshot(seq, state)` gets the newest snapshot's state;
/// `on_record` gets each record after it, in order.
pub fn recover<E>(
    listing: &Listing,
    settings: &[u8],
    buf: &mut Vec<u8>,
    mut load: impl FnMut(&str, &mut Vec<u8>) -> Result<(), E>,
    on_snapshot: impl FnOnce(u64, &[u8]),
    mut on_record: impl FnMut(Record<'_>),
) -> Result<Recovered, RecoveryError<E>> {
    let mut snapshot_seq = None;
    let mut spare = Vec::new();
    let mut rereads = 0u32;
    if let Some(seq) = listing.snapshot_newest() {
        let file = snapshot_file_name(seq);
        load(&file, buf).map_err(|source| RecoveryError::Load {
            file: file.clone(),
            source,
        })?;
        let snap = snapshot::decode(buf, settings).map_err(|error| RecoveryError::Snapshot {
            file: file.clone(),
            error,
        })?;
        if snap.seq != seq {
            return Err(RecoveryError::Gap {
                file,
                expected: seq,
                found: snap.seq,
            });
        }
        on_snapshot(seq, snap.state);
        snapshot_seq = Some(seq);
    }
    let covered = snapshot_seq.unwrap_or(0);
    let segments = &listing.segments;
    let Some(start) = segments.iter().rposition(|&s| s <= covered + 1) else {
        if let Some(&first) = segments.first() {
            return Err(RecoveryError::Gap {
                file: segment_file_name(first),
                expected: covered + 1,
                found: first,
            });
        }
        return Ok(Recovered {
            snapshot_seq,
            records_replayed: 0,
            seq_last: covered,
            append: AppendAt::NewSegment {
                seq_next: covered + 1,
            },
            torn: None,
            segment_discarded: None,
            rereads,
        });
    };

    let mut seq_next = segments[start];
    let mut replayed = 0u64;
    let mut torn = None;
    let mut segment_discarded = None;
    let mut append = AppendAt::NewSegment { seq_next };
    for (i, &name_seq) in segments.iter().enumerate().skip(start) {
        let file = segment_file_name(name_seq);
        let is_last = i + 1 == segments.len();
        load(&file, buf).map_err(|source| RecoveryError::Load {
            file: file.clone(),
            source,
        })?;
        if decode_header(buf, settings).is_err() {
            rereads += reread(&file, buf, &mut spare, &mut load, |b| {
                decode_header(b, settings).is_ok()
            })?;
        }
        let header = match decode_header(buf, settings) {
            Ok(h) => h,
            Err(error) => {
                if is_last && header_is_torn(buf, error) {
                    if name_seq != seq_next {
                        return Err(RecoveryError::Gap {
                            file,
                            expected: seq_next,
                            found: name_seq,
                        });
                    }
                    segment_discarded = Some(file);
                    append = AppendAt::NewSegment { seq_next };
                    break;
                }
                return Err(RecoveryError::Header { file, error });
            }
        };
        if header.first_seq != name_seq || header.first_seq != seq_next {
            return Err(RecoveryError::Gap {
                file,
                expected: seq_next,
                found: header.first_seq,
            });
        }
        let header_len = header.len;
        let mut offset = header_len;
        let mut reads = 1;
        let end = loop {
            let mut scan = Scan::new(buf, offset, seq_next);
            for record in scan.by_ref() {
                if record.seq > covered {
                    on_record(record);
                    replayed += 1;
                }
            }
            seq_next = scan.seq_next();
            let end = scan.end().expect("the scan ran to its end");
            let (ScanEnd::TornTail { offset: at, .. } | ScanEnd::Corrupt { offset: at, .. }) = end
            else {
                break end;
            };
            // Damage: believe it only if a second read shows the same bytes.
            // The records before it were handed over already and stay; the
            // scan goes on from the damage in the new bytes.
            if reads == RECOVERY_READS_MAX {
                break end;
            }
            load(&file, &mut spare).map_err(|source| RecoveryError::Load {
                file: file.clone(),
                source,
            })?;
            reads += 1;
            rereads += 1;
            if spare == *buf {
                break end;
            }
            std::mem::swap(buf, &mut spare);
            offset = at;
        };
        let (offset, dirty_end) = match end {
            ScanEnd::Clean { offset } => (offset, offset),
            ScanEnd::TornTail {
                offset,
                damage,
                dirty_end,
            } => {
                if !is_last {
                    return Err(RecoveryError::TornBeforeEnd {
                        file,
                        offset: offset as u64,
                        damage,
                    });
                }
                torn = Some(TornTail {
                    file: file.clone(),
                    offset: offset as u64,
                    damage,
                });
                (offset, dirty_end)
            }
            ScanEnd::Corrupt {
                offset,
                damage,
                valid_at,
            } => {
                return Err(RecoveryError::Corrupt {
                    file,
                    offset: offset as u64,
                    damage,
                    valid_at: valid_at as u64,
                })
            }
        };
        append = AppendAt::Existing {
            segment_first_seq: name_seq,
            offset: offset as u64,
            dirty_end: dirty_end as u64,
            seq_next,
        };
    }
    let seq_last = seq_next - 1;
    if seq_last < covered {
        return Err(RecoveryError::SnapshotAhead {
            file: snapshot_file_name(covered),
            seq_last,
        });
    }
    Ok(Recovered {
        snapshot_seq,
        records_replayed: replayed,
        seq_last,
        append,
        torn,
        segment_discarded,
        rereads,
    })
}

/// Reads `file` again (into `spare`, swapped into `buf`) until `good`
/// accepts it, two reads in a row agree, or [`RECOVERY_READS_MAX`] reads
/// were made; `buf` then holds the last read. Returns the reads made.
fn reread<E>(
    file: &str,
    buf: &mut Vec<u8>,
    spare: &mut Vec<u8>,
    load: &mut impl FnMut(&str, &mut Vec<u8>) -> Result<(), E>,
    good: impl Fn(&[u8]) -> bool,
) -> Result<u32, RecoveryError<E>> {
    let mut reads = 0;
    for _ in 1..RECOVERY_READS_MAX {
        reads += 1;
        load(file, spare).map_err(|source| RecoveryError::Load {
            file: file.to_string(),
            source,
        })?;
        let same = spare == buf;
        std::mem::swap(buf, spare);
        if same || good(buf) {
            break;
        }
    }
    Ok(reads)
}

/// A header that a crash while the segment was created explains: damaged
/// or missing, and no valid record anywhere after it.
fn header_is_torn(bytes: &[u8], error: HeaderError) -> bool {
    let torn_kind = matches!(
        error,
        HeaderError::Zeroed
            | HeaderError::Truncated { .. }
            | HeaderError::ChecksumMismatch
            | HeaderError::BadMagic
    );
    let dirty_end = last_nonzero(bytes).map_or(0, |p| p + 1);
    torn_kind && find_valid(bytes, 0, dirty_end).is_none()
}
