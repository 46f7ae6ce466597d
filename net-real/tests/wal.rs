//! The real WAL on real files (in tempdirs under the target directory, on
//! the real disk): group commit, recovery after a torn tail, refusal of
//! corruption in the middle and of other settings, rolling, snapshots.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fep_journal::limits::SEGMENT_SIZE_MIN;
use fep_journal::record::encode_append;
use fep_journal::segment::{header_len, segment_file_name};
use fep_journal::{AppendAt, Recovered};
use fep_net::wal::{self, AppendError, ProbeFile, Wal, WalConfig, WalError, WalSync};

const SETTINGS: &[u8] = b"instruments=16 accounts=1024 cash=1e15 units=1e9";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn config(dir: &Path) -> WalConfig {
    WalConfig::new(dir, SETTINGS)
}

/// Records replayed: sequence number and payload.
type Replayed = Vec<(u64, Vec<u8>)>;

/// Recovers `dir`, returning the payloads replayed and the outcome.
fn recover_all(config: &WalConfig) -> Result<(Replayed, Recovered), WalError> {
    let mut records = Vec::new();
    let r = wal::recover(
        config,
        |_, _| {},
        |r| records.push((r.seq, r.payload.to_vec())),
    )?;
    Ok((records, r))
}

fn start(config: &WalConfig, at: AppendAt) -> Wal {
    Wal::start(config.clone(), at, Box::new(|_| {})).unwrap()
}

fn payload(seq: u64) -> Vec<u8> {
    format!("order-{seq:08}-{}", "x".repeat((seq % 40) as usize)).into_bytes()
}

#[test]
fn group_commit_batches_many_appends_per_fsync_under_concurrent_producers() {
    let dir = tempdir();
    // Each batch takes at least half a millisecond after its fsync, as a
    // real disk's would: a tmpfs or a cache that ignores fsync would
    // otherwise let the WAL thread keep up record by record.
    let config = config(dir.path()).observe(wal::WalObserver::new(|_| {
        std::thread::sleep(std::time::Duration::from_micros(500))
    }));
    let (_, r) = recover_all(&config).unwrap();
    let notified = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&notified);
    let wal = Arc::new(
        Wal::start(
            config.clone(),
            r.append,
            Box::new(move |seq| seen.store(seq, Ordering::Release)),
        )
        .unwrap(),
    );
    let producers = 8;
    let per_producer = 2_000u64;
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut last = 0;
                for i in 0..per_producer {
                    let seq = wal.append(format!("p{p}-{i}").as_bytes()).unwrap();
                    assert!(seq > last, "a producer's records are in its order");
                    last = seq;
                    // Every 100th record waits to be durable, as an engine
                    // waiting to answer would.
                    if i % 100 == 99 {
                        while wal.durable_seq() < seq {
                            std::thread::yield_now();
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let wal = Arc::into_inner(wal).unwrap();
    let total = producers * per_producer;
    let stats = wal.shutdown().unwrap();
    assert_eq!(stats.records, total);
    assert_eq!(notified.load(Ordering::Acquire), total);
    assert!(
        stats.batches * 4 <= total,
        "{} batches for {total} records: group commit did not batch",
        stats.batches
    );
    assert!(stats.batch_records_max > 1);
    assert!(stats.syncs >= stats.batches);

    let (records, r) = recover_all(&config).unwrap();
    assert_eq!(records.len() as u64, total);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, (seq, _))| *seq == i as u64 + 1));
    for p in 0..producers {
        let mine: Vec<_> = records
            .iter()
            .filter(|(_, b)| b.starts_with(format!("p{p}-").as_bytes()))
            .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
            .collect();
        let want: Vec<_> = (0..per_producer).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(mine, want);
    }
    assert_eq!(r.append.seq_next(), total + 1);
}

#[test]
fn recovery_after_a_torn_tail_keeps_the_whole_records_and_appends_over_it() {
    let dir = tempdir();
    let config = config(dir.path());
    let (_, r) = recover_all(&config).unwrap();
    let wal = start(&config, r.append);
    for seq in 1..=50 {
        assert_eq!(wal.try_append(&payload(seq)).unwrap(), seq);
    }
    wal.shutdown().unwrap();

    // A crash in the middle of writing record 51: half of it on disk.
    let (_, r) = recover_all(&config).unwrap();
    let AppendAt::Existing { offset, .. } = r.append else {
        panic!("{:?}", r.append)
    };
    let mut torn = Vec::new();
    encode_append(51, &payload(51), &mut torn).unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(dir.path().join(segment_file_name(1)))
        .unwrap();
    file.write_all_at(&torn[..torn.len() / 2], offset).unwrap();
    drop(file);

    let (records, r) = recover_all(&config).unwrap();
    assert_eq!(records.len(), 50);
    let t = r.torn.clone().expect("the torn tail is reported");
    assert_eq!(
        (t.file.as_str(), t.offset),
        (segment_file_name(1).as_str(), offset)
    );

    // Appending after recovery overwrites the torn bytes; nothing stale
    // survives, and the next recovery is clean.
    let wal = start(&config, r.append);
    for seq in 51..=60 {
        assert_eq!(wal.try_append(&payload(seq)).unwrap(), seq);
    }
    wal.shutdown().unwrap();
    let (records, r) = recover_all(&config).unwrap();
    assert_eq!(r.torn, None);
    assert_eq!(records.len(), 60);
    assert!(records.iter().all(|(seq, p)| *p == payload(*seq)));
}

