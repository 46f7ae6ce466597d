//! Appending a record to a reserved buffer and scanning records allocate
//! nothing: the WAL's producers and recovery run these per record.

use fep_journal::record::encode_append;
use fep_journal::Scan;

fn allocations_in(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn the_counter_sees_an_allocation() {
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(n >= 1);
}

#[test]
fn encoding_into_a_reserved_buffer_and_scanning_do_not_allocate() {
    let payload = [0x5Au8; 64];
    let mut buf = Vec::with_capacity(10_000 * (16 + 64));
    let n = allocations_in(|| {
        for seq in 1..=10_000 {
            encode_append(seq, &payload, &mut buf).unwrap();
        }
    });
    assert_eq!(n, 0);
    let mut seen = 0u64;
    let n = allocations_in(|| {
        let mut scan = Scan::new(&buf, 0, 1);
        for r in scan.by_ref() {
            seen += r.payload.len() as u64;
        }
        assert!(scan.end().is_some());
    });
    assert_eq!(n, 0);
    assert_eq!(seen, 10_000 * 64);
}
