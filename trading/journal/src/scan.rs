//! The recovery scan over the records of one segment's bytes.
//!
//! It yields records in order and stops at the first position that does not
//! hold the next record. What it found there decides what recovery may do:
//!
//! - nothing but zeros (or nothing) from there on: the clean end of the log
//!   (segments are preallocated zero-filled);
//! - a damaged record and nothing valid after it: a **torn tail**, the
//!   write that was in flight when the machine stopped. It was never made
//!   durable, so nothing after it was acknowledged: the caller discards it;
//! - a damaged record followed anywhere by a record with a good checksum,
//!   or a good record with the wrong sequence number: **corruption** of
//!   history that was already on stable storage (and may have been
//!   acknowledged). The caller must stop, naming the offset, and never
//!   truncate.
//!
//! Why "followed by a valid record" is the line: the writer issues one
//! write per batch and syncs it before the next batch, so what a crash can
//! leave is a prefix of the last batch followed by the zeros (or the torn
//! prefix of one record) that were there before. A record with a good
//! checksum *after* a damaged one can only be there if the damaged one was
//! written, and synced, earlier. A damaged last record is indistinguishable
//! from a torn one, and is treated as torn: this is the one place a single
//! flipped bit on the disk costs a record (which the writer only ever
//! acknowledged if its sync returned; TigerBeetle closes that gap with
//! replicas, which one exchange process does not have).
//!
//! A known limit of the rule: on power loss (not on a process crash, which
//! leaves the page cache to the kernel), a real disk may persist the pages
//! of one unsynced write out of order, leaving a hole inside the last batch
//! with a whole record of the same batch after it. The scan then reports
//! corruption and the start is refused: a false alarm, loud, never a
//! silent loss. Telling that case apart needs more evidence than the
//! records carry (a per-batch marker, or TigerBeetle's redundant headers).

use crate::record::{decode, Damage, Record};

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Only zeros (or nothing) from `offset` on.
    Clean {
        /// Where the next record goes.
        offset: usize,
    },
    /// A damaged record at `offset` and nothing valid after it.
    TornTail {
        /// Where the damaged record starts: the next record goes here.
        offset: usize,
        /// What is wrong with it.
        damage: Damage,
        /// One past the last non-zero byte: the writer zeroes
        /// `offset..dirty_end` before it appends over the torn bytes.
        dirty_end: usize,
    },
    /// A damaged record at `offset` with a valid record after it.
    Corrupt {
        /// Where the damaged record starts.
        offset: usize,
        /// What is wrong with it.
        damage: Damage,
        /// Where the first valid record after it starts.
        valid_at: usize,
    },
}

/// Iterates the records of `bytes` from `offset_start`, expecting sequence
/// numbers `seq_first`, `seq_first + 1`, …; then [`Scan::end`] says how it
/// ended. Never allocates.
#[derive(Debug, Clone)]
pub struct Scan<'a> {
    bytes: &'a [u8],
    offset: usize,
    seq_next: u64,
    end: Option<ScanEnd>,
}

impl<'a> Scan<'a> {
    /// A scan of `bytes[offset_start..]`, whose first record must carry
    /// `seq_first`.
    pub fn new(bytes: &'a [u8], offset_start: usize, seq_first: u64) -> Self {
        Self {
            bytes,
            offset: offset_start,
            seq_next: seq_first,
            end: None,
        }
    }

    /// The sequence number the next record must carry.
    pub fn seq_next(&self) -> u64 {
        self.seq_next
    }

    /// How the scan ended; `None` while records remain. Call it after the
    /// iterator returned `None`.
    pub fn end(&self) -> Option<ScanEnd> {
        self.end
    }

    /// Runs the scan to its end, dropping the records, and says how it ended.
    pub fn finish(mut self) -> ScanEnd {
        for _ in self.by_ref() {}
        self.end.expect("a finished scan has an end")
    }

    fn classify(&self, damage: Damage) -> ScanEnd {
        let offset = self.offset;
        if let Damage::SequenceOutOfOrder { .. } = damage {
            return ScanEnd::Corrupt {
                offset,
                damage,
                valid_at: offset,
            };
        }
        let rest = &self.bytes[offset..];
        let Some(last_nonzero) = last_nonzero(rest) else {
            return ScanEnd::Clean { offset };
        };
        let dirty_end = offset + last_nonzero + 1;
        match find_valid(self.bytes, offset + 1, dirty_end) {
            Some(valid_at) => ScanEnd::Corrupt {
                offset,
                damage,
                valid_at,
            },
            None => ScanEnd::TornTail {
                offset,
                damage,
                dirty_end,
            },
        }
    }
}

/// Bytes [`last_nonzero`] tests at once: a block the compiler turns into
/// a few vector ORs.
const ZERO_BLOCK_LEN: usize = 64;

/// The position of the last non-zero byte of `bytes`. A clean end leaves
/// the rest of a preallocated segment to look through (tens of MB): a
/// byte-at-a-time search cost more than checking every record before it,
/// so whole blocks are tested first and only the last non-zero one is
/// searched byte by byte.
pub fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let blocks = bytes.rchunks_exact(ZERO_BLOCK_LEN);
    let head = blocks.remainder();
    for (i, block) in blocks.enumerate() {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            let start = bytes.len() - (i + 1) * ZERO_BLOCK_LEN;
            let at = block
                .iter()
                .rposition(|&b| b != 0)
                .expect("a non-zero byte");
            return Some(start + at);
        }
    }
    head.iter().rposition(|&b| b != 0)
}

/// The first offset in `from..until` where a record with a good checksum
/// starts (whatever its sequence number).
pub fn find_valid(bytes: &[u8], from: usize, until: usize) -> Option<usize> {
    (from..until).find(|&at| decode(bytes, at).is_ok())
}