#[test]
fn corruption_in_the_middle_of_a_segment_is_refused_naming_file_and_offset() {
    let dir = tempdir();
    let config = config(dir.path());
    let wal = start(&config, AppendAt::NewSegment { seq_next: 1 });
    for seq in 1..=20 {
        wal.try_append(&payload(seq)).unwrap();
    }
    wal.shutdown().unwrap();
    let at = header_len(SETTINGS) as u64 + 200;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join(segment_file_name(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], at).unwrap();
    drop(file);

    let err = recover_all(&config).unwrap_err();
    let line = err.to_string();
    assert!(line.contains(&segment_file_name(1)), "{line}");
    assert!(line.contains("corrupt at offset"), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn a_journal_written_with_other_settings_is_refused() {
    let dir = tempdir();
    let wal = start(&config(dir.path()), AppendAt::NewSegment { seq_next: 1 });
    wal.try_append(b"new order").unwrap();
    wal.shutdown().unwrap();
    let other = WalConfig::new(dir.path(), &b"instruments=8"[..]);
    let err = recover_all(&other).unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
}

#[test]
fn segments_roll_at_the_bound_and_a_durable_snapshot_lets_old_ones_go() {
    let dir = tempdir();
    let config = config(dir.path()).segment_size(SEGMENT_SIZE_MIN);
    let wal = start(&config, AppendAt::NewSegment { seq_next: 1 });
    let big = vec![7u8; 200 * 1024];
    for _ in 0..20 {
        wal.append(&big).unwrap();
    }
    let stats = wal.shutdown().unwrap();
    assert!(stats.segments_created >= 3, "{stats:?}");
    let (records, r) = recover_all(&config).unwrap();
    assert_eq!(records.len(), 20);
    assert_eq!(r.seq_last, 20);

    wal::write_snapshot(dir.path(), 20, SETTINGS, b"state after 20").unwrap();
    let removed = wal::prune(dir.path(), 20).unwrap();
    assert_eq!(removed.len() as u64, stats.segments_created - 1);
    let mut snap = None;
    let mut replayed = 0;
    let r = wal::recover(
        &config,
        |seq, state| snap = Some((seq, state.to_vec())),
        |_| replayed += 1,
    )
    .unwrap();
    assert_eq!(snap, Some((20, b"state after 20".to_vec())));
    assert_eq!((replayed, r.append.seq_next()), (0, 21));
}

#[test]
fn without_sync_records_still_become_visible_and_recoverable() {
    let dir = tempdir();
    let config = config(dir.path()).sync(WalSync::None);
    let wal = start(&config, AppendAt::NewSegment { seq_next: 1 });
    for seq in 1..=1000 {
        wal.try_append(&payload(seq))
            .or_else(|_| wal.append(&payload(seq)))
            .unwrap();
    }
    let stats = wal.shutdown().unwrap();
    assert_eq!(stats.records, 1000);
    assert_eq!(stats.syncs, 1, "only the final sync at shutdown");
    assert_eq!(recover_all(&config).unwrap().0.len(), 1000);
}

#[test]
fn a_producer_faster_than_the_disk_sees_full_and_too_long_payloads_are_refused() {
    use std::sync::{Condvar, Mutex};
    // The WAL thread is held inside its observer after its first batch, so
    // the producer below is faster than the disk by construction, not by
    // the luck of a slow fsync (a fast disk drained 64 MB in time once).
    let gate = Arc::new((Mutex::new((false, false)), Condvar::new()));
    let held = Arc::clone(&gate);
    let dir = tempdir();
    let max = fep_journal::limits::RECORD_LEN_MAX;
    let config = config(dir.path())
        .pending_bytes_max(max)
        .observe(wal::WalObserver::new(move |_| {
            let (lock, cv) = &*held;
            let mut state = lock.lock().unwrap();
            state.0 = true; // entered
            cv.notify_all();
            while !state.1 {
                state = cv.wait(state).unwrap();
            }
        }));
    let wal = start(&config, AppendAt::NewSegment { seq_next: 1 });
    wal.try_append(b"first").unwrap();
    {
        let (lock, cv) = &*gate;
        let mut state = lock.lock().unwrap();
        while !state.0 {
            state = cv.wait(state).unwrap();
        }
    }
    let chunk = vec![1u8; 64 * 1024];
    let fit = max / fep_journal::record::len_encoded(chunk.len());
    for i in 0..fit {
        assert!(wal.try_append(&chunk).is_ok(), "chunk {i} of {fit} fits");
    }
    match wal.try_append(&chunk) {
        Err(AppendError::Full {
            pending_bytes,
            pending_bytes_max,
        }) => {
            assert_eq!(pending_bytes_max, max);
            assert_eq!(
                pending_bytes,
                fit * fep_journal::record::len_encoded(chunk.len())
            );
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(matches!(
        wal.try_append(&vec![0u8; fep_journal::limits::RECORD_PAYLOAD_LEN_MAX + 1]),
        Err(AppendError::TooLong { .. })
    ));
    {
        let (lock, cv) = &*gate;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
    let stats = wal.shutdown().unwrap();
    assert_eq!(
        stats.records,
        1 + fit as u64,
        "everything accepted is written"
    );
}

#[test]
fn the_fsync_probe_measures_every_append() {
    let dir = tempdir();
    for kind in [ProbeFile::Growing, ProbeFile::Preallocated] {
        let h = wal::probe_fsync(dir.path(), 20, kind).unwrap();
        assert_eq!(h.len(), 20);
        assert!(h.min() > 0);
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 0, "probe file removed");
    }
}

#[test]
fn an_io_error_stops_the_wal_and_nothing_past_it_becomes_durable() {
    let dir = tempdir();
    let config = config(dir.path()).segment_size(SEGMENT_SIZE_MIN);
    let woken = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&woken);
    let on_durable = Box::new(move |_| {
        count.fetch_add(1, Ordering::AcqRel);
    });
    let wal = Wal::start(config, AppendAt::NewSegment { seq_next: 1 }, on_durable).unwrap();
    let big = vec![3u8; 200 * 1024];
    // Five records fit the first segment; the sixth rolls to a segment
    // whose name is taken by a directory, so creating it fails.
    let mut seq = 0;
    for _ in 0..5 {
        seq = wal.append(&big).unwrap();
        while wal.durable_seq() < seq {
            std::thread::yield_now();
        }
    }
    assert_eq!(seq, 5);
    std::fs::create_dir(dir.path().join(segment_file_name(6))).unwrap();
    wal.append(&big).unwrap();
    while !wal.is_stopped() {
        std::thread::yield_now();
    }
    assert_eq!(wal.durable_seq(), 5, "the failed batch is never published");
    assert_eq!(wal.try_append(b"more"), Err(AppendError::Stopped));
    // The owner was woken once per batch and once more for the failure.
    while woken.load(Ordering::Acquire) < 6 {
        std::thread::yield_now();
    }
    let err = wal.shutdown().unwrap_err();
    let line = err.to_string();
    assert!(
        line.contains("cannot create") && line.contains(&segment_file_name(6)),
        "{line}"
    );
}

#[test]
fn the_wal_thread_is_pinned_when_asked() {
    let dir = tempdir();
    let cpu = core_affinity::get_core_ids()
        .and_then(|ids| ids.first().map(|c| c.id))
        .expect("at least one CPU");
    let pinned = config(dir.path()).cpu(Some(cpu));
    let wal = start(&pinned, AppendAt::NewSegment { seq_next: 1 });
    wal.append(b"one").unwrap();
    assert!(wal.shutdown().unwrap().pinned);
    let dir = tempdir();
    let wal = start(&config(dir.path()), AppendAt::NewSegment { seq_next: 1 });
    assert!(!wal.shutdown().unwrap().pinned, "unpinned unless asked");
}

#[test]
fn the_observer_is_told_every_batch_with_its_records_bytes_and_sync_time() {
    for sync in [WalSync::Batch, WalSync::None] {
        let dir = tempdir();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<wal::WalBatch>::new()));
        let sink = Arc::clone(&seen);
        let config = config(dir.path())
            .sync(sync)
            .observe(wal::WalObserver::new(move |b| {
                sink.lock().unwrap().push(*b)
            }));
        let wal = start(&config, AppendAt::NewSegment { seq_next: 1 });
        let mut bytes = 0u64;
        for seq in 1..=500u64 {
            let p = payload(seq);
            bytes += fep_journal::record::len_encoded(p.len()) as u64;
            wal.append(&p).unwrap();
        }
        let stats = wal.shutdown().unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, stats.batches, "{sync:?}");
        assert_eq!(seen.iter().map(|b| b.records).sum::<u64>(), 500);
        assert_eq!(seen.iter().map(|b| b.bytes).sum::<u64>(), bytes);
        assert!(seen.iter().all(|b| b.records > 0), "{seen:?}");
        match sync {
            WalSync::Batch => assert!(seen.iter().all(|b| b.sync_ns.is_some_and(|ns| ns > 0))),
            WalSync::None => assert!(seen.iter().all(|b| b.sync_ns.is_none())),
        }
    }
}
