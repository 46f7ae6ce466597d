//! Properties of the record format and the scan: every encoded journal
//! scans back whole; any truncation is a torn tail (never corruption);
//! any single corruption before the last record is caught as corruption.

use fep_journal::record::encode_append;
use fep_journal::{Scan, ScanEnd};
use proptest::prelude::*;

fn journal(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        starts.push(out.len());
        encode_append(i as u64 + 1, p, &mut out).unwrap();
    }
    (out, starts)
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..20)
}

proptest! {
    #[test]
    fn encoded_records_scan_back_in_order(ps in payloads(), zeros in 0usize..300) {
        let (mut bytes, _) = journal(&ps);
        let len = bytes.len();
        bytes.resize(len + zeros, 0);
        let mut scan = Scan::new(&bytes, 0, 1);
        let got: Vec<(u64, Vec<u8>)> = scan.by_ref().map(|r| (r.seq, r.payload.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> =
            ps.iter().enumerate().map(|(i, p)| (i as u64 + 1, p.clone())).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(scan.end(), Some(ScanEnd::Clean { offset: len }));
    }

    #[test]
    fn any_truncation_is_a_torn_tail_or_a_clean_end(
        ps in payloads(), cut_frac in 0.0f64..1.0, zeros in 0usize..100,
    ) {
        let (full, starts) = journal(&ps);
        let cut = (full.len() as f64 * cut_frac) as usize;
        let mut bytes = full[..cut].to_vec();
        bytes.resize(cut + zeros, 0);
        let mut scan = Scan::new(&bytes, 0, 1);
        let n = scan.by_ref().count();
        // Exactly the leading records whose bytes survive survive: those
        // before the cut, and one whose cut-off bytes were zeros that the
        // zero tail puts back.
        let whole = starts.iter().zip(starts.iter().skip(1).chain([&full.len()]))
            .take_while(|(&start, &end)| bytes.get(start..end) == Some(&full[start..end]))
            .count();
        prop_assert_eq!(n, whole);
        let end = scan.end().unwrap();
        prop_assert!(
            matches!(end, ScanEnd::TornTail { .. } | ScanEnd::Clean { .. }),
            "truncation at {} read as {:?}", cut, end
        );
    }

    #[test]
    fn any_single_corruption_before_the_last_record_is_detected(
        ps in payloads().prop_filter("two records at least", |p| p.len() >= 2),
        at_frac in 0.0f64..1.0, xor in 1u8..=255,
    ) {
        let (mut bytes, starts) = journal(&ps);
        let last = *starts.last().unwrap();
        let at = ((last as f64) * at_frac) as usize;
        bytes[at] ^= xor;
        bytes.resize(bytes.len() + 64, 0);
        let mut scan = Scan::new(&bytes, 0, 1);
        let n = scan.by_ref().count();
        let hit = starts.iter().rposition(|&s| s <= at).unwrap();
        prop_assert_eq!(n, hit, "records before the damaged one survive");
        let end = scan.end().unwrap();
        prop_assert!(
            matches!(end, ScanEnd::Corrupt { offset, .. } if offset == starts[hit]),
            "corruption at byte {} read as {:?}", at, end
        );
    }
}
