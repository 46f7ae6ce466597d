//! A producer's append is a memcpy under a short lock: a counting
//! allocator (per thread) sees no allocation in 10,000 of them.

use fep_journal::AppendAt;
use fep_net::wal::{Wal, WalConfig, WalSync};

fn allocations_in(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn the_counter_sees_an_allocation() {
    let n = allocations_in(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(n >= 1);
}

#[test]
fn appending_to_a_running_wal_does_not_allocate() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = WalConfig::new(dir.path(), &b"settings"[..]).sync(WalSync::None);
    let wal = Wal::start(
        config,
        AppendAt::NewSegment { seq_next: 1 },
        Box::new(|_| {}),
    )
    .unwrap();
    let payload = [0x42u8; 64];
    for _ in 0..1000 {
        wal.append(&payload).unwrap();
    }
    let mut last = 0;
    let n = allocations_in(|| {
        for _ in 0..10_000 {
            last = wal.append(&payload).unwrap();
        }
    });
    assert_eq!(n, 0);
    assert_eq!(last, 11_000);
    let stats = wal.shutdown().unwrap();
    assert_eq!(stats.records, 11_000);
}
