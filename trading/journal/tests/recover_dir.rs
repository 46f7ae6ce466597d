//! Recovery of a whole directory, on an in-memory map of files: snapshots,
//! several segments, torn tails, damaged headers, gaps and other settings.

use std::collections::BTreeMap;

use fep_journal::record::encode_append;
use fep_journal::segment::{encode_header, header_len, segment_file_name, snapshot_file_name};
use fep_journal::{recover, snapshot, AppendAt, HeaderError, Listing, Recovered, RecoveryError};

const SETTINGS: &[u8] = b"instruments=16 accounts=1024";

type Dir = BTreeMap<String, Vec<u8>>;

/// A segment of records `first..=last` with `zeros` bytes of preallocation.
fn segment(dir: &mut Dir, first: u64, last: u64, zeros: usize) {
    let mut bytes = Vec::new();
    encode_header(first, SETTINGS, &mut bytes);
    for seq in first..=last {
        encode_append(seq, format!("cmd-{seq}").as_bytes(), &mut bytes).unwrap();
    }
    bytes.resize(bytes.len() + zeros, 0);
    dir.insert(segment_file_name(first), bytes);
}

fn run(
    dir: &Dir,
) -> (
    Result<Recovered, RecoveryError<String>>,
    Option<u64>,
    Vec<u64>,
) {
    let listing = Listing::from_names(dir.keys().map(String::as_str));
    let mut buf = Vec::new();
    let mut snap = None;
    let mut seqs = Vec::new();
    let result = recover(
        &listing,
        SETTINGS,
        &mut buf,
        |name, buf| {
            let bytes = dir.get(name).ok_or_else(|| format!("{name} missing"))?;
            buf.clear();
            buf.extend_from_slice(bytes);
            Ok(())
        },
        |seq, state| {
            assert_eq!(state, format!("state@{seq}").as_bytes());
            snap = Some(seq);
        },
        |r| {
            assert_eq!(r.payload, format!("cmd-{}", r.seq).as_bytes());
            seqs.push(r.seq);
        },
    );
    (result, snap, seqs)
}

#[test]
fn an_empty_directory_starts_a_journal_at_record_one() {
    let (r, snap, seqs) = run(&Dir::new());
    let r = r.unwrap();
    assert_eq!(r.append, AppendAt::NewSegment { seq_next: 1 });
    assert_eq!((snap, seqs.len(), r.seq_last), (None, 0, 0));
}

#[test]
fn segments_replay_in_order_and_the_last_one_is_appended_to() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 10, 0);
    segment(&mut dir, 11, 25, 0);
    segment(&mut dir, 26, 30, 4096);
    let (r, _, seqs) = run(&dir);
    let r = r.unwrap();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    assert_eq!(r.seq_last, 30);
    let end = dir[&segment_file_name(26)].len() as u64 - 4096;
    assert_eq!(
        r.append,
        AppendAt::Existing {
            segment_first_seq: 26,
            offset: end,
            dirty_end: end,
            seq_next: 31
        }
    );
}

#[test]
fn a_snapshot_skips_the_segments_and_records_it_covers() {
    let mut dir = Dir::new();
    segment(&mut dir, 11, 20, 0);
    segment(&mut dir, 21, 30, 100);
    let mut snap = Vec::new();
    snapshot::encode(15, SETTINGS, b"state@15", &mut snap);
    dir.insert(snapshot_file_name(15), snap);
    let (r, snap, seqs) = run(&dir);
    let r = r.unwrap();
    assert_eq!(snap, Some(15));
    assert_eq!(seqs, (16..=30).collect::<Vec<_>>());
    assert_eq!(r.records_replayed, 15);
}