impl<'a> Iterator for Scan<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.end.is_some() {
            return None;
        }
        let found = decode(self.bytes, self.offset).and_then(|r| {
            if r.seq == self.seq_next {
                Ok(r)
            } else {
                Err(Damage::SequenceOutOfOrder {
                    expected: self.seq_next,
                    found: r.seq,
                })
            }
        });
        match found {
            Ok(r) => {
                self.offset += r.len_encoded();
                self.seq_next += 1;
                Some(r)
            }
            Err(damage) => {
                self.end = Some(self.classify(damage));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_append;

    fn log(n: u64, zeros: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for seq in 1..=n {
            starts.push(out.len());
            let payload = vec![seq as u8 | 0x80; 20 + (seq as usize % 7)];
            encode_append(seq, &payload, &mut out).unwrap();
        }
        out.resize(out.len() + zeros, 0);
        (out, starts)
    }

    fn scan_all(bytes: &[u8]) -> (Vec<u64>, ScanEnd) {
        let mut scan = Scan::new(bytes, 0, 1);
        let seqs = scan.by_ref().map(|r| r.seq).collect();
        (seqs, scan.end().unwrap())
    }

    #[test]
    fn a_clean_log_with_a_zeroed_tail_yields_every_record_then_a_clean_end() {
        for zeros in [0, 1, 15, 16, 17, 4096] {
            let (bytes, starts) = log(10, zeros);
            let (seqs, end) = scan_all(&bytes);
            assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
            let len = bytes.len() - zeros;
            assert_eq!(end, ScanEnd::Clean { offset: len });
            assert_eq!(starts.len(), 10);
        }
    }

    #[test]
    fn a_torn_tail_at_every_byte_of_the_last_record_is_a_torn_tail() {
        let (full, starts) = log(5, 0);
        let last = *starts.last().unwrap();
        for cut in last + 1..full.len() {
            for zeros in [0, 64] {
                let mut bytes = full[..cut].to_vec();
                bytes.resize(cut + zeros, 0);
                let (seqs, end) = scan_all(&bytes);
                assert_eq!(seqs, vec![1, 2, 3, 4], "cut at {cut}");
                match end {
                    ScanEnd::TornTail {
                        offset, dirty_end, ..
                    } => {
                        assert_eq!(offset, last);
                        assert!(dirty_end <= cut && dirty_end > last);
                    }
                    // A cut that only kept zero bytes of the record is
                    // indistinguishable from (and as good as) a clean end.
                    ScanEnd::Clean { offset } => {
                        assert_eq!(offset, last);
                        assert!(full[last..cut].iter().all(|&b| b == 0));
                    }
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_flipped_bit_in_each_field_of_a_middle_record_is_corruption() {
        let (full, starts) = log(5, 128);
        let mid = starts[2];
        // payload_len, checksum, seq, payload
        for field_offset in [0usize, 3, 4, 7, 8, 15, 16, 20] {
            for bit in 0..8 {
                let mut bytes = full.clone();
                bytes[mid + field_offset] ^= 1 << bit;
                let (seqs, end) = scan_all(&bytes);
                assert_eq!(seqs, vec![1, 2]);
                match end {
                    ScanEnd::Corrupt {
                        offset, valid_at, ..
                    } => {
                        assert_eq!(offset, mid);
                        assert!(valid_at > mid);
                    }
                    other => panic!("field byte {field_offset} bit {bit}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_zeroed_middle_record_followed_by_valid_ones_is_corruption() {
        let (mut bytes, starts) = log(5, 64);
        bytes[starts[1]..starts[2]].fill(0);
        let (seqs, end) = scan_all(&bytes);
        assert_eq!(seqs, vec![1]);
        assert!(matches!(end, ScanEnd::Corrupt { offset, valid_at, .. }
            if offset == starts[1] && valid_at == starts[2]));
    }

    #[test]
    fn a_valid_record_out_of_sequence_is_corruption_not_a_tail() {
        let mut bytes = Vec::new();
        encode_append(1, b"a", &mut bytes).unwrap();
        let second = bytes.len();
        encode_append(3, b"c", &mut bytes).unwrap();
        let (seqs, end) = scan_all(&bytes);
        assert_eq!(seqs, vec![1]);
        assert_eq!(
            end,
            ScanEnd::Corrupt {
                offset: second,
                damage: Damage::SequenceOutOfOrder {
                    expected: 2,
                    found: 3
                },
                valid_at: second
            }
        );
    }

    #[test]
    fn the_last_nonzero_byte_is_found_wherever_it_is() {
        for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 1000] {
            assert_eq!(last_nonzero(&vec![0u8; len]), None, "len {len}");
            for at in 0..len {
                let mut bytes = vec![0u8; len];
                bytes[at] = 1;
                if at > 0 {
                    bytes[at / 2] = 7;
                }
                assert_eq!(last_nonzero(&bytes), Some(at), "len {len} at {at}");
            }
        }
    }

    #[test]
    fn garbage_after_the_last_record_with_nothing_valid_is_a_torn_tail() {
        let (mut bytes, _) = log(3, 0);
        let end_of_log = bytes.len();
        bytes.extend_from_slice(&[0xAB; 5]);
        bytes.extend_from_slice(&[0; 100]);
        let (seqs, end) = scan_all(&bytes);
        assert_eq!(seqs, vec![1, 2, 3]);
        assert!(matches!(end, ScanEnd::TornTail { offset, dirty_end, .. }
            if offset == end_of_log && dirty_end == end_of_log + 5));
    }
}
