//! What a journal directory holds, and which of its files may go.
//!
//! The rule: a segment may be deleted only once a **durable** snapshot
//! covers every record in it, that is when the next segment starts at or
//! before the snapshot's sequence number + 1. The last segment is never
//! deleted (the writer appends to it), and neither is the newest durable
//! snapshot; older snapshots go with the segments they made redundant.

use crate::segment::{parse_file_name, segment_file_name, snapshot_file_name, FileKind};

/// The journal's files in a directory, sorted by sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// First sequence numbers of the segments, ascending.
    pub segments: Vec<u64>,
    /// Sequence numbers covered by the snapshots, ascending.
    pub snapshots: Vec<u64>,
    /// Names of temporary files (an interrupted snapshot's).
    pub temporaries: Vec<String>,
}

impl Listing {
    /// Sorts a directory's file names; names the journal does not own are
    /// ignored.
    pub fn from_names<'n>(names: impl IntoIterator<Item = &'n str>) -> Self {
        let mut listing = Self::default();
        for name in names {
            match parse_file_name(name) {
                Some(FileKind::Segment(seq)) => listing.segments.push(seq),
                Some(FileKind::Snapshot(seq)) => listing.snapshots.push(seq),
                Some(FileKind::Temporary) => listing.temporaries.push(name.to_string()),
                None => {}
            }
        }
        listing.segments.sort_unstable();
        listing.snapshots.sort_unstable();
        listing.temporaries.sort_unstable();
        listing
    }

    /// The newest snapshot, if any.
    pub fn snapshot_newest(&self) -> Option<u64> {
        self.snapshots.last().copied()
    }
}

/// The files that may be deleted once the snapshot covering records up to
/// `snapshot_durable_seq` is durable. Temporaries are not included: only
/// the opener, before any snapshot is being written, removes those.
pub fn deletable(listing: &Listing, snapshot_durable_seq: u64) -> Vec<String> {
    let mut names = Vec::new();
    for pair in listing.segments.windows(2) {
        let next_first = pair[1];
        if next_first <= snapshot_durable_seq + 1 {
            names.push(segment_file_name(pair[0]));
        }
    }
    for &seq in &listing.snapshots {
        if seq < snapshot_durable_seq {
            names.push(snapshot_file_name(seq));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(segments: &[u64], snapshots: &[u64]) -> Listing {
        let mut names: Vec<String> = segments.iter().map(|&s| segment_file_name(s)).collect();
        names.extend(snapshots.iter().map(|&s| snapshot_file_name(s)));
        names.push("README".into());
        names.push("00000000000000000005.snapshot.tmp".into());
        Listing::from_names(names.iter().map(String::as_str))
    }

    #[test]
    fn a_listing_sorts_segments_and_snapshots_and_ignores_strangers() {
        let l = listing(&[201, 1, 101], &[150, 90]);
        assert_eq!(l.segments, vec![1, 101, 201]);
        assert_eq!(l.snapshots, vec![90, 150]);
        assert_eq!(l.temporaries, vec!["00000000000000000005.snapshot.tmp"]);
        assert_eq!(l.snapshot_newest(), Some(150));
    }

    #[test]
    fn only_segments_wholly_covered_by_the_durable_snapshot_may_go() {
        let l = listing(&[1, 101, 201], &[90, 150]);
        // Records 1..=100 are in the first segment; a snapshot at 150 covers it,
        // not the second (101..=200).
        assert_eq!(
            deletable(&l, 150),
            vec![segment_file_name(1), snapshot_file_name(90)]
        );
        // Exactly at the boundary: the snapshot covers 1..=100.
        assert_eq!(
            deletable(&l, 100),
            vec![segment_file_name(1), snapshot_file_name(90)]
        );
        assert_eq!(deletable(&l, 99), vec![snapshot_file_name(90)]);
        assert!(deletable(&l, 0).is_empty());
    }

    #[test]
    fn the_last_segment_is_never_deletable() {
        let l = listing(&[1, 101], &[]);
        assert_eq!(deletable(&l, u64::MAX - 1), vec![segment_file_name(1)]);
        let one = listing(&[1], &[]);
        assert!(deletable(&one, 1_000_000).is_empty());
    }
}