#[test]
fn a_torn_tail_in_the_last_segment_is_discarded_and_reported() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 5, 0);
    let f = segment_file_name(1);
    let full = dir[&f].len();
    let b = dir.get_mut(&f).unwrap();
    b.truncate(full - 3);
    b.resize(full + 500, 0);
    let (r, _, seqs) = run(&dir);
    let r = r.unwrap();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    let torn = r.torn.unwrap();
    assert_eq!(torn.file, f);
    match r.append {
        AppendAt::Existing {
            offset,
            dirty_end,
            seq_next,
            ..
        } => {
            assert_eq!((offset, seq_next), (torn.offset, 5));
            assert!(dirty_end > offset && dirty_end <= full as u64 - 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_torn_tail_in_a_segment_that_is_not_the_last_is_refused() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 5, 0);
    segment(&mut dir, 6, 8, 0);
    let b = dir.get_mut(&segment_file_name(1)).unwrap();
    let len = b.len();
    b[len - 2] ^= 0xFF;
    let (r, _, _) = run(&dir);
    let err = r.unwrap_err();
    assert!(matches!(err, RecoveryError::TornBeforeEnd { .. }), "{err}");
    assert!(err.to_string().contains(&segment_file_name(1)));
}

#[test]
fn corruption_in_the_middle_names_the_file_and_the_offset() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 5, 64);
    let at = header_len(SETTINGS) + 30;
    dir.get_mut(&segment_file_name(1)).unwrap()[at] ^= 0x04;
    let (r, _, seqs) = run(&dir);
    let err = r.unwrap_err();
    let RecoveryError::Corrupt { file, offset, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(file, &segment_file_name(1));
    assert!(*offset <= at as u64);
    assert!(seqs.len() < 5);
    let line = err.to_string();
    assert!(
        line.contains(&format!("offset {offset}")) && !line.contains('\n'),
        "{line}"
    );
}

#[test]
fn a_journal_written_with_other_settings_is_refused_in_one_line() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 3, 0);
    let listing = Listing::from_names(dir.keys().map(String::as_str));
    let err = recover(
        &listing,
        b"instruments=8",
        &mut Vec::new(),
        |name, buf: &mut Vec<u8>| -> Result<(), String> {
            *buf = dir[name].clone();
            Ok(())
        },
        |_, _| {},
        |_| panic!("no record may be replayed under other settings"),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        RecoveryError::Header {
            error: HeaderError::SettingsMismatch { .. },
            ..
        }
    ));
    assert!(err.to_string().contains("other settings"));
}

#[test]
fn a_last_segment_whose_header_never_reached_the_disk_is_recreated() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 4, 0);
    dir.insert(segment_file_name(5), vec![0u8; 8192]);
    let (r, _, seqs) = run(&dir);
    let r = r.unwrap();
    assert_eq!(seqs.len(), 4);
    assert_eq!(r.append, AppendAt::NewSegment { seq_next: 5 });
    assert_eq!(r.segment_discarded, Some(segment_file_name(5)));
}

#[test]
fn a_missing_segment_is_a_gap_not_a_silent_skip() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 4, 0);
    segment(&mut dir, 9, 10, 0);
    let (r, _, _) = run(&dir);
    assert!(matches!(
        r.unwrap_err(),
        RecoveryError::Gap {
            expected: 5,
            found: 9,
            ..
        }
    ));
}

#[test]
fn a_damaged_snapshot_is_refused_not_skipped() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 4, 0);
    let mut snap = Vec::new();
    snapshot::encode(2, SETTINGS, b"state@2", &mut snap);
    snap[40] ^= 1;
    dir.insert(snapshot_file_name(2), snap);
    let (r, _, _) = run(&dir);
    assert!(matches!(r.unwrap_err(), RecoveryError::Snapshot { .. }));
}

#[test]
fn a_corrupt_read_of_the_last_record_is_read_again_not_truncated() {
    let mut dir = Dir::new();
    segment(&mut dir, 1, 6, 256);
    let f = segment_file_name(1);
    let len = dir[&f].len();
    let listing = Listing::from_names(dir.keys().map(String::as_str));
    for flip_at in [len - 256 - 3, header_len(SETTINGS) + 20, 10] {
        let mut reads = 0;
        let mut seqs = Vec::new();
        let r = recover(
            &listing,
            SETTINGS,
            &mut Vec::new(),
            |name, buf: &mut Vec<u8>| -> Result<(), String> {
                *buf = dir[name].clone();
                reads += 1;
                if reads == 1 {
                    // The bus flipped a bit of this read; the disk is fine.
                    buf[flip_at] ^= 0x40;
                }
                Ok(())
            },
            |_, _| {},
            |r| seqs.push(r.seq),
        )
        .unwrap();
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "flip at {flip_at}");
        assert_eq!(r.torn, None);
        assert_eq!(reads, 2, "one more read, no more");
        assert_eq!(r.rereads, 1);
    }
}
